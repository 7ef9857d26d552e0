//! The engine end to end on the sample workspace: gates, approvals, deployments, failures,
//! hostile values, and the rule that a pass with nothing new writes nothing.

use std::fs;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::util::{Workspace, task};

const QA_JSON: &str = "ARTIFACTS/qa-engineer/qa-test-report.json";
const QA_MD: &str = "QA/QA-Report-UNIT-001.md";
pub(crate) const APPROVAL: &str = "docs/workflow/artifacts/R12-prod-approval.md";
pub(crate) const REQUESTS: &str = "docs/workflow/human-requests.md";
pub(crate) const CONFIG: &str = "project-config.json";

pub(crate) fn json_file(ws: &Workspace, relative: &str) -> Value {
    serde_json::from_slice(&ws.read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

pub(crate) fn edit_json(ws: &Workspace, relative: &str, edit: impl FnOnce(&mut Value)) {
    let mut value = json_file(ws, relative);
    edit(&mut value);
    ws.write(relative, serde_json::to_string_pretty(&value).unwrap());
}

pub(crate) fn status_of(ws: &Workspace, id: &str) -> String {
    task(&ws.tasks(), id)["status"].as_str().unwrap_or_default().to_owned()
}

/// What changed between two [`files`] snapshots, apart from the runtime folder that comes
/// with the runner's lock (`.opsflow/` and its `.gitignore`).
fn changed_besides_the_runtime_folder(
    before: &std::collections::BTreeMap<PathBuf, crate::util::Entry>,
    after: &std::collections::BTreeMap<PathBuf, crate::util::Entry>,
) -> Vec<PathBuf> {
    let runtime = [PathBuf::from(".opsflow"), PathBuf::from(".opsflow/.gitignore")];
    crate::util::changed_paths(before, after).into_iter().filter(|path| !runtime.contains(path)).collect()
}

/// Snapshot without the runtime lock file, whose holder line is rewritten by every runner.
pub(crate) fn files(ws: &Workspace) -> std::collections::BTreeMap<PathBuf, crate::util::Entry> {
    let mut snapshot = ws.snapshot();
    snapshot.retain(|path, _| !path.starts_with(".opsflow/locks"));
    snapshot
}

pub(crate) fn approve(ws: &Workspace, by: &str) {
    let text = ws.read_string(APPROVAL);
    let signed = text.replacen("status: \"pending\"", "status: \"approved\"", 1).replacen(
        "approved_by: null",
        &format!("approved_by: \"{by}\""),
        1,
    );
    assert_ne!(signed, text, "the approval request has the fields a human edits:\n{text}");
    ws.write(APPROVAL, signed);
}

fn deployed_to_production(ws: &Workspace) -> bool {
    ws.join(".opsflow/envs/production/active").exists()
}

#[test]
fn build_staging_then_production_waits_for_approval_then_ships() {
    let ws = Workspace::new().sample();
    let first = ws.run(&["run"]);
    first.status(3);
    assert!(first.stdout().contains("blocked    DEVOPS-007"), "{}", first.stdout());
    for id in ["DEVOPS-001", "DEVOPS-002", "DEVOPS-003", "DEVOPS-004", "DEVOPS-005"] {
        assert_eq!(status_of(&ws, id), "done", "{id}");
    }
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed");
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "blocked");
    assert_eq!(production["blocked_by"], "opsflow");
    assert!(production["blocked_reason"].as_str().unwrap().contains("waiting for a human"), "{production}");
    assert!(!deployed_to_production(&ws));
    assert_eq!(
        fs::read_to_string(ws.join(".opsflow/envs/staging/current/index.html")).unwrap(),
        ws.read_string("app/index.html")
    );

    // The request is written once, for a human to edit.
    let request = ws.read_string(APPROVAL);
    assert!(
        request.starts_with("---\nstatus: \"pending\"\napproved_by: null\nunit_id: \"UNIT-001\"\nversion: \"1.0.0\"\n"),
        "{request}"
    );
    assert!(request.contains("\n- [ ] Approved\n- [ ] Hold\n"));
    assert_eq!(ws.read_string(REQUESTS).matches("## Escalation Request").count(), 1);

    // Nothing new: the second pass writes nothing at all.
    let before = files(&ws);
    ws.run(&["run"]).status(3);
    assert_eq!(files(&ws), before, "a pass with nothing new wrote files");

    approve(&ws, "alice");
    let second = ws.run(&["run"]);
    second.status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
    assert_eq!(status_of(&ws, "DEVOPS-008"), "done");
    assert_eq!(status_of(&ws, "DEVOPS-009"), "done");
    assert!(task(&ws.tasks(), "DEVOPS-007").get("blocked_reason").is_none());
    assert!(deployed_to_production(&ws));
    let state = json_file(&ws, "docs/workflow/state.json");
    assert_eq!(state["current_nodes"], json!([]));
    for node in ["Deploy_To_Production", "Post_Deploy_Verification", "Deployment_And_Continuous_Feedback"] {
        assert_eq!(state["nodes"][node]["status"], "completed", "{node}");
    }
    let report = json_file(&ws, "ARTIFACTS/devops-engineer/deployment-report.json");
    assert_eq!(report["deployment_summary"]["status"], "success");
    assert_eq!(report["deployment_summary"]["deployment_method"], "blue-green");
    let signal = json_file(&ws, "ARTIFACTS/system/stage-completion-signal.json");
    assert_eq!(
        (signal["status"].as_str(), signal["next_agent"].as_str()),
        (Some("completed"), Some("Product-Manager"))
    );
    // Every output validates against its schema.
    ws.run(&["validate"]).status(0);
    // The human's approval file was never touched by opsflow after the human edited it.
    assert!(ws.read_string(APPROVAL).contains("approved_by: \"alice\""));
    let before = files(&ws);
    ws.run(&["run"]).status(0);
    assert_eq!(files(&ws), before, "a finished workflow was written again");
}

/// A gate case: what it is, how it edits the QA report, what the blocked reason must say.
type GateCase = (&'static str, fn(&mut Value), &'static str);

/// Runs the sample until production and returns the workspace, for gate cases.
fn at_production_gate(edit: impl FnOnce(&Workspace)) -> (Workspace, crate::util::Run) {
    let ws = Workspace::new().sample();
    edit(&ws);
    let run = ws.run(&["run"]);
    (ws, run)
}

#[test]
fn each_staging_gate_blocks_alone_and_names_the_figure() {
    let cases: [GateCase; 8] = [
        ("/test_results/unit/failed", |r| r["test_results"]["unit"]["failed"] = json!(1), "unit tests pass"),
        (
            "/test_results/smoke/failed",
            |r| r["test_results"]["smoke"]["failed"] = json!(2),
            "smoke tests pass: 2 failed",
        ),
        (
            "/test_results/sanity/failed",
            |r| r["test_results"]["sanity"]["failed"] = json!(1),
            "sanity tests pass: 1 failed",
        ),
        (
            "/code_review/approved",
            |r| r["code_review"]["approved"] = json!(false),
            "code review approved: approved: false",
        ),
        ("/security/critical", |r| r["security"]["critical"] = json!(1), "no critical security findings: 1 critical"),
        (
            "/static_analysis/lint_errors",
            |r| r["static_analysis"]["lint_errors"] = json!(4),
            "lint clean: 4 lint errors",
        ),
        (
            "/static_analysis/type_errors",
            |r| r["static_analysis"]["type_errors"] = json!(1),
            "type check clean: 1 type errors",
        ),
        (
            "missing figure",
            |r| {
                r["test_results"].as_object_mut().unwrap().remove("smoke");
            },
            "figure `test_results.smoke.failed` is missing in ARTIFACTS/qa-engineer/qa-test-report.json",
        ),
    ];
    for (what, edit, expected) in cases {
        let (ws, run) = at_production_gate(|ws| edit_json(ws, QA_JSON, edit));
        run.status(3);
        let staging = task(&ws.tasks(), "DEVOPS-006").clone();
        assert_eq!(staging["status"], "blocked", "{what}");
        let reason = staging["blocked_reason"].as_str().unwrap();
        assert!(reason.contains(expected), "{what}: {reason}");
        assert_eq!(reason.matches(';').count(), 0, "{what}: only one check should fail: {reason}");
        assert!(!ws.join(".opsflow/envs/staging/current").exists(), "{what}: staging was deployed");
    }
}

#[test]
fn coverage_warns_by_default_and_blocks_when_configured() {
    let (ws, run) = at_production_gate(|ws| edit_json(ws, QA_JSON, |r| r["coverage"]["line_percent"] = json!(50.0)));
    run.status(3);
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed", "coverage_action warn must not block");
    // The warning is shown on the console and recorded with the staging deployment's decision.
    assert!(
        run.stderr().contains("DEVOPS-006 runs with a warning: coverage: 50% line coverage, need 80%"),
        "{}",
        run.stderr()
    );
    let audit = ws.read_string(".opsflow/audit.jsonl");
    let claim = audit
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|entry| entry["event"] == "claimed" && entry["subject"] == "DEVOPS-006")
        .unwrap_or_else(|| panic!("no claim of DEVOPS-006 in the audit log:\n{audit}"));
    assert!(claim["reason"].as_str().unwrap().contains("coverage: warn"), "{claim}");
    let (ws, run) = at_production_gate(|ws| {
        edit_json(ws, QA_JSON, |r| r["coverage"]["line_percent"] = json!(50.0));
        edit_json(ws, CONFIG, |c| c["gates"]["coverage_action"] = json!("block"));
    });
    run.status(3);
    let reason = task(&ws.tasks(), "DEVOPS-006")["blocked_reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("coverage: 50% line coverage, need 80%"), "{reason}");
}

#[test]
fn each_production_gate_blocks_alone() {
    let cases: [GateCase; 4] = [
        (
            "regression",
            |r| r["test_results"]["regression"] = json!({"passed": 90, "failed": 10, "skipped": 0}),
            "regression tests pass: 90.0%",
        ),
        ("benchmarks", |r| r["performance"]["benchmarks_met"] = json!(false), "performance benchmarks met"),
        ("high findings", |r| r["security"]["high"] = json!(2), "no high security findings: 2 high"),
        (
            "missing figure",
            |r| {
                r.as_object_mut().unwrap().remove("performance");
            },
            "figure `performance.benchmarks_met` is missing",
        ),
    ];
    for (what, edit, expected) in cases {
        let (ws, run) = at_production_gate(|ws| edit_json(ws, QA_JSON, edit));
        run.status(3);
        assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed", "{what}: staging is not gated on this");
        let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().to_owned();
        assert!(reason.contains(expected), "{what}: {reason}");
        assert!(reason.contains("human approval"), "{what}: the approval is still missing too: {reason}");
        // Production is not ready, so no approval request is written yet.
        assert!(!ws.join(APPROVAL).exists(), "{what}: the approval request was written while a gate fails");
        assert!(!deployed_to_production(&ws));
    }
}

#[test]
fn qa_rejection_escalates_to_qa_without_a_fix_task() {
    let (ws, run) = at_production_gate(|ws| {
        let md = ws.read_string(QA_MD).replacen("status: approved", "status: rejected", 1);
        ws.write(QA_MD, md);
    });
    run.status(3);
    let staging = task(&ws.tasks(), "DEVOPS-006").clone();
    assert_eq!(staging["status"], "blocked");
    assert!(staging["blocked_reason"].as_str().unwrap().contains("status rejected"), "{staging}");
    let requests = ws.read_string(REQUESTS);
    assert!(requests.contains("QA rejected unit `UNIT-001`"), "{requests}");
    assert!(requests.contains("**Escalated To:** QA-Engineer"), "{requests}");
    // No channel of `notifications` took it: the line names nobody it did not reach.
    assert!(requests.contains("**Contacts Notified:** none configured"), "{requests}");
    assert!(!ws.tasks().iter().any(|t| t["type"] == "bug_fix"), "a QA rejection files no fix task");
    // The hand-off signal names the agent the escalation goes to (it said Product-Manager).
    let signal = json_file(&ws, "ARTIFACTS/system/stage-completion-signal.json");
    assert_eq!(signal["next_agent"], "QA-Engineer", "{signal}");

    // QA re-approves: the task opsflow blocked runs on the next pass.
    let md = ws.read_string(QA_MD).replacen("status: rejected", "status: approved", 1);
    ws.write(QA_MD, md);
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed");
}

#[test]
fn blocking_bugs_and_disagreeing_reports_block() {
    let (ws, run) = at_production_gate(|ws| edit_json(ws, QA_JSON, |r| r["blocking_bugs"] = json!([{"id": "BUG-1"}])));
    run.status(3);
    assert!(task(&ws.tasks(), "DEVOPS-006")["blocked_reason"].as_str().unwrap().contains("1 blocking bugs"));
    // Both reports exist, so both must approve.
    let (ws, run) = at_production_gate(|ws| edit_json(ws, QA_JSON, |r| r["recommendation"] = json!("needs_fixes")));
    run.status(3);
    assert!(task(&ws.tasks(), "DEVOPS-006")["blocked_reason"].as_str().unwrap().contains("recommendation needs_fixes"));
}

fn approval_case(front: &str, body: &str) -> (Workspace, crate::util::Run) {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    ws.write(APPROVAL, format!("---\n{front}---\n{body}"));
    let run = ws.run(&["run"]);
    (ws, run)
}

#[test]
fn approvals_that_do_not_count() {
    let cases = [
        ("status: approved\napproved_by: mallory\n", "", "approved by `mallory`, who is not in devops.approvers"),
        // An approval of another release is not this one's: this release gets its own request.
        (
            "status: approved\napproved_by: alice\nversion: \"2.0.0\"\n",
            "",
            "R12-prod-approval-UNIT-001-1.0.0.md is the request as opsflow wrote it",
        ),
        ("status: pending\napproved_by: alice\n", "```\n- [x] Approved\n```\n", "is not approved yet"),
        ("status: pending\napproved_by: alice\n", "> - [x] Approved\n", "is not approved yet"),
        ("status: pending\napproved_by: alice\n", "- [x] Approved\n- [x] Hold\n", "on hold"),
        ("status: approved\n", "", "`approved_by` is empty"),
        (
            "status: approved\napproved_by: alice\nunit_id: UNIT-999\n",
            "",
            "R12-prod-approval-UNIT-001-1.0.0.md is the request as opsflow wrote it",
        ),
    ];
    for (front, body, expected) in cases {
        let (ws, run) = approval_case(front, body);
        run.status(3);
        let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().to_owned();
        assert!(reason.contains(expected), "{front}{body}: {reason}");
        assert!(!deployed_to_production(&ws), "{front}{body}: production shipped");
    }
}

#[test]
fn a_ticked_box_by_an_approver_ships() {
    let (ws, run) =
        approval_case("status: pending\napproved_by: alice\n", "Looks good.\n\n- [x] Approved\n- [ ] Hold\n");
    run.status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
}

#[test]
fn a_tampered_release_is_refused_by_checksum() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    ws.write("docs/workflow/artifacts/R06-release-artifacts/UNIT-001/1.0.0/index.html", "<h1>tampered</h1>");
    approve(&ws, "alice");
    let run = ws.run(&["run"]);
    run.status(1);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "failed");
    assert!(
        production["outcome"]["summary"].as_str().unwrap().contains("index.html does not match SHA256SUMS"),
        "{production}"
    );
    assert!(!deployed_to_production(&ws));
    let fix = task(&ws.tasks(), "FIX-DEVOPS-007").clone();
    assert_eq!(
        (fix["agent"].as_str(), fix["type"].as_str(), fix["priority"].as_str()),
        (Some("Task-Coder"), Some("bug_fix"), Some("high"))
    );
    assert_eq!(fix["source_task"], "DEVOPS-007");
    assert_eq!(json_file(&ws, "ARTIFACTS/system/stage-completion-signal.json")["status"], "failed");
    let requests = ws.read_string(REQUESTS);
    assert!(requests.contains("**Severity:** CRITICAL"), "{requests}");
    // Nothing is filed twice on later passes.
    let before = files(&ws);
    ws.run(&["run"]).status(0);
    assert_eq!(files(&ws), before);
}

