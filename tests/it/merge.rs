//! The git merge driver in real repositories: `opsflow init` wires it in, then real
//! `git merge` and `git rebase` of two branches run it on `tasks.json` and `state.json`.
//! Also `validate`'s warning when the driver is named but not configured, a 100,000-task
//! merge through the binary, and `tasks release`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{TASKS, Workspace, git_in, opsflow_bin, task, tasks_of, wait_for_exit, wait_until};

const STATE: &str = "docs/workflow/state.json";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A git repository with an opsflow workspace at its root, set up by `opsflow init`.
struct Repo {
    ws: Workspace,
}

impl Repo {
    fn new() -> Repo {
        let ws = Workspace::new();
        let repo = Repo { ws };
        repo.git(&["init", "-q", "-b", "main"]);
        let init = repo.ws.run(&["init"]);
        init.status(0);
        assert!(init.stdout().contains("merge.opsflow.driver = "), "{}", init.stdout());
        repo
    }

    /// Runs git and asserts that it succeeded.
    #[track_caller]
    fn git(&self, args: &[&str]) -> String {
        crate::util::git(self.ws.path(), args)
    }

    fn commit(&self, files: &[(&str, &str)], message: &str) {
        for (relative, contents) in files {
            self.ws.write(relative, contents);
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
    }

    /// Commits `base` on main, `theirs` on a branch `other`, `ours` on main, then merges
    /// `other` into main. Returns git's output.
    fn merge(&self, file: &str, base: &str, ours: &str, theirs: &str) -> Output {
        self.commit(&[(file, base)], "base");
        self.git(&["checkout", "-q", "-b", "other"]);
        self.commit(&[(file, theirs)], "theirs");
        self.git(&["checkout", "-q", "main"]);
        self.commit(&[(file, ours)], "ours");
        git_in(self.ws.path(), &["merge", "--no-edit", "other"])
    }

    fn read(&self, file: &str) -> String {
        self.ws.read_string(file)
    }

    /// The files git lists as still conflicted.
    fn unmerged(&self) -> String {
        self.git(&["diff", "--name-only", "--diff-filter=U"])
    }
}

#[track_caller]
fn clean(output: &Output) {
    assert!(
        output.status.success(),
        "git failed\n--- stdout\n{}--- stderr\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn no_markers(contents: &str) {
    for marker in ["<<<<<<<", "=======", ">>>>>>>"] {
        assert!(!contents.contains(marker), "conflict marker {marker} in\n{contents}");
    }
}

const BASE: &str = r#"{
  "tasks": [
    {
      "id": "T-1",
      "title": "Build",
      "agent": "DevOps-Engineer",
      "type": "release_build",
      "status": "pending"
    },
    {
      "id": "T-2",
      "title": "Stage",
      "agent": "DevOps-Engineer",
      "type": "deployment_staging",
      "status": "pending",
      "priority": "high"
    },
    {
      "id": "T-3",
      "title": "Ship",
      "agent": "DevOps-Engineer",
      "type": "deployment_production",
      "status": "pending"
    }
  ]
}
"#;

fn set_field(text: &str, id: &str, from: &str, to: &str) -> String {
    let at = text.find(&format!("\"id\": \"{id}\"")).expect("the task is there");
    let end = at + text[at..].find('}').expect("the entry ends");
    let entry = &text[at..end];
    assert!(entry.contains(from), "{entry} has no {from}");
    format!("{}{}{}", &text[..at], entry.replacen(from, to, 1), &text[end..])
}

const NEW_T4: &str = "    {\n      \"id\": \"T-4\",\n      \"title\": \"Verify\",\n      \"agent\": \"DevOps-Engineer\",\n      \"type\": \"deployment_verification\",\n      \"status\": \"pending\"\n    }";
const NEW_T5: &str = "    {\n      \"id\": \"T-5\",\n      \"title\": \"Fix\",\n      \"agent\": \"Task-Coder\",\n      \"type\": \"bug_fix\",\n      \"status\": \"pending\"\n    }";

fn append(text: &str, entries: &[&str]) -> String {
    let close = text.rfind("\n  ]").expect("the list closes");
    let mut out = text[..close].to_owned();
    for entry in entries {
        out.push_str(",\n");
        out.push_str(entry);
    }
    out.push_str(&text[close..]);
    out
}

#[test]
fn disjoint_edits_merge_cleanly_and_only_those_entries_change() {
    let repo = Repo::new();
    let ours = set_field(BASE, "T-1", "\"status\": \"pending\"", "\"status\": \"done\"");
    let theirs = append(&set_field(BASE, "T-3", "\"status\": \"pending\"", "\"status\": \"blocked\""), &[NEW_T5]);
    let output = repo.merge(TASKS, BASE, &ours, &theirs);
    clean(&output);
    let merged = repo.read(TASKS);
    no_markers(&merged);
    let expected = append(&set_field(&ours, "T-3", "\"status\": \"pending\"", "\"status\": \"blocked\""), &[NEW_T5]);
    assert_eq!(merged, expected);
    assert_eq!(repo.unmerged(), "");
    // The merge commit exists: git took the driver's word that it merged cleanly.
    assert!(repo.git(&["log", "--oneline", "-1"]).contains("Merge branch 'other'"));
}

#[test]
fn tasks_added_on_both_sides_are_all_kept_ours_first() {
    let repo = Repo::new();
    let ours = append(BASE, &[NEW_T4]);
    let theirs = append(BASE, &[NEW_T5]);
    clean(&repo.merge(TASKS, BASE, &ours, &theirs));
    assert_eq!(repo.read(TASKS), append(BASE, &[NEW_T4, NEW_T5]));
}

#[test]
fn different_fields_of_one_task_both_land() {
    let repo = Repo::new();
    let ours = set_field(BASE, "T-2", "\"status\": \"pending\"", "\"status\": \"in_progress\"");
    let theirs = set_field(BASE, "T-2", "\"priority\": \"high\"", "\"priority\": \"critical\"");
    clean(&repo.merge(TASKS, BASE, &ours, &theirs));
    let merged = repo.read(TASKS);
    assert_eq!(merged, set_field(&ours, "T-2", "\"priority\": \"high\"", "\"priority\": \"critical\""));
}

#[test]
fn the_same_field_changed_differently_is_a_conflict_git_reports() {
    let repo = Repo::new();
    let ours = set_field(BASE, "T-2", "\"status\": \"pending\"", "\"status\": \"deployed\"");
    let theirs = set_field(
        &set_field(BASE, "T-2", "\"status\": \"pending\"", "\"status\": \"failed\""),
        "T-1",
        "\"title\": \"Build\"",
        "\"title\": \"Build it\"",
    );
    let output = repo.merge(TASKS, BASE, &ours, &theirs);
    assert!(!output.status.success(), "git merged a real conflict cleanly");
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(said.contains("CONFLICT"), "{said}");
    assert!(
        said.contains(
            "docs/workflow/tasks.json: task `T-2`, field `status`: base \"pending\", ours \"deployed\", theirs \"failed\""
        ),
        "{said}"
    );
    assert_eq!(repo.unmerged().trim(), TASKS);
    let merged = repo.read(TASKS);
    no_markers(&merged);
    // Valid JSON, ours for the conflicting field, theirs's other change merged.
    let tasks = tasks_of(merged.as_bytes());
    assert_eq!(task(&tasks, "T-2")["status"], "deployed");
    assert_eq!(task(&tasks, "T-1")["title"], "Build it");
}

#[test]
fn one_id_added_twice_with_different_content_is_a_conflict() {
    let repo = Repo::new();
    let ours = append(BASE, &[NEW_T4]);
    let theirs = append(BASE, &[&NEW_T4.replace("Verify", "Verify twice")]);
    let output = repo.merge(TASKS, BASE, &ours, &theirs);
    assert!(!output.status.success());
    let said = text(&output.stderr);
    assert!(
        said.contains(
            "task `T-4` (added on both sides), field `title`: base (absent), ours \"Verify\", theirs \"Verify twice\""
        ),
        "{said}"
    );
    assert_eq!(repo.read(TASKS), ours);

    // The same entry added on both sides is no conflict at all.
    let repo = Repo::new();
    clean(&repo.merge(TASKS, BASE, &append(BASE, &[NEW_T4]), &append(BASE, &[NEW_T4])));
    assert_eq!(repo.read(TASKS), append(BASE, &[NEW_T4]));
}

/// BASE without the entry of `id`.
fn without(text: &str, id: &str) -> String {
    let at = text.find(&format!("\"id\": \"{id}\"")).unwrap();
    let start = text[..at].rfind("    {").unwrap();
    let end = at + text[at..].find("    }").unwrap() + "    }".len();
    if text[end..].starts_with(',') {
        format!("{}{}", &text[..start], &text[end + 2..])
    } else {
        format!("{}{}", text[..start].trim_end_matches(['\n', ',']), &text[end..])
    }
}

#[test]
fn delete_versus_modify_is_a_conflict_and_delete_of_an_unchanged_task_merges() {
    let repo = Repo::new();
    let ours = set_field(BASE, "T-3", "\"status\": \"pending\"", "\"status\": \"cancelled\"");
    let theirs = without(BASE, "T-3");
    let output = repo.merge(TASKS, BASE, &ours, &theirs);
    assert!(!output.status.success());
    let said = text(&output.stderr);
    assert!(said.contains("task `T-3` (changed on ours, deleted on theirs): base {"), "{said}");
    assert!(said.contains("theirs (deleted)"), "{said}");
    assert_eq!(repo.read(TASKS), ours, "ours is kept");

    let repo = Repo::new();
    let ours = set_field(BASE, "T-1", "\"status\": \"pending\"", "\"status\": \"done\"");
    clean(&repo.merge(TASKS, BASE, &ours, &without(BASE, "T-2")));
    assert_eq!(repo.read(TASKS), without(&ours, "T-2"));
}

#[test]
fn crlf_tabs_and_inline_entries_keep_their_bytes() {
    let repo = Repo::new();
    let base = "{\r\n\t\"version\": 1,\r\n\t\"tasks\": [\r\n\t\t{\"id\": \"A\", \"status\": \"pending\", \"note\": \"x\"},\r\n\t\t{\"id\": \"B\", \"status\": \"pending\"}\r\n\t]\r\n}\r\n";
    let ours = base.replace("{\"id\": \"A\", \"status\": \"pending\"", "{\"id\": \"A\", \"status\": \"done\"");
    let theirs =
        base.replace("\"note\": \"x\"", "\"note\": \"y\"").replace("\"version\": 1", "\"version\": 2").replace(
            "{\"id\": \"B\", \"status\": \"pending\"}",
            "{\"id\": \"B\", \"status\": \"pending\"},\r\n\t\t{\"id\": \"C\", \"status\": \"pending\"}",
        );
    // Git must hand the driver the bytes as they are.
    repo.ws.write(".gitattributes", format!("{}* -text\n", repo.read(".gitattributes")));
    clean(&repo.merge(TASKS, base, &ours, &theirs));
    assert_eq!(
        repo.read(TASKS),
        "{\r\n\t\"version\": 2,\r\n\t\"tasks\": [\r\n\t\t{\"id\": \"A\", \"status\": \"done\", \"note\": \"y\"},\r\n\t\t{\"id\": \"B\", \"status\": \"pending\"},\r\n\t\t{\"id\": \"C\", \"status\": \"pending\"}\r\n\t]\r\n}\r\n"
    );
}

#[test]
fn a_bare_array_merges_through_a_rebase() {
    let repo = Repo::new();
    let base = "[\n  {\"id\": \"A\", \"status\": \"pending\"},\n  {\"id\": \"B\", \"status\": \"pending\"}\n]\n";
    repo.commit(&[(TASKS, base)], "base");
    repo.git(&["checkout", "-q", "-b", "other"]);
    repo.commit(&[(TASKS, &base.replace("\"B\", \"status\": \"pending\"", "\"B\", \"status\": \"done\""))], "theirs 1");
    repo.commit(
        &[(TASKS, &repo.read(TASKS).replace("\"status\": \"done\"}", "\"status\": \"done\"},\n  {\"id\": \"D\"}"))],
        "theirs 2",
    );
    repo.git(&["checkout", "-q", "main"]);
    repo.commit(
        &[(TASKS, &base.replace("\"A\", \"status\": \"pending\"", "\"A\", \"status\": \"in_progress\""))],
        "ours",
    );
    repo.git(&["checkout", "-q", "other"]);
    clean(&git_in(repo.ws.path(), &["rebase", "main"]));
    assert_eq!(
        repo.read(TASKS),
        "[\n  {\"id\": \"A\", \"status\": \"in_progress\"},\n  {\"id\": \"B\", \"status\": \"done\"},\n  {\"id\": \"D\"}\n]\n"
    );
    assert_eq!(repo.git(&["log", "--format=%s"]).lines().collect::<Vec<_>>()[..2], ["theirs 2", "theirs 1"]);
}

#[test]
fn state_nodes_merge_by_name_and_current_nodes_as_a_set() {
    let repo = Repo::new();
    let base = "{\n  \"workflow\": \"devops\",\n  \"current_nodes\": [\"Build_Release\"],\n  \"nodes\": {\n    \"Build_Release\": {\"status\": \"pending\"},\n    \"Deploy_To_Staging\": {\"status\": \"pending\"}\n  }\n}\n";
    let ours = base
        .replace(
            "\"Build_Release\": {\"status\": \"pending\"}",
            "\"Build_Release\": {\"status\": \"completed\", \"run_id\": \"r1\"}",
        )
        .replace("[\"Build_Release\"]", "[\"Deploy_To_Staging\"]");
    let theirs = base
        .replace(
            "\"Deploy_To_Staging\": {\"status\": \"pending\"}",
            "\"Deploy_To_Staging\": {\"status\": \"blocked\", \"blocked_reason\": \"QA\"}",
        )
        .replace("[\"Build_Release\"]", "[\"Build_Release\", \"Environment_Design\"]");
    clean(&repo.merge(STATE, base, &ours, &theirs));
    let merged = repo.read(STATE);
    assert!(
        merged.contains("\"Build_Release\": {\"status\": \"completed\", \"run_id\": \"r1\"},\n    \"Deploy_To_Staging\": {\"status\": \"blocked\", \"blocked_reason\": \"QA\"}\n"),
        "{merged}"
    );
    let value: Value = serde_json::from_str(&merged).unwrap();
    assert_eq!(value["current_nodes"], json!(["Deploy_To_Staging", "Environment_Design"]));
    repo.ws.run(&["validate"]).status(0);

    // The same node field changed on both sides: listed, ours kept, git marks the file.
    let repo = Repo::new();
    let ours = base.replace(
        "\"Deploy_To_Staging\": {\"status\": \"pending\"}",
        "\"Deploy_To_Staging\": {\"status\": \"completed\"}",
    );
    let theirs = base
        .replace("\"Deploy_To_Staging\": {\"status\": \"pending\"}", "\"Deploy_To_Staging\": {\"status\": \"failed\"}");
    let output = repo.merge(STATE, base, &ours, &theirs);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains(
            "node `Deploy_To_Staging`, field `status`: base \"pending\", ours \"completed\", theirs \"failed\""
        ),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(repo.read(STATE), ours);
    assert_eq!(repo.unmerged().trim(), STATE);
}

#[test]
fn init_writes_gitattributes_once_and_validate_warns_without_the_driver() {
    let repo = Repo::new();
    let attributes = repo.read(".gitattributes");
    for line in [
        "docs/workflow/tasks.json merge=opsflow",
        "docs/workflow/state.json merge=opsflow",
        "docs/workflow/human-requests.md merge=union",
    ] {
        assert_eq!(attributes.lines().filter(|l| *l == line).count(), 1, "{attributes}");
    }
    let driver = repo.git(&["config", "--get", "merge.opsflow.driver"]);
    assert_eq!(driver.trim(), format!("{} merge-driver %O %A %B %P", opsflow_bin()));
    // A second init adds nothing.
    repo.ws.run(&["init"]).status(0);
    assert_eq!(repo.read(".gitattributes"), attributes);

    let valid = repo.ws.run(&["validate"]);
    valid.status(0);
    assert!(!valid.stderr().contains("warning"), "{}", valid.stderr());
    repo.git(&["config", "--unset", "merge.opsflow.driver"]);
    let warned = repo.ws.run(&["validate"]);
    warned.status(0);
    assert!(
        warned.stderr().contains("warning: ") && warned.stderr().contains("no `merge.opsflow.driver`"),
        "{}",
        warned.stderr()
    );
    let as_json = repo.ws.run(&["validate", "--json"]).json();
    assert_eq!(as_json["warnings"].as_array().map(Vec::len), Some(1), "{as_json}");
}

#[test]
fn init_in_a_subdirectory_names_paths_from_the_repository_root_and_keeps_other_lines() {
    let ws = Workspace::new().file(".gitattributes", "*.png binary");
    assert!(git_in(ws.path(), &["init", "-q"]).status.success());
    ws.write("ops/project-config.json", r#"{"paths": {"tasks": "work/tasks.json"}}"#);
    let init = ws.run(&["init", &ws.join("ops").to_string_lossy()]);
    init.status(0);
    assert_eq!(
        ws.read_string(".gitattributes"),
        "*.png binary\n# opsflow merges its workflow files by task id and node name\nops/work/tasks.json merge=opsflow\nops/docs/workflow/state.json merge=opsflow\nops/docs/workflow/human-requests.md merge=union\n"
    );
    assert!(init.stdout().contains("git      .gitattributes: ops/work/tasks.json merge=opsflow"), "{}", init.stdout());
}

/// Runs the driver directly, as git would, on three files in `dir`.
fn driver(dir: &Path, base: &str, ours: &str, theirs: &str, path: Option<&str>) -> Output {
    for (name, contents) in [("base", base), ("ours", ours), ("theirs", theirs)] {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    let mut command = Command::new(opsflow_bin());
    command.current_dir(dir).args(["merge-driver", "base", "ours", "theirs"]).args(path);
    command.output().expect("run the merge driver")
}

#[test]
fn a_broken_input_leaves_ours_untouched_and_says_where() {
    let ws = Workspace::new();
    let output =
        driver(ws.path(), BASE, BASE, "{\"tasks\": [\n  {\"id\": \"A\",}\n]}", Some("docs/workflow/tasks.json"));
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr).trim(),
        "opsflow merge-driver: docs/workflow/tasks.json: theirs version, line 2 column 14: invalid JSON: expected a quoted key, found `}`; nothing was merged, the file is left as ours"
    );
    assert_eq!(ws.read_string("ours"), BASE);
    // Without a path the kind comes from the shape; a file that is neither is refused.
    let output = driver(ws.path(), "{}", "{\"a\": 1}", "{\"a\": 2}", None);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("neither a task list"), "{}", text(&output.stderr));
}

