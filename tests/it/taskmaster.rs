//! Task Master's own `tasks.json` (`tests/fixtures/taskmaster/`, in the tagged format Task
//! Master writes: tags `master`, `feature-x` and `devops`, integer and string ids, subtasks,
//! `.taskmaster/state.json` naming the current tag) as opsflow's task list. After every
//! command that edits it, a line diff of the file shows only the fields it edited.

use serde_json::{Value, json};

use crate::util::Workspace;

const TASKS: &str = ".taskmaster/tasks/tasks.json";
const STATE: &str = ".taskmaster/state.json";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/taskmaster/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A workspace whose task list is the fixture's, with `config` merged into the config file.
fn workspace(config: Value) -> Workspace {
    let mut full = json!({
        "agent": {"name": "DevOps-Engineer"},
        "paths": {"tasks": TASKS},
    });
    for (key, value) in config.as_object().unwrap() {
        match (full.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more.clone()),
            _ => {
                full[key] = value.clone();
            }
        }
    }
    Workspace::new()
        .file("project-config.json", serde_json::to_vec_pretty(&full).unwrap())
        .file(TASKS, fixture(TASKS))
        .file(STATE, fixture(STATE))
        .file("docs/workflow/state.json", "{\"current_nodes\": [], \"nodes\": {}}\n")
}

/// The lines removed (`-`) and added (`+`) from `before` to `after`, by a longest common
/// subsequence of lines, in order.
fn line_diff(before: &str, after: &str) -> Vec<String> {
    let a: Vec<&str> = before.split('\n').collect();
    let b: Vec<&str> = after.split('\n').collect();
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] { common[i + 1][j + 1] + 1 } else { common[i + 1][j].max(common[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            out.push(format!("-{}", a[i]));
            i += 1;
        } else {
            out.push(format!("+{}", b[j]));
            j += 1;
        }
    }
    out
}

/// The keys of the lines a diff touched, with the lines that only gained a comma (a member
/// added after them) counted as unchanged.
fn keys_changed(diff: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for line in diff {
        let removed_twin = format!("-{}", line[1..].trim_end_matches(','));
        if line.starts_with('+') && line.ends_with(',') && diff.contains(&removed_twin) {
            continue;
        }
        if line.starts_with('-') && diff.contains(&format!("+{},", &line[1..])) {
            continue;
        }
        let key = line[1..].trim().split('"').nth(1).unwrap_or_default().to_owned();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

fn task<'v>(document: &'v Value, tag: &str, id: &Value) -> &'v Value {
    document[tag]["tasks"].as_array().unwrap().iter().find(|t| &t["id"] == id).unwrap()
}

fn ids_listed(ws: &Workspace, args: &[&str]) -> Vec<String> {
    let run = ws.run(args);
    run.status(0);
    run.stdout().lines().skip(1).map(|l| l.split_whitespace().next().unwrap().to_owned()).collect()
}

/// What broke: the tagged form was refused (`"tasks" is a required property`), integer ids were
/// refused (`id must be a string, found 1`) and `tasks update 1` found no task `1`.
#[test]
fn task_masters_tagged_file_with_integer_ids_is_read_and_updated_in_its_current_tag() {
    let ws = workspace(json!({}));
    let run = ws.run(&["validate"]);
    run.status(0);
    assert_eq!(ids_listed(&ws, &["tasks", "list"]), ["1", "2", "3", "4"]);
    let listed = ws.run(&["tasks", "list", "--json"]).json();
    assert_eq!(listed[1]["id"], "2");
    assert_eq!(listed[1]["status"], "in_progress", "Task Master's `in-progress` in opsflow's words");

    let before = ws.read_string(TASKS);
    let run = ws.run(&["tasks", "update", "2", "--set", "status=done"]);
    run.status(0);
    assert_eq!(run.stdout(), "2: updated\n");
    let after = ws.read_string(TASKS);
    let document: Value = serde_json::from_str(&after).unwrap();
    let updated_at = task(&document, "master", &json!(2))["updated_at"].as_str().unwrap().to_owned();
    assert_eq!(
        line_diff(&before, &after),
        [
            "-        \"status\": \"in-progress\",".to_owned(),
            "+        \"status\": \"done\",".to_owned(),
            "-        \"subtasks\": []".to_owned(),
            "+        \"subtasks\": [],".to_owned(),
            format!("+        \"updated_at\": \"{updated_at}\""),
        ]
    );
    // The id stays an integer, the other tags and every `metadata` keep their bytes.
    assert_eq!(task(&document, "master", &json!(2))["id"], json!(2));

    // `depends_on` is written as Task Master's `dependencies`, a subtask's id included.
    let before = after;
    ws.run(&["tasks", "update", "3", "--set", "depends_on:=[\"1\", \"1.2\"]"]).status(0);
    let after = ws.read_string(TASKS);
    let diff = line_diff(&before, &after);
    assert_eq!(diff[..3], ["-          2", "+          1,", "+          \"1.2\""], "{diff:?}");
    assert_eq!(keys_changed(&diff[3..]), ["updated_at"], "{diff:?}");
    let refused = ws.run(&["tasks", "update", "3", "--set", "depends_on:=[\"1.9\"]"]);
    refused.status(2);
    assert!(refused.stderr().contains("`depends_on` names `1.9`, which is no task"), "{}", refused.stderr());
}

