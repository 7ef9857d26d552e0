#!/usr/bin/env bash
# Latency of git sync: from another agent's push of a task to the runner's pushed claim of
# it, with `opsflow watch` on a clone of a local bare repository and fetch_interval 1s.
#
# Usage: scripts/bench-sync.sh [N_TASKS]
#   N_TASKS  tasks pushed one at a time (default 50)
# Environment:
#   OPSFLOW=PATH   the binary (default: target/release/opsflow, built with
#                  `cargo build --release` first)
#
# Prints p50, p99 and max in milliseconds. A benchmark, not a test.
set -euo pipefail

N=${1:-50}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "bench-sync: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is required"
if [[ -z "${OPSFLOW:-}" ]]; then
    (cd "$repo" && cargo build --release -q) || die "cargo build --release failed"
    OPSFLOW="$repo/target/release/opsflow"
fi
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
work=$(mktemp -d)
watch_pid=""
cleanup() { [[ -n "$watch_pid" ]] && kill "$watch_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

git init -q --bare -b main "$work/remote.git"
mkdir "$work/seed"
for entry in project-config.json docs QA ARTIFACTS app; do cp -r "$repo/$entry" "$work/seed/"; done
cd "$work/seed"
git init -q -b main
"$OPSFLOW" init >/dev/null
python3 - <<'PY'
import json
c = json.load(open("project-config.json"))
c["git"] = {"sync": True, "fetch_interval": "1s"}
c["devops"]["poll_interval"] = "5m"
json.dump(c, open("project-config.json", "w"), indent=2)
s = json.load(open("docs/workflow/state.json")); s["current_nodes"] = []
json.dump(s, open("docs/workflow/state.json", "w"), indent=2)
json.dump({"tasks": []}, open("docs/workflow/tasks.json", "w"), indent=2)
PY
git add -A && git commit -qm seed && git push -q "$work/remote.git" main
for clone in runner agent; do
    git clone -q "$work/remote.git" "$work/$clone"
    git -C "$work/$clone" config merge.opsflow.driver "$OPSFLOW merge-driver %O %A %B %P"
done
"$OPSFLOW" -C "$work/runner" watch 2>"$work/watch.log" &
watch_pid=$!

cd "$work/agent"
: >"$work/latencies"
for i in $(seq 1 "$N"); do
    id=$(printf 'B-%04d' "$i")
    git pull -q --rebase origin main
    python3 - "$id" <<'PY'
import json, sys
t = json.load(open("docs/workflow/tasks.json"))
t["tasks"].append({"id": sys.argv[1], "title": "bench", "agent": "DevOps-Engineer",
                   "type": "infrastructure_design", "status": "pending", "unit_id": "UNIT-001"})
json.dump(t, open("docs/workflow/tasks.json", "w"), indent=2)
PY
    git commit -qam "Add $id"
    until git push -q origin main 2>/dev/null; do git pull -q --rebase origin main; done
    start=$(date +%s%N)
    until git --git-dir="$work/remote.git" log -5 --format=%s main | grep -q "^Claim $id "; do sleep 0.005; done
    echo $(( ($(date +%s%N) - start) / 1000000 )) >>"$work/latencies"
    # Wait for the results too, so the next push measures a quiet runner.
    until git --git-dir="$work/remote.git" log -5 --format=%s main | grep -q " for $id$"; do sleep 0.005; done
done
python3 - "$work/latencies" <<'PY'
import sys
v = sorted(int(x) for x in open(sys.argv[1]))
pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print(f"push-to-claim latency over {len(v)} tasks: p50 {pick(0.5)} ms, p99 {pick(0.99)} ms, max {v[-1]} ms")
PY
