//! One test per rule of a release's records: inputs found by their front matter, the QA
//! version, ticked boxes, tags, who approved, configuration gaps, optional inputs, and
//! reports that say what did not run.

use serde_json::json;

use crate::engine::{APPROVAL, CONFIG, approve, edit_json, json_file, status_of};
use crate::util::{Workspace, task};

const R04: &str = "docs/workflow/artifacts/R04-merge-result.md";

fn blocked_reason(ws: &Workspace, id: &str) -> String {
    task(&ws.tasks(), id)["blocked_reason"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn an_input_of_another_release_is_named_as_theirs_not_missing() {
    let ws = Workspace::new().sample();
    let r04 = ws.read_string(R04).replace("unit_id: UNIT-001", "unit_id: UNIT-7").replace("1.0.0", "1.4.0");
    ws.write(R04, r04);
    ws.run(&["run"]).status(3);
    let reason = blocked_reason(&ws, "DEVOPS-005");
    assert!(reason.contains("R04-merge-result.md is for UNIT-7 1.4.0, not UNIT-001 1.0.0"), "{reason}");
    assert!(!reason.contains("missing"), "{reason}");
}

#[test]
fn a_missing_input_names_who_writes_it() {
    let ws = Workspace::new().sample();
    std::fs::remove_file(ws.join(R04)).unwrap();
    ws.run(&["run"]).status(3);
    let reason = blocked_reason(&ws, "DEVOPS-005");
    assert!(reason.contains("R04-merge-result.md is missing (written by the agent that merges the code"), "{reason}");
}

#[test]
fn qa_must_have_approved_the_version_that_deploys() {
    let ws = Workspace::new().sample();
    edit_json(&ws, crate::util::TASKS, |tasks| {
        for t in tasks["tasks"].as_array_mut().unwrap() {
            if t["version"] == "1.0.0" && t["agent"] == "DevOps-Engineer" {
                t["version"] = json!("9.9.9");
            }
        }
    });
    let r04 = ws.read_string(R04).replace("version: 1.0.0", "version: 9.9.9");
    ws.write(R04, r04);
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-005"), "done");
    assert_eq!(status_of(&ws, "DEVOPS-006"), "blocked");
    let reason = blocked_reason(&ws, "DEVOPS-006");
    assert!(reason.contains("QA/QA-Report-UNIT-001.md is for version 1.0.0, not 9.9.9"), "{reason}");
    assert!(!ws.join(".opsflow/envs/staging/current").exists(), "staging deployed an unapproved version");
}

#[test]
fn versions_with_a_leading_v_are_the_same_release_and_tag_once() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| c["release"]["git_tag"] = json!(true));
    edit_json(&ws, crate::util::TASKS, |tasks| {
        for t in tasks["tasks"].as_array_mut().unwrap() {
            if t["version"] == "1.0.0" && t["agent"] == "DevOps-Engineer" {
                t["version"] = json!("v1.0.0");
            }
        }
    });
    let git = |args: &[&str]| crate::util::git(ws.path(), args);
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "sample"]);
    let run = ws
        .command(&["run"])
        .env("GIT_COMMITTER_NAME", "opsflow")
        .env("GIT_COMMITTER_EMAIL", "o@example.com")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "{}", String::from_utf8_lossy(&run.stdout));
    // QA approved `1.0.0`; the tasks say `v1.0.0`: the same release.
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed");
    assert_eq!(git(&["tag", "--list"]).trim(), "v1.0.0");
    assert!(ws.join("docs/workflow/artifacts/R06-release-artifacts/UNIT-001/1.0.0/SHA256SUMS").is_file());
}