#[test]
fn a_failing_smoke_test_fails_staging_restores_nothing_and_files_one_fix_task() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["staging"]["smoke_tests"] =
            json!([{"name": "always-fails", "command": "echo broken >&2; exit 7"}])
    });
    let run = ws.run(&["run"]);
    run.status(1);
    let staging = task(&ws.tasks(), "DEVOPS-006").clone();
    assert_eq!(staging["status"], "failed");
    assert_eq!(staging["outcome"]["failed_step"], "smoke");
    let log = staging["outcome"]["log"].as_str().unwrap().to_owned();
    assert!(ws.read_string(&log).contains("broken"), "the log {log} has the command's output");
    assert_eq!(ws.tasks().iter().filter(|t| t["type"] == "bug_fix").count(), 1);
    let r08 = ws.read_string("docs/workflow/artifacts/R08-staging-deploy.md");
    assert!(r08.contains("status: \"failed\""), "{r08}");
    // The failed release is marked bad in the environment's history.
    let history = json_file(&ws, ".opsflow/envs/staging/releases.json");
    assert_eq!(history["deployments"][0]["status"], "bad");
    // Staging had no earlier release: the environment is left as it was before (nothing live,
    // the failed release's directory kept for the coder to look at), and no rollback is
    // recorded anywhere.
    assert_eq!(history["deployments"].as_array().unwrap().len(), 1, "{history:#}");
    assert!(fs::symlink_metadata(ws.join(".opsflow/envs/staging/current")).is_err(), "nothing is live");
    assert!(ws.join(".opsflow/envs/staging/releases/UNIT-001/1.0.0/index.html").is_file());
    assert_eq!(staging["outcome"].get("rollback_reason"), None, "{staging:#}");
    for record in ["R17-rollback-decision.md", "R18-rollback-result.md"] {
        assert!(!ws.join(&format!("docs/workflow/artifacts/{record}")).exists(), "{record} was written");
    }
    assert!(!ws.read_string(".opsflow/audit.jsonl").contains("rolled_back"));
    let before = files(&ws);
    ws.run(&["run"]).status(0);
    assert_eq!(files(&ws), before, "a failed task is not retried or re-filed");
}

