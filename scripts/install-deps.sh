#!/usr/bin/env bash
# Installs what building and testing Junction needs on a fresh Debian (12 or 13) machine:
# clang/libclang (RocksDB's bindings are generated with bindgen), libxml2-dev and pkg-config
# (the daemon validates ISO 20022 messages with libxml2), xmllint (the ISO 20022
# schema checks), nats-server (JetStream: the replication tests start their own clusters),
# chromium and chromium-driver (the console's test drives a headless browser)
# and the Python packages of the interop tests, pinned in tests/requirements.txt, in a
# virtual environment ($JUNCTION_VENV, default ~/.cache/junction-venv; never the
# system's Python). Skips what is present.
# With --build-only, only what building needs (scripts/run.sh): no test tools, no Python.
set -euo pipefail

build_only=false
[ "${1:-}" = "--build-only" ] && build_only=true

apt_packages=(clang libclang-dev libxml2-dev pkg-config)
# python3-dev and build-essential: a pinned package without a wheel for this Python
# (libscrc on Debian 13's 3.13) builds from source.
$build_only || apt_packages+=(libxml2-utils nats-server python3-venv python3-dev build-essential chromium chromium-driver)
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

if ! $build_only; then
  venv=${JUNCTION_VENV:-$HOME/.cache/junction-venv}
  requirements="$(dirname "$0")/../tests/requirements.txt"
  stamp="$venv/.requirements"
  if [ ! -x "$venv/bin/python3" ] || ! cmp -s "$requirements" "$stamp"; then
    echo "installing the interop tests' Python packages into $venv (tests/requirements.txt)"
    python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check -r "$requirements"
    # pypix 0.2.0 says it needs Python < 3.13 but works on it (see tests/requirements.txt).
    if "$venv/bin/python3" -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then
      "$venv/bin/python3" -m pip install -q --disable-pip-version-check --no-deps --ignore-requires-python pypix==0.2.0
    fi
    cp "$requirements" "$stamp"
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust from https://rustup.rs first" >&2
  exit 1
fi
