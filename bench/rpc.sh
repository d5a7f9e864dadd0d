#!/usr/bin/env bash
# RPC round trips per second over direct reply-to, Lagomorph vs RabbitMQ 3.10 side by side in
# one run (L R L R ...), with lagomorph-perf's rpc mode: --callers concurrent callers (one
# request outstanding each), --servers answering connections.
#
#   bench/rpc.sh [--rounds N] [--time S] [--callers N] [--servers N]
#
# Ports: LAGO_PORT (default 5812) and RMQ_PORT (default 5802, started with
# interop/rabbitmq-ref.sh). Loopback only; every run is bounded by --time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=2; SECS=10; CALLERS=10; SERVERS=2
LAGO_PORT=${LAGO_PORT:-5812}; RMQ_PORT=${RMQ_PORT:-5802}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift ;;
        --time) SECS=$2; shift ;;
        --callers) CALLERS=$2; shift ;;
        --servers) SERVERS=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
cd "$ROOT"
cargo build --release --bins >/dev/null
DATA=$(mktemp -d)
target/release/lagomorph --data-dir "$DATA" --listen "127.0.0.1:$LAGO_PORT" \
    --management-listen "127.0.0.1:$((LAGO_PORT + 10000))" --log-level warn &
LAGO=$!
trap 'kill $LAGO 2>/dev/null; wait $LAGO 2>/dev/null; rm -rf "$DATA"; interop/rabbitmq-ref.sh stop $RMQ_PORT >/dev/null 2>&1 || true' EXIT
interop/rabbitmq-ref.sh start "$RMQ_PORT" >/dev/null
sleep 1
for r in $(seq 1 "$ROUNDS"); do
    for b in lagomorph:$LAGO_PORT rabbitmq:$RMQ_PORT; do
        echo -n "round $r ${b%%:*}: "
        timeout $((SECS + 30)) target/release/lagomorph-perf rpc \
            --uri "amqp://guest:guest@127.0.0.1:${b##*:}/%2f" -c "$CALLERS" --servers "$SERVERS" -z "$SECS" | tail -1
    done
done
