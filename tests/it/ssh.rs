//! The `ssh` provider against real OpenSSH servers on loopback ([`crate::sshd`]): several
//! servers stand for several hosts, each with its own directory as its disk. Every test
//! drives the real binary and asserts what a user sees: the exit code, where `current`
//! points on each host, the environment's record and `history`, the reports.

use std::time::Duration;

use serde_json::{Value, json};

use crate::engine::{CONFIG, edit_json, json_file, status_of};
use crate::rollout::{approved_for_production, release};
use crate::sshd::{Client, Sshd, user};
use crate::util::{Workspace, task, wait_for_exit, wait_until};

const RECORD: &str = ".opsflow/envs/production/releases.json";
const R13: &str = "docs/workflow/artifacts/R13-prod-deploy.md";

/// An `ssh` production over `hosts` (named h1, h2, ...), reached with `client`; `extra`
/// keys are set on top. Each host's `restart` appends `HOST VERSION` to `restarts.log` in
/// the first host's directory's parent, so a test reads the order hosts were switched in.
fn production(client: &Client, hosts: &[&Sshd], restarts: &std::path::Path, extra: Value) -> Value {
    let hosts: Vec<Value> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            json!({"name": format!("h{}", i + 1), "host": "127.0.0.1", "port": h.port, "user": user(),
                   "path": h.root().display().to_string()})
        })
        .collect();
    let mut env = json!({
        "provider": "ssh",
        "hosts": hosts,
        "ssh_options": client.options(),
        "requires_approval": true,
        "shared_dirs": ["storage"],
        "restart": format!("echo \"$OPSFLOW_HOST $OPSFLOW_VERSION\" >> '{}'", restarts.display()),
        "health_checks": [{"name": "index-present", "command": "test -f index.html"}],
        "smoke_tests": [{"name": "homepage-title", "command": "grep -q 'Acme Shop' index.html"}],
    });
    for (key, value) in extra.as_object().unwrap() {
        env[key] = value.clone();
    }
    env
}

fn restarts(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn history(ws: &Workspace) -> Value {
    let run = ws.run(&["history", "production", "--json"]);
    run.status(0);
    run.json()
}

/// Everything one test needs: a client, `n` hosts, and the restart log.
fn fleet(n: usize) -> (Client, Vec<Sshd>, tempfile::TempDir) {
    let client = Client::new();
    let hosts = (0..n).map(|_| Sshd::start(&client)).collect();
    (client, hosts, tempfile::tempdir().unwrap())
}

#[test]
fn recreate_deploys_to_every_host_and_the_record_says_what_each_runs() {
    let (client, hosts, logs) = fleet(2);
    let log = logs.path().join("restarts.log");
    let ws = approved_for_production(production(&client, &[&hosts[0], &hosts[1]], &log, json!({})));
    let run = ws.run(&["run"]);
    run.status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed", "{}", run.stdout());
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.0.0"));
        let index = std::fs::read_to_string(host.root().join("current/index.html")).unwrap();
        assert!(index.contains("Acme Shop"), "{index}");
        // The shared directory is linked into the release.
        let storage = std::fs::read_link(host.root().join("current/storage")).unwrap();
        assert_eq!(storage, host.root().join("shared/storage"));
        assert!(!host.root().join(".opsflow-lock").exists(), "the host's deploy lock is released");
    }
    assert_eq!(restarts(&log), ["h1 1.0.0", "h2 1.0.0"]);
    let record = json_file(&ws, RECORD);
    assert_eq!(record["hosts"], json!({"h1": "UNIT-001@1.0.0", "h2": "UNIT-001@1.0.0"}));
    assert_eq!(record["deployments"][0]["hosts"], record["hosts"]);
    assert_eq!(record["deployments"][0]["status"], "good");
    let history = history(&ws);
    assert_eq!(history["deployments"][0]["hosts"], json!({"h1": "UNIT-001@1.0.0", "h2": "UNIT-001@1.0.0"}));
    assert_eq!(history["hosts"], json!({"h1": "UNIT-001@1.0.0", "h2": "UNIT-001@1.0.0"}));
    let status = ws.run(&["status"]).stdout();
    assert!(status.contains("h1 runs UNIT-001 1.0.0"), "{status}");
    assert!(status.contains("h2 runs UNIT-001 1.0.0"), "{status}");
    let r13 = ws.read_string(R13);
    assert!(r13.contains("index-present on h2"), "R13 names each host's check:\n{r13}");
    assert!(!r13.contains("the local provider"), "R13 says what the ssh provider did:\n{r13}");
    assert!(r13.contains("copied to each host over ssh"), "{r13}");
    let report = json_file(&ws, "ARTIFACTS/devops-engineer/deployment-report.json");
    assert_eq!(report["infrastructure"]["region"], "ssh hosts", "{report}");
}

