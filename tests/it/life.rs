//! A project's life on one workspace: many units and releases, approvals per release,
//! a release undone by its verification, human rollbacks (`opsflow rollback` and an R17), a
//! hotfix, and twenty more releases, with `run` after every step and every record checked.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::engine::{CONFIG, REQUESTS, edit_json, files, json_file, status_of};
use crate::util::{Workspace, task};

pub(crate) const ARTIFACTS: &str = "docs/workflow/artifacts";
const REPORT: &str = "ARTIFACTS/devops-engineer/deployment-report.json";
const SIGNAL: &str = "ARTIFACTS/system/stage-completion-signal.json";
const LIVE: &str = ".opsflow/envs/production/current";

/// The sample workspace with production as a local `recreate` environment (it keeps every
/// release, so rollbacks have somewhere to go), a short monitoring period, and metrics read
/// from the live release's own `metrics.json`, so a release can carry its own error rate.
pub(crate) fn life_workspace() -> Workspace {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |config| {
        // Each build is of its own release, as if from its own commit.
        config["release"]["build"] = json!(
            "rm -rf dist && mkdir dist && cp app/style.css dist/ && \
             printf '<h1>Acme Shop</h1><p>%s %s</p>\\n' \"$OPSFLOW_UNIT_ID\" \"$OPSFLOW_VERSION\" > dist/index.html && \
             { cp \"app/metrics-$OPSFLOW_UNIT_ID-$OPSFLOW_VERSION.json\" dist/metrics.json 2>/dev/null || true; }"
        );
        config["devops"]["monitoring_period"] = json!("600ms");
        config["devops"]["monitoring_interval"] = json!("200ms");
        let production = &mut config["environments"]["production"];
        production["strategy"] = json!("recreate");
        production["keep_releases"] = json!(4);
        production["health_checks"] = json!([{"name": "index-present", "command": "test -f index.html"}]);
        production["smoke_tests"] = json!([{"name": "homepage-title", "command": "grep -q 'Acme Shop' index.html"}]);
        production["metrics"] = json!({
            "command": "cat .opsflow/envs/production/current/metrics.json 2>/dev/null || echo '{\"error_rate\": 0.1, \"latency_p95_ms\": 40, \"latency_p99_ms\": 70}'",
            "error_rate": "/error_rate",
            "latency_p95_ms": "/latency_p95_ms",
        });
    });
    ws
}

/// What other agents write for a new release: the app, QA's reports, the merge result, and
/// the three DevOps tasks (build, staging, production).
pub(crate) fn new_release(ws: &Workspace, unit: &str, version: &str, error_rate: f64) -> [String; 3] {
    ws.write(
        &format!("app/metrics-{unit}-{version}.json"),
        json!({"error_rate": error_rate, "latency_p95_ms": 40, "latency_p99_ms": 70}).to_string(),
    );
    let sample_md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/QA/QA-Report-UNIT-001.md")).unwrap();
    let md = sample_md.replace("UNIT-001", unit).replace("1.0.0", version);
    ws.write(&format!("QA/QA-Report-{unit}-{version}.md"), md);
    let mut qa: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ARTIFACTS/qa-engineer/qa-test-report.json"))
            .unwrap(),
    )
    .unwrap();
    qa["unit_id"] = json!(unit);
    qa["version"] = json!(version);
    ws.write(&format!("ARTIFACTS/qa-engineer/qa-test-report-{unit}-{version}.json"), qa.to_string());
    ws.write(
        &format!("{ARTIFACTS}/R04-merge-result-{unit}-{version}.md"),
        format!("---\nnode: Merge_Code\nagent: Code-Reviewer\nunit_id: {unit}\nversion: \"{version}\"\nstatus: completed\n---\n\n# R04 Merge result\n"),
    );
    let ids = [format!("B-{unit}-{version}"), format!("S-{unit}-{version}"), format!("P-{unit}-{version}")];
    edit_json(ws, crate::util::TASKS, |tasks| {
        let list = tasks["tasks"].as_array_mut().unwrap();
        let entry = |id: &str, kind: &str, depends: Option<&str>| {
            let mut t = json!({"id": id, "title": format!("{kind} {unit} {version}"), "agent": "DevOps-Engineer",
                "type": kind, "status": "pending", "priority": "high", "unit_id": unit, "version": version});
            if let Some(dep) = depends {
                t["depends_on"] = json!([dep]);
            }
            t
        };
        list.push(entry(&ids[0], "release_build", None));
        list.push(entry(&ids[1], "deployment_staging", Some(&ids[0])));
        list.push(entry(&ids[2], "deployment_production", Some(&ids[1])));
    });
    ids
}

