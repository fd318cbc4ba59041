#!/usr/bin/env bash
# Telemetry benchmark: Warden's event ingest and search beside PostgreSQL
# loading and querying the same events, in one run.
#
# 1. events-gen writes EVENTS events (sshd/sudo/cron syslog lines, nginx
#    access logs, agents' tool calls; fixed seed, spread over the 24 hours
#    before the run) twice: as batches for POST /api/v1/events/batch and as
#    rows for PostgreSQL's COPY.
# 2. Ingest: the first INGEST_EVENTS events into `warden serve` (release
#    build, fresh embedded SQLite store) with ingest-load (CONNECTIONS
#    threads, keep-alive): durable events/s, request latency, the lag
#    from the last 202 until a search counts them all, and the lag under
#    sustained ingest (a probe posts one marked event at a time beside the
#    batches and searches for it until found). Then the same events
#    with COPY into a plain PostgreSQL table (no index) in a fresh database.
# 3. Search: the rest of the events into both; PostgreSQL then gets a
#    tsvector column (to_tsvector('simple', message)) with a GIN index and a
#    btree on ts. Six query classes, each REPEAT times after 3 warm-up runs,
#    one at a time: on Warden, POST /api/v1/siem/search over the 24 hours
#    (page of 100, histogram of 30-minute buckets by severity, exact total);
#    on PostgreSQL, the same three answers as SQL (histogram with date_bin,
#    count(*), the newest 100 rows), timed per transaction by pgbench.
#    Warden is searched twice: right after the last 202, while its index may
#    still merge segments, and at rest. Its peak resident memory (VmHWM) is
#    read after its searches.
# 4. Where Warden's CPU went during the ingest run, by thread
#    (bench/thread-cpu.py).
#
# Loopback only. Every phase runs under `timeout` (PHASE_TIMEOUT seconds);
# the work directory and the database are removed on exit. Neither side is
# pinned to a core: both use the two cores, as does each one's client.
#
# Needs psql and pgbench, and a PostgreSQL that PGUSER can create databases
# on. Usage: bench/telemetry.sh
# Tunables: EVENTS (10000000), INGEST_EVENTS (2000000), BATCH (1000 events a
# request), CONNECTIONS (4), REPEAT (50), SEED (42), PHASE_TIMEOUT (3600),
# PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres), PGDATABASE_BENCH
# (warden_bench, dropped and created), PG_REPEAT (REPEAT; runs of each SQL
# class), RESULTS (a directory to keep the raw JSON and pgbench output in).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-10000000}
INGEST_EVENTS=${INGEST_EVENTS:-2000000}
BATCH=${BATCH:-1000}
CONNECTIONS=${CONNECTIONS:-4}
REPEAT=${REPEAT:-50}
SEED=${SEED:-42}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-3600}
WARDEN_PORT=${WARDEN_PORT:-18085}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
DB=${PGDATABASE_BENCH:-warden_bench}
export PGHOST PGPORT PGUSER

for tool in psql pgbench python3 timeout; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
psql -X -d postgres -Atc 'select 1' >/dev/null || { echo "PostgreSQL is not reachable at $PGHOST:$PGPORT as $PGUSER" >&2; exit 1; }
# Whole batches for the ingest run, so that it ends on a line of the file.
ingest_lines=$((INGEST_EVENTS / BATCH))
INGEST_EVENTS=$((ingest_lines * BATCH))
if [ "$ingest_lines" -lt 1 ] || [ "$INGEST_EVENTS" -gt "$EVENTS" ]; then
  echo "need BATCH <= INGEST_EVENTS <= EVENTS" >&2; exit 1
fi

