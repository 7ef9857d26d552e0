//! Real deployments end to end: command strategies (canary, rolling, blue-green) against a
//! test HTTP app on a loopback port, analyses that pass, fail and pause, a human's decision in
//! R17, the monitoring period read from a real Prometheus, local rollbacks that skip a bad
//! release, the deploy lock, timeouts, secrets, and a run killed with `kill -9`.
//!
//! Every command of a `command` environment appends a line to `calls.log` in the workspace,
//! so a test reads exactly what was run, in which order, with which `OPSFLOW_*` values.
//! Commands that "roll out a version" write the test app's mode file, which is how a bad
//! release changes what the real app serves.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::engine::{APPROVAL, CONFIG, approve, edit_json, files, json_file, status_of};
use crate::metrics::{
    Mode, PROMETHEUS_DEADLINE, Prometheus, SOURCE_TIMEOUT, TestApp, has_error_rate, poll, prometheus_spec,
};
use crate::util::{Workspace, task, wait_for_exit, wait_until};

const R13: &str = "docs/workflow/artifacts/R13-prod-deploy.md";
const R17: &str = "docs/workflow/artifacts/R17-rollback-decision.md";
const R18: &str = "docs/workflow/artifacts/R18-rollback-result.md";
const REPORT: &str = "ARTIFACTS/devops-engineer/deployment-report.json";

/// A command that appends `line` (expanded by the shell) to `calls.log`.
fn log(line: &str) -> String {
    format!("echo \"{line}\" >> \"$OPSFLOW_WORKSPACE/calls.log\"")
}

/// A command that sets the test app's mode through its mode file.
fn app_mode(mode: &str) -> String {
    format!("echo {mode} > \"$OPSFLOW_WORKSPACE/app-mode\"")
}

pub(crate) fn calls(ws: &Workspace) -> Vec<String> {
    std::fs::read_to_string(ws.join("calls.log")).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// The sample workspace with `production` replaced by `env` and a short monitoring period,
/// run up to the production approval, and approved by alice.
pub(crate) fn approved_for_production(env: Value) -> Workspace {
    for_production(Workspace::new().sample(), env)
}

/// [`approved_for_production`] for a sample workspace the caller made (on a small disk, say).
pub(crate) fn for_production(ws: Workspace, env: Value) -> Workspace {
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["production"] = env;
        c["devops"]["monitoring_period"] = json!("200ms");
        c["devops"]["monitoring_interval"] = json!("100ms");
    });
    let first = ws.run(&["run"]);
    first.status(3);
    assert_eq!(status_of(&ws, "DEVOPS-006"), "deployed", "{}", first.stdout());
    approve(&ws, "alice");
    ws
}

/// A canary production environment against `app`, its commands logged.
pub(crate) fn canary(app: &TestApp, set_weight_extra: &str) -> Value {
    json!({
        "provider": "command",
        "strategy": "canary",
        "canary_steps": [10, 50, 100],
        "commands": {
            "migrate": log("migrate"),
            "deploy": log("deploy $OPSFLOW_VERSION at $OPSFLOW_WEIGHT%"),
            "set_weight": format!("{}; {set_weight_extra}", log("set_weight $OPSFLOW_WEIGHT")),
            "promote": log("promote $OPSFLOW_WEIGHT"),
            "rollback": format!("{}; {}", log("rollback"), app_mode("healthy")),
            "migrate_down": log("migrate_down"),
        },
        "health_checks": [{"name": "api", "http": app.url("/health"), "expect_status": 200}],
        "metrics": {"http": app.url("/stats"), "error_rate": "/error_rate", "latency_p95_ms": "/latency/p95"},
        "analysis": {"interval": "50ms", "count": 2},
    })
}

/// Sets R17's decision as a human does, by editing its front matter.
fn decide(ws: &Workspace, decision: &str, by: &str, reason: &str) {
    decide_in(ws, R17, decision, by, reason);
}

/// A person's decision about a paused rollout, written in the R17 file `r17`.
pub(crate) fn decide_in(ws: &Workspace, r17: &str, decision: &str, by: &str, reason: &str) {
    let text = ws.read_string(r17);
    let edited = text
        .replacen("decision: \"pending\"", &format!("decision: \"{decision}\""), 1)
        .replacen("decided_by: null", &format!("decided_by: \"{by}\""), 1)
        .replacen("reason: \"", &format!("reason: \"{reason}; was: "), 1);
    assert_ne!(edited, text, "R17 has the fields a human edits:\n{text}");
    ws.write(r17, edited);
}

