//! What runs where: the environment's record, `opsflow history`, the environments in
//! `status`, refused rollbacks, first deploys that fail, blue-green checks of the idle slot,
//! and the check that a release does not silently remove what production runs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::engine::{CONFIG, edit_json, files, status_of};
use crate::life::{approval_file, approve, life_workspace, live_index, new_release, ship, step};
use crate::util::{Workspace, git, task};

const CURRENT: &str = ".opsflow/envs/production/current";

fn history(ws: &Workspace, environment: &str) -> Value {
    let run = ws.run(&["history", environment, "--json"]);
    run.status(0);
    run.json()
}

/// A new release of `unit` through staging to its approval, approved by alice, and the run
/// that follows: the release's task ids, the run's exit code and its summary.
fn approved_release(ws: &Workspace, unit: &str, version: &str, error_rate: f64) -> ([String; 3], i32, Value) {
    let ids = new_release(ws, unit, version, error_rate);
    assert_eq!(step(ws).0, 3, "{unit} {version} waits for its approval");
    approve(ws, &approval_file(ws, unit, version));
    let (code, summary) = step(ws);
    (ids, code, summary)
}

/// The sample's own release, UNIT-001 1.0.0, shipped to production.
fn first_release_shipped() -> Workspace {
    let ws = life_workspace();
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    let (code, summary) = step(&ws);
    assert_eq!(code, 0, "{summary}");
    ws
}

#[test]
fn history_lists_every_release_newest_first_with_its_unit_and_approver() {
    let ws = first_release_shipped();
    ship(&ws, "UNIT-002", "1.0.0");
    assert_records_agree(&ws);
    let record = history(&ws, "production");
    let rows = record["deployments"].as_array().unwrap();
    let releases: Vec<&str> = rows.iter().map(|r| r["release"].as_str().unwrap()).collect();
    assert_eq!(releases, ["UNIT-002 1.0.0", "UNIT-001 1.0.0"]);
    assert_eq!(rows[0]["live"], true);
    assert_eq!(rows[0]["status"], "good");
    assert_eq!(rows[0]["approved_by"], "alice");
    assert_eq!(rows[0]["replaced"], "UNIT-001 1.0.0");
    assert_eq!(rows[0]["task"], "P-UNIT-002-1.0.0");
    assert_eq!(rows[1]["live"], false);
    assert_eq!(record["rollback_restores"], "UNIT-001 1.0.0");
    // The text form says the same, and `status` shows what is live.
    let text = ws.run(&["history", "production"]).stdout();
    assert!(text.starts_with("production: UNIT-002 1.0.0 ("), "{text}");
    assert!(text.contains("a rollback would restore UNIT-001 1.0.0"), "{text}");
    let status = ws.run(&["status"]).stdout();
    assert!(status.contains("production: UNIT-002 1.0.0 ("), "{status}");
    assert!(status.contains("approved by alice) is live"), "{status}");
    assert!(status.contains("healthy at its last check ("), "status says how the live release last checked: {status}");
    assert!(status.contains("monitoring period passed"), "{status}");
    // An environment the config does not have is named with the ones it has.
    let unknown = ws.run(&["history", "prod"]);
    unknown.status(2);
    assert!(unknown.stderr().contains("there is no environment `prod`"), "{}", unknown.stderr());
}

