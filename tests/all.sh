#!/usr/bin/env bash
# Runs every test: the Rust suites (unit, property, integration, crash) and then the
# foreign-client interop suites (pika, aio-pika, amqplib, amqp091-go) against the release
# binary. This is the README's test command; .ci/run runs it after the lint gate.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked
cargo build --locked --release --bin lagomorph
bash interop/run.sh