#[test]
fn ticked_boxes_other_than_approved_do_not_approve_and_status_says_why() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let request = ws.read_string(APPROVAL);
    let edited = request
        .replacen("approved_by: null", "approved_by: \"alice\"", 1)
        .replace("- [ ] Approved", "- [x] Approved: NO, wait for Monday\n- [x] Approve");
    ws.write(APPROVAL, edited);
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "blocked");
    let status = ws.run(&["status"]).stdout();
    assert!(status.contains("ticked \"Approved: NO, wait for Monday\" is not an approval"), "{status}");

    // Approved and "On hold" ticked together: hold wins.
    let held = ws
        .read_string(APPROVAL)
        .replace("- [x] Approved: NO, wait for Monday\n- [x] Approve", "- [x] Approved")
        .replace("- [ ] Hold", "- [x] On hold");
    ws.write(APPROVAL, held);
    ws.run(&["run"]).status(3);
    assert!(blocked_reason(&ws, "DEVOPS-007").contains("on hold"), "{}", blocked_reason(&ws, "DEVOPS-007"));
    assert!(!ws.join(".opsflow/envs/production/active").exists());
}

#[test]
fn a_request_as_opsflow_wrote_it_never_approves_even_from_a_ticked_template() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| c["devops"]["approvers"] = json!([]));
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/R12-prod-approval.md.hbs"))
        .unwrap()
        .replace("- [ ] Approved", "- [x] Approved");
    ws.write("templates/R12-prod-approval.md.hbs", template);
    ws.run(&["run"]).status(3);
    assert!(ws.read_string(APPROVAL).contains("- [x] Approved"));
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "blocked");
    assert!(blocked_reason(&ws, "DEVOPS-007").contains("is the request as opsflow wrote it"));
    assert!(!ws.join(".opsflow/envs/production/active").exists());
}

#[test]
fn who_approved_is_recorded_in_every_record_of_the_release() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    ws.run(&["run"]).status(0);
    let r13 = ws.read_string("docs/workflow/artifacts/R13-prod-deploy.md");
    assert!(r13.contains("approved_by: \"alice\""), "{r13}");
    let deploy = ws.read_string("docs/workflow/deployments/Deploy-UNIT-001.md");
    assert!(deploy.contains("approved_by: \"alice\""), "{deploy}");
    let report = json_file(&ws, "ARTIFACTS/devops-engineer/deployment-report.json");
    assert_eq!(report["approved_by"], "alice");
    let audit = ws.read_string(".opsflow/audit.jsonl");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"claimed\"") && l.contains("DEVOPS-007") && l.contains("approved_by: alice")),
        "{audit}"
    );
    // The approval as signed is kept with the release.
    let kept = ws.read_string("docs/workflow/releases/UNIT-001/1.0.0/approved-R12-prod-approval.md");
    assert!(kept.contains("approved_by: \"alice\""));
}

#[test]
fn a_config_gap_blocks_with_the_key_and_files_no_fix_task() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c.as_object_mut().unwrap().remove("release");
    });
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-005"), "blocked");
    assert!(blocked_reason(&ws, "DEVOPS-005").contains("`release.artifacts` is not set in project-config.json"));
    assert!(!ws.tasks().iter().any(|t| t["id"].as_str().unwrap().starts_with("FIX-")), "a fix task was filed");
}

#[test]
fn nodes_without_a_unit_write_signals_that_validate() {
    let ws = Workspace::new().sample();
    edit_json(&ws, crate::util::TASKS, |tasks| {
        for t in tasks["tasks"].as_array_mut().unwrap() {
            if t["id"] == "DEVOPS-001" {
                t.as_object_mut().unwrap().remove("unit_id");
            }
        }
    });
    // The environment design has no unit; a failing staging setup then writes a signal.
    edit_json(&ws, CONFIG, |c| c["environments"]["staging"]["commands"] = json!({"provision": "exit 7"}));
    edit_json(&ws, crate::util::TASKS, |tasks| {
        for t in tasks["tasks"].as_array_mut().unwrap() {
            if t["id"] == "DEVOPS-004" {
                t.as_object_mut().unwrap().remove("unit_id");
            }
        }
    });
    ws.run(&["run"]).status(1);
    assert_eq!(status_of(&ws, "DEVOPS-004"), "failed");
    let signal = json_file(&ws, "ARTIFACTS/system/stage-completion-signal.json");
    assert_eq!((signal["status"].as_str(), signal["unit_id"].is_null()), (Some("failed"), true), "{signal}");
    let validate = ws.run(&["validate"]);
    assert!(!validate.stdout().contains("stage-completion-signal"), "{}", validate.stdout());
}

