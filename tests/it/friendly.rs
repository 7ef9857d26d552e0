//! Files that read well for people and other stages: other stages' signals and seed 003's own
//! deployment report validate, `human-requests.md` names things as they are written and says
//! when a request was resolved, warnings show where people look, the generated CI pipeline
//! does its job, and errors say what to do.

use serde_json::{Value, json};

use crate::engine::{APPROVAL, CONFIG, REQUESTS, approve, edit_json, json_file};
use crate::util::{TASKS, Workspace, task};

const SIGNAL: &str = "ARTIFACTS/system/stage-completion-signal.json";
const REPORT: &str = "ARTIFACTS/devops-engineer/deployment-report.json";

fn seed_report() -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/seed/deployment-report.seed-003.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn another_stage_s_signal_and_seed_003_s_report_validate_and_runs_read_them() {
    let qa_signal = json!({
        "stage": "qa",
        "agent": "QA-Engineer",
        "unit_id": "UNIT-001",
        "status": "approved",
        "completed_at": "2026-12-01T09:00:00Z",
        "artifacts": {"report": "ARTIFACTS/qa-engineer/qa-test-report.json"},
        "next_agent": "DevOps-Engineer"
    });
    let ws = Workspace::new()
        .sample()
        .file(SIGNAL, serde_json::to_string_pretty(&qa_signal).unwrap())
        .file(REPORT, seed_report());
    let validate = ws.run(&["validate"]);
    validate.status(0);
    assert!(validate.stdout().starts_with("ok:"), "{}", validate.stdout());
    let status = ws.run(&["status"]);
    assert_ne!(status.code(), Some(2), "{}", status.stdout());
    assert!(!status.stdout().contains(SIGNAL) && !status.stdout().contains(REPORT), "{}", status.stdout());
    // The engine reads the same files and goes on to the production approval.
    let run = ws.run(&["run"]);
    run.status(3);
    assert!(!run.stderr().contains(SIGNAL) && !run.stderr().contains(REPORT), "{}", run.stderr());
    assert!(run.stdout().contains("blocked    DEVOPS-007"), "{}", run.stdout());
    // opsflow's own signal has the devops shape.
    let signal = json_file(&ws, SIGNAL);
    assert_eq!(signal["stage"], "devops");
    assert_eq!(signal["status"], "blocked");

    // A signal without a stage, and a devops signal in the wrong shape, are still refused.
    ws.write(SIGNAL, r#"{"stage": "", "status": "approved"}"#);
    let bad = ws.run(&["validate"]);
    bad.status(2);
    assert!(bad.stdout().contains(&format!("{SIGNAL}:1:11: at /stage:")), "{}", bad.stdout());
    ws.write(SIGNAL, r#"{"stage": "devops", "status": "approved"}"#);
    let bad = ws.run(&["validate"]);
    bad.status(2);
    assert!(
        bad.stdout().contains(r#"at /status: "approved" is not one of "completed", "failed" or "blocked""#),
        "{}",
        bad.stdout()
    );
    assert!(bad.stdout().contains(r#""next_agent" is a required property"#), "{}", bad.stdout());
}

#[test]
fn seed_003_s_report_with_another_agent_s_extra_field_validates_and_keeps_it() {
    // What broke: seed 003's own report with one top-level field another agent added was
    // refused (`additionalProperties`), while the reference says objects accept extra fields.
    let mut report: Value = serde_json::from_str(&seed_report()).unwrap();
    report["reviewed_by"] = json!({"agent": "QA-Engineer", "at": "2026-12-01T09:00:00Z"});
    let text = serde_json::to_string_pretty(&report).unwrap();
    let ws = Workspace::new().sample().file(REPORT, &text);
    let validate = ws.run(&["validate"]);
    validate.status(0);
    assert!(validate.stdout().starts_with("ok:"), "{}", validate.stdout());
    let status = ws.run(&["status"]);
    assert!(!status.stdout().contains(REPORT) && !status.stderr().contains(REPORT), "{}", status.stderr());
    assert_eq!(ws.read_string(REPORT), text, "the report was changed");

    // A field of the contract in the wrong shape is still refused.
    report["known_issues"] = json!("none");
    ws.write(REPORT, serde_json::to_string_pretty(&report).unwrap());
    let bad = ws.run(&["validate"]);
    bad.status(2);
    assert!(bad.stdout().contains("at /known_issues: `known_issues` must be an array"), "{}", bad.stdout());
}

#[test]
fn human_requests_name_identifiers_as_written_and_are_marked_resolved_keeping_human_notes() {
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let requests = ws.read_string(REQUESTS);
    // Identifiers are code spans, so `grep Deploy_To_Production` and agents find them as written.
    assert!(requests.contains("- **Task:** `DEVOPS-007` (`Deploy_To_Production`)"), "{requests}");
    assert!(requests.contains("- **Unit ID:** `UNIT-001`"), "{requests}");
    assert!(!requests.contains("\\_"), "{requests}");
    // The help line says what to edit to answer.
    assert!(
        requests
            .contains(&format!("- **Help Needed:** tick `- [x] Approved` in `{APPROVAL}` and fill in `approved_by`")),
        "{requests}"
    );
    assert!(!requests.contains("- **Resolved:**"), "{requests}");
    // A person adds a note under the entry.
    let noted = format!("{requests}\nAsked Carol to look at the staging site first. -- Bob\n");
    ws.write(REQUESTS, &noted);

    approve(&ws, "alice");
    ws.run(&["run"]).status(0);
    let after = ws.read_string(REQUESTS);
    let resolved: Vec<&str> = after.lines().filter(|l| l.starts_with("- **Resolved:** ")).collect();
    assert_eq!(resolved.len(), 1, "{after}");
    let line = resolved[0];
    let (when, what) = line.strip_prefix("- **Resolved:** ").unwrap().split_at("2026-12-02T10:00:00Z".len());
    assert!(crate::util::is_rfc3339_utc(when), "{line}");
    assert_eq!(what, format!(": approved in `{APPROVAL}` by alice; task `DEVOPS-007` is `deployed` now"));
    // It sits under the entry's heading, and nothing else of the file changed.
    assert!(after.contains(&format!("## Escalation Request\n{line}\n- **Agent:** DevOps-Engineer\n")), "{after}");
    assert_eq!(after.replacen(&format!("{line}\n"), "", 1), noted);

    // The next run finds nothing new to say.
    ws.run(&["run"]).status(0);
    assert_eq!(ws.read_string(REQUESTS), after);
}

#[test]
fn a_request_without_a_unit_says_no_unit_and_is_resolved_when_the_task_runs() {
    let ws = Workspace::new();
    ws.run(&["init"]).status(0);
    let header = ws.read_string(REQUESTS);
    assert!(header.contains("Writing in this file answers nothing"), "{header}");
    assert!(header.contains("tick `- [x] Approved` in the approval file it names"), "{header}");
    ws.run(&["tasks", "add", "--title", "dev env", "--owner", "devops", "--type", "infrastructure_dev_env"]).status(0);
    ws.run(&["run"]).status(3);
    let requests = ws.read_string(REQUESTS);
    assert!(requests.contains("- **Issue:** `Dev_Environment_Setup` is blocked by its gates\n"), "{requests}");
    assert!(requests.contains("- **Unit ID:** none (environment work)\n"), "{requests}");
    assert!(!requests.contains("for unit"), "{requests}");
    assert!(requests.contains("  - Blocked before it ran; nothing was changed\n"), "{requests}");

    ws.write("docs/workflow/artifacts/INFRA04-env-specs.md", "---\nstatus: completed\n---\n# Environments\n");
    ws.run(&["run"]);
    assert_eq!(task(&ws.tasks(), "TASK-001")["status"], "done");
    let after = ws.read_string(REQUESTS);
    assert!(after.contains(": task `TASK-001` is `done` now\n"), "{after}");
}

/// A YAML document as JSON, for assertions.
fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned), yaml_to_json(v)))
                .collect(),
        ),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::String(s) | Yaml::Real(s) => Value::String(s.clone()),
        Yaml::Integer(i) => json!(i),
        Yaml::Boolean(b) => json!(b),
        _ => Value::Null,
    }
}