#[test]
fn pruning_keeps_the_live_and_last_good_release_and_rollback_switches_every_host_back() {
    let (client, hosts, logs) = fleet(2);
    let log = logs.path().join("restarts.log");
    let ws = approved_for_production(production(&client, &[&hosts[0], &hosts[1]], &log, json!({"keep_releases": 1})));
    ws.run(&["run"]).status(0);
    for version in ["1.1.0", "1.2.0"] {
        release(&ws, version);
        let run = ws.run(&["run"]);
        run.status(0);
        assert_eq!(status_of(&ws, &format!("PROD-{}", version.replace('.', ""))), "deployed", "{}", run.stdout());
    }
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.2.0"));
        let kept = crate::util::snapshot_of(&host.root().join("releases/UNIT-001"));
        assert!(kept.contains_key(std::path::Path::new("1.1.0")), "the last good release is kept");
        assert!(!kept.contains_key(std::path::Path::new("1.0.0")), "1.0.0 is pruned");
    }
    let record = json_file(&ws, RECORD);
    assert_eq!(record["deployments"][0]["pruned"], true, "{record}");

    let run = ws.run(&["rollback", "production", "--reason", "checkout broke"]);
    run.status(0);
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.1.0"), "{}", run.stdout());
    }
    let history = history(&ws);
    assert_eq!(history["hosts"], json!({"h1": "UNIT-001@1.1.0", "h2": "UNIT-001@1.1.0"}));
    let rows = history["deployments"].as_array().unwrap();
    assert_eq!(rows[0]["release"], "UNIT-001 1.2.0");
    assert_eq!(rows[0]["status"], "bad");
    assert_eq!(rows[0]["hosts"], json!({"h1": "UNIT-001@1.1.0", "h2": "UNIT-001@1.1.0"}));
    assert_eq!(history["live"].as_str().map(|l| l.starts_with("UNIT-001 1.1.0")), Some(true), "{history}");
    // The rollback restarted each host on the restored release.
    assert_eq!(restarts(&log).last().map(String::as_str), Some("h2 1.1.0"), "{:?}", restarts(&log));
    // 1.0.0 is gone from the hosts: a rollback to it is refused, naming what can be restored.
    let refused = ws.run(&["rollback", "production", "--to", "1.0.0"]);
    refused.status(2);
    assert!(refused.stderr().contains("no good release 1.0.0 is kept"), "{}", refused.stderr());
}

#[test]
fn rolling_switches_a_batch_at_a_time_and_a_failure_switches_every_finished_batch_back() {
    let (client, hosts, logs) = fleet(3);
    let log = logs.path().join("restarts.log");
    let env = production(
        &client,
        &[&hosts[0], &hosts[1], &hosts[2]],
        &log,
        json!({
            "strategy": "rolling",
            "batches": 3,
            // 1.1.0 is unhealthy on h2 only.
            "health_checks": [{"name": "healthy", "command": "test -f index.html && { [ \"$OPSFLOW_HOST\" != h2 ] || [ \"$OPSFLOW_VERSION\" != 1.1.0 ]; }"}],
            "analysis": {"interval": "50ms", "count": 1},
        }),
    );
    let ws = approved_for_production(env);
    ws.run(&["run"]).status(0);
    assert_eq!(restarts(&log), ["h1 1.0.0", "h2 1.0.0", "h3 1.0.0"]);
    release(&ws, "1.1.0");
    let run = ws.run(&["run"]);
    run.status(1);
    assert_eq!(status_of(&ws, "PROD-110"), "failed", "{}", run.stdout());
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.0.0"), "{}", run.stdout());
    }
    // h1 and h2 went to 1.1.0 and back; h3 was never switched.
    assert_eq!(
        restarts(&log)[3..],
        ["h1 1.1.0", "h2 1.1.0", "h1 1.0.0", "h2 1.0.0"],
        "h1 and h2 restart on 1.0.0 once switched back"
    );
    let record = json_file(&ws, RECORD);
    assert_eq!(record["hosts"], json!({"h1": "UNIT-001@1.0.0", "h2": "UNIT-001@1.0.0", "h3": "UNIT-001@1.0.0"}));
    let failed = &record["deployments"][1];
    assert_eq!(failed["status"], "bad");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("batch 2 of 3") && reason.contains("healthy on h2"), "{reason}");
    let r13 = ws.read_string(R13);
    assert!(r13.contains("batch 1 of 3: passed"), "{r13}");
}

