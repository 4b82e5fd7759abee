#!/usr/bin/env bash
# Builds the distributable packages into dist/ (docs/development.md, "Packages"):
#
#   dist/hitsave-<v>-cp311-abi3-manylinux_*_x86_64.whl   release wheel, CLI and server inside
#   dist/hitsave-<v>.tar.gz                               sdist: builds with any Rust >= 1.95
#   dist/hitsave-<v>.tgz                                  the npm package (JS; no install script)
#   dist/hitsave-linux-x64-gnu-<v>.tgz                    its prebuilt addon (@hitsave/linux-x64-gnu)
#
# Release builds share target/ with everything else; nothing already built is
# built again. scripts/test.sh runs this, then tests/packaging installs what it made.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/maturin ] || bash scripts/setup.sh

rm -rf dist
mkdir -p dist

echo "hitsave: the release wheel (Python >= 3.11, abi3)" >&2
# --compatibility pypi: maturin audits the library's glibc symbols and tags the
# wheel manylinux_2_X accordingly (refusing one it cannot tag).
.venv/bin/maturin build --release --locked --strip --compatibility pypi \
  -m bindings/python/Cargo.toml --out dist

echo "hitsave: the sdist" >&2
.venv/bin/maturin sdist -m bindings/python/Cargo.toml --out dist

echo "hitsave: the release Node addon and the two npm packages" >&2
cargo build --release --locked -p hitsave-node
target_dir=${CARGO_TARGET_DIR:-target}
platform=linux-x64-gnu
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r "bindings/node/npm/$platform" "$stage/$platform"
cp "$target_dir/release/libhitsave_node.so" "$stage/$platform/hitsave.$platform.node"
strip --strip-unneeded "$stage/$platform/hitsave.$platform.node"
npm pack --silent "$stage/$platform" --pack-destination dist >/dev/null
# The JS package is bindings/node as it is (its `files` leave out any local build).
npm pack --silent ./bindings/node --pack-destination dist >/dev/null

ls -l dist >&2
