#!/usr/bin/env bash
# Stops or starts the RADOS Gateway of the Ceph scripts/ceph-up.sh started
# (for the server's object-store outage test): ceph-ctl.sh CROOT stop-rgw|start-rgw.
set -euo pipefail
CROOT=$1
ACTION=$2
PIDFILE=$CROOT/run/client.rgw.pid
PORT=$(sed -n 's/^rgw frontends = .*endpoint=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$CROOT/ceph.conf")
case "$ACTION" in
  stop-rgw)
    p=$(cat "$PIDFILE")
    kill "$p"
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    rm -f "$PIDFILE" ;;
  start-rgw)
    timeout 60 radosgw -c "$CROOT/ceph.conf" -n client.rgw
    for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && exit 0; sleep 0.1; done
    echo "radosgw did not answer on port $PORT" >&2; exit 1 ;;
  *) echo "usage: ceph-ctl.sh CROOT stop-rgw|start-rgw" >&2; exit 2 ;;
esac
