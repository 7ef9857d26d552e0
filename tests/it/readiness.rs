//! What a task waits on and what in `tasks.json` keeps a task from running, as `status`,
//! `validate` and `run` say it: a dependency whose status sounds finished but is not, an agent
//! that nearly names this runner, a status opsflow does not know, a missing input and who
//! writes it. `status` and `run` give the same reason for the same wait.

use serde_json::{Value, json};

use crate::util::{TASKS, Workspace};

const COMPLETED_WAIT: &str = "TASK-102 (status `completed`; opsflow waits for `done` or `deployed`)";

/// A deployment of this runner that depends on another agent's task marked `completed`.
fn waiting_on_a_completed_task() -> Workspace {
    Workspace::new().file(
        TASKS,
        r#"{"tasks": [
  {"id": "TASK-102", "title": "build the API", "agent": "Task-Coder", "type": "feature", "status": "completed"},
  {"id": "TASK-103", "title": "tests", "agent": "Task-Coder", "type": "feature", "status": "pending"},
  {"id": "D-1", "title": "deploy", "agent": "devops", "type": "deployment_staging", "status": "pending", "depends_on": ["TASK-102", "TASK-103"]}
]}
"#,
    )
}

fn owned<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["tasks"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap_or_else(|| panic!("no task {id}"))
}

#[test]
fn a_dependency_marked_completed_is_named_with_the_statuses_opsflow_waits_for() {
    let ws = waiting_on_a_completed_task();
    let status = ws.run(&["status"]);
    status.status(0);
    assert!(status.stdout().contains(&format!("      waiting on {COMPLETED_WAIT}\n")), "{}", status.stdout());
    assert!(status.stdout().contains("      waiting on TASK-103 (status `pending`)\n"), "{}", status.stdout());

    let run = ws.run(&["run"]);
    run.status(0);
    assert!(
        run.stdout().contains(&format!("waiting    D-1          on {COMPLETED_WAIT}, TASK-103 (status `pending`)")),
        "{}",
        run.stdout()
    );
}

#[test]
fn status_and_run_give_the_same_reason_for_a_wait() {
    let ws = waiting_on_a_completed_task();
    let status = ws.run(&["status", "--json"]);
    status.status(0);
    let status = status.json();
    let run = ws.run(&["run", "--json"]);
    run.status(0);
    let run = run.json();
    let waiting = run["waiting"].as_array().unwrap().iter().find(|w| w["task"] == "D-1").expect("D-1 waits");
    let expected = json!([COMPLETED_WAIT, "TASK-103 (status `pending`)"]);
    assert_eq!(owned(&status, "D-1")["waiting_why"], expected, "{status:#}");
    assert_eq!(waiting["why"], expected, "{run:#}");
    assert_eq!(waiting["on"], owned(&status, "D-1")["waiting_on"]);

    // The sample workspace: the same in a dry run, for every waiting task.
    let ws = Workspace::new().sample();
    let status = ws.run(&["status", "--json"]).json();
    let plan = ws.run(&["run", "--dry-run", "--json"]).json();
    let waiting = plan["waiting"].as_array().unwrap();
    assert!(waiting.len() >= 3, "{plan:#}");
    for wait in waiting {
        assert_eq!(owned(&status, wait["task"].as_str().unwrap())["waiting_why"], wait["why"], "{wait}");
    }
}

#[test]
fn near_misses_of_the_agent_name_are_warnings_in_status_and_validate() {
    let ws = Workspace::new().file(
        TASKS,
        r#"{"tasks": [
  {"id": "A-1", "title": "one", "agent": "DevOps", "type": "deployment_staging", "status": "pending"},
  {"id": "A-2", "title": "two", "agent": "devops-engineer", "type": "infrastructure_design", "status": "pending"},
  {"id": "A-3", "title": "three", "agent": "DevOps Agent", "type": "release_build", "status": "pending"},
  {"id": "A-4", "title": "mine", "agent": "devops", "type": "infrastructure_ci", "status": "done"},
  {"id": "A-5", "title": "theirs", "agent": "Task-Coder", "type": "deployment_staging", "status": "pending"}
]}
"#,
    );
    let validate = ws.run(&["validate"]);
    validate.status(0);
    let stderr = validate.stderr();
    for (index, id, agent) in [(0, "A-1", "DevOps"), (1, "A-2", "devops-engineer"), (2, "A-3", "DevOps Agent")] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("at /tasks/{index}/agent: task {id} has agent `{agent}`")))
            .unwrap_or_else(|| panic!("no warning for {id}: {stderr}"));
        assert!(line.starts_with(&format!("warning: {TASKS}:{}:", index + 2)), "{line}");
        assert!(line.contains("expected one of `DevOps-Engineer`, `devops`, `DEVOPS_ENGINEER_AGENT`"), "{line}");
    }
    assert_eq!(stderr.matches("warning: ").count(), 3, "{stderr}");

    let status = ws.run(&["status"]);
    status.status(0);
    assert!(status.stdout().contains("\nwarnings\n"), "{}", status.stdout());
    assert!(status.stdout().contains("task A-3 has agent `DevOps Agent`, close to `devops`"), "{}", status.stdout());

    let validated = ws.run(&["validate", "--json"]).json();
    let status = ws.run(&["status", "--json"]).json();
    assert_eq!(status["warnings"], validated["warnings"]);
    assert_eq!(status["warnings"].as_array().unwrap().len(), 3, "{status:#}");
}

