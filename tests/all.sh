#!/usr/bin/env bash
# Runs every test: the Rust suites (unit, property, integration, crash, and the management
# UI in headless Chromium) and then the foreign-client interop suites (pika, aio-pika,
# amqplib, amqp091-go) against the release binary. This is the README's test command; .ci/run
# runs it after the lint gate.
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
cargo build --locked --release --bin lagomorph
bash interop/run.sh