#[test]
fn a_refused_human_rollback_changes_nothing_and_lists_what_it_could_restore() {
    // `opsflow rollback production --to 0.1.1` for a release that is not kept used to fail
    // production: exit 1, a CRITICAL escalation, a fix task, a `failed` signal and an R18
    // saying "Restored: nothing", while a healthy release was live.
    let ws = first_release_shipped();
    ship(&ws, "UNIT-002", "1.0.0");
    let before = files(&ws);
    let refused = ws.run(&["rollback", "production", "--to", "0.1.1"]);
    refused.status(2);
    let stderr = refused.stderr();
    assert!(stderr.contains("no good release 0.1.1 is kept to roll back to in production"), "{stderr}");
    assert!(stderr.contains("it can restore UNIT-001 1.0.0 (`--to 1.0.0`)"), "{stderr}");
    assert_eq!(crate::util::changed_paths(&before, &files(&ws)), Vec::<std::path::PathBuf>::new());
    assert!(live_index(&ws).contains("UNIT-002 1.0.0"));

    // What it listed works.
    ws.run(&["rollback", "production", "--to", "1.0.0", "--reason", "checkout broke"]).status(0);
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"), "{}", live_index(&ws));
    assert_records_agree(&ws);
    let record = history(&ws, "production");
    let undone = &record["deployments"][0];
    assert_eq!(undone["release"], "UNIT-002 1.0.0");
    assert_eq!(undone["status"], "bad");
    let rolled_back = undone["rolled_back"][0].as_str().unwrap();
    assert!(rolled_back.contains("restoring UNIT-001 1.0.0"), "{rolled_back}");
    // R18 names the undone release by unit and version, and is kept in its history.
    let r18 = ws.read_string("docs/workflow/releases/UNIT-002/1.0.0/R18-rollback-result.md");
    assert!(r18.contains("- Undone: UNIT-002 1.0.0"), "{r18}");
    assert!(r18.contains("- Restored: UNIT-001 1.0.0"), "{r18}");
    assert!(!r18.contains("an escalation entry in `human-requests.md` names this rollback"), "{r18}");
    assert_eq!(status_of(&ws, "P-UNIT-002-1.0.0"), "rolled_back");

    // Nothing earlier is kept now: a plain rollback is refused, `--to none` takes it down.
    let refused = ws.run(&["rollback", "production"]);
    refused.status(2);
    assert!(refused.stderr().contains("`--to none` takes the environment down on purpose"), "{}", refused.stderr());
    let down = ws.run(&["rollback", "production", "--to", "none", "--reason", "retiring the shop"]);
    down.status(0);
    assert!(
        std::fs::symlink_metadata(ws.join(CURRENT)).is_err(),
        "nothing is live after --to none:\n{}{}",
        down.stdout(),
        ws.run(&["history", "production"]).stdout()
    );
    let text = ws.run(&["history", "production"]).stdout();
    assert!(text.starts_with("production: nothing is live"), "{text}");
    assert_records_agree(&ws);
}