#[test]
fn a_healthy_canary_goes_through_its_steps_in_order_and_is_promoted() {
    let app = TestApp::start(Mode::Healthy);
    let ws = approved_for_production(canary(&app, "true"));
    app.follow(&ws.join("app-mode"));
    let run = ws.run(&["run"]);
    run.status(0);
    assert_eq!(
        calls(&ws),
        ["migrate", "deploy 1.0.0 at 0%", "set_weight 10", "set_weight 50", "set_weight 100", "promote 100"],
        "{}",
        run.stdout()
    );
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
    let r13 = ws.read_string(R13);
    for step in
        ["canary step 1 of 3 (10%): passed", "canary step 2 of 3 (50%): passed", "canary step 3 of 3 (100%): passed"]
    {
        assert!(r13.contains(step), "R13 lists {step}:\n{r13}");
    }
    assert!(r13.contains("Traffic on the new version at the end: 100%"), "{r13}");
    assert_eq!(json_file(&ws, REPORT)["deployment_summary"]["deployment_method"], "canary");
    assert!(!ws.join(".opsflow/rollouts/production.json").exists(), "the journal is gone once the rollout ended");
    let history = json_file(&ws, ".opsflow/envs/production/releases.json");
    assert_eq!(history["deployments"][0]["status"], "good");
}

#[test]
fn a_canary_whose_error_rate_breaks_at_50_percent_rolls_back_before_100() {
    let app = TestApp::start(Mode::Healthy);
    let ws = approved_for_production(canary(
        &app,
        "if [ \"$OPSFLOW_WEIGHT\" -ge 50 ]; then echo degraded > \"$OPSFLOW_WORKSPACE/app-mode\"; fi",
    ));
    app.follow(&ws.join("app-mode"));
    let run = ws.run(&["run"]);
    run.status(1);
    assert_eq!(
        calls(&ws),
        ["migrate", "deploy 1.0.0 at 0%", "set_weight 10", "set_weight 50", "set_weight 0", "rollback", "migrate_down"],
        "traffic goes back before the schema does, and 100% is never reached"
    );
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "rolled_back", "{production}");
    let r17 = ws.read_string(R17);
    assert!(r17.starts_with("---\ndecision: \"rollback\"\n"), "{r17}");
    assert!(
        r17.contains("canary step 2 of 3 (50%): error_rate 37.5% is above the trigger 5%"),
        "R17 names the figure, its value and its limit:\n{r17}"
    );
    let r18 = ws.read_string(R18);
    assert!(r18.contains("status: \"success\""), "{r18}");
    assert!(r18.contains("reverted the migration"), "{r18}");
    assert!(r18.contains("Health check `api`: passes"), "the rollback was verified by the health checks:\n{r18}");
    assert_eq!(json_file(&ws, REPORT)["deployment_summary"]["status"], "rolled_back");
    assert_eq!(task(&ws.tasks(), "FIX-DEVOPS-007")["agent"], "Task-Coder");
    ws.run(&["validate"]).status(0);
}

#[test]
fn inconclusive_metrics_pause_the_canary_until_a_human_decides_to_proceed() {
    let app = TestApp::start(Mode::Healthy);
    let ws = approved_for_production(canary(
        &app,
        "if [ \"$OPSFLOW_WEIGHT\" -eq 50 ]; then echo silent > \"$OPSFLOW_WORKSPACE/app-mode\"; fi",
    ));
    app.follow(&ws.join("app-mode"));
    let run = ws.run(&["run"]);
    run.status(3);
    assert_eq!(calls(&ws), ["migrate", "deploy 1.0.0 at 0%", "set_weight 10", "set_weight 50"]);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "blocked", "{production}");
    assert_eq!(production["blocked_by"], "opsflow");
    let reason = production["blocked_reason"].as_str().unwrap();
    assert!(reason.starts_with("rollout paused at canary step 2 of 3 (50%): no data"), "{reason}");
    assert!(reason.contains("error_rate: GET http://"), "the reason says which figure had no data: {reason}");
    let r17 = ws.read_string(R17);
    assert!(r17.starts_with("---\ndecision: \"pending\"\n"), "{r17}");
    assert!(r17.contains("pause_id: "), "{r17}");
    let requests = ws.read_string("docs/workflow/human-requests.md");
    assert!(requests.contains("is paused"), "a human request says the rollout is paused:\n{requests}");
    let status = ws.run(&["status"]);
    let shown = status.stdout();
    assert!(shown.contains("production  paused 1.0.0 (canary, task DEVOPS-007)"), "{shown}");
    assert!(shown.contains("waiting for a decision in docs/workflow/artifacts/R17-rollback-decision.md"), "{shown}");
    assert!(shown.contains("last runs") && shown.contains("DEVOPS-006   deployed"), "{shown}");

    // Waiting writes nothing.
    let before = files(&ws);
    ws.run(&["run"]).status(3);
    assert_eq!(files(&ws), before, "a pass that only waits writes nothing");

    // A decision by someone who may not approve does not count.
    let mut bystander = ws.read_string(R17);
    bystander = bystander.replacen("decision: \"pending\"", "decision: \"proceed\"", 1).replacen(
        "decided_by: null",
        "decided_by: \"mallory\"",
        1,
    );
    ws.write(R17, &bystander);
    ws.run(&["run"]).status(3);
    assert!(status_of(&ws, "DEVOPS-007") == "blocked");
    assert!(
        task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().contains("mallory"),
        "the reason says why the decision does not count"
    );
    assert_eq!(calls(&ws).len(), 4, "nothing ran on mallory's word");

    // alice decides to go on; the app serves metrics again.
    ws.write(R17, ws.read_string(R17).replacen("decided_by: \"mallory\"", "decided_by: \"alice\"", 1));
    std::fs::write(ws.join("app-mode"), "healthy").unwrap();
    let run = ws.run(&["run"]);
    run.status(0);
    assert_eq!(
        calls(&ws)[4..],
        ["set_weight 100", "promote 100"],
        "the rollout went on from the step after the pause:\n{}",
        run.stdout()
    );
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
    assert!(!ws.join(".opsflow/rollouts/production.json").exists());
}

