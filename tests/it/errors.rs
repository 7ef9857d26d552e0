//! Errors as a user meets them: a bad duration refused at its key by `validate` and `run`, a
//! write of `state.json` that fails reported with its path, errors of the rollout journal and
//! the instance lock naming their file, and the exit code each kind of error gives.

use serde_json::{Value, json};

use crate::engine::edit_json;
use crate::util::Workspace;

const CONFIG: &str = "project-config.json";

/// A change to the config, as a test applies it.
type ConfigEdit = Box<dyn Fn(&mut Value)>;

/// One bad duration per kind of key: the daemon's (`devops`), a command's timeout, a check's
/// timeout and interval, a metrics source's timeout and an analysis' interval. Each is
/// written in a way the checks must refuse: too long to hold, no unit, two dots.
fn bad_durations() -> Vec<(&'static str, ConfigEdit)> {
    vec![
        (
            "/devops/shutdown_grace",
            Box::new(|c: &mut Value| c["devops"]["shutdown_grace"] = json!("99999999999999999999999d")),
        ),
        ("/devops/poll_interval", Box::new(|c: &mut Value| c["devops"]["poll_interval"] = json!("5"))),
        (
            "/environments/staging/health_checks/0/interval",
            Box::new(|c: &mut Value| c["environments"]["staging"]["health_checks"][0]["interval"] = json!("1.2.3s")),
        ),
        (
            "/environments/staging/health_checks/0/timeout",
            Box::new(|c: &mut Value| {
                c["environments"]["staging"]["health_checks"][0]["timeout"] = json!("99999999999999999999h")
            }),
        ),
        (
            "/environments/production/metrics/timeout",
            Box::new(|c: &mut Value| c["environments"]["production"]["metrics"]["timeout"] = json!("1e400s")),
        ),
        (
            "/environments/production/analysis/interval",
            Box::new(|c: &mut Value| {
                c["environments"]["production"]["analysis"] = json!({"interval": "99999999999999999999999d"})
            }),
        ),
        (
            "/environments/production/commands/deploy/timeout",
            Box::new(|c: &mut Value| {
                c["environments"]["production"]["provider"] = json!("command");
                c["environments"]["production"]["strategy"] = json!("direct");
                c["environments"]["production"]["commands"] =
                    json!({"deploy": {"run": "true", "timeout": "99999999999999999999999d"}});
            }),
        ),
    ]
}

#[test]
fn a_bad_duration_of_every_kind_is_refused_at_its_key_by_validate_and_run_and_nothing_is_written() {
    for (pointer, edit) in bad_durations() {
        let ws = Workspace::new().sample();
        edit_json(&ws, CONFIG, edit);
        let before = ws.snapshot();

        let validate = ws.run(&["validate"]);
        validate.status(2);
        let line = validate
            .stdout()
            .lines()
            .find(|line| line.starts_with("project-config.json:"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{pointer}: validate names no config problem:\n{}", validate.stdout()));
        assert!(line.contains(&format!(": at {pointer}: ")), "{pointer}: {line}");
        assert!(line.contains("duration"), "{pointer}: {line}");

        let run = ws.run(&["run"]);
        run.status(2);
        let stderr = run.stderr();
        assert!(stderr.contains(&format!(": at {pointer}: ")), "{pointer}: {stderr}");
        assert!(stderr.contains("opsflow: error: project-config.json is invalid"), "{pointer}: {stderr}");
        assert!(ws.snapshot() == before, "{pointer}: a refused run changed the workspace");
    }
}

#[test]
fn a_shutdown_grace_too_long_to_hold_is_a_config_error_not_a_fallback() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| c["devops"]["shutdown_grace"] = json!("99999999999999999999999d"));
    let validate = ws.run(&["validate", "--json"]);
    validate.status(2);
    let report = validate.json();
    let problems: Vec<&Value> =
        report["diagnostics"].as_array().unwrap().iter().filter(|d| d["file"] == CONFIG).collect();
    assert_eq!(problems.len(), 1, "{report:#}");
    assert_eq!(problems[0]["pointer"], "/devops/shutdown_grace", "{report:#}");
    assert_eq!(
        problems[0]["message"], "`99999999999999999999999d` is too long a duration; the longest is 36500d (100 years)",
        "{report:#}"
    );
    // The daemon refuses to start on it too, before it takes any lock.
    let watch = ws.run(&["watch"]);
    watch.status(2);
    assert!(
        watch.stderr().contains("at /devops/shutdown_grace: `99999999999999999999999d` is too long"),
        "{}",
        watch.stderr()
    );
}

// What broke: a failed write of `state.json` was dropped (`let _ = edit_state(...)`) when a
// node was claimed or blocked, so a run could end 0 or 3 with the workflow's position on disk
// wrong and nobody told.
#[test]
fn a_state_json_that_cannot_be_written_is_reported_with_its_path_and_fails_the_run() {
    let ws = Workspace::new().sample();
    let state_before = ws.read("docs/workflow/state.json");
    // Every writer of state.json takes its sidecar lock first; a directory there makes each
    // write fail, while the file itself still reads.
    std::fs::create_dir(ws.join("docs/workflow/state.json.lock")).unwrap();

    let run = ws.run(&["run"]);
    run.status(1);
    let stdout = run.stdout();
    let errors: Vec<&str> = stdout.lines().filter(|line| line.starts_with("error ")).collect();
    assert!(!errors.is_empty(), "the failed writes are not reported:\n{stdout}");
    let lock = ws.join("docs/workflow/state.json.lock");
    for line in &errors {
        assert!(line.contains("cannot update docs/workflow/state.json: "), "{line}");
        assert!(line.contains(&lock.display().to_string()), "{line}");
    }
    assert!(run.stderr().contains("ERROR"), "the failed writes are not logged:\n{}", run.stderr());
    // The run stops after the pass that could not record its node, instead of reading the old
    // position again and running the same node once more.
    let ran: Vec<&str> = stdout.lines().filter(|line| !line.starts_with("error ")).collect();
    assert_eq!(ran.len(), 1, "{stdout}");
    assert_eq!(ws.read("docs/workflow/state.json"), state_before, "state.json changed after all");

    let json = ws.run(&["run", "--json"]);
    json.status(1);
    let summary = json.json();
    let reported = summary["write_errors"].as_array().expect("write_errors in run --json");
    assert!(!reported.is_empty(), "{summary:#}");
    assert!(reported.iter().all(|e| e.as_str().unwrap().contains("docs/workflow/state.json")), "{summary:#}");
}

