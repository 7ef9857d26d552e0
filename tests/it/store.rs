//! `tasks update|add|list` on real files: every byte outside the edited entry is kept, the
//! ownership rule of `--mine`, the filters, and edits that are refused without a write.

use std::os::unix::fs::MetadataExt;

use serde_json::{Value, json};

use crate::util::{TASKS, Workspace, is_rfc3339_utc, leftover_temp_files, task, tasks_of};

/// Asserts that `after` is `prefix`, then `expected_entry`, then `suffix`, byte for byte.
/// `{updated_at}` in `expected_entry` stands for the timestamp opsflow wrote, which must
/// be RFC 3339 UTC.
#[track_caller]
fn assert_only_entry_changed(after: &[u8], prefix: &str, expected_entry: &str, suffix: &str) {
    let after = std::str::from_utf8(after).expect("tasks.json is still UTF-8");
    assert!(after.len() >= prefix.len() + suffix.len(), "the file shrank unexpectedly:\n{after}");
    assert_eq!(&after.as_bytes()[..prefix.len()], prefix.as_bytes(), "bytes before the entry changed:\n{after}");
    assert_eq!(
        &after.as_bytes()[after.len() - suffix.len()..],
        suffix.as_bytes(),
        "bytes after the entry changed:\n{after}"
    );
    let entry = &after[prefix.len()..after.len() - suffix.len()];
    let expected = match entry.find("\"updated_at\": \"") {
        Some(at) => {
            let stamp = &entry[at + 15..(at + 35).min(entry.len())];
            assert!(is_rfc3339_utc(stamp), "updated_at is not RFC 3339 UTC: {stamp:?}");
            expected_entry.replace("{updated_at}", stamp)
        }
        None => expected_entry.to_owned(),
    };
    assert_eq!(entry, expected, "the edited entry is not as expected");
}

// A file as careless agents write it: four-space, two-space, six-space and tab indentation,
// unusual key order, `\u` escapes (one a surrogate pair), raw emoji, unknown fields at the
// top level and in entries, and a nested unknown object.
const MIXED_PREFIX: &str = concat!(
    "{\n",
    "    \"version\": 7,\n",
    "  \"generated_by\": \"planner \\u00e9\",\n",
    "  \"tasks\": [\n",
    "    {\n",
    "      \"status\": \"done\", \"id\": \"BE-1\",\n",
    "      \"title\": \"Caf\\u00e9 backend \\ud83d\\ude80\",\n",
    "      \"agent\": \"Backend-Engineer\", \"type\": \"implementation\"\n",
    "    },\n",
    "    ",
);
const MIXED_ENTRY: &str = concat!(
    "{\n",
    "\t\"type\": \"deployment_staging\",\n",
    "\t\"id\": \"DEVOPS-7\",\n",
    "\t\"title\": \"Déployer 🚀 en staging\",\n",
    "\t\"agent\": \"DevOps-Engineer\",\n",
    "\t\"status\": \"pending\",\n",
    "\t\"x-review\": {\"by\": \"Zoë\", \"nested\": {\"deep\": [1, 2.50, \"\\u00e9\", null]}, \"keep\": true}\n",
    "    }",
);
const MIXED_SUFFIX: &str = concat!(
    ",\n",
    "      {\"id\": \"QA-1\", \"title\": \"Test \\\"quoted\\\" ✓\", \"agent\": \"QA-Engineer\", \"type\": \"qa_testing\", \"status\": \"pending\", \"unknown_field\": null}\n",
    "  ],\n",
    "  \"meta\":   {\"spacing\":    \"odd\",  \"emoji\": \"🎉\"}\n",
    "}\n",
);

fn mixed_file() -> String {
    format!("{MIXED_PREFIX}{MIXED_ENTRY}{MIXED_SUFFIX}")
}

