#!/usr/bin/env bash
# Lagomorph vs RabbitMQ vs LavinMQ on this machine, in one run, with the project's load generator.
#
# Starts RabbitMQ (Debian's rabbitmq-server, installed if missing), LavinMQ (the build in
# ../shared/anchors/lavinmq-1.0.1 when it is there; its runtime libraries are installed with apt
# when missing) and a release build of Lagomorph on loopback with fresh data directories, runs
# every scenario against each in turn (L R V L R V ..., --rounds rounds), samples each broker's
# CPU (utime + stime) and peak RSS from /proc, and writes docs/BENCHMARKS.md (bench/report.py
# renders it). Without LavinMQ the comparison runs with the other two. The latency scenarios
# also run against `lagomorph-perf sink --relay` (the floor: the tool, loopback, one relay).
#
#   bench/compare.sh                 full run: 3 rounds of 10 s, 1M backlog (about 45-60 min)
#   bench/compare.sh --quick         smoke run: 1 round of 5 s, 200k backlog
#   options: --rounds N --time S --latency-time S --backlog N --scenarios 1,2,7a --out FILE
#            --budget MINUTES --brokers lagomorph,rabbitmq,lavinmq
#   The latency scenarios (7a, 7b) run for --latency-time (default: --time, at least 30 s): at
#   1,000 msg/s a 5 s run gives 50 samples above p99 and 5 above p99.9, too few to compare.
#
# Needs: cargo, python3, and root or sudo-free apt for the RabbitMQ install. Loopback only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
SECS=10
LAT_SECS=""
BACKLOG=1000000
SCENARIOS="1,2,2d,3,4,4k,5,6,7a,7b,8,9,10"
OUT=""
BUDGET_MIN=60
QUICK=0
BROKERS="lagomorph,rabbitmq,lavinmq"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1; ROUNDS=1; SECS=5; LAT_SECS=10; BACKLOG=200000 ;;
        --rounds) ROUNDS=$2; shift ;;
        --time) SECS=$2; shift ;;
        --latency-time) LAT_SECS=$2; shift ;;
        --backlog) BACKLOG=$2; shift ;;
        --scenarios) SCENARIOS=$2; shift ;;
        --out) OUT=$2; shift ;;
        --budget) BUDGET_MIN=$2; shift ;;
        --brokers) BROKERS=$2; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [[ -z "$LAT_SECS" ]]; then LAT_SECS=$(( SECS > 30 ? SECS : 30 )); fi
if [[ -z "$OUT" ]]; then
    if [[ $QUICK == 1 ]]; then OUT="$ROOT/target/bench/BENCHMARKS.quick.md"; else OUT="$ROOT/docs/BENCHMARKS.md"; fi
fi

# Ports and names, all overridable; chosen away from 5672 and from other local brokers.
LAGO_PORT=${LAGO_PORT:-5771}
LAGO_MGMT=${LAGO_MGMT:-15771}
RMQ_PORT=${RMQ_PORT:-5772}
RMQ_DIST_PORT=${RMQ_DIST_PORT:-25772}
SINK_PORT=${SINK_PORT:-5773}
LMQ_PORT=${LMQ_PORT:-5774}
LMQ_HTTP=${LMQ_HTTP:-15774}
RMQ_NODE=${RMQ_NODE:-lagomorph-bench-$RMQ_PORT@localhost}
LMQ_BIN=${LAVINMQ_BIN:-$ROOT/../shared/anchors/lavinmq-1.0.1}

# Another run (or broker) on our ports would silently take our place: refuse to start.
for p in "$LAGO_PORT" "$LAGO_MGMT" "$RMQ_PORT" "$RMQ_DIST_PORT" "$SINK_PORT" "$LMQ_PORT" "$LMQ_HTTP"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is in use (another bench run?); set LAGO_PORT, LAGO_MGMT, RMQ_PORT," \
            "RMQ_DIST_PORT, SINK_PORT, LMQ_PORT, LMQ_HTTP to free ports" >&2
        exit 1
    fi
done
RMQ_BIN=/usr/lib/rabbitmq/bin

START=$(date +%s)
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
WORK=$(mktemp -d /tmp/lagomorph-bench.XXXXXX)
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
log() { printf '[%4ds] %s\n' $(( $(date +%s) - START )) "$*" >&2; }

