#!/usr/bin/env python3
"""Measure a running `opsflow watch`: reaction latency to a new task, and the idle cost.

Usage: bench-watch.py --pid PID --ws DIR --log FILE --opsflow BIN [options]

Run by scripts/bench-watch.sh, which builds opsflow, prepares the workspace, starts the
daemon (`opsflow -vv watch`, stderr to FILE) and stops it afterwards. This helper only
observes and writes tasks; it prints the results as markdown on stdout.

Two phases, in this order:

1. Idle. Once the daemon has settled, for IDLE seconds: CPU time (utime + stime of
   /proc/PID/stat, and the nanosecond on-CPU time of every thread from
   /proc/PID/task/*/schedstat), context switches of every thread (each one is a wake-up:
   a daemon that polls shows them), VmRSS (sampled every second) and VmHWM.

2. Reaction latency. Each iteration waits until the daemon has settled, appends one pending
   `infrastructure_design` task for the DevOps agent to tasks.json (as an agent would: read the
   file, write a temporary file beside it, rename it over tasks.json; or with
   `opsflow tasks add`), and times, from that write:
   - the claim: the daemon's first replacement of tasks.json after the write (in a quiet
     workspace the daemon writes nothing else first); the file is read at once and, when it
     still shows the task `in_progress`, the claim counts as observed;
   - the first artifact: the first file the node moves into the artifacts directory
     (INFRA04-env-specs.md);
   - done: the replacement of tasks.json that shows the task `done`.
   Events come from inotify (through ctypes, Python stdlib only): the helper sleeps in
   select() on the inotify descriptor and takes CLOCK_MONOTONIC when a read returns, so
   the figures include this process's wake-up, not any polling interval. The node's three
   artifacts are removed after each iteration, so each iteration's artifact is new.
   `--tasks replace` writes a list holding only the new task instead of appending it (to
   tell memory that grows with tasks.json from memory that grows with time).
   The daemon's own `hint:` debug line (its log timestamps, CLOCK_REALTIME, microseconds)
   splits each latency into "the daemon noticed" and "debounce + reconcile".
"""

import argparse
import ctypes
import ctypes.util
import datetime
import glob
import json
import os
import re
import select
import statistics
import struct
import subprocess
import sys
import time

from benchlib import memory_kib

# --- inotify through ctypes -------------------------------------------------------------

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
EVENT_HEADER = struct.Struct("iIII")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]


