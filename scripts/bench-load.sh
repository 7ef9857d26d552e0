#!/usr/bin/env bash
# The daemon under sustained load: whether `/metrics`, `/healthz` and the counters stay live
# while one long stretch of work runs.
#
# Usage: scripts/bench-load.sh [PREFILL] [ARRIVING]
#   PREFILL   finished tasks already in tasks.json (default 20000, scripts/gen-tasks.py)
#   ARRIVING  owned tasks written in one go once the daemon watches (default 300)
# Environment:
#   OPSFLOW=PATH   the binary to measure (default: target/release/opsflow, built first)
#   BENCH_AGENTS=N instead of one write, N agents add the ARRIVING tasks with
#                  `opsflow tasks add` while the daemon works (see below)
#   BENCH_RATE=R   with BENCH_AGENTS: the agents together add R owned tasks a second (each
#                  followed by one other agent's task), on a schedule, instead of as fast as
#                  they can
#   BENCH_KEEP=1   keep the workspace and the daemon's log
#
# What it does: the sample workspace with PREFILL finished tasks and no current node, under
# `opsflow -v watch --http 127.0.0.1:PORT`; once it answers, ARRIVING design tasks land in one
# rename of tasks.json. Every 100 ms it scrapes /metrics and /healthz and records how long
# each took to answer, the nodes run so far (`opsflow_node_runs_total`) and the reconciles that
# ended (`opsflow_reconciles_total`). It prints a markdown report: how long the work took, the
# longest stretch in which the node counter did not move while work remained, the slowest
# answers, and how many nodes were counted before the first reconcile that met them ended.
#
# With BENCH_AGENTS=N, N agent processes each add ARRIVING/N owned design tasks, one after
# another, with `opsflow tasks add` (each add takes the task list's lock, as agents' tools
# do), and one other agent's task after every owned one. It reports the tasks claimed and done
# per second, the time from an add returning to its task being `done` (tasks.json looked at
# every 100 ms, so that looking costs little of the two cores), how long each `tasks add` took,
# and the CPU time of the adds, the daemon and the looking. As fast as they can, the agents
# measure how many tasks a second the daemon gets done while they write; at a BENCH_RATE, how
# long a task waits for the daemon when work arrives at that rate (an add that returns late
# makes the agent's next one start at once, not later: the schedule is kept).
#
# A benchmark, not a test: CI does not run it; it exits 0 whatever the figures.
set -euo pipefail

PREFILL=${1:-20000}
ARRIVING=${2:-300}
AGENTS=${BENCH_AGENTS:-0}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "bench-load: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is required"

# shellcheck source=scripts/bench-lib.sh
source "$repo/scripts/bench-lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/opsflow-bench-load.XXXXXX")
bench_cleanup_on_exit bench-load
bench_binary "$repo" "$work" || die "no binary to measure"
ws=$work/ws
bench_workspace "$repo" "$work" "$ws" "$PREFILL"
bytes=$(stat -c %s "$ws/docs/workflow/tasks.json")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$work/daemon.log
"$opsflow" -C "$ws" -v watch --http "127.0.0.1:$port" >/dev/null 2>"$log" &
daemon_pid=$!

if (( AGENTS > 0 )); then
PYTHONPATH="$repo/scripts" python3 - "$ws" "$port" "$ARRIVING" "$PREFILL" "$bytes" "$daemon_pid" "$AGENTS" "$opsflow" "${BENCH_RATE:-0}" <<'PY'
import os, re, statistics, subprocess, sys, threading, time, urllib.request
ws, port, arriving, prefill, size, pid, agents, opsflow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
rate = float(sys.argv[9])
base = f"http://127.0.0.1:{port}"
from benchlib import wait_until

def healthy():
    with urllib.request.urlopen(base + "/healthz", timeout=30) as r:
        return r.status == 200

wait_until("answer /healthz", healthy, 60)
tasks_path = f"{ws}/docs/workflow/tasks.json"
added = {}      # id -> monotonic time its add returned
done_at = {}    # id -> monotonic time it was first seen done
adds = []       # duration of each `tasks add`
lock = threading.Lock()
per_agent = arriving // agents

