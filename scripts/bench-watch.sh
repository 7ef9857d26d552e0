#!/usr/bin/env bash
# Reaction latency and idle cost of `opsflow watch`, the daemon.
#
# Usage: scripts/bench-watch.sh [ITERATIONS] [IDLE_SECONDS]
#   ITERATIONS    timed tasks, after 3 warm-up ones (default 120, at least 100)
#   IDLE_SECONDS  how long the idle daemon is measured (default 60)
# Environment:
#   BENCH_WRITER=rename|cli  how the task is written: `rename` (default) reads tasks.json,
#                            writes a temporary file beside it and renames it over
#                            tasks.json, as an agent does; `cli` runs `opsflow tasks add`
#   BENCH_DEBOUNCE=DURATION  set devops.debounce in the workspace's config (default: the
#                            sample config's value, 50ms)
#   BENCH_PREFILL=N          start with N finished tasks in tasks.json (scripts/gen-tasks.py,
#                            every status set to `done`), to see how the figures grow with
#                            the file (default 0: the list starts empty)
#   BENCH_DIR=DIR            where to put the workspace (default: a new directory under
#                            $TMPDIR or /tmp); fsync costs depend on its filesystem
#   OPSFLOW=PATH             the binary to measure (default: target/release/opsflow, built
#                            with `cargo build --release` first, a no-op when up to date)
#   BENCH_KEEP=1             keep the workspace, the daemon's log and the raw figures
#
# What it does: copies the repository's sample workspace (project-config.json, docs/workflow,
# QA, ARTIFACTS, app) with no task and no current node, so that the daemon has nothing to do
# until a task arrives; starts `opsflow -vv watch` on it; and runs scripts/bench-watch.py
# (Python 3 stdlib), which measures the idle daemon first and then the time from each written
# task to its claim, its first artifact and `done`. It prints a markdown report.
#
# A benchmark, not a test: CI does not run it, and it exits 0 whether or not the targets are
# met. It exits non-zero only when it cannot measure (the daemon dies, a task does not end
# `done`, a tool is missing).
set -euo pipefail

ITERATIONS=${1:-120}
IDLE_SECONDS=${2:-60}
WARMUP=3
WRITER=${BENCH_WRITER:-rename}
PREFILL=${BENCH_PREFILL:-0}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
invocation="scripts/bench-watch.sh${*:+ $*}"
[[ -n ${BENCH_WRITER:-} ]] && invocation="BENCH_WRITER=$BENCH_WRITER $invocation"
[[ -n ${BENCH_DEBOUNCE:-} ]] && invocation="BENCH_DEBOUNCE=$BENCH_DEBOUNCE $invocation"
[[ -n ${BENCH_PREFILL:-} ]] && invocation="BENCH_PREFILL=$BENCH_PREFILL $invocation"

die() { echo "bench-watch: $*" >&2; exit 1; }

[[ $ITERATIONS =~ ^[0-9]+$ ]] && (( ITERATIONS >= 100 )) || die "ITERATIONS must be a number, at least 100 (got $ITERATIONS)"
[[ $IDLE_SECONDS =~ ^[0-9]+$ ]] && (( IDLE_SECONDS >= 10 )) || die "IDLE_SECONDS must be a number, at least 10 (got $IDLE_SECONDS)"
[[ $WRITER == rename || $WRITER == cli ]] || die "BENCH_WRITER must be rename or cli, not $WRITER"
[[ $PREFILL =~ ^[0-9]+$ ]] || die "BENCH_PREFILL must be a number (got $PREFILL)"
command -v python3 >/dev/null || die "python3 is required"
[[ $(uname -s) == Linux ]] || die "Linux only (inotify and /proc)"

# --- binary, workspace and cleanup ----------------------------------------------------------