class Inotify:
    """Watches a few directories; `events(timeout)` returns [(monotonic_ns, dir, name, mask)]."""

    def __init__(self, dirs):
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dirs = {}
        mask = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        for d in dirs:
            wd = _libc.inotify_add_watch(self.fd, os.fsencode(d), mask)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d}")
            self.dirs[wd] = d
        self.overflows = 0

    def events(self, timeout):
        """Waits up to `timeout` seconds for events; returns those of one read (maybe none)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        now = time.monotonic_ns()
        out = []
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, length = EVENT_HEADER.unpack_from(data, offset)
            offset += EVENT_HEADER.size
            name = data[offset:offset + length].rstrip(b"\0").decode("utf-8", "replace")
            offset += length
            if mask & IN_Q_OVERFLOW:
                self.overflows += 1
                continue
            out.append((now, self.dirs.get(wd, "?"), name, mask))
        return out


# --- /proc ------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_ticks(pid):
    """utime + stime of the whole process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def thread_stats(pid):
    """{tid: (on-CPU ns, context switches)} of every thread of the process."""
    out = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/schedstat") as f:
                cpu_ns = int(f.read().split()[0])
            switches = 0
            with open(f"{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just ended (a blocking-pool thread after its keep-alive)
        out[os.path.basename(task)] = (cpu_ns, switches)
    return out


def thread_cpu_ns(pid):
    return sum(cpu for cpu, _ in thread_stats(pid).values())


class ThreadTracker:
    """Per-thread CPU and context switches over a window, sampled now and then: a thread
    that starts counts from zero, one that ends counts up to its last sample."""

    def __init__(self, pid):
        self.pid = pid
        self.first = thread_stats(pid)
        self.last = dict(self.first)
        self.started = set()

    def sample(self):
        for tid, values in thread_stats(self.pid).items():
            if tid not in self.first:
                self.first[tid] = (0, 0)
                self.started.add(tid)
            self.last[tid] = values

    def totals(self):
        cpu = sum(self.last[t][0] - self.first[t][0] for t in self.last)
        switches = sum(self.last[t][1] - self.first[t][1] for t in self.last)
        return cpu, switches



def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- the daemon's log ---------------------------------------------------------------------

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\s+(\w+)\s+(.*)$")


def log_lines(path):
    """[(unix seconds, level, message)] of the daemon's text log so far."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LOG_TIME.match(line.strip())
            if not m:
                continue
            stamp = m.group(1).replace("Z", "+00:00")
            try:
                t = datetime.datetime.fromisoformat(stamp).timestamp()
            except ValueError:
                continue
            out.append((t, m.group(2), m.group(3)))
    return out


# --- helpers ------------------------------------------------------------------------------


def parse_duration(text, default_s):
    if not text:
        return default_s
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.strip())
    if not m:
        return default_s
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    rank = max(1, -(-len(s) * p // 100))
    return s[int(rank) - 1]


def ms(ns):
    return ns / 1e6


class Bench:
    def __init__(self, args):
        self.a = args
        self.pid = args.pid
        self.ws = os.path.abspath(args.ws)
        with open(os.path.join(self.ws, "project-config.json")) as f:
            config = json.load(f)
        paths = config.get("paths", {})
        devops = config.get("devops", {})
        self.tasks_rel = paths.get("tasks", "docs/workflow/tasks.json")
        self.tasks = os.path.join(self.ws, self.tasks_rel)
        self.workflow_dir = os.path.dirname(self.tasks)
        self.artifacts = os.path.join(self.ws, paths.get("artifacts", "docs/workflow/artifacts"))
        self.agent = config.get("agent", {}).get("name", "DevOps-Engineer")
        self.debounce_text = devops.get("debounce", "50ms (default)")
        self.debounce = parse_duration(devops.get("debounce"), 0.050)
        self.poll_text = devops.get("poll_interval", "5m (default)")
        self.poll = parse_duration(devops.get("poll_interval"), 300)
        # Quiet long enough for the daemon's follow-up reconcile (its own writes are hints
        # too) to have started and finished: debounce after the last event, plus margin.
        self.quiet = max(0.3, 6 * self.debounce)
        dirs = [self.ws, self.workflow_dir, self.artifacts]
        os.makedirs(self.artifacts, exist_ok=True)
        self.inotify = Inotify(dict.fromkeys(dirs))
        self.last_event = time.monotonic_ns()
        self.outputs = ["INFRA04-env-specs.md", "INFRA05-iac-design.md", "INFRA06-deployment-strategy.md"]

    def check_alive(self):
        if not alive(self.pid):
            sys.exit(f"bench-watch: the daemon (pid {self.pid}) is gone; see {self.a.log}")

    def drain(self, timeout):
        events = self.inotify.events(timeout)
        if events:
            self.last_event = events[-1][0]
        return events

    def settle(self, limit=60.0):
        """Waits until the workspace had no event for `quiet` seconds and the daemon's threads
        used under 0.5 ms of CPU in the last 100 ms. Returns the seconds waited."""
        start = time.monotonic()
        cpu_prev = thread_cpu_ns(self.pid)
        t_prev = time.monotonic()
        while True:
            self.check_alive()
            self.drain(0.02)
            now = time.monotonic()
            if now - t_prev >= 0.1:
                cpu = thread_cpu_ns(self.pid)
                busy = cpu - cpu_prev > 500_000
                cpu_prev, t_prev = cpu, now
                quiet = (time.monotonic_ns() - self.last_event) / 1e9 >= self.quiet
                if quiet and not busy:
                    return now - start
            if now - start > limit:
                sys.exit(f"bench-watch: the daemon did not settle within {limit:.0f} s; see {self.a.log}")

    # --- phase 1: idle ---------------------------------------------------------------------

    def idle(self):
        self.settle()
        seconds = self.a.idle
        rss_samples = []
        events = 0
        mem0 = memory_kib(self.pid)
        ticks0 = proc_ticks(self.pid)
        threads = ThreadTracker(self.pid)
        threads0 = len(threads.first)
        t0 = time.monotonic()
        next_sample = t0
        while True:
            now = time.monotonic()
            if now - t0 >= seconds:
                break
            if now >= next_sample:
                self.check_alive()
                rss_samples.append(memory_kib(self.pid)["VmRSS"])
                threads.sample()
                next_sample += 1.0
            events += len(self.drain(min(next_sample, t0 + seconds) - now))
        t1 = time.monotonic()
        ticks1 = proc_ticks(self.pid)
        threads.sample()
        mem1 = memory_kib(self.pid)
        rss_samples.append(mem1["VmRSS"])
        cpu, switches = threads.totals()
        alive_now = set(thread_stats(self.pid))
        wall = t1 - t0
        return {
            "seconds": wall,
            "cpu_ticks": ticks1 - ticks0,
            "cpu_pct_ticks": (ticks1 - ticks0) / CLK_TCK / wall * 100,
            "cpu_ms_sched": cpu / 1e6,
            "cpu_pct_sched": cpu / 1e9 / wall * 100,
            "switches": switches,
            "threads": (threads0, len(alive_now)),
            "threads_started": len(threads.started),
            "threads_ended": len(set(threads.last) - alive_now),
            "rss_start": mem0["VmRSS"],
            "rss_max": max(rss_samples),
            "rss_end": mem1["VmRSS"],
            "hwm": mem1["VmHWM"],
            "events": events,
        }

    # --- phase 2: reaction latency -----------------------------------------------------------

    def task_status(self, task_id):
        """The task's status, found in the bytes without decoding the file (a large
        tasks.json would otherwise delay the timing of the events that follow)."""
        try:
            with open(self.tasks, "rb") as f:
                data = f.read()
        except OSError:
            return None
        m = re.search(rb'"id"\s*:\s*"' + re.escape(task_id.encode()) + rb'"', data)
        if not m:
            return None
        following = re.compile(rb'"id"\s*:').search(data, m.end())
        end = following.start() if following else len(data)
        status = re.compile(rb'"status"\s*:\s*"([^"]*)"').search(data, m.end(), end)
        return status.group(1).decode() if status else None

    def task_entry(self, task_id):
        """The task, decoded (untimed: after the iteration's events)."""
        with open(self.tasks, "rb") as f:
            data = json.loads(f.read())
        items = data.get("tasks", []) if isinstance(data, dict) else data
        return next((t for t in items if t.get("id") == task_id), None)

    def write_task(self, task):
        """Writes the task; returns (monotonic ns, realtime ns) of the write."""
        if self.a.writer == "cli":
            cmd = [self.a.opsflow, "-q", "-C", self.ws, "tasks", "add", "--id", task["id"], "--title", task["title"],
                   "--agent", task["agent"], "--type", task["type"], "--set", f"priority={task['priority']}",
                   "--set", f"unit_id={task['unit_id']}"]
            t0, w0 = time.monotonic_ns(), time.time_ns()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            # The write happened somewhere inside the command; `write_observed` below takes
            # the moment the new tasks.json appeared instead.
            return t0, w0
        with open(self.tasks, "rb") as f:
            data = json.loads(f.read())
        if self.a.tasks == "replace":
            data["tasks"] = []  # the finished tasks are archived elsewhere; only the new one stays
        data["tasks"].append(task)
        temporary = os.path.join(self.workflow_dir, ".tasks.json.bench-tmp")
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
        t0, w0 = time.monotonic_ns(), time.time_ns()
        os.rename(temporary, self.tasks)
        return t0, w0

    def iteration(self, i):
        settled_for = self.settle()
        task_id = f"BENCH-{i:04d}"
        task = {
            "id": task_id,
            "title": f"Design the environments (benchmark iteration {i})",
            "agent": self.agent,
            "type": "infrastructure_design",
            "status": "pending",
            "priority": "high",
            "unit_id": self.a.unit,
        }
        w_begin = time.time_ns()
        t0, w0 = self.write_task(task)
        replaced = []  # (t, status seen when read at once) for each tasks.json moved into place
        artifact = None
        done = None
        statuses = []
        deadline = t0 + int(self.a.timeout * 1e9)
        while done is None or artifact is None:
            if time.monotonic_ns() > deadline:
                sys.exit(f"bench-watch: iteration {i}: {task_id} not done with an artifact within "
                         f"{self.a.timeout:.0f} s (statuses seen: {statuses}); see {self.a.log}")
            self.check_alive()
            for t, d, name, mask in self.drain(0.5):
                if d == self.workflow_dir and name == os.path.basename(self.tasks) and mask & (IN_MOVED_TO | IN_CLOSE_WRITE):
                    status = self.task_status(task_id)
                    replaced.append((t, status))
                    statuses.append(status)
                    if status in ("done", "failed", "blocked", "rolled_back", "deployed") and done is None:
                        done = (t, status)
                elif d == self.artifacts and mask & IN_MOVED_TO and artifact is None \
                        and not name.startswith(".") and not name.endswith(".opsflow-tmp"):
                    artifact = (t, name)
        entry = self.task_entry(task_id)
        if done[1] != "done":
            sys.exit(f"bench-watch: iteration {i}: {task_id} ended `{done[1]}`, not `done`: {json.dumps(entry)}")
        # The write itself: ours (rename mode: the rename; cli mode: the first replacement
        # that holds the task), then the daemon's first replacement is the claim.
        if self.a.writer == "cli":
            first = next(k for k, (_, s) in enumerate(replaced) if s is not None)
            t_write = replaced[first][0]
            w_write = w0 + (t_write - t0)
            rest = replaced[first + 1:]
        else:
            t_write, w_write = t0, w0
            rest = replaced[1:]  # replaced[0] is our own rename
        if not rest:
            sys.exit(f"bench-watch: iteration {i}: no replacement of tasks.json by the daemon was seen")
        claim_t, claim_status = rest[0]
        outcome_artifacts = (entry.get("outcome") or {}).get("artifacts") or []
        if entry.get("claimed_by") != self.agent or not any(a.endswith(artifact[1]) for a in outcome_artifacts):
            sys.exit(f"bench-watch: iteration {i}: unexpected end state: {json.dumps(entry)}")
        result = {
            "i": i,
            "claim_ms": ms(claim_t - t_write),
            "claim_seen_in_progress": claim_status == "in_progress",
            "artifact_ms": ms(artifact[0] - t_write),
            "artifact": artifact[1],
            "done_ms": ms(done[0] - t_write),
            "write_wall": w_write / 1e9,
            "write_begin_wall": w_begin / 1e9,
            "settled_for": settled_for,
            "replacements": len(replaced),
            "rss_kib": memory_kib(self.pid)["VmRSS"],
        }
        # Take the artifacts away again (untimed); the next iteration starts after the
        # daemon has settled from these events too.
        for name in self.outputs:
            try:
                os.unlink(os.path.join(self.artifacts, name))
            except FileNotFoundError:
                pass
        return result

    def latency(self):
        results = []
        for i in range(1, self.a.warmup + self.a.iterations + 1):
            r = self.iteration(i)
            r["warmup"] = i <= self.a.warmup
            results.append(r)
            if i % 20 == 0:
                print(f"bench-watch: {i} of {self.a.warmup + self.a.iterations} iterations", file=sys.stderr)
        self.settle()
        # The daemon's own view: when it noticed the write (its first `hint:` line after it).
        # An agent's write starts with its temporary file, which is already an event, so the
        # daemon's first hint may come a little before the rename.
        hints = [t for t, _level, msg in log_lines(self.a.log) if "hint: " in msg]
        for r in results:
            after = [t for t in hints if t >= r["write_begin_wall"]]
            r["hint_ms"] = (after[0] - r["write_wall"]) * 1000 if after else None
        return results


# --- report -------------------------------------------------------------------------------


def stats_row(values):
    return [statistics.median(values), percentile(values, 95), percentile(values, 99), max(values), min(values)]


def fmt(v):
    return f"{v:.1f} ms"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--ws", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--opsflow", required=True)
    p.add_argument("--iterations", type=int, default=120)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--idle", type=float, default=60)
    p.add_argument("--writer", choices=["rename", "cli"], default="rename")
    p.add_argument("--tasks", choices=["append", "replace"], default="append",
                   help="append the new task to tasks.json (default), or replace the list with it (rename writer only)")
    p.add_argument("--unit", default="UNIT-001")
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--results", help="also write every figure as JSON here")
    a = p.parse_args()

    bench = Bench(a)
    print(f"bench-watch: idle for {a.idle:.0f} s", file=sys.stderr)
    idle = bench.idle()
    # The peak of the iterations alone, apart from the start's first whole scan: writing 5 to
    # clear_refs resets VmHWM to the current RSS (Linux 4.0+; skipped where it is refused).
    try:
        with open(f"/proc/{a.pid}/clear_refs", "w") as f:
            f.write("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    print(f"bench-watch: {a.warmup} warm-up and {a.iterations} timed iterations", file=sys.stderr)
    runs = bench.latency()
    after = memory_kib(a.pid)
    timed = [r for r in runs if not r["warmup"]]
    claim = [r["claim_ms"] for r in timed]
    art = [r["artifact_ms"] for r in timed]
    done = [r["done_ms"] for r in timed]
    hint = [r["hint_ms"] for r in timed if r["hint_ms"] is not None]
    reconcile = [r["claim_ms"] - r["hint_ms"] for r in timed if r["hint_ms"] is not None]
    seen = sum(r["claim_seen_in_progress"] for r in timed)
    names = sorted({r["artifact"] for r in timed})
    if a.results:
        with open(a.results, "w") as f:
            json.dump({"idle": idle, "runs": runs, "after": after}, f, indent=1)

    deb_ms = bench.debounce * 1000
    c = stats_row(claim)
    ar = stats_row(art)
    d = stats_row(done)
    print(f"Debounce: `{bench.debounce_text}` ({deb_ms:.0f} ms); poll_interval: `{bench.poll_text}`. "
          f"Writer: {'a temporary file renamed over tasks.json, as an agent writes it' if a.writer == 'rename' else '`opsflow tasks add` (time from the moment its tasks.json appeared)'}. "
          f"{len(timed)} timed iterations after {a.warmup} warm-up ones; each one claimed and ran a real task "
          f"(pending -> in_progress -> done); {seen} of {len(timed)} claims were read back as `in_progress` "
          f"at the moment tasks.json was replaced"
          f"{' (the rest had already moved on to `done` when read)' if seen < len(timed) else ''}. "
          f"At the end tasks.json held {os.path.getsize(bench.tasks):,} bytes.")
    print()
    print("| from writing the task to | p50 | p95 | p99 | max | min |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    if hint:
        h = stats_row(hint)
        print("| the daemon's first `hint:` log line (its own timestamp) | " + " | ".join(fmt(v) for v in h) + " |")
    print("| its claim (`in_progress` in tasks.json) | " + " | ".join(fmt(v) for v in c) + " |")
    print(f"| its first artifact ({', '.join(names)}) | " + " | ".join(fmt(v) for v in ar) + " |")
    print("| `done` in tasks.json | " + " | ".join(fmt(v) for v in d) + " |")
    if reconcile:
        r = stats_row(reconcile)
        print("| the claim, counted from that hint (debounce + reconcile up to the claim) | " + " | ".join(fmt(v) for v in r) + " |")
    print()
    print("| idle, after settling | measured |")
    print("| --- | ---: |")
    print(f"| wall time | {idle['seconds']:.1f} s |")
    print(f"| CPU, utime + stime (/proc/PID/stat, {CLK_TCK} ticks/s) | {idle['cpu_ticks']} ticks = "
          f"{idle['cpu_pct_ticks']:.3f}% of one CPU |")
    print(f"| CPU, on-CPU time of all threads (schedstat) | {idle['cpu_ms_sched']:.2f} ms = {idle['cpu_pct_sched']:.4f}% of one CPU |")
    print(f"| context switches, all threads (wake-ups) | {idle['switches']} |")
    print(f"| threads at start / end (started, ended during the window) | {idle['threads'][0]} / {idle['threads'][1]} "
          f"({idle['threads_started']}, {idle['threads_ended']}) |")
    print(f"| file events in the workspace | {idle['events']} |")
    print(f"| VmRSS at start / max (1 s samples) / end | {idle['rss_start'] / 1024:.1f} / {idle['rss_max'] / 1024:.1f} / {idle['rss_end'] / 1024:.1f} MiB |")
    print(f"| VmHWM (peak since start) at the end of the idle minute | {idle['hwm'] / 1024:.1f} MiB |")
    print(f"| VmRSS after the first iteration / after the last one ({len(runs)}) | {runs[0]['rss_kib'] / 1024:.1f} / "
          f"{runs[-1]['rss_kib'] / 1024:.1f} MiB |")
    print(f"| VmRSS / VmHWM at the end | {after['VmRSS'] / 1024:.1f} / {after['VmHWM'] / 1024:.1f} MiB |")
    if hwm_reset:
        print(f"| VmHWM of the iterations alone (reset after the idle minute) | {after['VmHWM'] / 1024:.1f} MiB |")
    print()

    def verdict(ok):
        return "met" if ok else "NOT met"

    rss_peak = max(idle["hwm"], after["VmHWM"]) / 1024
    print("| target | measured | verdict |")
    print("| --- | --- | --- |")
    print(f"| p50 claim latency within debounce + 20 ms ({deb_ms + 20:.0f} ms) | {c[0]:.1f} ms | {verdict(c[0] <= deb_ms + 20)} |")
    print(f"| p99 claim latency within debounce + 100 ms ({deb_ms + 100:.0f} ms) | {c[2]:.1f} ms | {verdict(c[2] <= deb_ms + 100)} |")
    print(f"| idle CPU under 0.5% | {idle['cpu_pct_ticks']:.3f}% (ticks), {idle['cpu_pct_sched']:.4f}% (schedstat) | "
          f"{verdict(max(idle['cpu_pct_ticks'], idle['cpu_pct_sched']) < 0.5)} |")
    # A resync every poll_interval wakes the daemon and runs one reconcile (a few dozen
    # context switches); anything beyond that, or a steady trickle, is polling.
    resyncs = int(idle["seconds"] // bench.poll)
    wake_limit = 5 + 50 * resyncs
    print(f"| no busy loop, no polling faster than poll_interval ({bench.poll_text}) | {idle['switches']} context "
          f"switches in {idle['seconds']:.0f} s (allowed: {wake_limit}, for {resyncs} resyncs) | "
          f"{verdict(idle['switches'] <= wake_limit and idle['cpu_pct_sched'] < 0.5)} |")
    print(f"| RSS under 20 MiB | idle {idle['rss_max'] / 1024:.1f} MiB; peak (VmHWM) {rss_peak:.1f} MiB | "
          f"{verdict(idle['rss_max'] / 1024 < 20 and rss_peak < 20)} |")
    # Peak memory against the file: a pass holds the text of the file it read, so the idle
    # daemon plus one copy of the file is the floor of that design.
    file_mib = os.path.getsize(bench.tasks) / (1 << 20)
    if file_mib >= 1:
        floor = idle["rss_end"] / 1024 + file_mib
        print(f"| peak RSS within 1.5x the file ({1.5 * file_mib:.1f} MiB) | peak (VmHWM) {rss_peak:.1f} MiB; "
              f"floor, the idle daemon plus one copy of the file: {idle['rss_end'] / 1024:.1f} + {file_mib:.1f} = "
              f"{floor:.1f} MiB | {verdict(rss_peak <= 1.5 * file_mib)} |")
    if bench.inotify.overflows:
        print(f"\nThe helper's inotify queue overflowed {bench.inotify.overflows} times; figures may be missing events.")


if __name__ == "__main__":
    main()
