//! The decision commands as a person drives them: `approve`, `hold`, `promote`, `abort`,
//! `retry` and `next` on the sample workspace, each writing the file a person would edit,
//! every refusal (exit 2, stderr saying why, no file changed), and a decision left to a
//! running daemon.

use serde_json::{Value, json};

use crate::daemon::{DEADLINE, Daemon};
use crate::engine::{APPROVAL, edit_json, files, json_file, status_of};
use crate::metrics::{Mode, TestApp};
use crate::rollout::{calls, paused_at_10_percent};
use crate::util::{Workspace, task, wait_until};

const R17: &str = "docs/workflow/artifacts/R17-rollback-decision.md";
const TASKS: &str = "docs/workflow/tasks.json";

/// The sample run up to the production approval.
fn waiting_for_approval() -> Workspace {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "blocked");
    ws
}

/// The audit log's entries.
fn audit(ws: &Workspace) -> Vec<Value> {
    ws.read_string(".opsflow/audit.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `text` with the front matter line of each key replaced by `key: value`, by hand.
fn decided(text: &str, lines: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        match lines.iter().find(|(key, _)| line.starts_with(&format!("{key}:"))) {
            Some((key, value)) if !out.contains(&format!("\n{key}:")) => out.push_str(&format!("{key}: {value}\n")),
            _ => out.push_str(line),
        }
    }
    out
}

/// Runs `args`, expects it refused with `says` on stderr, and no file changed.
#[track_caller]
fn refused(ws: &Workspace, args: &[&str], says: &str) {
    let before = files(ws);
    let run = ws.run(args);
    run.status(2);
    assert!(run.stderr().contains(says), "`{}` says {says:?}:\n{}", args.join(" "), run.stderr());
    assert!(files(ws) == before, "a refused `{}` changed the workspace", args.join(" "));
}

#[test]
fn next_names_the_approval_and_approve_ships_it_changing_only_its_own_lines() {
    let ws = waiting_for_approval();
    let next = ws.run(&["next"]);
    next.status(0);
    assert!(
        next.stdout().contains("DEVOPS-007: approve in docs/workflow/artifacts/R12-prod-approval.md"),
        "{}",
        next.stdout()
    );
    assert!(next.stdout().contains("opsflow approve UNIT-001 1.0.0 --as NAME"), "{}", next.stdout());
    let next = ws.run(&["next", "--json"]);
    next.status(0);
    assert_eq!(next.json()["command"], "opsflow approve UNIT-001 1.0.0 --as NAME");
    assert_eq!(next.json()["task"], "DEVOPS-007");

    let before = ws.read_string(APPROVAL);
    let run = ws.run(&["approve", "UNIT-001", "1.0.0", "--as", "alice", "--note", "release notes read"]);
    run.status(0);
    assert!(run.stdout().contains("DEVOPS-007") && run.stdout().contains("deployed"), "{}", run.stdout());
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");

    // Byte for byte: the two edited lines in place, two added before the closing `---`.
    let after = ws.read_string(APPROVAL);
    let old: Vec<&str> = before.split_inclusive('\n').collect();
    let new: Vec<&str> = after.split_inclusive('\n').collect();
    assert_eq!(old[1], "status: \"pending\"\n");
    assert_eq!(old[2], "approved_by: null\n");
    assert_eq!(new[1], "status: \"approved\"\n");
    assert_eq!(new[2], "approved_by: \"alice\"\n");
    let close = old.iter().skip(1).position(|l| *l == "---\n").unwrap() + 1;
    assert_eq!(new[..1], old[..1]);
    assert_eq!(new[3..close], old[3..close], "the other front matter lines stay");
    assert!(
        new[close].starts_with("approved_at: \"") && crate::util::is_rfc3339_utc(&new[close][14..34]),
        "{}",
        new[close]
    );
    assert_eq!(new[close + 1], "note: \"release notes read\"\n");
    assert_eq!(new[close + 2..].concat(), old[close..].concat(), "the body stays byte for byte");

    let approved = audit(&ws).into_iter().find(|e| e["event"] == "approved").expect("an `approved` audit entry");
    assert_eq!(approved["subject"], "DEVOPS-007");
    assert!(approved["reason"].as_str().unwrap().contains("UNIT-001 1.0.0 approved by alice"), "{approved}");
    assert_eq!(json_file(&ws, ".opsflow/envs/production/releases.json")["deployments"][0]["approved_by"], "alice");
    let nothing = ws.run(&["next"]);
    assert!(nothing.stdout().contains("nothing waits for a person"), "{}", nothing.stdout());
}

#[test]
fn hold_writes_who_and_why_and_the_release_stays_held_until_approved() {
    let ws = waiting_for_approval();
    let run = ws.run(&["hold", "--as", "demo", "--reason", "change freeze", "--json"]);
    run.status(3);
    let document = run.json();
    assert_eq!(document["decision"]["set"], json!({"status": "hold", "held_by": "demo", "reason": "change freeze"}));
    assert_eq!(document["decision"]["file"], APPROVAL);
    assert_eq!(document["decision"]["carried_out_by"], "this command");
    assert_eq!(document["run"]["blocked"][0]["task"], "DEVOPS-007", "{document}");
    let text = ws.read_string(APPROVAL);
    assert!(text.starts_with("---\nstatus: \"hold\"\napproved_by: null\n"), "{text}");
    assert!(text.contains("\nheld_by: \"demo\"\nreason: \"change freeze\"\n---\n"), "{text}");
    let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("on hold by demo"), "{reason}");
    let next = ws.run(&["next"]);
    assert!(next.stdout().contains("held: remove the hold"), "{}", next.stdout());
    assert!(next.stdout().contains("opsflow approve UNIT-001 1.0.0 --as NAME"), "{}", next.stdout());

    ws.run(&["approve", "--as", "alice"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
}

#[test]
fn approve_and_hold_refuse_what_they_cannot_answer_and_write_nothing() {
    let fresh = Workspace::new().sample();
    refused(&fresh, &["approve", "--as", "alice"], "no release waits for an approval");

    let ws = waiting_for_approval();
    refused(
        &ws,
        &["approve", "--as", "mallory"],
        "`mallory` may not approve: not one of devops.approvers (alice, demo)",
    );
    refused(&ws, &["hold", "--as", "mallory", "--reason", "x"], "not one of devops.approvers (alice, demo)");
    refused(
        &ws,
        &["approve", "UNIT-002", "--as", "alice"],
        "UNIT-002 waits for no approval; waiting: UNIT-001 1.0.0 (task DEVOPS-007)",
    );
    refused(&ws, &["approve", "UNIT-001", "2.0.0", "--as", "alice"], "UNIT-001 2.0.0 waits for no approval");

    // The file at the release's place is another release's.
    let request = ws.read_string(APPROVAL);
    ws.write(APPROVAL, request.replacen("version: \"1.0.0\"", "version: \"0.9.0\"", 1));
    refused(&ws, &["approve", "--as", "alice"], "R12-prod-approval.md is for UNIT-001 0.9.0, not UNIT-001 1.0.0");
    // No request at all.
    std::fs::remove_file(ws.join(APPROVAL)).unwrap();
    refused(&ws, &["approve", "--as", "alice"], "there is no approval request for UNIT-001 1.0.0");
    ws.write(APPROVAL, &request);

    // A ticked Hold wins over `status: approved`: approving would change nothing.
    ws.write(APPROVAL, request.replacen("- [ ] Hold", "- [x] Hold", 1));
    refused(&ws, &["approve", "--as", "alice"], "has `Hold` ticked");
    ws.write(APPROVAL, &request);

    // Two releases wait: one must be named.
    edit_json(&ws, TASKS, |tasks| {
        let mut second = task(tasks["tasks"].as_array().unwrap(), "DEVOPS-007").clone();
        second["id"] = json!("DEVOPS-107");
        second["unit_id"] = json!("UNIT-002");
        second["version"] = json!("2.0.0");
        second["depends_on"] = json!([]);
        tasks["tasks"].as_array_mut().unwrap().push(second);
    });
    refused(
        &ws,
        &["approve", "--as", "alice"],
        "several releases wait for an approval (UNIT-001 1.0.0 (task DEVOPS-007), UNIT-002 2.0.0 (task DEVOPS-107)); name one",
    );
    refused(&ws, &["hold", "--as", "alice", "--reason", "x"], "name one: `opsflow hold UNIT VERSION`");
    let run = ws.run(&["approve", "UNIT-001", "--as", "alice", "--json"]);
    assert_eq!(run.json()["decision"]["task"], "DEVOPS-007", "{}", run.stderr());
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
}

#[test]
fn a_paused_rollout_is_aborted_or_promoted_from_the_command_line() {
    let app = TestApp::start(Mode::Healthy);
    let ws = paused_at_10_percent(&app);
    let next = ws.run(&["next"]);
    assert!(next.stdout().contains("opsflow promote production --as NAME"), "{}", next.stdout());
    refused(&ws, &["promote", "production", "--as", "mallory"], "`mallory` may not promote");
    refused(&ws, &["promote", "staging", "--as", "alice"], "nothing is paused in staging");
    refused(&ws, &["abort", "nowhere", "--reason", "x"], "there is no environment `nowhere`");

    let before = ws.read_string(R17);
    let pause_id = before.lines().find_map(|l| l.strip_prefix("pause_id: ")).unwrap().to_owned();
    ws.write(R17, before.replacen(&pause_id, "\"an-earlier-pause\"", 1));
    refused(&ws, &["abort", "production", "--reason", "x"], "asks about an earlier pause (an-earlier-pause)");
    ws.write(R17, &before);
    let run = ws.run(&["abort", "production", "--as", "bob", "--reason", "no metrics, no risk"]);
    run.status(1);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "rolled_back", "{}", run.stdout());
    assert_eq!(calls(&ws)[3..], ["set_weight 0", "rollback", "migrate_down"]);
    assert_eq!(
        ws.read_string(R17),
        decided(
            &before,
            &[("decision", "\"rollback\""), ("decided_by", "\"bob\""), ("reason", "\"no metrics, no risk\"")]
        ),
        "R17 keeps every byte but the three decided lines"
    );
    let aborted = audit(&ws).into_iter().find(|e| e["event"] == "aborted").expect("an `aborted` audit entry");
    assert!(aborted["reason"].as_str().unwrap().contains("by bob: no metrics, no risk"), "{aborted}");
    refused(&ws, &["abort", "production", "--reason", "again"], "nothing is paused in production");
}

#[test]
fn promote_lets_a_paused_canary_go_on_and_edits_only_the_decision_lines() {
    let app = TestApp::start(Mode::Healthy);
    let ws = paused_at_10_percent(&app);
    let before = ws.read_string(R17);
    std::fs::write(ws.join("app-mode"), "healthy").unwrap();
    let run = ws.run(&["promote", "production", "--as", "alice", "--reason", "metrics are back"]);
    run.status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed", "{}", run.stdout());
    assert_eq!(calls(&ws)[3..], ["set_weight 50", "set_weight 100", "promote 100"]);
    assert_eq!(
        ws.read_string(R17),
        decided(
            &before,
            &[("decision", "\"proceed\""), ("decided_by", "\"alice\""), ("reason", "\"metrics are back\"")]
        ),
        "R17 keeps every byte but the three decided lines"
    );
    let promoted = audit(&ws).into_iter().find(|e| e["event"] == "promoted").expect("a `promoted` audit entry");
    assert!(promoted["reason"].as_str().unwrap().contains("proceed the rollout of UNIT-001 1.0.0"), "{promoted}");
}

#[test]
fn retry_puts_a_failed_task_back_and_refuses_a_failed_deployment_of_a_built_release() {
    let ws = Workspace::new().sample();
    edit_json(&ws, TASKS, |tasks| {
        let list = tasks["tasks"].as_array_mut().unwrap();
        let design = list.iter_mut().find(|t| t["id"] == "DEVOPS-001").unwrap();
        design["status"] = json!("failed");
    });
    let next = ws.run(&["next", "--json"]);
    assert_eq!(next.json()["command"], "opsflow retry DEVOPS-001");
    refused(
        &ws,
        &["retry", "DEVOPS-002", "--as", "alice"],
        "task `DEVOPS-002` is `pending`: only a failed or blocked task can be retried",
    );
    refused(&ws, &["retry", "NOPE-1"], "no task `NOPE-1` owned by DevOps-Engineer");
    let run = ws.run(&["retry", "DEVOPS-001", "--as", "alice"]);
    run.status(3);
    let design = task(&ws.tasks(), "DEVOPS-001").clone();
    assert_eq!(design["status"], "done", "{}", run.stdout());
    assert_eq!(design["retried_by"], "alice");

    edit_json(&ws, TASKS, |tasks| {
        let list = tasks["tasks"].as_array_mut().unwrap();
        list.iter_mut().find(|t| t["id"] == "DEVOPS-006").unwrap()["status"] = json!("failed");
    });
    refused(&ws, &["retry", "DEVOPS-006"], "a built release cannot change: ship a new version");
}

#[test]
fn with_a_daemon_running_approve_writes_the_file_and_the_daemon_carries_it_out() {
    let ws = waiting_for_approval();
    let mut daemon = Daemon::start(&ws, &[], false);
    let run = ws.run(&["approve", "--as", "alice", "--json"]);
    run.status(0);
    assert!(run.stderr().contains("another opsflow runner for agent DevOps-Engineer"), "{}", run.stderr());
    assert!(run.stderr().contains("it carries out the decision"), "{}", run.stderr());
    assert_eq!(run.json()["decision"]["carried_out_by"], "the daemon");
    wait_until(DEADLINE, "the daemon to deploy the approved release", || status_of(&ws, "DEVOPS-007") == "deployed");
    let status = daemon.terminate(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
}

#[test]
fn a_retried_blocked_task_moves_only_its_own_entry_and_is_blocked_again_by_the_same_gate() {
    let ws = waiting_for_approval();
    let before = ws.read_string(TASKS);
    let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].clone();
    let run = ws.run(&["retry", "DEVOPS-007", "--as", "alice"]);
    run.status(3);
    let after = ws.read_string(TASKS);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "blocked", "{}", run.stdout());
    assert_eq!(production["blocked_reason"], reason, "the gate gives the same reason again");
    assert_eq!(production["retried_by"], "alice");
    // Every byte before DEVOPS-007's entry and after it is as it was.
    let (start, end) = (
        |text: &str| text.find("\"id\": \"DEVOPS-007\"").unwrap(),
        |text: &str| text.find("\"id\": \"DEVOPS-008\"").unwrap(),
    );
    assert_eq!(after[..start(&after)], before[..start(&before)]);
    assert_eq!(after[end(&after)..], before[end(&before)..]);
    let retried = audit(&ws).into_iter().find(|e| e["event"] == "retried").expect("a `retried` audit entry");
    assert!(retried["reason"].as_str().unwrap().contains("DEVOPS-007 was `blocked`; retried by alice"), "{retried}");
}
