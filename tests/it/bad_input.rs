//! A corpus of broken workspace files, each with the exact diagnostic `opsflow validate`
//! prints for it: exit code 2, the file and the place, and nothing written. One bad file
//! never hides another's problems, and `tasks` commands refuse a broken `tasks.json`.

use std::path::Path;

use serde_json::{Value, json};

use crate::util::{TASKS, Workspace};

/// One kind of bad input.
struct Case {
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    /// Makes this workspace path a symlink to a file outside the workspace.
    link_outside: Option<&'static str>,
    /// The diagnostic lines `validate` prints, in order; `{outside}` is the symlink's target.
    expected: Vec<String>,
    /// When set, `validate --json` must report exactly these diagnostics.
    json: Option<Value>,
}

fn case(name: &'static str, files: Vec<(&'static str, &[u8])>, expected: Vec<&str>) -> Case {
    Case {
        name,
        files: files.into_iter().map(|(path, bytes)| (path, bytes.to_vec())).collect(),
        link_outside: None,
        expected: expected.into_iter().map(str::to_owned).collect(),
        json: None,
    }
}

impl Case {
    fn json(mut self, diagnostics: Value) -> Case {
        self.json = Some(diagnostics);
        self
    }
}

const STATE: &str = "docs/workflow/state.json";
const CONFIG: &str = "project-config.json";
const QA_REPORT: &str = "QA/QA-Report-UNIT-1.md";
const APPROVAL: &str = "docs/workflow/artifacts/R12-prod-approval.md";
const QA_TEST_REPORT: &str = "ARTIFACTS/qa-engineer/qa-test-report.json";
const DEPLOYMENT_REPORT: &str = "ARTIFACTS/devops-engineer/deployment-report.json";

/// A valid task entry's fields after `"id"`, to keep the cases short.
macro_rules! task {
    ($id:literal) => {
        concat!(
            "{\"id\": \"",
            $id,
            "\", \"title\": \"t\", \"agent\": \"devops\", \"type\": \"deployment_staging\", \"status\": \"pending\"}"
        )
    };
    ($id:literal, $extra:literal) => {
        concat!(
            "{\"id\": \"",
            $id,
            "\", ",
            $extra,
            ", \"title\": \"t\", \"agent\": \"devops\", \"type\": \"deployment_staging\", \"status\": \"pending\"}"
        )
    };
}

/// A deployment report that is valid, with `extra` after its last field.
fn deployment_report(extra: &str) -> Vec<u8> {
    format!(
        r#"{{
  "unit_id": "UNIT-1",
  "version": "1.0.0",
  "run_id": "run-1",
  "deployment_summary": {{"environment": "production", "deployed_at": "2025-11-20T10:30:00Z", "deployment_method": "blue-green", "status": "success"}},
  "infrastructure": {{"cloud_provider": "Other", "region": "local", "resources_provisioned": []}},
  "services_deployed": [{{"service_name": "web", "version": "1.0.0", "url": "http://127.0.0.1/", "status": "healthy"}}],
  "database_migrations": {{"executed": false, "migration_files": [], "status": "success"}},
  "monitoring_setup": {{"metrics": "enabled", "logging": "enabled", "alerting": "enabled"}},
  "security_measures": {{"ssl_enabled": false, "secrets_management": "env", "firewall_configured": false, "backups_enabled": false}},
  "smoke_tests": {{"status": "passed", "tests_run": ["homepage"]}},
  "rollback_plan": "switch the active slot back",
  "known_issues": [],
  "next_steps": []{extra}
}}
"#
    )
    .into_bytes()
}