/// A canary whose app stops serving metrics at 10%, run until it pauses there for a human.
pub(crate) fn paused_at_10_percent(app: &TestApp) -> Workspace {
    let ws = approved_for_production(canary(
        app,
        "if [ \"$OPSFLOW_WEIGHT\" -eq 10 ]; then echo silent > \"$OPSFLOW_WORKSPACE/app-mode\"; fi",
    ));
    app.follow(&ws.join("app-mode"));
    ws.run(&["run"]).status(3);
    assert_eq!(calls(&ws), ["migrate", "deploy 1.0.0 at 0%", "set_weight 10"]);
    ws
}

#[test]
fn a_paused_canary_rolled_back_by_a_human_files_nothing_twice() {
    let app = TestApp::start(Mode::Healthy);
    let ws = paused_at_10_percent(&app);
    decide(&ws, "rollback", "bob", "no metrics, no risk");
    let run = ws.run(&["run"]);
    run.status(1);
    assert_eq!(calls(&ws)[3..], ["set_weight 0", "rollback", "migrate_down"], "{}", run.stdout());
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "rolled_back");
    assert!(production["outcome"]["rollback_reason"].as_str().unwrap().starts_with("bob decided to roll back"));
    let r18 = ws.read_string(R18);
    assert!(r18.contains("decision_sha256: "), "R18 names the decision it carried out:\n{r18}");
    // The human's R17 was carried out: no Rollback_Deployment task for it, nothing new.
    let before = files(&ws);
    ws.run(&["run"]).status(0);
    assert_eq!(files(&ws), before);
    assert!(!ws.tasks().iter().any(|t| t["id"].as_str().unwrap().starts_with("ROLLBACK-")));
}

#[test]
fn a_paused_canary_whose_release_changed_is_undone_when_told_to_proceed_and_frees_production() {
    let app = TestApp::start(Mode::Healthy);
    let ws = paused_at_10_percent(&app);
    // While the rollout waits, someone changes the release it is rolling out.
    ws.write("docs/workflow/artifacts/R06-release-artifacts/UNIT-001/1.0.0/index.html", "<h1>tampered</h1>");
    decide(&ws, "proceed", "alice", "metrics are back");
    std::fs::write(ws.join("app-mode"), "healthy").unwrap();
    let run = ws.run(&["run"]);
    run.status(1);
    assert_eq!(
        calls(&ws)[3..],
        ["set_weight 0", "rollback", "migrate_down"],
        "the 10% already rolled out was taken back, nothing went further:\n{}",
        run.stdout()
    );
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "failed", "{production}");
    assert_eq!(production["outcome"]["failed_step"], "checksums");
    let summary = production["outcome"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("index.html does not match SHA256SUMS"), "{production}");
    let history = json_file(&ws, ".opsflow/envs/production/releases.json");
    assert_eq!(history["deployments"][0]["status"], "bad");
    // Production is not held by a rollout no run will resume.
    assert!(!ws.join(".opsflow/rollouts/production.json").exists());
    let status = ws.run(&["status"]).stdout();
    assert!(!status.contains("production  paused"), "{status}");
}

/// A rolling production environment of three batches against `app`, deploying with `deploy`.
fn rolling(app: &TestApp, deploy: String) -> Value {
    json!({
        "provider": "command",
        "strategy": "rolling",
        "batches": 3,
        "commands": {"deploy": deploy, "rollback": log("rollback")},
        "health_checks": [{"name": "api", "http": app.url("/health")}],
        "metrics": {"http": app.url("/stats"), "error_rate": "/error_rate"},
        "analysis": {"interval": "20ms", "count": 1},
    })
}

#[test]
fn a_rolling_deployment_goes_batch_by_batch() {
    let app = TestApp::start(Mode::Healthy);
    let ws =
        approved_for_production(rolling(&app, log("deploy batch $OPSFLOW_BATCH/$OPSFLOW_BATCHES at $OPSFLOW_WEIGHT%")));
    ws.run(&["run"]).status(0);
    assert_eq!(calls(&ws), ["deploy batch 1/3 at 34%", "deploy batch 2/3 at 67%", "deploy batch 3/3 at 100%"]);
    let r13 = ws.read_string(R13);
    assert!(r13.contains("batch 3 of 3: passed"), "{r13}");
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
}

