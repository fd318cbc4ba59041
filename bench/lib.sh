# Shared by the HTTP load benchmarks: build, pin, a fresh store with a
# benchmark organization, `warden serve` and the bare endpoint side by side,
# and one measured oha run. Source after setting DURATION, WARDEN_PORT and
# BARE_PORT; leaves bin, work, key, warden_pid and bare_pid set. A benchmark
# that needs neither oha nor the bare endpoint sets NEED_OHA=0 and BARE_PORT
# empty.

if [ "${NEED_OHA:-1}" = 1 ]; then
  command -v oha >/dev/null || { echo "oha is needed: cargo install oha --locked" >&2; exit 1; }
fi
cargo build --release -q -p warden -p warden-bench
bin=target/release

# Servers on core 1, oha on core 0, so each run measures the server's own
# work; PIN=0 lets them share the cores.
SERVER_PIN=(); LOAD_PIN=()
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  SERVER_PIN=(taskset -c 1); LOAD_PIN=(taskset -c 0)
fi

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

RUST_LOG=warn "${SERVER_PIN[@]}" $bin/warden serve --data-dir "$work/data" --listen "127.0.0.1:$WARDEN_PORT" > "$work/serve.out" 2>&1 &
pids+=($!); warden_pid=$!
if [ -n "${BARE_PORT:-}" ]; then
  "${SERVER_PIN[@]}" $bin/bare-endpoint "127.0.0.1:$BARE_PORT" > /dev/null 2>&1 &
  pids+=($!); bare_pid=$!
fi
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$WARDEN_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
if [ -n "${BARE_PORT:-}" ]; then
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$BARE_PORT/" 2>/dev/null && break; sleep 0.1; done
fi

# Flushes the inputs a benchmark just wrote (hundreds of MB of request
# bodies or events) to disk before anything is measured. Left dirty, the
# kernel writes them back 30 s later, in the middle of a run, and every
# sync the server makes meanwhile waits behind that writeback: stalls of
# 27-64 ms in its commits, which are the benchmark's, not the server's.
write_back_inputs() { sync; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# One oha run, printed as a table row with the server's CPU share.
run() { # label, output, server pid, extra oha args...
  local label=$1 out=$2 pid=$3; shift 3
  local before after
  before=$(cpu_ticks "$pid")
  "${LOAD_PIN[@]}" oha --no-tui --output-format json -z "$DURATION" "$@" > "$work/$out.json"
  after=$(cpu_ticks "$pid")
  python3 - "$label" "$work/$out.json" "$((after - before))" "$(getconf CLK_TCK)" "$DURATION" <<'PY'
import json, sys
label, path, ticks, hz, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
r = json.load(open(path))
s = r["summary"]; p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
cpu = ticks / hz / float(duration.rstrip("s")) * 100
print(f"| {label} | {s['requestsPerSec']:,.0f} | {p['p50']*1000:.3f} | {p['p99']*1000:.3f} | {cpu:.0f}% | {', '.join(f'{k}: {v}' for k, v in sorted(codes.items()))} |")
PY
}