def agent(a):
    for i in range(per_agent):
        if rate > 0:
            # Agent a adds its i-th owned task at start + (i * agents + a) / rate.
            due = start + (i * agents + a) / rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
        for owned in (True, False):
            tid = f"LOAD-{a}-{i:05d}" if owned else f"OTHER-{a}-{i:05d}"
            args = [opsflow, "-q", "-C", ws, "tasks", "add", "--id", tid, "--title", f"Design the environments ({tid})",
                    "--set", "unit_id=UNIT-001", "--set", "priority=high"]
            args += ["--owner", "DevOps-Engineer", "--type", "infrastructure_design"] if owned else ["--owner", "Backend-Engineer", "--type", "implementation"]
            t = time.monotonic()
            subprocess.run(args, stdout=subprocess.DEVNULL, check=True)
            now = time.monotonic()
            with lock:
                adds.append(now - t)
                if owned:
                    added[tid] = now

def daemon_cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

import resource
cpu_before = (daemon_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF))
start = time.monotonic()
threads = [threading.Thread(target=agent, args=(a,)) for a in range(agents)]
for t in threads:
    t.start()
pattern = re.compile(r'"id": "(LOAD-[0-9]+-[0-9]+)"[^{}]*?"status": "done"')
total = per_agent * agents
while time.monotonic() - start < 900:
    with open(tasks_path, encoding="utf-8") as f:
        text = f.read()
    now = time.monotonic()
    for tid in pattern.findall(text):
        done_at.setdefault(tid, now)
    if len(done_at) >= total:
        break
    time.sleep(0.1)
for t in threads:
    t.join()
wall = time.monotonic() - start
children, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
cpu = lambda after, before: after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
cpu_daemon, cpu_adds, cpu_me = daemon_cpu() - cpu_before[0], cpu(children, cpu_before[1]), cpu(me, cpu_before[2])
end = max(done_at.values()) if done_at else time.monotonic()
lat = sorted(done_at[t] - added[t] for t in done_at if t in added)
q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
with open(f"/proc/{pid}/status") as f:
    hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
paced = f", {rate:g} owned tasks a second" if rate > 0 else ", as fast as they can"
print(f"## opsflow watch under load: {prefill:,} finished tasks ({size / 1e6:.1f} MB), {agents} agents adding {total} owned tasks and {total} others{paced}\n")
print("| figure | value |\n| --- | --- |")
last_add = max(added.values()) if added else start
print(f"| owned tasks added | {len(added)} in {last_add - start:.1f} s ({len(added) / max(last_add - start, 1e-9):.1f} per second) |")
print(f"| owned tasks claimed and done | {len(done_at)} of {total} in {end - start:.1f} s ({len(done_at) / max(end - start, 1e-9):.1f} per second) |")
print(f"| from an add returning to its task `done`, p50 / p99 / max | {q(lat, 0.5) * 1000:.0f} / {q(lat, 0.99) * 1000:.0f} / {(lat[-1] if lat else float('nan')) * 1000:.0f} ms |")
adds.sort()
print(f"| `opsflow tasks add`, p50 / p95 / max ({len(adds)} adds) | {q(adds, 0.5) * 1000:.0f} / {q(adds, 0.95) * 1000:.0f} / {adds[-1] * 1000:.0f} ms |")
print(f"| daemon peak RSS (VmHWM) | {hwm / 1024:.0f} MiB |")
cores = os.cpu_count()
print(f"| CPU time, of {cores} x {wall:.1f} s = {cores * wall:.1f} s | `tasks add` processes {cpu_adds:.1f} s "
      f"({cpu_adds / max(len(adds), 1) * 1000:.0f} ms each), the daemon {cpu_daemon:.1f} s "
      f"({cpu_daemon / max(len(done_at), 1) * 1000:.0f} ms per owned task), this script's polling of tasks.json {cpu_me:.1f} s |")
