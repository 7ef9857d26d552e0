//! A newcomer's first hour: running opsflow in the wrong directory, `init` in a real git
//! repository, a first release built from the scaffold, the help text, `tasks add --owner`,
//! and the graph's rollback edge.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use clap::CommandFactory;
use serde_json::Value;

use crate::util::{TASKS, Workspace, git, opsflow_bin};

const NOT_A_WORKSPACE: &str = "opsflow: error: not an opsflow workspace (no docs/workflow/tasks.json or \
                               project-config.json here or above); run `opsflow init`\n";

/// Runs opsflow in `cwd` without `-C`, as a user in a shell does.
fn opsflow_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(opsflow_bin())
        .current_dir(cwd)
        .args(args)
        .env_remove("OPSFLOW_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run opsflow")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn outside_a_workspace_every_command_but_init_and_demo_refuses_and_creates_nothing() {
    // What broke: `run` said "nothing to do" and `validate` "ok: 0 files valid" with exit 0 and
    // left a stray `.opsflow/`; `tasks add` printed "No such file or directory" twice.
    let empty = Workspace::new();
    let nested = empty.join("some/where");
    std::fs::create_dir_all(&nested).unwrap();
    for args in [
        &["run"][..],
        &["run", "--dry-run"],
        &["validate"],
        &["status"],
        &["graph"],
        &["tasks", "list"],
        &["tasks", "add", "--title", "x", "--owner", "devops", "--type", "release_build"],
        &["tasks", "update", "TASK-001", "--set", "status=completed"],
    ] {
        let out = opsflow_in(&nested, args);
        assert_eq!(out.status.code(), Some(2), "opsflow {args:?}: {}", text(&out.stdout));
        assert_eq!(text(&out.stderr), NOT_A_WORKSPACE, "opsflow {args:?}");
        assert_eq!(text(&out.stdout), "", "opsflow {args:?}");
    }
    assert_eq!(empty.list_dir(""), ["some"], "something was created");
    assert!(std::fs::read_dir(&nested).unwrap().next().is_none(), "something was created");
}

#[test]
fn dash_c_on_an_empty_or_mistyped_directory_exits_2_and_creates_nothing() {
    // What broke: `opsflow -C DIR run` on an empty directory (or a typo) said "nothing to do",
    // exited 0 and made `.opsflow/` there, while the same `run` inside it exited 2.
    let empty = Workspace::new();
    let shown = empty.path().display().to_string();
    for args in [&["run"][..], &["run", "--dry-run"], &["validate"], &["status"], &["tasks", "list"], &["graph"]] {
        let out = empty.run(args);
        out.status(2);
        assert_eq!(
            out.stderr(),
            format!(
                "opsflow: error: not an opsflow workspace: -C {shown} holds neither docs/workflow/tasks.json \
                 nor project-config.json; run `opsflow init {shown}` to make one\n"
            ),
            "opsflow {args:?}"
        );
        assert_eq!(out.stdout(), "", "opsflow {args:?}");
    }
    assert!(empty.list_dir("").is_empty(), "something was created: {:?}", empty.list_dir(""));

    let typo = empty.join("no-such-dir");
    let out = Command::new(opsflow_bin()).arg("-C").arg(&typo).arg("run").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stderr),
        format!("opsflow: error: not an opsflow workspace: -C {} is not a directory\n", typo.display())
    );
    assert!(!typo.exists(), "the mistyped directory was created");

    // `init DIR`, `-C DIR init` and `demo` still create what they are for.
    let out = Command::new(opsflow_bin()).arg("-C").arg(empty.path()).arg("init").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    empty.run(&["validate"]).status(0);
}