#[test]
fn a_blue_green_command_deploy_with_a_broken_new_side_never_switches() {
    let app = TestApp::start(Mode::Healthy);
    let env = |preview: &str| {
        json!({
            "provider": "command",
            "strategy": "blue-green",
            "commands": {
                "deploy": log("deploy $OPSFLOW_VERSION to $OPSFLOW_SLOT"),
                "switch": log("switch to $OPSFLOW_SLOT"),
                "rollback": log("rollback"),
            },
            "preview_checks": [{"name": "idle-side", "command": preview}],
            "health_checks": [{"name": "api", "http": app.url("/health")}],
        })
    };
    let broken = approved_for_production(env("echo \"$OPSFLOW_SLOT side answers 502\" >&2; exit 1"));
    broken.run(&["run"]).status(1);
    assert_eq!(calls(&broken), ["deploy 1.0.0 to blue"], "the broken side was never switched in");
    let production = task(&broken.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "failed");
    assert_eq!(production["outcome"]["failed_step"], "health");
    let history = json_file(&broken, ".opsflow/envs/production/releases.json");
    assert_eq!(history["deployments"][0]["status"], "bad");
    assert_eq!(history["deployments"][0]["dir"], "blue");

    let healthy = approved_for_production(env("test \"$OPSFLOW_SLOT\" = blue"));
    healthy.run(&["run"]).status(0);
    assert_eq!(calls(&healthy), ["deploy 1.0.0 to blue", "switch to blue"]);
}

/// Adds build, staging and production tasks for `version` of UNIT-001 and runs them up to
/// the approval, which is then moved to `version` (the approval names the version it
/// approves).
pub(crate) fn release(ws: &Workspace, version: &str) {
    let suffix = version.replace('.', "");
    let add = |id: &str, kind: &str, depends: Option<&str>| {
        let mut args = vec![
            "tasks".to_owned(),
            "add".into(),
            "--id".into(),
            id.to_owned(),
            "--title".into(),
            format!("{kind} {version}"),
            "--agent".into(),
            "DevOps-Engineer".into(),
            "--type".into(),
            kind.to_owned(),
            "--set".into(),
            format!("version={version}"),
            "--set".into(),
            "unit_id=UNIT-001".into(),
        ];
        if let Some(dep) = depends {
            args.push("--set".into());
            args.push(format!("depends_on:=[\"{dep}\"]"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ws.run(&args).status(0);
    };
    add(&format!("BUILD-{suffix}"), "release_build", None);
    add(&format!("STAGE-{suffix}"), "deployment_staging", Some(&format!("BUILD-{suffix}")));
    add(&format!("PROD-{suffix}"), "deployment_production", Some(&format!("STAGE-{suffix}")));
    let text = ws.read_string(APPROVAL);
    let start = text.find("version: \"").expect("R12 names its version") + "version: \"".len();
    let end = start + text[start..].find('"').unwrap();
    ws.write(APPROVAL, format!("{}{version}{}", &text[..start], &text[end..]));
    // The merge agent and QA speak of the new version too.
    set_version_line(ws, "docs/workflow/artifacts/R04-merge-result.md", "version: ", version);
    set_version_line(ws, "QA/QA-Report-UNIT-001.md", "version: ", version);
    crate::engine::edit_json(ws, "ARTIFACTS/qa-engineer/qa-test-report.json", |qa| qa["version"] = json!(version));
}

/// Replaces the first line starting with `prefix` in `relative` by `prefix"version"`.
fn set_version_line(ws: &Workspace, relative: &str, prefix: &str, version: &str) {
    let text = ws.read_string(relative);
    let replaced: Vec<String> = text
        .lines()
        .scan(false, |done, line| {
            Some(if !*done && line.starts_with(prefix) {
                *done = true;
                format!("{prefix}\"{version}\"")
            } else {
                line.to_owned()
            })
        })
        .collect();
    ws.write(relative, replaced.join("\n") + "\n");
}

#[test]
fn a_local_rollback_restores_the_last_good_release_and_skips_a_bad_one() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        let production = &mut c["environments"]["production"];
        production["strategy"] = json!("recreate");
        production["health_checks"] = json!([{"name": "not-broken", "command": "! grep -q BROKEN index.html"}]);
        production["smoke_tests"] = json!([]);
        production["metrics"] = json!({
            "command": "if grep -q SLOW \"$OPSFLOW_WORKSPACE/.opsflow/envs/production/current/index.html\"; then echo '{\"error_rate\": 42}'; else echo '{\"error_rate\": 0.1}'; fi",
            "error_rate": "/error_rate",
        });
        c["devops"]["monitoring_period"] = json!("200ms");
        c["devops"]["monitoring_interval"] = json!("100ms");
    });
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    ws.run(&["run"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");

    // 1.1.0 fails its health check: restored at once and marked bad.
    let index = ws.read_string("app/index.html");
    ws.write("app/index.html", format!("{index}<!-- BROKEN -->\n"));
    release(&ws, "1.1.0");
    ws.run(&["run"]).status(1);
    assert_eq!(status_of(&ws, "PROD-110"), "failed");

    // Task-Coder fixes 1.1.0's failure; until then production deploys of the unit wait.
    ws.run(&["tasks", "update", "FIX-PROD-110", "--set", "status=done"]).status(0);
    // 1.2.0 deploys, then its error rate breaks the monitoring period: rolled back to 1.0.0.
    ws.write("app/index.html", format!("{index}<!-- SLOW -->\n"));
    release(&ws, "1.2.0");
    let run = ws.run(&["run"]);
    run.status(1);
    assert_eq!(status_of(&ws, "PROD-120"), "rolled_back", "{}", run.stdout());
    let live = std::fs::read_link(ws.join(".opsflow/envs/production/current")).unwrap();
    assert_eq!(live.to_string_lossy(), "releases/UNIT-001/1.0.0", "1.1.0 is bad, so 1.0.0 is the last good release");
    let history = json_file(&ws, ".opsflow/envs/production/releases.json");
    let statuses: Vec<(&str, &str)> = history["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["version"].as_str().unwrap(), d["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("1.0.0", "good"), ("1.1.0", "bad"), ("1.2.0", "bad")]);
    let r18 = ws.read_string(R18);
    // Every release is named by unit and version.
    assert!(r18.contains("- Restored: UNIT-001 1.0.0"), "{r18}");
}

#[test]
fn keep_releases_removes_old_releases_but_never_the_live_or_last_good_one() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["staging"]["keep_releases"] = json!(1);
    });
    ws.run(&["run"]).status(3);
    for version in ["1.1.0", "1.2.0"] {
        let index = ws.read_string("app/index.html");
        ws.write("app/index.html", format!("{index}<!-- {version} -->\n"));
        release(&ws, version);
        ws.run(&["run"]).status(3);
    }
    let mut kept = ws.list_dir(".opsflow/envs/staging/releases/UNIT-001");
    kept.sort();
    assert_eq!(kept, ["1.1.0", "1.2.0"], "1.2.0 is live, 1.1.0 is what a rollback restores; 1.0.0 went");
}