fn corpus() -> Vec<Case> {
    let big_tasks = format!("{{\"tasks\": [\n  {},\n  {}\n]}}\n", task!("A"), task!("B"));
    vec![
        case(
            "truncated tasks.json",
            vec![(TASKS, concat!("{\"tasks\": [\n  ", task!("A"), ",\n  {\"id\": \"B\", \"ti").as_bytes())],
            vec!["docs/workflow/tasks.json:3:17: invalid JSON: EOF while parsing a string"],
        ),
        case(
            "trailing comma",
            vec![(TASKS, concat!("{\"tasks\": [\n  ", task!("A"), ",\n]}\n").as_bytes())],
            vec!["docs/workflow/tasks.json:3:1: invalid JSON: trailing comma"],
        )
        .json(json!([{
            "file": TASKS, "kind": "syntax", "line": 3, "column": 1,
            "message": "invalid JSON: trailing comma"
        }])),
        case(
            "empty tasks.json",
            vec![(TASKS, b"")],
            vec!["docs/workflow/tasks.json:1:1: invalid JSON: EOF while parsing a value"],
        ),
        case(
            "top level is a string",
            vec![(TASKS, b"\"hello\"\n")],
            vec!["docs/workflow/tasks.json:1:1: at the top level: the document must be an object (`{...}`), found \"hello\" (schema rule `type`)"],
        ),
        case(
            "top level is an object without tasks",
            vec![(TASKS, b"{\"items\": []}\n")],
            vec![
                "docs/workflow/tasks.json:1:1: at the top level: \"tasks\" is a required property (schema rule `required`)",
            ],
        ),
        case(
            "tasks is not an array",
            vec![(TASKS, b"{\"tasks\": {\"A\": {}}}\n")],
            vec![
                "docs/workflow/tasks.json:1:11: at /tasks: `tasks` must be an array (a list in `[...]`), found {\"A\":{}} (schema rule `type`)",
            ],
        ),
        case(
            "a task field of the wrong type",
            vec![(
                TASKS,
                b"{\"tasks\": [\n  {\"id\": \"A\", \"title\": 5, \"agent\": \"x\", \"type\": \"y\", \"status\": \"pending\"}\n]}\n",
            )],
            vec!["docs/workflow/tasks.json:2:24: at /tasks/0/title: `title` must be a string, found 5 (schema rule `type`)"],
        )
        .json(json!([{
            "file": TASKS, "kind": "schema", "line": 2, "column": 24, "pointer": "/tasks/0/title", "rule": "type",
            "message": "`title` must be a string, found 5"
        }])),
        case(
            "a task without a required field",
            vec![(TASKS, b"{\"tasks\": [\n  {\"id\": \"A\", \"agent\": \"x\", \"type\": \"y\", \"status\": \"pending\"}\n]}\n")],
            vec!["docs/workflow/tasks.json:2:3: at /tasks/0: \"title\" is a required property (schema rule `required`)"],
        ),
        case(
            "git conflict markers",
            vec![(
                TASKS,
                concat!(
                    "{\"tasks\": [\n",
                    "<<<<<<< HEAD\n  ",
                    task!("A"),
                    "\n=======\n  ",
                    task!("A", "\"priority\": \"high\""),
                    "\n>>>>>>> feature\n]}\n"
                )
                .as_bytes(),
            )],
            vec![
                "docs/workflow/tasks.json:2:1: has unresolved git conflict markers (`<<<<<<<`); finish the merge before opsflow reads it",
            ],
        )
        .json(json!([{
            "file": TASKS, "kind": "conflict_markers", "line": 2, "column": 1,
            "message": "has unresolved git conflict markers (`<<<<<<<`); finish the merge before opsflow reads it"
        }])),
        case(
            "UTF-8 byte-order mark",
            vec![(TASKS, b"\xEF\xBB\xBF{\"tasks\": []}\n")],
            vec!["docs/workflow/tasks.json:1:1: starts with a UTF-8 byte-order mark; save the file as UTF-8 without BOM"],
        ),
        case(
            "invalid UTF-8 inside a string",
            vec![(TASKS, b"{\"tasks\": [\n  {\"id\": \"caf\xE9\"}\n]}\n")],
            vec![
                "docs/workflow/tasks.json:2:14: invalid UTF-8 at byte 25: the file is not UTF-8 text (binary or another encoding)",
            ],
        ),
        case(
            "binary junk",
            vec![(TASKS, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00")],
            vec![
                "docs/workflow/tasks.json:1:1: invalid UTF-8 at byte 0: the file is not UTF-8 text (binary or another encoding)",
            ],
        ),
        Case {
            name: "a file over limits.max_file_bytes",
            files: vec![
                (CONFIG, b"{\"limits\": {\"max_file_bytes\": 100}}\n".to_vec()),
                (TASKS, big_tasks.clone().into_bytes()),
            ],
            link_outside: None,
            expected: vec![format!(
                "docs/workflow/tasks.json: file is {} bytes, over the limit of 100 bytes (raise `limits.max_file_bytes` if this is intended)",
                big_tasks.len()
            )],
            json: None,
        },
        Case {
            name: "a symlink to a file outside the workspace",
            files: vec![],
            link_outside: Some(TASKS),
            expected: vec![
                "docs/workflow/tasks.json: leads outside the workspace (to {outside}) through a symlink; opsflow does not follow it"
                    .to_owned(),
            ],
            json: Some(json!([{
                "file": TASKS, "kind": "outside_workspace",
                "message": "leads outside the workspace (to {outside}) through a symlink; opsflow does not follow it"
            }])),
        },
        // What the schema's patterns allow, in words, not the regexes.
        case(
            "a task id with ../",
            vec![(TASKS, concat!("{\"tasks\": [\n  ", task!("../../etc"), "\n]}\n").as_bytes())],
            vec![
                r#"docs/workflow/tasks.json:2:10: at /tasks/0/id: "../../etc" must be one or more characters other than `/` and `\` (schema rule `pattern`)"#,
                r#"docs/workflow/tasks.json:2:10: at /tasks/0/id: "../../etc" must not contain `..` (schema rule `not`)"#,
            ],
        ),
        case(
            "a unit_id with a newline",
            vec![(TASKS, concat!("{\"tasks\": [\n  ", task!("A", "\"unit_id\": \"UNIT\\n1\""), "\n]}\n").as_bytes())],
            vec![
                r#"docs/workflow/tasks.json:2:26: at /tasks/0/unit_id: "UNIT\n1" must not contain control characters (a line break, a tab) (schema rule `not`)"#,
            ],
        ),
        case(
            "duplicate task ids",
            vec![(TASKS, concat!("{\"tasks\": [\n  ", task!("A"), ",\n  ", task!("A"), "\n]}\n").as_bytes())],
            vec!["docs/workflow/tasks.json:3:10: at /tasks/1/id: duplicate task id `A` (also used at /tasks/0)"],
        )
        .json(json!([{
            "file": TASKS, "kind": "duplicate_id", "line": 3, "column": 10, "pointer": "/tasks/1/id",
            "message": "duplicate task id `A` (also used at /tasks/0)"
        }])),
        case(
            "depends_on names an unknown task",
            vec![(TASKS, concat!("[\n  ", task!("A", "\"depends_on\": [\"GHOST\"]"), "\n]\n").as_bytes())],
            vec!["docs/workflow/tasks.json:2:30: at /0/depends_on/0: depends on `GHOST`, which no task in this file has as its id"],
        ),
        case(
            "a dependency cycle",
            vec![(
                TASKS,
                concat!(
                    "{\"tasks\": [\n  ",
                    task!("A", "\"depends_on\": [\"B\"]"),
                    ",\n  ",
                    task!("B", "\"depends_on\": [\"C\"]"),
                    ",\n  ",
                    task!("C", "\"depends_on\": [\"A\"]"),
                    "\n]}\n"
                )
                .as_bytes(),
            )],
            vec!["docs/workflow/tasks.json:2:29: at /tasks/0/depends_on: dependency cycle: A -> B -> C -> A"],
        ),
        case(
            "a config duration given as a bare number",
            vec![(CONFIG, b"{\n  \"devops\": {\n    \"poll_interval\": 300\n  }\n}\n")],
            vec![
                r#"project-config.json:3:22: at /devops/poll_interval: expected a duration with a unit, found the bare number 300; write it as a string such as "300s", "300ms" or "300m" (schema rule `type`)"#,
            ],
        )
        .json(json!([{
            "file": CONFIG, "kind": "schema", "line": 3, "column": 22, "pointer": "/devops/poll_interval", "rule": "type",
            "message": "expected a duration with a unit, found the bare number 300; write it as a string such as \"300s\", \"300ms\" or \"300m\""
        }])),
        // The unknown key's own place, not the object's.
        case(
            "a config key opsflow does not know",
            vec![(CONFIG, b"{\n  \"projekt\": \"typo\"\n}\n")],
            vec![
                "project-config.json:2:14: at /projekt: not a key the schema allows here (schema rule `additionalProperties`)",
            ],
        ),
        case(
            "config paths.tasks escapes with ..",
            vec![(CONFIG, b"{\n  \"paths\": {\n    \"tasks\": \"../tasks.json\"\n  }\n}\n")],
            vec!["project-config.json:3:14: at /paths/tasks: `paths.tasks` `../tasks.json` climbs out of the workspace with `..`"],
        )
        .json(json!([{
            "file": CONFIG, "kind": "outside_workspace", "line": 3, "column": 14, "pointer": "/paths/tasks",
            "message": "`paths.tasks` `../tasks.json` climbs out of the workspace with `..`"
        }])),
        // Every allowed value is named.
        case(
            "state.json with an unknown node status",
            vec![(STATE, b"{\n  \"current_nodes\": [],\n  \"nodes\": {\n    \"Build_Release\": {\"status\": \"running\"}\n  }\n}\n")],
            vec![
                r#"docs/workflow/state.json:4:33: at /nodes/Build_Release/status: "running" is not one of "pending", "in_progress", "completed", "failed", "blocked" or "skipped" (schema rule `enum`)"#,
            ],
        ),
        case(
            "QA report front matter never closed",
            vec![(QA_REPORT, b"---\nunit_id: UNIT-1\nstatus: approved\n\n# QA report\n")],
            vec!["QA/QA-Report-UNIT-1.md:1:1: front matter opened with `---` is never closed by a second `---` line"],
        ),
        // The YAML error's own place, as a line and column of the file.
        case(
            "QA report front matter that is not YAML",
            vec![(QA_REPORT, b"---\nunit_id: [UNIT-1\nstatus: approved\n---\n# QA report\n")],
            vec![
                "QA/QA-Report-UNIT-1.md:3:7: front matter is not valid YAML: illegal placement of ':' indicator",
            ],
        ),
        case(
            "QA report status not in the enum",
            vec![(QA_REPORT, b"---\nunit_id: UNIT-1\nstatus: maybe\n---\n# QA report\n")],
            vec![
                r#"QA/QA-Report-UNIT-1.md:3:1: at /status: front matter: "maybe" is not one of "approved", "rejected", "changes_requested" or "pending" (schema rule `enum`)"#,
            ],
        )
        .json(json!([{
            "file": QA_REPORT, "kind": "schema", "line": 3, "column": 1, "pointer": "/status", "rule": "enum",
            "message": "front matter: \"maybe\" is not one of \"approved\", \"rejected\", \"changes_requested\" or \"pending\""
        }])),
        case(
            "QA report unit_id that differs from its file name",
            vec![(QA_REPORT, b"---\nunit_id: UNIT-2\nstatus: approved\n---\n# QA report\n")],
            vec!["QA/QA-Report-UNIT-1.md: at /unit_id: front matter `unit_id` is `UNIT-2` but the file name says `UNIT-1`"],
        ),
        case(
            "an approval file without front matter",
            vec![(APPROVAL, b"# Production approval\n\n- [x] Approved\n")],
            vec!["docs/workflow/artifacts/R12-prod-approval.md:1:1: has no front matter; it needs a `---` block at the top"],
        ),
        case(
            "qa-test-report.json with an invalid recommendation",
            vec![(QA_TEST_REPORT, b"{\n  \"recommendation\": \"ship_it\"\n}\n")],
            vec![
                r#"ARTIFACTS/qa-engineer/qa-test-report.json:2:21: at /recommendation: "ship_it" is not one of "approve_for_deployment", "reject" or "needs_fixes" (schema rule `enum`)"#,
            ],
        ),
        Case {
            name: "a deployment report whose known_issues is not a list",
            files: vec![(
                DEPLOYMENT_REPORT,
                String::from_utf8(deployment_report(""))
                    .unwrap()
                    .replace("\"known_issues\": []", "\"known_issues\": \"none\"")
                    .into_bytes(),
            )],
            link_outside: None,
            expected: vec![
                "ARTIFACTS/devops-engineer/deployment-report.json:13:19: at /known_issues: `known_issues` must be an array (a list in `[...]`), found \"none\" (schema rule `type`)"
                    .to_owned(),
            ],
            json: None,
        },
    ]
}

/// Replaces `{outside}` with the symlink target as opsflow shows it.
fn fill(text: &str, outside: &Path) -> String {
    text.replace("{outside}", &outside.display().to_string())
}

fn fill_json(value: &Value, outside: &Path) -> Value {
    serde_json::from_str(&fill(&value.to_string(), outside)).unwrap()
}

/// Runs one case; returns what went wrong, if anything.
fn check(case: &Case) -> Result<(), String> {
    let outside_dir = tempfile::tempdir().unwrap();
    let outside = outside_dir.path().canonicalize().unwrap().join("tasks.json");
    std::fs::write(&outside, "{\"tasks\": []}\n").unwrap();
    let mut ws = Workspace::new();
    // A directory is a workspace when it holds `tasks.json` or the config; a case about
    // another file gets an empty, valid task list beside it.
    let marks_a_workspace = |path: &str| path == TASKS || path == CONFIG;
    if !case.files.iter().any(|(path, _)| marks_a_workspace(path)) && !case.link_outside.is_some_and(marks_a_workspace)
    {
        ws = ws.file(TASKS, "{\"tasks\": []}\n");
    }
    for (path, bytes) in &case.files {
        ws = ws.file(path, bytes);
    }
    if let Some(link) = case.link_outside {
        ws = ws.symlink(link, &outside);
    }
    let before = ws.snapshot();

    let run = ws.run(&["validate"]);
    let stdout = run.stdout();
    let mut lines: Vec<&str> = stdout.lines().collect();
    let summary = lines.pop().unwrap_or_default();
    let expected: Vec<String> = case.expected.iter().map(|line| fill(line, &outside)).collect();
    if run.code() != Some(2) {
        return Err(format!("exit code {:?}, expected 2\n{stdout}{}", run.code(), run.stderr()));
    }
    if lines != expected {
        return Err(format!("printed\n{}\nexpected\n{}", lines.join("\n"), expected.join("\n")));
    }
    if !summary.starts_with(&format!("{} problem", expected.len())) {
        return Err(format!("the summary line does not count {} problems: {summary}", expected.len()));
    }

    if let Some(expected_json) = &case.json {
        let run = ws.run(&["validate", "--json"]);
        if run.code() != Some(2) {
            return Err(format!("--json: exit code {:?}, expected 2", run.code()));
        }
        let report: Value = serde_json::from_str(&run.stdout()).map_err(|e| format!("--json is not JSON: {e}"))?;
        if report["ok"] != false {
            return Err(format!("--json says ok: {}", report["ok"]));
        }
        let expected_json = fill_json(expected_json, &outside);
        if report["diagnostics"] != expected_json {
            return Err(format!("--json diagnostics\n{:#}\nexpected\n{expected_json:#}", report["diagnostics"]));
        }
    }

    if ws.snapshot() != before {
        return Err("validate changed the workspace".to_owned());
    }
    if std::fs::read(&outside).unwrap() != b"{\"tasks\": []}\n" {
        return Err("validate changed the file outside the workspace".to_owned());
    }
    Ok(())
}

#[test]
fn every_kind_of_bad_input_gets_its_exact_diagnostic_and_nothing_is_written() {
    let corpus = corpus();
    assert!(corpus.len() >= 22, "the corpus has only {} kinds", corpus.len());
    let failures: Vec<String> =
        corpus.iter().filter_map(|case| check(case).err().map(|why| format!("--- {}:\n{why}", case.name))).collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), corpus.len(), failures.join("\n\n"));
}

