# Sourced by the daemon benchmarks (bench-watch.sh, bench-load.sh, bench-releases.sh): the
# binary to measure and the benchmark workspace, set up one way for all of them.
#
# bench_binary REPO WORK
#   Sets `opsflow` to a private copy in WORK of $OPSFLOW, or of target/release/opsflow built
#   first (`cargo build --release`, a no-op when up to date), so a rebuild during the run
#   changes nothing that is measured.
# bench_workspace REPO WORK WS PREFILL [DEBOUNCE]
#   Copies the repository's sample workspace (project-config.json, docs/workflow/, QA/,
#   ARTIFACTS/, app/) to WS with PREFILL finished tasks from scripts/gen-tasks.py (every one
#   `done`; none when PREFILL is 0), no current node in state.json and
#   `Dev_Environment_Setup` and `Staging_Environment_Setup` already `completed`, so that a task
#   runs its own node and starts nothing else. DEBOUNCE, when given, is `devops.debounce`.
#   PREFILL `sample` keeps the sample's own tasks and state.json: its whole pipeline waits.

bench_binary() {
    local repo=$1 work=$2 binary
    if [[ -n ${OPSFLOW:-} ]]; then
        binary=$OPSFLOW
    else
        (cd "$repo" && cargo build --release --quiet) || { echo "cargo build --release failed" >&2; return 1; }
        binary=$repo/target/release/opsflow
    fi
    [[ -x $binary ]] || { echo "no opsflow binary at $binary" >&2; return 1; }
    cp "$binary" "$work/opsflow"
    opsflow=$work/opsflow
}

bench_workspace() {
    local repo=$1 work=$2 ws=$3 prefill=$4 debounce=${5:-}
    mkdir -p "$ws/docs"
    cp -R "$repo/project-config.json" "$repo/QA" "$repo/ARTIFACTS" "$repo/app" "$ws/"
    cp -R "$repo/docs/workflow" "$ws/docs/"
    [[ $prefill == sample ]] && return 0
    rm -f "$work/prefill.json"
    if (( prefill > 0 )); then
        python3 "$repo/scripts/gen-tasks.py" "$work/prefill.json" "$prefill" 2>/dev/null
    fi
    python3 - "$ws" "$debounce" "$work/prefill.json" <<'EOF'
import json, os, sys
ws, debounce, prefill = sys.argv[1], sys.argv[2], sys.argv[3]
with open(f"{ws}/project-config.json") as f:
    config = json.load(f)
paths = config.get("paths", {})
tasks = f"{ws}/{paths.get('tasks', 'docs/workflow/tasks.json')}"
state_path = f"{ws}/{paths.get('state', 'docs/workflow/state.json')}"
if debounce:
    config.setdefault("devops", {})["debounce"] = debounce
    with open(f"{ws}/project-config.json", "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
# No task to do: the daemon has nothing to do until the benchmark writes one.
if os.path.exists(prefill):
    with open(prefill, encoding="utf-8") as f:
        data = json.load(f)
    for task in data["tasks"]:
        task["status"] = "done"
        task.pop("blocked_by", None)
    with open(tasks, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
else:
    with open(tasks, "w") as f:
        f.write('{\n  "tasks": []\n}\n')
# No current node, and the nodes after Environment_Design already completed, so finishing a
# design task does not start the rest of the pipeline: every task runs one node only.
with open(state_path) as f:
    state = json.load(f)
state["current_nodes"] = []
for node in ("Dev_Environment_Setup", "Staging_Environment_Setup"):
    state["nodes"].setdefault(node, {})["status"] = "completed"
with open(state_path, "w") as f:
    json.dump(state, f, indent=2)
    f.write("\n")
EOF
}

# Stops the daemon (`$daemon_pid`) and a helper (`$helper_pid`) when the script exits, and
# removes `$work` unless BENCH_KEEP is set; NAME says whose workspace was kept.
bench_cleanup_on_exit() {
    bench_name=$1
    daemon_pid=${daemon_pid:-}
    helper_pid=${helper_pid:-}
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local status=$?
    if [[ -n $helper_pid ]]; then kill -TERM "$helper_pid" 2>/dev/null || true; fi
    if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [[ -n ${BENCH_KEEP:-} ]]; then echo "$bench_name: kept $work" >&2; else rm -rf "$work"; fi
    exit "$status"
}
