#!/usr/bin/env bash
# Many releases through one `opsflow watch`: does the daemon age? Time per release, RSS, and
# the size of everything opsflow keeps, as releases pile up.
#
# Usage: scripts/bench-releases.sh [RELEASES] [EVERY]
#   RELEASES  releases to ship after the sample's own (default 1000)
#   EVERY     record memory and file sizes every EVERY releases (default 100)
# Environment:
#   OPSFLOW=PATH   the binary to measure (default: target/release/opsflow, built first)
#   BENCH_KEEP=1   keep the workspace, the daemon's log and the figures (results.json)
#
# What it does: the repository's sample workspace (scripts/bench-lib.sh), with a build that
# stamps each release's version into its page, production as a local `recreate` environment
# keeping 4 releases, and a short monitoring window (300 ms, a sample every 100 ms) so that
# a thousand releases fit in well under an hour. Under `opsflow -v watch` it first ships the
# sample's own UNIT-001 1.0.0 (its approval signed as alice), then RELEASES versions of
# UNIT-001 (2.1.0, 2.2.0, ...), one at a time, with scripts/bench-releases.py playing the
# other agents and the approver. It prints a markdown report.
#
# A benchmark, not a test: CI does not run it; it exits 0 whatever the figures.
set -euo pipefail

RELEASES=${1:-1000}
EVERY=${2:-100}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
invocation="scripts/bench-releases.sh${*:+ $*}"
die() { echo "bench-releases: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is required"
[[ $RELEASES =~ ^[0-9]+$ ]] && (( RELEASES >= 1 )) || die "RELEASES must be a positive number (got $RELEASES)"
# shellcheck source=scripts/bench-lib.sh
source "$repo/scripts/bench-lib.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/opsflow-bench-releases.XXXXXX")
bench_cleanup_on_exit bench-releases
load_at_start=$(cut -d" " -f1-3 /proc/loadavg)

bench_binary "$repo" "$work" || die "no binary to measure"
ws=$work/ws
bench_workspace "$repo" "$work" "$ws" sample
python3 - "$ws" <<'PY'
import json, sys
ws = sys.argv[1]
path = f"{ws}/project-config.json"
with open(path) as f:
    config = json.load(f)
config["release"]["build"] = (
    "rm -rf dist && mkdir dist && cp app/style.css dist/ && "
    "printf '<h1>Acme Shop</h1><p>%s %s</p>\\n' \"$OPSFLOW_UNIT_ID\" \"$OPSFLOW_VERSION\" > dist/index.html"
)
config["devops"]["monitoring_period"] = "300ms"
config["devops"]["monitoring_interval"] = "100ms"
production = config["environments"]["production"]
production["strategy"] = "recreate"
production["keep_releases"] = 4
production["health_checks"] = [{"name": "index-present", "command": "test -f index.html"}]
production["smoke_tests"] = [{"name": "homepage-title", "command": "grep -q 'Acme Shop' index.html"}]
staging = config["environments"]["staging"]
staging["health_checks"] = [{"name": "index-present", "command": "test -f index.html"}]
with open(path, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
PY
"$opsflow" -q -C "$ws" validate >/dev/null || die "the benchmark workspace does not validate: $("$opsflow" -C "$ws" validate 2>&1 | head -20)"

log=$work/daemon.log
"$opsflow" -C "$ws" -v watch >/dev/null 2>"$log" &
daemon_pid=$!

# The sample's own release first: its pipeline runs up to the production approval.
python3 - "$ws" "$daemon_pid" <<'PY' || die "the sample's own release did not ship: $(tail -5 "$log")"
import json, os, sys, time
ws, pid = sys.argv[1], int(sys.argv[2])
approval = f"{ws}/docs/workflow/artifacts/R12-prod-approval.md"
deadline = time.monotonic() + 300
def status(tid):
    with open(f"{ws}/docs/workflow/tasks.json") as f:
        return next(t.get("status") for t in json.load(f)["tasks"] if t.get("id") == tid)
while not (os.path.exists(approval) and 'status: "pending"' in open(approval).read()):
    if time.monotonic() > deadline or not os.path.exists(f"/proc/{pid}"):
        sys.exit(1)
    time.sleep(0.05)
text = open(approval).read()
open(approval, "w").write(text.replace('status: "pending"', 'status: "approved"', 1).replace("approved_by: null", 'approved_by: "alice"', 1))
while status("DEVOPS-007") != "deployed":
    if time.monotonic() > deadline or not os.path.exists(f"/proc/{pid}"):
        sys.exit(1)
    time.sleep(0.05)
PY

report=$work/report.md
python3 "$repo/scripts/bench-releases.py" --pid "$daemon_pid" --ws "$ws" --releases "$RELEASES" --every "$EVERY" \
    --results "$work/results.json" >"$report" &
helper_pid=$!
wait "$helper_pid"
helper_pid=
warnings=$(grep -c -E '^[^ ]+ +(WARN|ERROR)' "$log" || true)

# shellcheck source=scripts/machine-facts.sh
source "$repo/scripts/machine-facts.sh"
machine_facts "$work" "$repo"
cat <<MD
Command: \`$invocation\`

Machine: $(nproc) CPUs, $cpu; $mem memory; Linux $(uname -r); workspace on $fs; load average (1, 5, 15 min) $load_at_start at the start, $(cut -d" " -f1-3 /proc/loadavg) at the end.
Versions: $("$opsflow" --version), the binary ${OPSFLOW:-target/release/opsflow} (the repository at $rev$dirty), Python $(python3 -c 'import platform; print(platform.python_version())').
Daemon: \`opsflow -C WS -v watch\`; $warnings warning or error lines in its log.

MD
cat "$report"