#[test]
fn errors_during_monitoring_roll_production_back() {
    let ws = Workspace::new().sample();
    // Healthy for the pre-switch check, then failing for good.
    let check = "n=$(cat \"$OPSFLOW_WORKSPACE/probe\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$OPSFLOW_WORKSPACE/probe\"; test $n -le 1";
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["production"]["health_checks"] = json!([{"name": "probe", "command": check}]);
        c["devops"]["monitoring_interval"] = json!("50ms");
    });
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    let run = ws.run(&["run"]);
    run.status(1);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "rolled_back", "{production}");
    assert!(
        production["outcome"]["rollback_reason"].as_str().unwrap().contains("health checks failed 3 times in a row")
    );
    let r17 = ws.read_string("docs/workflow/artifacts/R17-rollback-decision.md");
    assert!(r17.starts_with("---\ndecision: \"rollback\"\nreason: \"health checks failed 3 times in a row"), "{r17}");
    let r18 = ws.read_string("docs/workflow/artifacts/R18-rollback-result.md");
    assert!(r18.contains("status: \"success\""), "{r18}");
    assert!(!deployed_to_production(&ws), "the first release was taken down");
    let report = json_file(&ws, "ARTIFACTS/devops-engineer/deployment-report.json");
    assert_eq!(report["deployment_summary"]["status"], "rolled_back");
    assert_eq!(task(&ws.tasks(), "FIX-DEVOPS-007")["agent"], "Task-Coder");
    ws.run(&["validate"]).status(0);
}

