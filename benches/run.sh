#!/usr/bin/env bash
# Benchmarks of kstreams against the broker's ceiling, Kafka Streams and Quix
# Streams (issue 7). Never part of `cargo test` or .ci/run.
#
#   bash benches/run.sh                                   # full sizes (long)
#   KSTREAMS_BENCH_LINES=200000 KSTREAMS_BENCH_ORDERS=100000 \
#   KSTREAMS_BENCH_STATE_KEYS=20000,200000 bash benches/run.sh   # a quick run
#   bash benches/run.sh --phases throughput --cases ceiling-wc,kstreams-wc-eos
#
# Sets up what is missing (idempotent): the Kafka jars (tools/kafka/fetch.sh),
# the release binaries (workspace-wide build), the Kafka Streams jar
# (benches/java, `mvn -q package`), a Python venv with Quix Streams
# (benches/.venv, git-ignored). Then starts ONE fresh local Kafka broker, loads
# the input once, runs every case interleaved, prints the tables and replaces
# the generated section of benches/RESULTS.md (KSTREAMS_BENCH_RESULTS=path to
# write elsewhere). Extra arguments go to `kstreams-bench run` (see --help).
#
# Sizes (environment): KSTREAMS_BENCH_LINES (5000000), KSTREAMS_BENCH_ORDERS
# (2000000), KSTREAMS_BENCH_ROUNDS (1), KSTREAMS_BENCH_STATE_KEYS
# (100000,1000000), KSTREAMS_BENCH_PHASES (throughput,latency,recovery).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { echo "run.sh: $*" >&2; }

say "Kafka jars"
bash tools/kafka/fetch.sh

say "release binaries (cargo build --release --workspace --bins --examples)"
cargo build --release --workspace --bins --examples

jar=benches/java/target/kstreams-bench-java.jar
if [[ ! -f "$jar" || -n "$(find benches/java/src benches/java/pom.xml -newer "$jar" -print -quit)" ]]; then
  say "Kafka Streams jobs (mvn -q package)"
  (cd benches/java && mvn -q -Dmaven.repo.local="$root/tools/kafka/.m2" package)
fi

quix_version="${KSTREAMS_BENCH_QUIX_VERSION:-3.28.1}"
if ! benches/.venv/bin/python -c "import quixstreams" 2>/dev/null; then
  say "Quix Streams $quix_version (venv benches/.venv)"
  python3 -m venv benches/.venv
  benches/.venv/bin/pip install -q "quixstreams==$quix_version"
fi

lines="${KSTREAMS_BENCH_LINES:-5000000}"
orders="${KSTREAMS_BENCH_ORDERS:-2000000}"
rounds="${KSTREAMS_BENCH_ROUNDS:-1}"
state_keys="${KSTREAMS_BENCH_STATE_KEYS:-100000,1000000}"
phases="${KSTREAMS_BENCH_PHASES:-throughput,latency,recovery}"
results="${KSTREAMS_BENCH_RESULTS:-benches/RESULTS.md}"

cmdline="KSTREAMS_BENCH_LINES=$lines KSTREAMS_BENCH_ORDERS=$orders KSTREAMS_BENCH_ROUNDS=$rounds KSTREAMS_BENCH_STATE_KEYS=$state_keys KSTREAMS_BENCH_PHASES=$phases bash benches/run.sh${*:+ $*}"
say "$cmdline"
exec target/release/kstreams-bench run \
  --lines "$lines" --orders "$orders" --rounds "$rounds" \
  --state-keys "$state_keys" --phases "$phases" \
  --results "$results" --command-line "$cmdline" "$@"
