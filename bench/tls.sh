#!/usr/bin/env bash
# TLS cost of scenario 2 (-x 1 -y 1 -q 1000: one producer, one consumer, manual acks with
# prefetch 1000, 16-byte bodies): Lagomorph over plain TCP and over TLS, RabbitMQ 3.10 over TLS
# (and plain), and optionally a baseline Lagomorph binary over plain TCP (the plain path before
# TLS existed), in alternating rounds. Prints one line per run and the medians: messages per
# second (delivered / consume time) and broker CPU microseconds per message.
#
#   bench/tls.sh [--rounds N] [--time S] [--base BIN] [--rmq-port P --rmq-tls-port P]
#
# Needs target/release/{lagomorph,lagomorph-perf}; makes a self-signed certificate with the
# openssl CLI (the tool connects with --tls-insecure); starts RabbitMQ through
# interop/rabbitmq-ref.sh on the given ports (default 5716 and 5676) unless --no-rmq.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=3 SECS=10 BASE="" RMQ=1 RMQ_PORT=5716 RMQ_TLS=5676
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift ;;
        --time) SECS=$2; shift ;;
        --base) BASE=$2; shift ;;
        --no-rmq) RMQ=0 ;;
        --rmq-port) RMQ_PORT=$2; shift ;;
        --rmq-tls-port) RMQ_TLS=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
BIN="$ROOT/target/release/lagomorph"
PERF="$ROOT/target/release/lagomorph-perf"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ $RMQ == 1 ]] && "$ROOT/interop/rabbitmq-ref.sh" stop "$RMQ_PORT" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
wait_port() { for _ in $(seq 1 300); do port_open "$1" && return 0; sleep 0.1; done; return 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
chmod 644 "$WORK/key.pem"

# start NAME BIN: a Lagomorph with a plain and a TLS listener; sets PORT_NAME, TLS_NAME, PID_NAME.
declare -A PORT TLSP PID
start() {
    local name=$1 bin=$2 p t m
    p=$(free_port); t=$(free_port); m=$(free_port)
    mkdir -p "$WORK/$name"
    local args=(--listen "127.0.0.1:$p" --data-dir "$WORK/$name/data" --management-listen "127.0.0.1:$m")
    if [[ $name != base ]]; then
        args+=(--config "$WORK/$name/conf.toml")
        printf '[tls]\nenabled = true\nlisteners = ["127.0.0.1:%s"]\ncert_file = "%s"\nkey_file = "%s"\n' \
            "$t" "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/$name/conf.toml"
    fi
    "$bin" "${args[@]}" 2> "$WORK/$name/log" &
    PID[$name]=$!; PIDS+=($!)
    PORT[$name]=$p; TLSP[$name]=$t
    wait_port "$p"
}
start lagomorph "$BIN"
[[ -n $BASE ]] && start base "$BASE"
if [[ $RMQ == 1 ]]; then
    RMQ_CONF_EXTRA="listeners.ssl.default = $RMQ_TLS
ssl_options.certfile = $WORK/cert.pem
ssl_options.keyfile = $WORK/key.pem
ssl_options.verify = verify_none" "$ROOT/interop/rabbitmq-ref.sh" start "$RMQ_PORT" >/dev/null
    PID[rabbitmq]=$(cat "/tmp/rabbitmq-ref-$RMQ_PORT/pid")
    PORT[rabbitmq]=$RMQ_PORT; TLSP[rabbitmq]=$RMQ_TLS
fi
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# run LABEL BROKER SCHEME
run() {
    local label=$1 b=$2 scheme=$3 port c0 c1 out
    port=${PORT[$b]}; [[ $scheme == amqps ]] && port=${TLSP[$b]}
    c0=$(ticks "${PID[$b]}")
    out=$("$PERF" -x 1 -y 1 -q 1000 -z "$SECS" --quiet --json --tls-insecure \
        --uri "$scheme://guest:guest@localhost:$port/%2f")
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
for r in $(seq 1 "$ROUNDS"); do
    [[ -n $BASE ]] && run base-plain base amqp
    run lagomorph-plain lagomorph amqp
    run lagomorph-tls lagomorph amqps
    if [[ $RMQ == 1 ]]; then
        run rabbitmq-tls rabbitmq amqps
        run rabbitmq-plain rabbitmq amqp
    fi
done
echo "median msg/s, median broker CPU us/msg:"
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, rate, cpu = line.split()[:3]
    rows.setdefault(label, []).append((float(rate), float(cpu)))
for label, v in rows.items():
    print(f"  {label:16} {statistics.median(r for r, _ in v):12.0f} {statistics.median(c for _, c in v):8.3f}")
PY