# --- processes we start, stopped by PID on exit -------------------------------------------
LAGO_PID=""
LMQ_PID=""
RMQ_PID=""        # beam.smp
RMQ_LAUNCHER=""   # the rabbitmq-server shell script
SINK_PID=""
EPMD_BEFORE=$(pgrep -x epmd || true)

wait_gone() { # pid seconds
    local pid=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

stop_lagomorph() {
    if [[ -n "$LAGO_PID" ]]; then
        kill -TERM "$LAGO_PID" 2>/dev/null || true
        wait_gone "$LAGO_PID" 15
        wait "$LAGO_PID" 2>/dev/null || true
        LAGO_PID=""
    fi
}

# The latency floor (7a, 7b): the tool's sink forwarding publishes to consumers, no broker.
start_relay() {
    "$PERF" sink --relay --listen "127.0.0.1:$SINK_PORT" > "$WORK/relay.log" 2>&1 &
    SINK_PID=$!
    if ! wait_port "$SINK_PORT" 10 || ! kill -0 "$SINK_PID" 2>/dev/null; then
        log "the relay sink did not start"; cat "$WORK/relay.log" >&2; exit 1
    fi
}

stop_relay() {
    if [[ -n "$SINK_PID" ]]; then
        kill -TERM "$SINK_PID" 2>/dev/null || true
        wait "$SINK_PID" 2>/dev/null || true
        SINK_PID=""
    fi
}

stop_lavinmq() {
    if [[ -n "$LMQ_PID" ]]; then
        kill -TERM "$LMQ_PID" 2>/dev/null || true
        wait_gone "$LMQ_PID" 15
        wait "$LMQ_PID" 2>/dev/null || true
        LMQ_PID=""
    fi
}

stop_rabbitmq() {
    if [[ -z "$RMQ_PID" && -n "$RMQ_LAUNCHER" && -s "$WORK/rabbitmq/pid" ]]; then
        RMQ_PID=$(cat "$WORK/rabbitmq/pid")
    fi
    if [[ -n "$RMQ_PID" ]]; then
        kill -TERM "$RMQ_PID" 2>/dev/null || true
        wait_gone "$RMQ_PID" 30
        RMQ_PID=""
    fi
    if [[ -n "$RMQ_LAUNCHER" ]]; then
        kill -TERM "$RMQ_LAUNCHER" 2>/dev/null || true
        wait_gone "$RMQ_LAUNCHER" 5
        wait "$RMQ_LAUNCHER" 2>/dev/null || true
        RMQ_LAUNCHER=""
    fi
}

cleanup() {
    stop_lagomorph
    stop_lavinmq
    stop_rabbitmq
    if [[ -n "$SINK_PID" ]]; then kill -TERM "$SINK_PID" 2>/dev/null || true; fi
    # An epmd that our RabbitMQ started (none was running before) goes too.
    if [[ -z "$EPMD_BEFORE" ]]; then
        local e
        for e in $(pgrep -x epmd || true); do kill -TERM "$e" 2>/dev/null || true; done
    fi
    if [[ "${KEEP_WORK:-0}" != 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# --- install and build ---------------------------------------------------------------------
if [[ ! -x "$RMQ_BIN/rabbitmq-server" ]]; then
    log "installing rabbitmq-server (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server
fi
RMQ_VERSION=$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo unknown)
# LavinMQ: optional. Its runtime libraries come from Debian (see ../shared/anchors/README.md).
LMQ_VERSION=""
if [[ ",$BROKERS," == *,lavinmq,* ]]; then
    if [[ -x "$LMQ_BIN" ]] && ! "$LMQ_BIN" --version > /dev/null 2>&1; then
        log "installing LavinMQ's runtime libraries (apt)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libgc1 libevent-2.1-7 libpcre3 libssl3 zlib1g > /dev/null 2>&1 || true
    fi
    if [[ -x "$LMQ_BIN" ]] && LMQ_VERSION=$("$LMQ_BIN" --version 2>/dev/null | head -1) && [[ -n "$LMQ_VERSION" ]]; then
        if [[ -e /tmp/lavinmqctl.sock ]] && pgrep -f lavinmq > /dev/null; then
            log "a LavinMQ is running (its control socket /tmp/lavinmqctl.sock is shared): stop it first"; exit 1
        fi
    else
        log "LavinMQ not found or not runnable at $LMQ_BIN: comparing without it"
        BROKERS=$(echo ",$BROKERS," | sed 's/,lavinmq,/,/; s/^,//; s/,$//')
        LMQ_VERSION=""
    fi
fi
IFS=',' read -r -a BROKER_LIST <<< "$BROKERS"
log "building release binaries"
(cd "$ROOT" && cargo build --release --bins --quiet)
LAGO="$ROOT/target/release/lagomorph"
PERF="$ROOT/target/release/lagomorph-perf"
# Many connections in scenario 9: raise the soft limit to the hard one (brokers inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_lagomorph() {
    rm -rf "$WORK/lagomorph"
    mkdir -p "$WORK/lagomorph"
    "$LAGO" --listen "127.0.0.1:$LAGO_PORT" --data-dir "$WORK/lagomorph/data" \
        --management-listen "127.0.0.1:$LAGO_MGMT" --log-level warn \
        > "$WORK/lagomorph/out.log" 2>&1 &
    LAGO_PID=$!
    if ! wait_port "$LAGO_PORT" 30 || ! kill -0 "$LAGO_PID" 2>/dev/null; then
        log "lagomorph did not start"; cat "$WORK/lagomorph/out.log" >&2; exit 1
    fi
}

start_lavinmq() {
    local d="$WORK/lavinmq"
    rm -rf "$d"
    mkdir -p "$d/data" "$d/conf"
    # An empty configuration directory, so no stray ini file is read.
    CONFIGURATION_DIRECTORY="$d/conf" "$LMQ_BIN" -D "$d/data" --bind 127.0.0.1 \
        --amqp-port "$LMQ_PORT" --http-port "$LMQ_HTTP" --amqps-port -1 --https-port -1 \
        > "$d/out.log" 2>&1 &
    LMQ_PID=$!
    if ! wait_port "$LMQ_PORT" 30 || ! kill -0 "$LMQ_PID" 2>/dev/null; then
        log "lavinmq did not start"; tail -20 "$d/out.log" >&2; exit 1
    fi
}

rmq_env() {
    local d="$WORK/rabbitmq"
    env HOME="$d" RABBITMQ_NODENAME="$RMQ_NODE" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$RMQ_PORT" RABBITMQ_DIST_PORT="$RMQ_DIST_PORT" \
        RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" RABBITMQ_PID_FILE="$d/pid" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" RABBITMQ_CONFIG_FILE="$d/rabbitmq" \
        RABBITMQ_CONF_ENV_FILE=/dev/null "$@"
}

start_rabbitmq() {
    local d="$WORK/rabbitmq" i
    rm -rf "$d"
    mkdir -p "$d/mnesia" "$d/log"
    echo '[].' > "$d/enabled_plugins"
    : > "$d/rabbitmq.conf"
    rmq_env "$RMQ_BIN/rabbitmq-server" > "$d/out.log" 2>&1 &
    RMQ_LAUNCHER=$!
    # rabbitmqctl gives up at once while the node is not yet reachable: retry, bounded.
    for ((i = 0; i < 90; i++)); do
        [[ -z "$RMQ_PID" && -s "$d/pid" ]] && RMQ_PID=$(cat "$d/pid")
        if rmq_env timeout 60 "$RMQ_BIN/rabbitmqctl" -q -n "$RMQ_NODE" await_startup > /dev/null 2>&1; then
            break
        fi
        if ! kill -0 "$RMQ_LAUNCHER" 2>/dev/null; then i=90; break; fi
        sleep 2
    done
    [[ -z "$RMQ_PID" && -s "$d/pid" ]] && RMQ_PID=$(cat "$d/pid")
    if (( i >= 90 )) || [[ -z "$RMQ_PID" ]] || ! kill -0 "$RMQ_PID" 2>/dev/null \
        || ! wait_port "$RMQ_PORT" 30; then
        log "rabbitmq did not start"; tail -20 "$d/out.log" >&2; exit 1
    fi
}

start_broker() { case $1 in lagomorph) start_lagomorph ;; rabbitmq) start_rabbitmq ;; lavinmq) start_lavinmq ;; relay) start_relay ;; esac; }
stop_broker() { case $1 in lagomorph) stop_lagomorph ;; rabbitmq) stop_rabbitmq ;; lavinmq) stop_lavinmq ;; relay) stop_relay ;; esac; }
broker_pid() { case $1 in lagomorph) echo "$LAGO_PID" ;; rabbitmq) echo "$RMQ_PID" ;; lavinmq) echo "$LMQ_PID" ;; relay) echo "$SINK_PID" ;; esac; }
broker_port() { case $1 in lagomorph) echo "$LAGO_PORT" ;; rabbitmq) echo "$RMQ_PORT" ;; lavinmq) echo "$LMQ_PORT" ;; relay) echo "$SINK_PORT" ;; esac; }