# shellcheck source=scripts/bench-lib.sh
source "$repo/scripts/bench-lib.sh"
if [[ -n ${BENCH_DIR:-} ]]; then
    mkdir -p "$BENCH_DIR"
    work=$(mktemp -d "$BENCH_DIR/opsflow-bench-watch.XXXXXX")
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/opsflow-bench-watch.XXXXXX")
fi
daemon_pid=
helper_pid=
cleanup() {
    local status=$?
    if [[ -n $helper_pid ]] && kill -0 "$helper_pid" 2>/dev/null; then
        kill -TERM "$helper_pid" 2>/dev/null || true
        wait "$helper_pid" 2>/dev/null || true
    fi
    if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [[ -n ${BENCH_KEEP:-} ]]; then
        echo "bench-watch: kept $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load_at_start=$(cut -d" " -f1-3 /proc/loadavg)

# Measure a private copy of the binary, so a rebuild in the same target dir during the run
# cannot change what is measured.
bench_binary "$repo" "$work" || die "no binary to measure"

ws=$work/ws
bench_workspace "$repo" "$work" "$ws" "$PREFILL" "${BENCH_DEBOUNCE:-}"
for output in INFRA04-env-specs.md INFRA05-iac-design.md INFRA06-deployment-strategy.md; do
    rm -f "$ws/docs/workflow/artifacts/$output"
done
prefill_bytes=$(stat -c %s "$ws/docs/workflow/tasks.json")
"$opsflow" -q -C "$ws" validate >/dev/null || die "the benchmark workspace does not validate: $("$opsflow" -C "$ws" validate 2>&1 | head -20)"

# --- the daemon ---------------------------------------------------------------------------

log=$work/daemon.log
"$opsflow" -C "$ws" -vv watch >/dev/null 2>"$log" &
daemon_pid=$!
for _ in $(seq 200); do
    grep -q "watching " "$log" && break
    kill -0 "$daemon_pid" 2>/dev/null || die "opsflow watch exited before it watched: $(cat "$log")"
    sleep 0.05
done
grep -q "watching " "$log" || die "opsflow watch did not say that it watches within 10 s"

report=$work/report.md
# In the background and waited for, so that a SIGTERM or SIGINT to this script runs the
# cleanup at once (bash runs traps only between foreground commands).
python3 "$repo/scripts/bench-watch.py" --pid "$daemon_pid" --ws "$ws" --log "$log" --opsflow "$opsflow" \
    --iterations "$ITERATIONS" --warmup "$WARMUP" --idle "$IDLE_SECONDS" --writer "$WRITER" \
    --results "$work/results.json" >"$report" &
helper_pid=$!
wait "$helper_pid"
helper_pid=

# Stop the daemon as a service manager would, and time it.
t0=$EPOCHREALTIME
kill -TERM "$daemon_pid"
stop_status=0
wait "$daemon_pid" || stop_status=$?
t1=$EPOCHREALTIME
daemon_pid=
stop_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
warnings=$(grep -c -E '^[^ ]+ +(WARN|ERROR)' "$log" || true)

# --- report -------------------------------------------------------------------------------

# shellcheck source=scripts/machine-facts.sh
source "$repo/scripts/machine-facts.sh"
machine_facts "$work" "$repo"

cat <<EOF
Command: \`$invocation\` ($ITERATIONS timed iterations after $WARMUP warm-up ones; ${IDLE_SECONDS} s idle)

Machine: $(nproc) CPUs, $cpu; $mem memory; Linux $(uname -r); workspace on $fs; load average (1, 5, 15 min) $load_at_start at the start, $(cut -d" " -f1-3 /proc/loadavg) at the end.
Versions: $("$opsflow" --version) at $rev$dirty (release build), Python $(python3 -c 'import platform; print(platform.python_version())'), $(bash --version | head -1 | sed 's/GNU bash, version \([^ ]*\).*/bash \1/').
Workspace: the repository's sample workspace with no current node; tasks.json held $(printf "%'d" "$PREFILL") finished tasks ($(printf "%'d" "$prefill_bytes") bytes) at the start and one more task per iteration.
Daemon: \`opsflow -C WS -vv watch\` (debug log to a file), stopped with SIGTERM afterwards: exit status $stop_status in $stop_ms ms; $warnings warning or error lines in its log.

EOF
cat "$report"
echo
mkdir -p "$work/floor"
debounce_ms=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); d=c.get("devops",{}).get("debounce","50ms"); print(float(d[:-2]) if d.endswith("ms") else float(d.rstrip("s"))*1000)' "$ws/project-config.json")
python3 "$repo/scripts/bench-floor.py" "$ws/docs/workflow/tasks.json" "$work/floor" --debounce-ms "$debounce_ms"
