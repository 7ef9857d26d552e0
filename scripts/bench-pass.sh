#!/usr/bin/env bash
# What one reconcile with nothing to do costs `opsflow watch` on a large task list, next to
# `opsflow tasks list --mine` on the same file, and the daemon's memory doing it.
#
# Usage: scripts/bench-pass.sh [PREFILL] [RUNS]
#   PREFILL  finished tasks in tasks.json (default 100000, scripts/gen-tasks.py)
#   RUNS     reconciles and `tasks list` runs timed (default 30)
# Environment:
#   OPSFLOW=PATH        the binary to measure (default: target/release/opsflow, built first)
#   OPSFLOW_BASE=PATH   a second binary (an earlier build) measured the same way, in the same run
#
# What it does: the sample workspace with PREFILL finished tasks (scripts/bench-lib.sh) under
# `opsflow watch --http`; each timed reconcile is woken by a new file outside the workflow
# files (a note in docs/), so it reads every workflow file and finds nothing to do. Its time
# is the daemon's own `opsflow_reconcile_last_duration_seconds` once `opsflow_reconciles_total`
# moved. Then `opsflow tasks list --mine` is timed RUNS times on the same file (output to
# /dev/null). Prints a markdown table. A benchmark, not a test.
set -euo pipefail

PREFILL=${1:-100000}
RUNS=${2:-30}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
invocation="scripts/bench-pass.sh${*:+ $*}"
die() { echo "bench-pass: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is required"
# shellcheck source=scripts/bench-lib.sh
source "$repo/scripts/bench-lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/opsflow-bench-pass.XXXXXX")
bench_cleanup_on_exit bench-pass
load_at_start=$(cut -d" " -f1-3 /proc/loadavg)
bench_binary "$repo" "$work" || die "no binary to measure"
builds=("$opsflow")
if [[ -n ${OPSFLOW_BASE:-} ]]; then
    cp "$OPSFLOW_BASE" "$work/opsflow-base"
    builds=("$work/opsflow-base" "$opsflow")
fi
ws=$work/ws
bench_workspace "$repo" "$work" "$ws" "$PREFILL"
bytes=$(stat -c %s "$ws/docs/workflow/tasks.json")

echo "| build | reconcile with nothing to do, median | p95 | \`tasks list --mine\`, median | p95 | reconcile / list | daemon VmRSS idle | VmHWM |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for binary in "${builds[@]}"; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$binary" -C "$ws" watch --http "127.0.0.1:$port" >/dev/null 2>"$work/daemon.log" &
    daemon_pid=$!
    PYTHONPATH="$repo/scripts" python3 - "$ws" "$port" "$RUNS" "$daemon_pid" "$binary" <<'PY'
import os, statistics, subprocess, sys, time, urllib.request
ws, port, runs, pid, binary = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def metrics():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values
from benchlib import wait_until
wait_until("finish its first reconcile", lambda: metrics().get("opsflow_reconciles_total", 0) >= 1, 120)
time.sleep(1)
passes = []
for i in range(runs + 2):
    before = metrics()["opsflow_reconciles_total"]
    with open(f"{ws}/docs/bench-note-{i}.txt", "w") as f:
        f.write("a note\n")
    while metrics()["opsflow_reconciles_total"] < before + 1:
        time.sleep(0.02)
    time.sleep(0.3)
    if i >= 2:
        passes.append(metrics()["opsflow_reconcile_last_duration_seconds"])
with open(f"/proc/{pid}/status") as f:
    status = dict(line.split(":", 1) for line in f)
rss, hwm = (int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))
lists = []
for _ in range(runs + 2):
    t = time.monotonic()
    subprocess.run([binary, "-q", "-C", ws, "tasks", "list", "--mine"], stdout=subprocess.DEVNULL, check=True)
    lists.append(time.monotonic() - t)
lists = lists[2:]
q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
p50, l50 = statistics.median(passes), statistics.median(lists)
name = os.path.basename(binary)
print(f"| {name} | {p50 * 1000:.1f} ms | {q(passes, 0.95) * 1000:.1f} ms | {l50 * 1000:.1f} ms | {q(lists, 0.95) * 1000:.1f} ms | {p50 / l50:.2f}x | {rss:.1f} MiB | {hwm:.1f} MiB |")
PY
    kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=
    rm -f "$ws"/docs/bench-note-*.txt
done
# shellcheck source=scripts/machine-facts.sh
source "$repo/scripts/machine-facts.sh"
machine_facts "$work" "$repo"
cat <<MD

Command: \`$invocation\`${OPSFLOW_BASE:+ with OPSFLOW_BASE}; tasks.json: $(printf "%'d" "$PREFILL") finished tasks, $(printf "%'d" "$bytes") bytes.
Machine: $(nproc) CPUs, $cpu; $mem memory; Linux $(uname -r); workspace on $fs; load average $load_at_start at the start, $(cut -d" " -f1-3 /proc/loadavg) at the end. Binaries: ${OPSFLOW:-target/release/opsflow}${OPSFLOW_BASE:+ and $OPSFLOW_BASE}; the repository at $rev$dirty.
MD
