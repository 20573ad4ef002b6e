#!/usr/bin/env bash
# The README's test command: set up, check formatting, lint (clippy with
# warnings denied, every target), build the docs with warnings denied, then
# run the whole suite, the README's code blocks included as doctests. Tests
# start their own real Kafka brokers; nothing needs to be running.
#
# Clippy runs with --workspace --all-targets, the same targets and features
# as `cargo test --workspace`, so its build scripts (RocksDB, librdkafka)
# are the ones the tests reuse: nothing native is compiled twice.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
cargo test --workspace