#[test]
fn update_changes_only_the_edited_fields_of_a_mixed_style_file() {
    let ws = Workspace::new().file(TASKS, mixed_file());
    let run =
        ws.run(&["tasks", "update", "DEVOPS-7", "--set", "status=in_progress", "--set", "claimed_by=DevOps-Engineer"]);
    run.status(0);
    assert_eq!(run.stdout(), "DEVOPS-7: updated\n");

    // Inside the entry: the status value changed, the last member gained the comma the new
    // members need, and the new members follow the entry's own (tab) indentation.
    let expected_entry = concat!(
        "{\n",
        "\t\"type\": \"deployment_staging\",\n",
        "\t\"id\": \"DEVOPS-7\",\n",
        "\t\"title\": \"Déployer 🚀 en staging\",\n",
        "\t\"agent\": \"DevOps-Engineer\",\n",
        "\t\"status\": \"in_progress\",\n",
        "\t\"x-review\": {\"by\": \"Zoë\", \"nested\": {\"deep\": [1, 2.50, \"\\u00e9\", null]}, \"keep\": true},\n",
        "\t\"claimed_by\": \"DevOps-Engineer\",\n",
        "\t\"updated_at\": \"{updated_at}\"\n",
        "    }",
    );
    assert_only_entry_changed(&ws.read(TASKS), MIXED_PREFIX, expected_entry, MIXED_SUFFIX);

    // And the result means what it should.
    let tasks = ws.tasks();
    let devops = task(&tasks, "DEVOPS-7");
    assert_eq!(devops["status"], "in_progress");
    assert_eq!(devops["x-review"], json!({"by": "Zoë", "nested": {"deep": [1, 2.5, "é", null]}, "keep": true}));
    assert_eq!(task(&tasks, "BE-1")["title"], "Café backend 🚀");
    assert_eq!(leftover_temp_files(&ws), Vec::<String>::new());
}

#[test]
fn update_keeps_a_bare_top_level_array_as_it_is() {
    let prefix = concat!(
        "[\n",
        "  {\"id\": \"A-1\", \"title\": \"first\", \"agent\": \"Backend-Engineer\", \"type\": \"implementation\", \"status\": \"done\", \"z\": {\"a\": [1, {\"b\": \"\\u2603\"}]}},\n",
        "    ",
    );
    let entry = concat!(
        "{\n",
        "        \"agent\": \"devops\",\n",
        "        \"id\": \"DEVOPS-1\",\n",
        "        \"status\": \"pending\",\n",
        "        \"type\": \"release_build\",\n",
        "        \"title\": \"Build \\u00e9t\\u00e9 🚀\"\n",
        "    }",
    );
    let suffix = concat!(
        ",\n",
        "\t{\"id\": \"C-1\", \"title\": \"tab-indented\", \"agent\": \"x\", \"type\": \"y\", \"status\": \"pending\"}\n",
        "]\n",
    );
    let ws = Workspace::new().file(TASKS, format!("{prefix}{entry}{suffix}"));
    ws.run(&["tasks", "update", "DEVOPS-1", "--set", "status=in_progress", "--set", "claimed_by=DevOps-Engineer"])
        .status(0);
    let expected_entry = concat!(
        "{\n",
        "        \"agent\": \"devops\",\n",
        "        \"id\": \"DEVOPS-1\",\n",
        "        \"status\": \"in_progress\",\n",
        "        \"type\": \"release_build\",\n",
        "        \"title\": \"Build \\u00e9t\\u00e9 🚀\",\n",
        "        \"claimed_by\": \"DevOps-Engineer\",\n",
        "        \"updated_at\": \"{updated_at}\"\n",
        "    }",
    );
    assert_only_entry_changed(&ws.read(TASKS), prefix, expected_entry, suffix);
    let root: Value = serde_json::from_slice(&ws.read(TASKS)).unwrap();
    assert!(root.is_array(), "the bare array must stay a bare array");
}

