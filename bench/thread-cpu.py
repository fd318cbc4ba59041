#!/usr/bin/env python3
"""Where a process's CPU goes, by thread name, over a stretch of a benchmark.

`thread-cpu.py snap PID > FILE` records each live thread's name, id and CPU
ticks, and the whole process's ticks (which also count threads that have
exited). `thread-cpu.py diff BEFORE AFTER` prints a Markdown table of the
CPU seconds each thread name used between the two snapshots; what threads
that exited in between used (tantivy starts its indexing threads afresh at
every commit) is the process's growth less the live threads'.
"""
import os
import sys
from collections import Counter

HZ = os.sysconf("SC_CLK_TCK")


def ticks(stat_path):
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def snap(pid):
    print(f"process {ticks(f'/proc/{pid}/stat')}")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip().replace(" ", "_")
            print(f"{tid} {name} {ticks(f'/proc/{pid}/task/{tid}/stat')}")
        except OSError:
            pass  # the thread exited meanwhile


def load(path):
    process, threads = 0, {}
    for line in open(path):
        parts = line.split()
        if parts[0] == "process":
            process = int(parts[1])
        else:
            threads[parts[0]] = (parts[1], int(parts[2]))
    return process, threads


def diff(before_path, after_path):
    p0, before = load(before_path)
    p1, after = load(after_path)
    by_name = Counter()
    for tid, (name, t1) in after.items():
        by_name[name] += t1 - before.get(tid, (name, 0))[1]
    total = p1 - p0
    by_name["(threads that exited)"] = max(0, total - sum(by_name.values()))
    print("| thread | CPU s | share |")
    print("|---|---:|---:|")
    for name, t in by_name.most_common():
        if t > 0:
            print(f"| {name} | {t / HZ:.1f} | {100 * t / max(total, 1):.0f}% |")
    print(f"| all | {total / HZ:.1f} | 100% |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "snap":
        snap(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "diff":
        diff(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