# Both sides use both cores; no oha and no bare endpoint here.
PIN=${PIN:-0}; NEED_OHA=0; BARE_PORT=""
# shellcheck source=bench/lib.sh
source bench/lib.sh
PSQL=(psql -X -q -v ON_ERROR_STOP=1)
drop_db() { psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap 'cleanup; drop_db' EXIT
T() { timeout "$PHASE_TIMEOUT" "$@"; }
now() { echo "$EPOCHREALTIME"; }
W="http://127.0.0.1:$WARDEN_PORT"

end_s=$(date -u +%s)
END=$(date -u -d "@$end_s" +%Y-%m-%dT%H:%M:%SZ)
FROM=$(date -u -d "@$((end_s - 86400))" +%Y-%m-%dT%H:%M:%SZ)
rest_events=$((EVENTS - INGEST_EVENTS))

echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(psql -X -d postgres -Atc 'select version()' | cut -d' ' -f1-2) (shared_buffers $(psql -X -d postgres -Atc 'show shared_buffers'), work_mem $(psql -X -d postgres -Atc 'show work_mem'), max_parallel_workers_per_gather $(psql -X -d postgres -Atc 'show max_parallel_workers_per_gather'))"
echo "Events: $EVENTS (seed $SEED) over $FROM to $END; ingest run $INGEST_EVENTS in batches of $BATCH over $CONNECTIONS connections."

# 1. The events, once per format.
t0=$(now)
T $bin/events-gen --count "$EVENTS" --seed "$SEED" --end "$END" --format batch --batch-size "$BATCH" > "$work/events.batch"
t1=$(now)
T $bin/events-gen --count "$EVENTS" --seed "$SEED" --end "$END" --format pg-copy > "$work/events.tsv"
python3 - "$EVENTS" "$t0" "$t1" "$work/events.batch" <<'PY'
import os, sys
n, t0, t1, path = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"Generated at {n / (t1 - t0):,.0f} events/s (to disk); {os.path.getsize(path) / n:.0f} bytes of JSON an event.")
PY
write_back_inputs

cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }

# 2. Ingest rate: Warden.
python3 bench/thread-cpu.py snap "$warden_pid" > "$work/threads0"
c0=$(cpu_s "$warden_pid"); w0=$(now)
T $bin/ingest-load "$work/events.batch" --url "$W" --key "$key" --connections "$CONNECTIONS" \
  --max-lines "$ingest_lines" --from "$FROM" --to "$END" --searchable-timeout "$((PHASE_TIMEOUT / 2))" > "$work/ingest.json" || { cat "$work/ingest.json" >&2; exit 1; }
c1=$(cpu_s "$warden_pid"); w1=$(now)
python3 bench/thread-cpu.py snap "$warden_pid" > "$work/threads1"
ingest_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$warden_pid/status")

# 2. Ingest rate: PostgreSQL COPY of the same events into a plain table.
drop_db
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $DB"
"${PSQL[@]}" -d "$DB" -c "CREATE TABLE bench_events (ts timestamptz, host text, program text, severity text, message text, fields jsonb)"
t0=$(now)
head -n "$INGEST_EVENTS" "$work/events.tsv" | T "${PSQL[@]}" -d "$DB" -c "COPY bench_events FROM STDIN"
t1=$(now)
pg_copy_s=$(python3 -c "print($t1 - $t0)")

