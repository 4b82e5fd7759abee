#!/usr/bin/env bash
# Stops, starts or restarts the cluster scripts/postgres-up.sh started (for the
# server's database-restart test): postgres-ctl.sh PGROOT stop|start|restart.
set -euo pipefail
PGROOT=$1
ACTION=$2
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
if [ "$(id -u)" = 0 ]; then AS="runuser -u postgres --"; else AS=""; fi
# start and restart reuse the options of the first start (postmaster.opts).
case "$ACTION" in
  stop) $AS "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast -w stop >/dev/null ;;
  start) $AS "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 \
           -o "$(sed -e 's/^[^ ]* //' -e 's/"//g' "$PGROOT/data/postmaster.opts" | sed -e 's/-D [^ ]*//')" start >/dev/null ;;
  restart) $AS "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -m fast -w -t 60 restart >/dev/null ;;
  *) echo "usage: postgres-ctl.sh PGROOT stop|start|restart" >&2; exit 2 ;;
esac