/// What broke: opsflow wrote `in_progress`, `deployed` and `failed` into Task Master's file.
#[test]
fn opsflow_writes_only_statuses_task_master_knows_and_keeps_its_own_beside_them() {
    let ws = workspace(json!({}));
    for (status, written, fine) in [
        ("failed", "blocked", Some("failed")),
        ("in_progress", "in-progress", None),
        ("deployed", "done", Some("deployed")),
        ("rolled_back", "cancelled", Some("rolled_back")),
        ("pending", "pending", None),
    ] {
        let before = ws.read_string(TASKS);
        ws.run(&["tasks", "update", "3", "--set", &format!("status={status}")]).status(0);
        let after = ws.read_string(TASKS);
        let document: Value = serde_json::from_str(&after).unwrap();
        let entry = task(&document, "master", &json!(3));
        assert_eq!(entry["status"], written, "{status}");
        assert_eq!(entry.get("opsflow_status").and_then(Value::as_str), fine, "{status}");
        let changed = keys_changed(&line_diff(&before, &after));
        assert!(
            changed.iter().all(|k| ["status", "opsflow_status", "updated_at"].contains(&k.as_str())),
            "{status}: {changed:?}"
        );
        let listed = ws.run(&["tasks", "list", "--json"]).json();
        assert_eq!(listed[2]["status"], status, "read back in opsflow's words");
    }
    let run = ws.run(&["tasks", "update", "3", "--set", "status=shipped"]);
    run.status(2);
    assert!(run.stderr().contains("Task Master does not know the status `shipped`"), "{}", run.stderr());
}

