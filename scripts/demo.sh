#!/usr/bin/env bash
# Sets up (toolchain, Python environment, both SDKs) and runs the demo on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/python-dev.sh >/dev/null
node bindings/node/scripts/build.js --dev >/dev/null 2>&1 || node bindings/node/scripts/build.js --dev
.venv/bin/python examples/demo.py
