//! Other frameworks' files in the sample workspace (docs/integrations.md): a BMAD QA gate is a
//! QA verdict on its story's unit, a beads issue holds the tasks that depend on it, and
//! neither file is ever written; lock files stay out of git whatever they are called.

use serde_json::json;

use crate::engine::{CONFIG, REQUESTS, edit_json, json_file, status_of};
use crate::util::{TASKS, Workspace, task};

const GATE: &str = "docs/qa/gates/UNIT-001-landing-page.yml";
const BEADS: &str = ".beads/issues.jsonl";
const BEADS_FIXTURE: &str = include_str!("../fixtures/beads/issues.jsonl");

/// A BMAD gate for the sample's unit, from BMAD's template.
fn gate(verdict: &str, extra: &str) -> String {
    format!(
        "schema: 1\nstory: 'UNIT-001'\nstory_title: 'Landing page'\ngate: {verdict}\nstatus_reason: 'Checkout button does nothing.'\nreviewer: 'Quinn (Test Architect)'\nupdated: '2025-11-20T10:15:00Z'\ntop_issues: []\nwaiver: {{ active: false }}\n{extra}"
    )
}

fn staged(ws: &Workspace) -> bool {
    ws.join(".opsflow/envs/staging/current/index.html").exists()
}

fn blocked_reason(ws: &Workspace, id: &str) -> String {
    task(&ws.tasks(), id)["blocked_reason"].as_str().unwrap_or_default().to_owned()
}

/// Defect: a BMAD gate file was not read, so `gate: FAIL` beside a hand-written
/// `status: approved` QA report let staging go ahead.
#[test]
fn a_failing_bmad_gate_beside_an_approved_qa_report_keeps_staging_from_running() {
    let ws = Workspace::new().sample().file(GATE, gate("FAIL", ""));
    let run = ws.run(&["run"]);
    run.status(3);
    assert!(!staged(&ws), "staging went ahead: {}", run.stdout());
    let reason = blocked_reason(&ws, "DEVOPS-006");
    assert!(reason.contains(&format!("BMAD QA gate: {GATE}: gate FAIL (Checkout button does nothing.)")), "{reason}");
    assert!(
        reason.contains(&format!(
            "QA verdicts agree: QA/QA-Report-UNIT-001.md (status approved), ARTIFACTS/qa-engineer/qa-test-report.json (recommendation approve_for_deployment) approve, {GATE} (gate FAIL) does not"
        )),
        "{reason}"
    );
    // A QA rejection: back to QA, no fix task.
    assert!(ws.read_string(REQUESTS).contains("QA rejected unit `UNIT-001`"));
    assert!(!ws.tasks().iter().any(|t| t["type"] == "bug_fix"), "a QA rejection files no fix task");
    assert_eq!(json_file(&ws, "ARTIFACTS/system/stage-completion-signal.json")["next_agent"], "QA-Engineer");
    assert_eq!(ws.read_string(GATE), gate("FAIL", ""), "opsflow never writes a gate file");

    // QA passes the story: staging runs on the next pass.
    ws.write(GATE, gate("PASS", ""));
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed");
    assert!(staged(&ws));
}

#[test]
fn concerns_block_until_the_config_allows_them_and_a_waiver_needs_who_waived() {
    let ws = Workspace::new().sample().file(GATE, gate("CONCERNS", ""));
    ws.run(&["run"]).status(3);
    let reason = blocked_reason(&ws, "DEVOPS-006");
    assert!(reason.contains("set gates.bmad_concerns to \"allow\" to let CONCERNS through"), "{reason}");
    assert!(!staged(&ws));

    edit_json(&ws, CONFIG, |c| c["gates"]["bmad_concerns"] = json!("allow"));
    let run = ws.run(&["run"]);
    run.status(3);
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed");
    assert!(
        run.stdout().contains(&format!(
            "    warn BMAD QA gate: {GATE}: gate CONCERNS (Checkout button does nothing.); let through by gates.bmad_concerns: allow"
        )),
        "{}",
        run.stdout()
    );

    let ws = Workspace::new().sample().file(GATE, gate("WAIVED", ""));
    ws.run(&["run"]).status(3);
    assert!(blocked_reason(&ws, "DEVOPS-006").contains("a waiver counts only when active"));
    let waived = gate("WAIVED", "").replace(
        "waiver: { active: false }",
        "waiver:\n  active: true\n  reason: 'Launch first'\n  approved_by: 'Product Owner'",
    );
    ws.write(GATE, waived);
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed");
    // Who waived it is in what the approver of production reads.
    let request = ws.read_string(crate::engine::APPROVAL);
    assert!(
        request.contains(&format!("- BMAD QA gate: {GATE}: gate WAIVED by Product Owner: Launch first\n")),
        "{request}"
    );
}

