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
# about eleven minutes) spend most of their time waiting for killed brokers
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
# tests (about two minutes of broker starts and restarts, little CPU). The
# main stream skips exactly their tests, by exact name, as listed by the
# test binaries themselves.
side_tests=(broker_cluster broker_harness)
side_args=()
skips=()
for t in "${side_tests[@]}"; do
  side_args+=(--test "$t")
  while IFS= read -r name; do
    skips+=(--skip "$name")
  done < <(cargo test -q --workspace --test "$t" -- --list --format terse 2>/dev/null | sed -n 's/: test$//p')
done
if ((${#skips[@]} == 0)); then
  echo "test.sh: could not list the side stream's tests" >&2
  exit 1
fi
cluster_log=$(mktemp -t kstreams-broker-cluster.XXXXXX.log)
stage "tests (${side_tests[*]} beside the rest; their log: ${cluster_log})"
cargo test --workspace "${side_args[@]}" >"$cluster_log" 2>&1 &
cluster_pid=$!

main_rc=0
cargo test --workspace -- --exact "${skips[@]}" || main_rc=$?
stage "main stream done (exit ${main_rc}); waiting for the side stream"
cluster_rc=0
wait "$cluster_pid" || cluster_rc=$?
echo "==> side stream (${side_tests[*]}) output:"
cat "$cluster_log"
stage "side stream done (exit ${cluster_rc})"
if ((main_rc != 0 || cluster_rc != 0)); then
  echo "test.sh: the test suite failed (main stream exit ${main_rc}, side stream exit ${cluster_rc})" >&2
  exit 1
fi
