//! Deploy windows, wait timers and locks, driven through the real binary on the sample
//! workspace with a fixed clock (`OPSFLOW_NOW`): a deploy outside its window or before its
//! wait timer ran out waits (exit 3) with a reason that says until when, and runs once the
//! time comes; a lock holds deploys but not rollbacks; the daemon starts a deploy when its
//! window opens, with no file event.

use serde_json::Value;

use crate::daemon::{DEADLINE, Daemon};
use crate::engine::{APPROVAL, CONFIG, approve, edit_json, json_file, status_of};
use crate::util::{Run, Workspace, task, wait_until};

const RECORD: &str = ".opsflow/envs/production/releases.json";

/// The sample with `settings` added to its production environment.
fn sample_with(settings: Value) -> Workspace {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |config| {
        let production = config["environments"]["production"].as_object_mut().unwrap();
        for (key, value) in settings.as_object().unwrap() {
            production.insert(key.clone(), value.clone());
        }
    });
    ws
}

/// `opsflow ARGS` with the clock at `now`.
fn at(ws: &Workspace, now: &str, args: &[&str]) -> Run {
    ws.run_with(args, &[("OPSFLOW_NOW", now)])
}

fn reason(ws: &Workspace, id: &str) -> String {
    task(&ws.tasks(), id)["blocked_reason"].as_str().unwrap_or_default().to_owned()
}

fn events(ws: &Workspace, kind: &str) -> Vec<Value> {
    let record = json_file(ws, RECORD);
    record["events"].as_array().unwrap().iter().filter(|e| e["event"] == kind).cloned().collect()
}

const OFFICE_HOURS: &str = "Mon-Fri 09:00-16:00 Europe/Berlin";
// 2026-12-07 is a Monday; nine in Berlin (CET) is 08:00 UTC.
const CLOSED: &str =
    "deploy window: Mon-Fri 09:00-16:00 Europe/Berlin (closed now, opens 2026-12-07 09:00 CET (2026-12-07 08:00 UTC))";

#[test]
fn a_deploy_outside_its_window_waits_saying_when_it_opens_and_runs_inside_it() {
    let ws = sample_with(serde_json::json!({ "deploy_window": OFFICE_HOURS }));
    at(&ws, "2026-12-07T07:00:00Z", &["run"]).status(3);
    // The approval request says when the deploy may start.
    let request = ws.read_string(APPROVAL);
    assert!(request.contains("When it may start, once approved:"), "{request}");
    assert!(request.contains(&format!("- {CLOSED}")), "{request}");

    approve(&ws, "alice");
    let run = at(&ws, "2026-12-07T07:59:59Z", &["run"]);
    run.status(3);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "blocked");
    assert_eq!(reason(&ws, "DEVOPS-007"), CLOSED);
    assert!(run.stdout().contains(CLOSED), "{}", run.stdout());
    // A wait only time clears asks nobody for anything, and the record says it waited.
    let waited = events(&ws, "waited");
    assert!(waited.iter().any(|e| e["detail"] == CLOSED && e["version"] == "1.0.0"), "{waited:?}");
    let status = at(&ws, "2026-12-07T07:59:59Z", &["status"]);
    assert!(status.stdout().contains(&format!("production deploy window: {}", &CLOSED[15..])), "{}", status.stdout());
    let next = at(&ws, "2026-12-07T07:59:59Z", &["next", "--json"]);
    next.status(0);
    assert_eq!(next.json()["task"], Value::Null, "{}", next.stdout());
    assert_eq!(next.json()["waiting"][0]["task"], "DEVOPS-007");
    assert_eq!(next.json()["waiting"][0]["waits_for"], CLOSED);

    at(&ws, "2026-12-07T08:00:00Z", &["run"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
}

#[test]
fn a_deploy_window_that_cannot_be_read_is_refused_naming_the_file_and_key() {
    let ws = sample_with(serde_json::json!({ "deploy_window": ["Mon-Fri 09:00-16:00 Europe/Berlin", "Sun 9-12 UTC"] }));
    let run = ws.run(&["validate"]);
    run.status(2);
    let out = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        out.contains("project-config.json:")
            && out.contains("at /environments/production/deploy_window: `environments.production.deploy_window`: `9-12` are not hours such as 09:00-16:00"),
        "{out}"
    );
    ws.run(&["run"]).status(2);
}