#[test]
fn canary_switches_the_canary_host_first_and_the_rest_after_its_analysis() {
    let (client, hosts, logs) = fleet(3);
    let log = logs.path().join("restarts.log");
    let mut env = production(
        &client,
        &[&hosts[0], &hosts[1], &hosts[2]],
        &log,
        json!({"strategy": "canary", "canary_steps": [30, 100], "analysis": {"interval": "50ms", "count": 2}}),
    );
    env["hosts"][2]["roles"] = json!(["canary"]);
    let ws = approved_for_production(env);
    let run = ws.run(&["run"]);
    run.status(0);
    assert_eq!(restarts(&log), ["h3 1.0.0", "h1 1.0.0", "h2 1.0.0"], "{}", run.stdout());
    let r13 = ws.read_string(R13);
    assert!(r13.contains("canary step 1 of 2 (30%, 1 of 3 hosts): passed"), "{r13}");
    assert!(r13.contains("canary step 2 of 2 (100%, 3 of 3 hosts): passed"), "{r13}");
    assert_eq!(
        json_file(&ws, "ARTIFACTS/devops-engineer/deployment-report.json")["deployment_summary"]["deployment_method"],
        "canary"
    );
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.0.0"));
    }
}

#[test]
fn a_changed_host_key_is_refused_naming_the_host_and_nothing_is_switched_anywhere() {
    let (client, hosts, logs) = fleet(2);
    let log = logs.path().join("restarts.log");
    // h2's key in known_hosts is another server's: as if h2 had been replaced.
    let impostor = Sshd::start(&Client::new());
    let text = std::fs::read_to_string(client.known_hosts()).unwrap();
    let h2 = format!("[127.0.0.1]:{} ", hosts[1].port);
    let forged: String = text
        .lines()
        .map(|line| if line.starts_with(&h2) { format!("{h2}{}", impostor.host_key.trim()) } else { line.to_owned() })
        .map(|line| line + "\n")
        .collect();
    std::fs::write(client.known_hosts(), forged).unwrap();
    let ws = approved_for_production(production(&client, &[&hosts[0], &hosts[1]], &log, json!({})));
    let run = ws.run(&["run"]);
    run.status(1);
    let reason = task(&ws.tasks(), "DEVOPS-007")["failure_reason"].as_str().unwrap_or_default().to_owned();
    let said = format!("{}{}{reason}", run.stdout(), run.stderr());
    assert!(said.contains("the host key of h2 changed"), "{said}");
    for host in &hosts {
        assert_eq!(host.current(), None, "nothing is switched on any host");
    }
    assert!(!hosts[0].root().join(".opsflow-lock").exists(), "the lock taken on h1 is given back");
    assert!(restarts(&log).is_empty());
}

