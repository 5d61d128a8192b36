#!/usr/bin/env bash
# Runs Junction's whole test suite, after installing what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo test --release --workspace