#[test]
fn update_keeps_crlf_line_endings() {
    let prefix = concat!(
        "{\r\n",
        "  \"tasks\": [\r\n",
        "    {\r\n",
        "      \"id\": \"A\",\r\n",
        "      \"title\": \"crlf\",\r\n",
        "      \"agent\": \"DevOps-Engineer\",\r\n",
        "      \"type\": \"deployment_staging\",\r\n",
        "      \"status\": \"pending\"\r\n",
        "    },\r\n",
        "    ",
    );
    let entry = concat!(
        "{\r\n",
        "      \"id\": \"B\",\r\n",
        "      \"title\": \"middle\",\r\n",
        "      \"agent\": \"devops\",\r\n",
        "      \"type\": \"infrastructure_ci\",\r\n",
        "      \"status\": \"pending\"\r\n",
        "    }",
    );
    let suffix = concat!(
        ",\r\n",
        "    {\"id\": \"C\", \"title\": \"last\", \"agent\": \"x\", \"type\": \"y\", \"status\": \"done\"}\r\n",
        "  ]\r\n",
        "}\r\n",
    );
    let ws = Workspace::new().file(TASKS, format!("{prefix}{entry}{suffix}"));
    ws.run(&["tasks", "update", "B", "--set", "status=in_progress", "--set", "claimed_by=DevOps-Engineer"]).status(0);
    let expected_entry = concat!(
        "{\r\n",
        "      \"id\": \"B\",\r\n",
        "      \"title\": \"middle\",\r\n",
        "      \"agent\": \"devops\",\r\n",
        "      \"type\": \"infrastructure_ci\",\r\n",
        "      \"status\": \"in_progress\",\r\n",
        "      \"claimed_by\": \"DevOps-Engineer\",\r\n",
        "      \"updated_at\": \"{updated_at}\"\r\n",
        "    }",
    );
    assert_only_entry_changed(&ws.read(TASKS), prefix, expected_entry, suffix);
}

const PRETTY: &str = r#"{
  "tasks": [
    {
      "id": "BE-1",
      "title": "Backend",
      "agent": "Backend-Engineer",
      "type": "implementation",
      "status": "done"
    }
  ],
  "x-owner": "planner"
}
"#;

#[test]
fn add_appends_before_the_closing_bracket_in_the_files_style() {
    let ws = Workspace::new().file(TASKS, PRETTY);
    let run = ws.run(&[
        "tasks",
        "add",
        "--title",
        "Deploy 🚀 café",
        "--agent",
        "DevOps-Engineer",
        "--type",
        "deployment_staging",
        "--id",
        "DEVOPS-2",
        "--set",
        "priority=high",
        "--set",
        r#"depends_on:=["BE-1"]"#,
        "--set",
        r#"x-meta:={"retries": 2}"#,
    ]);
    run.status(0);
    assert_eq!(run.stdout(), "DEVOPS-2\n");
    let (head, tail) = PRETTY.split_at(PRETTY.find("\n  ],").unwrap());
    let expected = format!(
        "{head}{}{tail}",
        concat!(
            ",\n",
            "    {\n",
            "      \"id\": \"DEVOPS-2\",\n",
            "      \"title\": \"Deploy 🚀 café\",\n",
            "      \"agent\": \"DevOps-Engineer\",\n",
            "      \"type\": \"deployment_staging\",\n",
            "      \"status\": \"pending\",\n",
            "      \"priority\": \"high\",\n",
            "      \"depends_on\": [\n",
            "        \"BE-1\"\n",
            "      ],\n",
            "      \"x-meta\": {\n",
            "        \"retries\": 2\n",
            "      }\n",
            "    }",
        )
    );
    assert_eq!(ws.read_string(TASKS), expected);
}

#[test]
fn add_to_a_mixed_style_file_keeps_every_existing_byte() {
    let original = mixed_file();
    let ws = Workspace::new().file(TASKS, &original);
    ws.run(&["tasks", "add", "--title", "New", "--owner", "devops", "--type", "monitoring_setup", "--id", "MON-1"])
        .status(0);
    let after = ws.read_string(TASKS);
    let (head, tail) = original.split_at(original.find("\n  ],\n  \"meta\"").unwrap());
    assert!(after.starts_with(head), "bytes before the new entry changed:\n{after}");
    assert!(after.ends_with(tail), "bytes after the new entry changed:\n{after}");
    let inserted = &after[head.len()..after.len() - tail.len()];
    assert!(inserted.starts_with(",\n"), "the new entry is not its own line: {inserted:?}");
    let tasks = ws.tasks();
    assert_eq!(tasks.len(), 4);
    assert_eq!(
        tasks[3],
        json!({"id": "MON-1", "title": "New", "agent": "devops", "type": "monitoring_setup", "status": "pending"})
    );
}

#[test]
fn add_without_an_id_takes_the_next_free_task_number() {
    let ws = Workspace::new().file(
        TASKS,
        r#"[{"id": "TASK-007", "title": "a", "agent": "x", "type": "y", "status": "done"},
 {"id": "TASK-002", "title": "b", "agent": "x", "type": "y", "status": "done"}]
"#,
    );
    let run = ws.run(&["tasks", "add", "--title", "c", "--owner", "x", "--type", "y"]);
    run.status(0);
    assert_eq!(run.stdout(), "TASK-008\n");
    assert_eq!(task(&ws.tasks(), "TASK-008")["title"], "c");
}

