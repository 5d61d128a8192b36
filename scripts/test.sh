#!/usr/bin/env bash
# Runs Junction's whole test suite, after installing what the tests need (clang/libclang
# for RocksDB, xmllint for the ISO 20022 schema checks, pyiso8583/promptpay/pypix for the
# interop tests). The end-to-end tests start the real binaries, so they are built first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --workspace --bins
cargo test --release --workspace
