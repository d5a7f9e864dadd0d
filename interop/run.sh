#!/usr/bin/env bash
# Lagomorph interop tests: the pika and aio-pika (pytest), amqplib (node --test) and amqp091-go
# (go test) suites against one broker.
#
# Default mode: start the broker at ${LAGOMORPH_BIN:-target/release/lagomorph} (built with
# `cargo build --release` if the default binary is missing) on free loopback ports, run every
# suite against it, stop it.
# External mode: if AMQP_URL is set, run every suite against that URL and start nothing
# (e.g. AMQP_URL=amqp://guest:guest@127.0.0.1:5673/%2F interop/run.sh for a local RabbitMQ).
#
# Exits non-zero if the broker could not be started or any suite failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INTEROP="$ROOT/interop"
cd "$ROOT" || exit 2

STARTUP_SECONDS=30 # bound on waiting for the broker's AMQP port
STOP_SECONDS=10    # SIGTERM grace period before SIGKILL
SUITE_SECONDS=900  # bound on one whole suite (each test has its own, smaller bound)

WORK="$(mktemp -d)"
BROKER_PID=""
DATA_DIR=""

say() { echo "interop: $*"; }

stop_broker() {
    [ -n "$BROKER_PID" ] || return 0
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null
        for _ in $(seq 1 $((STOP_SECONDS * 10))); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$BROKER_PID" 2>/dev/null; then
            say "broker (pid $BROKER_PID) ignored SIGTERM for ${STOP_SECONDS}s; sending SIGKILL"
            kill -KILL "$BROKER_PID" 2>/dev/null
        fi
    fi
    wait "$BROKER_PID" 2>/dev/null
    BROKER_PID=""
}