#[test]
fn one_bad_file_does_not_hide_another() {
    let ws = Workspace::new()
        .sample()
        .file(TASKS, concat!("{\"tasks\": [\n  ", task!("A"), ",\n]}\n"))
        .file(QA_REPORT, "---\nunit_id: UNIT-1\nstatus: maybe\n---\n")
        .file(APPROVAL, "no front matter\n");
    let before = ws.snapshot();
    let run = ws.run(&["validate"]);
    run.status(2);
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..lines.len() - 1],
        [
            "docs/workflow/tasks.json:3:1: invalid JSON: trailing comma",
            r#"QA/QA-Report-UNIT-1.md:3:1: at /status: front matter: "maybe" is not one of "approved", "rejected", "changes_requested" or "pending" (schema rule `enum`)"#,
            "docs/workflow/artifacts/R12-prod-approval.md:1:1: has no front matter; it needs a `---` block at the top",
        ]
    );
    assert!(lines[lines.len() - 1].starts_with("3 problems in 3 of "), "{stdout}");

    let report = ws.run(&["validate", "--json"]).json();
    let files: Vec<&str> =
        report["diagnostics"].as_array().unwrap().iter().map(|d| d["file"].as_str().unwrap()).collect();
    assert_eq!(files, [TASKS, QA_REPORT, APPROVAL]);
    // The good files were still checked.
    let checked: Vec<&str> = report["checked"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    for good in [CONFIG, STATE, QA_TEST_REPORT, "QA/QA-Report-UNIT-001.md"] {
        assert!(checked.contains(&good), "{good} was not checked: {checked:?}");
    }
    assert!(ws.snapshot() == before, "validate changed the workspace");
}

