#!/usr/bin/env bash
# Starts a throwaway single-node Ceph (1 monitor, 1 in-memory OSD, 1 RADOS
# Gateway) on 127.0.0.1 for the cloud server's S3 tests, creates a user and a
# bucket, and prints `CROOT=…` and the server's S3 settings as `NAME=value`
# lines. Installs Ceph from Debian's packages if missing. Run as root.
# Stop it with scripts/ceph-down.sh CROOT.
set -euo pipefail
if ! command -v radosgw >/dev/null 2>&1 || ! command -v ceph-osd >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends ceph-mon ceph-osd radosgw curl bc >/dev/null
fi
T0=$(date +%s.%N); t() { [ -n "${CEPH_UP_TRACE:-}" ] && echo "  +$(echo "$(date +%s.%N) - $T0" | bc | cut -c1-5)s $*" >&2 || true; }
CROOT=${CROOT:-$(mktemp -d /tmp/hitsave-ceph.XXXXXX)}
# Ports below the kernel's ephemeral range, free now (scripts/free_port.py).
MONPORT=${MONPORT:-$(python3 "$(dirname "$0")/free_port.py")}
RGWPORT=${RGWPORT:-$(python3 "$(dirname "$0")/free_port.py")}
[ "$RGWPORT" != "$MONPORT" ] && [ "$RGWPORT" != "$((MONPORT + 1))" ] || RGWPORT=$(python3 "$(dirname "$0")/free_port.py")
BUCKET=${BUCKET:-hitsave-test}
AK=${AK:-cephciaccesskey0001}; SK=${SK:-cephcisecretkey0000000000000000000000001}
mkdir -p "$CROOT"/{run,log,mon.a,osd.0,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$CROOT/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$((MONPORT+1)),v1:127.0.0.1:$MONPORT]
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms mon client mode = crc
ms client mode = crc
ms mon service mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon cluster mode = crc
run dir = $CROOT/run
admin socket = $CROOT/run/\$name.asok
log file = $CROOT/log/\$name.log
pid file = $CROOT/run/\$name.pid
keyring = $CROOT/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mon warn on insecure global id reclaim allowed = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data = $CROOT/mon.\$id
osd data = $CROOT/osd.\$id
osd objectstore = memstore
memstore device bytes = 2147483648
osd max object size = 134217728
paxos propose interval = 0.1
paxos min wait = 0.01
mon osd pool ec fast read = false
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$RGWPORT tcp_nodelay=1
rgw data = $CROOT/rgw
rgw dns name = localhost
CONF
C="-c $CROOT/ceph.conf"
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$((MONPORT+1)),v1:127.0.0.1:$MONPORT]" "$CROOT/monmap" >/dev/null
ceph-mon $C --mkfs -i a --monmap "$CROOT/monmap" >/dev/null 2>&1
ceph-mon $C -i a
t "mon started"
OSDID=$(timeout 30 ceph $C osd create)
ceph-osd $C -i "$OSDID" --mkfs --osd-uuid "$(cat /proc/sys/kernel/random/uuid)" >/dev/null 2>&1
ceph $C osd crush add "osd.$OSDID" 1.0 host=localhost root=default >/dev/null 2>&1 || \
  { ceph $C osd crush add-bucket localhost host >/dev/null; ceph $C osd crush move localhost root=default >/dev/null; ceph $C osd crush add "osd.$OSDID" 1.0 host=localhost >/dev/null; }
ceph-osd $C -i "$OSDID"
t "osd started"
timeout 60 radosgw $C -n client.rgw
t "radosgw returned"
for i in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$RGWPORT/" && break; sleep 0.1; done
t "rgw answers http"
radosgw-admin $C user create --uid=ci --display-name=ci --access-key="$AK" --secret="$SK" >/dev/null
t "user created"
curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK" -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" -X PUT "http://127.0.0.1:$RGWPORT/$BUCKET"
t "bucket created"
echo "CROOT=$CROOT"
echo "HITSAVE_SERVER_S3_ENDPOINT=http://127.0.0.1:$RGWPORT"
echo "HITSAVE_SERVER_S3_BUCKET=$BUCKET"
echo "AWS_ACCESS_KEY_ID=$AK"
echo "AWS_SECRET_ACCESS_KEY=$SK"
