#!/usr/bin/env bash
# The README's demo: word count end to end on a real local Kafka broker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
cargo run --release --example demo_word_count -- "$@"
