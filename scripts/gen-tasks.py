#!/usr/bin/env python3
"""Generate a large, realistic docs/workflow/tasks.json for benchmarks.

Usage: gen-tasks.py OUTPUT [N] [--seed SEED]

Writes {"tasks": [...]} with N tasks (default 100,000; about 27 MB at that size),
pretty-printed with two spaces as agents' own tools write it. The mix looks like a
long-running multi-agent project: about ten agents (DevOps-Engineer about 15%, plus the
DevOps aliases), many task types, every status, titles with non-ASCII text and escapes
(some entries written with \\u escapes, as Python's default json.dump does), descriptions,
depends_on lists and fields no opsflow schema knows. Some text fields quote JSON that looks
like ownership fields, so a scanner that matches text instead of parsing would be caught
by the benchmark's check that jq and opsflow select the same ids.

The output is deterministic: the same N and seed give the same bytes. Python 3 stdlib only.
"""

import argparse
import json
import os
import random
import sys

# (agent, weight in percent). DevOps-Engineer is about 15%; its aliases a little more.
AGENTS = [
    ("DevOps-Engineer", 15),
    ("devops", 2),
    ("DEVOPS_ENGINEER_AGENT", 1),
    ("Backend-Engineer", 16),
    ("Frontend-Engineer", 13),
    ("QA-Engineer", 14),
    ("Task-Coder", 12),
    ("Product-Manager", 7),
    ("Security-Engineer", 6),
    ("Data-Engineer", 6),
    ("Technical-Writer", 4),
    ("SRE-Oncall", 4),
]

OWNED_TYPES = [
    "deployment_staging",
    "deployment_production",
    "deployment_rollback",
    "infrastructure_design",
    "infrastructure_dev_env",
    "infrastructure_ci",
    "monitoring_setup",
    "monitoring_alerting",
    "release_build",
    "release_notes",
]

OTHER_TYPES = [
    "implementation",
    "bugfix",
    "refactor",
    "qa_testing",
    "qa_regression",
    "code_review",
    "documentation",
    "design",
    "security_audit",
    "data_migration",
    "research",
    # Look like owned types but are not: the prefix must match exactly.
    "pre_deployment_check",
    "Deployment_staging",
    "releases",
]

# (status, weight)
STATUSES = [
    ("pending", 30),
    ("in_progress", 12),
    ("blocked", 6),
    ("done", 32),
    ("deployed", 6),
    ("failed", 4),
    ("rolled_back", 2),
    ("cancelled", 4),
    ("awaiting_review", 4),
]

PRIORITIES = ["critical", "high", "high", "medium", "medium", "medium", "low", "low"]

ENVIRONMENTS = ["dev", "staging", "production", "qa", "perf"]

VERBS = ["Build", "Deploy", "Fix", "Test", "Review", "Migrate", "Provision", "Document", "Refactor", "Monitor",
         "Harden", "Roll out", "Benchmark", "Upgrade", "Configure"]
OBJECTS = ["the checkout service", "the landing page", "the payments API", "the search index", "the mobile app",
           "the user database", "the CDN config", "the auth gateway", "the nightly report", "the billing worker",
           "the staging cluster", "the metrics pipeline", "the feature-flag store", "the image resizer"]
# Titles and descriptions in several scripts, with quotes, backslashes and control characters
# that JSON must escape.
FLAVOURS = ["", "", "", "", " (v2)", " — follow-up", " für München", " 日本語テスト", " 🚀", " «urgent»",
            ' "hotfix"', " C:\\builds\\out", " naïve café", " Ελληνικά", " with\ttab", " ✅ done-ish"]
SENTENCES = [
    "Make sure the rollout is reversible and the health checks pass before switching traffic.",
    "Reproduce the failure from the QA report and add a regression test.",
    "The previous attempt timed out after 300s; see the run log in ARTIFACTS.",
    "Coordinate with the Backend-Engineer before touching the schema.",
    "Keep the old endpoint alive for one release so clients can migrate.",
    "Numbers from the last perf run: p50 41ms, p95 180ms, p99 420ms.",
    'Note for scanners: the text "agent": "DevOps-Engineer", "status": "pending" is just prose.',
    "Line one of a multi-line note.\nLine two, after a newline.",
    "Paths use backslashes on the Windows runner: C:\\ci\\cache\\target.",
    "Zürich and São Paulo regions first, then 東京.",
]
LABELS = ["backend", "frontend", "infra", "ci", "flaky", "customer", "p1", "tech-debt", "observability", "security"]


def weighted(rng, table):
    total = sum(w for _, w in table)
    pick = rng.uniform(0, total)
    for value, weight in table:
        pick -= weight
        if pick <= 0:
            return value
    return table[-1][0]


def make_task(rng, index):
    agent = weighted(rng, AGENTS)
    devops = agent in ("DevOps-Engineer", "devops", "DEVOPS_ENGINEER_AGENT")
    # DevOps agents mostly have owned types; others occasionally do (a mis-assigned task).
    if (devops and rng.random() < 0.8) or (not devops and rng.random() < 0.05):
        kind = rng.choice(OWNED_TYPES)
    else:
        kind = rng.choice(OTHER_TYPES)
    task_id = f"TASK-{index + 1:06d}"
    title = f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(FLAVOURS)}"
    description = rng.choice(SENTENCES) if rng.random() < 0.2 else ""

    task = {}
    # Most entries use the usual key order; some put the ownership fields last, as a tool
    # that appends fields would.
    late_keys = rng.random() < 0.1
    task["id"] = task_id
    task["title"] = title
    if not late_keys:
        task["agent"] = agent
        task["type"] = kind
        task["status"] = weighted(rng, STATUSES)
    if rng.random() < 0.75:
        task["priority"] = rng.choice(PRIORITIES)
    if rng.random() < 0.3:
        task["unit_id"] = f"UNIT-{rng.randint(1, 2000):04d}"
    if description:
        task["description"] = description
    if rng.random() < 0.35 and index > 0:
        count = rng.choice([1, 1, 1, 2])
        task["depends_on"] = sorted({f"TASK-{rng.randint(max(1, index - 500), index):06d}" for _ in range(count)})
    if rng.random() < 0.15:
        task["environment"] = rng.choice(ENVIRONMENTS)
    if rng.random() < 0.15:
        task["version"] = f"{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    # Fields other agents keep that no opsflow schema knows.
    if rng.random() < 0.1:
        task["estimate_hours"] = rng.choice([0.5, 1, 2, 3, 5, 8])
    if rng.random() < 0.06:
        task["labels"] = rng.sample(LABELS, rng.randint(1, 3))
    if rng.random() < 0.02:
        task["x_review"] = {"reviewer": rng.choice(AGENTS)[0], "approved": rng.random() < 0.7, "comments": rng.randint(0, 12)}
    if late_keys:
        task["status"] = weighted(rng, STATUSES)
        task["type"] = kind
        task["agent"] = agent
    return task


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("n", nargs="?", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20251125)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
        out.write('{\n  "tasks": [')
        for index in range(args.n):
            task = make_task(rng, index)
            # One entry in eight is written with \u escapes (Python's default), the rest as UTF-8.
            text = json.dumps(task, indent=2, ensure_ascii=(index % 8 == 0))
            out.write("\n    " if index == 0 else ",\n    ")
            out.write(text.replace("\n", "\n    "))
        out.write("\n  ]\n}\n" if args.n else "]\n}\n")
    os.replace(tmp, args.output)
    size = os.path.getsize(args.output)
    print(f"{args.output}: {args.n} tasks, {size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
