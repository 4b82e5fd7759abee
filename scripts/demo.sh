#!/usr/bin/env bash
# Sets up and runs the demo on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --quiet --locked -p hitsave-host --example demo
