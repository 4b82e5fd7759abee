#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 for the cloud tests and
# prints `DATABASE_URL=…` and `PGROOT=…`, and for the TLS tests
# `TLS_DATABASE_URL=…` (a role refused without TLS), `TLS_CA=…` and
# `TLS_OTHER_CA=…`. Installs PostgreSQL from Debian's
# packages if the machine has none. Stop it with scripts/postgres-down.sh PGROOT.
set -euo pipefail
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGPORT=${PGPORT:-$(python3 "$(dirname "$0")/free_port.py")}
PGROOT=$(mktemp -d /tmp/hitsave-pg.XXXXXX)
mkdir -p "$PGROOT/data" "$PGROOT/sock"
if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$PGROOT"; AS="runuser -u postgres --"; else AS=""; fi
$AS "$PGBIN/initdb" -D "$PGROOT/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync --no-instructions >"$PGROOT/initdb.log"
# TLS, as a managed PostgreSQL has it: a throwaway CA and a certificate for
# "localhost" (no IP address: verify-full to 127.0.0.1 must fail), a second
# CA that signed nothing, and a role that may connect only over TLS.
TLS=$PGROOT/tls
mkdir -p "$TLS"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
for ca in ca other-ca; do
  openssl req -x509 "${ec[@]}" -days 3 -subj "/CN=hitsave test $ca" -keyout "$TLS/$ca.key" -out "$TLS/$ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
done
openssl req "${ec[@]}" -subj "/CN=localhost" -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>/dev/null
openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial -days 3 \
  -out "$TLS/server.pem" -extfile <(printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n') 2>/dev/null
chmod 600 "$TLS/server.key"
[ -z "$AS" ] || chown -R postgres:postgres "$TLS"
printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" "$TLS/server.pem" "$TLS/server.key" >>"$PGROOT/data/postgresql.conf"
hba=$(cat "$PGROOT/data/pg_hba.conf")
printf 'hostnossl all tlsonly 127.0.0.1/32 reject\nhostssl all tlsonly 127.0.0.1/32 trust\n%s\n' "$hba" >"$PGROOT/data/pg_hba.conf"
$AS "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT/sock -c max_connections=300" start >/dev/null
$AS "$PGBIN/psql" -h "$PGROOT/sock" -p "$PGPORT" -U postgres -d postgres -qc "CREATE ROLE tlsonly LOGIN SUPERUSER" >/dev/null
echo "PGROOT=$PGROOT"
echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres"
echo "TLS_DATABASE_URL=postgres://tlsonly@127.0.0.1:$PGPORT/postgres"
echo "TLS_CA=$TLS/ca.pem"
echo "TLS_OTHER_CA=$TLS/other-ca.pem"
