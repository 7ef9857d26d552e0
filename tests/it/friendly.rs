//! Files that read well for people and other stages: other stages' signals and seed 003's own
//! deployment report validate, `human-requests.md` names things as they are written and says
//! when a request was resolved, warnings show where people look, the generated CI pipeline
//! does its job, and errors say what to do.

use serde_json::{Value, json};

use crate::engine::{APPROVAL, CONFIG, REQUESTS, approve, edit_json, json_file};
use crate::util::{TASKS, Workspace, task};

const SIGNAL: &str = "ARTIFACTS/system/stage-completion-signal.json";
const REPORT: &str = "ARTIFACTS/devops-engineer/deployment-report.json";

fn seed_report() -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/seed/deployment-report.seed-003.json", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
}

#[test]
fn another_stage_s_signal_and_seed_003_s_report_validate_and_runs_read_them() {
    let qa_signal = json!({
        "stage": "qa",
        "agent": "QA-Engineer",
        "unit_id": "UNIT-001",
        "status": "approved",
        "completed_at": "2026-12-01T09:00:00Z",
        "artifacts": {"report": "ARTIFACTS/qa-engineer/qa-test-report.json"},
        "next_agent": "DevOps-Engineer"
    });
    let ws = Workspace::new()
        .sample()
        .file(SIGNAL, serde_json::to_string_pretty(&qa_signal).unwrap())
        .file(REPORT, seed_report());
    let validate = ws.run(&["validate"]);
    validate.status(0);
    assert!(validate.stdout().starts_with("ok:"), "{}", validate.stdout());
    // The engine reads the same files and goes on to the production approval.
    let run = ws.run(&["run"]);
    run.status(3);
    assert!(!run.stderr().contains(SIGNAL) && !run.stderr().contains(REPORT), "{}", run.stderr());
    assert!(run.stdout().contains("blocked    DEVOPS-007"), "{}", run.stdout());
    // opsflow's own signal has the devops shape.
    let signal = json_file(&ws, SIGNAL);
    assert_eq!(signal["stage"], "devops");
    assert_eq!(signal["status"], "blocked");

    // A signal without a stage, and a devops signal in the wrong shape, are still refused.
    ws.write(SIGNAL, r#"{"stage": "", "status": "approved"}"#);
    let bad = ws.run(&["validate"]);
    bad.status(2);
    assert!(bad.stdout().contains(&format!("{SIGNAL}:1:11: at /stage:")), "{}", bad.stdout());
    ws.write(SIGNAL, r#"{"stage": "devops", "status": "approved"}"#);
    let bad = ws.run(&["validate"]);
    bad.status(2);
    assert!(
        bad.stdout().contains(r#"at /status: "approved" is not one of "completed", "failed" or "blocked""#),
        "{}",
        bad.stdout()
    );
    assert!(bad.stdout().contains(r#""next_agent" is a required property"#), "{}", bad.stdout());
}
