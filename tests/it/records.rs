//! Records that keep telling the truth off the happy path: one human request per task and
//! cause, a second failure that is not resolved the moment it is raised, a hold that names who
//! held, a ticked item whose label is its first line.

use serde_json::json;

use crate::engine::{APPROVAL, CONFIG, REQUESTS, edit_json, status_of};
use crate::faults::Immutable;
use crate::util::{Workspace, task};

/// The number of entries opsflow wrote in `human-requests.md`, and how many are resolved.
fn entries(ws: &Workspace) -> (usize, usize) {
    let text = ws.read_string(REQUESTS);
    (text.matches("<!-- opsflow:request ").count(), text.matches("- **Resolved:** ").count())
}

#[test]
fn a_reworded_block_reason_updates_its_entry_instead_of_opening_another() {
    // Each change in a block reason's wording resolved one entry and opened another: four
    // entries for one approval.
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    assert_eq!(entries(&ws), (1, 0));
    // Half an approval: the reason is reworded ("approved_by is empty"), the cause is the same.
    let text = ws.read_string(APPROVAL);
    ws.write(APPROVAL, text.replacen("status: \"pending\"", "status: \"approved\"", 1));
    ws.run(&["run"]).status(3);
    let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("`approved_by` is empty"), "{reason}");
    assert_eq!(entries(&ws), (1, 0), "{}", ws.read_string(REQUESTS));
    let requests = ws.read_string(REQUESTS);
    assert!(requests.contains("- **Updated:** "), "{requests}");
    assert!(requests.contains("`approved_by` is empty"), "the entry says what is wrong now:\n{requests}");
    // Notes a person wrote under the entry stay when it is updated.
    ws.write(REQUESTS, format!("{requests}\nNote from bob: alice approves after lunch.\n"));
    let text = ws.read_string(APPROVAL);
    ws.write(APPROVAL, text.replacen("approved_by: null", "approved_by: \"mallory\"", 1));
    ws.run(&["run"]).status(3);
    let requests = ws.read_string(REQUESTS);
    assert_eq!(entries(&ws), (1, 0), "{requests}");
    assert!(requests.contains("Note from bob: alice approves after lunch."), "{requests}");
    assert!(requests.contains("`mallory`, who is not in devops.approvers"), "{requests}");
    // Answered: the one entry is resolved, naming who approved.
    let text = ws.read_string(APPROVAL);
    ws.write(APPROVAL, text.replacen("approved_by: \"mallory\"", "approved_by: \"alice\"", 1));
    ws.run(&["run"]).status(0);
    assert_eq!(entries(&ws), (1, 1));
    assert!(ws.read_string(REQUESTS).contains("by alice"), "{}", ws.read_string(REQUESTS));
}

#[test]
fn a_second_failure_is_not_resolved_the_moment_it_is_raised() {
    // The new CRITICAL entry carried at once the `Resolved:` line of the earlier failure's
    // `resolved_by`.
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |config| {
        config["environments"]["production"]["health_checks"] = json!([{"name": "never", "command": "false"}]);
    });
    ws.run(&["run"]).status(3);
    crate::engine::approve(&ws, "alice");
    ws.run(&["run"]).status(1);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "failed");
    let status = ws.run(&["status"]).stdout();
    assert!(status.contains("open fix task: FIX-DEVOPS-007 (`pending`, for DEVOPS-007)"), "{status}");
    assert!(status.contains("next: waits for fix task FIX-DEVOPS-007"), "{status}");
    let (open, resolved) = entries(&ws);
    ws.run(&["tasks", "update", "DEVOPS-007", "--set", "resolved_by=alice"]).status(0);
    ws.run(&["run"]).status(0);
    assert_eq!(entries(&ws), (open, resolved + 1), "resolved_by answers the failure");
    // Tried again, it fails again: a new entry, open.
    ws.run(&["tasks", "update", "DEVOPS-007", "--set", "status=pending"]).status(0);
    ws.run(&["run"]).status(1);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "failed");
    let after = task(&ws.tasks(), "DEVOPS-007").clone();
    assert!(after.get("resolved_by").is_none(), "the earlier answer does not answer this failure: {after}");
    let requests = ws.read_string(REQUESTS);
    let last = requests.rsplit("<!-- opsflow:request ").next().unwrap();
    assert!(last.contains("**Severity:** CRITICAL"), "{last}");
    assert!(!last.contains("- **Resolved:** "), "the new failure's entry is open:\n{last}");
}