#[test]
fn feedback_runs_without_a_release_candidate_and_a_finished_workspace_exits_0() {
    let ws = Workspace::new().sample();
    std::fs::remove_file(ws.join("docs/workflow/artifacts/D21-release-candidate.md")).unwrap();
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    ws.run(&["run"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-009"), "done");
    let d22 = ws.read_string("docs/workflow/artifacts/D22-deployed-product.md");
    assert!(d22.contains("D21-release-candidate.md"), "D22 does not say it ran without D21:\n{d22}");
    ws.run(&["run"]).status(0);
}

#[test]
fn the_report_says_what_did_not_run_and_names_the_strategy_once() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        let production = &mut c["environments"]["production"];
        production["strategy"] = json!("recreate");
        production["health_checks"] = json!([{"name": "never", "command": "exit 1"}]);
    });
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    ws.run(&["run"]).status(1);
    let report = json_file(&ws, "ARTIFACTS/devops-engineer/deployment-report.json");
    assert_eq!(report["deployment_summary"]["status"], "failed");
    assert_eq!(report["smoke_tests"]["status"], "not_run", "{report}");
    assert_eq!(report["database_migrations"]["status"], "skipped", "{report}");
    let method = report["deployment_summary"]["deployment_method"].as_str().unwrap().to_owned();
    let r13 = ws.read_string("docs/workflow/artifacts/R13-prod-deploy.md");
    assert!(
        r13.contains(&format!("(local, {method})")),
        "R13 names another strategy than the report ({method}):\n{r13}"
    );
}