#[test]
fn the_ci_pipeline_installs_opsflow_validates_and_runs_on_the_configured_branch() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |config| {
        config["ci"] = json!({"branch": "release/2.x", "opsflow_git": "https://git.example.com/tools/opsflow.git"});
    });
    ws.run(&["run"]).status(3);
    let text = ws.read_string(".github/workflows/opsflow.yml");
    assert!(text.starts_with("# Generated by opsflow"), "{text}");
    let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
    let header = header.join("\n");
    assert!(header.contains("never overwritten"), "{header}");
    assert!(header.contains("opsflow tasks update <TASK_ID> --set status=pending && opsflow run"), "{header}");
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("the pipeline is YAML");
    let pipeline = yaml_to_json(&docs[0]);
    assert_eq!(pipeline["on"]["push"]["branches"], json!(["release/2.x"]), "{pipeline:#}");
    assert_eq!(pipeline["on"]["pull_request"]["branches"], json!(["release/2.x"]));
    assert_eq!(pipeline["env"]["OPSFLOW_GIT_URL"], "https://git.example.com/tools/opsflow.git");
    let runs = |job: &str| -> Vec<String> {
        pipeline["jobs"][job]["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("job {job} has steps: {pipeline:#}"))
            .iter()
            .filter_map(|s| s["run"].as_str().map(str::to_owned))
            .collect()
    };
    let install = "cargo install --locked --git \"$OPSFLOW_GIT_URL\" opsflow".to_owned();
    let gate = runs("quality-gate");
    assert_eq!(gate.first(), Some(&install), "{gate:?}");
    assert_eq!(gate.last().map(String::as_str), Some("opsflow validate"), "{gate:?}");
    assert!(gate.contains(&"mkdir -p dist && cp -R app/. dist/".to_owned()), "{gate:?}");
    let reconcile = runs("reconcile");
    assert_eq!(reconcile, [install, "opsflow run || [ \"$?\" -eq 3 ]".to_owned()]);
    assert_eq!(pipeline["jobs"]["reconcile"]["needs"], "quality-gate");
    assert_eq!(
        pipeline["jobs"]["reconcile"]["if"],
        "github.event_name == 'push' && github.ref == 'refs/heads/release/2.x'"
    );
    assert!(!text.contains("main"), "no branch but the configured one:\n{text}");

    // Without `ci.opsflow_git` the pipeline reads the repository variable; a bad branch name
    // is a config error that names the key.
    let ws = Workspace::new().sample();
    ws.run(&["run"]).status(3);
    let pipeline = yaml_to_json(
        &yaml_rust2::YamlLoader::load_from_str(&ws.read_string(".github/workflows/opsflow.yml")).unwrap()[0],
    );
    assert_eq!(pipeline["env"]["OPSFLOW_GIT_URL"], "${{ vars.OPSFLOW_GIT_URL }}");
    assert_eq!(pipeline["on"]["push"]["branches"], json!(["main"]));
    edit_json(&ws, CONFIG, |config| config["ci"] = json!({"branch": "main; rm -rf /"}));
    let bad = ws.run(&["validate"]);
    bad.status(2);
    assert!(
        bad.stdout().contains("at /ci/branch: \"main; rm -rf /\" must be a branch name of letters, digits"),
        "{}",
        bad.stdout()
    );
}

#[test]
fn a_coverage_warning_shows_on_the_console_in_r08_and_in_r12_with_the_figure() {
    let ws = Workspace::new().sample();
    edit_json(&ws, "ARTIFACTS/qa-engineer/qa-test-report.json", |report| {
        report["coverage"]["line_percent"] = json!(71.5)
    });
    let run = ws.run(&["run"]);
    run.status(3);
    let figure = "coverage: 71.5% line coverage, need 80%";
    let stdout = run.stdout();
    assert!(stdout.contains(&format!("deployed 1.0.0 to staging (recreate)\n    warn {figure}\n")), "{stdout}");
    let r08 = ws.read_string("docs/workflow/artifacts/R08-staging-deploy.md");
    assert!(r08.contains(&format!("warnings: [\"{figure}\"]\n")), "{r08}");
    assert!(r08.contains("\n## Warnings\n") && r08.contains(&format!("\n- {figure}\n")), "{r08}");
    let r12 = ws.read_string(APPROVAL);
    assert!(
        r12.contains(&format!("- warned at staging: {figure} (docs/workflow/artifacts/R08-staging-deploy.md)\n")),
        "{r12}"
    );
    // `run --json` carries it too.
    approve(&ws, "alice");
    let json_run = ws.run(&["run", "--json"]);
    json_run.status(0);
    let ran = json_run.json()["ran"].as_array().unwrap().clone();
    let production = ran.iter().find(|r| r["task"] == "DEVOPS-007").unwrap();
    assert_eq!(
        production["warnings"],
        json!([format!("warned at staging: {figure} (docs/workflow/artifacts/R08-staging-deploy.md)")])
    );
}

#[test]
fn checks_run_in_the_live_release_s_directory_for_recreate_and_blue_green_alike() {
    let ws = Workspace::new().sample();
    let check = json!([{
        "name": "index-present",
        "command": "test -f index.html && printf '%s %s\\n' \"$OPSFLOW_ENV\" \"$(pwd -P)\" >> \"$OPSFLOW_WORKSPACE/check-dirs.txt\""
    }]);
    edit_json(&ws, CONFIG, |c| {
        for env in ["staging", "production"] {
            c["environments"][env]["health_checks"] = check.clone();
            c["environments"][env]["smoke_tests"] =
                json!([{"name": "title", "command": "grep -q 'Acme Shop' index.html"}]);
        }
        assert_eq!(c["environments"]["staging"]["strategy"], "recreate");
        assert_eq!(c["environments"]["production"]["strategy"], "blue-green");
    });
    ws.run(&["run"]).status(3);
    approve(&ws, "alice");
    ws.run(&["run"]).status(0);
    let dirs = ws.read_string("check-dirs.txt");
    let root = ws.path().canonicalize().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in dirs.lines() {
        let (env, dir) = line.split_once(' ').unwrap();
        let dir = std::path::Path::new(dir);
        assert!(dir.join("index.html").is_file(), "{line}");
        let inside = dir.strip_prefix(root.join(format!(".opsflow/envs/{env}"))).unwrap_or_else(|_| panic!("{line}"));
        let inside = inside.to_string_lossy();
        assert!(inside.starts_with("releases/") || inside.starts_with("slots/"), "{line}");
        seen.insert(env.to_owned());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["production", "staging"], "{dirs}");
}

#[test]
fn errors_say_every_allowed_value_the_line_and_one_thing_per_mistake() {
    let ws = Workspace::new();
    ws.run(&["init"]).status(0);
    edit_json(&ws, CONFIG, |c| {
        c["gates"]["coverage_action"] = json!("maybe");
        c["environments"]["staging"]["strategy"] = json!("sideways");
    });
    ws.write(
        TASKS,
        "{\"tasks\": [\n  {\"id\": 1, \"title\": \"a\", \"agent\": \"devops\", \"type\": \"release_build\", \"status\": \"pending\"},\n  {\"id\": \"T-2\", \"title\": \"b\", \"agent\": \"devops\", \"type\": \"release_build\", \"status\": \"pending\", \"priority\": \"urgent\"}\n]}\n",
    );
    ws.write("QA/QA-Report-UNIT-1.md", "---\nunit_id: UNIT-1\nblocking_bugs: []\nstatus: aproved\n---\n# QA\n");
    ws.write("docs/workflow/artifacts/R17-rollback-decision.md", "---\nreason: x\ndecision: maybe\n---\n");
    ws.write(
        SIGNAL,
        r#"{"stage": "devops", "agent": "a", "unit_id": 5, "status": "completed", "completed_at": "2026-01-01T00:00:00Z", "artifacts": [], "next_agent": "PM", "message": "m"}"#,
    );
    edit_json(&ws, CONFIG, |c| c["environments"]["staging"]["metrics"] = json!({"error_rate": "/e"}));
    let validate = ws.run(&["validate"]);
    validate.status(2);
    let out = validate.stdout();
    let lines: Vec<&str> = out.lines().collect();
    for expected in [
        "project-config.json:25:24: at /gates/coverage_action: \"maybe\" is not one of \"warn\" or \"block\" (schema rule `enum`)",
        // The narrower list (the `local` provider's strategies) only, once.
        "project-config.json:32:19: at /environments/staging/strategy: \"sideways\" is not one of \"recreate\" or \"blue-green\" (schema rule `enum`)",
        "docs/workflow/tasks.json:2:10: at /tasks/0/id: `id` must be a string, found 1 (schema rule `type`)",
        "docs/workflow/tasks.json:3:108: at /tasks/1/priority: \"urgent\" is not one of \"critical\", \"high\", \"medium\" or \"low\" (schema rule `enum`)",
        "QA/QA-Report-UNIT-1.md:4:1: at /status: front matter: \"aproved\" is not one of \"approved\", \"rejected\", \"changes_requested\" or \"pending\" (schema rule `enum`)",
        "docs/workflow/artifacts/R17-rollback-decision.md:3:1: at /decision: front matter: \"maybe\" is not one of \"rollback\", \"proceed\" or \"pending\" (schema rule `enum`)",
        // The branches of a `oneOf`, in words.
        "ARTIFACTS/system/stage-completion-signal.json:1:46: at /unit_id: `unit_id` must be a string or null, found 5 (schema rule `oneOf`)",
        "project-config.json:40:18: at /environments/staging/metrics: `metrics` needs one of `http`, `command` or `prometheus` (schema rule `oneOf`)",
    ] {
        assert!(lines.contains(&expected), "missing:\n{expected}\nin:\n{out}");
    }
    assert!(!out.contains("other candidates"), "{out}");
    assert_eq!(lines.iter().filter(|l| l.contains("/tasks/0/id")).count(), 1, "{out}");
    assert_eq!(lines.iter().filter(|l| l.contains("/environments/staging/strategy")).count(), 1, "{out}");
}

#[test]
fn tasks_add_refuses_a_dependency_on_no_task() {
    let ws = Workspace::new().file(TASKS, "{\"tasks\": []}\n");
    ws.run(&["tasks", "add", "--title", "build", "--owner", "devops", "--type", "release_build"]).status(0);
    let before = ws.read(TASKS);
    let refused = ws.run(&[
        "tasks",
        "add",
        "--title",
        "ship",
        "--owner",
        "devops",
        "--type",
        "deployment_staging",
        "--set",
        "depends_on:=[\"TASK-001\", \"TASK-404\"]",
    ]);
    refused.status(2);
    assert_eq!(
        refused.stderr(),
        "opsflow: error: `depends_on` names `TASK-404`, which is no task in docs/workflow/tasks.json, so nothing was written\n"
    );
    assert_eq!(ws.read(TASKS), before);
    let itself = ws.run(&[
        "tasks",
        "add",
        "--id",
        "T-X",
        "--title",
        "loop",
        "--owner",
        "devops",
        "--type",
        "release_build",
        "--set",
        "depends_on:=[\"T-X\"]",
    ]);
    itself.status(2);
    assert!(itself.stderr().contains("task `T-X` cannot depend on itself"), "{}", itself.stderr());
    assert_eq!(ws.read(TASKS), before);
    let ok = ws.run(&[
        "tasks",
        "add",
        "--title",
        "ship",
        "--owner",
        "devops",
        "--type",
        "deployment_staging",
        "--set",
        "depends_on:=[\"TASK-001\"]",
    ]);
    ok.status(0);
    assert_eq!(ok.stdout(), "TASK-002\n");
    assert_eq!(task(&ws.tasks(), "TASK-002")["depends_on"], json!(["TASK-001"]));

    // `tasks update` holds to the same rule.
    let before = ws.read(TASKS);
    let refused =
        ws.run(&["tasks", "update", "TASK-002", "--set", "depends_on:=[\"TASK-001\", \"GONE\", \"ALSO-GONE\"]"]);
    refused.status(2);
    assert_eq!(
        refused.stderr(),
        "opsflow: error: `depends_on` names `GONE`, `ALSO-GONE`, which are no task in docs/workflow/tasks.json, so nothing was written\n"
    );
    let itself = ws.run(&["tasks", "update", "TASK-002", "--set", "depends_on:=[\"TASK-002\"]"]);
    itself.status(2);
    assert!(itself.stderr().contains("task `TASK-002` cannot depend on itself"), "{}", itself.stderr());
    assert_eq!(ws.read(TASKS), before);
    ws.run(&["tasks", "update", "TASK-002", "--set", "depends_on:=[]"]).status(0);
    assert_eq!(task(&ws.tasks(), "TASK-002")["depends_on"], json!([]));
}

/// The commands `opsflow <path> --help` lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_option_of_every_subcommand_has_a_description_in_its_help() {
    let help_of = |path: &[String]| {
        let output = std::process::Command::new(crate::util::opsflow_bin())
            .args(path)
            .arg("--help")
            .output()
            .expect("run opsflow --help");
        assert!(output.status.success(), "{path:?} --help");
        String::from_utf8(output.stdout).unwrap()
    };
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    let mut walked = Vec::new();
    let mut missing = Vec::new();
    while let Some(path) = queue.pop() {
        let help = help_of(&path);
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        // In long help every option and argument is a line of its own (`  -C, --dir <DIR>`,
        // `      --json`, `  <ENVIRONMENT>`), followed by its description, indented further.
        let lines: Vec<&str> = help.lines().collect();
        let mut section = "";
        for (i, line) in lines.iter().enumerate() {
            if !line.starts_with(' ') && line.ends_with(':') {
                section = line;
                continue;
            }
            if !matches!(section, "Options:" | "Arguments:") || line.trim().is_empty() {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let entry = line.trim_start();
            if indent <= 6 && (entry.starts_with('-') || entry.starts_with('<') || entry.starts_with('[')) {
                let described = lines
                    .get(i + 1)
                    .is_some_and(|next| next.len() - next.trim_start().len() > indent && !next.trim().is_empty());
                if !described {
                    missing.push(format!("opsflow {} {entry}", path.join(" ")));
                }
            }
        }
        walked.push(path.join(" "));
    }
    assert!(walked.len() >= 14, "{walked:?}");
    assert!(walked.contains(&"tasks add".to_owned()) && walked.contains(&"merge-driver".to_owned()), "{walked:?}");
    assert!(missing.is_empty(), "options without a description: {missing:#?}");
}

#[test]
fn a_failure_request_is_resolved_when_a_person_records_who_resolved_it_or_its_fix_task_is_done() {
    let failing = json!({
        "provider": "command",
        "strategy": "direct",
        "commands": {"deploy": "true", "rollback": "true"},
        "health_checks": [{"name": "never", "command": "exit 1"}],
    });
    let resolved_lines = |ws: &Workspace| -> Vec<String> {
        ws.read_string(REQUESTS).lines().filter(|l| l.starts_with("- **Resolved:** ")).map(str::to_owned).collect()
    };

    // A person records who resolved it on the task.
    let ws = crate::rollout::approved_for_production(failing.clone());
    ws.run(&["run"]).status(1);
    assert_eq!(task(&ws.tasks(), "DEVOPS-007")["status"], "failed");
    assert_eq!(resolved_lines(&ws).len(), 1, "only the approval request is resolved");
    ws.run(&["tasks", "update", "DEVOPS-007", "--set", "resolved_by=bob"]).status(0);
    ws.run(&["run"]);
    let lines = resolved_lines(&ws);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().any(|l| l.ends_with(": `resolved_by: bob` on task `DEVOPS-007`")), "{lines:?}");

    // Or its fix task is done.
    let ws = crate::rollout::approved_for_production(failing);
    ws.run(&["run"]).status(1);
    ws.run(&["tasks", "update", "FIX-DEVOPS-007", "--set", "status=done"]).status(0);
    ws.run(&["run"]);
    let lines = resolved_lines(&ws);
    assert!(lines.iter().any(|l| l.ends_with(": fix task `FIX-DEVOPS-007` is `done`")), "{lines:?}");
    // Nothing is resolved twice.
    let text = ws.read_string(REQUESTS);
    ws.run(&["run"]);
    assert_eq!(ws.read_string(REQUESTS), text);
}

