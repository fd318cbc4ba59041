#!/usr/bin/env python3
"""Clients past the open-files limit that send a body: how many read the
503, how many a reset instead. Starts `warden serve` on a fresh SQLite
store, lowers its soft open-files limit to the lowest free descriptor
(`prlimit`, util-linux), then 4 clients each post N/4 event batches of
about 25 KB, the first 8,000 bytes, a 20 ms pause, then the rest, and
read to the end. Loopback only, bounded by N. Prints the count of each
outcome: `HTTP/1.1 503` (read whole), `pipe+HTTP/1.1 503` (a write
after the answer failed, the answer read), `reset`, `timeout`.

Usage: bench/turn-away.py BINARY PORT N (two binaries side by side:
run it once for each)."""
import json, os, secrets, socket, subprocess, sys, tempfile, threading, time

binary, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = tempfile.mkdtemp()
env = dict(os.environ, WARDEN_MASTER_KEY=secrets.token_hex(32))
subprocess.run([binary, "init", "--data-dir", d, "--json"], env=env, capture_output=True, check=True)
srv = subprocess.Popen([binary, "serve", "--data-dir", d, "--listen", f"127.0.0.1:{port}"],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", port)).close()
        break
    except OSError:
        time.sleep(0.1)
time.sleep(1)
pid = srv.pid
fds = {int(x) for x in os.listdir(f"/proc/{pid}/fd")}
low = next(i for i in range(100000) if i not in fds)
hard = [l.split()[4] for l in open(f"/proc/{pid}/limits") if l.startswith("Max open files")][0]
subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={low}:{hard}"], check=True)
body = b'{"events": [' + b",".join([b'{"message": "x"}'] * 1500) + b"]}"
head = (f"POST /api/v1/events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n").encode()
counts, lock = {}, threading.Lock()


def one():
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    try:
        s.sendall(head + body[:8000])
        time.sleep(0.02)
        s.sendall(body[8000:])
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        outcome = data[:12].decode(errors="replace") if data else "empty"
    except ConnectionResetError:
        outcome = "reset"
    except BrokenPipeError:
        try:
            data = s.recv(65536)
            outcome = ("pipe+" + data[:12].decode(errors="replace")) if data else "pipe-empty"
        except ConnectionResetError:
            outcome = "pipe-reset"
    except socket.timeout:
        outcome = "timeout"
    finally:
        s.close()
    with lock:
        counts[outcome] = counts.get(outcome, 0) + 1


def worker(k):
    for _ in range(k):
        one()


threads = [threading.Thread(target=worker, args=(n // 4,)) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
srv.terminate()
srv.wait()
print(json.dumps(counts))