#[test]
fn commands_find_the_workspace_from_a_subdirectory() {
    let ws = Workspace::new().sample();
    let at_root = ws.run(&["validate"]);
    at_root.status(0);
    let deep = ws.join("docs/workflow/artifacts");
    let out = opsflow_in(&deep, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), at_root.stdout());

    let out = opsflow_in(
        &deep,
        &["tasks", "add", "--title", "from below", "--owner", "devops", "--type", "infrastructure_ci"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    let tasks = ws.tasks();
    assert_eq!(crate::util::task(&tasks, &id)["title"], "from below");
    assert!(!deep.join("docs").exists() && !deep.join(".opsflow").exists(), "wrote below the workspace");
}

#[test]
fn init_in_a_git_repository_commits_the_project_lock_files_but_never_opsflow_s() {
    let ws = Workspace::new();
    git(ws.path(), &["init", "-q"]);
    ws.write("Cargo.lock", "# This file is automatically @generated by Cargo.\nversion = 4\n");
    ws.write("web/yarn.lock", "# yarn lockfile v1\n");
    ws.run(&["init"]).status(0);
    // Every writer of the workflow files takes its lock, so each lock file exists.
    ws.run(&["tasks", "add", "--title", "first", "--owner", "devops", "--type", "release_build"]).status(0);
    ws.run(&["run"]);
    for lock in ["docs/workflow/tasks.json.lock", "docs/workflow/state.json.lock"] {
        assert!(ws.join(lock).exists(), "{lock} was not created, so this test proves nothing");
    }

    git(ws.path(), &["add", "-A"]);
    let staged = git(ws.path(), &["ls-files"]);
    let staged: Vec<&str> = staged.lines().collect();
    assert!(staged.contains(&"Cargo.lock") && staged.contains(&"web/yarn.lock"), "{staged:#?}");
    assert!(staged.contains(&"docs/workflow/tasks.json") && staged.contains(&"project-config.json"), "{staged:#?}");
    let opsflow_own: Vec<&&str> = staged
        .iter()
        .filter(|f| f.ends_with(".json.lock") || f.ends_with(".md.lock") || f.starts_with(".opsflow/"))
        .collect();
    assert!(opsflow_own.is_empty(), "opsflow's own files were staged: {opsflow_own:?}");
}

#[test]
fn a_hand_built_workspace_never_commits_its_lock_files_either() {
    let ws = Workspace::new().file(TASKS, "[]\n");
    git(ws.path(), &["init", "-q"]);
    ws.run(&["tasks", "add", "--title", "first", "--owner", "devops", "--type", "release_build"]).status(0);
    assert!(ws.join("docs/workflow/tasks.json.lock").exists());
    git(ws.path(), &["add", "-A"]);
    assert_eq!(git(ws.path(), &["ls-files"]), "docs/workflow/.gitignore\ndocs/workflow/tasks.json\n");

    // A `.gitignore` that is already there is the user's: opsflow never touches it.
    let own = Workspace::new().file(TASKS, "[]\n").file("docs/workflow/.gitignore", "# mine\n");
    own.run(&["tasks", "add", "--title", "first", "--owner", "devops", "--type", "release_build"]).status(0);
    assert_eq!(own.read_string("docs/workflow/.gitignore"), "# mine\n");
}

#[test]
fn the_scaffold_builds_a_real_release_and_says_what_to_do_next() {
    let ws = Workspace::new();
    let init = ws.run(&["init"]);
    init.status(0);
    assert!(init.stdout().contains("next steps (the README's first hour):\n"), "{}", init.stdout());
    assert!(init.stdout().contains("opsflow tasks add --title \"Build the first release\" --owner devops"));
    assert!(init.stdout().contains("--set unit_id=UNIT-001 --set version=1.0.0"), "{}", init.stdout());
    // The merge result is what the review stage hands over; the sample has one.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // It names the release it merged: the version the build task asks for.
    let r04 = std::fs::read_to_string(repo.join("docs/workflow/artifacts/R04-merge-result.md")).unwrap();
    ws.write("docs/workflow/artifacts/R04-merge-result.md", r04.replace("version: 1.0.0", "version: 0.1.0"));
    ws.run(&[
        "tasks",
        "add",
        "--title",
        "Build the first release",
        "--owner",
        "devops",
        "--type",
        "release_build",
        "--set",
        "unit_id=UNIT-001",
        "--set",
        "version=0.1.0",
    ])
    .status(0);
    ws.run(&["run"]);
    let list = ws.run(&["tasks", "list", "--json"]);
    let tasks: Value = list.json();
    let build = tasks.as_array().and_then(|t| t.iter().find(|t| t["id"] == "TASK-001")).cloned().unwrap_or_default();
    assert_eq!(build["status"], "done", "{tasks:#}");
    let page = ws.read_string("docs/workflow/artifacts/R06-release-artifacts/UNIT-001/0.1.0/index.html");
    let project = ws.path().canonicalize().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    assert!(page.contains(&format!("<h1>{project}</h1>")), "{page}");
    assert!(
        ws.read_string("docs/workflow/artifacts/R06-release-artifacts/UNIT-001/0.1.0/SHA256SUMS")
            .contains("index.html")
    );
}

#[test]
fn tasks_add_takes_owner_and_still_understands_the_old_agent_spelling() {
    let ws = Workspace::new().file(TASKS, "[]\n");
    ws.run(&["tasks", "add", "--title", "a", "--owner", "devops", "--type", "release_build"]).status(0);
    let old = ws.run(&["tasks", "add", "--title", "b", "--agent", "qa", "--type", "release_build"]);
    old.status(0);
    assert_eq!(
        old.stderr(),
        "note: `--agent qa` was taken as `--owner qa`, the agent the task is for; write `--owner` (`--agent` means \"act as this agent\")\n"
    );
    let tasks = ws.tasks();
    assert_eq!(crate::util::task(&tasks, "TASK-001")["agent"], "devops");
    assert_eq!(crate::util::task(&tasks, "TASK-002")["agent"], "qa");

    let none = ws.run(&["tasks", "add", "--title", "c", "--type", "release_build"]);
    none.status(2);
    assert!(none.stderr().contains("expected `--owner AGENT`"), "{}", none.stderr());

    let owned = ws.run(&["tasks", "list", "--owner", "qa", "--json"]).json();
    assert_eq!(owned.as_array().map(Vec::len), Some(1), "{owned:#}");
    assert_eq!(owned[0]["id"], "TASK-002");
}

#[test]
fn every_option_and_subcommand_has_help() {
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                missing.push(format!("{path} {}", sub.get_name()));
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&opsflow::cli::Cli::command(), "opsflow", &mut missing);
    assert!(missing.is_empty(), "without help text: {missing:#?}");

    let help = Command::new(opsflow_bin()).args(["tasks", "add", "--help"]).output().unwrap();
    let help = text(&help.stdout);
    assert!(help.contains("--owner <AGENT>") && help.contains("The agent the task is for"), "{help}");
}

