#!/usr/bin/env bash
# The README's test command: set up, check formatting, lint (clippy with
# warnings denied, every target), build the docs with warnings denied, then
# run the whole suite, the README's code blocks included as doctests. Tests
# start their own real Kafka brokers; nothing needs to be running.
#
# Clippy runs with --workspace --all-targets, the same targets and features
# as `cargo test --workspace`, so its build scripts (RocksDB, librdkafka)
# are the ones the tests reuse: nothing native is compiled twice.
#
# Why the suite runs in two streams: `cargo test` runs its test binaries one
# after another, and the 3-broker cluster tests (`tests/broker_cluster.rs`,
# eight to eleven minutes) spend most of their time waiting for killed brokers
# to come back. They and the broker harness's tests run beside the rest of
# the suite, with their own brokers on their own ports; their output is
# printed in full when they finish, and either stream failing fails the
# command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage() { echo "==> [${SECONDS}s] $*"; }

stage "setup"
bash tools/setup.sh
stage "fmt"
cargo fmt --all -- --check
stage "clippy"
cargo clippy --workspace --all-targets -- -D warnings
stage "doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
stage "build tests"
cargo test --workspace --no-run

# The side stream: the 3-broker cluster tests and the broker harness's own
# tests (half a minute to two minutes of broker starts and restarts, little CPU). The
# main stream skips exactly their tests, by exact name, as listed by the
# test binaries themselves.
side_tests=(broker_cluster broker_harness)
side_args=()
skips=()
for t in "${side_tests[@]}"; do
  side_args+=(--test "$t")
  listed=0
  while IFS= read -r name; do
    skips+=(--skip "$name")
    listed=$((listed + 1))
  done < <(cargo test -q --workspace --test "$t" -- --list --format terse 2>/dev/null | sed -n 's/: test$//p')
  if ((listed == 0)); then
    echo "test.sh: could not list the tests of tests/$t.rs" >&2
    exit 1
  fi
done
side_log=$(mktemp -t kstreams-side-stream.XXXXXX.log)
stage "tests (${side_tests[*]} beside the rest; their log: ${side_log})"
cargo test --workspace "${side_args[@]}" >"$side_log" 2>&1 &
side_pid=$!

main_rc=0
cargo test --workspace -- --exact "${skips[@]}" || main_rc=$?
stage "main stream done (exit ${main_rc}); waiting for the side stream"
side_rc=0
wait "$side_pid" || side_rc=$?
echo "==> side stream (${side_tests[*]}) output:"
cat "$side_log"
stage "side stream done (exit ${side_rc})"
if ((main_rc != 0 || side_rc != 0)); then
  echo "test.sh: the test suite failed (main stream exit ${main_rc}, side stream exit ${side_rc})" >&2
  exit 1
fi
