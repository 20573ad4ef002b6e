#!/usr/bin/env bash
# Fetch the pinned Apache Kafka broker (see pom.xml) and its runtime dependencies
# into tools/kafka/lib/, using Maven Central.
#
#   bash tools/kafka/fetch.sh
#
# - Idempotent: does nothing when lib/.version already names the pinned version.
# - Concurrency-safe: an exclusive flock on lib/.fetch.lock serialises callers, so
#   several test binaries starting at once download the jars only once.
# - Atomic: jars are downloaded into a staging dir; lib/.version (the marker the
#   Rust testkit checks) is written last, only after a complete download.
#
# Needs: bash, flock (util-linux), mvn, a JDK. Maven's local repository is
# tools/kafka/.m2 (git-ignored), override with MAVEN_REPO_LOCAL=/path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/pom.xml"
lib="$here/lib"
marker="$lib/.version"
repo_local="${MAVEN_REPO_LOCAL:-$here/.m2}"

# Single source of truth for the version: <kafka.version> in pom.xml.
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n1)"
if [[ -z "$version" ]]; then
  echo "fetch.sh: could not read <kafka.version> from $pom" >&2
  exit 1
fi

if [[ -f "$marker" && "$(cat "$marker")" == "$version" ]]; then
  exit 0 # fast path, no lock needed
fi

for tool in mvn flock; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fetch.sh: '$tool' not found on PATH (install it: apt-get install -y maven util-linux)" >&2
    exit 1
  fi
done

mkdir -p "$lib"
exec 9>"$lib/.fetch.lock"
flock 9

# Another process may have finished the download while we waited for the lock.
if [[ -f "$marker" && "$(cat "$marker")" == "$version" ]]; then
  exit 0
fi

echo "fetch.sh: fetching Apache Kafka $version (kafka_2.13) and dependencies into $lib" >&2
start=$(date +%s)
staging="$lib/.staging.$$"
rm -rf "$staging"
trap 'rm -rf "$staging"' EXIT

if ! out="$(mvn -q -B -f "$pom" -Dmaven.repo.local="$repo_local" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$staging" 2>&1)"; then
  echo "$out" >&2
  echo "fetch.sh: Maven could not fetch org.apache.kafka:kafka_2.13:$version (see the error above)" >&2
  exit 1
fi

if ! compgen -G "$staging/kafka_2.13-$version.jar" >/dev/null; then
  echo "$out" >&2
  echo "fetch.sh: Maven succeeded but kafka_2.13-$version.jar is missing from $staging" >&2
  exit 1
fi

rm -f "$marker" "$lib"/*.jar
mv "$staging"/*.jar "$lib"/
echo "$version" >"$marker.tmp"
mv "$marker.tmp" "$marker"
echo "fetch.sh: Kafka $version ready ($(ls "$lib"/*.jar | wc -l) jars, $(($(date +%s) - start))s)" >&2