#[test]
fn add_creates_a_missing_tasks_file() {
    // The workspace has its config and the directory (as `init` makes them), not the file.
    let ws = Workspace::new()
        .file("project-config.json", "{}\n")
        .file("docs/workflow/human-requests.md", "# Human requests\n");
    ws.run(&["tasks", "add", "--title", "first", "--owner", "devops", "--type", "release_build"]).status(0);
    assert_eq!(
        ws.tasks(),
        [json!({"id": "TASK-001", "title": "first", "agent": "devops", "type": "release_build", "status": "pending"})]
    );
    ws.run(&["validate"]).status(0);
}

#[test]
fn an_update_that_changes_nothing_writes_nothing() {
    let ws = Workspace::new().file(TASKS, mixed_file());
    let before = std::fs::metadata(ws.join(TASKS)).unwrap();
    for args in [
        &["tasks", "update", "DEVOPS-7", "--set", "status=pending"][..],
        &["tasks", "update", "DEVOPS-7", "--unset", "no_such_field"],
        &[
            "tasks",
            "update",
            "DEVOPS-7",
            "--set",
            r#"x-review:={"keep": true, "by": "Zoë", "nested": {"deep": [1, 2.5, "é", null]}}"#,
        ],
    ] {
        let run = ws.run(args);
        run.status(0);
        assert_eq!(run.stdout(), "DEVOPS-7: unchanged\n", "{args:?}");
    }
    let after = std::fs::metadata(ws.join(TASKS)).unwrap();
    assert_eq!((after.ino(), after.mtime(), after.mtime_nsec()), (before.ino(), before.mtime(), before.mtime_nsec()));
    assert_eq!(ws.read_string(TASKS), mixed_file());
}

#[test]
fn unset_removes_fields_and_keeps_the_commas_valid() {
    let prefix = "{\n  \"tasks\": [\n    ";
    let entry = concat!(
        "{\n",
        "      \"blocked_reason\": \"waiting for QA\",\n",
        "      \"id\": \"D-1\",\n",
        "      \"title\": \"t\",\n",
        "      \"x-temp\": [1, 2],\n",
        "      \"agent\": \"devops\",\n",
        "      \"type\": \"deployment_staging\",\n",
        "      \"status\": \"blocked\",\n",
        "      \"claimed_by\": \"someone\"\n",
        "    }",
    );
    let suffix = ",\n    {\"id\": \"I-1\", \"x\": 1, \"title\": \"inline\", \"agent\": \"a\", \"type\": \"b\", \"status\": \"c\"}\n  ]\n}\n";
    let ws = Workspace::new().file(TASKS, format!("{prefix}{entry}{suffix}"));
    ws.run(&[
        "tasks",
        "update",
        "D-1",
        "--unset",
        "blocked_reason",
        "--unset",
        "x-temp",
        "--unset",
        "claimed_by",
        "--set",
        "status=pending",
    ])
    .status(0);
    let expected_entry = concat!(
        "{\n",
        "      \"id\": \"D-1\",\n",
        "      \"title\": \"t\",\n",
        "      \"agent\": \"devops\",\n",
        "      \"type\": \"deployment_staging\",\n",
        "      \"status\": \"pending\",\n",
        "      \"updated_at\": \"{updated_at}\"\n",
        "    }",
    );
    assert_only_entry_changed(&ws.read(TASKS), prefix, expected_entry, suffix);

    // An inline entry stays inline.
    ws.run(&["tasks", "update", "I-1", "--unset", "x"]).status(0);
    let text = ws.read_string(TASKS);
    let line = text.lines().find(|l| l.contains("\"I-1\"")).unwrap();
    let stamp = task(&ws.tasks(), "I-1")["updated_at"].as_str().unwrap().to_owned();
    assert_eq!(
        line,
        format!(
            "    {{\"id\": \"I-1\", \"title\": \"inline\", \"agent\": \"a\", \"type\": \"b\", \"status\": \"c\", \"updated_at\": \"{stamp}\"}}"
        )
    );
}

