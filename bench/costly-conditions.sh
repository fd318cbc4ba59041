#!/usr/bin/env bash
# Costly conditions beside other requests: a `deny` whose condition loops
# over the call's list a hundred times (within the documented bound, about
# half a second a call), 8 clients sending such calls, and a probe of
# /readyz and of a small decision every 0.2 s on the same server.
#
# Loopback only, bounded in time (LOAD_SECONDS, 12 by default).
# Usage: bench/costly-conditions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NEED_OHA=0
# Both cores for the server: the point is what its threads do.
PIN=${PIN:-0}
BARE_PORT=
WARDEN_PORT=${WARDEN_PORT:-18085}
# shellcheck source=bench/lib.sh
source bench/lib.sh
sleep 0.5
python3 - "http://127.0.0.1:$WARDEN_PORT" "$key" "${LOAD_SECONDS:-12}" <<'PY'
import json, sys, threading, time, urllib.request
base, key, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + key, "content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))
condition = " || ".join(f"args.l.exists(x, x == -{k})" for k in range(1, 101))
post("/api/v1/policies", {"name": "costly", "action_pattern": "cost.*", "decision": "deny",
                          "condition": condition})
call = json.dumps({"agent_id": "cost-bot", "tool_name": "cost.run",
                   "tool_args": {"l": list(range(9_900))}}).encode()
post("/api/v1/enforce", {"agent_id": "probe-bot", "tool_name": "files.read"})
stop = time.time() + seconds
costly, probes = [], []
def send_costly():
    while time.time() < stop:
        req = urllib.request.Request(base + "/api/v1/enforce", data=call,
            headers={"Authorization": "Bearer " + key, "content-type": "application/json"})
        t = time.time(); urllib.request.urlopen(req, timeout=60).read(); costly.append(time.time() - t)
clients = [threading.Thread(target=send_costly) for _ in range(8)]
for c in clients: c.start()
time.sleep(1)
while time.time() < stop - 1:
    t = time.time(); urllib.request.urlopen(base + "/readyz", timeout=30).read(); ready = time.time() - t
    t = time.time(); post("/api/v1/enforce", {"agent_id": "probe-bot", "tool_name": "files.read"})
    probes.append((ready, time.time() - t)); time.sleep(0.2)
for c in clients: c.join()
ms = lambda xs, q: sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000
r = [p[0] for p in probes]; d = [p[1] for p in probes]
print(f"| probes | /readyz p50 ms | /readyz max ms | small decision p50 ms | small decision max ms | costly calls | costly p50 ms |")
print(f"|---:|---:|---:|---:|---:|---:|---:|")
print(f"| {len(probes)} | {ms(r, .5):.0f} | {max(r)*1000:.0f} | {ms(d, .5):.0f} | {max(d)*1000:.0f} | {len(costly)} | {ms(costly, .5):.0f} |")
PY