#[test]
fn a_task_list_whose_entries_all_fail_the_schema_is_never_silent() {
    // What broke: with every entry of `tasks.json` failing the schema, `run` and `run
    // --dry-run` exited 0 with "nothing to do" and `tasks list` printed `-` ids, without a word
    // on stderr, while `validate` listed every problem.
    let ws = Workspace::new();
    ws.run(&["init"]).status(0);
    ws.write(
        TASKS,
        concat!(
            "{\"tasks\": [\n",
            "  {\"task_id\": \"T-1\", \"name\": \"build\", \"assignee\": \"devops\", \"kind\": \"release_build\", \"state\": \"todo\"},\n",
            "  {\"task_id\": \"T-2\", \"name\": \"deploy\", \"assignee\": \"devops\", \"kind\": \"deployment_staging\", \"state\": \"todo\"}\n",
            "]}\n"
        ),
    );
    let warning = "warning: 2 of 2 entries of docs/workflow/tasks.json fail the task schema, at /tasks/0 (line 2) \
                   and /tasks/1 (line 3); `opsflow validate` lists every problem\n";
    for args in [&["run"][..], &["run", "--dry-run"], &["status"], &["tasks", "list"]] {
        let out = ws.run(args);
        assert!(out.stderr().ends_with(warning), "opsflow {args:?}\n{}", out.stderr());
    }
    // No entry says it is this runner's, so for `run` there is nothing it could do.
    assert_eq!(ws.run(&["run"]).status(0).stdout(), "nothing to do\n");

    // Entries this runner owns that fail the schema are problems: exit 2, never "nothing to do".
    ws.write(
        TASKS,
        concat!(
            "{\"tasks\": [\n",
            "  {\"id\": \"T-1\", \"agent\": \"devops\", \"type\": \"release_build\", \"status\": \"todo\"},\n",
            "  {\"id\": \"T-2\", \"title\": \"ok\", \"agent\": \"qa\", \"type\": \"qa_review\", \"status\": \"pending\"},\n",
            "  {\"id\": \"T-3\", \"title\": 3, \"agent\": \"frontend\", \"type\": \"feature\", \"status\": \"pending\"}\n",
            "]}\n"
        ),
    );
    for args in [&["run"][..], &["run", "--dry-run"]] {
        let out = ws.run(args);
        out.status(2);
        assert_eq!(
            out.stderr(),
            "warning: 2 of 3 entries of docs/workflow/tasks.json fail the task schema, at /tasks/0 (line 2) and \
             /tasks/2 (line 4); one of them is this runner's (`DevOps-Engineer`) and cannot run; `opsflow validate` \
             lists every problem\n",
            "opsflow {args:?}"
        );
        let stdout = out.stdout();
        assert!(!stdout.contains("nothing to do"), "opsflow {args:?}\n{stdout}");
        assert!(
            stdout.contains("problem    docs/workflow/tasks.json:2:") && stdout.contains("title"),
            "opsflow {args:?}\n{stdout}"
        );
    }
    let json = ws.run(&["run", "--json"]).json();
    assert_eq!(json["problems"].as_array().map(Vec::len), Some(1), "{json:#}");
    ws.run(&["tasks", "list"]).status(0);
}