/// Tasks that exercise every part of the ownership rule.
const OWNERSHIP: &str = r#"{"tasks": [
  {"id": "O-1", "title": "name", "agent": "DevOps-Engineer", "type": "deployment_staging", "status": "pending"},
  {"id": "O-2", "title": "alias", "agent": "devops", "type": "infrastructure_ci", "status": "in_progress"},
  {"id": "O-3", "title": "other alias", "agent": "DEVOPS_ENGINEER_AGENT", "type": "monitoring_setup", "status": "pending"},
  {"id": "O-4", "title": "release", "agent": "DevOps-Engineer", "type": "release_build", "status": "done"},
  {"id": "N-1", "title": "not a DevOps type", "agent": "DevOps-Engineer", "type": "qa_testing", "status": "pending"},
  {"id": "N-2", "title": "another agent", "agent": "Backend-Engineer", "type": "deployment_staging", "status": "pending"},
  {"id": "N-3", "title": "prefix needs the underscore", "agent": "devops", "type": "deployment", "status": "pending"},
  {"id": "N-4", "title": "no agent", "type": "deployment_staging", "status": "pending"},
  {"id": "P-1", "title": "the product manager's", "agent": "Product-Manager", "type": "release_review", "status": "pending"}
]}
"#;

fn ids(run: &crate::util::Run) -> Vec<String> {
    let value = run.json();
    let list = value.as_array().unwrap_or_else(|| panic!("--json output is not an array: {value}"));
    list.iter().map(|t| t["id"].as_str().expect("every listed task has its id").to_owned()).collect()
}

#[test]
fn list_mine_applies_the_ownership_rule() {
    let ws = Workspace::new().file(TASKS, OWNERSHIP);
    let run = ws.run(&["tasks", "list", "--mine", "--json"]);
    run.status(0);
    assert_eq!(ids(&run), ["O-1", "O-2", "O-3", "O-4"]);
    // The JSON holds each entry as the file has it.
    assert_eq!(
        run.json()[1],
        json!({"id": "O-2", "title": "alias", "agent": "devops", "type": "infrastructure_ci", "status": "in_progress"})
    );

    let run = ws.run(&["tasks", "list", "--mine"]);
    run.status(0);
    assert_eq!(
        run.stdout(),
        concat!(
            "ID   STATUS       TYPE                AGENT                  TITLE\n",
            "O-1  pending      deployment_staging  DevOps-Engineer        name\n",
            "O-2  in_progress  infrastructure_ci   devops                 alias\n",
            "O-3  pending      monitoring_setup    DEVOPS_ENGINEER_AGENT  other alias\n",
            "O-4  done         release_build       DevOps-Engineer        release\n",
        )
    );
}