#[test]
fn a_host_that_goes_away_mid_deploy_is_named_and_the_record_says_what_each_host_runs() {
    let (client, mut hosts, logs) = fleet(2);
    let log = logs.path().join("restarts.log");
    let waiting = logs.path().join("h2-waiting");
    let check = format!(
        "test -f index.html && {{ [ \"$OPSFLOW_HOST\" != h2 ] || {{ touch '{}'; while :; do sleep 0.05; done; }}; }}",
        waiting.display()
    );
    let env = production(
        &client,
        &[&hosts[0], &hosts[1]],
        &log,
        json!({"health_checks": [{"name": "waits", "command": check, "timeout": "60s"}]}),
    );
    let ws = approved_for_production(env);
    let mut child = ws.command(&["run"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    wait_until(Duration::from_secs(60), "the health check on h2 to start", || waiting.exists());
    hosts[1].kill();
    let status = wait_for_exit(&mut child, Duration::from_secs(60), "the deploy whose host went away");
    assert_eq!(status.code(), Some(1));
    // h1 was switched back (a first release: taken down); h2 could not be reached.
    assert_eq!(hosts[0].current(), None);
    let record = json_file(&ws, RECORD);
    assert_eq!(record["hosts"], json!({"h1": "none", "h2": "UNIT-001@1.0.0"}), "{record}");
    let reason = record["deployments"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("h2 is unreachable"), "{reason}");
    assert!(reason.contains("h2 could not be switched back"), "{reason}");
    assert_eq!(record["deployments"][0]["status"], "bad");
}

#[test]
fn hostile_versions_reach_the_hosts_as_plain_text() {
    let (client, hosts, logs) = fleet(1);
    let log = logs.path().join("restarts.log");
    let evil = "1.0.0'$(touch${IFS}pwned-q)`touch${IFS}pwned-b`;touch${IFS}pwned-s";
    let seen = logs.path().join("seen");
    let mut env = production(&client, &[&hosts[0]], &log, json!({}));
    env["smoke_tests"] =
        json!([{"name": "values", "command": format!("printf '%s\\n' \"$OPSFLOW_VERSION\" > '{}'", seen.display())}]);
    let ws = Workspace::new().sample();
    edit_json(&ws, "docs/workflow/tasks.json", |t| {
        for task in t["tasks"].as_array_mut().unwrap() {
            if task.get("version").is_some() {
                task["version"] = json!(evil);
            }
        }
    });
    let qa =
        ws.read_string("QA/QA-Report-UNIT-001.md").replace("version: \"1.0.0\"", &format!("version: {}", json!(evil)));
    ws.write("QA/QA-Report-UNIT-001.md", qa);
    edit_json(&ws, "ARTIFACTS/qa-engineer/qa-test-report.json", |qa| qa["version"] = json!(evil));
    let r04 = "docs/workflow/artifacts/R04-merge-result.md";
    let merged = ws.read_string(r04).replace("version: 1.0.0", &format!("version: {}", json!(evil)));
    ws.write(r04, merged);
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["production"] = env;
        c["devops"]["monitoring_period"] = json!("200ms");
        c["devops"]["monitoring_interval"] = json!("100ms");
    });
    ws.run(&["run"]).status(3);
    crate::engine::approve(&ws, "alice");
    let run = ws.run(&["run"]);
    run.status(0);
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), format!("{evil}\n"));
    assert_eq!(hosts[0].current(), Some(format!("releases/UNIT-001/{evil}")), "{}", run.stdout());
    for dir in [hosts[0].root(), ws.path().to_owned(), logs.path().to_owned()] {
        for name in ["pwned-q", "pwned-b", "pwned-s"] {
            assert!(!dir.join(name).exists(), "{name} in {}", dir.display());
            assert!(!hosts[0].root().join("current").join(name).exists());
        }
    }
    // A home directory is where a remote login shell starts.
    if let Some(home) = std::env::var_os("HOME") {
        assert!(!std::path::Path::new(&home).join("pwned-q").exists());
    }
}