#[test]
fn a_ticked_hold_with_a_note_under_it_holds_and_names_who_held() {
    // `- [x] Hold` followed by a note on the next line was read as the item "HoldHolding: ..."
    // and not as a hold, and no record said who held.
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let text = ws.read_string(APPROVAL);
    let held = text
        .replacen("status: \"pending\"", "status: \"approved\"\nheld_by: \"bob\"", 1)
        .replacen("approved_by: null", "approved_by: \"alice\"", 1)
        .replacen("- [ ] Hold", "- [x] Hold\n  Holding: the payment provider is down", 1);
    assert_ne!(held, text);
    ws.write(APPROVAL, held);
    ws.run(&["run"]).status(3);
    let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("on hold by bob"), "{reason}");
    assert!(!ws.join(".opsflow/envs/production/active").exists(), "nothing shipped");
    // `status` says what is held and what lifts the hold.
    let status = ws.run(&["status"]).stdout();
    assert!(status.contains("held: UNIT-001 1.0.0 (task DEVOPS-007)"), "{status}");
    assert!(status.contains("next: held: remove the hold in docs/workflow/artifacts/R12-prod-approval.md"), "{status}");
}

#[test]
fn status_right_after_init_says_what_to_do_first() {
    let ws = Workspace::new();
    ws.run(&["init"]).status(0);
    let status = ws.run(&["status"]);
    status.status(0);
    let out = status.stdout();
    assert!(out.contains("(none): add the first with `opsflow tasks add"), "{out}");
    assert!(out.contains("staging: nothing is live"), "{out}");
}

#[test]
fn a_cancelled_task_shows_nothing_it_once_waited_for() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    ws.run(&["tasks", "update", "DEVOPS-007", "--set", "status=cancelled"]).status(0);
    let status = ws.run(&["status"]).stdout();
    let line = status.lines().skip_while(|l| !l.contains("DEVOPS-007")).take(3).collect::<Vec<_>>().join("\n");
    assert!(line.contains("cancelled"), "{line}");
    assert!(!line.contains("blocked:"), "no stale block reason for a cancelled task:\n{line}");
}

#[test]
fn r16_reports_when_each_measurement_really_started_and_a_period_that_ran_long() {
    // With a 200 ms interval and a metrics command that takes 350 ms, R16 listed samples at
    // 0, 200, 400 ... ms, the plan, while they started at 0, 358, 715 ... ms.
    let ws = crate::life::life_workspace();
    edit_json(&ws, CONFIG, |config| {
        let metrics = &mut config["environments"]["production"]["metrics"];
        let command = metrics["command"].as_str().unwrap().to_owned();
        metrics["command"] = json!(format!("sleep 0.35; {command}"));
    });
    assert_eq!(crate::life::step(&ws).0, 3);
    crate::life::approve(&ws, &crate::life::approval_file(&ws, "UNIT-001", "1.0.0"));
    let (code, summary) = crate::life::step(&ws);
    assert_eq!(code, 0, "{summary}");
    let r16 = ws.read_string("docs/workflow/artifacts/R16-health-check.md");
    assert!(r16.contains("longer than planned"), "{r16}");
    let starts: Vec<u64> = r16
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| started"))
        .filter_map(|l| l.split('|').nth(1).and_then(|c| c.trim().parse().ok()))
        .collect();
    assert!(starts.len() >= 2, "{r16}");
    assert!(starts[1] >= 350, "the second measurement started after the first one's 350 ms: {starts:?}\n{r16}");
    let took: Vec<u64> = r16
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| started"))
        .filter_map(|l| l.split('|').nth(2).and_then(|c| c.trim().parse().ok()))
        .collect();
    assert!(took.iter().all(|t| *t >= 350), "each measurement took the command's 350 ms: {took:?}");
}

#[test]
fn a_claim_an_immutable_tasks_file_refuses_is_audited_and_put_in_front_of_a_human() {
    // A claim refused because tasks.json is read-only or immutable left no audit line and no
    // human request, and the daemon waited in silence.
    let ws = Workspace::new().sample();
    let Some(_immutable) = Immutable::set(ws.join(crate::util::TASKS)) else { return };
    let run = ws.run(&["run"]);
    run.status(1);
    assert!(run.stderr().contains("cannot claim DEVOPS-001"), "{}", run.stderr());
    let audit = ws.read_string(".opsflow/audit.jsonl");
    assert!(audit.contains("\"claim_refused\""), "{audit}");
    let requests = ws.read_string(REQUESTS);
    assert!(requests.contains("refused the claim of `DEVOPS-001`"), "{requests}");
    // Once, however often it is tried.
    ws.run(&["run"]).status(1);
    assert_eq!(ws.read_string(REQUESTS).matches("refused the claim of `DEVOPS-001`").count(), 1);
}

#[test]
fn another_units_qa_report_in_the_plain_file_does_not_revoke_a_releases_verdict() {
    // A `qa-test-report.json` that QA wrote for another unit re-blocked a unit that waited
    // only for its approval ("there is no qa-test-report.json for this unit").
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let plain = "ARTIFACTS/qa-engineer/qa-test-report.json";
    let mut other: serde_json::Value = serde_json::from_str(&ws.read_string(plain)).unwrap();
    other["unit_id"] = json!("UNIT-002");
    other["version"] = json!("2.0.0");
    ws.write(plain, other.to_string());
    ws.run(&["run"]).status(3);
    let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("human approval: "), "only the approval holds it: {reason}");
    crate::engine::approve(&ws, "alice");
    ws.run(&["run"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
}
