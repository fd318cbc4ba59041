#!/usr/bin/env python3
"""What the disk allows a durable commit, alone and beside a checkpointer.

Imitates SQLite's WAL commit on the decision path: FRAMES frames of 4 KiB
(plus the 24-byte frame header) appended with pwrite, then fsync, RATE
times a second. First alone, then while a second thread imitates the
checkpointer: PAGES random 4 KiB pages written into a separate "database"
file and fsynced, every 100 ms; then the same writes left to the kernel
without fsync. Prints the commit latency percentiles of each run. Every run is bounded (SECONDS each); the files live in a
temporary directory beside DIR (default: the system's temporary
directory, which is where bench/enforce-load.sh puts its store).

Usage: bench/fsync-contention.py
Tunables (environment): SECONDS (6), RATE (1200), FRAMES (10),
PAGES ("200 1000"), DIR.
"""
import os
import random
import tempfile
import threading
import time

SECONDS = float(os.environ.get("SECONDS", "6"))
RATE = float(os.environ.get("RATE", "1200"))
FRAMES = int(os.environ.get("FRAMES", "10"))
PAGES = [int(p) for p in os.environ.get("PAGES", "200 1000").split()]
PAGE = 4096
WAL_SIZE = 32 << 20
DB_PAGES = 65536


def percentiles(label, lat):
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"| {label} | {len(lat):,} | {q(.5):.3f} | {q(.9):.3f} | {q(.99):.3f} | {q(.999):.3f} | {lat[-1]:.3f} |")


def commits(wal, seconds):
    frame = os.urandom(PAGE + 24)
    lat, offset, start = [], 0, time.monotonic()
    while time.monotonic() - start < seconds:
        began = time.perf_counter()
        for _ in range(FRAMES):
            os.pwrite(wal, frame, offset)
            offset = (offset + len(frame)) % (WAL_SIZE - 2 * len(frame))
        os.fsync(wal)
        lat.append((time.perf_counter() - began) * 1000)
        pause = 1 / RATE - (time.perf_counter() - began)
        if pause > 0:
            time.sleep(pause)
    return lat


def checkpointer(db, pages, sync, stop):
    page, rng = os.urandom(PAGE), random.Random(1)
    while not stop.is_set():
        for _ in range(pages):
            os.pwrite(db, page, rng.randrange(DB_PAGES) * PAGE)
        if sync:
            os.fsync(db)
        stop.wait(0.1)


def main():
    with tempfile.TemporaryDirectory(dir=os.environ.get("DIR")) as work:
        wal = os.open(os.path.join(work, "wal"), os.O_RDWR | os.O_CREAT, 0o600)
        db = os.open(os.path.join(work, "db"), os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(wal, WAL_SIZE)
        os.ftruncate(db, DB_PAGES * PAGE)
        os.fsync(wal)
        os.fsync(db)
        print(f"Commits of {FRAMES} frames + fsync at {RATE:.0f}/s, {SECONDS:.0f} s a run.")
        print()
        print("| run | commits | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        percentiles("alone", commits(wal, SECONDS))
        for sync in (True, False):
            for pages in PAGES:
                stop = threading.Event()
                thread = threading.Thread(target=checkpointer, args=(db, pages, sync, stop))
                thread.start()
                try:
                    lat = commits(wal, SECONDS)
                finally:
                    stop.set()
                    thread.join()
                how = "and fsyncing " if sync else "without fsync "
                percentiles(f"beside a checkpointer writing {pages} pages {how}every 100 ms", lat)
        os.close(wal)
        os.close(db)


if __name__ == "__main__":
    main()