// What broke: a failed append to `human-requests.md` (and a failed write of the completion
// signal, an outcome, a block) was only logged, so a run that could not ask a human for the
// approval it waits on ended 3 as if the request were there.
#[test]
fn a_human_request_that_cannot_be_written_fails_the_run_and_names_the_file() {
    let ws = Workspace::new().sample();
    let requests_before = ws.read(crate::engine::REQUESTS);
    // The first pass of the sample waits on the production approval and asks a human for it.
    std::fs::create_dir(ws.join("docs/workflow/human-requests.md.lock")).unwrap();
    let run = ws.run(&["run", "--json"]);
    run.status(1);
    let summary = run.json();
    let reported = summary["write_errors"].as_array().expect("write_errors in run --json");
    assert!(!reported.is_empty(), "{summary:#}");
    for error in reported {
        assert!(error.as_str().unwrap().starts_with("cannot append to docs/workflow/human-requests.md: "), "{error}");
    }
    assert_eq!(ws.read(crate::engine::REQUESTS), requests_before, "human-requests.md was written after all");
    // What could be recorded was: the task says what it waits on.
    assert!(ws.tasks().iter().any(|t| t["status"] == "blocked"), "{}", ws.read_string("docs/workflow/tasks.json"));
}

/// The exit code of an error that ends a command comes from its kind, and its message names
/// the file it concerns, once.
#[test]
fn each_kind_of_error_ends_with_its_exit_code_and_names_its_file() {
    // A refused edit is bad input: 2.
    let ws = Workspace::new().sample();
    let refused = ws.run(&["tasks", "update", "NO-SUCH-TASK", "--set", "status=done"]);
    refused.status(2);
    assert_eq!(refused.stderr(), "opsflow: error: docs/workflow/tasks.json: no task has the id `NO-SUCH-TASK`\n");

    // A write that fails is a failure of the command: 1, naming the file.
    let ws = Workspace::new().sample();
    let tasks_before = ws.read("docs/workflow/tasks.json");
    std::fs::create_dir(ws.join("docs/workflow/tasks.json.lock")).unwrap();
    let failed = ws.run(&["tasks", "update", "DEVOPS-001", "--set", "status=done"]);
    failed.status(1);
    let stderr = failed.stderr();
    let lock = ws.join("docs/workflow/tasks.json.lock").display().to_string();
    assert!(stderr.starts_with(&format!("opsflow: error: {lock}: ")), "{stderr}");
    assert_eq!(stderr.matches("Is a directory").count(), 1, "the cause is said once: {stderr}");
    assert_eq!(ws.read("docs/workflow/tasks.json"), tasks_before);

    // The runtime directory cannot be created: 1, naming it.
    let ws = Workspace::new().sample();
    ws.write(".opsflow", "a file where the runtime directory belongs\n");
    let failed = ws.run(&["run"]);
    failed.status(1);
    let runtime = ws.path().canonicalize().unwrap().join(".opsflow");
    assert_eq!(
        failed.stderr(),
        format!(
            "opsflow: error: cannot create the runtime directory {}: {} is a file, not a directory\n",
            runtime.display(),
            runtime.display()
        )
    );

    // Outside any workspace: usage, 2.
    let empty = tempfile::tempdir().unwrap();
    let outside = std::process::Command::new(crate::util::opsflow_bin())
        .arg("status")
        .current_dir(empty.path())
        .output()
        .unwrap();
    assert_eq!(outside.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&outside.stderr).contains("not an opsflow workspace"));
}

// What broke: a token given where a duration belongs was repeated verbatim by `validate`,
// `run` and the daemon (and into `/healthz`), and a 20 MB value was printed whole.
#[test]
fn a_secret_or_a_huge_value_given_for_a_duration_is_not_repeated_in_the_error() {
    const TOKEN: &str = "ghp_T0ken/For+The-Deploy";
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["devops"]["poll_interval"] = json!(TOKEN);
        c["devops"]["debounce"] = json!("9".repeat(5000) + "parsecs");
    });
    let validate = ws.command(&["validate"]).env("DEPLOY_TOKEN", TOKEN).output().unwrap();
    assert_eq!(validate.status.code(), Some(2));
    let run = ws.command(&["run"]).env("DEPLOY_TOKEN", TOKEN).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    for output in [&validate, &run] {
        let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!said.contains("ghp_T0ken"), "the token is repeated:\n{said}");
        let poll = said.lines().find(|l| l.contains(": at /devops/poll_interval: ")).unwrap_or_else(|| {
            panic!("the token's key is named:\n{said}");
        });
        assert!(poll.contains("***"), "the token is masked: {poll}");
        let debounce = said.lines().find(|l| l.contains(": at /devops/debounce: ")).unwrap_or_else(|| {
            panic!("the long value's key is named:\n{said}");
        });
        assert!(debounce.contains("\"99999999…\" (5007 characters)"), "quoted by its start and length: {debounce}");
        assert!(debounce.len() < 300, "{debounce}");
    }
}
