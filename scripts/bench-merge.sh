#!/usr/bin/env bash
# Speed of `opsflow merge-driver` on two 100,000-task files that each differ from their
# common base in 100 entries, side by side with git's own line merge (`git merge-file`).
#
# Usage: scripts/bench-merge.sh [N_TASKS] [RUNS]
#   N_TASKS  tasks in the base file (default 100000, about 27 MB)
#   RUNS     timed runs per command (default 10)
# Environment:
#   OPSFLOW=PATH   the binary to time (default: target/release/opsflow, built with
#                  `cargo build --release` first, a no-op when up to date)
#   BENCH_KEEP=1   keep the generated files
#
# Ours changes the status of 100 tasks (every 1000th); theirs renames 100
# others (every 1000th, shifted by 500) and appends one task. Before timing, the script
# checks that the driver's result is ours with exactly theirs's changes (with Python's json).
# A benchmark, not a test: it prints figures and exits 0 unless it cannot measure.
set -euo pipefail

N_TASKS=${1:-100000}
RUNS=${2:-10}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "bench-merge: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is required"
command -v git >/dev/null || die "git is required"

if [[ -z "${OPSFLOW:-}" ]]; then
    (cd "$repo" && cargo build --release -q) || die "cargo build --release failed"
    OPSFLOW="$repo/target/release/opsflow"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/opsflow-bench-merge.XXXXXX")
[[ "${BENCH_KEEP:-}" == 1 ]] || trap 'rm -rf "$dir"' EXIT

python3 "$repo/scripts/gen-tasks.py" "$dir/base.json" "$N_TASKS" >/dev/null
python3 - "$dir" <<'EOF'
import json, sys
d = sys.argv[1]
text = open(f"{d}/base.json", encoding="utf-8").read()
tasks = json.loads(text)["tasks"]

def edit(path, changes, append=None):
    # Change fields by splicing the file's text, as an agent's tool that keeps bytes would.
    out, at = [], 0
    for i, (key, value) in changes:
        tid = tasks[i]["id"]
        start = text.index('"id": ' + json.dumps(tid))
        entry_end = text.index("\n    }", start)
        field = text.index(f'"{key}": ', start)
        if field > entry_end:
            raise SystemExit(f"{tid} has no {key}")
        value_start = field + len(f'"{key}": ')
        value_end = text.index("\n", value_start)
        if text[value_end - 1] == ",":
            value_end -= 1
        out.append(text[at:value_start]); out.append(json.dumps(value)); at = value_end
    out.append(text[at:])
    result = "".join(out)
    if append:
        close = result.rindex("\n  ]")
        result = result[:close] + ",\n" + append + result[close:]
    open(path, "w", encoding="utf-8").write(result)

n = len(tasks)
ours = [(i, ("status", "done")) for i in range(0, n, 1000)][:100]
theirs = [(i, ("title", "renamed on theirs")) for i in range(500, n, 1000)][:100]
edit(f"{d}/ours.json", [(i, c) for i, c in ours])
new = '    {\n      "id": "BENCH-NEW",\n      "title": "added on theirs",\n      "agent": "QA-Engineer",\n      "type": "qa_testing",\n      "status": "pending"\n    }'
edit(f"{d}/theirs.json", [(i, c) for i, c in theirs], append=new)

expected = json.loads(open(f"{d}/ours.json", encoding="utf-8").read())
for i, (key, value) in theirs:
    expected["tasks"][i][key] = value
expected["tasks"].append(json.loads(new))
json.dump(expected, open(f"{d}/expected.json", "w"))
EOF

cp "$dir/ours.json" "$dir/result.json"
"$OPSFLOW" merge-driver "$dir/base.json" "$dir/result.json" "$dir/theirs.json" docs/workflow/tasks.json \
    || die "the merge driver reported conflicts or failed"
python3 - "$dir" <<'EOF' || die "the merged file is wrong"
import json, sys
d = sys.argv[1]
got = json.load(open(f"{d}/result.json", encoding="utf-8"))
want = json.load(open(f"{d}/expected.json", encoding="utf-8"))
if got != want:
    raise SystemExit("result differs from ours plus theirs's changes")
EOF

time_runs() {
    # Prints the median, minimum and maximum wall time in milliseconds of RUNS runs of "$@",
    # each on a fresh copy of ours.
    local samples=() start end
    for ((i = 0; i < RUNS; i++)); do
        cp "$dir/ours.json" "$dir/result.json"
        start=$EPOCHREALTIME
        "$@" >/dev/null 2>&1 || true
        end=$EPOCHREALTIME
        samples+=("$(python3 -c "print(round(($end - $start) * 1000, 1))")")
    done
    printf '%s\n' "${samples[@]}" | sort -n | python3 -c '
import sys
v = [float(x) for x in sys.stdin]
print(f"{v[len(v) // 2]:.1f} ms (min {v[0]:.1f}, max {v[-1]:.1f})")'
}

size=$(stat -c %s "$dir/base.json")
echo "files: $N_TASKS tasks, $size bytes each side; 100 entries changed on each side, 1 added on theirs"
echo "machine: $(nproc) cores, $(uname -srm), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| command | median wall time, $RUNS runs |"
echo "|---|---|"
echo "| \`opsflow merge-driver\` (release) | $(time_runs "$OPSFLOW" merge-driver "$dir/base.json" "$dir/result.json" "$dir/theirs.json" docs/workflow/tasks.json) |"
echo "| \`git merge-file\` (line merge, for comparison) | $(time_runs git merge-file "$dir/result.json" "$dir/base.json" "$dir/theirs.json") |"
