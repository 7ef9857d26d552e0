//! The commands around the store: `init` scaffolds a workspace that validates and keeps what
//! exists, `status --json` is one document about the owned tasks, and the repository's
//! sample workspace validates.

use serde_json::{Value, json};

use crate::util::{TASKS, Workspace};

/// What `init` scaffolds, in the order it reports.
const SCAFFOLD: [&str; 14] = [
    "project-config.json",
    "app/index.html",
    "docs/workflow/tasks.json",
    "docs/workflow/state.json",
    "docs/workflow/human-requests.md",
    "docs/workflow/.gitignore",
    "docs/workflow/artifacts/.gitkeep",
    "docs/workflow/deployments/.gitkeep",
    "QA/.gitkeep",
    "ARTIFACTS/qa-engineer/.gitkeep",
    "ARTIFACTS/devops-engineer/.gitkeep",
    "ARTIFACTS/system/.gitkeep",
    ".opsflow/.gitignore",
    ".gitignore",
];

#[test]
fn init_scaffolds_a_workspace_that_validates_and_keeps_every_file_on_a_second_run() {
    let parent = Workspace::new();
    let dir = parent.join("new-project");
    let dir_arg = dir.to_str().unwrap();
    let root = parent.path().canonicalize().unwrap().join("new-project");

    let run = parent.run(&["init", dir_arg]);
    run.status(0);
    let mut expected: Vec<String> = SCAFFOLD.iter().map(|f| format!("created  {f}")).collect();
    expected.push(format!("workspace ready: {}", root.display()));
    assert_eq!(until_next_steps(&run.stdout()), expected);
    for file in SCAFFOLD {
        assert!(dir.join(file).is_file(), "{file} was not created");
    }

    let validate =
        std::process::Command::new(crate::util::opsflow_bin()).args(["-C", dir_arg, "validate"]).output().unwrap();
    assert_eq!(validate.status.code(), Some(0), "{}", String::from_utf8_lossy(&validate.stdout));
    assert_eq!(String::from_utf8_lossy(&validate.stdout), "ok: 3 files valid\n");

    // The scaffold is a workspace the task commands work in.
    let add = std::process::Command::new(crate::util::opsflow_bin())
        .args(["-C", dir_arg, "tasks", "add", "--title", "first", "--owner", "devops", "--type", "release_build"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&add.stdout), "TASK-001\n", "{}", String::from_utf8_lossy(&add.stderr));
    std::fs::write(dir.join("docs/workflow/human-requests.md"), "# Edited by a human\n").unwrap();
    std::fs::remove_file(dir.join("QA/.gitkeep")).unwrap();
    let tasks_before = std::fs::read(dir.join(TASKS)).unwrap();

    // A second run keeps every file as it is and only fills in what is missing.
    let run = parent.run(&["init", dir_arg]);
    run.status(0);
    let mut expected: Vec<String> = SCAFFOLD
        .iter()
        .map(|f| if *f == "QA/.gitkeep" { format!("created  {f}") } else { format!("kept     {f}") })
        .collect();
    expected.push(format!("workspace ready: {}", root.display()));
    assert_eq!(until_next_steps(&run.stdout()), expected);
    assert_eq!(std::fs::read(dir.join(TASKS)).unwrap(), tasks_before);
    assert_eq!(std::fs::read_to_string(dir.join("docs/workflow/human-requests.md")).unwrap(), "# Edited by a human\n");
}

/// The lines `init` prints before its next steps.
fn until_next_steps(stdout: &str) -> Vec<&str> {
    stdout.lines().take_while(|line| !line.is_empty()).collect()
}

#[test]
fn init_without_a_directory_uses_the_workspace_directory() {
    let ws = Workspace::new();
    ws.run(&["init"]).status(0);
    for file in SCAFFOLD {
        assert!(ws.join(file).is_file(), "{file} was not created");
    }
    ws.run(&["validate"]).status(0);
}

#[test]
fn the_repository_sample_workspace_validates() {
    let ws = Workspace::new().sample();
    let run = ws.run(&["validate"]);
    run.status(0);
    let stdout = run.stdout();
    assert!(stdout.starts_with("ok: ") && stdout.ends_with(" files valid\n"), "{stdout}");

    let report = ws.run(&["validate", "--json"]);
    report.status(0);
    let report = report.json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["diagnostics"], json!([]));
    let checked: Vec<&str> = report["checked"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    for file in ["project-config.json", TASKS, "docs/workflow/state.json", "QA/QA-Report-UNIT-001.md"] {
        assert!(checked.contains(&file), "{file} was not checked: {checked:?}");
    }
}

fn owned_task<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["tasks"]
        .as_array()
        .expect("`tasks` is an array")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed as owned: {status:#}"))
}

