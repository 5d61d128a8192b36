#!/usr/bin/env bash
# Sets up a fresh machine, builds Junction and runs its main job: the junctiond switch
# daemon on the embedded demo configuration (ISO 8583 on 127.0.0.1:8583, HTTP on
# 127.0.0.1:8080, data in ./data). Extra arguments go to junctiond. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --build-only
cargo build --release -p junctiond --bins
exec "${CARGO_TARGET_DIR:-target}/release/junctiond" "$@"