#[test]
fn two_runners_never_deploy_to_one_host_at_once() {
    let (client, hosts, logs) = fleet(1);
    let log = logs.path().join("restarts.log");
    let waiting = logs.path().join("first-waiting");
    let go = logs.path().join("go");
    let check = format!(
        "test -f index.html && {{ [ -f '{go}' ] || {{ touch '{waiting}'; while [ ! -f '{go}' ]; do sleep 0.05; done; }}; }}",
        go = go.display(),
        waiting = waiting.display()
    );
    let env = production(&client, &[&hosts[0]], &log, json!({"health_checks": [{"name": "gate", "command": check}]}));
    let first = approved_for_production(env.clone());
    let second = approved_for_production(env);
    let mut child = first.command(&["run"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    wait_until(Duration::from_secs(60), "the first runner to hold the host", || waiting.exists());
    let refused = second.run(&["run"]);
    refused.status(3);
    let reason = task(&second.tasks(), "DEVOPS-007")["blocked_reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("the deploy lock of production on h1"), "{reason}");
    assert!(reason.contains(&format!("is held by pid {}", child.id())), "the holder is named: {reason}");
    std::fs::write(&go, "").unwrap();
    let status = wait_for_exit(&mut child, Duration::from_secs(60), "the first runner");
    assert_eq!(status.code(), Some(0));
    // Once the lock is free the second runner deploys.
    second.run(&["run"]).status(0);
    assert_eq!(status_of(&second, "DEVOPS-007"), "deployed");
    assert_eq!(hosts[0].current().as_deref(), Some("releases/UNIT-001/1.0.0"));
}

/// The deployment log (`Deploy-UNIT-001.md`) with its timeline.
fn report(ws: &Workspace) -> String {
    ws.read_string("docs/workflow/deployments/Deploy-UNIT-001.md")
}

/// The run log of step `step` of the run that task `id` last ran.
fn run_log(ws: &Workspace, id: &str, step: &str) -> Option<String> {
    let run_id = task(&ws.tasks(), id)["run_id"].as_str().unwrap_or_default().to_owned();
    std::fs::read_to_string(ws.join(&format!(".opsflow/runs/{run_id}/{step}.log"))).ok()
}

#[test]
fn releases_go_over_rsync_with_the_ssh_options_and_link_to_the_live_release() {
    let (client, hosts, logs) = fleet(2);
    let log = logs.path().join("restarts.log");
    let ws = approved_for_production(production(&client, &[&hosts[0], &hosts[1]], &log, json!({})));
    let run = ws.run(&["run"]);
    run.status(0);
    let report = report(&ws);
    assert!(report.contains("Artifacts uploaded to releases/UNIT-001/1.0.0 on h1 (rsync), h2 (rsync)"), "{report}");
    for name in ["h1", "h2"] {
        let upload = run_log(&ws, "DEVOPS-007", &format!("upload-rsync-{name}")).expect("an rsync step per host");
        assert!(upload.contains("$ rsync -a -s -e \"$OPSFLOW_RSYNC_SSH\" -- "), "{upload}");
        assert!(upload.contains("# exit code 0"), "{upload}");
    }
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.0.0"));
        let index = std::fs::read_to_string(host.root().join("current/index.html")).unwrap();
        assert!(index.contains("Acme Shop"), "{index}");
        assert_eq!(
            std::fs::read_link(host.root().join("current/storage")).unwrap(),
            host.root().join("shared/storage")
        );
        let leftovers: Vec<_> = std::fs::read_dir(host.root())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".incoming"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary upload is left: {leftovers:?}");
    }
    // The next release is sent against the live one.
    release(&ws, "1.1.0");
    let run = ws.run(&["run"]);
    run.status(0);
    let upload = run_log(&ws, "PROD-110", "upload-rsync-h2").expect("rsync again");
    assert!(upload.contains("--link-dest=../current -e"), "{upload}");
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.1.0"), "{}", run.stdout());
        assert!(host.root().join("releases/UNIT-001/1.0.0/index.html").is_file(), "the previous release is kept");
    }
}

#[test]
fn a_host_without_rsync_gets_the_release_as_a_tar_stream() {
    let client = Client::new();
    let hosts = [Sshd::start(&client), Sshd::start_without_rsync(&client)];
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("restarts.log");
    let ws = approved_for_production(production(&client, &[&hosts[0], &hosts[1]], &log, json!({})));
    let run = ws.run(&["run"]);
    run.status(0);
    let report = report(&ws);
    assert!(report.contains("on h1 (rsync), h2 (tar)"), "{report}");
    assert!(run_log(&ws, "DEVOPS-007", "upload-rsync-h1").is_some());
    assert!(run_log(&ws, "DEVOPS-007", "upload-rsync-h2").is_none(), "rsync is not tried on h2");
    let prepare = run_log(&ws, "DEVOPS-007", "ssh-prepare-h2").unwrap();
    assert!(prepare.contains("\ntar\n"), "h2 says it has no rsync: {prepare}");
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.0.0"));
        let index = std::fs::read_to_string(host.root().join("current/index.html")).unwrap();
        assert!(index.contains("Acme Shop"), "{index}");
    }
    assert_eq!(json_file(&ws, RECORD)["hosts"], json!({"h1": "UNIT-001@1.0.0", "h2": "UNIT-001@1.0.0"}));
}

