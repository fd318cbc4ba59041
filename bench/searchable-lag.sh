#!/usr/bin/env bash
# Searchable lag under the loads that test the one-second promise hardest:
# sustained ingest of ordinary events (`plain`), the same while analysts
# run costly searches (`searchers`), and sustained ingest of large events
# (`large`: messages padded with PAD_BYTES of stack-trace text). For each, a fresh
# `warden serve` (embedded SQLite) takes the events from ingest-load, whose
# probe posts one marked event at a time and searches for it until found:
# the time from its `202` to that answer is the lag.
#
# BINS lists `warden` binaries to compare (default: this tree's release
# build); each load runs on each binary in turn, ROUNDS times, alternating,
# so that the machine's drift falls on all of them alike. Loopback only;
# every run is bounded by `timeout`.
#
# Usage: bench/searchable-lag.sh
# Tunables: BINS, LOADS ("plain searchers large"), ROUNDS (2), EVENTS (400000 ordinary events), SEARCHERS
# (3), LARGE_EVENTS (8000), PAD_BYTES (65536), LARGE_BATCH (50),
# CONNECTIONS (4), RUN_TIMEOUT (600), WARDEN_PORT (18086).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-2}
LOADS=${LOADS:-plain searchers large}
EVENTS=${EVENTS:-400000}
SEARCHERS=${SEARCHERS:-3}
LARGE_EVENTS=${LARGE_EVENTS:-8000}
PAD_BYTES=${PAD_BYTES:-65536}
LARGE_BATCH=${LARGE_BATCH:-50}
CONNECTIONS=${CONNECTIONS:-4}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
PORT=${WARDEN_PORT:-18086}
tools=target/release
BINS=${BINS:-$tools/warden}
for t in ingest-load events-gen; do
  [ -x "$tools/$t" ] || { echo "build first: cargo build --release -p warden -p warden-bench" >&2; exit 1; }
done

work=$(mktemp -d)
server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap 'stop; rm -rf "$work"' EXIT
export WARDEN_MASTER_KEY
WARDEN_MASTER_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

end_s=$(date -u +%s)
END=$(date -u -d "@$end_s" +%Y-%m-%dT%H:%M:%SZ)
FROM=$(date -u -d "@$((end_s - 86400))" +%Y-%m-%dT%H:%M:%SZ)
$tools/events-gen --count "$EVENTS" --end "$END" > "$work/ordinary.batch"
$tools/events-gen --count "$LARGE_EVENTS" --end "$END" --batch-size "$LARGE_BATCH" \
  --pad-bytes "$PAD_BYTES" --seed 7 > "$work/large.batch"
sync

# One run: a fresh server from binary $1 takes file $2 with $3 searchers.
run() {
  local bin=$1 file=$2 searchers=$3 data="$work/data"
  rm -rf "$data"
  $bin init --data-dir "$data" --json > /dev/null 2>&1
  local key
  key=$($bin org create Bench --plan custom --rate-limit-per-minute 60000000 --burst 10000000 \
          --data-dir "$data" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["live_key"])')
  RUST_LOG=warn $bin serve --data-dir "$data" --listen "127.0.0.1:$PORT" > "$work/serve.out" 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null 2>&1 && break; sleep 0.1; done
  timeout "$RUN_TIMEOUT" $tools/ingest-load "$file" --url "http://127.0.0.1:$PORT" --key "$key" \
    --connections "$CONNECTIONS" --searchers "$searchers" --from "$FROM" --to "$END" \
    > "$work/run.json" || true
  curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^warden_index_backpressure_waits_total' \
    | awk '{print $2}' > "$work/waits" || true
  stop
  python3 - "$work/run.json" "$(cat "$work/waits")" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['events_per_s']:>9.0f} ev/s  probe p50 {r['probe_lag_p50_ms']:>6.0f}  p99 {r['probe_lag_p99_ms']:>6.0f}"
      f"  max {r['probe_lag_max_ms']:>6.0f} ms  ({r['probes']} probes, {r['probes_not_found']} lost)"
      f"  all {r['searchable_lag_ms'] or 0:>5.0f} ms after the last"
      f"  searches {r['searches']} p50 {r['search_p50_ms']:.0f} ms  waits {sys.argv[2] or '?'}")
EOF
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "loads: $EVENTS ordinary events, alone (plain) and with $SEARCHERS searchers; $LARGE_EVENTS events of +$PAD_BYTES bytes in batches of $LARGE_BATCH (large); $CONNECTIONS connections"
for round in $(seq "$ROUNDS"); do
  for load in $LOADS; do
    for bin in $BINS; do
      printf 'round %s  %-24s %-10s ' "$round" "$bin" "$load"
      case $load in
        plain) run "$bin" "$work/ordinary.batch" 0 ;;
        searchers) run "$bin" "$work/ordinary.batch" "$SEARCHERS" ;;
        large) run "$bin" "$work/large.batch" 0 ;;
        *) echo "unknown load $load" >&2; exit 1 ;;
      esac
    done
  done
done