/// Runs `opsflow run --json` and checks that `tasks.json` changed only in the entries the run
/// reports (ran, blocked) and the ones it appended; returns the exit code and the summary.
pub(crate) fn step(ws: &Workspace) -> (i32, Value) {
    let before: BTreeMap<String, Value> =
        ws.tasks().into_iter().map(|t| (t["id"].as_str().unwrap().to_owned(), t)).collect();
    let run = ws.run(&["run", "--json"]);
    let summary = run.json();
    let mut touched: Vec<String> = Vec::new();
    for key in ["ran", "blocked"] {
        for entry in summary[key].as_array().into_iter().flatten() {
            touched.push(entry["task"].as_str().unwrap().to_owned());
        }
    }
    let rolled_back: Vec<String> = ws
        .tasks()
        .iter()
        .filter(|t| t.get("rolled_back").is_some())
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    for after in ws.tasks() {
        let id = after["id"].as_str().unwrap().to_owned();
        match before.get(&id) {
            Some(old) if *old != after => assert!(
                touched.contains(&id) || rolled_back.contains(&id),
                "{id} changed though the run did not act on it:\nbefore {old}\nafter {after}\nrun {summary}"
            ),
            _ => {}
        }
    }
    (run.code().unwrap(), summary)
}

pub(crate) fn approval_file(ws: &Workspace, unit: &str, version: &str) -> String {
    // Every approval request names exactly one release in its front matter.
    let mut found = Vec::new();
    for name in ws.list_dir(ARTIFACTS) {
        if !name.starts_with("R12-prod-approval") {
            continue;
        }
        let text = ws.read_string(&format!("{ARTIFACTS}/{name}"));
        if text.contains(&format!("unit_id: \"{unit}\"\n")) && text.contains(&format!("version: \"{version}\"\n")) {
            found.push(format!("{ARTIFACTS}/{name}"));
        }
    }
    assert_eq!(found.len(), 1, "one approval request for {unit} {version}: {found:?}");
    found.remove(0)
}

pub(crate) fn approve(ws: &Workspace, file: &str) {
    let text = ws.read_string(file);
    let signed = text.replacen("status: \"pending\"", "status: \"approved\"", 1).replacen(
        "approved_by: null",
        "approved_by: \"alice\"",
        1,
    );
    assert_ne!(signed, text);
    ws.write(file, signed);
}

pub(crate) fn live_index(ws: &Workspace) -> String {
    std::fs::read_to_string(ws.join(&format!("{LIVE}/index.html"))).unwrap_or_default()
}

pub(crate) fn ship(ws: &Workspace, unit: &str, version: &str) {
    let ids = new_release(ws, unit, version, 0.1);
    let (code, summary) = step(ws);
    assert_eq!(code, 3, "{summary}");
    assert_eq!(status_of(ws, &ids[1]), "deployed", "{summary}");
    approve(ws, &approval_file(ws, unit, version));
    let (code, summary) = step(ws);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(status_of(ws, &ids[2]), "deployed", "{summary}");
    assert!(live_index(ws).contains(&format!("{unit} {version}")), "{}", live_index(ws));
}

