#!/usr/bin/env bash
# Runs every test: the Rust suites (unit, property, integration, crash, and the management
# UI in headless Chromium) and then the foreign-client interop suites (pika, aio-pika,
# amqplib, amqp091-go) against the debug binary `cargo test` built. This is the README's test
# command; .ci/run runs it after the lint gate.
#
# The browser tests need Debian's chromium and chromium-driver: installed here with apt when
# missing (as root). Where they cannot be installed the browser tests skip loudly, unless
# LAGOMORPH_UI_TESTS=require (set by .ci/run) makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null; then
        echo "tests: installing chromium and chromium-driver (apt) for the UI browser tests"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null || true
    fi
fi
cargo test --locked
# The interop suites run against the debug binary that `cargo test` has just built (for the
# integration tests): with overflow checks and debug assertions on, it is the stricter build,
# and it spares CI a second, optimized build of the whole tree (fat LTO, one codegen unit:
# minutes on a cold cache) that the suites do not need (they take some 15 s either way).
# LAGOMORPH_BIN picks another binary, e.g. target/release/lagomorph.
cargo build --locked --bin lagomorph
LAGOMORPH_BIN="${LAGOMORPH_BIN:-${CARGO_TARGET_DIR:-target}/debug/lagomorph}" bash interop/run.sh