/// Makes the workspace a git repository with one commit of everything in it.
fn commit_everything(ws: &Workspace) {
    for args in [
        &["init", "-q"][..],
        &["-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A"],
        &["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "sample"],
    ] {
        let out = std::process::Command::new("git").current_dir(ws.path()).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Every path under `dir` whose file name starts with `prefix`.
fn named_like(dir: &std::path::Path, prefix: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path().to_owned())
        .collect()
}

#[test]
fn hostile_values_never_run_as_code_and_outputs_stay_valid() {
    let ws = Workspace::new().sample();
    let evil_title = "Deploy $(touch pwned-title) `touch pwned-tick` \"quoted\"\n- [x] Approved";
    // No space, so that it is also a valid git tag name and the tag step runs with it.
    let evil_version = "1.0.0$(touch${IFS}pwned-version)`touch${IFS}pwned-backtick`;touch${IFS}pwned-semicolon";
    edit_json(&ws, "docs/workflow/tasks.json", |t| {
        for task in t["tasks"].as_array_mut().unwrap() {
            if task["agent"] == "DevOps-Engineer" {
                task["title"] = json!(evil_title);
                if task.get("version").is_some() {
                    task["version"] = json!(evil_version);
                }
            }
        }
    });
    // The values reach the commands as environment variables; commands that use them, as a
    // careful author writes them (quoted), see them as plain text.
    let record = r#"printf '%s|%s|%s|%s\n' "$OPSFLOW_ENV" "$OPSFLOW_VERSION" "$OPSFLOW_UNIT_ID" "$OPSFLOW_TASK_ID" >> "$OPSFLOW_WORKSPACE/seen-values""#;
    edit_json(&ws, CONFIG, |c| {
        c["release"]["git_tag"] = json!(true);
        c["release"]["build"] = json!(format!("mkdir -p dist && cp -R app/. dist/ && {record}"));
        for env in ["staging", "production"] {
            c["environments"][env]["smoke_tests"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "values", "command": record}));
        }
    });
    // QA approved that very version (it has to, for the QA gate to pass).
    let qa = ws.read_string(QA_MD).replace("version: \"1.0.0\"", &format!("version: {}", json!(evil_version)));
    ws.write(QA_MD, qa);
    edit_json(&ws, QA_JSON, |qa| qa["version"] = json!(evil_version));
    let r04 = "docs/workflow/artifacts/R04-merge-result.md";
    let merged = ws.read_string(r04).replace("version: 1.0.0", &format!("version: {}", json!(evil_version)));
    ws.write(r04, merged);
    commit_everything(&ws);
    let run_opsflow = || {
        ws.command(&["run"])
            .env("GIT_AUTHOR_NAME", "opsflow")
            .env("GIT_AUTHOR_EMAIL", "o@example.com")
            .env("GIT_COMMITTER_NAME", "opsflow")
            .env("GIT_COMMITTER_EMAIL", "o@example.com")
            .output()
            .unwrap()
    };
    let run = run_opsflow();
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(ws.join(APPROVAL).exists());
    approve(&ws, "alice");
    let run = run_opsflow();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    // Nothing anywhere in the workspace (the commands' working directories, the release and
    // environment folders under .opsflow, the repository) was created by a value.
    assert_eq!(named_like(ws.path(), "pwned"), Vec::<PathBuf>::new(), "a value ran as code");
    // The commands did run, and saw the values as text.
    let seen = ws.read_string("seen-values");
    for env in ["build|", "staging|", "production|"] {
        assert!(
            seen.lines().any(|l| l.starts_with(env) && l.contains(&format!("|{evil_version}|UNIT-001|"))),
            "{seen}"
        );
    }
    let tags = std::process::Command::new("git").current_dir(ws.path()).args(["tag", "--list"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&tags.stdout).trim(), format!("v{evil_version}"));
    assert_eq!(json_file(&ws, "ARTIFACTS/devops-engineer/deployment-report.json")["version"], evil_version);
    // The title's forged checkbox did not become a checkbox in the request.
    let request = ws.read_string(APPROVAL);
    assert_eq!(request.matches("- [x] Approved").count(), 0, "{request}");
    ws.run(&["validate"]).status(0);
}

