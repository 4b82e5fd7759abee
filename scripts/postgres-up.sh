#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 for the cloud tests and
# prints `DATABASE_URL=…` and `PGROOT=…`. Installs PostgreSQL from Debian's
# packages if the machine has none. Stop it with scripts/postgres-down.sh PGROOT.
set -euo pipefail
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=${PGPORT:-$((20000 + RANDOM % 20000))}
PGROOT=$(mktemp -d /tmp/hitsave-pg.XXXXXX)
mkdir -p "$PGROOT/data" "$PGROOT/sock"
if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$PGROOT"; AS="runuser -u postgres --"; else AS=""; fi
$AS "$PGBIN/initdb" -D "$PGROOT/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync --no-instructions >"$PGROOT/initdb.log"
$AS "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT/sock -c max_connections=300" start >/dev/null
echo "PGROOT=$PGROOT"
echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres"