#[test]
fn a_deploy_lock_held_by_a_live_deploy_refuses_and_names_it_one_left_by_a_dead_one_is_taken() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    let lock = ws.join(".opsflow/envs/production/.deploy.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(
        &lock,
        "pid 4242 on host elsewhere, agent Release-Bot, run r-1, task OTHER-1, since 2026-12-01T00:00:00Z\n",
    )
    .unwrap();
    // `-o`: the lock is held by flock itself, not by the command it runs.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "60"])
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(60), "flock to hold the lock", || {
        !Command::new("flock").args(["-n"]).arg(&lock).arg("true").status().unwrap().success()
    });
    let run = ws.run(&["run"]);
    run.status(3);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "blocked");
    let reason = production["blocked_reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "deploy lock of production is held by pid 4242 on host elsewhere, agent Release-Bot, run r-1, task OTHER-1"
        ),
        "{reason}"
    );
    assert!(!ws.join(".opsflow/envs/production/active").exists(), "nothing was deployed");

    // The holder dies without cleaning up: its lock dies with it.
    Command::new("kill").args(["-9", "--", &format!("-{}", holder.id())]).status().unwrap();
    holder.wait().unwrap();
    ws.run(&["run"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
    let r13 = ws.read_string(R13);
    assert!(r13.contains("taken over from a holder that had died: pid 4242"), "{r13}");
}

#[test]
fn a_deploy_that_times_out_has_its_whole_process_group_killed() {
    // The timeout leaves the shell ample time to start its background child and write its pid,
    // even on a loaded machine: a deploy killed before that would leave nothing to check.
    let ws = approved_for_production(json!({
        "provider": "command",
        "strategy": "direct",
        "commands": {
            "deploy": {"run": "sleep 60 & echo $! > \"$OPSFLOW_WORKSPACE/bg.pid\"; sleep 60", "timeout": "20s"},
            "rollback": log("rollback"),
        },
        "health_checks": [{"name": "ok", "command": "true"}],
    }));
    let run = ws.run(&["run"]);
    run.status(1);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["outcome"]["failed_step"], "deploy");
    assert!(production["blocked_reason"].is_null());
    let summary = production["outcome"]["summary"].as_str().unwrap();
    assert!(summary.contains("timed out after"), "{summary}");
    let pid: i32 = ws.read_string("bg.pid").trim().parse().unwrap();
    wait_until(Duration::from_secs(60), "the background child of the deploy to be gone", || !alive(pid));
    assert_eq!(calls(&ws), ["rollback"], "the deploy that may have half happened is undone");
}

