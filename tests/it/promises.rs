//! What the README promises and no other module shows: the audit log's digests, immutable
//! released versions, a hand-written CI pipeline left alone, a release checked file by file
//! against its `SHA256SUMS`, secrets named in the config, `status: hold`, and the exit-code
//! precedence with the `run --json` document.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::engine::{APPROVAL, CONFIG, approve, edit_json, status_of};
use crate::util::{TASKS, Workspace, changed_paths, task};

const RELEASE: &str = "docs/workflow/artifacts/R06-release-artifacts/UNIT-001/1.0.0";

/// The sha256 of a file as `sha256sum` computes it: an implementation independent of opsflow's.
fn sha256sum(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

fn audit(ws: &Workspace) -> Vec<Value> {
    ws.read_string(".opsflow/audit.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("an audit line is not JSON ({e}): {line}")))
        .collect()
}

#[test]
fn every_decision_is_an_audit_line_with_the_digests_of_its_inputs() {
    let ws = Workspace::new().sample();
    // Inputs no one writes during the run keep the content the decisions read.
    let before = ws.snapshot();
    ws.run(&["run"]).status(3);
    let unchanged: Vec<PathBuf> =
        before.keys().filter(|path| !changed_paths(&before, &ws.snapshot()).contains(path)).cloned().collect();
    let entries = audit(&ws);
    let mut checked = BTreeMap::new();
    for entry in &entries {
        assert!(entry["run_id"].as_str().is_some_and(|id| !id.is_empty()), "{entry}");
        assert_eq!(entry["agent"], "DevOps-Engineer", "{entry}");
        assert!(crate::util::is_rfc3339_utc(entry["time"].as_str().unwrap()), "{entry}");
        for key in ["event", "subject", "reason"] {
            assert!(entry[key].is_string(), "{key} in {entry}");
        }
        for (file, digest) in entry["inputs"].as_object().expect("inputs is an object") {
            let digest = digest.as_str().unwrap();
            assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "{file}: {digest}");
            if unchanged.contains(&PathBuf::from(file)) {
                assert_eq!(digest, sha256sum(&ws.join(file)), "{file} in {entry}");
                *checked.entry(file.clone()).or_insert(0) += 1;
            }
        }
    }
    // Every owned task that ran was claimed, and the decisions read the QA reports.
    for id in ["DEVOPS-001", "DEVOPS-002", "DEVOPS-003", "DEVOPS-004", "DEVOPS-005", "DEVOPS-006"] {
        assert!(entries.iter().any(|e| e["event"] == "claimed" && e["subject"] == id), "no claim of {id}");
    }
    for input in ["QA/QA-Report-UNIT-001.md", "docs/workflow/artifacts/R04-merge-result.md"] {
        assert!(checked.contains_key(input), "{input} among the digests checked: {checked:?}");
    }
}

/// Adds a pending build of `1.0.0` for UNIT-001, as an agent would for a rebuild.
fn add_a_rebuild(ws: &Workspace) {
    edit_json(ws, TASKS, |t| {
        t["tasks"].as_array_mut().unwrap().push(json!({
            "id": "DEVOPS-105", "title": "Build 1.0.0 again", "agent": "DevOps-Engineer",
            "type": "release_build", "status": "pending", "unit_id": "UNIT-001", "version": "1.0.0"
        }));
    });
}

#[test]
fn a_version_rebuilt_with_the_same_content_is_a_no_op_and_with_other_content_is_refused() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let release = crate::util::snapshot_of(&ws.join(RELEASE));

    add_a_rebuild(&ws);
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-105"), "done");
    assert_eq!(crate::util::snapshot_of(&ws.join(RELEASE)), release);

    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    add_a_rebuild(&ws);
    ws.write("app/index.html", "<h1>Acme Shop, changed after the release</h1>\n");
    ws.run(&["run"]).status(1);
    let rebuild = task(&ws.tasks(), "DEVOPS-105").clone();
    assert_eq!(rebuild["status"], "failed", "{rebuild:#}");
    let summary = rebuild["outcome"]["summary"].as_str().unwrap();
    assert!(summary.contains("a released version is immutable, so bump the version"), "{summary}");
    assert_eq!(crate::util::snapshot_of(&ws.join(RELEASE)), release, "the released files are as they were");
}

#[test]
fn a_hand_written_ci_pipeline_is_never_overwritten() {
    let ws = Workspace::new().sample();
    let mine = "name: mine\non: push\njobs: {}\n";
    ws.write(".github/workflows/opsflow.yml", mine);
    let run = ws.run(&["run"]);
    run.status(1);
    assert_eq!(ws.read_string(".github/workflows/opsflow.yml"), mine);
    let ci = task(&ws.tasks(), "DEVOPS-003").clone();
    assert_eq!(ci["status"], "failed");
    assert!(
        ci["outcome"]["summary"].as_str().unwrap().contains(
            ".github/workflows/opsflow.yml exists and was not generated by opsflow; move it away or set `ci.output` to another file"
        ),
        "{ci:#}"
    );
    // Later runs leave it alone too.
    ws.run(&["run"]);
    assert_eq!(ws.read_string(".github/workflows/opsflow.yml"), mine);

    // The file opsflow writes says so on its first line, which is how it knows its own.
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let ours = ws.read_string(".github/workflows/opsflow.yml");
    assert!(ours.lines().next().unwrap().contains("opsflow"), "the first line says who wrote it:\n{ours}");
}

