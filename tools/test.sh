#!/usr/bin/env bash
# The README's test command: set up, then run the whole suite. Tests start
# their own real Kafka broker; nothing needs to be running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
cargo fmt --all -- --check
cargo test --workspace