#[test]
fn a_corrupt_environment_record_stops_deploys_and_rollbacks_and_is_not_overwritten() {
    let ws = first_release_shipped();
    let record = ".opsflow/envs/production/releases.json";
    let text = ws.read_string(record);
    let cut = &text[..text.len() / 2];
    ws.write(record, cut);
    let refused = ws.run(&["rollback", "production"]);
    refused.status(2);
    assert!(refused.stderr().contains("releases.json is corrupt at line"), "{}", refused.stderr());
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"), "the live release stays");
    assert_eq!(ws.read_string(record), cut, "the corrupt record is kept as it is");
    let history = ws.run(&["history", "production"]);
    history.status(2);
    // A new release waits at the production gate, naming the file.
    let ids = new_release(&ws, "UNIT-002", "1.0.0", 0.1);
    step(&ws);
    let reason = task(&ws.tasks(), &ids[2])["blocked_reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("releases.json is corrupt at line"), "{reason}");
    assert_eq!(ws.read_string(record), cut);
}

const RECORD: &str = ".opsflow/envs/production/releases.json";
const ARCHIVE: &str = ".opsflow/envs/production/releases-archive.jsonl";

/// Puts two hundred older deployments, whose directories are long gone, before those of
/// production's record.
fn seed_old_deployments(ws: &Workspace) {
    let path = RECORD;
    let mut record: Value = serde_json::from_str(&ws.read_string(path)).unwrap();
    let old: Vec<Value> = (0..200)
        .map(|i| {
            json!({"version": format!("0.0.{i}"), "unit_id": "UNIT-OLD", "dir": format!("releases/UNIT-OLD/0.0.{i}"),
                "status": if i % 7 == 0 { "bad" } else { "replaced" },
                "deployed_at": format!("2025-01-01T{:02}:{:02}:00Z", i / 60, i % 60), "run_id": format!("old-{i}"),
                "migrated": false, "commit": format!("{i:040x}")})
        })
        .collect();
    let events: Vec<Value> = old
        .iter()
        .map(|d| json!({"at": d["deployed_at"], "event": "deployed", "unit_id": "UNIT-OLD", "version": d["version"], "run_id": d["run_id"]}))
        .collect();
    let deployments = record["deployments"].as_array().unwrap().clone();
    record["deployments"] = Value::Array(old.into_iter().chain(deployments).collect());
    let newer = record["events"].as_array().unwrap().clone();
    record["events"] = Value::Array(events.into_iter().chain(newer).collect());
    ws.write(path, serde_json::to_string_pretty(&record).unwrap());
}

#[test]
fn a_long_history_is_compacted_into_an_archive_that_history_still_shows_and_rollbacks_still_work() {
    let ws = first_release_shipped();
    seed_old_deployments(&ws);
    let path = RECORD;
    ship(&ws, "UNIT-002", "1.0.0");
    // The record keeps the newest hundred; the rest went to the archive beside it, in order.
    let kept: Value = serde_json::from_str(&ws.read_string(path)).unwrap();
    let kept_runs: Vec<&str> =
        kept["deployments"].as_array().unwrap().iter().map(|d| d["run_id"].as_str().unwrap()).collect();
    assert_eq!(kept_runs.len(), 100, "{kept_runs:?}");
    assert_eq!(kept_runs[0], "old-102");
    let archive = ws.read_string(ARCHIVE);
    let archived: Vec<Value> = archive.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let archived_runs: Vec<&str> = archived.iter().filter_map(|l| l["deployment"]["run_id"].as_str()).collect();
    assert_eq!(archived_runs, (0..102).map(|i| format!("old-{i}")).collect::<Vec<_>>());
    assert_eq!(archived.iter().filter(|l| l.get("event").is_some()).count(), 102);

    // `history` shows all of it, newest first, with what is live and what a rollback restores.
    let whole = history(&ws, "production");
    let rows = whole["deployments"].as_array().unwrap();
    assert_eq!(rows.len(), 202);
    let releases: Vec<&str> = rows.iter().map(|r| r["release"].as_str().unwrap()).collect();
    assert_eq!(&releases[..3], ["UNIT-002 1.0.0", "UNIT-001 1.0.0", "UNIT-OLD 0.0.199"]);
    assert_eq!(releases[201], "UNIT-OLD 0.0.0");
    assert_eq!(rows[201]["status"], "bad");
    assert_eq!(whole["events"].as_array().unwrap().iter().filter(|e| e["unit_id"] == "UNIT-OLD").count(), 200);
    assert_eq!(whole["archive_error"], Value::Null);
    assert_eq!(whole["rollback_restores"], "UNIT-001 1.0.0");
    let text = ws.run(&["history", "production"]).stdout();
    assert!(text.contains("UNIT-OLD 0.0.0"), "{text}");
    assert_records_agree(&ws);

    // A rollback still finds the release it restores, and the record says so.
    ws.run(&["rollback", "production", "--reason", "checkout broke"]).status(0);
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"), "{}", live_index(&ws));
    assert_records_agree(&ws);

    // An archive a careless hand broke is named by `history`, which still shows the record.
    ws.write(ARCHIVE, archive.replacen("{\"deployment\"", "{deployment", 1));
    let broken = ws.run(&["history", "production", "--json"]);
    broken.status(0);
    let shown = broken.json();
    let problem = shown["archive_error"].as_str().unwrap();
    assert!(problem.contains("releases-archive.jsonl is corrupt at line 1, column 2"), "{problem}");
    assert_eq!(shown["deployments"].as_array().unwrap().len(), 100);
    let text = ws.run(&["history", "production"]);
    assert!(text.stderr().contains("warning: ") && text.stderr().contains("is corrupt at line 1"), "{}", text.stderr());
}

#[test]
fn an_archive_that_cannot_be_written_leaves_the_record_whole_and_the_release_still_ships() {
    let ws = first_release_shipped();
    seed_old_deployments(&ws);
    // Something that is not a file where the archive goes.
    std::fs::create_dir_all(ws.join(ARCHIVE)).unwrap();
    ship(&ws, "UNIT-002", "1.0.0");
    let kept: Value = serde_json::from_str(&ws.read_string(RECORD)).unwrap();
    assert_eq!(kept["deployments"].as_array().unwrap().len(), 202, "nothing left the record");
    assert_records_agree(&ws);
    let shown = ws.run(&["history", "production", "--json"]);
    shown.status(0);
    let shown = shown.json();
    assert_eq!(shown["deployments"].as_array().unwrap().len(), 202);
    assert_eq!(shown["deployments"][0]["release"], "UNIT-002 1.0.0");
    let problem = shown["archive_error"].as_str().unwrap_or_default();
    assert!(problem.contains("cannot read") && problem.contains("releases-archive.jsonl"), "{shown:#}");
}

/// A production whose health check fails for one release and passes for the others.
fn failing_first_deploy(strategy: &str) -> Workspace {
    let ws = life_workspace();
    edit_json(&ws, CONFIG, |config| {
        let production = &mut config["environments"]["production"];
        production["strategy"] = json!(strategy);
        production["health_checks"] = json!([{"name": "not-1.0.0", "command": "! grep -q '1.0.0<' index.html"}]);
    });
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    let (code, summary) = step(&ws);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(status_of(&ws, "DEVOPS-007"), "failed", "{summary}");
    ws
}

#[test]
fn a_first_deploy_that_fails_leaves_nothing_live_and_the_next_release_deploys() {
    // With `recreate`, a first production deploy that failed its health check left
    // `current` on the bad release, and every later release was blocked ("no good release
    // is kept to roll back to") until a person removed the link.
    for (strategy, link) in [("recreate", "current"), ("blue-green", "active")] {
        let ws = failing_first_deploy(strategy);
        let live = format!(".opsflow/envs/production/{link}");
        assert!(
            std::fs::symlink_metadata(ws.join(&live)).is_err(),
            "{strategy}: nothing is live after a failed first deploy"
        );
        let record = history(&ws, "production");
        assert_eq!(record["deployments"][0]["status"], "bad", "{strategy}: {record}");
        assert_eq!(record["live"], Value::Null, "{strategy}");

        let ids = new_release(&ws, "UNIT-002", "1.0.1", 0.1);
        let (code, summary) = step(&ws);
        assert_eq!(code, 3, "{strategy}: {summary}");
        approve(&ws, &approval_file(&ws, "UNIT-002", "1.0.1"));
        let (code, summary) = step(&ws);
        assert_eq!(code, 0, "{strategy}: {summary}");
        assert_eq!(status_of(&ws, &ids[2]), "deployed", "{strategy}: {summary}");
        let index = std::fs::read_to_string(ws.join(&format!("{live}/index.html"))).unwrap();
        assert!(index.contains("UNIT-002 1.0.1"), "{strategy}: {index}");
    }
}

/// A real HTTP server on loopback serving `dir` (which may not exist yet).
struct FileServer {
    child: Child,
    url: String,
}

impl FileServer {
    fn start(dir: &std::path::Path) -> FileServer {
        let script = "import functools, http.server, sys\n\
                      handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
                      server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)\n\
                      print(server.server_address[1], flush=True)\n\
                      server.serve_forever()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("a port, got {line:?}"));
        FileServer { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_blue_green_http_check_reaches_the_idle_slot_through_its_slot_url() {
    // An `http` health check of a blue-green environment probed whatever was live, so a
    // first deploy could never pass it, and a later one checked the old release.
    let ws = life_workspace();
    let slots = ws.join(".opsflow/envs/production/slots");
    let blue = FileServer::start(&slots.join("blue"));
    let green = FileServer::start(&slots.join("green"));
    edit_json(&ws, CONFIG, |config| {
        let production = &mut config["environments"]["production"];
        production["strategy"] = json!("blue-green");
        production["slot_urls"] = json!({"blue": blue.url, "green": green.url});
        production["health_checks"] = json!([{"name": "home", "http": "{slot_url}/index.html",
            "expect_body_contains": "Acme Shop"}]);
        // The preview check looks for this release in the idle slot's page.
        production["preview_checks"] = json!([{"name": "new-release", "http": "{slot_url}/index.html",
            "expect_body_contains": "UNIT-001 1.0.0"}]);
    });
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    let (code, summary) = step(&ws);
    assert_eq!(code, 0, "the first blue-green deploy passes its http check: {summary}");
    assert_eq!(std::fs::read_link(ws.join(".opsflow/envs/production/active")).unwrap().to_string_lossy(), "slots/blue");

    // The next release goes to green, and the preview check reads green (blue still serves
    // UNIT-001 1.0.0, so only the idle slot can pass it).
    edit_json(&ws, CONFIG, |config| {
        config["environments"]["production"]["preview_checks"][0]["expect_body_contains"] = json!("UNIT-002 2.0.0");
    });
    let (ids, code, summary) = approved_release(&ws, "UNIT-002", "2.0.0", 0.1);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(status_of(&ws, &ids[2]), "deployed");
    assert_eq!(
        std::fs::read_link(ws.join(".opsflow/envs/production/active")).unwrap().to_string_lossy(),
        "slots/green"
    );

    // A release whose idle slot does not serve what the preview wants is never switched in.
    edit_json(&ws, CONFIG, |config| {
        config["environments"]["production"]["preview_checks"][0]["expect_body_contains"] = json!("never served");
    });
    let (ids, code, summary) = approved_release(&ws, "UNIT-003", "3.0.0", 0.1);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(status_of(&ws, &ids[2]), "failed");
    assert_eq!(
        std::fs::read_link(ws.join(".opsflow/envs/production/active")).unwrap().to_string_lossy(),
        "slots/green"
    );
    assert_eq!(history(&ws, "production")["deployments"][0]["status"], "bad");
    drop((blue, green));
}

#[test]
fn an_older_build_that_would_remove_a_shipped_unit_is_blocked_and_can_be_let_through_on_purpose() {
    // UNIT-001 0.2.0 was built before UNIT-003 1.0.1 shipped; approving 0.2.0 later removed
    // UNIT-003's feature from production, with no word in the approval request or the gates.
    let ws = life_workspace();
    edit_json(&ws, CONFIG, |config| {
        config["environments"]["staging"]["strategy"] = json!("recreate");
    });
    git(ws.path(), &["init", "-q"]);
    git(ws.path(), &["add", "-A"]);
    git(ws.path(), &["commit", "-qm", "the shop"]);
    // The sample's 1.0.0 ships from the first commit.
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    assert_eq!(step(&ws).0, 0);
    // UNIT-001 0.2.0 is built from that commit and waits for its approval.
    let old = new_release(&ws, "UNIT-001", "0.2.0", 0.1);
    assert_eq!(step(&ws).0, 3);
    assert_eq!(status_of(&ws, &old[1]), "deployed");
    // UNIT-003's feature is committed, built and shipped.
    ws.write("app/checkout.html", "<p>checkout</p>\n");
    git(ws.path(), &["add", "-A"]);
    git(ws.path(), &["commit", "-qm", "UNIT-003: checkout"]);
    let (new, code, summary) = approved_release(&ws, "UNIT-003", "1.0.1", 0.1);
    assert_eq!(code, 3, "UNIT-001 0.2.0 still waits for its approval: {summary}");
    assert_eq!(status_of(&ws, &new[2]), "deployed", "{summary}");
    let live = history(&ws, "production");
    assert!(live["deployments"][0]["commit"].as_str().is_some_and(|c| c.len() == 40), "{live}");

    // Approving the older build does not ship it: the gate names what it would remove.
    let request = approval_file(&ws, "UNIT-001", "0.2.0");
    approve(&ws, &request);
    let (code, summary) = step(&ws);
    assert_eq!(code, 3, "{summary}");
    let reason = task(&ws.tasks(), &old[2])["blocked_reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("does not contain the live release UNIT-003 1.0.1"), "{reason}");
    assert!(reason.contains("would remove the shipped changes of UNIT-003"), "{reason}");
    assert!(reason.contains("allow_revert: true"), "{reason}");
    assert!(live_index(&ws).contains("UNIT-003 1.0.1"));
    assert_records_agree(&ws);

    // A person lets it through on purpose; the record says which release it removed.
    let text = ws.read_string(&request);
    ws.write(&request, text.replacen("status: \"approved\"", "status: \"approved\"\nallow_revert: true", 1));
    let (code, summary) = step(&ws);
    assert_eq!(code, 0, "{summary}");
    assert!(live_index(&ws).contains("UNIT-001 0.2.0"));
    assert_records_agree(&ws);
    let record = history(&ws, "production");
    assert_eq!(record["deployments"][0]["release"], "UNIT-001 0.2.0");
    assert_eq!(record["deployments"][0]["allowed_revert"], json!(["UNIT-003 1.0.1"]));
    let text = ws.run(&["history", "production"]).stdout();
    assert!(text.contains("removed UNIT-003 1.0.1 on purpose (allow_revert)"), "{text}");
    // R07 of every release says what it was built from.
    let r07 = ws.read_string("docs/workflow/releases/UNIT-003/1.0.1/R07-version-tag.md");
    assert!(r07.contains("- Built from commit: "), "{r07}");
}

#[test]
fn a_paused_rollout_a_person_lets_proceed_is_reported_as_their_decision_in_every_report() {
    // After a paused monitoring period and `decision: proceed`, the task ended `deployed` but
    // `Deploy-<UNIT>.md` still said "Deployment failed" and "Fix the failure", and
    // deployment-report.json said "Post-deploy monitoring passed", which was false.
    let ws = life_workspace();
    edit_json(&ws, CONFIG, |config| {
        // No figure can be read: the monitoring period cannot tell, and a person decides.
        config["environments"]["production"]["metrics"]["command"] = json!("echo '{}'");
    });
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-001", "1.0.0"));
    let (code, summary) = step(&ws);
    assert_eq!(code, 3, "{summary}");
    let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("rollout paused at monitoring period"), "{reason}");
    let deploy_md = "docs/workflow/deployments/Deploy-UNIT-001.md";
    assert!(ws.read_string(deploy_md).contains("status: \"failed\""));

    crate::rollout::decide_in(
        &ws,
        "docs/workflow/artifacts/R17-rollback-decision.md",
        "proceed",
        "alice",
        "the dashboard looks fine",
    );
    let (code, summary) = step(&ws);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
    assert_records_agree(&ws);

    let report = crate::engine::json_file(&ws, "ARTIFACTS/devops-engineer/deployment-report.json");
    assert_eq!(report["deployment_summary"]["status"], "success", "{report:#}");
    let steps = report["next_steps"].to_string();
    assert!(!steps.contains("monitoring passed"), "{steps}");
    assert!(steps.contains("alice decided to proceed after the monitoring period"), "{steps}");
    let issues = report["known_issues"].to_string();
    assert!(issues.contains("alice decided to proceed"), "{issues}");
    for file in [deploy_md.to_owned(), "docs/workflow/releases/UNIT-001/1.0.0/Deploy-UNIT-001.md".to_owned()] {
        let md = ws.read_string(&file);
        assert!(md.contains("status: \"success\""), "{file}:\n{md}");
        assert!(md.contains("- **Status:** SUCCESS"), "{file}:\n{md}");
        assert!(md.contains("Decision `proceed` by alice"), "{file}:\n{md}");
        assert!(md.contains("| INCONCLUSIVE |"), "{file}:\n{md}");
        assert!(!md.contains("Deployment failed"), "{file}:\n{md}");
        assert!(!md.contains("Fix the failure"), "{file}:\n{md}");
    }
    let record = history(&ws, "production");
    let kinds: Vec<&str> = record["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["proceeded", "paused", "deployed", "deploy_started"], "{record:#}");
    assert_eq!(record["events"][0]["by"], "alice");
}

/// Every report agrees with the environment's record and with what is live: the release the
/// live link serves is the record's live one; `deployment-report.json`, each
/// `Deploy-<UNIT_ID>.md` and each production task say success only of a release the record
/// does not call bad, and failure or rollback only of one it does not call good.
pub(crate) fn assert_records_agree(ws: &Workspace) {
    let record = history(ws, "production");
    let rows = record["deployments"].as_array().cloned().unwrap_or_default();
    let status_of_release = |unit: &str, version: &str| -> Option<String> {
        rows.iter()
            .find(|r| r["unit_id"] == unit && r["version"] == version)
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
    };
    let live = rows.iter().find(|r| r["live"] == true);
    let page = live_index(ws);
    match live {
        Some(live) => {
            let release = live["release"].as_str().unwrap();
            assert!(page.contains(release), "the record says {release} is live, the live link serves {page:?}");
        }
        None => assert!(page.is_empty(), "the record says nothing is live, the live link serves {page:?}"),
    }
    let agrees = |what: &str, unit: &str, version: &str, says: &str| {
        let Some(status) = status_of_release(unit, version) else { return };
        let claims_success = matches!(says, "success" | "deployed");
        let claims_failure = matches!(says, "failed" | "rolled_back");
        assert!(
            !(claims_success && status == "bad" || claims_failure && status == "good"),
            "{what} says {unit} {version} is {says}, the record says {status}: {record:#}"
        );
    };
    let report = crate::engine::json_file(ws, "ARTIFACTS/devops-engineer/deployment-report.json");
    if let (Some(unit), Some(version)) = (report["unit_id"].as_str(), report["version"].as_str()) {
        agrees("deployment-report.json", unit, version, report["deployment_summary"]["status"].as_str().unwrap_or(""));
    }
    for name in ws.list_dir("docs/workflow/deployments") {
        let text = ws.read_string(&format!("docs/workflow/deployments/{name}"));
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        let status = field("status");
        agrees(&name, &field("unit_id"), &field("version"), &status);
        let summary = if status == "success" { "SUCCESS" } else { &status.to_uppercase() };
        assert!(text.contains(&format!("- **Status:** {summary}")), "{name}: front matter {status}:\n{text}");
    }
    for t in ws.tasks().iter().filter(|t| t["type"] == "deployment_production") {
        if let (Some(unit), Some(version)) = (t["unit_id"].as_str(), t["version"].as_str()) {
            agrees(t["id"].as_str().unwrap(), unit, version, t["status"].as_str().unwrap_or(""));
        }
    }
}

#[test]
fn a_health_check_that_fails_after_the_switch_is_reported_as_switched_back_with_its_baseline() {
    // A production health check that failed after the traffic switch (recreate; `current`
    // was switched back) was recorded as "Rollback required: No", "no baseline (no metrics
    // configured)" while metrics were configured, and "Health status: unhealthy" for the
    // release that was restored; and the previous release was named by its version alone.
    let ws = first_release_shipped();
    edit_json(&ws, CONFIG, |config| {
        config["environments"]["production"]["health_checks"] =
            json!([{"name": "not-2.0.0", "command": "! grep -q '2.0.0<' index.html"}]);
    });
    let (ids, code, summary) = approved_release(&ws, "UNIT-002", "2.0.0", 0.1);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(status_of(&ws, &ids[2]), "failed");
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"), "the previous release serves again");
    let md = ws.read_string("docs/workflow/deployments/Deploy-UNIT-002.md");
    assert!(md.contains("- Previous version: UNIT-001 1.0.0"), "{md}");
    assert!(md.contains("- Health status: baseline before the deploy: error rate 0.1%"), "{md}");
    assert!(md.contains("- Current version: UNIT-001 1.0.0"), "{md}");
    assert!(md.contains("- Health status: UNIT-001 1.0.0 was switched back in after the failure"), "{md}");
    assert!(md.contains("- Rollback required: Yes"), "{md}");
    assert!(md.contains("UNIT-001 1.0.0 was switched back in"), "{md}");
    let r13 = ws.read_string("docs/workflow/releases/UNIT-002/2.0.0/R13-prod-deploy.md");
    assert!(r13.contains("(previous UNIT-001 1.0.0)"), "{r13}");
    assert_records_agree(&ws);
}

#[test]
fn every_report_agrees_with_the_record_after_each_way_a_release_ends() {
    let ws = first_release_shipped();
    assert_records_agree(&ws);

    // An automatic rollback: the release's own error rate breaches the trigger.
    let (bad, code, summary) = approved_release(&ws, "UNIT-002", "1.0.0", 40.0);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(status_of(&ws, &bad[2]), "rolled_back", "{summary}");
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"));
    assert_records_agree(&ws);
    let md = ws.read_string("docs/workflow/deployments/Deploy-UNIT-002.md");
    assert!(md.contains("- Health status: UNIT-001 1.0.0 serves again after the rollback"), "{md}");

    // Paused, then a person decides to roll back.
    let paused = new_release(&ws, "UNIT-003", "1.0.0", 0.1);
    ws.write("app/metrics-UNIT-003-1.0.0.json", "{}");
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-003", "1.0.0"));
    let (code, summary) = step(&ws);
    assert_eq!(code, 3, "{summary}");
    // The decision file the reason names (the plain R17 is UNIT-002's own record).
    let reason = task(&ws.tasks(), &paused[2])["blocked_reason"].as_str().unwrap().to_owned();
    let r17 = reason.split("decide in ").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    assert!(r17.ends_with("R17-rollback-decision-UNIT-003-1.0.0.md"), "{r17}");
    crate::rollout::decide_in(&ws, &r17, "rollback", "alice", "no figures at all");
    let (code, summary) = step(&ws);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(status_of(&ws, &paused[2]), "rolled_back", "{summary}");
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"));
    assert_records_agree(&ws);
    let md = ws.read_string("docs/workflow/deployments/Deploy-UNIT-003.md");
    assert!(md.contains("Decision `rollback` by alice"), "{md}");
    assert!(md.contains("- **Status:** ROLLED_BACK"), "{md}");

    // A failure before the switch: the release's files changed after it was built.
    let tampered = new_release(&ws, "UNIT-004", "1.0.0", 0.1);
    assert_eq!(step(&ws).0, 3);
    approve(&ws, &approval_file(&ws, "UNIT-004", "1.0.0"));
    let dir = "docs/workflow/artifacts/R06-release-artifacts/UNIT-004/1.0.0";
    ws.write(&format!("{dir}/index.html"), "<h1>Acme Shop</h1><p>changed after the build</p>\n");
    let (code, summary) = step(&ws);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(status_of(&ws, &tampered[2]), "failed", "{summary}");
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"));
    assert_records_agree(&ws);
    let record = history(&ws, "production");
    let releases: Vec<&str> =
        record["deployments"].as_array().unwrap().iter().map(|r| r["release"].as_str().unwrap()).collect();
    assert!(
        !releases.contains(&"UNIT-004 1.0.0"),
        "a release refused before anything changed is no deployment: {releases:?}"
    );
}

#[test]
fn a_human_rollback_renders_every_report_of_the_undone_release_again_from_the_record() {
    let ws = first_release_shipped();
    let (_, code, summary) = approved_release(&ws, "UNIT-002", "1.0.0", 0.1);
    assert_eq!(code, 0, "{summary}");
    let history_dir = "docs/workflow/releases/UNIT-002/1.0.0";
    let report_before = crate::engine::json_file(&ws, "ARTIFACTS/devops-engineer/deployment-report.json");
    let unit_001_before = ws.read_string("docs/workflow/deployments/Deploy-UNIT-001.md");
    assert!(
        ws.join(&format!("{history_dir}/report-facts.json")).is_file(),
        "the facts the reports are rendered from are kept"
    );

    let rollback = ws.run(&["rollback", "production", "--reason", "checkout is slow"]);
    assert_eq!(rollback.code(), Some(0), "{}\n{}", rollback.stdout(), rollback.stderr());
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"));
    // What every report says of the rollback is what the record says of it.
    let record = history(&ws, "production");
    let event = &record["events"][0];
    assert_eq!(event["event"], "rolled_back", "{record:#}");
    let (at, by) = (event["at"].as_str().unwrap(), event["by"].as_str().unwrap());
    let line = format!("- Rolled back at {at} by {by} (run `");
    for file in [
        "docs/workflow/artifacts/R13-prod-deploy.md".to_owned(),
        "docs/workflow/deployments/Deploy-UNIT-002.md".to_owned(),
        format!("{history_dir}/Deploy-UNIT-002.md"),
        format!("{history_dir}/R13-prod-deploy.md"),
        format!("{history_dir}/R14-monitoring-active.md"),
        format!("{history_dir}/R15-verification-result.md"),
        format!("{history_dir}/R16-health-check.md"),
    ] {
        let text = ws.read_string(&file);
        assert!(text.contains("status: \"rolled_back\""), "{file}:\n{text}");
        assert_eq!(text.matches("## Rolled back").count(), 1, "{file}:\n{text}");
        assert!(text.contains(&line) && text.contains("): checkout is slow"), "{file}:\n{text}");
        assert!(text.contains("- Restored: UNIT-001 1.0.0"), "{file}:\n{text}");
    }
    let md = ws.read_string("docs/workflow/deployments/Deploy-UNIT-002.md");
    assert!(md.contains("- **Status:** ROLLED_BACK"), "{md}");
    assert!(md.contains("- Current version: UNIT-001 1.0.0"), "{md}");
    assert!(md.contains(&format!("- Rollback required: Yes\n- Why: rolled back by {by}: checkout is slow")), "{md}");
    for file in
        ["ARTIFACTS/devops-engineer/deployment-report.json".to_owned(), format!("{history_dir}/deployment-report.json")]
    {
        let report = crate::engine::json_file(&ws, &file);
        assert_eq!(report["deployment_summary"]["status"], "rolled_back", "{file}: {report:#}");
        // When it was deployed stays what it was: the rendering is new, the deploy is not.
        assert_eq!(report["deployment_summary"]["deployed_at"], report_before["deployment_summary"]["deployed_at"]);
        assert!(
            report["known_issues"].to_string().contains(&format!("rolled back by {by}: checkout is slow")),
            "{report:#}"
        );
        let steps = report["next_steps"].to_string();
        assert!(steps.contains("UNIT-001 1.0.0 serves users") && !steps.contains("escalation"), "{steps}");
    }
    // The release that serves again keeps its own reports as they were.
    assert_eq!(ws.read_string("docs/workflow/deployments/Deploy-UNIT-001.md"), unit_001_before);
    assert_records_agree(&ws);
}

#[test]
fn a_release_whose_history_keeps_no_report_facts_still_has_its_reports_say_it_was_rolled_back() {
    // Reports written before `report-facts.json` was kept cannot be rendered again: they are
    // patched with the same statements instead.
    let ws = first_release_shipped();
    let (_, code, summary) = approved_release(&ws, "UNIT-002", "1.0.0", 0.1);
    assert_eq!(code, 0, "{summary}");
    let history_dir = "docs/workflow/releases/UNIT-002/1.0.0";
    std::fs::remove_file(ws.join(&format!("{history_dir}/report-facts.json"))).unwrap();

    let rollback = ws.run(&["rollback", "production", "--reason", "checkout is slow"]);
    assert_eq!(rollback.code(), Some(0), "{}\n{}", rollback.stdout(), rollback.stderr());
    assert!(live_index(&ws).contains("UNIT-001 1.0.0"));
    for file in [
        "docs/workflow/deployments/Deploy-UNIT-002.md".to_owned(),
        format!("{history_dir}/Deploy-UNIT-002.md"),
        format!("{history_dir}/R13-prod-deploy.md"),
        format!("{history_dir}/R16-health-check.md"),
    ] {
        let text = ws.read_string(&file);
        assert!(text.contains("status: \"rolled_back\""), "{file}:\n{text}");
        assert_eq!(text.matches("## Rolled back").count(), 1, "{file}:\n{text}");
        assert!(text.contains("checkout is slow") && text.contains("- Restored: UNIT-001 1.0.0"), "{file}:\n{text}");
    }
    let md = ws.read_string("docs/workflow/deployments/Deploy-UNIT-002.md");
    assert!(md.contains("- **Status:** ROLLED_BACK") && md.contains("- Rollback required: Yes"), "{md}");
    let report = crate::engine::json_file(&ws, &format!("{history_dir}/deployment-report.json"));
    assert_eq!(report["deployment_summary"]["status"], "rolled_back", "{report:#}");
    assert_records_agree(&ws);
}