/// The sample workspace with its unit called `unit` and its release `version` everywhere a
/// workflow file names them.
fn renamed_release(unit: &str, version: &str) -> Workspace {
    let ws = Workspace::new().sample();
    for file in [
        "docs/workflow/tasks.json",
        "docs/workflow/artifacts/D21-release-candidate.md",
        "docs/workflow/artifacts/INFRA01-requirements.md",
        "docs/workflow/artifacts/INFRA02-compute-needs.md",
        "docs/workflow/artifacts/INFRA03-storage-needs.md",
        "docs/workflow/artifacts/R04-merge-result.md",
        "QA/QA-Report-UNIT-001.md",
        "ARTIFACTS/qa-engineer/qa-test-report.json",
    ] {
        let text = ws.read_string(file).replace("UNIT-001", unit);
        std::fs::remove_file(ws.join(file)).unwrap();
        ws.write(&file.replace("UNIT-001", unit), text);
    }
    edit_json(&ws, "docs/workflow/tasks.json", |t| {
        for task in t["tasks"].as_array_mut().unwrap() {
            if task.get("version").is_some() {
                task["version"] = json!(version);
            }
        }
    });
    let qa = format!("QA/QA-Report-{unit}.md");
    ws.write(&qa, ws.read_string(&qa).replace("version: \"1.0.0\"", &format!("version: {}", json!(version))));
    edit_json(&ws, "ARTIFACTS/qa-engineer/qa-test-report.json", |qa| qa["version"] = json!(version));
    let r04 = "docs/workflow/artifacts/R04-merge-result.md";
    ws.write(r04, ws.read_string(r04).replace("version: 1.0.0", &format!("version: {}", json!(version))));
    ws
}

#[test]
fn a_hostile_unit_id_and_version_reach_the_host_as_plain_text() {
    let (client, hosts, logs) = fleet(1);
    let log = logs.path().join("restarts.log");
    // What the path component rules let through: no `/`, `..`, `\` or control characters.
    let unit = "U-$(touch pwned-u)'`touch pwned-b`;touch pwned-s;*&|<>";
    let version = "1.0.0'$(touch${IFS}pwned-q)\"x\"";
    let seen = logs.path().join("seen");
    let mut env = production(&client, &[&hosts[0]], &log, json!({}));
    env["smoke_tests"] = json!([{"name": "values", "command": format!(
        "printf '%s\\n' \"$OPSFLOW_UNIT_ID\" \"$OPSFLOW_VERSION\" \"$(basename \"$(pwd -P)\")\" > '{}'", seen.display()
    )}]);
    let ws = renamed_release(unit, version);
    edit_json(&ws, CONFIG, |c| {
        c["environments"]["production"] = env;
        c["devops"]["monitoring_period"] = json!("200ms");
        c["devops"]["monitoring_interval"] = json!("100ms");
    });
    let first = ws.run(&["run"]);
    first.status(3);
    crate::engine::approve(&ws, "alice");
    let run = ws.run(&["run"]);
    run.status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed", "{}", run.stdout());
    // Directory names and environment values on the host are the text itself.
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), format!("{unit}\n{version}\n{version}\n"));
    assert_eq!(hosts[0].current(), Some(format!("releases/{unit}/{version}")));
    assert!(hosts[0].root().join("releases").join(unit).join(version).join("index.html").is_file());
    let record = json_file(&ws, RECORD);
    assert_eq!(record["hosts"]["h1"], json!(format!("{unit}@{version}")), "{record}");
    let mut places =
        vec![hosts[0].root(), hosts[0].root().join("current"), ws.path().to_owned(), logs.path().to_owned()];
    places.extend(std::env::var_os("HOME").map(std::path::PathBuf::from));
    for dir in places {
        for name in ["pwned-u", "pwned-b", "pwned-s", "pwned-q"] {
            assert!(!dir.join(name).exists(), "{name} in {}", dir.display());
        }
    }
}

#[test]
fn a_unit_id_that_would_leave_its_directory_is_refused_before_any_host_is_touched() {
    let (client, hosts, logs) = fleet(1);
    let log = logs.path().join("restarts.log");
    let env = production(&client, &[&hosts[0]], &log, json!({}));
    let ws = renamed_release("UNIT-..-escape", "1.0.0");
    edit_json(&ws, CONFIG, |c| c["environments"]["production"] = env);
    let run = ws.run(&["run"]);
    assert_ne!(run.code(), Some(0), "{}", run.stdout());
    let said = format!("{}{}{}", run.stdout(), run.stderr(), serde_json::to_string(&ws.tasks()).unwrap());
    assert!(said.contains("UNIT-..-escape"), "the refusal names the unit id: {said}");
    assert!(said.contains("must not contain `..`"), "{said}");
    assert_eq!(
        std::fs::read_dir(hosts[0].root()).unwrap().count(),
        0,
        "nothing reached the host: no lock, no upload, no link"
    );
    assert!(restarts(&log).is_empty());
}

