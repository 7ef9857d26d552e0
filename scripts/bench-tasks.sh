#!/usr/bin/env bash
# Speed and memory of `opsflow tasks list` and `opsflow tasks update` on a large tasks.json,
# side by side with what a user would otherwise run: jq, and copying the file with fsync.
#
# Usage: scripts/bench-tasks.sh [N_TASKS] [RUNS]
#   N_TASKS  tasks in the generated file (default 100000, about 27 MB)
#   RUNS     timed runs per command, after 2 warm-up runs (default 20, at least 10)
# Environment:
#   BENCH_TIMER=hyperfine|loop  how to time (default: hyperfine when installed, else a loop
#                               in this script that reads bash's $EPOCHREALTIME, no forks)
#   BENCH_DIR=DIR               where to put the generated workspaces (default: a new
#                               directory under $TMPDIR or /tmp); fsync costs depend on its
#                               filesystem, so it is printed
#   OPSFLOW=PATH                the binary to time (default: target/release/opsflow, built
#                               with `cargo build --release` first, a no-op when up to date)
#   BENCH_KEEP=1                keep the generated files
#
# A benchmark, not a test: it prints figures and says whether each target of issue 2 is met,
# and exits 0 either way. It exits non-zero only when it cannot measure (a tool is missing,
# or jq and opsflow disagree on which tasks the filter selects).
set -euo pipefail

N_TASKS=${1:-100000}
RUNS=${2:-20}
WARMUP=2
if (( RUNS < 10 )); then
    echo "RUNS must be at least 10 (got $RUNS)" >&2
    exit 64
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
invocation="scripts/bench-tasks.sh${*:+ $*}"
load_at_start=$(cut -d" " -f1 /proc/loadavg)

die() { echo "bench-tasks: $*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------------------

command -v jq >/dev/null || die "jq is required (apt-get install -y jq)"
command -v python3 >/dev/null || die "python3 is required to generate the file"
# Peak RSS comes from GNU time (the "Maximum resident set size" of `time -v`); without it,
# from Python's getrusage(RUSAGE_CHILDREN), which reads the same kernel counter.
if [[ -x /usr/bin/time ]] && /usr/bin/time -f %M true >/dev/null 2>&1; then
    rss_tool="GNU time"
else
    rss_tool="python3 getrusage"
    echo "bench-tasks: GNU time not found (apt-get install -y time); measuring peak RSS with python3" >&2
fi
timer=${BENCH_TIMER:-}
if [[ -z $timer ]]; then
    if command -v hyperfine >/dev/null; then timer=hyperfine; else timer=loop; fi
fi
case $timer in
    hyperfine) command -v hyperfine >/dev/null || die "BENCH_TIMER=hyperfine but hyperfine is not installed" ;;
    loop) ;;
    *) die "BENCH_TIMER must be hyperfine or loop, not $timer" ;;
esac

if [[ -n ${OPSFLOW:-} ]]; then
    opsflow=$OPSFLOW
else
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
    opsflow=$repo/target/release/opsflow
fi

# --- workspaces -------------------------------------------------------------------------

if [[ -n ${BENCH_DIR:-} ]]; then
    mkdir -p "$BENCH_DIR"
    work=$(mktemp -d "$BENCH_DIR/opsflow-bench.XXXXXX")
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/opsflow-bench.XXXXXX")
fi
if [[ -z ${BENCH_KEEP:-} ]]; then
    trap 'rm -rf "$work"' EXIT
fi

# Time a private copy of the binary, so a rebuild in the same target dir during the run
# cannot change what is measured.
[[ -x $opsflow ]] || die "no opsflow binary at $opsflow"
cp "$opsflow" "$work/opsflow"
opsflow=$work/opsflow

source_file=$work/tasks.json
python3 "$repo/scripts/gen-tasks.py" "$source_file" "$N_TASKS" 2>/dev/null
file_bytes=$(stat -c %s "$source_file")

# One copy per tool, so that jq's reformatting never changes what opsflow reads.
ws=$work/ws                               # opsflow's workspace
mkdir -p "$ws/docs/workflow"
cp "$source_file" "$ws/docs/workflow/tasks.json"
ops_file=$ws/docs/workflow/tasks.json
jq_file=$work/jq/tasks.json
mkdir -p "$work/jq"
cp "$source_file" "$jq_file"
copy_target=$work/copy/tasks.json
mkdir -p "$work/copy"