#[test]
fn a_step_that_ignores_sigterm_is_killed_with_sigkill_after_the_grace_period() {
    // The step notes the SIGTERM it is sent and carries on; only SIGKILL can end it. Its
    // timeout leaves the shell ample time to set its trap first, even on a loaded machine.
    let stubborn = "trap 'echo TERM >> \"$OPSFLOW_WORKSPACE/signals\"' TERM; echo $$ > \"$OPSFLOW_WORKSPACE/deploy.pid\"; \
                    while :; do sleep 0.05; done";
    let ws = approved_for_production(json!({
        "provider": "command",
        "strategy": "direct",
        "commands": {
            "deploy": {"run": stubborn, "timeout": "20s"},
            "rollback": log("rollback"),
        },
        "health_checks": [{"name": "ok", "command": "true"}],
    }));
    let mut run = ws.command(&["run"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let status = wait_for_exit(&mut run, Duration::from_secs(120), "the run with a step that ignores SIGTERM");
    assert_eq!(status.code(), Some(1));
    let pid: i32 = ws.read_string("deploy.pid").trim().parse().unwrap();
    assert!(!alive(pid), "the step survived");
    assert!(ws.read_string("signals").starts_with("TERM\n"), "SIGTERM came first, and the step saw it");
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["outcome"]["failed_step"], "deploy");
    let summary = production["outcome"]["summary"].as_str().unwrap();
    assert!(summary.contains("timed out after"), "{summary}");
    let step_log = ws.read_string(production["outcome"]["log"].as_str().expect("the step's log"));
    assert!(step_log.contains("process group killed"), "{step_log}");
}

#[test]
fn a_rolling_batch_that_fails_stops_the_rollout_and_rolls_back() {
    let app = TestApp::start(Mode::Healthy);
    let deploy = format!("{}; test \"$OPSFLOW_BATCH\" != 2", log("deploy batch $OPSFLOW_BATCH/$OPSFLOW_BATCHES"));
    let ws = approved_for_production(rolling(&app, deploy));
    ws.run(&["run"]).status(1);
    // Batch 3 never starts; what batches 1 and 2 changed is undone.
    assert_eq!(calls(&ws), ["deploy batch 1/3", "deploy batch 2/3", "rollback"]);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    // The deploy step failed (the task says `failed`, at `deploy`), and the rollback ran.
    assert_eq!(
        (production["status"].as_str(), production["outcome"]["failed_step"].as_str()),
        (Some("failed"), Some("deploy")),
        "{production:#}"
    );
    assert_eq!(task(&ws.tasks(), "FIX-DEVOPS-007")["agent"], "Task-Coder");
}

/// Whether `pid` is a live process (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z"))
}

#[test]
fn secrets_appear_in_no_file_and_on_no_console() {
    const TOKEN: &str = "tok-9f2c-very-secret";
    const KEY: &str = "key-77ab-also-secret";
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["production"] = json!({
            "provider": "command",
            "strategy": "direct",
            "commands": {
                "deploy": "echo \"deploying with $DEPLOY_TOKEN\"; echo \"key $API_KEY\" >&2",
                "rollback": "echo \"rollback with $DEPLOY_TOKEN\"",
            },
            "health_checks": [{"name": "ok", "command": "echo \"checked with $DEPLOY_TOKEN\""}],
            "smoke_tests": [{"name": "leaks", "command": "echo \"smoke $DEPLOY_TOKEN $API_KEY\"; exit 1"}],
            "metrics": {"command": "printf '{\"error_rate\": 0.1, \"note\": \"%s\"}\\n' \"$DEPLOY_TOKEN\"", "error_rate": "/error_rate"},
        });
    });
    let run = |args: &[&str]| {
        let output = ws.command(args).env("DEPLOY_TOKEN", TOKEN).env("API_KEY", KEY).output().unwrap();
        for text in [String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)] {
            assert!(!text.contains(TOKEN) && !text.contains(KEY), "the console shows a secret:\n{text}");
        }
        output.status.code()
    };
    assert_eq!(run(&["-v", "run"]), Some(3));
    approve(&ws, "alice");
    assert_eq!(run(&["-v", "run"]), Some(1));
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["outcome"]["failed_step"], "smoke");
    let mut checked = 0;
    for entry in walkdir(ws.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(TOKEN) && !text.contains(KEY), "{} holds a secret:\n{text}", entry.display());
        checked += 1;
    }
    assert!(checked > 30, "the run wrote logs, artifacts, reports and the audit log ({checked} files)");
    let smoke_log = ws.read_string(production["outcome"]["log"].as_str().unwrap());
    assert!(smoke_log.contains("smoke *** ***"), "the log keeps the line with the secrets masked:\n{smoke_log}");
}

fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