#[test]
fn a_unit_id_that_climbs_out_is_refused_before_anything_is_written() {
    // The workspace sits in a sentinel directory of its own, so a write that climbs out of
    // it lands somewhere the test can see.
    let sentinel = tempfile::Builder::new().prefix("opsflow-sentinel-").tempdir().unwrap();
    let ws = Workspace::new_in(sentinel.path()).sample();
    let hostile = "../../../../climbed-out";
    edit_json(&ws, "docs/workflow/tasks.json", |t| t["tasks"][2]["unit_id"] = json!(hostile));
    let before = files(&ws);
    let outside_before = crate::util::snapshot_of(sentinel.path());
    let run = ws.run(&["run"]);
    assert_eq!(run.code(), Some(2), "{}", run.stdout());
    assert!(run.stdout().contains("/tasks/2/unit_id"), "{}", run.stdout());
    assert_eq!(task(&ws.tasks(), "DEVOPS-001")["status"], "pending");
    // Nothing in the workspace changed (.opsflow included), nothing beside it, and nothing
    // named by the hostile value exists anywhere up to the system's temporary directory.
    assert_eq!(changed_besides_the_runtime_folder(&before, &files(&ws)), Vec::<PathBuf>::new());
    let outside: Vec<PathBuf> = crate::util::snapshot_of(sentinel.path())
        .into_keys()
        .filter(|path| !path.starts_with(ws.path().file_name().unwrap()))
        .collect();
    let outside_then: Vec<PathBuf> =
        outside_before.into_keys().filter(|path| !path.starts_with(ws.path().file_name().unwrap())).collect();
    assert_eq!(outside, outside_then, "files appeared beside the workspace");
    assert_eq!(named_like(sentinel.path(), "climbed-out"), Vec::<PathBuf>::new());
    let mut dir = sentinel.path();
    while let Some(parent) = dir.parent() {
        assert!(!parent.join("climbed-out").exists(), "{} exists", parent.join("climbed-out").display());
        dir = parent;
    }
}