#[test]
fn tasks_commands_refuse_a_broken_tasks_file_and_leave_it_as_it_is() {
    let broken = concat!("{\"tasks\": [\n  ", task!("A"), ",\n  {\"id\": \"B\", \"ti");
    let ws = Workspace::new().file(TASKS, broken);
    let diagnostic = "docs/workflow/tasks.json:3:15: invalid JSON: string is not closed before the end of file";
    // `tasks list` reads the file as `validate` does and says the same.
    let validated = "docs/workflow/tasks.json:3:17: invalid JSON: EOF while parsing a string";

    let run = ws.run(&["tasks", "list"]);
    run.status(2);
    assert_eq!(run.stdout(), "");
    assert_eq!(run.stderr(), format!("{validated}\n"));
    assert_eq!(ws.run(&["validate"]).stdout().lines().next(), Some(validated));

    let run = ws.run(&["tasks", "list", "--mine", "--json"]);
    run.status(2);
    assert_eq!(run.stderr(), format!("{validated}\n"));
    // No half list: the diagnostics, as `validate --json` has them.
    let diagnostics = ws.run(&["validate", "--json"]).json()["diagnostics"].clone();
    assert_eq!(run.json(), json!({"ok": false, "diagnostics": diagnostics}));
    assert_eq!(diagnostics[0]["line"], 3, "{diagnostics}");

    for args in [
        &["tasks", "update", "A", "--set", "status=done"][..],
        &["tasks", "add", "--title", "t", "--owner", "devops", "--type", "deployment_staging"],
    ] {
        let run = ws.run(args);
        run.status(2);
        assert_eq!(run.stderr(), format!("opsflow: error: {diagnostic}\n"), "{args:?}");
        assert_eq!(ws.read(TASKS), broken.as_bytes(), "{args:?} changed the broken file");
    }
    // A refused edit writes no `.gitignore` beside the file (only a write does).
    assert_eq!(
        ws.list_dir("docs/workflow").into_iter().filter(|n| n != "tasks.json.lock").collect::<Vec<_>>(),
        ["tasks.json"]
    );
}

#[test]
fn tasks_commands_refuse_to_act_on_an_invalid_config() {
    let ws = Workspace::new()
        .file(CONFIG, "{\n  \"devops\": {\"debounce\": 50}\n}\n")
        .file(TASKS, concat!("{\"tasks\": [\n  ", task!("A"), "\n]}\n"));
    let before = ws.snapshot();
    let run = ws.run(&["tasks", "update", "A", "--set", "status=done"]);
    run.status(2);
    assert_eq!(
        run.stderr(),
        concat!(
            "project-config.json:2:26: at /devops/debounce: expected a duration with a unit, found the bare number 50; ",
            "write it as a string such as \"50s\", \"50ms\" or \"50m\" (schema rule `type`)\n",
            "opsflow: error: project-config.json is invalid (1 problem); fix it first\n",
        )
    );
    assert!(ws.snapshot() == before, "a refused update changed the workspace");
}