#[test]
fn a_wait_timer_counts_from_when_the_approval_was_seen() {
    let ws = sample_with(serde_json::json!({ "wait_timer": "10m" }));
    at(&ws, "2026-12-07T10:00:00Z", &["run"]).status(3);
    assert!(ws.read_string(APPROVAL).contains("- wait timer: 10m after the approval"), "{}", ws.read_string(APPROVAL));
    approve(&ws, "alice");
    at(&ws, "2026-12-07T10:01:00Z", &["run"]).status(3);
    let waits =
        "wait timer: 10m after the approval by alice, seen at 2026-12-07T10:01:00Z: waits until 2026-12-07T10:11:00Z";
    assert_eq!(reason(&ws, "DEVOPS-007"), waits);
    // Later passes keep the first sight of the approval.
    at(&ws, "2026-12-07T10:10:59Z", &["run"]).status(3);
    assert_eq!(reason(&ws, "DEVOPS-007"), waits);
    at(&ws, "2026-12-07T10:11:00Z", &["run"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
}

#[test]
fn a_lock_holds_deploys_but_not_rollbacks_and_unlock_lets_it_deploy() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let locked = ws.run(&["lock", "production", "--reason", "year-end freeze", "--as", "bob", "--json"]);
    locked.status(0);
    assert_eq!(locked.json()["lock"]["locked_by"], "bob");
    assert_eq!(locked.json()["lock"]["reason"], "year-end freeze");
    let lock = json_file(&ws, ".opsflow/env-locks/production.json");
    assert_eq!(lock["locked_by"], "bob");
    assert!(crate::util::is_rfc3339_utc(lock["locked_at"].as_str().unwrap()), "{lock}");
    let again = ws.run(&["lock", "production", "--reason", "twice"]);
    again.status(2);
    assert!(again.stderr().contains("production is already locked by bob"), "{}", again.stderr());

    ws.run(&["approve", "--as", "alice"]).status(3);
    let why = reason(&ws, "DEVOPS-007");
    assert!(why.starts_with("environment lock: production is locked by bob since "), "{why}");
    assert!(why.contains(": year-end freeze; `opsflow unlock production` lets deploys start again"), "{why}");
    let status = ws.run(&["status"]);
    assert!(status.stdout().contains("production is locked by bob since "), "{}", status.stdout());
    let next = ws.run(&["next", "--json"]);
    assert_eq!(next.json()["command"], "opsflow unlock production --as NAME", "{}", next.stdout());

    ws.run(&["unlock", "production", "--as", "bob"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
    assert!(!ws.join(".opsflow/env-locks/production.json").exists());
    let unlocked = ws.run(&["unlock", "production"]);
    unlocked.status(2);
    assert!(unlocked.stderr().contains("production is not locked: nothing to unlock"), "{}", unlocked.stderr());

    // A rollback still runs while the environment is locked.
    ws.run(&["lock", "production", "--reason", "incident", "--as", "bob"]).status(0);
    ws.run(&["rollback", "production", "--to", "none", "--reason", "take it down"]).status(0);
    assert_eq!(events(&ws, "rolled_back").len(), 1);
    let kinds: Vec<String> = json_file(&ws, RECORD)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().into())
        .collect();
    let order: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| ["locked", "unlocked", "deployed", "rolled_back"].contains(k))
        .collect();
    assert_eq!(order, ["locked", "unlocked", "deployed", "locked", "rolled_back"]);
    assert_eq!(events(&ws, "locked")[0]["by"], "bob");
    assert_eq!(events(&ws, "locked")[0]["detail"], "year-end freeze");
}

#[test]
fn the_daemon_starts_a_deploy_when_its_window_opens_without_a_file_event() {
    let ws = sample_with(serde_json::json!({ "deploy_window": OFFICE_HOURS }));
    at(&ws, "2026-12-07T07:59:00Z", &["run"]).status(3);
    approve(&ws, "alice");
    at(&ws, "2026-12-07T07:59:00Z", &["run"]).status(3);
    assert_eq!(reason(&ws, "DEVOPS-007"), CLOSED);
    // The clock starts three seconds before the window opens and runs on; the resync is
    // five minutes away, and no file changes after the start.
    let mut daemon = Daemon::start_with_env(&ws, &[], false, &[("OPSFLOW_NOW", "2026-12-07T07:59:57Z")]);
    wait_until(DEADLINE, "the daemon to deploy when the window opens", || status_of(&ws, "DEVOPS-007") == "deployed");
    assert!(daemon.log().contains("a waiting deploy may start at 2026-12-07T08:00:00Z"), "{}", daemon.log());
    daemon.terminate(DEADLINE);
}