# The task every update edits: one in the middle of the file.
target_id=$(printf 'TASK-%06d' $(( (N_TASKS + 1) / 2 )))

jq_filter='[.tasks[] | select((.agent=="DevOps-Engineer" or .agent=="devops" or .agent=="DEVOPS_ENGINEER_AGENT") and (.type|test("^(deployment|infrastructure|monitoring|release)_")) and .status=="pending")]'
jq_update_program='(.tasks[] | select(.id=="'$target_id'") | .status) = $status'

filter_jq=(jq "$jq_filter" "$source_file")
filter_ops=("$opsflow" -C "$ws" tasks list --mine --status pending --json)

# --- the filter selects the same tasks ----------------------------------------------------

jq_ids=$("${filter_jq[@]}" | jq -r '.[].id' | sort)
ops_ids=$("${filter_ops[@]}" | jq -r '.[].id' | sort)
if [[ $jq_ids != "$ops_ids" ]]; then
    diff <(echo "$jq_ids") <(echo "$ops_ids") | head -20 >&2
    die "jq and opsflow select different tasks (diff above: < jq, > opsflow)"
fi
selected=$(grep -c . <<<"$ops_ids" || true)
(( selected > 0 )) || die "the filter selected no task; the generated file is not what this script expects"

# --- timing -----------------------------------------------------------------------------

# Each benchmark leaves its run times, in seconds, one a line, in $work/times/<name>.
mkdir -p "$work/times"