#[test]
fn tasks_a_human_blocked_are_left_alone() {
    let ws = Workspace::new().sample();
    edit_json(&ws, "docs/workflow/tasks.json", |t| {
        t["tasks"][2]["status"] = json!("blocked");
        t["tasks"][2]["blocked_reason"] = json!("waiting for the architect");
    });
    ws.run(&["run"]).status(0);
    let design = task(&ws.tasks(), "DEVOPS-001").clone();
    assert_eq!(
        (design["status"].as_str(), design["blocked_reason"].as_str()),
        (Some("blocked"), Some("waiting for the architect"))
    );
    assert!(!ws.join("docs/workflow/artifacts/INFRA04-env-specs.md").exists());
}

#[test]
fn a_broken_tasks_file_blocks_everything_and_is_not_touched() {
    let ws = Workspace::new().sample();
    let broken = "{\"tasks\": [ {\"id\": \"DEVOPS-001\", ";
    ws.write("docs/workflow/tasks.json", broken);
    let before = files(&ws);
    let run = ws.run(&["run"]);
    run.status(2);
    assert!(run.stdout().contains("docs/workflow/tasks.json:1:"), "{}", run.stdout());
    // Not only tasks.json: no node ran, nothing was rendered, filed or deployed.
    assert_eq!(changed_besides_the_runtime_folder(&before, &files(&ws)), Vec::<PathBuf>::new());
    assert_eq!(ws.read_string("docs/workflow/tasks.json"), broken);
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let ws = Workspace::new().sample();
    let before = ws.snapshot();
    let run = ws.run(&["run", "--dry-run"]);
    run.status(0);
    assert!(run.stdout().contains("would run  DEVOPS-001   Environment_Design"), "{}", run.stdout());
    assert!(run.stdout().contains("waiting    DEVOPS-002   on DEVOPS-001"), "{}", run.stdout());
    assert_eq!(ws.snapshot(), before);
}

#[test]
fn git_tags_the_release_in_a_real_repository() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| c["release"]["git_tag"] = json!(true));
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").current_dir(ws.path()).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    git(&["init", "-q"]);
    git(&["-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A"]);
    git(&["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "sample"]);
    let run = ws
        .command(&["run"])
        .env("GIT_AUTHOR_NAME", "opsflow")
        .env("GIT_AUTHOR_EMAIL", "o@example.com")
        .env("GIT_COMMITTER_NAME", "opsflow")
        .env("GIT_COMMITTER_EMAIL", "o@example.com")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "{}", String::from_utf8_lossy(&run.stdout));
    assert_eq!(git(&["tag", "--list"]).trim(), "v1.0.0");
    assert_eq!(git(&["rev-list", "-n", "1", "v1.0.0"]), git(&["rev-parse", "HEAD"]));
    let r07 = ws.read_string("docs/workflow/artifacts/R07-version-tag.md");
    assert!(r07.contains("Git tag: v1.0.0 on "), "{r07}");
}

#[test]
fn graph_shows_the_current_position() {
    let ws = Workspace::new().sample();
    let mermaid = ws.run(&["graph"]);
    mermaid.status(0);
    assert!(mermaid.stdout().contains("class Environment_Design current"), "{}", mermaid.stdout());
    assert!(mermaid.stdout().contains("Build_Release --> Deploy_To_Staging"));
    let dot = ws.run(&["graph", "--format", "dot"]);
    assert!(
        dot.stdout().contains(
            "\"Environment_Design\" [label=\"Environment_Design\\npending\", style=\"rounded,bold\", color=orange];"
        ),
        "{}",
        dot.stdout()
    );
}

#[test]
fn the_demo_runs_the_whole_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("demo");
    let out =
        std::process::Command::new(crate::util::opsflow_bin()).args(["demo", "--dir"]).arg(&target).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("signs docs/workflow/artifacts/R12-prod-approval.md as `demo`"), "{stdout}");
    for node in [
        "Environment_Design",
        "Build_Release",
        "Deploy_To_Staging",
        "Deploy_To_Production",
        "Post_Deploy_Verification",
        "Deployment_And_Continuous_Feedback",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(node) && l.contains(" ms "))
            .unwrap_or_else(|| panic!("no table row for {node}:\n{stdout}"));
        assert!(line.contains("completed"), "{line}");
    }
    assert!(target.join(".opsflow/envs/production/active/index.html").exists());
}

/// The README's first command exactly: `opsflow demo`, no `--dir`, from a directory that is
/// not empty (the repository), copies the sample into a new temporary directory.
#[test]
fn the_demo_without_a_directory_runs_in_a_new_temporary_one() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("Cargo.toml"), "[package]\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::util::opsflow_bin())
        .arg("demo")
        .current_dir(cwd.path())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let copied = format!("opsflow demo: sample workspace copied to {}/opsflow-demo-", tmp.path().display());
    assert!(stdout.starts_with(&copied), "{stdout}");
    assert!(stdout.contains("demo finished in"), "{stdout}");
    let created: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(created[0].join(".opsflow/envs/production/active/index.html").exists());
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 1, "nothing was written where it ran");
}