per_task = (cpu_adds / max(len(adds), 1)) * 2 + cpu_daemon / max(len(done_at), 1)
print(f"| the CPU floor: {cores} cores / (two adds + the daemon's share) per owned task | {cores / per_task:.1f} per second |")
PY
# Each owned task is four rewrites of tasks.json under its lock: its add, the other agent's
# add that follows it, the claim and the outcome.
echo
mkdir -p "$work/floor"
python3 "$repo/scripts/bench-floor.py" "$ws/docs/workflow/tasks.json" "$work/floor" --writes-per-task 4
exit 0
fi
PYTHONPATH="$repo/scripts" python3 - "$ws" "$port" "$ARRIVING" "$PREFILL" "$bytes" "$daemon_pid" <<'PY'
import json, os, sys, time, urllib.request
ws, port, arriving, prefill, size, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
base = f"http://127.0.0.1:{port}"

def get(path):
    t = time.monotonic()
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            body, code = r.read().decode(), r.status
    except urllib.error.HTTPError as e:
        body, code = e.read().decode(), e.code
    return body, code, time.monotonic() - t

def total(text, name):
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith(name + "_") and not line.startswith("#"))

from benchlib import wait_until
wait_until("answer /healthz", lambda: get("/healthz")[1] == 200, 60)
body, _, _ = get("/metrics")
reconciles_before = total(body, "opsflow_reconciles_total")
runs_before = total(body, "opsflow_node_runs_total")

tasks_path = f"{ws}/docs/workflow/tasks.json"
with open(tasks_path, encoding="utf-8") as f:
    data = json.load(f)
for i in range(arriving):
    data["tasks"].append({"id": f"LOAD-{i:05d}", "title": f"Design the environments ({i})", "agent": "DevOps-Engineer",
                          "type": "infrastructure_design", "status": "pending", "priority": "high", "unit_id": "UNIT-001"})
tmp = tasks_path + ".bench-tmp"
with open(tmp, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=2, ensure_ascii=False)
os.rename(tmp, tasks_path)
start = time.monotonic()

samples = []  # (t, runs, reconciles, metrics_s, healthz_s, healthz_code)
end = start + 600
while time.monotonic() < end:
    body, _, m_s = get("/metrics")
    _, h_code, h_s = get("/healthz")
    t = time.monotonic() - start
    runs = total(body, "opsflow_node_runs_total") - runs_before
    reconciles = total(body, "opsflow_reconciles_total") - reconciles_before
    samples.append((t, runs, reconciles, m_s, h_s, h_code))
    if runs >= arriving:
        break
    time.sleep(0.1)
done_at = samples[-1][0]
finished = samples[-1][1]
longest, last_t, last_runs = 0.0, 0.0, 0.0
for t, runs, *_ in samples:
    if runs > last_runs:
        longest = max(longest, t - last_t)
        last_t, last_runs = t, runs
first_end = next((s for s in samples if s[2] >= 1), None)
before_first_end = max((s[1] for s in samples if s[2] < 1), default=0)
with open(f"/proc/{pid}/status") as f:
    hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
print(f"## opsflow watch under load: {prefill:,} finished tasks ({size / 1e6:.1f} MB), {arriving} arriving in one write\n")
print("| figure | value |\n| --- | --- |")
print(f"| nodes run | {int(finished)} of {arriving} in {done_at:.1f} s ({finished / max(done_at, 1e-9):.1f} per second) |")
print(f"| longest time the node counter stood still while work remained | {longest * 1000:.0f} ms |")
print(f"| nodes counted before the first reconcile that met them ended | {int(before_first_end)} |")
print(f"| reconciles that ended while the work ran | {int(samples[-1][2])} |")
print(f"| /metrics answer, median / slowest | {sorted(s[3] for s in samples)[len(samples) // 2] * 1000:.1f} / {max(s[3] for s in samples) * 1000:.1f} ms |")
print(f"| /healthz answer, median / slowest | {sorted(s[4] for s in samples)[len(samples) // 2] * 1000:.1f} / {max(s[4] for s in samples) * 1000:.1f} ms |")
print(f"| /healthz not 200 | {sum(1 for s in samples if s[5] != 200)} of {len(samples)} scrapes |")
print(f"| daemon peak RSS (VmHWM) | {hwm / 1024:.0f} MiB |")
PY