#[test]
fn a_release_with_a_file_missing_or_one_not_in_sha256sums_is_not_deployed() {
    for (case, change) in [
        (
            "missing",
            &(|ws: &Workspace| std::fs::remove_file(ws.join(&format!("{RELEASE}/style.css"))).unwrap())
                as &dyn Fn(&Workspace),
        ),
        ("unlisted", &|ws: &Workspace| ws.write(&format!("{RELEASE}/extra.js"), "alert(1)\n")),
    ] {
        let ws = Workspace::new().sample();
        ws.run(&["run"]).status(3);
        change(&ws);
        approve(&ws, "alice");
        ws.run(&["run"]).status(1);
        let production = task(&ws.tasks(), "DEVOPS-007").clone();
        assert_eq!(production["status"], "failed", "{case}: {production:#}");
        let summary = production["outcome"]["summary"].as_str().unwrap();
        let named = if case == "missing" { "style.css" } else { "extra.js" };
        assert!(summary.contains(named), "{case}: {summary}");
        assert!(!ws.join(".opsflow/envs/production/active").exists(), "{case}: production was deployed");
    }
}

#[test]
fn a_variable_named_in_config_secrets_is_masked_whatever_its_name() {
    let ws = Workspace::new().sample();
    let secret = "plain-name-secret-4f9a27";
    edit_json(&ws, CONFIG, |c| {
        c["secrets"] = json!(["DEPLOY_TOKEN", "SHOP_CREDENTIAL"]);
        c["environments"]["staging"]["smoke_tests"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "echo-credential", "command": "echo \"credential=$SHOP_CREDENTIAL\"; exit 3"}));
    });
    let run = ws.command(&["run"]).env("SHOP_CREDENTIAL", secret).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", String::from_utf8_lossy(&run.stdout));
    let staging = task(&ws.tasks(), "DEVOPS-006").clone();
    let log = ws.read_string(staging["outcome"]["log"].as_str().unwrap());
    assert!(log.contains("credential=***"), "the step's log, masked:\n{log}");
    for (path, entry) in ws.snapshot() {
        if let crate::util::Entry::File(bytes) = entry {
            assert!(!String::from_utf8_lossy(&bytes).contains(secret), "{} holds the secret", path.display());
        }
    }
    for (name, stream) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(!String::from_utf8_lossy(stream).contains(secret), "{name} shows the secret");
    }
}

#[test]
fn status_hold_in_an_approval_holds_even_with_approved_ticked() {
    for (front, body) in
        [("status: hold\napproved_by: alice\n", ""), ("status: hold\napproved_by: alice\n", "- [x] Approved\n")]
    {
        let ws = Workspace::new().sample();
        ws.run(&["run"]).status(3);
        ws.write(APPROVAL, format!("---\n{front}---\n{body}"));
        ws.run(&["run"]).status(3);
        let production = task(&ws.tasks(), "DEVOPS-007").clone();
        assert_eq!(production["status"], "blocked", "{front}{body}");
        assert!(production["blocked_reason"].as_str().unwrap().contains("on hold"), "{front}{body}: {production:#}");
        assert!(!ws.join(".opsflow/envs/production/active").exists(), "{front}{body}: production shipped");
    }
}

/// The sample with one owned task entry that breaks the schema (an invalid input, exit 2).
fn with_an_invalid_owned_entry(ws: &Workspace) {
    edit_json(ws, TASKS, |t| {
        t["tasks"].as_array_mut().unwrap().push(json!({
            "id": "DEVOPS-200", "title": "Broken", "agent": "DevOps-Engineer",
            "type": "deployment_staging", "status": "pending", "priority": "urgent"
        }));
    });
}

#[test]
fn exit_codes_take_precedence_failed_then_invalid_then_waiting_and_run_json_says_why() {
    // Waiting only: 3.
    let ws = Workspace::new().sample();
    let waiting = ws.run(&["run", "--json"]);
    waiting.status(3);
    let report = waiting.json();
    assert_eq!(report["problems"], json!([]), "{report:#}");
    assert!(report["blocked"].as_array().unwrap().iter().any(|b| b["task"] == "DEVOPS-007"), "{report:#}");
    assert!(report["ran"].as_array().unwrap().iter().any(|r| r["task"] == "DEVOPS-006"), "{report:#}");

    // Waiting and an invalid input: 2.
    let ws = Workspace::new().sample();
    with_an_invalid_owned_entry(&ws);
    let invalid = ws.run(&["run", "--json"]);
    invalid.status(2);
    let report = invalid.json();
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p.to_string().contains("/tasks/12/priority")),
        "the problem names the entry: {report:#}"
    );
    assert!(report["blocked"].as_array().unwrap().iter().any(|b| b["task"] == "DEVOPS-007"), "{report:#}");

    // Waiting, an invalid input and a failed node: 1.
    let ws = Workspace::new().sample();
    with_an_invalid_owned_entry(&ws);
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["staging"]["smoke_tests"] = json!([{"name": "fails", "command": "exit 7"}]);
    });
    let failed = ws.run(&["run", "--json"]);
    failed.status(1);
    let report = failed.json();
    assert!(
        report["ran"].as_array().unwrap().iter().any(|r| r["task"] == "DEVOPS-006" && r["outcome"] == "failed"),
        "{report:#}"
    );
    assert!(!report["problems"].as_array().unwrap().is_empty(), "{report:#}");
}
