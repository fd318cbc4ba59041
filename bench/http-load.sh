#!/usr/bin/env bash
# Load benchmark of Warden's core API beside a bare axum endpoint, in one run.
#
# Loopback only and bounded in time: every oha run stops after $DURATION.
# Measures authenticated GET /api/v1/agents/{id} and POST /api/v1/agents on
# `warden serve` (embedded SQLite) and the same routes on the bare endpoint
# (crates/warden-bench), closed-loop for throughput and at a fixed rate for
# tail latency, plus the idle resident memory of `warden serve`.
#
# Needs oha (cargo install oha --locked). Usage: bench/http-load.sh
# Tunables: DURATION (10s), CONNECTIONS (32), RATE (1000).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
RATE=${RATE:-1000}
WARDEN_PORT=${WARDEN_PORT:-18081}
BARE_PORT=${BARE_PORT:-18082}

command -v oha >/dev/null || { echo "oha is needed: cargo install oha --locked" >&2; exit 1; }
cargo build --release -q -p warden -p warden-bench
bin=target/release

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

export WARDEN_MASTER_KEY
WARDEN_MASTER_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
$bin/warden init --data-dir "$work/data" --json > /dev/null
# A plan far above the load, so that the limiter runs but never refuses.
key=$($bin/warden org create Bench --plan custom --rate-limit-per-minute 60000000 --burst 10000000 \
        --data-dir "$work/data" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["live_key"])')

RUST_LOG=warn $bin/warden serve --data-dir "$work/data" --listen "127.0.0.1:$WARDEN_PORT" > "$work/serve.out" 2>&1 &
pids+=($!); warden_pid=$!
$bin/bare-endpoint "127.0.0.1:$BARE_PORT" > /dev/null 2>&1 &
pids+=($!)
for port in $WARDEN_PORT $BARE_PORT; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; \
    curl -s -o /dev/null "http://127.0.0.1:$port/api/v1/agents/x" && break; sleep 0.1; done
done
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

run() { # label, output, extra oha args...
  local label=$1 out=$2; shift 2
  oha --no-tui --output-format json -z "$DURATION" "$@" > "$work/$out.json"
  python3 - "$label" "$work/$out.json" <<'PY'
import json, sys
label, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
s = r["summary"]; p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
print(f"| {label} | {s['requestsPerSec']:,.0f} | {p['p50']*1000:.3f} | {p['p99']*1000:.3f} | {s['successRate']*100:.1f}% | {', '.join(f'{k}: {v}' for k, v in sorted(codes.items()))} |")
PY
}

W="http://127.0.0.1:$WARDEN_PORT"; B="http://127.0.0.1:$BARE_PORT"
AUTH=(-H "Authorization: Bearer $key")
JSON=(-H "content-type: application/json")
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); oha $(oha --version | awk '{print $2}')"
echo "Closed loop: $CONNECTIONS connections for $DURATION each. Fixed rate: $RATE requests/s for $DURATION, latency corrected for coordinated omission."
echo
echo "| run | requests/s | p50 ms | p99 ms | success | statuses |"
echo "|---|---:|---:|---:|---:|---|"
run "bare GET, closed loop" bare-get -c "$CONNECTIONS" "$B/api/v1/agents/$agent"
run "warden GET, closed loop" warden-get -c "$CONNECTIONS" "${AUTH[@]}" "$W/api/v1/agents/$agent"
run "bare POST, closed loop" bare-post -c "$CONNECTIONS" -m POST "${JSON[@]}" -Z "$work/bare-closed.ndjson" "$B/api/v1/agents"
run "warden POST, closed loop" warden-post -c "$CONNECTIONS" -m POST "${AUTH[@]}" "${JSON[@]}" -Z "$work/warden-closed.ndjson" "$W/api/v1/agents"
run "bare GET, $RATE/s" bare-get-rate -c "$CONNECTIONS" -q "$RATE" --latency-correction "$B/api/v1/agents/$agent"
run "warden GET, $RATE/s" warden-get-rate -c "$CONNECTIONS" -q "$RATE" --latency-correction "${AUTH[@]}" "$W/api/v1/agents/$agent"
run "bare POST, $RATE/s" bare-post-rate -c "$CONNECTIONS" -q "$RATE" --latency-correction -m POST "${JSON[@]}" -Z "$work/bare-rate.ndjson" "$B/api/v1/agents"
run "warden POST, $RATE/s" warden-post-rate -c "$CONNECTIONS" -q "$RATE" --latency-correction -m POST "${AUTH[@]}" "${JSON[@]}" -Z "$work/warden-rate.ndjson" "$W/api/v1/agents"
loaded_rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$warden_pid/status")
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
rps = lambda n: json.load(open(f"{w}/{n}.json"))["summary"]["requestsPerSec"]
print()
print(f"Authenticated GET: {rps('warden-get') / rps('bare-get') * 100:.0f}% of the bare endpoint's throughput.")
print(f"Authenticated POST (durable insert): {rps('warden-post') / rps('bare-post') * 100:.0f}% of the bare endpoint's throughput.")
PY
echo "warden serve resident memory: idle $((idle_rss_kb / 1024)) MiB, after the runs $((loaded_rss_kb / 1024)) MiB."