#[test]
fn a_missing_input_is_named_with_its_side_and_ours_is_untouched() {
    let ws = Workspace::new();
    std::fs::write(ws.path().join("ours"), BASE).unwrap();
    let output = Command::new(opsflow_bin())
        .current_dir(ws.path())
        .args(["merge-driver", "base", "ours", "gone", "docs/workflow/tasks.json"])
        .output()
        .expect("run the merge driver");
    assert_eq!(output.status.code(), Some(2));
    // A missing base is an empty one (a file added on both sides); a missing side is refused.
    assert_eq!(
        text(&output.stderr).trim(),
        "opsflow merge-driver: docs/workflow/tasks.json (theirs: gone): does not exist"
    );
    assert_eq!(ws.read_string("ours"), BASE);
}

fn big_list(count: usize, changed: impl Fn(usize) -> Option<&'static str>) -> String {
    let mut out = String::from("{\n  \"tasks\": [\n");
    for i in 0..count {
        let status = changed(i).unwrap_or("pending");
        out.push_str(&format!(
            "    {{\"id\": \"T-{i}\", \"title\": \"Task number {i}\", \"agent\": \"Backend-Engineer\", \"type\": \"implementation\", \"status\": \"{status}\"}}{}\n",
            if i + 1 == count { "" } else { "," }
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[test]
fn two_100000_task_files_that_differ_in_100_entries_each_merge_right() {
    const N: usize = 100_000;
    let ws = Workspace::new();
    let base = big_list(N, |_| None);
    // Ours changes every 1000th task, theirs every 1000th shifted by 500.
    let ours = big_list(N, |i| (i % 1000 == 0).then_some("done"));
    let theirs = big_list(N, |i| (i % 1000 == 500).then_some("failed"));
    let output = driver(ws.path(), &base, &ours, &theirs, None);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let expected = big_list(N, |i| match i % 1000 {
        0 => Some("done"),
        500 => Some("failed"),
        _ => None,
    });
    assert!(ws.read_string("ours") == expected, "the merged file is not ours plus theirs's 100 changes");
}

/// The sample workspace with a staging smoke test that records its pid and then sleeps, so
/// a real `opsflow run` holds DEVOPS-006 in progress.
fn sample_with_a_slow_staging_deploy() -> Workspace {
    let ws = Workspace::new().sample();
    let mut config: Value = serde_json::from_str(&ws.read_string("project-config.json")).unwrap();
    config["environments"]["staging"]["smoke_tests"] =
        json!([{"name": "slow", "command": "echo $$ > \"$OPSFLOW_WORKSPACE/smoke.pid\"; exec sleep 60"}]);
    ws.write("project-config.json", serde_json::to_string_pretty(&config).unwrap());
    ws
}

#[test]
fn release_refuses_a_live_runners_task_and_frees_it_once_the_runner_is_gone() {
    let ws = sample_with_a_slow_staging_deploy();
    let pending = ws.run(&["tasks", "release", "DEVOPS-006"]);
    pending.status(2);
    assert!(pending.stderr().contains("task `DEVOPS-006` is `pending`, not `in_progress`"), "{}", pending.stderr());

    let mut runner = ws.command(&["run"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid_of = |ws: &Workspace| -> Option<i32> {
        std::fs::read_to_string(ws.join("smoke.pid")).ok().and_then(|s| s.trim().parse().ok())
    };
    wait_until(Duration::from_secs(60), "the staging smoke test to run", || pid_of(&ws).is_some());
    let before = ws.read_string(TASKS);
    let refused = ws.run(&["tasks", "release", "DEVOPS-006"]);
    refused.status(2);
    assert!(
        refused.stderr().contains("claimed by a live opsflow runner of this workspace (pid "),
        "{}",
        refused.stderr()
    );
    assert_eq!(ws.read_string(TASKS), before);

    // The runner disappears for good (kill -9), its step with it.
    runner.kill().unwrap();
    wait_for_exit(&mut runner, Duration::from_secs(60), "the killed runner");
    let sleeper = pid_of(&ws).unwrap();
    // SAFETY: plain kill(2) of the smoke step this test's runner started.
    unsafe { libc::kill(sleeper, libc::SIGKILL) };
    let claimed = task(&ws.tasks(), "DEVOPS-006").clone();
    assert_eq!(claimed["status"], "in_progress");

    // The claim names the runner's host, so a claim left by a runner gone for good says where.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    assert_eq!(claimed["claimed_on"], host.as_str(), "{claimed}");

    let released = ws.run(&["tasks", "release", "DEVOPS-006"]);
    released.status(0);
    let run_id = claimed["run_id"].as_str().unwrap();
    assert!(
        released
            .stdout()
            .contains(&format!("DEVOPS-006: released; it was claimed by DevOps-Engineer on host {host}, run {run_id}")),
        "{}",
        released.stdout()
    );
    let after = task(&ws.tasks(), "DEVOPS-006").clone();
    assert_eq!(after["status"], "pending");
    for gone in ["claimed_by", "claimed_on", "claimed_at", "run_id"] {
        assert!(after.get(gone).is_none(), "{gone} is still there: {after}");
    }
    assert_eq!(after["released_from"]["claimed_by"], "DevOps-Engineer");
    assert_eq!(after["released_from"]["claimed_on"], host.as_str());
    assert_eq!(after["released_from"]["run_id"], run_id);
    assert_eq!(after["released_from"]["claimed_at"], claimed["claimed_at"]);
    // Only that entry changed.
    let tasks_before = tasks_of(before.as_bytes());
    let tasks_after = ws.tasks();
    for (a, b) in tasks_before.iter().zip(&tasks_after) {
        if a["id"] != "DEVOPS-006" {
            assert_eq!(a, b);
        }
    }
    let audit = ws.read_string(".opsflow/audit.jsonl");
    let line: Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!((line["event"].as_str(), line["subject"].as_str()), (Some("released"), Some("DEVOPS-006")));
    assert_eq!(line["run_id"], run_id);
}

#[test]
fn a_merge_that_makes_a_task_invalid_is_reported_though_each_side_was_valid() {
    let repo = Repo::new();
    // A workspace schema where a blocked task needs a reason: each side is valid, the
    // field-by-field merge of the two is not.
    let mut schema: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/tasks.schema.json")).unwrap(),
    )
    .unwrap();
    schema["$defs"]["task"]["if"] = json!({"properties": {"status": {"const": "blocked"}}, "required": ["status"]});
    schema["$defs"]["task"]["then"] = json!({"required": ["blocked_reason"]});
    repo.ws.write("schemas/tasks.schema.json", serde_json::to_string_pretty(&schema).unwrap());
    let base =
        set_field(BASE, "T-2", "\"priority\": \"high\"", "\"priority\": \"high\",\n      \"blocked_reason\": \"QA\"");
    let ours = set_field(&base, "T-2", ",\n      \"blocked_reason\": \"QA\"", "");
    let theirs = set_field(&base, "T-2", "\"status\": \"pending\"", "\"status\": \"blocked\"");
    let output = repo.merge(TASKS, &base, &ours, &theirs);
    assert!(!output.status.success());
    let said = text(&output.stderr);
    assert!(said.contains("the merged file does not validate"), "{said}");
    assert!(
        said.contains("docs/workflow/tasks.json:10:5: at /tasks/1: \"blocked_reason\" is a required property"),
        "{said}"
    );
    assert_eq!(repo.unmerged().trim(), TASKS);
    let tasks = tasks_of(repo.read(TASKS).as_bytes());
    assert_eq!(task(&tasks, "T-2")["status"], "blocked");
}

// What broke: the conflict listing printed each side's value whole, so one 20 MB field in
// conflict wrote 40 MB to git's stderr.
#[test]
fn a_huge_value_in_conflict_is_listed_by_its_start_and_length() {
    let repo = Repo::new();
    let ours = set_field(BASE, "T-1", "\"title\": \"Build\"", &format!("\"title\": \"{}\"", "o".repeat(2_000_000)));
    let theirs = set_field(BASE, "T-1", "\"title\": \"Build\"", &format!("\"title\": \"{}\"", "t".repeat(2_000_000)));
    let output = repo.merge(TASKS, BASE, &ours, &theirs);
    assert!(!output.status.success(), "git merged a real conflict cleanly");
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    let line = said
        .lines()
        .find(|l| l.starts_with("docs/workflow/tasks.json: task `T-1`, field `title`: base \"Build\", ours \"ooo"))
        .unwrap_or_else(|| panic!("no conflict line for T-1's title in {} bytes of output", said.len()));
    assert!(line.contains("… (2000002 characters in all), theirs \"ttt"), "{:.400}", line);
    assert!(line.len() < 1000, "the line is {} bytes", line.len());
    assert!(said.len() < 10_000, "git's output is {} bytes", said.len());
    assert_eq!(repo.unmerged().trim(), TASKS);
    assert!(repo.read(TASKS).contains(&"o".repeat(2_000_000)), "ours is kept");
}
