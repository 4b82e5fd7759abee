#!/usr/bin/env bash
# Stops the cluster scripts/postgres-up.sh started and removes its directory.
set -uo pipefail
PGROOT=$1
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" = 0 ]; then AS="runuser -u postgres --"; else AS=""; fi
$AS "$PGBIN/pg_ctl" -D "$PGROOT/data" -m immediate -w stop >/dev/null 2>&1 || true
rm -rf "$PGROOT"
