#!/usr/bin/env bash
# Stops the Ceph scripts/ceph-up.sh started (by the pids it wrote) and removes its directory.
CROOT=$1
for n in client.rgw osd.0 mon.a; do
  f="$CROOT/run/$n.pid"; [ -f "$f" ] || continue; p=$(cat "$f")
  kill "$p" 2>/dev/null || continue
  for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
done
rm -rf "$CROOT"
