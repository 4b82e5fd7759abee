#!/usr/bin/env bash
# Builds the Python SDK's extension in the dev profile (sharing target/ with
# cargo test, so wasmtime is not compiled twice) and installs it into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f target/wheels/hitsave-*.whl
.venv/bin/maturin build --quiet -m bindings/python/Cargo.toml --profile dev -o target/wheels
.venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels/hitsave-*.whl