/// What broke: a build ran although the task it depends on was `in-progress` in Task Master.
#[test]
fn a_build_waits_for_its_task_master_dependencies_subtasks_included() {
    let ws = workspace(json!({}));
    let run = ws.run(&["run", "--json"]);
    let summary = run.json();
    assert_eq!(summary["ran"], json!([]), "{summary}");
    let waiting: Vec<(String, Value)> = summary["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["task"].as_str().unwrap().to_owned(), w["on"].clone()))
        .collect();
    assert_eq!(waiting, [("3".to_owned(), json!(["2"])), ("4".to_owned(), json!(["3", "1.2"]))]);
    let status = ws.run(&["status"]);
    assert!(status.stdout().contains("waiting on 1.2 (status `in_progress`)"), "{}", status.stdout());

    // Once Task Master has task 2 done, the build is no longer waiting: it runs up to its
    // gates (this workspace has no release configured), and what it writes is Task Master's.
    let text = ws.read_string(TASKS).replacen(
        "\"status\": \"in-progress\",\n        \"dependencies\": [\n          1",
        "\"status\": \"done\",\n        \"dependencies\": [\n          1",
        1,
    );
    ws.write(TASKS, &text);
    let before = ws.read_string(TASKS);
    let summary = ws.run(&["run", "--json"]).json();
    assert_eq!(summary["blocked"][0]["task"], "3", "{summary}");
    let after = ws.read_string(TASKS);
    let changed = keys_changed(&line_diff(&before, &after));
    assert_eq!(changed, ["status", "blocked_reason", "blocked_by", "updated_at"]);
    let document: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(task(&document, "master", &json!(3))["status"], "blocked");
    let untouched: Value = serde_json::from_str(&before).unwrap();
    for tag in ["feature-x", "devops"] {
        assert_eq!(document[tag], untouched[tag]);
    }
}

#[test]
fn the_tag_is_paths_tasks_tag_else_task_masters_current_tag() {
    let ws = workspace(json!({"paths": {"tasks_tag": "feature-x"}}));
    assert_eq!(ids_listed(&ws, &["tasks", "list"]), ["1", "2"]);
    let before = ws.read_string(TASKS);
    ws.run(&["tasks", "update", "1", "--set", "priority=high"]).status(0);
    let after = ws.read_string(TASKS);
    let diff = line_diff(&before, &after);
    assert_eq!(keys_changed(&diff), ["priority", "updated_at"], "{diff:?}");
    let document: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(task(&document, "feature-x", &json!("1"))["priority"], "high");
    assert_eq!(task(&document, "master", &json!(1))["priority"], "high", "master's task 1 was high already");
    assert!(task(&document, "master", &json!(1)).get("updated_at").is_none());

    // `task-master use-tag devops`: a tag of the DevOps agent's own, whose tasks name no agent.
    let ws = workspace(json!({"taskmaster": {"default_agent": "DevOps-Engineer"}}));
    ws.write(STATE, String::from_utf8(fixture(STATE)).unwrap().replace("\"master\"", "\"devops\""));
    let status = ws.run(&["status"]);
    assert!(
        status.stdout().contains("1  pending  release_build  [web]  Build release web 0.3.0"),
        "{}",
        status.stdout()
    );
    assert_eq!(ids_listed(&ws, &["tasks", "list", "--mine"]), ["1"]);
}

#[test]
fn a_tag_that_is_not_there_or_an_unreadable_state_json_is_said_with_the_tags_there_are() {
    let ws = workspace(json!({"paths": {"tasks_tag": "release"}}));
    let run = ws.run(&["validate"]);
    run.status(2);
    assert!(
        run.stdout().contains("the Task Master tag `release` is not in the file (its tags: `master`, `feature-x`, `devops`); set `paths.tasks_tag`"),
        "{}",
        run.stdout()
    );
    ws.run(&["run"]).status(2);

    let ws = workspace(json!({}));
    ws.write(STATE, "{\"currentTag\": 7}\n");
    let before = ws.snapshot();
    let run = ws.run(&["tasks", "update", "2", "--set", "status=done"]);
    run.status(2);
    assert!(
        run.stderr().contains(".taskmaster/state.json: `currentTag` must be a tag name, found 7"),
        "{}",
        run.stderr()
    );
    assert_eq!(ws.snapshot(), before);
}

/// What broke: a refused `tasks update` still created a `.gitignore` and a lock file in Task
/// Master's folder.
#[test]
fn a_refused_tasks_update_creates_nothing_in_task_masters_folder() {
    let ws = workspace(json!({}));
    let before = ws.snapshot();
    let run = ws.run(&["tasks", "update", "99", "--set", "status=done"]);
    run.status(2);
    assert_eq!(run.stderr(), "opsflow: error: .taskmaster/tasks/tasks.json: no task has the id `99`\n");
    assert_eq!(ws.snapshot(), before);
    ws.run(&["tasks", "update", "2", "--set", "depends_on:=[\"nope\"]"]).status(2);
    assert_eq!(ws.snapshot(), before);
    let add = ["tasks", "add", "--title", "Deploy api 1.2.0 to production", "--owner", "DevOps-Engineer"];
    let run = ws.run(&[&add[..], &["--type", "deployment_production", "--id", "2"]].concat());
    run.status(2);
    assert!(run.stderr().contains("a task with the id `2` already exists"), "{}", run.stderr());
    assert_eq!(ws.snapshot(), before);

    // An `add` that is written takes the next integer id, written as an integer, at the end
    // of the tag's tasks.
    let run = ws.run(&[&add[..], &["--type", "deployment_production", "--set", "depends_on:=[\"4\"]"]].concat());
    run.status(0);
    assert_eq!(run.stdout(), "5\n");
    let document: Value = serde_json::from_str(&ws.read_string(TASKS)).unwrap();
    let added = task(&document, "master", &json!(5));
    assert_eq!((&added["status"], &added["dependencies"]), (&json!("pending"), &json!([4])));
    let untouched: Value = serde_json::from_slice(&fixture(TASKS)).unwrap();
    assert_eq!(document["feature-x"], untouched["feature-x"]);
}
