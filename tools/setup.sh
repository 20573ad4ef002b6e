#!/usr/bin/env bash
# Installs what building and testing kstreams needs on a fresh Debian machine
# with Rust (rustup), Java 17 and Maven: libclang (RocksDB's bindgen), clang,
# cmake, pkg-config with the OpenSSL, Cyrus SASL and libcurl headers
# (librdkafka's TLS, SASL/GSSAPI and OAUTHBEARER/OIDC), the openssl tool (the
# tests' certificates), the rustfmt/clippy components, and the pinned Apache
# Kafka jars from Maven Central (tools/kafka/fetch.sh). Idempotent: fast when
# all is there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in cargo rustup java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup: '$tool' not found on PATH. kstreams needs Rust (rustup), Java 17 and Maven." >&2
    exit 1
  fi
done

missing=()
for pkg in libclang-dev clang cmake pkg-config libssl-dev libsasl2-dev libcurl4-openssl-dev openssl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || echo "setup: warning: could not add rustfmt/clippy" >&2
bash tools/kafka/fetch.sh
