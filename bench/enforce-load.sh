#!/usr/bin/env bash
# Load benchmark of the decision hot path: POST /api/v1/enforce on
# `warden serve` (embedded SQLite) with 1,000 policies, each decision's
# audit record durable before the answer, beside the same route on the bare
# endpoint (crates/warden-bench) in the same run; then how fast a hold
# approved through the API wakes its long-polling agent.
#
# Loopback only and bounded in time: every oha run stops after $DURATION.
# Servers pinned to core 1 and oha to core 0 where there are two cores.
# Needs oha (cargo install oha --locked). Usage: bench/enforce-load.sh
# After the fixed-rate run, bench/sync-probe.py measures the disk alone at
# the same rate: the sync tail no server can go under on this disk.
# Tunables: DURATION (10s, in seconds), CONNECTIONS (32), RATE (2000), POLICIES (1000),
# PIN (1; 0 lets the servers and oha share both cores).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
RATE=${RATE:-2000}
POLICIES=${POLICIES:-1000}
WARDEN_PORT=${WARDEN_PORT:-18083}
BARE_PORT=${BARE_PORT:-18084}

# shellcheck source=bench/lib.sh
source bench/lib.sh
sleep 0.5

W="http://127.0.0.1:$WARDEN_PORT"; B="http://127.0.0.1:$BARE_PORT"
# The policies (the mix of benches/policy_eval.rs), a registered agent, and
# one request body per decision: tools spread over the namespaces.
python3 - "$W" "$key" "$POLICIES" "$work" <<'PY'
import json, random, sys, urllib.request
base, key, n, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
verbs = ["read", "write", "delete", "list", "export"]
def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": "Bearer " + key, "content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
def spec(i):
    ns = i // 5; verb = verbs[ns % 5]
    if i % 100 == 99:
        return {"action_pattern": "*", "decision": "audit", "agents": {"tags": [f"team{i % 7}"]}}
    return [
        {"action_pattern": f"ns{ns}.{verb}", "decision": "step_up", "condition": f"args.amount > {100 + ns % 900}"},
        {"action_pattern": f"ns{ns}.*", "decision": "allow"},
        {"action_pattern": f"ns{ns}.*_admin", "decision": "deny"},
        {"action_pattern": f"ns{ns}.delete", "decision": "deny", "agents": {"tags": ["prod"]}},
        {"action_pattern": f"ns{ns}.export", "decision": "deny", "mode": "monitor", "condition": "drift.score > 0.5"},
    ][i % 5]
for i in range(n - 1):
    body = spec(i); body["name"] = f"p{i}"; body["priority"] = i % 10
    post("/api/v1/policies", body)