#[test]
fn a_run_killed_in_the_middle_of_a_deploy_is_failed_as_interrupted_and_rolled_back_on_restart() {
    let ws = approved_for_production(json!({
        "provider": "command",
        "strategy": "direct",
        "commands": {
            "deploy": format!("{}; echo $$ > \"$OPSFLOW_WORKSPACE/deploy.pid\"; sleep 60", log("deploy $OPSFLOW_VERSION")),
            "rollback": log("rollback"),
        },
        "health_checks": [{"name": "ok", "command": "true"}],
    }));
    let mut first = ws.command(&["run"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deploy_pid = || std::fs::read_to_string(ws.join("deploy.pid")).ok().and_then(|t| t.trim().parse::<i32>().ok());
    wait_until(Duration::from_secs(60), "the deploy command to write its pid", || deploy_pid().is_some());
    // SIGKILL: no handler runs, no cleanup happens.
    first.kill().unwrap();
    first.wait().unwrap();
    let deploy_pid = deploy_pid().unwrap();
    assert!(alive(deploy_pid), "the deploy command outlives the runner killed with kill -9");
    assert_eq!(status_of(&ws, "DEVOPS-007"), "in_progress");
    assert!(ws.join(".opsflow/rollouts/production.json").exists());

    let mut second = ws.command(&["run"]).stdout(Stdio::piped()).spawn().unwrap();
    let status = wait_for_exit(&mut second, Duration::from_secs(60), "the next run");
    assert_eq!(status.code(), Some(1));
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "failed");
    assert_eq!(production["outcome"]["failed_step"], "interrupted");
    let summary = production["outcome"]["summary"].as_str().unwrap();
    assert!(summary.contains("interrupted: run "), "{summary}");
    assert!(summary.contains("production rolled back"), "{summary}");
    assert!(!alive(deploy_pid), "the orphaned deploy command was ended");
    assert_eq!(calls(&ws), ["deploy 1.0.0", "rollback"]);
    assert!(!ws.join(".opsflow/rollouts/production.json").exists());
    assert!(ws.read_string(R18).contains("the run was interrupted"));
    // Nothing stays in progress, and nothing is recovered twice.
    let before = files(&ws);
    ws.run(&["run"]).status(0);
    assert_eq!(files(&ws), before);
}

#[test]
fn a_human_r17_asking_for_a_rollback_runs_rollback_deployment_for_that_unit() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    ws.run(&["run"]).status(0);
    assert!(ws.join(".opsflow/envs/production/active").exists());
    ws.write(
        R17,
        "---\ndecision: rollback\nunit_id: UNIT-001\nversion: 1.0.0\ndecided_by: carol\nreason: checkout fails for EU customers\n---\n\nPlease roll back.\n",
    );
    let run = ws.run(&["run"]);
    run.status(0);
    let rollback: Vec<Value> =
        ws.tasks().into_iter().filter(|t| t["id"].as_str().unwrap().starts_with("ROLLBACK-UNIT-001-")).collect();
    assert_eq!(rollback.len(), 1, "{}", run.stdout());
    assert_eq!(rollback[0]["status"], "done", "{}", rollback[0]);
    assert_eq!(rollback[0]["type"], "deployment_rollback");
    let r18 = ws.read_string(R18);
    assert!(r18.contains("carol asked for a rollback: checkout fails for EU customers"), "{r18}");
    assert!(r18.contains("decision_sha256: "), "{r18}");
    assert!(!ws.join(".opsflow/envs/production/active").exists(), "the first release was taken down");
    assert_eq!(json_file(&ws, REPORT)["deployment_summary"]["status"], "rolled_back");
    let before = files(&ws);
    ws.run(&["run"]).status(0);
    assert_eq!(files(&ws), before, "one request, one rollback");
}

#[test]
fn prometheus_sees_errors_rise_during_the_monitoring_period_and_production_rolls_back() {
    let app = TestApp::start(Mode::Healthy);
    let prometheus = Prometheus::start(app.address);
    let spec = prometheus_spec(&prometheus);
    // A directory of this test's own: /tmp is shared with every other test and test run.
    let probe = tempfile::tempdir().unwrap();
    let runner = opsflow::exec::command::Runner {
        run_dir: probe.path().join(".opsflow/runs/probe"),
        workspace: probe.path().to_owned(),
        env: Vec::new(),
        secrets: opsflow::exec::secrets::Secrets::default(),
        default_timeout: Duration::from_secs(30),
        abort: Default::default(),
    };
    poll(PROMETHEUS_DEADLINE, "Prometheus to have a healthy error rate", || {
        let sample = opsflow::exec::metrics::sample(&runner, &spec, &[]);
        has_error_rate(&sample).then_some(())
    });
    let ws = approved_for_production(json!({
        "provider": "command",
        "strategy": "direct",
        "commands": {"deploy": log("deploy $OPSFLOW_VERSION"), "rollback": log("rollback")},
        "health_checks": [{"name": "api", "http": app.url("/health")}],
        "metrics": {
            "prometheus": prometheus.url,
            "error_rate": r#"100 * sum(rate(http_requests_total{code="500"}[5s])) / sum(rate(http_requests_total[5s]))"#,
            "timeout": SOURCE_TIMEOUT,
        },
        // A loaded machine can stall Prometheus's scrapes until a 5 s window holds too few
        // of them to rate: a few such measurements of the healthy release are no data, not
        // a pause. The breach this test is about still ends the period at once.
        "analysis": {"inconclusive_limit": 10},
    }));
    edit_json(&ws, CONFIG, |c| {
        c["devops"]["monitoring_period"] = json!("40s");
        c["devops"]["monitoring_interval"] = json!("1s");
    });
    let mut run = ws.command(&["run"]).stdout(Stdio::piped()).spawn().unwrap();
    wait_until(Duration::from_secs(120), "the monitoring period to start", || {
        ws.join("docs/workflow/artifacts/R14-monitoring-active.md").exists()
    });
    // The new release starts failing while it is watched.
    app.set(Mode::Degraded);
    let status = wait_for_exit(&mut run, Duration::from_secs(180), "the production run");
    assert_eq!(status.code(), Some(1));
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "rolled_back", "{production}");
    let reason = production["outcome"]["rollback_reason"].as_str().unwrap();
    assert!(reason.contains("error_rate") && reason.contains("is above the trigger 5%"), "{reason}");
    assert!(reason.contains("source: prometheus http://127.0.0.1:"), "{reason}");
    assert_eq!(calls(&ws), ["deploy 1.0.0", "rollback"]);
    assert!(ws.read_string(R17).contains("error_rate"));
}