#[test]
fn status_json_is_one_document_listing_owned_tasks_and_what_they_wait_on() {
    let ws = Workspace::new().sample();
    let run = ws.run(&["status", "--json"]);
    run.status(0);
    let status = run.json();
    assert_eq!(status["agent"], "DevOps-Engineer");
    assert_eq!(status["workflow"], "devops");
    assert_eq!(status["diagnostics"], json!([]));

    // Only owned tasks: the DevOps agent's, of DevOps types; not QA's, not the product manager's.
    let ids: Vec<&str> = status["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| id.starts_with("DEVOPS-")), "{ids:?}");
    assert!(ids.contains(&"DEVOPS-001") && ids.contains(&"DEVOPS-006"), "{ids:?}");

    assert_eq!(owned_task(&status, "DEVOPS-001")["waiting_on"], json!([]));
    assert_eq!(owned_task(&status, "DEVOPS-002")["waiting_on"], json!(["DEVOPS-001"]));
    assert_eq!(owned_task(&status, "DEVOPS-006")["waiting_on"], json!(["DEVOPS-004", "DEVOPS-005"]));

    // Finishing a dependency releases what waits on it.
    ws.run(&["tasks", "update", "DEVOPS-001", "--set", "status=done"]).status(0);
    let status = ws.run(&["status", "--json"]).json();
    assert_eq!(owned_task(&status, "DEVOPS-001")["status"], "done");
    assert_eq!(owned_task(&status, "DEVOPS-002")["waiting_on"], json!([]));
    assert_eq!(owned_task(&status, "DEVOPS-004")["waiting_on"], json!([]));
}

#[test]
fn status_reports_problems_of_owned_tasks_and_exits_2() {
    let ws = Workspace::new().file(
        TASKS,
        r#"{"tasks": [
  {"id": "D-1", "title": "deploy", "agent": "devops", "type": "deployment_staging", "status": "pending", "unit_id": "../x"},
  {"id": "D-2", "title": "waits", "agent": "devops", "type": "deployment_production", "status": "pending", "depends_on": ["D-1"]}
]}
"#,
    );
    let run = ws.run(&["status", "--json"]);
    run.status(2);
    let status = run.json();
    let problems = owned_task(&status, "D-1")["problems"].as_array().unwrap().clone();
    assert!(
        !problems.is_empty() && problems.iter().all(|p| p.as_str().unwrap().contains("/tasks/0/unit_id")),
        "{problems:?}"
    );
    assert_eq!(owned_task(&status, "D-2")["waiting_on"], json!(["D-1"]));
}

#[test]
fn validate_counts_one_problem_in_the_singular() {
    let ws = Workspace::new().sample();
    ws.write(TASKS, "");
    let run = ws.run(&["validate"]);
    run.status(2);
    let stdout = run.stdout();
    assert_eq!(stdout.lines().next(), Some("docs/workflow/tasks.json:1:1: invalid JSON: EOF while parsing a value"));
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("1 problem in 1 of ") && last.ends_with(" files"), "{stdout}");
}

/// Emacs keeps `.#NAME` beside a file open for editing, a symlink to a name that does not
/// exist (`user@host.pid:boot-time`); `validate` and `status` read it as an approval and exited
/// 2, so a CI gate failed while someone edited. Editors' droppings are not workflow files.
#[test]
fn an_emacs_lock_file_does_not_fail_validate() {
    let ws = Workspace::new().sample();
    let nowhere = std::path::Path::new("alice@laptop.4242:1764000000");
    let ws = ws
        .symlink("docs/workflow/artifacts/.#R12-prod-approval.md", nowhere)
        .symlink("QA/.#QA-Report-UNIT-001.md", nowhere)
        .symlink("docs/workflow/deployments/.#R08-staging-deploy.md", nowhere)
        .file("docs/workflow/artifacts/#R12-prod-approval.md#", "---\nbroken: [\n")
        .file("docs/workflow/artifacts/R12-prod-approval.md~", "---\nbroken: [\n")
        .file("docs/workflow/artifacts/.R12-prod-approval.md.swp", [0u8, 159, 146, 150])
        .file("docs/workflow/artifacts/R12-prod-approval.md___jb_tmp___", "---\nbroken: [\n");

    let validate = ws.run(&["validate"]);
    validate.status(0);
    assert!(!validate.stdout().contains(".#") && !validate.stderr().contains(".#"), "{}", validate.stderr());
    let report = ws.run(&["validate", "--json"]);
    report.status(0);
    let checked = report.json()["checked"].to_string();
    assert!(!checked.contains(".#") && !checked.contains('~'), "{checked}");
    ws.run(&["status"]).status(0);
}
