#!/usr/bin/env python3
"""Requests served while heavy uploads run: `/healthz` probed every 50 ms
while PER_ROUTE clients (2) each loop a gzip NDJSON upload of 10,000
60-field lines and PER_ROUTE clients loop a JSON batch of 10,000 such
events, for 15 s, against `warden serve` on a fresh SQLite store.
Loopback only, bounded in time. Prints the probe's p50 / p99 / max, the
uploads' statuses and the server's peak resident memory.

Usage: bench/upload-stall.py BINARY PORT (two binaries side by side:
run it once for each)."""
import gzip, json, os, shutil, subprocess, sys, threading, time, urllib.request, tempfile, secrets, statistics
binary, port = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp()
env = dict(os.environ, WARDEN_MASTER_KEY=secrets.token_hex(32))
subprocess.run([binary, "init", "--data-dir", d + "/data", "--json"], env=env, check=True, capture_output=True)
key = json.loads(subprocess.run([binary, "org", "create", "Load", "--plan", "custom", "--rate-limit-per-minute", "6000000", "--burst", "1000000", "--data-dir", d + "/data", "--json"], env=env, check=True, capture_output=True).stdout)["live_key"]
srv = subprocess.Popen([binary, "serve", "--data-dir", d + "/data", "--listen", f"127.0.0.1:{port}"], env=dict(env, RUST_LOG="warn"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"
for _ in range(100):
    try: urllib.request.urlopen(base + "/healthz"); break
    except Exception: time.sleep(0.1)
fields = ",".join(f'"f{i}":"{i}"' for i in range(60))
line = ('{"message":"x","host":"h",' + fields + '}\n').encode()
nd = gzip.compress(line * 10000)
batch = json.dumps([json.loads(line) for _ in range(10000)]).encode()
def post(path, body, headers):
    req = urllib.request.Request(base + path, data=body, method="POST", headers=dict({"Authorization": "Bearer " + key}, **headers))
    try: return urllib.request.urlopen(req, timeout=120).status
    except urllib.error.HTTPError as e: return e.code
stop = False; lat = []
def probe():
    while not stop:
        t = time.perf_counter()
        urllib.request.urlopen(base + "/healthz", timeout=60).read()
        lat.append((time.perf_counter() - t) * 1000)
        time.sleep(0.05)
statuses = []
def loop(path, body, headers):
    end = time.time() + 15
    while time.time() < end:
        statuses.append(post(path, body, headers))
p = threading.Thread(target=probe); p.start()
time.sleep(1)
N = int(os.environ.get("PER_ROUTE", "2"))
ts = [threading.Thread(target=loop, args=("/api/v1/events/ndjson", nd, {"content-type": "application/x-ndjson", "content-encoding": "gzip"})) for _ in range(N)]
ts += [threading.Thread(target=loop, args=("/api/v1/events/batch", batch, {"content-type": "application/json"})) for _ in range(N)]
for t in ts: t.start()
for t in ts: t.join()
stop = True; p.join()
rss = [l for l in open(f"/proc/{srv.pid}/status") if l.startswith("VmHWM")][0].split()[1]
srv.kill()
srv.wait()
shutil.rmtree(d, ignore_errors=True)
lat.sort()
import collections
print(f"{os.path.basename(os.path.dirname(binary)) or binary}: healthz n={len(lat)} p50 {statistics.median(lat):.1f} ms p99 {lat[int(len(lat)*.99)]:.1f} max {lat[-1]:.1f} ms; uploads {dict(collections.Counter(statuses))}; peak RSS {int(rss)//1024} MiB")