#[test]
fn statuses_opsflow_does_not_know_are_warnings_naming_the_known_ones() {
    let ws = Workspace::new().file(
        TASKS,
        r#"{"tasks": [
  {"id": "S-1", "title": "one", "agent": "devops", "type": "deployment_staging", "status": "Ready to Deploy"},
  {"id": "S-2", "title": "two", "agent": "devops", "type": "infrastructure_design", "status": "Pending"},
  {"id": "S-3", "title": "three", "agent": "devops", "type": "release_build", "status": "todo"},
  {"id": "S-4", "title": "theirs", "agent": "Task-Coder", "type": "feature", "status": "completed"}
]}
"#,
    );
    let validate = ws.run(&["validate"]);
    validate.status(0);
    let stderr = validate.stderr();
    for (index, id, status) in [(0, "S-1", "Ready to Deploy"), (1, "S-2", "Pending"), (2, "S-3", "todo")] {
        assert!(
            stderr.contains(&format!(
                "at /tasks/{index}/status: task {id} has status `{status}`, which opsflow does not know, so it does not run it; expected one of `pending`, `in_progress`, `blocked`, `done`, `deployed`, `failed`, `rolled_back`, `cancelled`"
            )),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("S-4"), "another agent's status is theirs: {stderr}");

    let status = ws.run(&["status"]);
    status.status(0);
    assert!(status.stdout().contains("task S-2 has status `Pending`"), "{}", status.stdout());
    // Nothing runs, and `run` says so rather than failing.
    let run = ws.run(&["run"]);
    run.status(0);
    assert!(run.stdout().contains("nothing to do"), "{}", run.stdout());
}

#[test]
fn a_missing_input_names_who_writes_it_in_run_and_status() {
    let ws = Workspace::new().sample();
    std::fs::remove_file(ws.join("docs/workflow/artifacts/INFRA01-requirements.md")).unwrap();
    let run = ws.run(&["run"]);
    run.status(3);
    let expected = "(written by the architect agent (INFRA01 to INFRA03))";
    assert!(run.stdout().contains("blocked    DEVOPS-001"), "{}", run.stdout());
    assert!(run.stdout().contains(expected), "{}", run.stdout());
    let status = ws.run(&["status"]);
    let line = status.stdout().lines().find(|l| l.contains("blocked: ")).map(str::to_owned).unwrap_or_default();
    assert!(line.contains("INFRA01-requirements.md") && line.contains(expected), "{}", status.stdout());
}

#[test]
fn one_broken_tasks_file_reads_the_same_in_validate_status_run_and_tasks_list() {
    for (case, text) in [
        (
            "truncated",
            "{\"tasks\": [\n  {\"id\": \"A\", \"title\": \"t\", \"agent\": \"devops\", \"type\": \"deployment_staging\", \"status\": \"pending\"},\n  {\"id\": \"B\", \"ti",
        ),
        (
            "a number too large",
            "{\"tasks\": [\n  {\"id\": \"A\", \"title\": \"t\", \"agent\": \"devops\", \"type\": \"deployment_staging\", \"status\": \"pending\", \"n\": 1e400}\n]}\n",
        ),
        ("not a list", "{\"items\": 3}\n"),
    ] {
        let ws = Workspace::new().file(TASKS, text);
        let validate = ws.run(&["validate", "--json"]);
        validate.status(2);
        let expected = validate.json()["diagnostics"].clone();
        assert!(!expected.as_array().unwrap().is_empty(), "{case}");

        let status = ws.run(&["status", "--json"]);
        status.status(2);
        assert_eq!(status.json()["diagnostics"], expected, "{case}: status --json");

        let run = ws.run(&["run", "--json"]);
        run.status(2);
        assert_eq!(run.json()["problems"], expected, "{case}: run --json");

        // `tasks list --json` prints no half list but the diagnostics `validate --json` has,
        // and the same diagnostics as text on stderr.
        let list = ws.run(&["tasks", "list", "--json"]);
        list.status(2);
        assert_eq!(list.json(), json!({"ok": false, "diagnostics": expected}), "{case}: tasks list --json");
        let validated_text = ws.run(&["validate"]).stdout();
        let lines: Vec<&str> = validated_text.lines().filter(|l| l.starts_with(TASKS)).collect();
        assert_eq!(list.stderr().lines().collect::<Vec<_>>(), lines, "{case}: tasks list");
    }
}
