#!/usr/bin/env python3
"""Drive N releases through one running `opsflow watch` and record how it ages.

Usage: bench-releases.py --pid PID --ws DIR --releases N [--every K] [--results FILE]

Run by scripts/bench-releases.sh, which prepares the workspace and starts the daemon. This
helper plays the other agents and the human: for each release it writes what they would
(QA's reports and the merge result for UNIT-001 at the release's version, then three DevOps
tasks: release_build, deployment_staging, deployment_production, in one rename of
tasks.json), waits for the production approval request opsflow writes, signs it as `alice`,
and waits until the production task is `deployed` (verification included). Times per
release: from the tasks landing in tasks.json to the approval request, and to `deployed`. Every K releases
(and after release 1 and 10): the daemon's VmRSS and VmHWM, and the size and file count of
every file and folder opsflow keeps. Prints a markdown report on stdout; `--results` keeps
every figure as JSON. Python 3 stdlib only.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

from benchlib import memory_kib

UNIT = "UNIT-001"
ARTIFACTS = "docs/workflow/artifacts"


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def write_atomic(path, text):
    tmp = path + ".bench-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(tmp, path)


def proc_status(pid):
    """VmRSS and VmHWM in MiB."""
    return {key: kib / 1024 for key, kib in memory_kib(pid).items()}


def tree(path):
    """(bytes, files) under path (a file counts as one)."""
    if os.path.isfile(path):
        return os.path.getsize(path), 1
    size = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except FileNotFoundError:
                pass
    return size, files


KEPT = [
    ".opsflow/runs",
    ".opsflow/audit.jsonl",
    ".opsflow/envs",
    ".opsflow/built",
    ".opsflow/rollouts",
    ".opsflow",
    "docs/workflow/releases",
    f"{ARTIFACTS}/R06-release-artifacts",
    ARTIFACTS,
    "docs/workflow/human-requests.md",
    "docs/workflow/human-requests-archive.md",
    "docs/workflow/tasks.json",
    "docs/workflow/deployments",
]


def sizes(ws):
    out = {}
    for rel in KEPT:
        path = os.path.join(ws, rel)
        out[rel] = tree(path) if os.path.exists(path) else (0, 0)
    return out


_statuses = {"stamp": None, "data": None}


def task_statuses(ws, ids):
    """The statuses of `ids`, parsing tasks.json again only when it changed, so that waiting
    does not take a core from the daemon as the file grows."""
    path = f"{ws}/docs/workflow/tasks.json"
    st = os.stat(path)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    if stamp != _statuses["stamp"]:
        _statuses["data"] = json.loads(read(path))
        _statuses["stamp"] = stamp
    return {t.get("id"): t.get("status") for t in _statuses["data"]["tasks"] if t.get("id") in ids}


def wait_for(what, deadline, check, daemon):
    while True:
        found = check()
        if found:
            return found
        if not os.path.exists(f"/proc/{daemon}"):
            sys.exit(f"bench-releases: the daemon died while waiting for {what}")
        if time.monotonic() > deadline:
            sys.exit(f"bench-releases: timed out waiting for {what}")
        time.sleep(0.01)


def approval_for(ws, version):
    """The approval request opsflow wrote for UNIT-001 at `version`, if any: by its name, so
    that looking for it costs the same after a thousand releases."""
    path = f"{ws}/{ARTIFACTS}/R12-prod-approval-{UNIT}-{version}.md"
    try:
        text = read(path)
    except FileNotFoundError:
        return None
    if f'version: "{version}"\n' in text and f'unit_id: "{UNIT}"\n' in text and 'status: "pending"' in text:
        return path
    return None


def new_release(ws, version, sample_md, sample_qa):
    md = sample_md.replace("1.0.0", version)
    write_atomic(f"{ws}/QA/QA-Report-{UNIT}.md", md)
    qa = dict(sample_qa)
    qa["unit_id"], qa["version"] = UNIT, version
    write_atomic(f"{ws}/ARTIFACTS/qa-engineer/qa-test-report.json", json.dumps(qa, indent=2))
    write_atomic(
        f"{ws}/{ARTIFACTS}/R04-merge-result.md",
        f'---\nnode: Merge_Code\nagent: Code-Reviewer\nunit_id: {UNIT}\nversion: "{version}"\nstatus: completed\n---\n\n# R04 Merge result\n',
    )
    ids = [f"B-{version}", f"S-{version}", f"P-{version}"]
    tasks_path = f"{ws}/docs/workflow/tasks.json"
    data = json.loads(read(tasks_path))
    for (tid, kind, dep) in ((ids[0], "release_build", None), (ids[1], "deployment_staging", ids[0]),
                             (ids[2], "deployment_production", ids[1])):
        task = {"id": tid, "title": f"{kind} {UNIT} {version}", "agent": "DevOps-Engineer", "type": kind,
                "status": "pending", "priority": "high", "unit_id": UNIT, "version": version}
        if dep:
            task["depends_on"] = [dep]
        data["tasks"].append(task)
    write_atomic(tasks_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return ids


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--ws", required=True)
    parser.add_argument("--releases", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--results")
    parser.add_argument("--first", type=int, default=1, help="the number of the first release (2.N.0)")
    args = parser.parse_args()
    ws, pid = args.ws, args.pid
    sample_md = read(f"{ws}/QA/QA-Report-{UNIT}.md")
    sample_qa = json.loads(read(f"{ws}/ARTIFACTS/qa-engineer/qa-test-report.json"))
    releases = []
    checkpoints = []
    for n in range(1, args.releases + 1):
        version = f"2.{n + args.first - 1}.0"
        ids = new_release(ws, version, sample_md, sample_qa)
        # From the moment the tasks are in the file: the agents' own writing is not the daemon's.
        t0 = time.monotonic()
        deadline = t0 + 120
        approval = wait_for(f"the approval request of {version}", deadline, lambda: approval_for(ws, version), pid)
        t_request = time.monotonic()
        text = read(approval)
        signed = text.replace('status: "pending"', 'status: "approved"', 1).replace("approved_by: null", 'approved_by: "alice"', 1)
        with open(approval, "w", encoding="utf-8") as f:
            f.write(signed)
        t_signed = time.monotonic()

        def deployed():
            statuses = task_statuses(ws, ids)
            status = statuses.get(ids[2])
            if status in ("failed", "rolled_back"):
                sys.exit(f"bench-releases: {ids[2]} ended {status}")
            return status == "deployed"

        wait_for(f"{ids[2]} deployed", deadline, deployed, pid)
        t_done = time.monotonic()
        releases.append({"n": n, "to_request": t_request - t0, "after_signing": t_done - t_signed, "total": t_done - t0})
        if n in (1, 10) or n % args.every == 0 or n == args.releases:
            checkpoints.append({"n": n, "proc": proc_status(pid), "sizes": sizes(ws)})
            print(f"bench-releases: {n} of {args.releases} releases", file=sys.stderr, flush=True)
    if args.results:
        with open(args.results, "w") as f:
            json.dump({"releases": releases, "checkpoints": checkpoints}, f, indent=1)
    report(releases, checkpoints, args.every)


def window(releases, last, size):
    part = [r for r in releases if last - size < r["n"] <= last]
    return part


def report(releases, checkpoints, every):
    n = len(releases)
    print(f"{n} releases under one `opsflow watch`; each one: build, staging, the production approval (signed as soon as it appears), production with monitoring and verification.\n")
    print("Time per release, median of the releases in each window (from the three tasks landing in tasks.json to the approval request; from signing it to `deployed`; the whole release), and the daemon's memory at the end of the window:\n")
    print("| releases | to the approval request | signed to deployed | whole release | VmRSS | VmHWM |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for cp in checkpoints:
        last = cp["n"]
        size = 1 if last == 1 else (9 if last == 10 else min(every, last))
        part = window(releases, last, size)
        med = lambda key: statistics.median(r[key] for r in part)
        label = f"{last - len(part) + 1}-{last}" if len(part) > 1 else f"{last}"
        print(f"| {label} | {med('to_request') * 1000:.0f} ms | {med('after_signing') * 1000:.0f} ms | {med('total') * 1000:.0f} ms | {cp['proc'].get('VmRSS', 0):.1f} MiB | {cp['proc'].get('VmHWM', 0):.1f} MiB |")
    print("\nWhat opsflow keeps, at each checkpoint (bytes, files):\n")
    names = list(checkpoints[0]["sizes"].keys())
    print("| after release | " + " | ".join(f"`{name}`" for name in names) + " |")
    print("| ---: | " + " | ".join("---:" for _ in names) + " |")
    for cp in checkpoints:
        cells = []
        for name in names:
            size, files = cp["sizes"][name]
            cells.append(f"{size:,} ({files:,})")
        print(f"| {cp['n']} | " + " | ".join(cells) + " |")
    if n >= 20:
        first = statistics.median(r["total"] for r in releases[:10])
        last = statistics.median(r["total"] for r in releases[-10:])
        first_rss = next((cp for cp in checkpoints if cp["n"] == 10), checkpoints[0])["proc"].get("VmRSS", 0)
        last_rss = checkpoints[-1]["proc"].get("VmRSS", 0)
        print("\n| target | measured | verdict |\n| --- | --- | --- |")
        ratio = last / first
        print(f"| time of release {n} vs release 1 <= 1.2x (medians of the last 10 and the first 10) | {last * 1000:.0f} / {first * 1000:.0f} ms = {ratio:.2f}x | {'met' if ratio <= 1.2 else 'NOT met'} |")
        rss = last_rss / first_rss if first_rss else float("nan")
        print(f"| RSS after {n} releases vs after 10 <= 1.2x | {last_rss:.1f} / {first_rss:.1f} MiB = {rss:.2f}x | {'met' if rss <= 1.2 else 'NOT met'} |")


if __name__ == "__main__":
    main()
