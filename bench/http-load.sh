#!/usr/bin/env bash
# Load benchmark of Warden's core API beside a bare axum endpoint, in one run.
#
# Loopback only and bounded in time: every oha run stops after $DURATION.
# Measures authenticated GET /api/v1/agents/{id} and POST /api/v1/agents on
# `warden serve` (embedded SQLite) and the same routes on the bare endpoint
# (crates/warden-bench), closed-loop for throughput and at a fixed rate for
# tail latency, plus the idle resident memory of `warden serve`.
#
# On a machine with two or more cores the servers run pinned to one core
# and oha to another (taskset), so that each run measures the server's work
# rather than its contest with the load tool for the same cores; the table
# shows how much of its core each server used.
#
# Needs oha (cargo install oha --locked). Usage: bench/http-load.sh
# Tunables: DURATION (10s), CONNECTIONS (32), RATE (1000), PIN (1; 0 lets the
# servers and oha share both cores).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
RATE=${RATE:-1000}
WARDEN_PORT=${WARDEN_PORT:-18081}
BARE_PORT=${BARE_PORT:-18082}

# shellcheck source=bench/lib.sh
source bench/lib.sh
sleep 2
idle_rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$warden_pid/status")

agent=$(curl -sf -X POST "http://127.0.0.1:$WARDEN_PORT/api/v1/agents" -H "Authorization: Bearer $key" \
  -H 'content-type: application/json' -d '{"name":"bench-agent"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')

# Unique names, one body per request, for the POST runs.
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
for side in ("bare-closed", "warden-closed", "bare-rate", "warden-rate"):
    with open(f"{work}/{side}.ndjson", "w") as f:
        for i in range(600000):
            f.write(json.dumps({"name": f"{side}-{i}", "tags": ["bench"], "metadata": {"i": i}}) + "\n")
PY
write_back_inputs

W="http://127.0.0.1:$WARDEN_PORT"; B="http://127.0.0.1:$BARE_PORT"
AUTH=(-H "Authorization: Bearer $key")
JSON=(-H "content-type: application/json")
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); oha $(oha --version | awk '{print $2}')"
echo "Closed loop: $CONNECTIONS connections for $DURATION each. Fixed rate: $RATE requests/s for $DURATION, latency corrected for coordinated omission."
echo
[ ${#SERVER_PIN[@]} -gt 0 ] && echo "Servers pinned to core 1, oha to core 0."
echo "| run | requests/s | p50 ms | p99 ms | server CPU | statuses |"
echo "|---|---:|---:|---:|---:|---|"
# Steady state first: tail latency at a fixed rate on a fresh store.
run "bare GET, $RATE/s" bare-get-rate "$bare_pid" -c "$CONNECTIONS" -q "$RATE" --latency-correction "$B/api/v1/agents/$agent"
run "warden GET, $RATE/s" warden-get-rate "$warden_pid" -c "$CONNECTIONS" -q "$RATE" --latency-correction "${AUTH[@]}" "$W/api/v1/agents/$agent"
run "bare POST, $RATE/s" bare-post-rate "$bare_pid" -c "$CONNECTIONS" -q "$RATE" --latency-correction -m POST "${JSON[@]}" -Z "$work/bare-rate.ndjson" "$B/api/v1/agents"
run "warden POST, $RATE/s" warden-post-rate "$warden_pid" -c "$CONNECTIONS" -q "$RATE" --latency-correction -m POST "${AUTH[@]}" "${JSON[@]}" -Z "$work/warden-rate.ndjson" "$W/api/v1/agents"
# GET throughput is compared over three interleaved rounds: single runs on a
# shared virtual machine swing by ten per cent.
for round in 1 2 3; do
  run "bare GET, closed loop ($round)" "bare-get-$round" "$bare_pid" -c "$CONNECTIONS" "$B/api/v1/agents/$agent"
  run "warden GET, closed loop ($round)" "warden-get-$round" "$warden_pid" -c "$CONNECTIONS" "${AUTH[@]}" "$W/api/v1/agents/$agent"
done
run "bare POST, closed loop" bare-post "$bare_pid" -c "$CONNECTIONS" -m POST "${JSON[@]}" -Z "$work/bare-closed.ndjson" "$B/api/v1/agents"
run "warden POST, closed loop" warden-post "$warden_pid" -c "$CONNECTIONS" -m POST "${AUTH[@]}" "${JSON[@]}" -Z "$work/warden-closed.ndjson" "$W/api/v1/agents"
loaded_rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$warden_pid/status")
# The floor under any durable write here: appending 4 KiB and fdatasync on
# the same file system, one at a time.
python3 - "$work" <<'PY'
import os, sys, time
fd = os.open(os.path.join(sys.argv[1], "fsync-probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
lat = []
for _ in range(2000):
    t = time.perf_counter(); os.write(fd, b"x" * 4096); os.fdatasync(fd); lat.append(time.perf_counter() - t)
lat.sort()
print(f"| disk: 4 KiB append + fdatasync, one at a time | {len(lat) / sum(lat):,.0f} | {lat[len(lat) // 2] * 1000:.3f} | {lat[int(len(lat) * 0.99)] * 1000:.3f} | | |")
PY
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
rps = lambda n: json.load(open(f"{w}/{n}.json"))["summary"]["requestsPerSec"]
print()
ratios = sorted(rps(f"warden-get-{r}") / rps(f"bare-get-{r}") for r in (1, 2, 3))
print(f"Authenticated GET: {ratios[1] * 100:.0f}% of the bare endpoint's throughput (median of three rounds; {', '.join(f'{x * 100:.0f}%' for x in ratios)}).")
print(f"Authenticated POST (durable insert): {rps('warden-post') / rps('bare-post') * 100:.0f}% of the bare endpoint's throughput.")
PY
echo "warden serve resident memory: idle $((idle_rss_kb / 1024)) MiB, after the runs $((loaded_rss_kb / 1024)) MiB."
