#!/usr/bin/env bash
# Delayed messages at scale on Lagomorph: fills an x-delayed-message exchange with N durable,
# persistent messages (all due after the fill), then measures release lateness (p50/p99/max)
# and the broker's peak RSS during the fill and the release (lagomorph-perf's delayed mode).
# RabbitMQ's delayed-message plugin is not installed here, so there is no side-by-side run.
#
#   bench/delayed.sh [N] [MIN_DELAY_MS] [SPREAD_MS]     (defaults: 1000000 25000 20000)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-1000000}; MIN=${2:-25000}; SPREAD=${3:-20000}
PORT=${LAGO_PORT:-5812}
cd "$ROOT"
cargo build --release --bins >/dev/null
DATA=$(mktemp -d)
target/release/lagomorph --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
    --management-listen "127.0.0.1:$((PORT + 10000))" --log-level warn &
LAGO=$!
trap 'kill $LAGO 2>/dev/null; wait $LAGO 2>/dev/null; rm -rf "$DATA"' EXIT
sleep 1
timeout $(( (MIN + SPREAD) / 1000 + 600 )) target/release/lagomorph-perf delayed \
    --uri "amqp://guest:guest@127.0.0.1:$PORT/%2f" -n "$N" --min-delay "$MIN" --spread "$SPREAD" \
    --durable --persistent --pid "$LAGO"
