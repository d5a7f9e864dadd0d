#!/usr/bin/env bash
# A reference RabbitMQ 3.10 (Debian's rabbitmq-server package) on loopback, for recording what
# RabbitMQ answers in the cases our tests check (fixtures under tests/fixtures/rabbitmq-3.10/).
# Several can run at once: each port gets its own node name, Erlang distribution port and
# directory.
#
#   interop/rabbitmq-ref.sh start PORT [--management]   # AMQP on 127.0.0.1:PORT; with
#                                                       # --management, HTTP on PORT+10000
#   interop/rabbitmq-ref.sh stop PORT
#   interop/rabbitmq-ref.sh ctl PORT ARGS...             # rabbitmqctl against that node
#
# Users: guest/guest (loopback). State lives in /tmp/rabbitmq-ref-PORT, wiped at start.
# RMQ_CONF_EXTRA (lines of rabbitmq.conf, e.g. "consumer_timeout = 2000") is added to the
# node's configuration file. RMQ_PLUGINS_EXTRA (plugin names separated by spaces or commas, e.g.
# "rabbitmq_auth_mechanism_ssl") are enabled besides the management plugin.
# Installs rabbitmq-server with apt when it is missing.
set -euo pipefail

cmd=${1:-}
PORT=${2:-}
if [[ -z "$cmd" || -z "$PORT" ]]; then
    sed -n '2,17p' "$0"
    exit 2
fi
shift 2
RMQ_BIN=/usr/lib/rabbitmq/bin
DIR=/tmp/rabbitmq-ref-$PORT
NODE=ref$PORT@localhost
DIST=$((PORT + 20000))
HTTP=$((PORT + 10000))

rmq_env() {
    env HOME="$DIR" RABBITMQ_NODENAME="$NODE" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$PORT" RABBITMQ_DIST_PORT="$DIST" \
        RABBITMQ_MNESIA_BASE="$DIR/mnesia" RABBITMQ_LOG_BASE="$DIR/log" RABBITMQ_PID_FILE="$DIR/pid" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins" RABBITMQ_CONFIG_FILE="$DIR/rabbitmq" \
        RABBITMQ_CONF_ENV_FILE=/dev/null "$@"
}

case $cmd in
start)
    if [[ ! -x "$RMQ_BIN/rabbitmq-server" ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server
    fi
    "$0" stop "$PORT" >/dev/null 2>&1 || true
    rm -rf "$DIR"
    mkdir -p "$DIR/mnesia" "$DIR/log"
    plugins=()
    if [[ "${1:-}" == --management ]]; then
        plugins+=(rabbitmq_management)
        printf 'management.tcp.port = %s\nmanagement.tcp.ip = 127.0.0.1\n' "$HTTP" > "$DIR/rabbitmq.conf"
    else
        : > "$DIR/rabbitmq.conf"
    fi
    extra=${RMQ_PLUGINS_EXTRA:-}
    for p in ${extra//,/ }; do
        plugins+=("$p")
    done
    (IFS=,; echo "[${plugins[*]}]." > "$DIR/enabled_plugins")
    if [[ -n "${RMQ_CONF_EXTRA:-}" ]]; then
        printf '%s\n' "$RMQ_CONF_EXTRA" >> "$DIR/rabbitmq.conf"
    fi
    rmq_env "$RMQ_BIN/rabbitmq-server" -detached > "$DIR/out.log" 2>&1
    # await_startup gives up at once while the node is not reachable yet: retry, bounded.
    for ((i = 0; i < 60; i++)); do
        if rmq_env timeout 60 "$RMQ_BIN/rabbitmqctl" -q -n "$NODE" await_startup > /dev/null 2>&1; then
            echo "rabbitmq $NODE: amqp://guest:guest@127.0.0.1:$PORT/ pid $(cat "$DIR/pid" 2>/dev/null)"
            exit 0
        fi
        sleep 1
    done
    echo "rabbitmq did not start; see $DIR/log" >&2
    exit 1
    ;;
stop)
    if [[ -s "$DIR/pid" ]]; then
        pid=$(cat "$DIR/pid")
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || exit 0
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    ;;
ctl)
    rmq_env "$RMQ_BIN/rabbitmqctl" -n "$NODE" "$@"
    ;;
*)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
