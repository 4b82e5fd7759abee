#!/usr/bin/env bash
# Sets up and runs every test. This is the command the README gives and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

step() { printf '\n== %s\n' "$*"; }

step "formatting"
cargo fmt --all -- --check

step "every build shares one dependency graph (hack/Cargo.toml is current)"
python3 scripts/workspace_hack.py --check

step "the committed core component is what a fresh build produces"
cargo run --quiet --locked -p hitsave-xtask -- component --check

step "tests/vectors is current"
cargo run --quiet --locked -p hitsave-xtask -- vectors --check

step "lints"
cargo clippy --quiet --locked --workspace --all-targets -- -D warnings

step "Rust tests (core natively, host with the embedded component)"
cargo test --locked --workspace

step "the cloud server's API suite again, on a real PostgreSQL and a real S3 store (Ceph RADOS Gateway), throwaway, on 127.0.0.1, and two servers behind HAProxy"
[ -x /usr/sbin/haproxy ] || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
pg_env=$(bash scripts/postgres-up.sh)
PGROOT=$(sed -n 's/^PGROOT=//p' <<<"$pg_env")
CROOT=""
cleanup() {
  bash scripts/postgres-down.sh "$PGROOT"
  [ -z "$CROOT" ] || bash scripts/ceph-down.sh "$CROOT"
}
trap cleanup EXIT
# Ceph is chatty on stderr: kept in a file, shown if it does not come up.
ceph_log=$(mktemp /tmp/hitsave-ceph-up.XXXXXX)
ceph_env=$(bash scripts/ceph-up.sh 2>"$ceph_log") || { echo "ceph-up.sh failed:" >&2; tail -30 "$ceph_log" >&2; exit 1; }
rm -f "$ceph_log"
CROOT=$(sed -n 's/^CROOT=//p' <<<"$ceph_env")
(
  set -a
  eval "$(grep -v '^CROOT=' <<<"$ceph_env")"
  set +a
  HITSAVE_TEST_DATABASE_URL=$(sed -n 's/^DATABASE_URL=//p' <<<"$pg_env") \
  HITSAVE_TEST_TLS_DATABASE_URL=$(sed -n 's/^TLS_DATABASE_URL=//p' <<<"$pg_env") \
  HITSAVE_TEST_TLS_CA=$(sed -n 's/^TLS_CA=//p' <<<"$pg_env") \
  HITSAVE_TEST_TLS_OTHER_CA=$(sed -n 's/^TLS_OTHER_CA=//p' <<<"$pg_env") \
  HITSAVE_TEST_HAPROXY=/usr/sbin/haproxy \
    cargo test --locked -p hitsave-server --test api
)

step "the cloud server survives a PostgreSQL restart and outage, and an object-store outage (alone: it stops them)"
(
  set -a
  eval "$(grep -v '^CROOT=' <<<"$ceph_env")"
  set +a
  HITSAVE_TEST_DATABASE_URL=$(sed -n 's/^DATABASE_URL=//p' <<<"$pg_env") HITSAVE_TEST_PGROOT=$PGROOT HITSAVE_TEST_CROOT=$CROOT \
    cargo test --locked -p hitsave-server --test pg_restart
)

step "schemathesis --checks all against server/openapi.json, on a real server"
bash scripts/schemathesis.sh

step "an independent implementation of docs/spec/values.md agrees with the vectors"
.venv/bin/python tests/spec/check_values.py

step "Python SDK: build the extension (dev profile, the same target dir) and install it"
bash scripts/python-dev.sh

step "Node SDK: build the addon (dev profile, the same target dir)"
node bindings/node/scripts/build.js --dev

step "Node tests"
node --test bindings/node/test/

step "the cloud server binary for the cross-language cloud tests"
cargo build --quiet --locked -p hitsave-server

step "Python tests, and Python and Node sharing one store and one cloud (tests/interop)"
.venv/bin/python -m pytest -q bindings/python/tests tests/interop

step "packages: the release wheel, the sdist and the npm packages (scripts/package.sh), installed without Rust (tests/packaging)"
bash scripts/package.sh
.venv/bin/python -m pytest -q -s tests/packaging

step "disk used by this run's builds"
du -sh target 2>/dev/null || true