#[test]
fn a_full_disk_on_one_host_stops_the_deploy_before_any_switch_and_names_the_host() {
    let Some(disk) = crate::faults::SmallDisk::mount(8) else { return };
    let (client, hosts, logs) = fleet(2);
    let log = logs.path().join("restarts.log");
    let h2_root = disk.path().join("srv");
    let mut env = production(&client, &[&hosts[0], &hosts[1]], &log, json!({}));
    env["hosts"][1]["path"] = json!(h2_root.display().to_string());
    let ws = approved_for_production(env);
    ws.run(&["run"]).status(0);
    assert_eq!(std::fs::read_link(h2_root.join("current")).unwrap().to_string_lossy(), "releases/UNIT-001/1.0.0");
    release(&ws, "1.1.0");
    // A page for the host's lock, none for the release.
    disk.fill_leaving(4096);
    let run = ws.run(&["run"]);
    run.status(1);
    assert_eq!(status_of(&ws, "PROD-110"), "failed");
    let reason = run.stdout().lines().find(|l| l.starts_with("PROD-110")).unwrap_or_default().to_owned();
    assert!(reason.contains("failed at `upload`: the disk of h2 is full"), "{}", run.stdout());
    assert!(reason.contains("No space left on device"), "{reason}");
    assert!(!reason.contains("h1"), "only h2 is named: {reason}");
    let record = json_file(&ws, RECORD);
    assert!(
        record["deployments"].as_array().unwrap().iter().all(|d| d["version"] != "1.1.0"),
        "a release that reached no host is not in the record: {record}"
    );
    // Nothing was switched anywhere; both hosts still run 1.0.0.
    assert_eq!(hosts[0].current().as_deref(), Some("releases/UNIT-001/1.0.0"));
    assert_eq!(std::fs::read_link(h2_root.join("current")).unwrap().to_string_lossy(), "releases/UNIT-001/1.0.0");
    assert!(!h2_root.join("releases/UNIT-001/1.1.0").exists(), "no half upload at the release's name");
    assert_eq!(restarts(&log), ["h1 1.0.0", "h2 1.0.0"], "no host was restarted");
    let expected = json!({"h1": "UNIT-001@1.0.0", "h2": "UNIT-001@1.0.0"});
    assert_eq!(json_file(&ws, RECORD)["hosts"], expected);
    let history = history(&ws);
    assert_eq!(history["hosts"], expected, "{history}");
    assert!(!h2_root.join(".opsflow-lock").exists(), "the lock on the full disk is given back");
    // With room again, the release goes out.
    disk.free();
    ws.run(&["run"]);
    let run = ws.run(&["run"]);
    assert!(matches!(run.code(), Some(0 | 1 | 3)), "{}", run.stderr());
}

#[test]
fn a_host_that_refuses_the_key_is_named_with_permission_denied_and_nothing_is_switched() {
    let client = Client::new();
    let stranger = Client::new();
    // h2 knows only another key.
    let hosts = [Sshd::start(&client), Sshd::start_with(&client, &stranger, "")];
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("restarts.log");
    let ws = approved_for_production(production(&client, &[&hosts[0], &hosts[1]], &log, json!({})));
    let run = ws.run(&["run"]);
    assert_ne!(run.code(), Some(0));
    let reason = task(&ws.tasks(), "DEVOPS-007")["failure_reason"].as_str().unwrap_or_default().to_owned();
    let said = format!("{}{}{reason}", run.stdout(), run.stderr());
    assert!(said.contains("permission denied on h2"), "{said}");
    assert!(said.contains("Permission denied (publickey"), "{said}");
    for host in &hosts {
        assert_eq!(host.current(), None, "nothing is switched on any host");
    }
    assert!(!hosts[0].root().join(".opsflow-lock").exists(), "the lock taken on h1 is given back");
    assert!(restarts(&log).is_empty());
}

