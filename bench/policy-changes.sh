#!/usr/bin/env bash
# How long a policy change takes as an organization's policies grow: each
# create recompiles the organization's set before it answers, on a thread
# that serves requests. Creates POLICIES policies (1,500 by default), each
# with a condition of its own, one at a time, and prints the latency of the
# first and the last 50 creates.
#
# Loopback only; one client. Usage: bench/policy-changes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NEED_OHA=0
BARE_PORT=
WARDEN_PORT=${WARDEN_PORT:-18086}
# shellcheck source=bench/lib.sh
source bench/lib.sh
sleep 0.5
python3 - "http://127.0.0.1:$WARDEN_PORT" "$key" "${POLICIES:-1500}" <<'PY'
import json, statistics, sys, time, urllib.request
base, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def create(body):
    req = urllib.request.Request(base + "/api/v1/policies", data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + key, "content-type": "application/json"})
    began = time.perf_counter()
    urllib.request.urlopen(req).read()
    return (time.perf_counter() - began) * 1000
took = []
for i in range(n):
    condition = (f"args.amount > {i} && (args.currency == 'EUR' || args.to.startsWith('DE'))"
                 f" && !(tool in ['a{i}', 'b{i}', 'c{i}'])")
    took.append(create({"name": f"p{i}", "action_pattern": f"ns{i}.*", "decision": "deny",
                        "condition": condition}))
first, last = sorted(took[:50]), sorted(took[-50:])
print(f"Policy creates, one client: the first 50 p50 {statistics.median(first):.1f} ms, max {first[-1]:.1f} ms; "
      f"the last 50 (at {n - 50:,} to {n:,} policies) p50 {statistics.median(last):.1f} ms, max {last[-1]:.1f} ms")
PY
