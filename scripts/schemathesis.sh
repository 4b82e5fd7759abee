#!/usr/bin/env bash
# Schemathesis (the real tool, pinned in scripts/setup.sh) with `--checks all`
# against server/openapi.json, on a real hitsave-server (the debug build the
# Rust tests made) on 127.0.0.1 with the embedded storage. What the schema
# cannot say is in server/schemathesis.toml. A fixed seed keeps runs
# repeatable; HITSAVE_SCHEMATHESIS_EXAMPLES (default 40) sets the depth.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --quiet --locked -p hitsave-server
DATA=$(mktemp -d /tmp/hitsave-schemathesis.XXXXXX)
ADMIN=schemathesis-admin-$RANDOM$RANDOM
OUT="$DATA/server.out"
HITSAVE_SERVER_ADMIN_TOKEN=$ADMIN HITSAVE_SERVER_LOG=off HITSAVE_SERVER_DATABASE_URL= \
  "$TARGET/debug/hitsave-server" serve --listen 127.0.0.1:0 --data "$DATA/data" --create-project schemathesis >"$OUT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do grep -q '^listening on ' "$OUT" && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$OUT")
KEY=$(sed -n 's/^project schemathesis: //p' "$OUT")
[ -n "$URL" ] && [ -n "$KEY" ] || { echo "the server did not start" >&2; exit 1; }
# A second project whose key does the revoking (server/schemathesis.toml).
REVOKER=$(.venv/bin/python - "$URL" "$ADMIN" <<'PY'
import json, sys, urllib.request
url, admin = sys.argv[1:]
request = urllib.request.Request(f"{url}/v1/projects", data=json.dumps({"name": "schemathesis-revoker"}).encode(),
                                 headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request))["key"])
PY
)
HITSAVE_SCHEMATHESIS_ADMIN=$ADMIN HITSAVE_SCHEMATHESIS_REVOKER=$REVOKER .venv/bin/schemathesis --config-file server/schemathesis.toml \
  run server/openapi.json --url "$URL" --checks all -H "Authorization: Bearer $KEY" \
  --max-examples "${HITSAVE_SCHEMATHESIS_EXAMPLES:-40}" --seed 20261206 --no-color