#[test]
fn current_nodes_without_a_task_run_from_state_json() {
    let ws = Workspace::new().sample();
    ws.write("docs/workflow/tasks.json", "{\"tasks\": []}\n");
    let run = ws.run(&["run"]);
    run.status(0);
    let state = json_file(&ws, "docs/workflow/state.json");
    for node in ["Environment_Design", "Dev_Environment_Setup", "CI_Pipeline_Setup", "Staging_Environment_Setup"] {
        assert_eq!(state["nodes"][node]["status"], "completed", "{node}: {}", run.stdout());
    }
    assert_eq!(state["current_nodes"], json!([]));
    assert_eq!(state["nodes"]["Build_Release"]["status"], "pending", "not a next node of anything that ran");
    assert!(ws.join("docs/workflow/artifacts/INFRA13-monitoring-setup.md").exists());
    assert_eq!(ws.read_string("docs/workflow/tasks.json"), "{\"tasks\": []}\n", "no task was made up in tasks.json");
}

#[test]
fn workflow_json_redefines_the_graph_with_the_built_in_actions() {
    let ws = Workspace::new().sample();
    ws.write(
        "docs/workflow/workflow.json",
        serde_json::to_string_pretty(&json!({
            "name": "lean",
            "nodes": [{
                "name": "Plan_Infrastructure",
                "action": "Environment_Design",
                "task_types": ["infrastructure_plan"],
                "inputs": ["INFRA01-requirements.md"],
                "outputs": ["INFRA04-env-specs.md"],
                "next": []
            }]
        }))
        .unwrap(),
    );
    ws.write(
        "docs/workflow/tasks.json",
        serde_json::to_string_pretty(&json!({"tasks": [
            {"id": "P-1", "title": "Plan", "agent": "devops", "type": "infrastructure_plan", "status": "pending"}
        ]}))
        .unwrap(),
    );
    ws.write("docs/workflow/state.json", "{\"workflow\": \"lean\", \"current_nodes\": [], \"nodes\": {}}\n");
    ws.run(&["run"]).status(0);
    assert_eq!(status_of(&ws, "P-1"), "done");
    let state = json_file(&ws, "docs/workflow/state.json");
    assert_eq!(state["nodes"]["Plan_Infrastructure"]["status"], "completed");
    let graph = ws.run(&["graph"]);
    assert!(graph.stdout().contains("%% workflow: lean"), "{}", graph.stdout());
}

/// Every file the pipeline writes, with times, run ids, hashes, durations and temporary paths
/// redacted, as snapshots.
fn assert_artifacts_snapshot(ws: &Workspace, case: &str, files: &[&str]) {
    let filters = vec![
        (r"\d{8}T\d{6}Z-[0-9a-f]{6}", "[run-id]"),
        (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[time]"),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "[date time]"),
        (r"\| \d{2}:\d{2}:\d{2} \|", "| [hh:mm:ss] |"),
        (r"\*\*Duration:\*\* \d+s", "**Duration:** [n]s"),
        (r"[0-9a-f]{64}", "[sha256]"),
        (r"\d+ ms", "[n] ms"),
        (r#""duration_ms": \d+"#, "\"duration_ms\": [n]"),
        (r"\| \d+ \| (yes|no) \|", "| [n] | $1 |"),
        // When each monitoring measurement started and how long it took are measured times.
        (r"(?m)^\| \d+ \| \d+ \| ", "| [ms] | [ms] | "),
        // On a loaded machine a measurement may run past the interval: R16 then says so.
        (r", longer than planned: [^\n]*", ""),
        (r"/tmp/opsflow-it-[A-Za-z0-9_]+", "[workspace]"),
        (r"git version [0-9.]+", "git version [n]"),
        (r"opsflow:request [0-9a-f]{16}", "opsflow:request [key]"),
    ];
    insta::with_settings!({filters => filters, prepend_module_to_snapshot => false, omit_expression => true}, {
        for file in files {
            let name = format!("{case}__{}", file.rsplit('/').next().unwrap());
            insta::assert_snapshot!(name, ws.read_string(file));
        }
    });
}

#[test]
fn rendered_artifacts_match_their_snapshots() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    assert_artifacts_snapshot(&ws, "blocked", &[APPROVAL, REQUESTS, "ARTIFACTS/system/stage-completion-signal.json"]);
    approve(&ws, "alice");
    ws.run(&["run"]).status(0);
    let dir = "docs/workflow/artifacts";
    let mut files: Vec<String> = ws
        .list_dir(dir)
        .into_iter()
        .filter(|name| {
            name.ends_with(".md")
                && !["INFRA01", "INFRA02", "INFRA03", "R04", "D21", "R12"].iter().any(|p| name.starts_with(p))
        })
        .map(|name| format!("{dir}/{name}"))
        .collect();
    files.extend(
        [
            "docs/workflow/deployments/Deploy-UNIT-001.md",
            "ARTIFACTS/devops-engineer/deployment-report.json",
            "ARTIFACTS/system/stage-completion-signal.json",
            ".github/workflows/opsflow.yml",
            "docs/workflow/artifacts/R06-release-artifacts/UNIT-001/1.0.0/SHA256SUMS",
        ]
        .map(str::to_owned),
    );
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    assert_eq!(files.len(), 23, "{files:?}");
    assert_artifacts_snapshot(&ws, "shipped", &files);
}

#[test]
fn rollback_artifacts_match_their_snapshots() {
    let ws = Workspace::new().sample();
    let check = "n=$(cat \"$OPSFLOW_WORKSPACE/probe\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$OPSFLOW_WORKSPACE/probe\"; test $n -le 1";
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["production"]["health_checks"] = json!([{"name": "probe", "command": check}]);
        c["devops"]["monitoring_interval"] = json!("50ms");
    });
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    ws.run(&["run"]).status(1);
    assert_artifacts_snapshot(
        &ws,
        "rolled_back",
        &[
            "docs/workflow/artifacts/R17-rollback-decision.md",
            "docs/workflow/artifacts/R18-rollback-result.md",
            "ARTIFACTS/devops-engineer/deployment-report.json",
            REQUESTS,
        ],
    );
    let fix = task(&ws.tasks(), "FIX-DEVOPS-007").clone();
    insta::with_settings!({filters => vec![(r"\d{8}T\d{6}Z-[0-9a-f]{6}", "[run-id]")], prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("rolled_back__fix_task", serde_json::to_string_pretty(&fix).unwrap());
    });
}

