#!/usr/bin/env python3
"""The floor under the daemon's figures: what one read and one durable rewrite of a file cost.

Usage: scripts/bench-floor.py FILE SCRATCH_DIR [--runs N] [--debounce-ms MS] [--writes-per-task K]
                              [--baseline-rss-mib MIB]

Every change opsflow makes to tasks.json is a whole new file (the store is byte-preserving
and atomic): written to a temporary file, fsync'ed, renamed into place, the directory
fsync'ed. This measures exactly that on FILE's bytes, in SCRATCH_DIR (which must be on the same
filesystem as the workspace and outside it, so that the daemon sees none of it), and prints a
markdown table of medians and the floors they put under the daemon's targets:

- a claim cannot come sooner than the debounce, one read of the file and one rewrite, after
  the agent's own rename, which on ext4 waits for the new file's data to start going out;
- with K rewrites of the file per finished task (an agent's add, the claim, the outcome, ...)
  serialized by the file's lock, no more than 1 / (K x rewrite) tasks finish per second;
- the daemon's peak memory is at least its baseline plus the file held once.

Python 3 stdlib only. A benchmark helper, not a test: it never fails on a figure.
"""

import argparse
import os
import statistics
import sys
import time


def read_once(path):
    start = time.perf_counter_ns()
    with open(path, "rb") as f:
        data = f.read()
    return data, time.perf_counter_ns() - start


def rewrite_once(data, scratch, n):
    """Writes `data` as opsflow's store does: temporary file, fsync, rename, directory fsync."""
    target = os.path.join(scratch, "floor-target.json")
    temp = os.path.join(scratch, f".floor-target.json.{os.getpid()}.{n}.tmp")
    start = time.perf_counter_ns()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, target)
    dfd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return time.perf_counter_ns() - start


def unsynced_write(data, scratch):
    """Writes `data` the way an agent usually does: temporary file and rename, no fsync.
    Returns how long the rename took: replacing a file by one whose data is not yet on disk
    makes ext4 start writing that data out first (its `auto_da_alloc`), and the rename's
    event comes only after."""
    temp = os.path.join(scratch, ".floor-agent.json.tmp")
    with open(temp, "wb") as f:
        f.write(data)
    start = time.perf_counter_ns()
    os.rename(temp, os.path.join(scratch, "floor-agent.json"))
    return time.perf_counter_ns() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("file")
    p.add_argument("scratch")
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--debounce-ms", type=float)
    p.add_argument("--writes-per-task", type=int)
    p.add_argument("--baseline-rss-mib", type=float)
    a = p.parse_args()
    if os.stat(a.file).st_dev != os.stat(a.scratch).st_dev:
        sys.exit(f"bench-floor: {a.scratch} is not on the filesystem of {a.file}")
    reads, rewrites, after_agent = [], [], []
    data = b""
    for n in range(a.runs):
        data, took = read_once(a.file)
        reads.append(took / 1e6)
        rewrites.append(rewrite_once(data, a.scratch, n) / 1e6)
    # The benchmarks' agents write tasks.json without fsync: the kernel writes their pages back
    # while opsflow's own durable rewrite waits for the disk.
    # And the daemon reads the file the debounce after the agent's rename, while those pages
    # are still being written back.
    read_after_agent, renames = [], []
    for n in range(a.runs):
        renames.append(unsynced_write(data, a.scratch) / 1e6)
        time.sleep((a.debounce_ms or 0) / 1000)
        _, took = read_once(os.path.join(a.scratch, "floor-agent.json"))
        read_after_agent.append(took / 1e6)
        after_agent.append(rewrite_once(data, a.scratch, a.runs + n) / 1e6)
    for name in ("floor-target.json", "floor-agent.json"):
        os.remove(os.path.join(a.scratch, name))
    read_ms, rewrite_ms = statistics.median(reads), statistics.median(rewrites)
    agent_ms = statistics.median(after_agent)
    agent_read_ms = statistics.median(read_after_agent)
    rename_ms = statistics.median(renames[1:] or renames)
    size_mib = len(data) / 1048576
    print(f"The floor, measured on the same file ({len(data):,} bytes) and filesystem, median of {a.runs} "
          f"(`scripts/bench-floor.py`):\n")
    print("| floor | measured |")
    print("| --- | ---: |")
    print(f"| one read of the file | {read_ms:.1f} ms |")
    print(f"| one durable rewrite (temporary file, fsync, rename, directory fsync) | {rewrite_ms:.1f} ms "
          f"(p90 {sorted(rewrites)[int(len(rewrites) * 0.9) - 1]:.1f} ms) |")
    print(f"| an agent's rename of its new file over the last one (ext4 writes the new data out first) | "
          f"{rename_ms:.1f} ms |")
    print(f"| the same read {a.debounce_ms or 0:.0f} ms after an agent wrote the file without fsync (its "
          f"pages still being written back) | {agent_read_ms:.1f} ms |")
    print(f"| the same rewrite right after an agent wrote the file without fsync (its pages still being "
          f"written back) | {agent_ms:.1f} ms |")
    if a.debounce_ms is not None:
        print(f"| a claim: debounce + one read + one rewrite, before any parsing | "
              f"{a.debounce_ms + read_ms + rewrite_ms:.1f} ms; after an agent's unsynced write "
              f"{a.debounce_ms + agent_read_ms + agent_ms:.1f} ms |")
        print(f"| a claim counted from just before the agent's rename, as bench-watch counts it: the rename + "
              f"debounce + read + rewrite | {rename_ms + a.debounce_ms + agent_read_ms + agent_ms:.1f} ms |")
    if a.writes_per_task:
        per_task = a.writes_per_task * rewrite_ms
        print(f"| tasks finished per second with {a.writes_per_task} rewrites of the file per task, "
              f"one at a time under its lock | {1000 / per_task:.1f} per second |")
    if a.baseline_rss_mib is not None:
        print(f"| peak memory: the daemon's baseline + the file held once | "
              f"{a.baseline_rss_mib:.1f} + {size_mib:.1f} = {a.baseline_rss_mib + size_mib:.1f} MiB |")


if __name__ == "__main__":
    main()