cleanup() {
    stop_broker
    [ -n "$DATA_DIR" ] && rm -rf "$DATA_DIR"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# True once 127.0.0.1:$1 accepts a TCP connection (one attempt, bounded to 1 s).
port_open() {
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

start_broker() {
    local bin="${LAGOMORPH_BIN:-target/release/lagomorph}"
    if [ ! -x "$bin" ]; then
        if [ -n "${LAGOMORPH_BIN:-}" ]; then
            say "LAGOMORPH_BIN=$bin is not an executable file"
            return 1
        fi
        say "building $bin (cargo build --release)"
        cargo build --release --quiet || return 1
    fi
    local port mport
    port="$(free_port)" || return 1
    mport="$(free_port)" || return 1
    while [ "$mport" = "$port" ]; do mport="$(free_port)" || return 1; done
    tport="$(free_port)" || return 1
    while [ "$tport" = "$port" ] || [ "$tport" = "$mport" ]; do tport="$(free_port)" || return 1; done
    DATA_DIR="$(mktemp -d)"
    # AMQPS with a throw-away CA (interop/pika/test_tls.py): client certificates optional,
    # EXTERNAL offered, and a user for the client certificate's CN besides guest.
    local certs="$WORK/certs"
    "$INTEROP/pika/.venv/bin/python" "$INTEROP/tls/certs.py" "$certs" >/dev/null || return 1
    cat >"$WORK/lagomorph.toml" <<CONF
[amqp]
auth_mechanisms = ["PLAIN", "AMQPLAIN", "EXTERNAL"]
[tls]
enabled = true
listeners = ["127.0.0.1:$tport"]
cert_file = "$certs/server.pem"
key_file = "$certs/server.key"
ca_file = "$certs/ca.pem"
verify = "optional"
[[users]]
name = "guest"
password_hash = "7su4utwuXx30jUmgTK5FXeRSfJJppGv5BwoHzo1kP779y9v/"
tags = ["administrator"]
[[users]]
name = "tls-user"
password_hash = "7su4utwuXx30jUmgTK5FXeRSfJJppGv5BwoHzo1kP779y9v/"
CONF
    say "starting $bin on 127.0.0.1:$port (AMQPS $tport, management 127.0.0.1:$mport, data $DATA_DIR)"
    "$bin" --config "$WORK/lagomorph.toml" --listen "127.0.0.1:$port" --data-dir "$DATA_DIR" \
        --management-listen "127.0.0.1:$mport" >"$WORK/broker.log" 2>&1 &
    BROKER_PID=$!
    local deadline=$((SECONDS + STARTUP_SECONDS))
    while ! port_open "$port"; do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            wait "$BROKER_PID"
            say "broker exited (status $?) before accepting connections; its log:"
            tail -n 50 "$WORK/broker.log"
            BROKER_PID=""
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "broker did not accept connections on 127.0.0.1:$port within ${STARTUP_SECONDS}s; its log:"
            tail -n 50 "$WORK/broker.log"
            return 1
        fi
        sleep 0.1
    done
    export AMQP_URL="amqp://guest:guest@127.0.0.1:$port/%2F"
    export MANAGEMENT_URL="http://127.0.0.1:$mport"
    export AMQPS_URL="amqps://127.0.0.1:$tport/%2F" TLS_CERTS="$certs"
}

# interop/pika/.venv with the pinned requirements of the pika and aio-pika suites; reinstalls
# only when a requirements file changes.
setup_python() {
    local venv="$INTEROP/pika/.venv"
    local reqs=("$INTEROP/pika/requirements.txt" "$INTEROP/aio_pika/requirements.txt")
    local want
    want="$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" || return 1
    fi
    if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "${reqs[0]}" -r "${reqs[1]}" || return 1
        echo "$want" >"$venv/.requirements.sha256"
    fi
}

# Go and amqp091-go from Debian's packages (the Go module proxy is not used): installed with
# apt when missing, and the client must be Debian's 1.5.0. Built in GOPATH mode.
AMQP091_GO_SRC=/usr/share/gocode/src/github.com/rabbitmq/amqp091-go
AMQP091_GO_VERSION=1.5.0
setup_go() {
    if ! command -v go >/dev/null || [ ! -d "$AMQP091_GO_SRC" ]; then
        say "installing golang-go and golang-github-rabbitmq-amqp091-go-dev with apt"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go \
                golang-github-rabbitmq-amqp091-go-dev >/dev/null || return 1
    fi
    local have
    have="$(dpkg-query -W -f='${Version}' golang-github-rabbitmq-amqp091-go-dev 2>/dev/null)"
    case "$have" in
    "$AMQP091_GO_VERSION"-*) ;;
    *)
        say "golang-github-rabbitmq-amqp091-go-dev is '$have', the suite is pinned to $AMQP091_GO_VERSION"
        return 1
        ;;
    esac
}

