#!/usr/bin/env bash
# The README's test command: set up, check formatting, then run the whole
# suite, the README's code blocks included as doctests. Tests start their own
# real Kafka brokers; nothing needs to be running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
cargo fmt --all -- --check
cargo test --workspace