#[test]
fn a_paused_canary_over_two_hosts_finishes_on_every_host_after_proceed() {
    let (client, hosts, logs) = fleet(2);
    let log = logs.path().join("restarts.log");
    let figures = logs.path().join("figures-ready");
    let metrics =
        format!("if [ -f '{}' ]; then echo '{{\"error_rate\": 0.1}}'; else echo '{{}}'; fi", figures.display());
    let env = production(
        &client,
        &[&hosts[0], &hosts[1]],
        &log,
        json!({
            "strategy": "canary",
            "canary_steps": [50, 100],
            "analysis": {"interval": "50ms", "count": 2},
            "metrics": {"command": metrics, "error_rate": "/error_rate"},
        }),
    );
    let ws = approved_for_production(env);
    let run = ws.run(&["run"]);
    run.status(3);
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["status"], "blocked", "{production}");
    let reason = production["blocked_reason"].as_str().unwrap();
    assert!(reason.starts_with("rollout paused at canary step 1 of 2"), "{reason}");
    assert_eq!(hosts[0].current().as_deref(), Some("releases/UNIT-001/1.0.0"));
    assert_eq!(hosts[1].current(), None, "h2 waits for the decision");
    assert_eq!(json_file(&ws, RECORD)["hosts"], json!({"h1": "UNIT-001@1.0.0", "h2": "none"}));
    for host in &hosts {
        assert!(!host.root().join(".opsflow-lock").exists(), "a paused rollout holds no host");
    }

    std::fs::write(&figures, "").unwrap();
    crate::rollout::decide_in(
        &ws,
        "docs/workflow/artifacts/R17-rollback-decision.md",
        "proceed",
        "alice",
        "the canary looks fine",
    );
    let run = ws.run(&["run"]);
    run.status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed", "{}", run.stdout());
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.0.0"));
    }
    assert_eq!(restarts(&log), ["h1 1.0.0", "h2 1.0.0"], "h1 is not switched twice");
    let expected = json!({"h1": "UNIT-001@1.0.0", "h2": "UNIT-001@1.0.0"});
    let record = json_file(&ws, RECORD);
    assert_eq!(record["hosts"], expected, "{record}");
    assert_eq!(record["deployments"][0]["status"], "good", "{record}");
    let history = history(&ws);
    assert_eq!(history["hosts"], expected);
    assert_eq!(history["deployments"][0]["hosts"], expected);
    assert!(!ws.join(".opsflow/rollouts/production.json").exists());
}

#[test]
fn recovery_takes_over_the_host_locks_of_a_runner_killed_mid_deploy_and_rolls_every_host_back() {
    let (client, hosts, logs) = fleet(2);
    let log = logs.path().join("restarts.log");
    let waiting = logs.path().join("h2-waiting");
    // On h2 the health check waits (a minute at most), and the runner is killed there.
    let check = format!(
        "test -f index.html && {{ [ \"$OPSFLOW_HOST\" != h2 ] || {{ touch '{}'; i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; }}; }}",
        waiting.display()
    );
    let env = production(
        &client,
        &[&hosts[0], &hosts[1]],
        &log,
        json!({"health_checks": [{"name": "waits", "command": check, "timeout": "90s"}]}),
    );
    let ws = approved_for_production(env);
    let mut first = ws.command(&["run"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    wait_until(Duration::from_secs(60), "the health check on h2 to start", || waiting.exists());
    // SIGKILL: the runner's host locks stay behind.
    first.kill().unwrap();
    first.wait().unwrap();
    for host in &hosts {
        assert_eq!(host.current().as_deref(), Some("releases/UNIT-001/1.0.0"));
        let holder = std::fs::read_to_string(host.root().join(".opsflow-lock/holder")).unwrap();
        assert!(holder.contains(&format!("pid={}", first.id())), "{holder}");
    }

    let mut second = ws.command(&["run"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    let status = wait_for_exit(&mut second, Duration::from_secs(120), "the run that recovers");
    assert_eq!(status.code(), Some(1));
    let production = task(&ws.tasks(), "DEVOPS-007").clone();
    assert_eq!(production["outcome"]["failed_step"], "interrupted", "{production}");
    let summary = production["outcome"]["summary"].as_str().unwrap();
    assert!(summary.contains("took over the host locks left by h1: pid"), "{summary}");
    assert!(summary.contains("production rolled back"), "{summary}");
    for host in &hosts {
        assert_eq!(host.current(), None, "a first release is taken down on every host");
        assert!(!host.root().join(".opsflow-lock").exists(), "the host locks are given back");
    }
    assert_eq!(json_file(&ws, RECORD)["hosts"], json!({"h1": "none", "h2": "none"}));
}