#[test]
fn with_auto_rollback_off_a_failing_monitoring_period_waits_for_a_human() {
    let app = TestApp::start(Mode::Healthy);
    let ws = approved_for_production(json!({
        "provider": "command",
        "strategy": "direct",
        "commands": {
            "deploy": format!("{}; {}", log("deploy $OPSFLOW_VERSION"), app_mode("degraded")),
            "rollback": format!("{}; {}", log("rollback"), app_mode("healthy")),
        },
        "health_checks": [{"name": "api", "http": app.url("/health")}],
        "metrics": {"http": app.url("/stats"), "error_rate": "/error_rate"},
    }));
    app.follow(&ws.join("app-mode"));
    edit_json(&ws, CONFIG, |c| c["devops"]["auto_rollback_enabled"] = json!(false));
    ws.run(&["run"]).status(3);
    assert_eq!(calls(&ws), ["deploy 1.0.0"], "nothing was rolled back without a human");
    let reason = task(&ws.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap().to_owned();
    assert!(
        reason.starts_with("rollout paused at monitoring period: error_rate 37.5% is above the trigger 5%"),
        "{reason}"
    );
    assert!(ws.read_string(R17).starts_with("---\ndecision: \"pending\"\n"));
    let report = json_file(&ws, REPORT);
    assert_eq!(report["deployment_summary"]["status"], "failed");
    let issues = report["known_issues"].as_array().unwrap();
    assert!(
        issues.iter().any(|i| i.as_str().unwrap().starts_with("the monitoring period paused for a human decision")),
        "{report}"
    );
    decide(&ws, "rollback", "alice", "errors");
    ws.run(&["run"]).status(1);
    assert_eq!(calls(&ws), ["deploy 1.0.0", "rollback"]);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "rolled_back");
    assert_eq!(json_file(&ws, REPORT)["deployment_summary"]["status"], "rolled_back");
}

#[test]
fn a_human_rollback_of_a_migrated_command_deploy_runs_migrate_down_after_the_rollback() {
    let ws = approved_for_production(json!({
        "provider": "command",
        "strategy": "direct",
        "commands": {
            "migrate": log("migrate"),
            "deploy": log("deploy $OPSFLOW_VERSION"),
            "rollback": log("rollback"),
            "migrate_down": log("migrate_down"),
        },
        "health_checks": [{"name": "ok", "command": "true"}],
    }));
    ws.run(&["run"]).status(0);
    assert_eq!(calls(&ws), ["migrate", "deploy 1.0.0"]);
    ws.write(R17, "---\ndecision: rollback\nunit_id: UNIT-001\ndecided_by: dana\nreason: data looks wrong\n---\n");
    ws.run(&["run"]).status(0);
    assert_eq!(calls(&ws), ["migrate", "deploy 1.0.0", "rollback", "migrate_down"]);
    let history = json_file(&ws, ".opsflow/envs/production/releases.json");
    assert_eq!(history["deployments"][0]["migrated"], true);
    assert_eq!(history["deployments"][0]["status"], "bad");
}

#[test]
fn a_blue_green_command_deploy_that_fails_after_the_switch_switches_back_to_the_old_side() {
    let ws = approved_for_production(json!({
        "provider": "command",
        "strategy": "blue-green",
        "commands": {
            "deploy": log("deploy $OPSFLOW_VERSION to $OPSFLOW_SLOT"),
            "switch": format!("{}; echo $OPSFLOW_SLOT > \"$OPSFLOW_WORKSPACE/live\"", log("switch to $OPSFLOW_SLOT")),
            "rollback": log("rollback"),
        },
        "preview_checks": [{"name": "idle-side", "command": "true"}],
        "health_checks": [{"name": "live-side", "command": "test \"$(cat \"$OPSFLOW_WORKSPACE/live\")\" != green"}],
    }));
    ws.run(&["run"]).status(0);
    assert_eq!(calls(&ws), ["deploy 1.0.0 to blue", "switch to blue"]);
    release(&ws, "1.1.0");
    ws.run(&["run"]).status(1);
    assert_eq!(
        calls(&ws)[2..],
        ["deploy 1.1.0 to green", "switch to green", "switch to blue"],
        "the old side was kept and switched back to at once"
    );
    assert_eq!(ws.read_string("live").trim(), "blue");
    assert_eq!(status_of(&ws, "PROD-110"), "failed");
    let history = json_file(&ws, ".opsflow/envs/production/releases.json");
    let sides: Vec<(&str, &str)> = history["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["dir"].as_str().unwrap(), d["status"].as_str().unwrap()))
        .collect();
    assert_eq!(sides, [("blue", "good"), ("green", "bad")]);
}
