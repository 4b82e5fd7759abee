#!/usr/bin/env bash
# Sets up (toolchain, Python environment, the SDK) and runs the demo on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/python-dev.sh >/dev/null
.venv/bin/python examples/demo.py
