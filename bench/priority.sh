#!/usr/bin/env bash
# Priority queues against RabbitMQ 3.10, in one run: scenario 2 (-x 1 -y 1 -q 1000: one
# producer, one consumer, manual acks with prefetch 1000, 16-byte bodies) on a queue with
# x-max-priority 10 and random priorities 0-10, plus the same without priorities for reference,
# in alternating rounds (L R L R ...); then a backlog over 10 priorities (filled with no
# consumer, then drained) on Lagomorph with its peak RSS, and on RabbitMQ unless --no-rmq-backlog.
# Prints one line per run and the medians: messages per second (delivered / consume time) and
# broker CPU microseconds per message.
#
#   bench/priority.sh [--rounds N] [--time S] [--backlog N] [--no-rmq-backlog] [--only-backlog]
#                     [--persistent]   (backlog of persistent messages with confirms)
#                     [--rmq-port P]   (default 5801; RabbitMQ is started through
#                                       interop/rabbitmq-ref.sh unless it already runs there)
#
# Needs target/release/{lagomorph,lagomorph-perf}. Loopback only; every run is bounded in time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=3 SECS=10 BACKLOG=1000000 RMQ_BACKLOG=1 RMQ_PORT=5801 ONLY_BACKLOG=0 PERSISTENT=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift ;;
        --time) SECS=$2; shift ;;
        --backlog) BACKLOG=$2; shift ;;
        --no-rmq-backlog) RMQ_BACKLOG=0 ;;
        --only-backlog) ONLY_BACKLOG=1 ;;
        --persistent) PERSISTENT=(-f -c 1000) ;;
        --rmq-port) RMQ_PORT=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
BIN="$ROOT/target/release/lagomorph"
PERF="$ROOT/target/release/lagomorph-perf"
WORK="$(mktemp -d)"
PIDS=()
STARTED_RMQ=0
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ $STARTED_RMQ == 1 ]] && "$ROOT/interop/rabbitmq-ref.sh" stop "$RMQ_PORT" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
wait_port() { for _ in $(seq 1 300); do port_open "$1" && return 0; sleep 0.1; done; return 1; }

declare -A PORT PID
LP=$(free_port); LM=$(free_port)
"$BIN" --listen "127.0.0.1:$LP" --data-dir "$WORK/lago" --management-listen "127.0.0.1:$LM" 2> "$WORK/lago.log" &
PID[lagomorph]=$!; PIDS+=($!); PORT[lagomorph]=$LP
wait_port "$LP"
if ! port_open "$RMQ_PORT"; then
    "$ROOT/interop/rabbitmq-ref.sh" start "$RMQ_PORT" >/dev/null
    STARTED_RMQ=1
fi
PID[rabbitmq]=$(cat "/tmp/rabbitmq-ref-$RMQ_PORT/pid")
PORT[rabbitmq]=$RMQ_PORT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# run LABEL BROKER ARGS...
run() {
    local label=$1 b=$2 c0 c1 out
    shift 2
    c0=$(ticks "${PID[$b]}")
    out=$(timeout $(( SECS + 120 )) "$PERF" "$@" --quiet --json \
        --uri "amqp://guest:guest@127.0.0.1:${PORT[$b]}/%2f")
    c1=$(ticks "${PID[$b]}")
    python3 - "$label" "$out" "$c0" "$c1" "$TCK" <<'PY' | tee -a "$WORK/results"
import json, sys
label, out, c0, c1, tck = sys.argv[1:]
d = json.loads(out)
cpu = (int(c1) - int(c0)) / int(tck)
n = max(d["delivered"], 1)
print(f"{label} {d['consume_rate']:.0f} {cpu / n * 1e6:.3f} clean={d['clean']}")
PY
}
S2=(-x 1 -y 1 -q 1000 -z "$SECS")
PRIO=(--queue-arg x-max-priority=10 --priority-random 10)
[[ $ONLY_BACKLOG == 1 ]] && ROUNDS=0
for r in $(seq 1 "$ROUNDS"); do
    run lagomorph-prio lagomorph "${S2[@]}" "${PRIO[@]}" --queue-prefix "prio-$r"
    run rabbitmq-prio rabbitmq "${S2[@]}" "${PRIO[@]}" --queue-prefix "prio-$r"
    run lagomorph-plain lagomorph "${S2[@]}" --queue-prefix "plain-$r"
    run rabbitmq-plain rabbitmq "${S2[@]}" --queue-prefix "plain-$r"
done
[[ $ROUNDS -gt 0 ]] && echo "median msg/s, median broker CPU us/msg:" && python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, rate, cpu = line.split()[:3]
    rows.setdefault(label, []).append((float(rate), float(cpu)))
for label, v in rows.items():
    print(f"  {label:16} {statistics.median(r for r, _ in v):12.0f} {statistics.median(c for _, c in v):8.3f}")
for kind in ("prio", "plain"):
    l, r = rows.get(f"lagomorph-{kind}"), rows.get(f"rabbitmq-{kind}")
    if l and r:
        ratio = statistics.median(x for x, _ in l) / max(statistics.median(x for x, _ in r), 1)
        print(f"  ratio {kind}: {ratio:.1f}x RabbitMQ")
PY

# backlog BROKER: fill BACKLOG messages over priorities 0-9 with no consumer, then drain; peak
# RSS of the broker during the run (VmHWM, reset before).
backlog() {
    local b=$1 pid out hwm
    pid=${PID[$b]}
    echo 5 > "/proc/$pid/clear_refs" 2>/dev/null || true
    out=$(timeout 1800 "$PERF" -x 1 -y 1 -a --backlog "$BACKLOG" --queue-arg x-max-priority=9 --priority-random 9 \
        "${PERSISTENT[@]}" \
        --drain-timeout 600 --queue-prefix backlog --quiet --json \
        --uri "amqp://guest:guest@127.0.0.1:${PORT[$b]}/%2f") || true
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    python3 - "$b" "$out" "$hwm" <<'PY'
import json, sys
b, out, hwm = sys.argv[1:]
try:
    d = json.loads(out)
except ValueError:
    print(f"backlog {b}: no result ({out[:200]!r})"); sys.exit()
bl = d.get("backlog") or {}
print(f"backlog {b}: messages={bl.get('messages')} fill={bl.get('fill_seconds', 0):.1f}s "
      f"({bl.get('fill_rate', 0):.0f}/s) drain={bl.get('drain_seconds', 0):.1f}s ({bl.get('drain_rate', 0):.0f}/s) "
      f"delivered={d.get('delivered')} lost={d.get('lost')} clean={d.get('clean')} peak_rss_mb={int(hwm) / 1024:.0f}")
PY
}
backlog lagomorph
[[ $RMQ_BACKLOG == 1 ]] && backlog rabbitmq
exit 0
