#!/usr/bin/env bash
# The scale-out benchmark (bench/src/scaleout.rs): a throwaway PostgreSQL and
# Ceph RADOS Gateway on 127.0.0.1 (the test command's scripts), HAProxy from
# Debian's packages, the release hitsave-server; writes its section of
# docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/sbin/haproxy ] || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
cargo build --locked --release -p hitsave-server -p hitsave-bench
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
set -a
eval "$(grep -v '^CROOT=' <<<"$ceph_env")"
set +a
HITSAVE_BENCH_DATABASE_URL=$(sed -n 's/^DATABASE_URL=//p' <<<"$pg_env") \
HITSAVE_BENCH_HAPROXY=/usr/sbin/haproxy \
HITSAVE_BENCH_SERVER="${CARGO_TARGET_DIR:-target}/release/hitsave-server" \
  "${CARGO_TARGET_DIR:-target}/release/hitsave-bench" scaleout