# --- sampling ------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# Max VmRSS every 0.2 s until the stop file appears (bounded by a sample count).
sample_rss() { # pid stopfile outfile max_samples
    local max=0 v i
    for ((i = 0; i < $4; i++)); do
        [[ -e "$2" ]] && break
        v=$(status_kb "$1" VmRSS 2>/dev/null) || break
        [[ -n "$v" && "$v" -gt "$max" ]] && max=$v
        sleep 0.2
    done
    echo "$max" > "$3"
}

# run_perf scenario broker round limit_seconds args... : one measured run, one JSON line.
run_perf() {
    local scenario=$1 broker=$2 round=$3 limit=$4
    shift 4
    local pid port tag rc=0
    pid=$(broker_pid "$broker")
    port=$(broker_port "$broker")
    tag="$WORK/run-$scenario-$broker-$round"
    echo 5 > "/proc/$pid/clear_refs" 2>/dev/null || true   # reset VmHWM to the current RSS
    local c0 t0 t1 c1 hwm smax
    c0=$(cpu_ticks "$pid")
    rm -f "$tag.stop"
    sample_rss "$pid" "$tag.stop" "$tag.rss" $(( (limit + 10) * 5 )) &
    local sampler=$!
    t0=$(date +%s.%N)
    local TIMEFORMAT='%U %S'
    { time timeout "$limit" "$PERF" "$@" --uri "amqp://guest:guest@127.0.0.1:$port/%2f" --json \
        > "$tag.json" 2> "$tag.err"; } 2> "$tag.time" || rc=$?
    t1=$(date +%s.%N)
    touch "$tag.stop"
    wait "$sampler" || true
    c1=$(cpu_ticks "$pid")
    hwm=$(status_kb "$pid" VmHWM)
    smax=$(cat "$tag.rss")
    python3 - "$scenario" "$broker" "$round" "$rc" "$t0" "$t1" "$c0" "$c1" "$CLK_TCK" "$hwm" "$smax" \
        "$tag.json" "$tag.time" >> "$RESULTS" <<'PY'
import json, sys
(scenario, broker, rnd, rc, t0, t1, c0, c1, tck, hwm, smax, jpath, tpath) = sys.argv[1:]
try:
    summary = json.load(open(jpath))
except Exception:
    summary = None
try:
    u, s = open(tpath).read().split()[-2:]
    tool_cpu = float(u) + float(s)
except Exception:
    tool_cpu = None
print(json.dumps({
    "scenario": scenario, "broker": broker, "round": int(rnd), "rc": int(rc),
    "wall_s": float(t1) - float(t0),
    "cpu_s": (int(c1) - int(c0)) / int(tck),
    "peak_rss_kb": max(int(hwm or 0), int(smax or 0)),
    "tool_cpu_s": tool_cpu,
    "summary": summary,
}))
PY
    if [[ $rc != 0 ]]; then
        log "  $broker: exit $rc: $(grep -v '^\[' "$tag.err" | tail -c 300 | tr '\n' ' ')"
        log "    $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("lost", d.get("lost"), "errors:", "; ".join(d.get("errors", []))[:300])' "$tag.json" 2>/dev/null || true)"
    fi
}