/// A production deploy that waits until the test lets it finish, started in the background.
fn deploy_held_open() -> (Workspace, std::process::Child) {
    let ws = crate::rollout::approved_for_production(json!({
        "provider": "command",
        "strategy": "direct",
        "commands": {
            "deploy": "touch \"$OPSFLOW_WORKSPACE/deploying\"; while [ ! -f \"$OPSFLOW_WORKSPACE/go\" ]; do sleep 0.05; done",
            "rollback": "true",
        },
        "health_checks": [{"name": "up", "command": "true"}],
    }));
    let child =
        ws.command(&["run"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    crate::util::wait_until(std::time::Duration::from_secs(60), "the deploy to start", || {
        ws.join("deploying").exists()
    });
    (ws, child)
}

/// Replaces the entry of `id` in tasks.json with `entry`, as `git stash` or `git checkout`
/// of another branch would; returns the entry that was there.
fn swap_entry(ws: &Workspace, id: &str, entry: serde_json::Value) -> serde_json::Value {
    let mut old = serde_json::Value::Null;
    edit_json(ws, crate::util::TASKS, |tasks| {
        for t in tasks["tasks"].as_array_mut().unwrap() {
            if t["id"] == id {
                old = std::mem::replace(t, entry.clone());
            }
        }
    });
    old
}

#[test]
fn an_outcome_lands_only_on_the_entry_that_carries_its_claim_and_waits_for_it_to_come_back() {
    // After `git checkout` mid-deploy, the outcome landed on another branch's task with the
    // same id (another release, blocked by a human), overwriting the human's block.
    let (ws, mut child) = deploy_held_open();
    let claimed = task(&ws.tasks(), "DEVOPS-007").clone();
    let run_id = claimed["run_id"].as_str().unwrap().to_owned();
    let mut theirs = claimed.clone();
    theirs["status"] = json!("blocked");
    theirs["version"] = json!("9.9.9");
    theirs["blocked_reason"] = json!("held by dana: the other branch's release waits for legal");
    for key in ["run_id", "claimed_at", "claimed_by", "claimed_on"] {
        theirs.as_object_mut().unwrap().remove(key);
    }
    swap_entry(&ws, "DEVOPS-007", theirs.clone());
    ws.write("go", "");
    let status = crate::util::wait_for_exit(&mut child, std::time::Duration::from_secs(60), "the run");
    // The record is not where it belongs: the run fails (exit 1), whatever the deploy did.
    assert_eq!(status.code(), Some(1));
    assert_eq!(task(&ws.tasks(), "DEVOPS-007"), &theirs, "the other branch's entry is untouched");
    let kept: serde_json::Value = json_file(&ws, &format!(".opsflow/runs/{run_id}/outcome.json"));
    assert_eq!(kept["outcome"]["status"], "deployed", "{kept}");
    assert!(kept["why"].as_str().unwrap().contains("does not carry this run's claim"), "{kept}");
    assert!(ws.read_string(crate::engine::REQUESTS).contains(&format!("`run_id: {run_id}`")));

    // While it waits, the task does not run again, and the run says why.
    let waiting = ws.run(&["run"]);
    waiting.status(3);
    assert!(waiting.stdout().contains("is kept in"), "{}", waiting.stdout());
    assert_eq!(task(&ws.tasks(), "DEVOPS-007"), &theirs);

    // The branch is checked out again: the entry with the claim is back, and gets its outcome.
    swap_entry(&ws, "DEVOPS-007", claimed);
    ws.run(&["run"]).status(0);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "deployed", "{production}");
    assert_eq!(production["outcome"]["run_id"], run_id.as_str(), "{production}");
    let kept: serde_json::Value = json_file(&ws, &format!(".opsflow/runs/{run_id}/outcome.json"));
    assert!(kept["applied_at"].is_string(), "{kept}");
    assert!(ws.read_string(".opsflow/audit.jsonl").contains("\"outcome_applied\""));
    assert!(
        !ws.read_string(".opsflow/audit.jsonl").contains("interrupted"),
        "a finished run is never called interrupted"
    );
}

#[test]
fn a_finished_run_whose_outcome_was_kept_is_recorded_on_restart_not_called_interrupted() {
    // When tasks.json could not take the outcome, the task stayed `in_progress`; on restart
    // the run became `failed: interrupted`, with a fix task and a CRITICAL escalation, while
    // the release was live and good.
    let (ws, mut child) = deploy_held_open();
    let claimed = task(&ws.tasks(), "DEVOPS-007").clone();
    let run_id = claimed["run_id"].as_str().unwrap().to_owned();
    // The entry goes away for the end of the run (a `git reset --hard` to the commit
    // before the task was added), then comes back with the claim (the commit with it).
    let tasks = ws.read_string(crate::util::TASKS);
    edit_json(&ws, crate::util::TASKS, |tasks| {
        tasks["tasks"].as_array_mut().unwrap().retain(|t| t["id"] != "DEVOPS-007");
    });
    ws.write("go", "");
    let status = crate::util::wait_for_exit(&mut child, std::time::Duration::from_secs(60), "the run");
    assert_eq!(status.code(), Some(1));
    ws.write(crate::util::TASKS, tasks);
    assert_eq!(task(&ws.tasks(), "DEVOPS-007")["status"], "in_progress");
    ws.run(&["run"]).status(0);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "deployed", "{production}");
    assert!(!ws.tasks().iter().any(|t| t["id"] == "FIX-DEVOPS-007"), "no fix task for a run that finished");
    assert!(!ws.read_string(crate::engine::REQUESTS).contains("interrupted"));
    let _ = run_id;
}

#[test]
fn an_outcome_whose_task_is_gone_is_kept_and_put_in_front_of_a_human() {
    let (ws, mut child) = deploy_held_open();
    let run_id = task(&ws.tasks(), "DEVOPS-007")["run_id"].as_str().unwrap().to_owned();
    edit_json(&ws, crate::util::TASKS, |tasks| {
        tasks["tasks"].as_array_mut().unwrap().retain(|t| t["id"] != "DEVOPS-007" && t["id"] != "DEVOPS-008");
    });
    ws.write("go", "");
    let status = crate::util::wait_for_exit(&mut child, std::time::Duration::from_secs(60), "the run");
    // The record is not where it belongs: the run fails (exit 1), whatever the deploy did.
    assert_eq!(status.code(), Some(1));
    let kept: serde_json::Value =
        serde_json::from_slice(&ws.read(&format!(".opsflow/runs/{run_id}/outcome.json"))).unwrap();
    assert_eq!((kept["task"].as_str(), kept["outcome"]["status"].as_str()), (Some("DEVOPS-007"), Some("deployed")));
    let requests = ws.read_string(crate::engine::REQUESTS);
    assert!(requests.contains(&format!(".opsflow/runs/{run_id}/outcome.json")), "{requests}");
}