post("/api/v1/policies", {"name": "hold me", "action_pattern": "hold.me", "decision": "step_up", "priority": 100})
post("/api/v1/agents", {"name": "bench-agent", "external_id": "bench-agent", "tags": ["prod", "team3"]})
rng = random.Random(7)
namespaces = max(1, n // 5)
for side in ("rate", "closed-1", "closed-2", "closed-3"):
    with open(f"{work}/{side}.ndjson", "w") as f:
        for i in range(400000):
            ns = rng.randrange(namespaces)
            tool = f"ns{ns}.{rng.choice(verbs)}"
            f.write(json.dumps({"agent_id": "bench-agent", "tool_name": tool, "session_id": f"s{i % 50}",
                "tool_args": {"amount": rng.randrange(1, 100), "currency": "EUR", "to": "DE89370400440532013000"}}) + "\n")
PY
write_back_inputs

AUTH=(-H "Authorization: Bearer $key")
JSON=(-H "content-type: application/json")
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); oha $(oha --version | awk '{print $2}')"
echo "$POLICIES policies. Closed loop: $CONNECTIONS connections for $DURATION. Fixed rate: $RATE requests/s for $DURATION, latency corrected for coordinated omission."
[ ${#SERVER_PIN[@]} -gt 0 ] && echo "Servers pinned to core 1, oha to core 0."
echo
echo "| run | requests/s | p50 ms | p99 ms | server CPU | statuses |"
echo "|---|---:|---:|---:|---:|---|"
run "bare enforce, $RATE/s" bare-rate "$bare_pid" -c "$CONNECTIONS" -q "$RATE" --latency-correction -m POST "${JSON[@]}" -Z "$work/rate.ndjson" "$B/api/v1/enforce"
# Bytes the store's writer thread (the WAL) writes per decision at the fixed
# rate, for the disk probe below.
writer_io() {
  for t in /proc/"$warden_pid"/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = warden-sqlite-w ]; then awk '/^write_bytes/ {print $2}' "$t/io"; fi
  done
}
# Each thread's CPU over the fixed-rate run, for the table of where a
# decision's CPU goes at that rate.
# A thread that ends while it is read (tantivy's indexing threads end
# with each segment) is left out rather than ending the run.
thread_cpu() {
  for t in /proc/"$warden_pid"/task/*; do
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    ticks=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null) || continue
    [ -n "$comm" ] && [ -n "$ticks" ] && echo "$comm|$ticks"
  done
}
wal_before=$(writer_io)
thread_cpu > "$work/threads-before.txt"
curl -sf "$W/metrics" > "$work/metrics-before.txt"
run "warden enforce, $RATE/s" warden-rate "$warden_pid" -c "$CONNECTIONS" -q "$RATE" --latency-correction -m POST "${AUTH[@]}" "${JSON[@]}" -Z "$work/rate.ndjson" --db-url "$work/rate.db" "$W/api/v1/enforce"
wal_per_decision=$(( ($(writer_io) - wal_before) / (RATE * ${DURATION%s}) ))
thread_cpu > "$work/threads-after.txt"
threads=$(python3 - "$work" "$(getconf CLK_TCK)" "$((RATE * ${DURATION%s}))" <<'PY'
import collections, sys
work, hz, decisions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def read(name):
    ticks = collections.Counter()
    for line in open(f"{work}/{name}"):
        thread, value = line.rstrip("\n").rsplit("|", 1)
        ticks[thread] += int(value)
    return ticks
before, after = read("threads-before.txt"), read("threads-after.txt")
# Threads that ended during the run (tantivy's indexing threads) are not
# counted; the index's threads run below requests.
spent = {t: max(0, after[t] - before.get(t, 0)) for t in after}
print("Where a decision's CPU went at the fixed rate (each thread's CPU over the run, µs a decision):", end=" ")
print("; ".join(f"{t} {v / hz * 1e6 / decisions:.0f}" for t, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v), end="; ")
print(f"all {sum(spent.values()) / hz * 1e6 / decisions:.0f}")
PY
)
curl -sf "$W/metrics" > "$work/metrics-after.txt"
# Where the fixed-rate run's time went: the audit batches' commits (the
# sync to disk included) and waits for the search index, from the
# server's own metrics over that run.
commits=$(python3 - "$work/metrics-before.txt" "$work/metrics-after.txt" <<'PY'
import re, sys
def read(path):
    buckets, sums = {}, {}
    for line in open(path):
        m = re.match(r'(warden_\w+?)(_bucket|_count|_sum|_total)?(\{[^}]*\})? ([0-9.e+-]+|\+Inf)$', line.strip())
        if not m:
            continue
        name, part, labels, value = m.group(1), m.group(2) or "", m.group(3) or "", float(m.group(4))
        if part == "_bucket":
            le = re.search(r'le="([^"]+)"', labels).group(1)
            buckets.setdefault(name, {})[float(le)] = value
        else:
            sums[name + part] = value
    return buckets, sums
(b0, s0), (b1, s1) = read(sys.argv[1]), read(sys.argv[2])
def delta(name):
    return {le: b1[name][le] - b0.get(name, {}).get(le, 0) for le in sorted(b1[name])}
def quantile(d, q):
    total = max(d.values())
    for le, n in d.items():
        if n >= q * total:
            return le
t = delta("warden_audit_commit_seconds")
batches = max(t.values())
records = s1["warden_audit_commit_records_sum"] - s0.get("warden_audit_commit_records_sum", 0)
bound = max(le for le in t if le <= 0.002)
slow = batches - t[bound]
waits = s1.get("warden_index_backpressure_waits_total", 0) - s0.get("warden_index_backpressure_waits_total", 0)
q = delta("warden_audit_queued_seconds")
print(f"Audit commits during the fixed-rate run: {batches:,.0f} batches of {records / batches:.2f} records on average; "
      f"commit time p50 <= {quantile(t, 0.5) * 1000:.2f} ms, p99 <= {quantile(t, 0.99) * 1000:.2f} ms "
      f"(bucket bounds); {slow:,.0f} batches ({slow / batches:.1%}) over {bound * 1000:.2f} ms; "
      f"each record's wait for its batch to start p50 <= {quantile(q, 0.5) * 1000:.2f} ms, p99 <= {quantile(q, 0.99) * 1000:.2f} ms; "
      f"index back-pressure waits: {waits:,.0f}")
PY
)
# The disk alone, paced like the decisions and syncing each one: 4 KiB (one
# page) and the WAL bytes a decision wrote above.
probes=$(for size in 4096 "$wal_per_decision"; do "${LOAD_PIN[@]}" python3 bench/sync-probe.py "$work" "$RATE" "$size" "${DURATION%s}"; done)
for round in 1 2 3; do
  run "bare enforce, closed loop ($round)" "bare-$round" "$bare_pid" -c "$CONNECTIONS" -m POST "${JSON[@]}" -Z "$work/closed-$round.ndjson" "$B/api/v1/enforce"
  run "warden enforce, closed loop ($round)" "warden-$round" "$warden_pid" -c "$CONNECTIONS" -m POST "${AUTH[@]}" "${JSON[@]}" -Z "$work/closed-$round.ndjson" "$W/api/v1/enforce"
done
python3 - "$work" <<'PY'
import json, statistics, sys
work = sys.argv[1]
rps = lambda name: json.load(open(f"{work}/{name}.json"))["summary"]["requestsPerSec"]
ratios = sorted(rps(f"warden-{r}") / rps(f"bare-{r}") for r in (1, 2, 3))
print()
print(f"Enforce throughput as a share of bare, per round: {', '.join(f'{x:.0%}' for x in ratios)}; median {statistics.median(ratios):.0%}")
PY

# The fixed-rate run request by request (oha's own record, latency
# corrected): the tail after the first second, when the connections are
# made and the server's caches warm, and the longest answer.
python3 - "$work/rate.db" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "SELECT COALESCE(start_latency_correction, start), end FROM oha ORDER BY 1").fetchall()
t0 = rows[0][0]
lat = [(start - t0, end - start) for start, end in rows]
def p99(values):
    values = sorted(values)
    return values[int(len(values) * 0.99)] * 1000
first = [l for t, l in lat if t < 1.0]
later = [l for t, l in lat if t >= 1.0]
at, worst = max(lat, key=lambda x: x[1])
whole = p99([l for _, l in lat])
over = sum(1 for l in first if l * 1000 > whole)
print(f"Fixed-rate run request by request: p99 {whole:.3f} ms over the run, "
      f"{p99(later):.3f} ms after its first second ({over} of the run's slowest 1% in the first second); "
      f"longest answer {worst * 1000:.1f} ms, sent {at:.2f} s into the run")
PY
echo "WAL bytes written per decision at $RATE/s: $wal_per_decision"
echo "$commits"
echo "$threads"
echo "$probes"

# Every answered decision is in the chain, and the chain verifies.
curl -sf "$W/api/v1/audit/verify" "${AUTH[@]}" | python3 -c '
import json, sys
d = json.load(sys.stdin)["data"]
print("Audit chain after the runs: valid=%s, records=%d" % (d["valid"], d["records_checked"]))'

# A hold approved through the API wakes its long-polling agent: the time
# from sending the approval to the poll's answer, over 30 holds.
python3 - "$W" "$key" <<'PY'
import json, statistics, sys, threading, time, urllib.request
base, key = sys.argv[1], sys.argv[2]
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + key, "content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))
wakes = []
for i in range(30):
    d = call("POST", "/api/v1/enforce", {"agent_id": "bench-agent", "tool_name": "hold.me", "tool_args": {"i": i}})["data"]
    token = d["hold_token"]
    hold = call("GET", "/api/v1/holds?status=pending&limit=1")["data"][0]["id"]
    woke = {}
    def poll():
        r = call("GET", f"/api/v1/enforce/hold/{token}?wait=10")["data"]
        woke["t"] = time.perf_counter(); woke["status"] = r["status"]
    t = threading.Thread(target=poll); t.start()
    time.sleep(0.2)
    sent = time.perf_counter()
    call("POST", f"/api/v1/holds/{hold}/approve", {"comment": "bench"})
    t.join()
    assert woke["status"] == "approved", woke
    wakes.append((woke["t"] - sent) * 1000)
wakes.sort()
print(f"Hold approval to poll wake-up over {len(wakes)} holds: median {statistics.median(wakes):.2f} ms, max {wakes[-1]:.2f} ms")
PY