#[test]
fn the_graph_draws_the_rollback_after_a_failed_verification() {
    let ws = Workspace::new().sample();
    let mermaid = ws.run(&["graph"]);
    mermaid.status(0);
    assert!(
        mermaid.stdout().contains("    Post_Deploy_Verification -. on failure .-> Rollback_Deployment\n"),
        "{}",
        mermaid.stdout()
    );
    assert!(mermaid.stdout().contains("    Post_Deploy_Verification --> Deployment_And_Continuous_Feedback\n"));
    let dot = ws.run(&["graph", "--format", "dot"]);
    assert!(
        dot.stdout().contains(
            "    \"Post_Deploy_Verification\" -> \"Rollback_Deployment\" [style=dashed, label=\"on failure\"];\n"
        ),
        "{}",
        dot.stdout()
    );
}

#[test]
fn every_template_file_has_a_name() {
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    for entry in std::fs::read_dir(&templates).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".hbs").unwrap_or_else(|| panic!("templates/{name} does not end in .hbs"));
        assert!(!stem.is_empty(), "templates/{name} names no artifact");
    }
}

#[test]
fn the_first_hour_as_the_readme_gives_it_ends_on_staging_waiting_for_the_production_approval() {
    // Followed to the letter, the first hour ended with a unit-less Deploy_To_Staging from
    // state.json blocked on a path that did not exist, a HIGH escalation and exit 3.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block = readme.split("opsflow demo --dir /tmp/opsflow-sample\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    let parent = tempfile::tempdir().unwrap();
    let sample = parent.path().join("opsflow-sample");
    let repo = parent.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    crate::util::git(&repo, &["init", "-q"]);
    let opsflow = crate::util::opsflow_bin();
    let demo = opsflow_in(parent.path(), &["demo", "--dir", sample.to_str().unwrap()]);
    assert!(demo.status.success(), "{}", text(&demo.stderr));
    assert!(opsflow_in(&repo, &["init"]).status.success());
    // The README's commands, as a user pastes them, with `opsflow` on the PATH.
    let script = block.replace("/tmp/opsflow-sample", sample.to_str().unwrap());
    // Everything up to `opsflow run`, which the test runs itself to read its exit code.
    let setup: Vec<&str> = script
        .lines()
        .filter(|line| !["opsflow run", "opsflow status", "opsflow graph"].iter().any(|c| line.starts_with(c)))
        .collect();
    let setup = setup.join("\n");
    let bin_dir = Path::new(opsflow).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let shell = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("set -e\n{}", setup))
        .current_dir(&repo)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(shell.status.success(), "{}{}", text(&shell.stdout), text(&shell.stderr));
    let dry = opsflow_in(&repo, &["run", "--dry-run"]);
    assert!(dry.status.success() || dry.status.code() == Some(3), "{}", text(&dry.stderr));
    let run = opsflow_in(&repo, &["run"]);
    assert_eq!(run.status.code(), Some(3), "{}{}", text(&run.stdout), text(&run.stderr));
    let out = text(&run.stdout);
    assert!(out.contains("deployed 1.0.0 to staging"), "{out}");
    assert!(out.contains("R12-prod-approval.md"), "the run says what it waits for: {out}");
    let status = text(&opsflow_in(&repo, &["status"]).stdout);
    assert!(status.contains("staging: UNIT-001 1.0.0 ("), "{status}");
    assert!(status.contains("production: nothing is live"), "{status}");
    assert!(repo.join("docs/workflow/artifacts/R12-prod-approval.md").is_file());
    let requests = std::fs::read_to_string(repo.join("docs/workflow/human-requests.md")).unwrap();
    assert!(!requests.contains("R06-release-artifacts/1.0.0"), "no unit-less release path: {requests}");
    // What the README says next: `opsflow next` names the approval, `opsflow approve` gives it.
    let next = text(&opsflow_in(&repo, &["next"]).stdout);
    assert!(next.contains("opsflow approve UNIT-001 1.0.0 --as NAME"), "{next}");
    // A short monitoring period, so that the test does not wait the scaffold's five minutes.
    let config_path = repo.join("project-config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["devops"]["monitoring_period"] = serde_json::json!("300ms");
    config["devops"]["monitoring_interval"] = serde_json::json!("100ms");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let approve = opsflow_in(&repo, &["approve", "--as", "alice"]);
    assert_eq!(approve.status.code(), Some(0), "{}{}", text(&approve.stdout), text(&approve.stderr));
    let history = text(&opsflow_in(&repo, &["history", "production"]).stdout);
    assert!(history.starts_with("production: UNIT-001 1.0.0 ("), "{history}");
    assert!(history.contains("approved by alice"), "{history}");
}