// What broke: rewriting a release file and its SHA256SUMS together deployed the tampered
// bytes, though R07 had recorded the original digest.
#[test]
fn a_release_rewritten_with_its_sha256sums_is_refused() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let dir = "docs/workflow/artifacts/R06-release-artifacts/UNIT-001/1.0.0";
    let tampered = "<h1>tampered</h1>\n";
    ws.write(&format!("{dir}/index.html"), tampered);
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(tampered.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let sums: String = ws
        .read_string(&format!("{dir}/SHA256SUMS"))
        .lines()
        .map(
            |line| if line.ends_with("  index.html") { format!("{digest}  index.html\n") } else { format!("{line}\n") },
        )
        .collect();
    ws.write(&format!("{dir}/SHA256SUMS"), sums);
    approve(&ws, "alice");
    ws.run(&["run"]).status(1);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "failed");
    let outcome = task(&ws.tasks(), "DEVOPS-007")["outcome"].clone();
    assert_eq!(outcome["failed_step"], "checksums", "{outcome}");
    assert!(outcome["summary"].as_str().unwrap().contains("is not the one the release was built with"), "{outcome}");
    assert!(!ws.join(".opsflow/envs/production/active").exists(), "the tampered release was deployed");
}

#[test]
fn an_approval_changed_to_hold_while_the_release_is_checked_stops_it_before_the_switch() {
    // The approval is read again right before traffic moves: a Hold written while the idle
    // slot was being checked keeps the release out.
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["production"]["preview_checks"] = json!([{"name": "slow", "command":
            "touch \"$OPSFLOW_WORKSPACE/previewing\"; while [ ! -f \"$OPSFLOW_WORKSPACE/go\" ]; do sleep 0.05; done"}]);
    });
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    let mut child =
        ws.command(&["run"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    crate::util::wait_until(std::time::Duration::from_secs(60), "the idle slot's check to start", || {
        ws.join("previewing").exists()
    });
    let held = ws.read_string(APPROVAL).replacen("- [ ] Hold", "- [x] Hold", 1);
    ws.write(APPROVAL, held);
    ws.write("go", "");
    let status = crate::util::wait_for_exit(&mut child, std::time::Duration::from_secs(60), "the run");
    assert_eq!(status.code(), Some(3));
    assert!(!ws.join(".opsflow/envs/production/active").exists(), "the release was not switched in");
    let audit = ws.read_string(".opsflow/audit.jsonl");
    assert!(audit.contains("changed before the switch and no longer lets the release through"), "{audit}");
    // The next pass reads the gate again: it waits, on hold.
    let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("on hold by alice"), "{reason}");
}

#[test]
fn a_history_copy_that_cannot_be_written_after_the_switch_leaves_the_release_recorded_as_what_it_is() {
    // With the release's history folder made a symlink out of the workspace (a pushed commit),
    // production stayed switched to the new release, its record said good, the task said
    // failed at `history` with a fix task filed, and no verification ran.
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    let outside = tempfile::tempdir().unwrap();
    let history = ws.join("docs/workflow/releases/UNIT-001/1.0.0");
    std::fs::remove_dir_all(&history).unwrap();
    std::os::unix::fs::symlink(outside.path(), &history).unwrap();
    let run = ws.run(&["run"]);
    // The records it could not write fail the run, and say which.
    run.status(1);
    assert!(run.stderr().contains("releases/UNIT-001/1.0.0"), "{}", run.stderr());
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "deployed", "{production}");
    assert!(
        !ws.tasks().iter().any(|t| t["id"] == "FIX-DEVOPS-007"),
        "no fix task for a release that is live and verified"
    );
    assert!(ws.join(".opsflow/envs/production/active").exists());
    assert!(ws.read_string("docs/workflow/artifacts/R15-verification-result.md").contains("status: \"success\""));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing was written outside the workspace");
}