/// Runs actionlint on a workflow file when it is installed; says so when it is not.
fn actionlint(path: &std::path::Path) {
    match std::process::Command::new("actionlint").arg("-no-color").arg(path).output() {
        Ok(out) => assert!(
            out.status.success(),
            "actionlint refuses {}:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("actionlint is not installed: the generated CI pipeline was checked with a YAML parser only");
        }
        Err(e) => panic!("cannot run actionlint: {e}"),
    }
}

#[test]
fn the_ci_pipeline_quotes_every_value_and_passes_build_expressions_as_data() {
    // What broke: a project named `Shop: Admin` gave `name: Shop: Admin CI/CD`, which is not
    // YAML, `acme #1` silently became `acme`, and `validate` said ok.
    let cases = [
        ("Shop: Admin", "make all", vec![], "make all"),
        (
            "acme #1",
            "make 'x: y' # a comment of the shell\nmake test",
            vec![],
            "make 'x: y' # a comment of the shell\nmake test",
        ),
        (
            "yes",
            "echo \"${{ github.event.pull_request.title }}\" && make VERSION=${{ github.head_ref }}",
            vec![
                ("OPSFLOW_BUILD_EXPR_1", "${{ github.event.pull_request.title }}"),
                ("OPSFLOW_BUILD_EXPR_2", "${{ github.head_ref }}"),
            ],
            "echo \"${OPSFLOW_BUILD_EXPR_1}\" && make VERSION=${OPSFLOW_BUILD_EXPR_2}",
        ),
        ("- [it's] {\"quoted\"} &a *b !c %d @e `f` \\ back", "true", vec![], "true"),
    ];
    for (project, build, expressions, script) in cases {
        let ws = Workspace::new().sample();
        edit_json(&ws, CONFIG, |config| {
            config["project"] = json!(project);
            config["release"]["build"] = json!(build);
        });
        ws.run(&["validate"]).status(0);
        ws.run(&["run"]);
        let path = ws.join(".github/workflows/opsflow.yml");
        let text = ws.read_string(".github/workflows/opsflow.yml");
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("the pipeline for {project:?} is not YAML: {e}\n{text}"));
        let pipeline = yaml_to_json(&docs[0]);
        assert_eq!(pipeline["name"], format!("{project} CI/CD"), "{text}");
        let step = pipeline["jobs"]["quality-gate"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "Build")
            .unwrap_or_else(|| panic!("no Build step:\n{text}"))
            .clone();
        assert_eq!(step["run"], script, "{text}");
        let env: Vec<(String, String)> = step["env"]
            .as_object()
            .map(|env| env.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect())
            .unwrap_or_default();
        let expected: Vec<(String, String)> =
            expressions.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(env, expected, "{text}");
        assert!(!step["run"].as_str().unwrap().contains("${{"), "an expression is spliced into the script:\n{text}");
        assert_eq!(
            pipeline["jobs"]["reconcile"]["if"],
            "github.event_name == 'push' && github.ref == 'refs/heads/main'"
        );
        actionlint(&path);
    }
}