#[test]
fn a_high_top_issue_blocks_and_a_broken_gate_file_is_named_with_its_line() {
    let issues = "top_issues:\n  - id: 'SEC-001'\n    severity: high\n    finding: 'No rate limiting on login'\n";
    let ws = Workspace::new().sample().file(GATE, gate("PASS", "").replace("top_issues: []\n", issues));
    ws.run(&["run"]).status(3);
    let reason = blocked_reason(&ws, "DEVOPS-006");
    assert!(
        reason.contains(&format!(
            "no blocking bugs: {GATE}: 1 top_issues of severity high (SEC-001: No rate limiting on login)"
        )),
        "{reason}"
    );

    let ws = Workspace::new().sample().file(GATE, gate("PASS", "").replace("gate: PASS", "gate: PASSED"));
    let validate = ws.run(&["validate"]);
    validate.status(2);
    assert!(
        validate
            .stdout()
            .contains(&format!("{GATE}:4:1: at /gate: `gate` must be PASS, CONCERNS, FAIL or WAIVED, found `PASSED`")),
        "{}",
        validate.stdout()
    );
    let before = ws.snapshot().get(std::path::Path::new(GATE)).cloned();
    let run = ws.run(&["run"]);
    run.status(2);
    assert!(run.stdout().contains(&format!("problem    {GATE}:4:1: at /gate:")), "{}", run.stdout());
    assert!(!staged(&ws));
    assert_eq!(ws.snapshot().get(std::path::Path::new(GATE)).cloned(), before);
}

/// The sample with `.beads/issues.jsonl` and the first DevOps task depending on two issues.
fn with_beads() -> Workspace {
    let ws = Workspace::new().sample().file(BEADS, BEADS_FIXTURE);
    edit_json(&ws, TASKS, |tasks| {
        let list = tasks["tasks"].as_array_mut().unwrap();
        let first = list.iter_mut().find(|t| t["id"] == "DEVOPS-001").unwrap();
        first["depends_on"] = json!(["bd-a1b2", "bd-c3d4"]);
    });
    ws
}

#[test]
fn a_task_waits_for_a_beads_issue_until_beads_closes_it_and_the_file_is_never_written() {
    let ws = with_beads();
    ws.run(&["validate"]).status(0);
    let why = "bd-c3d4 (beads issue in .beads/issues.jsonl, status `in_progress`, assignee alice; opsflow waits for `closed`)";
    let run = ws.run(&["run"]);
    run.status(0);
    assert!(run.stdout().contains(&format!("waiting    DEVOPS-001   on {why}\n")), "{}", run.stdout());
    assert_eq!(status_of(&ws, "DEVOPS-001"), "pending");
    let status = ws.run(&["status"]);
    assert!(status.stdout().contains(&format!("waiting on {why}")), "{}", status.stdout());

    // beads closes the issue (its own write); the task runs.
    let closed = BEADS_FIXTURE.replacen("\"status\":\"in_progress\"", "\"status\":\"closed\"", 1);
    ws.write(BEADS, &closed);
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-001"), "done");
    assert_eq!(ws.read_string(BEADS), closed, "opsflow never writes beads' file");
    assert_eq!(ws.list_dir(".beads"), ["issues.jsonl"], "no lock, no .gitignore in .beads");
}

#[test]
fn a_beads_line_that_is_not_json_is_reported_with_its_number_and_the_rest_still_count() {
    let ws = with_beads();
    ws.write(BEADS, format!("{BEADS_FIXTURE}{{\"id\": \"bd-x\", oops\n"));
    let validate = ws.run(&["validate"]);
    validate.status(2);
    assert!(
        validate.stdout().contains(".beads/issues.jsonl:4:16: line 4 is not a beads issue: invalid JSON"),
        "{}",
        validate.stdout()
    );
    // The other lines still count: bd-c3d4 holds the task with its own reason.
    let run = ws.run(&["run"]);
    run.status(0);
    assert!(run.stdout().contains("waiting    DEVOPS-001   on bd-c3d4 (beads issue"), "{}", run.stdout());
    // A depends_on naming neither a task nor an issue says where it looked.
    edit_json(&ws, TASKS, |tasks| {
        let list = tasks["tasks"].as_array_mut().unwrap();
        list.iter_mut().find(|t| t["id"] == "DEVOPS-001").unwrap()["depends_on"] = json!(["bd-gone"]);
    });
    let validate = ws.run(&["validate"]);
    assert!(
        validate.stdout().contains("depends on `bd-gone`, which no task in this file has as its id"),
        "{}",
        validate.stdout()
    );
}

/// git in the workspace, with a fixed author and none of the user's config.
fn git(ws: &Workspace, args: &[&str]) -> String {
    crate::util::git(ws.path(), args)
}

/// Defect: the `.gitignore` opsflow writes beside its first lock in a folder named only
/// `*.json.lock` and `*.md.lock`, so a lock of any other file (`issues.jsonl.lock`, a
/// configured `human-requests.txt`) was committed by `git add -A`.
#[test]
fn git_add_all_commits_no_lock_file_whatever_the_locked_file_is_called() {
    let ws = Workspace::new().sample().file(BEADS, BEADS_FIXTURE);
    edit_json(&ws, CONFIG, |c| c["paths"]["human_requests"] = json!("docs/requests/human-requests.txt"));
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    git(&ws, &["commit", "-qm", "sample"]);
    ws.run(&["run"]).status(3);
    assert!(ws.join("docs/requests/human-requests.txt.lock").exists(), "{:?}", ws.list_dir("docs/requests"));
    assert!(ws.join("docs/workflow/tasks.json.lock").exists());
    git(&ws, &["add", "-A"]);
    let staged = git(&ws, &["ls-files"]);
    let locks: Vec<&str> = staged.lines().filter(|f| f.ends_with(".lock")).collect();
    assert!(locks.is_empty(), "git add -A staged lock files: {locks:?}");
    assert!(staged.lines().any(|f| f == "docs/requests/human-requests.txt"), "{staged}");
    assert!(staged.lines().any(|f| f == "docs/requests/.gitignore"), "{staged}");
}
