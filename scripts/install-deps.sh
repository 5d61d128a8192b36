#!/usr/bin/env bash
# Installs what building and testing Junction needs on a fresh Debian machine:
# clang/libclang (RocksDB's bindings are generated with bindgen), xmllint (the ISO 20022
# schema checks), nats-server (JetStream: the replication tests start their own clusters)
# and the Python packages of the interop tests. Skips what is present.
# With --build-only, only what building needs (scripts/run.sh): no test tools.
set -euo pipefail

build_only=false
[ "${1:-}" = "--build-only" ] && build_only=true

apt_packages=(clang libclang-dev)
$build_only || apt_packages+=(libxml2-utils python3-pip nats-server)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python_packages=(pyiso8583 promptpay pypix)
if ! $build_only && ! python3 -c 'import iso8583, promptpay, pypix' >/dev/null 2>&1; then
  echo "installing Python packages: ${python_packages[*]}"
  python3 -m pip install -q --disable-pip-version-check "${python_packages[@]}" 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "${python_packages[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust from https://rustup.rs first" >&2
  exit 1
fi
