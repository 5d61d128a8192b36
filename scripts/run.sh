#!/usr/bin/env bash
# Sets up a fresh machine, builds Junction and runs its main job on the embedded default
# configuration. Pass extra arguments through to it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --workspace
exec cargo run --release -q -p junction-ledger --example demo -- "$@"
