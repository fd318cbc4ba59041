#!/usr/bin/env python3
"""The disk alone, paced like durable decisions: what its sync tail allows.

Writes SIZE bytes per operation at RATE operations a second into a file
that, like SQLite's WAL once it has grown, is overwritten in place, and makes
each write durable with fdatasync before the next. Operations that fall due
while a sync is running share the next write and sync, as a group commit
does. Each operation's latency runs from when it fell due (corrected for
coordinated omission, as oha's --latency-correction) to the end of the sync
that made it durable. Nothing else runs: this is the floor under any server
that syncs every acknowledgment on this disk.

Usage: bench/sync-probe.py DIR [RATE=2000] [SIZE=4096] [SECONDS=10]
"""
import os
import sys
import time

WAL_BYTES = 32 << 20
MOST_PER_GROUP = 64


def probe(directory, rate, size, seconds):
    path = os.path.join(directory, "sync-probe.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Written whole before the run, as a WAL that has grown is: every
        # write below overwrites blocks the file already has. (A file only
        # truncated to size has none, and each first write would also
        # allocate its block, which a WAL in use does not.)
        zeros = bytes(1 << 20)
        for _ in range(WAL_BYTES >> 20):
            os.write(fd, zeros)
        os.fsync(fd)
        block = os.urandom(size)
        offset, done, latencies = 0, 0, []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            due = start + done / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            group = 1
            while group < MOST_PER_GROUP and start + (done + group) / rate <= time.perf_counter():
                group += 1
            os.pwrite(fd, block * group, offset)
            offset = (offset + size * group) % (WAL_BYTES - size * MOST_PER_GROUP)
            os.fdatasync(fd)
            end = time.perf_counter()
            latencies.extend(end - (start + (done + k) / rate) for k in range(group))
            done += group
    finally:
        os.close(fd)
        os.unlink(path)
    latencies = sorted(ms * 1000 for ms in latencies)
    n = len(latencies)
    stalls = sum(1 for ms in latencies if ms > 10)
    return (f"disk alone, {size:,} B synced per operation at {rate:,}/s for {seconds:g} s: "
            f"p50 {latencies[n // 2]:.2f} ms, p99 {latencies[int(n * 0.99)]:.2f} ms, "
            f"max {latencies[-1]:.1f} ms; {stalls} of {n:,} operations over 10 ms")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    directory = args[0]
    rate = int(args[1]) if len(args) > 1 else 2000
    size = int(args[2]) if len(args) > 2 else 4096
    seconds = float(args[3]) if len(args) > 3 else 10
    print(probe(directory, rate, size, seconds))