setup_amqplib() {
    [ -d "$INTEROP/amqplib/node_modules" ] && return 0
    (cd "$INTEROP/amqplib" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

run_pika() {
    (cd "$INTEROP/pika" && timeout -k 10 "$SUITE_SECONDS" .venv/bin/python -m pytest) 2>&1 | tee "$WORK/pika.log"
    return "${PIPESTATUS[0]}"
}

run_aio_pika() {
    (cd "$INTEROP/aio_pika" && timeout -k 10 "$SUITE_SECONDS" ../pika/.venv/bin/python -m pytest) 2>&1 |
        tee "$WORK/aio_pika.log"
    return "${PIPESTATUS[0]}"
}

run_amqp091_go() {
    (cd "$INTEROP/amqp091-go" && GO111MODULE=off GOPATH="$WORK/gopath:/usr/share/gocode" \
        GOFLAGS= timeout -k 10 "$SUITE_SECONDS" go test -count=1 -v .) 2>&1 | tee "$WORK/amqp091_go.log"
    return "${PIPESTATUS[0]}"
}

run_amqplib() {
    (cd "$INTEROP/amqplib" && timeout -k 10 "$SUITE_SECONDS" node --test --test-reporter=tap test/) 2>&1 |
        tee "$WORK/amqplib.log"
    return "${PIPESTATUS[0]}"
}

# The number before " $2" in the text "$1" ("1 failed, 3 passed" "passed" -> 3), or 0.
count() {
    local n
    n="$(grep -oE "[0-9]+ $2" <<<"$1" | tail -n 1 | grep -oE '^[0-9]+')"
    echo "${n:-0}"
}

# The N of the last TAP "# $2 N" line in file "$1", or 0.
tap_count() {
    local n
    n="$(sed -nE "s/^# $2 ([0-9]+)\$/\\1/p" "$1" 2>/dev/null | tail -n 1)"
    echo "${n:-0}"
}

say "preparing clients"
setup_python || { say "could not set up interop/pika/.venv"; exit 1; }
if [ -n "${AMQP_URL:-}" ]; then
    say "external mode: using AMQP_URL=$AMQP_URL"
else
    start_broker || exit 1
fi
setup_amqplib || { say "npm ci failed in interop/amqplib"; exit 1; }
setup_go || { say "could not install Go and amqp091-go $AMQP091_GO_VERSION from Debian"; exit 1; }

say "pika suite"
run_pika
pika_rc=$?
say "aio-pika suite"
run_aio_pika
aio_rc=$?
say "amqplib suite"
run_amqplib
amqplib_rc=$?
say "amqp091-go suite"
run_amqp091_go
go_rc=$?

if [ -n "$BROKER_PID" ] && [ $((pika_rc + aio_rc + amqplib_rc + go_rc)) -ne 0 ]; then
    say "broker log (last 50 lines):"
    tail -n 50 "$WORK/broker.log"
fi
stop_broker

echo
say "summary"
# pytest's closing line, e.g. "==== 1 failed, 55 passed in 2.41s ====", and node's TAP "# pass N" / "# fail N".
# The pytest -q closing lines, e.g. "1 failed, 55 passed in 2.41s" (with or without ====).
pytest_summary() {
    grep -E '[0-9]+ (passed|failed|errors?).* in [0-9.]+s' "$1" | tail -n 1
}
pika_summary="$(pytest_summary "$WORK/pika.log")"
aio_summary="$(pytest_summary "$WORK/aio_pika.log")"
amqplib_summary="$(grep -E '^# (tests|pass|fail|cancelled) [0-9]+$' "$WORK/amqplib.log" | tail -n 4)"
go_passed="$(grep -cE '^--- PASS' "$WORK/amqp091_go.log")"
go_failed="$(grep -cE '^--- FAIL' "$WORK/amqp091_go.log")"
echo "pika (exit $pika_rc): ${pika_summary:-no pytest summary}"
echo "aio-pika (exit $aio_rc): ${aio_summary:-no pytest summary}"
echo "amqplib (exit $amqplib_rc):"
echo "${amqplib_summary:-no node test summary}"
echo "amqp091-go (exit $go_rc): $go_passed passed, $go_failed failed"
passed=$(($(count "$pika_summary" passed) + $(count "$aio_summary" passed) +
    $(tap_count "$WORK/amqplib.log" pass) + go_passed))
failed=$(($(count "$pika_summary" failed) + $(count "$pika_summary" 'errors?') +
    $(count "$aio_summary" failed) + $(count "$aio_summary" 'errors?') +
    $(tap_count "$WORK/amqplib.log" fail) + $(tap_count "$WORK/amqplib.log" cancelled) + go_failed))
if [ "$pika_rc" -ne 0 ] || [ "$aio_rc" -ne 0 ] || [ "$amqplib_rc" -ne 0 ] || [ "$go_rc" -ne 0 ]; then
    [ "$failed" -gt 0 ] || failed=1 # a suite that died before its summary still counts as a failure
    echo "interop: $passed passed, $failed failed"
    exit 1
fi
echo "interop: $passed passed, $failed failed"