scenario_args() { # id -> the tool's arguments
    case $1 in
        1) echo "-x 1 -y 1 -a -z $SECS" ;;
        2) echo "-x 1 -y 1 -q 1000 -z $SECS" ;;
        2d) echo "-x 1 -y 1 -q 1000 -z $SECS --queue-arg x-message-ttl=60000 --queue-arg x-dead-letter-exchange= --queue-arg x-dead-letter-routing-key=lagomorph-perf-dlq" ;;
        3) echo "-x 1 -y 1 -a -s 4096 -z $SECS" ;;
        4) echo "-x 1 -y 1 -f -c 1000 -q 1000 -z $SECS" ;;
        4k) echo "-x 1 -y 1 -f -c 1000 -q 1000 -s 4096 -z $SECS" ;;
        5) echo "-x 1 -y 10 -Q 10 -t fanout -a -z $SECS" ;;
        6) echo "-x 1 -y 1 -t topic --bindings 1000 -a -z $SECS" ;;
        7a) echo "-x 1 -y 1 -a -r 1000 -z $LAT_SECS" ;;
        7b) echo "-x 1 -y 1 -a -r 10000 -z $LAT_SECS" ;;
        8) echo "-x 1 -y 1 -a --backlog $BACKLOG" ;;
        9) echo "connections -n 1000 --hold 3" ;;
        10) echo "-x 100 -y 100 -Q 100 -a -z $SECS" ;;
        *) echo "unknown scenario $1" >&2; exit 2 ;;
    esac
}

