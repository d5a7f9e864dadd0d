#!/usr/bin/env bash
# Issue 14's "1,000 durable queues, each with a 10k-message persistent backlog": a release
# Lagomorph on loopback with a fresh data directory; one producer publishes N persistent 16 B
# messages with confirms to a fanout exchange bound to Q durable queues (Q x N queue entries),
# then Q consumers (prefetch 100, manual acks) drain them. Prints the load generator's summary,
# the broker's peak RSS (VmHWM) and the memory budget it ran with.
#
#   bench/many_queues.sh                      1,000 queues x 10,000 messages
#   bench/many_queues.sh --queues 100 --messages 1000 --prefetch 0
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUEUES=1000
MESSAGES=10000
PREFETCH=100
PORT=${LAGO_PORT:-5776}
MGMT=${LAGO_MGMT:-15776}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --queues) QUEUES=$2; shift ;;
        --messages) MESSAGES=$2; shift ;;
        --prefetch) PREFETCH=$2; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin lagomorph --bin lagomorph-perf
WORK=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$ROOT/target/release/lagomorph" --listen "127.0.0.1:$PORT" --management-listen "127.0.0.1:$MGMT" \
    --data-dir "$WORK/data" > "$WORK/broker.log" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q 'Lagomorph started' "$WORK/broker.log" && break; sleep 0.1; done
# Bounded: at most 10 minutes.
timeout 600 "$ROOT/target/release/lagomorph-perf" --uri "amqp://guest:guest@127.0.0.1:$PORT/%2f" \
    -x 1 -y "$QUEUES" -Q "$QUEUES" -t fanout -f -c 1000 -q "$PREFETCH" --backlog "$MESSAGES" \
    2>&1 | grep -E '^(lagomorph-perf|backlog|check)'
echo "peak RSS: $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' "/proc/$PID/status")"
curl -s -u guest:guest "127.0.0.1:$MGMT/metrics" | awk '/^lagomorph_queue_memory_budget_bytes/ {printf "queue memory budget: %.0f MB\n", $2/1048576}'
echo "data directory after the drain: $(du -sh "$WORK/data" | cut -f1)"
