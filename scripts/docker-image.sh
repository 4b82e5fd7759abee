#!/usr/bin/env bash
# Builds the server image from deploy/Dockerfile: the release hitsave-server
# (the shared target directory, so nothing already built is built again) and
# the Dockerfile are the whole build context. Usage: docker-image.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-hitsave-server:latest}
cargo build --locked --release -p hitsave-server
TARGET=${CARGO_TARGET_DIR:-target}
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
cp "$TARGET/release/hitsave-server" deploy/Dockerfile "$CONTEXT/"
docker build -q -t "$TAG" "$CONTEXT" >/dev/null
echo "$TAG"