#[test]
fn problems_inside_owned_entries_block_only_those_entries_and_other_agents_entries_are_theirs() {
    let ws = Workspace::new().sample();
    let design = |id: &str| {
        json!({"id": id, "title": "Design", "agent": "DevOps-Engineer", "type": "infrastructure_design",
               "status": "pending", "unit_id": "UNIT-001"})
    };
    let mut bad_priority = design("D-BAD");
    bad_priority["priority"] = json!("urgent");
    let mut cycle_a = design("D-A");
    cycle_a["depends_on"] = json!(["D-B"]);
    let mut cycle_b = design("D-B");
    cycle_b["depends_on"] = json!(["D-A"]);
    let foreign =
        json!({"id": "BE-9", "title": "Theirs", "agent": "Backend-Engineer", "type": "implementation", "status": 42});
    let tasks = json!({"tasks": [bad_priority, cycle_a, cycle_b, foreign, design("D-OK")]});
    ws.write(crate::util::TASKS, serde_json::to_string_pretty(&tasks).unwrap());
    edit_json(&ws, "docs/workflow/state.json", |state| state["current_nodes"] = json!([]));
    let run = ws.run(&["run"]);
    run.status(2);
    let out = run.stdout();
    assert!(
        out.contains("problem    docs/workflow/tasks.json:10:19: at /tasks/0/priority: \"urgent\" is not one of"),
        "{out}"
    );
    assert!(out.contains("at /tasks/1/depends_on: dependency cycle: D-A -> D-B -> D-A"), "{out}");
    assert!(!out.contains("/tasks/3"), "another agent's entry is theirs to fix:\n{out}");
    assert_eq!(status_of(&ws, "D-OK"), "done");
    for id in ["D-BAD", "D-A", "D-B"] {
        assert_eq!(status_of(&ws, id), "pending", "{id}");
    }
}

/// Each finished task's outcome goes into the same rewrite of tasks.json as the claim of the
/// next one: three tasks in a row cost four rewrites of the file, not six, and every task
/// ends `done` with its outcome.
#[test]
fn an_outcome_and_the_next_claim_are_one_rewrite_of_the_task_list() {
    use notify::event::{ModifyKind, RenameMode};
    use notify::{EventKind, Watcher};
    let ws = Workspace::new().sample();
    let design = |id: &str| {
        json!({"id": id, "title": "Design", "agent": "DevOps-Engineer", "type": "infrastructure_design",
               "status": "pending", "unit_id": "UNIT-001"})
    };
    let tasks = json!({"tasks": [design("D-1"), design("D-2"), design("D-3")]});
    ws.write(crate::util::TASKS, serde_json::to_string_pretty(&tasks).unwrap());
    edit_json(&ws, "docs/workflow/state.json", |state| {
        state["current_nodes"] = json!([]);
        for node in ["Dev_Environment_Setup", "Staging_Environment_Setup"] {
            state["nodes"][node]["status"] = json!("completed");
        }
    });
    let dir = ws.path().join("docs/workflow");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .unwrap();
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive).unwrap();
    ws.run(&["run"]).status(0);
    // Events arrive in order: once the marker's arrives, every rewrite before it has too.
    fs::write(dir.join("marker"), "").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut rewrites = 0;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event: notify::Event = rx.recv_timeout(left).expect("the marker's event arrives").unwrap();
        if event.paths.iter().any(|p| p.ends_with("marker")) {
            break;
        }
        if event.kind == EventKind::Modify(ModifyKind::Name(RenameMode::To))
            && event.paths.iter().any(|p| p.ends_with("tasks.json"))
        {
            rewrites += 1;
        }
    }
    for id in ["D-1", "D-2", "D-3"] {
        let entry = task(&ws.tasks(), id).clone();
        assert_eq!(entry["status"], "done", "{entry:#}");
        assert_eq!(entry["outcome"]["status"], "done", "{entry:#}");
        assert_eq!(entry["outcome"]["run_id"], entry["run_id"], "{entry:#}");
    }
    assert_eq!(rewrites, 4, "claim 1; outcome 1 + claim 2; outcome 2 + claim 3; outcome 3");
}