#[test]
fn a_project_ships_many_releases_and_every_record_stays_true() {
    let ws = life_workspace();
    // UNIT-001 1.0.0, the sample's own release.
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    let (code, summary) = step(&ws);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");

    // Two releases side by side: a second unit and a new version of the first.
    let u2 = new_release(&ws, "UNIT-002", "1.0.0", 0.1);
    let u1 = new_release(&ws, "UNIT-001", "1.1.0", 0.1);
    let (code, summary) = step(&ws);
    assert_eq!(code, 3, "{summary}");
    for ids in [&u2, &u1] {
        assert_eq!(status_of(&ws, &ids[0]), "done", "{summary}");
        assert_eq!(status_of(&ws, &ids[1]), "deployed", "{summary}");
        assert_eq!(status_of(&ws, &ids[2]), "blocked", "{summary}");
    }
    // Each waits on its own request, named by its exact path everywhere a human looks.
    let request_u2 = approval_file(&ws, "UNIT-002", "1.0.0");
    let request_u1 = approval_file(&ws, "UNIT-001", "1.1.0");
    assert_ne!(request_u1, request_u2);
    for (ids, request) in [(&u2, &request_u2), (&u1, &request_u1)] {
        let reason = task(&ws.tasks(), &ids[2])["blocked_reason"].as_str().unwrap().to_owned();
        assert!(reason.contains(request.as_str()), "{reason}");
        assert!(ws.read_string(REQUESTS).contains(request.as_str()));
        let status = ws.run(&["status"]).stdout();
        assert!(status.contains(request.as_str()), "{status}");
    }
    // The request as opsflow wrote it never counts, and running again changes nothing.
    let before = files(&ws);
    assert_eq!(step(&ws).0, 3);
    assert_eq!(files(&ws), before);

    // Approving one ships only that one.
    approve(&ws, &request_u2);
    let (code, summary) = step(&ws);
    assert_eq!(code, 3, "{summary}");
    assert_eq!(status_of(&ws, &u2[2]), "deployed");
    assert_eq!(status_of(&ws, &u1[2]), "blocked");
    assert!(live_index(&ws).contains("UNIT-002 1.0.0"), "{}\n{summary}", live_index(&ws));
    let report = json_file(&ws, REPORT);
    assert_eq!((report["unit_id"].as_str(), report["approved_by"].as_str()), (Some("UNIT-002"), Some("alice")));
    approve(&ws, &request_u1);
    let (code, summary) = step(&ws);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(status_of(&ws, &u1[2]), "deployed");
    assert!(live_index(&ws).contains("UNIT-001 1.1.0"));

    // A release whose verification fails is undone: the previous one serves again.
    let bad = new_release(&ws, "UNIT-002", "1.1.0", 50.0);
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-002", "1.1.0"));
    let (code, summary) = step(&ws);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(status_of(&ws, &bad[2]), "rolled_back");
    assert!(live_index(&ws).contains("UNIT-001 1.1.0"), "{}", live_index(&ws));
    assert_eq!(json_file(&ws, REPORT)["deployment_summary"]["status"], "rolled_back");
    // Task-Coder fixes it; until then UNIT-002's production deployments wait.
    ws.run(&["tasks", "update", &format!("FIX-{}", bad[2]), "--set", "status=done"]).status(0);

    // A human rolls production back: UNIT-001 1.1.0 is undone, UNIT-002 1.0.0 serves.
    // The plain reports are UNIT-002 1.1.0's (the newest deploy): they are not UNIT-001's to
    // render again, and stay as they are.
    let plain_reports = ["docs/workflow/artifacts/R13-prod-deploy.md", REPORT];
    let before: Vec<String> = plain_reports.iter().map(|f| ws.read_string(f)).collect();
    assert!(before[0].contains("unit_id: \"UNIT-002\"") && before[0].contains("version: \"1.1.0\""), "{}", before[0]);
    let rollback = ws.run(&["rollback", "production", "--reason", "checkout is slow"]);
    assert_eq!(rollback.code(), Some(0), "{}\n{}", rollback.stdout(), rollback.stderr());
    assert!(live_index(&ws).contains("UNIT-002 1.0.0"), "{}", live_index(&ws));
    assert_eq!(status_of(&ws, &u1[2]), "rolled_back");
    let deploy_md = ws.read_string("docs/workflow/deployments/Deploy-UNIT-001.md");
    assert!(deploy_md.contains("status: \"rolled_back\""), "{deploy_md}");
    let after: Vec<String> = plain_reports.iter().map(|f| ws.read_string(f)).collect();
    assert_eq!(after, before, "another release's plain reports were rewritten");
    // The undone release's production reports in its history say so too, once each.
    for report in
        ["R13-prod-deploy.md", "R14-monitoring-active.md", "R15-verification-result.md", "R16-health-check.md"]
    {
        let text = ws.read_string(&format!("docs/workflow/releases/UNIT-001/1.1.0/{report}"));
        assert!(text.contains("status: \"rolled_back\""), "{report}: {text}");
        assert_eq!(text.matches("## Rolled back").count(), 1, "{report}: {text}");
        assert!(text.contains("checkout is slow") && text.contains("UNIT-002 1.0.0"), "{report}: {text}");
    }
    let signal = json_file(&ws, SIGNAL);
    assert_eq!((signal["status"].as_str(), signal["unit_id"].as_str()), (Some("failed"), Some("UNIT-001")));
    assert!(signal["message"].as_str().unwrap().contains("rolled back"), "{signal}");

    // Later a human asks again in an R17: UNIT-002 1.0.0 is undone, UNIT-001 1.0.0 serves.
    ws.write(
        &format!("{ARTIFACTS}/R17-rollback-decision.md"),
        "---\ndecision: rollback\nreason: \"search is broken\"\nunit_id: UNIT-002\nversion: \"1.0.0\"\ndecided_by: alice\n---\n\nRoll back.\n",
    );
    let (code, summary) = step(&ws);
    assert_eq!(code, 0, "{summary}");
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"), "{}", live_index(&ws));
    assert_eq!(status_of(&ws, &u2[2]), "rolled_back");
    let report = json_file(&ws, REPORT);
    if report["unit_id"] == "UNIT-002" && report["version"] == "1.0.0" {
        assert_eq!(report["deployment_summary"]["status"], "rolled_back");
        assert!(!report["next_steps"].to_string().contains("monitoring passed"), "{report}");
    }
    let history_report: Value =
        serde_json::from_slice(&ws.read("docs/workflow/releases/UNIT-002/1.0.0/deployment-report.json")).unwrap();
    assert_eq!(history_report["deployment_summary"]["status"], "rolled_back");

    // A hotfix ships after the rollbacks, then twenty more releases follow.
    ship(&ws, "UNIT-001", "1.1.1");
    for n in 0..20 {
        let unit = if n % 2 == 0 { "UNIT-001" } else { "UNIT-002" };
        ship(&ws, unit, &format!("2.{n}.0"));
    }

    // Every task ended where it should.
    for t in ws.tasks() {
        let id = t["id"].as_str().unwrap();
        let expected = match id {
            _ if id == bad[2] || id == u1[2] || id == u2[2] => "rolled_back",
            _ if id.starts_with("P-") || id.starts_with("S-") || id == "DEVOPS-006" || id == "DEVOPS-007" => "deployed",
            _ if id.starts_with("B-") || id.starts_with("DEVOPS-") || id.starts_with("ROLLBACK-") => "done",
            _ if id.starts_with("FIX-") => "done",
            _ => continue,
        };
        assert_eq!(t["status"], expected, "{t}");
    }
    // Every release's history holds its records.
    for t in ws.tasks().iter().filter(|t| t["id"].as_str().unwrap().starts_with("P-")) {
        if t["status"] != "deployed" {
            continue;
        }
        let dir =
            format!("docs/workflow/releases/{}/{}", t["unit_id"].as_str().unwrap(), t["version"].as_str().unwrap());
        let names = ws.list_dir(&dir);
        for name in [
            "R07-version-tag.md",
            "R08-staging-deploy.md",
            "R12-prod-approval.md",
            "R13-prod-deploy.md",
            "R15-verification-result.md",
            "deployment-report.json",
        ] {
            assert!(names.iter().any(|n| n == name), "{dir} lacks {name}: {names:?}");
        }
        assert!(names.iter().any(|n| n.starts_with("Deploy-")), "{dir}: {names:?}");
    }
    ws.run(&["validate"]).status(0);
    // Nothing pending: the last run exits 0 and writes nothing.
    let before = files(&ws);
    assert_eq!(step(&ws).0, 0);
    assert_eq!(files(&ws), before);
}

