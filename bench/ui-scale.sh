#!/usr/bin/env bash
# The management UI and API with many queues: Lagomorph (release build) and then RabbitMQ 3.10
# (Debian's rabbitmq-server with the management plugin, via interop/rabbitmq-ref.sh) on the
# same loopback ports, one after the other, each with N transient queues declared over AMQP.
# tests/benches/ui_scale.rs measures: declare time, GET /api/queues page times (default sort,
# by messages, by publish rate, regex filter), /metrics (Lagomorph), RSS, and the queues page
# of each broker's own web UI in headless chromium until 100 rows show. One JSON line per
# broker goes to stdout and to target/ui-scale.jsonl.
#
#   bench/ui-scale.sh [--queues 100000] [--port 5717] [--brokers lagomorph,rabbitmq]
#
# AMQP on PORT, HTTP on PORT+10000 (RabbitMQ also uses PORT+20000 for Erlang distribution).
# RabbitMQ's prometheus endpoint is not measured: it needs a listener of its own.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUEUES=100000
PORT=5717
BROKERS=lagomorph,rabbitmq
while [[ $# -gt 0 ]]; do
    case "$1" in
        --queues) QUEUES=$2; shift ;;
        --port) PORT=$2; shift ;;
        --brokers) BROKERS=$2; shift ;;
        *) sed -n '2,13p' "$0"; exit 2 ;;
    esac
    shift
done
HTTP=$((PORT + 10000))
OUT=$ROOT/target/ui-scale.jsonl
cd "$ROOT"
cargo build --release --bin lagomorph
cargo bench --bench ui_scale --no-run
BENCH=(cargo bench --bench ui_scale --)

wait_port() {
    for ((i = 0; i < 200; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

for broker in ${BROKERS//,/ }; do
    case $broker in
    lagomorph)
        DIR=$(mktemp -d /tmp/lagomorph-ui-scale.XXXXXX)
        "$ROOT/target/release/lagomorph" --data-dir "$DIR" --listen "127.0.0.1:$PORT" \
            --management-listen "127.0.0.1:$HTTP" --log-level warn &
        PID=$!
        wait_port "$PORT"; wait_port "$HTTP"
        "${BENCH[@]}" --label "lagomorph $(git rev-parse --short HEAD)" --queues "$QUEUES" \
            --amqp "amqp://guest:guest@127.0.0.1:$PORT/%2f" --http "http://127.0.0.1:$HTTP" \
            --metrics "http://127.0.0.1:$HTTP/metrics" --pid "$PID" --ui lagomorph | tee -a "$OUT"
        kill -TERM "$PID"; wait "$PID" || true
        rm -rf "$DIR"
        ;;
    rabbitmq)
        "$ROOT/interop/rabbitmq-ref.sh" start "$PORT" --management
        PID=$(cat "/tmp/rabbitmq-ref-$PORT/pid")
        VERSION=$("$ROOT/interop/rabbitmq-ref.sh" ctl "$PORT" version 2>/dev/null | tail -1 || echo 3.10)
        "${BENCH[@]}" --label "rabbitmq $VERSION" --queues "$QUEUES" \
            --amqp "amqp://guest:guest@127.0.0.1:$PORT/%2f" --http "http://127.0.0.1:$HTTP" \
            --pid "$PID" --ui rabbitmq | tee -a "$OUT" || echo "{\"label\": \"rabbitmq\", \"error\": \"bench failed\"}" | tee -a "$OUT"
        "$ROOT/interop/rabbitmq-ref.sh" stop "$PORT"
        ;;
    *) echo "unknown broker $broker" >&2; exit 2 ;;
    esac
done