#[test]
fn the_agent_option_changes_who_owns_tasks() {
    let ws = Workspace::new().file(TASKS, OWNERSHIP);
    let run = ws.run(&["--agent", "Product-Manager", "tasks", "list", "--mine", "--json"]);
    run.status(0);
    assert_eq!(ids(&run), ["P-1"]);

    // So does the agent named in the config.
    let ws = Workspace::new()
        .file(TASKS, OWNERSHIP)
        .file("project-config.json", r#"{"agent": {"name": "Backend-Engineer", "aliases": []}}"#);
    let run = ws.run(&["tasks", "list", "--mine", "--json"]);
    run.status(0);
    assert_eq!(ids(&run), ["N-2"]);
}

#[test]
fn list_filters_by_status_and_type_and_prints_one_json_array() {
    let ws = Workspace::new().file(TASKS, OWNERSHIP);
    let run = ws.run(&["tasks", "list", "--status", "pending", "--json"]);
    run.status(0);
    assert_eq!(ids(&run), ["O-1", "O-3", "N-1", "N-2", "N-3", "N-4", "P-1"]);

    let run = ws.run(&["tasks", "list", "--type", "deployment_staging", "--json"]);
    run.status(0);
    assert_eq!(ids(&run), ["O-1", "N-2", "N-4"]);

    let run = ws.run(&["tasks", "list", "--mine", "--status", "pending", "--type", "monitoring_setup", "--json"]);
    run.status(0);
    assert_eq!(ids(&run), ["O-3"]);

    let run = ws.run(&["tasks", "list", "--status", "no-such-status", "--json"]);
    run.status(0);
    assert_eq!(run.json(), json!([]));

    // The whole list, in file order, as one array.
    let run = ws.run(&["tasks", "list", "--json"]);
    run.status(0);
    assert_eq!(run.json(), Value::Array(tasks_of(OWNERSHIP.as_bytes())));
}

/// Runs a command that must be refused and checks that the file kept every byte.
#[track_caller]
fn assert_refused(ws: &Workspace, args: &[&str], expected_stderr: &str) {
    let before = ws.read(TASKS);
    let run = ws.run(args);
    run.status(2);
    assert_eq!(run.stderr(), expected_stderr, "{args:?}");
    assert_eq!(run.stdout(), "", "{args:?}");
    assert_eq!(ws.read(TASKS), before, "{args:?} changed tasks.json");
    assert_eq!(leftover_temp_files(ws), Vec::<String>::new());
}

#[test]
fn edits_that_cannot_apply_are_refused_and_write_nothing() {
    let ws = Workspace::new().file(TASKS, mixed_file());
    assert_refused(
        &ws,
        &["tasks", "update", "NOPE-1", "--set", "status=done"],
        "opsflow: error: docs/workflow/tasks.json: no task has the id `NOPE-1`\n",
    );
    assert_refused(
        &ws,
        &["tasks", "add", "--title", "again", "--owner", "devops", "--type", "deployment_staging", "--id", "DEVOPS-7"],
        "opsflow: error: a task with the id `DEVOPS-7` already exists\n",
    );
    assert_refused(
        &ws,
        &["tasks", "update", "DEVOPS-7", "--set", "id=OTHER"],
        "opsflow: error: the id of a task cannot be changed\n",
    );
    assert_refused(
        &ws,
        &["tasks", "update", "DEVOPS-7"],
        "opsflow: error: nothing to change: give --set KEY=VALUE or --unset KEY\n",
    );
}

#[test]
fn edits_that_would_make_a_task_invalid_are_refused_naming_the_field() {
    let ws = Workspace::new().file(TASKS, mixed_file());
    assert_refused(
        &ws,
        &["tasks", "update", "DEVOPS-7", "--set", "priority=urgent"],
        concat!(
            "opsflow: error: task `DEVOPS-7` would not be a valid task, so nothing was written:\n",
            "  at /priority: \"urgent\" is not one of \"critical\", \"high\", \"medium\" or \"low\"\n",
        ),
    );
    assert_refused(
        &ws,
        &["tasks", "update", "DEVOPS-7", "--set", "unit_id=../../etc"],
        concat!(
            "opsflow: error: task `DEVOPS-7` would not be a valid task, so nothing was written:\n",
            "  at /unit_id: \"../../etc\" must be one or more characters other than `/` and `\\`\n",
            "  at /unit_id: \"../../etc\" must not contain `..`\n",
        ),
    );
    assert_refused(
        &ws,
        &["tasks", "update", "DEVOPS-7", "--set", "status:=5"],
        concat!(
            "opsflow: error: task `DEVOPS-7` would not be a valid task, so nothing was written:\n",
            "  at /status: `status` must be a string, found 5\n",
        ),
    );
    assert_refused(
        &ws,
        &["tasks", "update", "DEVOPS-7", "--unset", "title"],
        concat!(
            "opsflow: error: task `DEVOPS-7` would not be a valid task, so nothing was written:\n",
            "  at the task: \"title\" is a required property\n",
        ),
    );
    assert_refused(
        &ws,
        &["tasks", "add", "--title", "x", "--owner", "devops", "--type", "deployment_staging", "--id", "../x"],
        concat!(
            "opsflow: error: task `../x` would not be a valid task, so nothing was written:\n",
            "  at /id: \"../x\" must be one or more characters other than `/` and `\\`\n",
            "  at /id: \"../x\" must not contain `..`\n",
        ),
    );
    assert_refused(
        &ws,
        &["tasks", "add", "--title", "x", "--owner", "devops", "--type", "deployment_staging", "--set", "unit_id=U\n1"],
        concat!(
            "opsflow: error: task `TASK-001` would not be a valid task, so nothing was written:\n",
            "  at /unit_id: \"U\\n1\" must not contain control characters (a line break, a tab)\n",
        ),
    );
}
