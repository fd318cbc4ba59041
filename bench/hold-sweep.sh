#!/usr/bin/env bash
# How soon a policy change denies the holds that policy left pending: the
# change's own request denies the first page, the background sweep the
# rest (docs/enforcement.md, the audit log). A fresh `warden serve` with a
# step-up policy and HOLDS pending holds; the policy is PATCHed, and the
# pending list is read every 0.1 s until it is empty. Prints the PATCH's
# answer time and when the last hold was denied.
#
# On SQLite by default; DATABASE_URL=postgres://… runs it on PostgreSQL
# (the database must exist and be empty). Loopback only, bounded by
# HOLDS. Usage: HOLDS=1500 bench/hold-sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."

HOLDS=${HOLDS:-1500}
PORT=${PORT:-18096}
cargo build --release -q -p warden
bin=target/release
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

store=()
if [ -n "${DATABASE_URL:-}" ]; then store=(--database-url "$DATABASE_URL"); fi
export WARDEN_MASTER_KEY
WARDEN_MASTER_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
$bin/warden init --data-dir "$work/data" "${store[@]}" --json > /dev/null
# A plan far above the load, so that the limiter never refuses.
key=$($bin/warden org create Sweep --plan custom --rate-limit-per-minute 6000000 --burst 100000 \
        --data-dir "$work/data" "${store[@]}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["live_key"])')
RUST_LOG=warn $bin/warden serve --data-dir "$work/data" --listen "127.0.0.1:$PORT" "${store[@]}" > "$work/serve.out" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

backend=SQLite; [ -n "${DATABASE_URL:-}" ] && backend=PostgreSQL
echo "Machine: $(nproc) cores, $(uname -sr); store: $backend; $HOLDS pending holds"
python3 - "http://127.0.0.1:$PORT" "$key" "$HOLDS" <<'PY'
import json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + key, "content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
policy = call("POST", "/api/v1/policies",
              {"name": "sweep", "action_pattern": "pay.*", "decision": "step_up"})["data"]["id"]
with ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda i: call("POST", "/api/v1/enforce",
        {"agent_id": "sweep-bot", "tool_name": "pay.x", "tool_args": {"i": i}}), range(n)))
def pending():
    total, cursor = 0, None
    while True:
        page = call("GET", "/api/v1/holds?status=pending&limit=200" + (f"&cursor={cursor}" if cursor else ""))
        total += len(page["data"])
        cursor = page.get("next_cursor")
        if not cursor:
            return total
assert pending() == n, "every call was held"
sent = time.perf_counter()
call("PATCH", f"/api/v1/policies/{policy}", {"description": "changed"})
answered = time.perf_counter()
while pending() > 0:
    time.sleep(0.1)
done = time.perf_counter()
print(f"PATCH answered in {answered - sent:.2f} s; the last of {n:,} holds denied {done - sent:.2f} s after it was sent")
PY
