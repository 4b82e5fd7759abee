#!/usr/bin/env bash
# Installs what building and testing HitSave needs on a fresh machine:
# the pinned Rust toolchain's wasm target and tools, and the Python packages
# the spec check uses. Safe to run again; it does nothing that is done.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^$toolchain"; then
  rustup toolchain install "$toolchain" --profile minimal
fi
installed_targets=$(rustup target list --installed --toolchain "$toolchain")
grep -qx wasm32-unknown-unknown <<<"$installed_targets" || rustup target add wasm32-unknown-unknown --toolchain "$toolchain"
installed_components=$(rustup component list --installed --toolchain "$toolchain")
for component in rustfmt clippy; do
  grep -q "^$component" <<<"$installed_components" || rustup component add "$component" --toolchain "$toolchain"
done

# Python: one virtual environment for building the SDK and running its tests
# and the independent spec check (tests/spec/check_values.py needs BLAKE3).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  'maturin>=1.9.4,<2' 'pytest>=8' 'numpy>=1.26' 'blake3>=1,<2' 'pandas>=2' 'ipython>=8' 'pyarrow>=14' 'polars>=1' \
  'mypy>=1.18' 'schemathesis==4.32.5'

# Node (the Node SDK and its tests): the image has Node 20; a bare Debian gets it from its packages.
if ! command -v node >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
# What the Node tests run TypeScript with (tsx, pinned by its package-lock.json).
npm ci --silent --ignore-scripts --no-audit --no-fund --prefix bindings/node/test/typescript