# Runs WARMUP untimed runs, then RUNS timed runs, of one command.
# $1 = name; $2 = "argv" (the rest is the command, run directly) or "shell" ($3 is a command
# line that this bash evaluates, for redirections and &&; no extra shell is started).
# A function `before_run I` (I counts from 0) runs untimed before each run.
time_loop() {
    local name=$1 mode=$2
    shift 2
    local i t0 t1 us
    : >"$work/times/$name"
    # Start each benchmark with no dirty pages left by the previous one (jq never fsyncs).
    sync
    for (( i = 0; i < WARMUP + RUNS; i++ )); do
        before_run "$i"
        if [[ $mode == argv ]]; then
            t0=$EPOCHREALTIME; "$@" >/dev/null; t1=$EPOCHREALTIME
        else
            t0=$EPOCHREALTIME; eval "$1" >/dev/null; t1=$EPOCHREALTIME
        fi
        if (( i >= WARMUP )); then
            # $EPOCHREALTIME is seconds and microseconds; subtract them as integers.
            us=$(( 10#${t1//[.,]/} - 10#${t0//[.,]/} ))
            printf '%d.%06d\n' $(( us / 1000000 )) $(( us % 1000000 )) >>"$work/times/$name"
        fi
    done
}

# hyperfine cannot change a command's arguments from run to run, so for the updates a
# --prepare command puts the other value back, untimed, before each run.
time_hyperfine() {
    local name=$1 mode=$2 prepare=$3
    shift 3
    local args=(--style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$work/times/$name.json")
    [[ $mode == argv ]] && args+=(-N)
    [[ -n $prepare ]] && args+=(--prepare "$prepare")
    local command
    if [[ $mode == argv ]]; then command=$(printf '%q ' "$@"); else command=$1; fi
    # Start each benchmark with no dirty pages left by the previous one (jq never fsyncs).
    sync
    hyperfine "${args[@]}" "$command" >/dev/null
    jq -r '.results[0].times[]' "$work/times/$name.json" >"$work/times/$name"
}

q() { printf '%q' "$1"; }

# a. filter
before_run() { :; }
if [[ $timer == loop ]]; then
    time_loop filter_jq argv "${filter_jq[@]}"
    time_loop filter_opsflow argv "${filter_ops[@]}"
else
    time_hyperfine filter_jq argv "" "${filter_jq[@]}"
    time_hyperfine filter_opsflow argv "" "${filter_ops[@]}"
fi

# b. update one task: jq rewrites the file (no fsync, as users run it); opsflow splices under
# its lock and fsyncs file and directory; the baseline copies the file and fsyncs the copy.
update_jq_cmd="jq --arg status \"\$BENCH_STATUS\" $(q "$jq_update_program") $(q "$jq_file") > $(q "$jq_file.tmp") && mv $(q "$jq_file.tmp") $(q "$jq_file")"

update_ops_cmd="$(q "$opsflow") -C $(q "$ws") tasks update $target_id --set \"status=\$BENCH_STATUS\""
copy_cmd="cp --reflink=never $(q "$ops_file") $(q "$copy_target") && sync $(q "$copy_target")"

if [[ $timer == loop ]]; then
    # The status alternates, so every run really changes the file.
    before_run() { if (( $1 % 2 == 0 )); then BENCH_STATUS=in_progress; else BENCH_STATUS=pending; fi; }
    time_loop update_jq shell "$update_jq_cmd"
    time_loop update_opsflow shell "$update_ops_cmd"
    before_run() { :; }
    time_loop copy_fsync shell "$copy_cmd"
else
    export BENCH_STATUS=in_progress
    reset_jq="jq --arg status pending $(q "$jq_update_program") $(q "$jq_file") > $(q "$jq_file.tmp") && mv $(q "$jq_file.tmp") $(q "$jq_file")"
    time_hyperfine update_jq shell "$reset_jq" "$update_jq_cmd"
    reset_ops="$(q "$opsflow") -C $(q "$ws") tasks update $target_id --set status=pending"
    time_hyperfine update_opsflow argv "$reset_ops" "$opsflow" -C "$ws" tasks update "$target_id" --set status=in_progress
    time_hyperfine copy_fsync shell "" "$copy_cmd"
fi

# The updates did what they say, and left files that parse.
for f in "$jq_file" "$ops_file"; do
    status=$(jq -r --arg id "$target_id" '.tasks[] | select(.id == $id) | .status' "$f") \
        || die "$f does not parse after the updates"
    [[ $status == pending || $status == in_progress ]] || die "$f: $target_id has status '$status' after the updates"
done
"$opsflow" -C "$ws" tasks update "$target_id" --set status=done >/dev/null
[[ $(jq -r --arg id "$target_id" '.tasks[] | select(.id == $id) | .status' "$ops_file") == done ]] \
    || die "opsflow's update did not reach the file"

# --- peak memory ------------------------------------------------------------------------

# Peak RSS in KiB of one run.
rss_once() {
    if [[ $rss_tool == "GNU time" ]]; then
        /usr/bin/time -o "$work/rss" -f %M "$@" >/dev/null 2>&1
    else
        python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@" >"$work/rss"
    fi
    tail -1 "$work/rss"
}
max() { printf '%s\n' "$@" | sort -n | tail -1; }
# Peak RSS in KiB: the largest of three runs (the first of which warms the page cache).
peak_rss_kib() { max "$(rss_once "$@")" "$(rss_once "$@")" "$(rss_once "$@")"; }
rss_filter_ops=$(peak_rss_kib "${filter_ops[@]}")
rss_filter_jq=$(peak_rss_kib "${filter_jq[@]}")
# Each update run changes the status, so each one really writes.
update_rss() { rss_once "$opsflow" -C "$ws" tasks update "$target_id" --set "status=$1"; }
rss_update_ops=$(max "$(update_rss blocked)" "$(update_rss pending)" "$(update_rss blocked)")
# What the process costs with an empty task list: the floor that does not grow with the file.
mkdir -p "$work/empty/docs/workflow"
printf '{\n  "tasks": []\n}\n' >"$work/empty/docs/workflow/tasks.json"
rss_empty_ops=$(peak_rss_kib "$opsflow" -C "$work/empty" tasks list --mine --status pending --json)

# --- report -----------------------------------------------------------------------------

stats() { # prints "median p95" in milliseconds; p95 by nearest rank
    sort -g "$work/times/$1" | awk '{ t[NR] = $1 * 1000 } END {
        n = NR; m = (n % 2) ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2
        r = int(0.95 * n); if (r < 0.95 * n) r++
        printf "%.1f %.1f\n", m, t[r] }'
}
read -r filter_jq_med filter_jq_p95 < <(stats filter_jq)
read -r filter_ops_med filter_ops_p95 < <(stats filter_opsflow)
read -r update_jq_med update_jq_p95 < <(stats update_jq)
read -r update_ops_med update_ops_p95 < <(stats update_opsflow)
read -r copy_med copy_p95 < <(stats copy_fsync)

thousands() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
ratio2() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
of_file() { awk -v k="$1" -v f="$file_bytes" 'BEGIN { printf "%.2fx", k * 1024 / f }'; }
met() { if awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { exit !((op == ">=") ? v >= t : v <= t) }'; then echo met; else echo "NOT met"; fi; }

filter_speedup=$(ratio "$filter_jq_med" "$filter_ops_med")
update_speedup=$(ratio "$update_jq_med" "$update_ops_med")
update_vs_copy=$(ratio2 "$update_ops_med" "$copy_med")
rss_ratio=$(awk -v k="$rss_filter_ops" -v f="$file_bytes" 'BEGIN { printf "%.2f", k * 1024 / f }')

# shellcheck source=scripts/machine-facts.sh
source "$repo/scripts/machine-facts.sh"
machine_facts "$work" "$repo"

cat <<EOF
## tasks.json: filter and update ($(thousands "$N_TASKS") tasks)

Command: \`$invocation\` (timer: $timer; $RUNS timed runs per command after $WARMUP warm-up runs; page cache warm)

Machine: $(nproc) CPUs, $cpu; $mem memory; Linux $(uname -r); temp dir on $fs; 1-minute load average $load_at_start at the start, $(cut -d" " -f1 /proc/loadavg) at the end.
Versions: opsflow $rev$dirty, $(jq --version)$( [[ $timer == hyperfine ]] && echo ", $(hyperfine --version)" ), $(bash --version | head -1 | sed 's/GNU bash, version \([^ ]*\).*/bash \1/').
File: $(thousands "$file_bytes") bytes ($(awk -v b="$file_bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }')), $(thousands "$N_TASKS") tasks, $(thousands "$selected") owned pending tasks selected by both jq and opsflow; the update edits $target_id.

| what | tool | median | p95 | peak RSS | RSS / file size |
| --- | --- | ---: | ---: | ---: | ---: |
| filter owned pending | jq | $filter_jq_med ms | $filter_jq_p95 ms | $(mib "$rss_filter_jq") | $(of_file "$rss_filter_jq") |
| filter owned pending | opsflow tasks list | $filter_ops_med ms | $filter_ops_p95 ms | $(mib "$rss_filter_ops") | $(of_file "$rss_filter_ops") |
| filter, empty tasks.json | opsflow tasks list | | | $(mib "$rss_empty_ops") | |
| update one task | jq + mv (no fsync) | $update_jq_med ms | $update_jq_p95 ms | | |
| update one task | opsflow tasks update | $update_ops_med ms | $update_ops_p95 ms | $(mib "$rss_update_ops") | $(of_file "$rss_update_ops") |
| copy the file with fsync | cp + sync FILE | $copy_med ms | $copy_p95 ms | | |

| target | measured | verdict |
| --- | --- | --- |
| filter at least 20x faster than jq | ${filter_speedup}x (jq / opsflow, medians) | $(met "$filter_speedup" ">=" 20) |
| one update at least 10x faster than jq | ${update_speedup}x (jq / opsflow, medians) | $(met "$update_speedup" ">=" 10) |
| one update within 2x of copying with fsync | ${update_vs_copy}x (opsflow / copy, medians) | $(met "$update_vs_copy" "<=" 2) |
| filter peak RSS under 1.5x the file size | ${rss_ratio}x | $(met "$rss_ratio" "<=" 1.5) |

Timed commands:

- jq filter: \`jq '$jq_filter' tasks.json\`
- opsflow filter: \`opsflow -C WS tasks list --mine --status pending --json\`
- jq update: \`jq --arg status S '$jq_update_program' tasks.json > tasks.json.tmp && mv tasks.json.tmp tasks.json\`
- opsflow update: \`opsflow -C WS tasks update $target_id --set status=S\`
- copy with fsync: \`cp --reflink=never tasks.json copy.json && sync copy.json\`

Every timed update really changes the file: $( [[ $timer == loop ]] && echo "S alternates between in_progress and pending from run to run" || echo "S is in_progress and an untimed --prepare run sets it back to pending before each run" ). Output goes to /dev/null; peak RSS is the maximum resident set size (from $rss_tool), the largest of three runs.
EOF