/// Commits everything in the workspace as `message` (the project's code moving on).
fn commit(ws: &Workspace, message: &str) {
    crate::util::git(ws.path(), &["add", "-A"]);
    crate::util::git(ws.path(), &["commit", "-qm", message]);
}

#[test]
fn a_project_life_off_the_happy_path_keeps_every_record_true() {
    // Three units interleaved on one git workspace: a held release approved after another
    // unit shipped (blocked by the commit check, then let through on purpose), a paused
    // rollout a person lets proceed, a refused rollback and a human one; after every step
    // every report agrees with the environment's record and with what is live.
    let ws = life_workspace();
    crate::util::git(ws.path(), &["init", "-q"]);
    commit(&ws, "the shop");
    let agree = crate::environments::assert_records_agree;
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    assert_eq!(step(&ws).0, 0);
    agree(&ws);

    // UNIT-002 1.1.0 is built and waits; meanwhile UNIT-003 moves the code on and ships.
    let held = new_release(&ws, "UNIT-002", "1.1.0", 0.1);
    assert_eq!(step(&ws).0, 3);
    ws.write("app/search.html", "<p>search</p>\n");
    commit(&ws, "UNIT-003: search");
    let third = new_release(&ws, "UNIT-003", "1.0.0", 0.1);
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-003", "1.0.0"));
    assert_eq!(step(&ws).0, 3, "UNIT-002 still waits");
    assert_eq!(status_of(&ws, &third[2]), "deployed");
    agree(&ws);

    // Approving the held, older build does not ship it: it lacks UNIT-003's change.
    let request = approval_file(&ws, "UNIT-002", "1.1.0");
    approve(&ws, &request);
    assert_eq!(step(&ws).0, 3);
    let reason = task(&ws.tasks(), &held[2])["blocked_reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("would remove the shipped changes of UNIT-003"), "{reason}");
    agree(&ws);
    let text = ws.read_string(&request);
    ws.write(&request, text.replacen("approved_by: \"alice\"", "approved_by: \"alice\"\nallow_revert: true", 1));
    assert_eq!(step(&ws).0, 0);
    assert!(live_index(&ws).contains("UNIT-002 1.1.0"));
    agree(&ws);

    // A release whose figures cannot be read pauses; a person lets it proceed.
    commit(&ws, "UNIT-001: checkout on top of everything");
    let paused = new_release(&ws, "UNIT-001", "1.2.0", 0.1);
    ws.write("app/metrics-UNIT-001-1.2.0.json", "{}");
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.2.0"));
    assert_eq!(step(&ws).0, 3);
    let reason = task(&ws.tasks(), &paused[2])["blocked_reason"].as_str().unwrap().to_owned();
    let r17 = reason.split("decide in ").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    crate::rollout::decide_in(&ws, &r17, "proceed", "alice", "the dashboard is fine");
    assert_eq!(step(&ws).0, 0);
    assert_eq!(status_of(&ws, &paused[2]), "deployed");
    agree(&ws);

    // A rollback to a release that is not kept is refused; one that is kept is carried out.
    ws.run(&["rollback", "production", "--to", "0.0.9"]).status(2);
    agree(&ws);
    ws.run(&["rollback", "production", "--to", "1.1.0", "--reason", "checkout is slow"]).status(0);
    assert!(live_index(&ws).contains("UNIT-002 1.1.0"), "{}", live_index(&ws));
    assert_eq!(status_of(&ws, &paused[2]), "rolled_back");
    agree(&ws);
    let history = ws.run(&["history", "production"]).stdout();
    for release in ["UNIT-001 1.0.0", "UNIT-003 1.0.0", "UNIT-002 1.1.0", "UNIT-001 1.2.0"] {
        assert!(history.contains(release), "{release} in the history:\n{history}");
    }
    assert!(history.contains("removed UNIT-003 1.0.0 on purpose (allow_revert)"), "{history}");
    ws.run(&["validate"]).status(0);
}

/// Old run folders go once more than opsflow keeps are there, and what a person asks of the
/// workspace (its history, its status, what recovery finds) says the same afterwards.
#[test]
fn old_run_folders_go_and_history_and_status_say_the_same() {
    let ws = life_workspace();
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    assert_eq!(step(&ws).0, 0);
    let real = ws.list_dir(".opsflow/runs");
    // Runs from long ago, finished and recorded, more than the folder keeps.
    for n in 0..300 {
        let run = format!("20200101T{n:06}Z-0a0b0c");
        ws.write(&format!(".opsflow/runs/{run}/build.log"), "built\n");
        ws.write(
            &format!(".opsflow/runs/{run}/outcome.json"),
            json!({"task": "OLD", "node": "Build_Release", "run_id": run, "outcome": {"status": "done"},
                   "applied_at": "2020-01-01T00:00:00Z"})
            .to_string(),
        );
    }
    let history = ws.run(&["history", "production"]).stdout();
    let status = ws.run(&["status"]).stdout();
    // A run that changes nothing removes the oldest folders.
    assert_eq!(step(&ws).0, 0);
    let left = ws.list_dir(".opsflow/runs");
    assert!(left.len() < real.len() + 300, "{} folders", left.len());
    assert!(real.iter().all(|run| left.contains(run)), "the newest runs stay: {left:?}");
    assert_eq!(ws.run(&["history", "production"]).stdout(), history);
    assert_eq!(ws.run(&["status"]).stdout(), status);
    ws.run(&["validate"]).status(0);
}