over_budget() { (( $(date +%s) - START > BUDGET_MIN * 60 )); }

# --- the tool's own ceiling against the sink ----------------------------------------------
log "tool ceiling against the sink"
"$PERF" sink --listen "127.0.0.1:$SINK_PORT" > "$WORK/sink.log" 2>&1 &
SINK_PID=$!
if ! wait_port "$SINK_PORT" 10 || ! kill -0 "$SINK_PID" 2>/dev/null; then
    log "the sink did not start"; cat "$WORK/sink.log" >&2; exit 1
fi
SINK_URI="amqp://guest:guest@127.0.0.1:$SINK_PORT/%2f"
ceiling() { # name args...
    local name=$1 rc=0
    shift
    timeout $(( SECS + 60 )) "$PERF" "$@" --uri "$SINK_URI" -z "$SECS" --json > "$WORK/ceiling-$name.json" 2>/dev/null || rc=$?
    python3 -c 'import json,sys; d=json.load(open(sys.argv[2])); print(json.dumps({"ceiling": sys.argv[1], "summary": d}))' \
        "$name" "$WORK/ceiling-$name.json" >> "$RESULTS" || log "ceiling $name failed ($rc)"
}
ceiling publish-16B -x 1 -y 0
ceiling publish-4KiB -x 1 -y 0 -s 4096
ceiling publish-confirm -x 1 -y 0 -c 1000
ceiling consume-auto-ack -x 0 -y 1 -a
ceiling consume-manual-ack -x 0 -y 1 -q 1000
kill -TERM "$SINK_PID" 2>/dev/null || true
wait "$SINK_PID" 2>/dev/null || true
SINK_PID=""

# --- the scenarios -------------------------------------------------------------------------
IFS=',' read -r -a LIST <<< "$SCENARIOS"
for s in "${LIST[@]}"; do
    read -r -a ARGS <<< "$(scenario_args "$s")"
    limit=$(( SECS * 4 + 120 ))
    case $s in
        7a|7b) limit=$(( LAT_SECS * 4 + 120 )) ;;
        8) limit=1200 ;;
        9) limit=300 ;;
    esac
    log "scenario $s: ${ARGS[*]}"
    RUN_LIST=("${BROKER_LIST[@]}")
    # The latency scenarios also run against the relay: the floor no broker can go under.
    case $s in 7a|7b) RUN_LIST+=(relay) ;; esac
    for ((r = 1; r <= ROUNDS; r++)); do
        for b in "${RUN_LIST[@]}"; do
            if over_budget; then log "  budget of $BUDGET_MIN min spent: skipping $s/$b/$r"; continue; fi
            # A fresh broker for every run: one broker runs at a time (an idle Erlang VM spins
            # its schedulers and would take CPU from the others' runs), and rounds do not share
            # state.
            start_broker "$b"
            log "  round $r: $b"
            run_perf "$s" "$b" "$r" "$limit" "${ARGS[@]}"
            stop_broker "$b"
        done
    done
done

# --- the report ----------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
python3 "$ROOT/bench/report.py" "$RESULTS" "$OUT" \
    --rounds "$ROUNDS" --time "$SECS" --latency-time "$LAT_SECS" --backlog "$BACKLOG" --rabbitmq "$RMQ_VERSION" --lavinmq "$LMQ_VERSION" \
    --command "bench/compare.sh $([[ $QUICK == 1 ]] && echo --quick)" \
    --elapsed $(( $(date +%s) - START )) --load "$LOAD_AT_START"
cp "$RESULTS" "${OUT%.md}.jsonl"
log "wrote $OUT (raw results: ${OUT%.md}.jsonl)"