# 3. The rest of the events into Warden, until searchable.
if [ "$rest_events" -gt 0 ]; then
  # The first run's probe events are in the window too.
  already=$((INGEST_EVENTS + $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["probes_accepted"])' "$work/ingest.json")))
  c2=$(cpu_s "$warden_pid"); w2=$(now)
  T $bin/ingest-load "$work/events.batch" --url "$W" --key "$key" --connections "$CONNECTIONS" \
    --skip-lines "$ingest_lines" --already "$already" --from "$FROM" --to "$END" \
    --searchable-timeout "$((PHASE_TIMEOUT / 2))" > "$work/rest.json" || { cat "$work/rest.json" >&2; exit 1; }
  c3=$(cpu_s "$warden_pid"); w3=$(now)
else
  echo '{}' > "$work/rest.json"; c2=0; c3=0; w2=0; w3=1
fi
# Searches right after the last 202, while the index may still be merging
# its segments; then again at rest, once the server has been idle (under
# 5% of a core for 2 s; at most 300 s).
T $bin/search-load --url "$W" --key "$key" --from "$FROM" --to "$END" --repeat "$REPEAT" > "$work/search.json"
s0=$(now)
for _ in $(seq 150); do
  t0=$(awk '{print $14 + $15}' "/proc/$warden_pid/stat"); sleep 2; t1=$(awk '{print $14 + $15}' "/proc/$warden_pid/stat")
  [ $((t1 - t0)) -lt $(($(getconf CLK_TCK) / 10)) ] && break
done
settle_s=$(python3 -c "print($(now) - $s0)")
T $bin/search-load --url "$W" --key "$key" --from "$FROM" --to "$END" --repeat "$REPEAT" > "$work/search-rest.json"
segments=$(find "$work/data/index" -name '*.idx' | wc -l)
peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$warden_pid/status")
warden_disk=$(du -sb "$work/data" | cut -f1)
# Warden is done: stop it so that PostgreSQL has the machine to itself.
kill "$warden_pid"; wait "$warden_pid" 2>/dev/null || true

# 3. The rest into PostgreSQL, then its search structures.
t0=$(now)
if [ "$rest_events" -gt 0 ]; then
  tail -n "+$((INGEST_EVENTS + 1))" "$work/events.tsv" | T "${PSQL[@]}" -d "$DB" -c "COPY bench_events FROM STDIN"
fi
t1=$(now)
T "${PSQL[@]}" -d "$DB" <<'SQL'
ALTER TABLE bench_events ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', message)) STORED;
CREATE INDEX bench_events_tsv ON bench_events USING gin (tsv);
CREATE INDEX bench_events_ts ON bench_events (ts);
VACUUM ANALYZE bench_events;
SQL
t2=$(now)
pg_rest_s=$(python3 -c "print($t1 - $t0)"); pg_build_s=$(python3 -c "print($t2 - $t1)")
pg_disk=$(psql -X -d "$DB" -Atc "select pg_total_relation_size('bench_events')")

# The same six classes as SQL: histogram, exact count, newest 100 rows.
# Times as epoch seconds, since pgbench reads ':name' as a variable.
conds=(
  "tsv @@ to_tsquery('simple', 'failed')"
  "program = 'sshd' AND fields->>'user' = 'root'"
  "tsv @@ phraseto_tsquery('simple', 'failed password')"
  "fields->>'user' ILIKE '%min'"
  "(fields->>'status')::int BETWEEN 500 AND 599"
  "program = 'nginx' AND NOT (fields->>'status' = '200')"
)
range="ts >= to_timestamp($((end_s - 86400))) AND ts < to_timestamp($end_s)"
for i in "${!conds[@]}"; do
  where="$range AND (${conds[$i]})"
  cat > "$work/q$i.sql" <<SQL
SELECT date_bin('30 minutes', ts, to_timestamp($((end_s - 86400)))) AS bucket, severity, count(*) FROM bench_events WHERE $where GROUP BY 1, 2;
SELECT count(*) FROM bench_events WHERE $where;
SELECT ts, host, program, severity, message, fields FROM bench_events WHERE $where ORDER BY ts DESC LIMIT 100;
SQL
  psql -X -d "$DB" -Atc "SELECT count(*) FROM bench_events WHERE $where" > "$work/q$i.count"
  psql -X -d "$DB" -Atc "EXPLAIN SELECT count(*) FROM bench_events WHERE $where" > "$work/q$i.plan"
  T pgbench -n -f "$work/q$i.sql" -t 3 "$DB" > /dev/null 2>&1
  T pgbench -n -f "$work/q$i.sql" -t "${PG_REPEAT:-$REPEAT}" --log --log-prefix="$work/pg$i" "$DB" > "$work/q$i.pgbench" 2>&1 \
    || { cat "$work/q$i.pgbench" >&2; exit 1; }
done

if [ -n "${RESULTS:-}" ]; then
  mkdir -p "$RESULTS" && cp "$work"/ingest.json "$work"/rest.json "$work"/search*.json "$work"/q*.sql "$work"/q*.plan "$work"/q*.pgbench "$RESULTS"/
fi
python3 - "$work" "$INGEST_EVENTS" "$pg_copy_s" "$(python3 -c "print(($c1 - $c0) / ($w1 - $w0))")" \
  "$(python3 -c "print(($c3 - $c2) / ($w3 - $w2))")" "$ingest_rss_kb" "$peak_rss_kb" \
  "$rest_events" "$pg_rest_s" "$pg_build_s" "$warden_disk" "$pg_disk" "$EVENTS" "$settle_s" "$segments" <<'PY'
import glob, json, sys
(work, ingest_n, pg_copy_s, cores1, cores2, ingest_rss, peak_rss, rest_n, pg_rest_s, pg_build_s,
 warden_disk, pg_disk, events, settle_s, segments) = sys.argv[1:]
ingest_n, rest_n, events = int(ingest_n), int(rest_n), int(events)
ing = json.load(open(f"{work}/ingest.json"))
rest = json.load(open(f"{work}/rest.json"))
search = json.load(open(f"{work}/search.json"))
at_rest = json.load(open(f"{work}/search-rest.json"))

def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return 0.0
    k = max(1, min(len(xs), -(-len(xs) * p // 100)))
    return xs[int(k) - 1]

print()
print("| ingest run | events | seconds | events/s | request p50 ms | request p99 ms | searchable after last 202 | searchable during the run, probe p50 / p99 / max | Warden CPU, until searchable |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
def warden_row(label, r, cores):
    lag = r.get("searchable_lag_ms")
    print(f"| {label} | {r['events_accepted']:,} | {r['seconds']:.1f} | {r['events_per_s']:,.0f} | "
          f"{r['request_p50_ms']:.1f} | {r['request_p99_ms']:.1f} | "
          f"{'n/a' if lag is None else f'{lag:,.0f} ms'} | "
          f"{r['probe_lag_p50_ms']:,.0f} / {r['probe_lag_p99_ms']:,.0f} / {r['probe_lag_max_ms']:,.0f} ms ({r['probes']} probes) | "
          f"{float(cores):.2f} cores |")
warden_row("Warden, POST /api/v1/events/batch, fresh store", ing, cores1)
pg = float(pg_copy_s)
print(f"| PostgreSQL COPY, plain table, fresh database | {ingest_n:,} | {pg:.1f} | {ingest_n / pg:,.0f} | | | | | |")
if rest_n:
    warden_row(f"Warden, the remaining events (on top of {ingest_n:,})", rest, cores2)
    pr = float(pg_rest_s)
    print(f"| PostgreSQL COPY, the remaining events | {rest_n:,} | {pr:.1f} | {rest_n / pr:,.0f} | | | | | |")
for r in (ing, rest):
    if r.get("failures"):
        print(f"\nWarden refused {r['failures']} requests; first: {r['first_error']}")

pg_lat = []
for i in range(len(search["classes"])):
    lat = []
    for path in glob.glob(f"{work}/pg{i}.*"):
        for line in open(path):
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000)
    pg_lat.append(lat)
print()
print(f"Search over {events:,} events, 24 hours, page of 100 and a histogram of 30-minute buckets by severity; "
      f"after 3 warm-up runs, one at a time, {search['classes'][0]['runs']} runs a class on Warden (client-side, over HTTP) "
      f"and {len(pg_lat[0])} on PostgreSQL (pgbench, per transaction: histogram, count(*), newest 100 rows). "
      f"Warden right after the last 202 (its index still merging), then at rest: idle {float(settle_s):.0f} s after "
      f"the first searches, {segments} segments.")
print()
print("| class | query | Warden p50 ms | Warden p99 ms | Warden at rest p50 ms | Warden at rest p99 ms | PostgreSQL p50 ms | PostgreSQL p99 ms | hits |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for i, c in enumerate(search["classes"]):
    lat = pg_lat[i]
    pg_hits = int(open(f"{work}/q{i}.count").read())
    hits = f"{c['total']:,}" if c["total"] == pg_hits else f"Warden {c['total']:,}, PostgreSQL {pg_hits:,}"
    if c.get("error"):
        hits += f" (Warden error: {c['error'][:200]})"
    r = at_rest["classes"][i]
    if r["total"] != c["total"]:
        hits += f" (at rest: {r['total']:,})"
    print(f"| {c['class']} | `{c['query']}` | {c['p50_ms']:.1f} | {c['p99_ms']:.1f} | "
          f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
          f"{pct(lat, 50):.1f} | {pct(lat, 99):.1f} | {hits} |")
print()
print(f"Warden's server-side query time (p50): " + ", ".join(f"{c['class']} {c['server_p50_ms']:.1f} ms" for c in search["classes"])
      + "; at rest: " + ", ".join(f"{c['class']} {c['server_p50_ms']:.1f} ms" for c in at_rest["classes"]) + ".")
print(f"warden serve peak resident memory (VmHWM): {int(ingest_rss) // 1024} MiB after the ingest run, "
      f"{int(peak_rss) // 1024} MiB after all events and the searches.")
print(f"On disk: Warden's data directory {int(warden_disk) / 2**20:,.0f} MiB (store and index); "
      f"PostgreSQL's table with its indexes {int(pg_disk) / 2**20:,.0f} MiB. "
      f"PostgreSQL's tsvector column, GIN and btree indexes took {float(pg_build_s):.1f} s to build after loading.")
PY
echo
echo "Warden's CPU during the ingest run, by thread:"
echo
python3 bench/thread-cpu.py diff "$work/threads0" "$work/threads1"
