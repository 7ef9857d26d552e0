//! Approvals that prove who approved, and commands that arrive through git sync held until a
//! person trusts them: real repositories, real commits by different authors, real SSH
//! signatures checked by `git verify-commit`, a real bare remote with two clones.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::engine::{APPROVAL, status_of};
use crate::sync::{Remote, design_task};
use crate::util::{TASKS, Workspace, git};

const RUNNER: usize = 0;

/// The sample workspace in a git repository, with `devops` settings merged in, committed by
/// Ada (the release's author), run up to the production approval.
fn waiting_for_approval(devops: Value) -> Workspace {
    let ws = Workspace::new().sample();
    let mut config: Value = serde_json::from_slice(&ws.read("project-config.json")).unwrap();
    for (key, value) in devops.as_object().unwrap() {
        config["devops"][key] = value.clone();
    }
    ws.write("project-config.json", serde_json::to_vec_pretty(&config).unwrap());
    ws.write(".gitignore", ".opsflow/\ndist/\n");
    git(ws.path(), &["init", "-q", "-b", "main"]);
    git(ws.path(), &["add", "-A"]);
    git(ws.path(), &["commit", "-q", "-m", "The shop"]);
    ws.run(&["run"]).status(3);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "blocked");
    ws
}

fn people() -> Value {
    json!([
        {"name": "alice", "email": "alice@example.com"},
        {"name": "ada", "email": "ada@example.com"}
    ])
}

/// Commits the approval file as `author` (`Name <email>`), with `extra` arguments.
fn commit_approval(ws: &Workspace, author: &str, extra: &[&str]) {
    git(ws.path(), &["add", APPROVAL]);
    let mut args = vec!["commit", "-q", "-m", "Approve the release", "--author", author];
    args.extend(extra);
    git(ws.path(), &args);
}

/// What the approval check says now, in the task's block reason after a run.
fn blocked_reason(ws: &Workspace) -> String {
    let run = ws.run(&["run"]);
    run.status(3);
    let task = ws.tasks().into_iter().find(|t| t["id"] == "DEVOPS-007").unwrap();
    task["blocked_reason"].as_str().unwrap_or("").to_owned()
}

fn head(ws: &Workspace) -> String {
    git(ws.path(), &["rev-parse", "--short=7", "HEAD"]).trim().to_owned()
}

#[test]
fn a_git_approval_counts_only_once_committed_by_an_approver() {
    let ws = waiting_for_approval(json!({"approval_identity": "git", "approvers": people()}));
    // `approve` writes the file; committing it is the person's act.
    let approve = ws.run(&["approve", "UNIT-001", "1.0.0", "--as", "alice"]);
    assert!(approve.stderr().contains("counts once you commit it as yourself"), "{}", approve.stderr());
    assert_eq!(status_of(&ws, "DEVOPS-007"), "blocked");
    let status = ws.run(&["status"]);
    assert!(status.stdout().contains("R12-prod-approval.md is not committed"), "{}", status.stdout());

    commit_approval(&ws, "Mallory <mallory@example.com>", &[]);
    let reason = blocked_reason(&ws);
    assert!(
        reason.contains(&format!(
            "made approving by commit {} by Mallory <mallory@example.com>, who is not one of devops.approvers",
            head(&ws)
        )),
        "{reason}"
    );
    let status = ws.run(&["status"]);
    assert!(status.stdout().contains("Mallory <mallory@example.com>"), "{}", status.stdout());

    // An edit after the commit does not count, even by the approver, until committed.
    git(ws.path(), &["commit", "-q", "--amend", "--no-edit", "--author", "alice <alice@example.com>"]);
    let text = ws.read_string(APPROVAL);
    ws.write(APPROVAL, format!("{text}\nReviewed.\n"));
    let reason = blocked_reason(&ws);
    assert!(reason.contains("has an edit that is not committed"), "{reason}");
    assert!(reason.contains("by alice <alice@example.com>"), "{reason}");

    git(ws.path(), &["commit", "-q", "-am", "Reviewed", "--author", "alice <alice@example.com>"]);
    let run = ws.run(&["run"]);
    run.status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
    let audit = ws.read_string(".opsflow/audit.jsonl");
    let claimed = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "claimed" && e["subject"] == "DEVOPS-007")
        .expect("the production deploy's claim");
    let reason = claimed["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("approved by alice (commit {} by alice <alice@example.com>)", head(&ws))),
        "{reason}"
    );
}

#[test]
fn plain_names_are_refused_when_identity_is_git() {
    let ws = Workspace::new().sample();
    let mut config: Value = serde_json::from_slice(&ws.read("project-config.json")).unwrap();
    config["devops"]["approval_identity"] = json!("git");
    ws.write("project-config.json", serde_json::to_vec_pretty(&config).unwrap());
    let run = ws.run(&["validate"]);
    run.status(2);
    assert!(
        run.stdout().contains("`devops.approvers[0]` is the plain name \"alice\"")
            || run.stderr().contains("`devops.approvers[0]` is the plain name \"alice\""),
        "{}{}",
        run.stdout(),
        run.stderr()
    );
}

#[test]
fn the_author_of_the_release_cannot_approve_it() {
    let ws = waiting_for_approval(json!({
        "approval_identity": "git",
        "approvers": people(),
        "prevent_self_approval": true
    }));
    ws.run(&["approve", "UNIT-001", "1.0.0", "--as", "ada"]);
    commit_approval(&ws, "ada <ada@example.com>", &[]);
    let reason = blocked_reason(&ws);
    assert!(reason.contains("ada authored the release's commit"), "{reason}");
    assert!(reason.contains("may not approve it (devops.prevent_self_approval)"), "{reason}");

    // Another approver's commit of the same file counts.
    let text = ws.read_string(APPROVAL).replace("approved_by: \"ada\"", "approved_by: \"alice\"");
    ws.write(APPROVAL, text);
    commit_approval(&ws, "alice <alice@example.com>", &[]);
    ws.run(&["run"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
}

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_owned();
    (key.with_extension("pub").display().to_string(), public)
}

#[test]
fn a_signed_approval_counts_only_with_the_approvers_key() {
    let keys = tempfile::tempdir().unwrap();
    let (alice_key, alice_public) = keygen(keys.path(), "alice");
    let (other_key, _) = keygen(keys.path(), "other");
    let ws = waiting_for_approval(json!({
        "approval_identity": "git-signed",
        "approvers": [{"name": "alice", "email": "alice@example.com", "ssh_key": alice_public}]
    }));
    ws.run(&["approve", "UNIT-001", "1.0.0", "--as", "alice"]);
    let alice = "alice <alice@example.com>";
    commit_approval(&ws, alice, &[]);
    let reason = blocked_reason(&ws);
    assert!(reason.contains("but it is not signed"), "{reason}");

    let sign_with = |key: &str| {
        git(
            ws.path(),
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingkey={key}"),
                "commit",
                "-q",
                "--amend",
                "--no-edit",
                "-S",
            ],
        );
    };
    sign_with(&other_key);
    let reason = blocked_reason(&ws);
    assert!(reason.contains("its signature is not from an allowed key"), "{reason}");

    sign_with(&alice_key);
    ws.run(&["run"]).status(0);
    assert_eq!(status_of(&ws, "DEVOPS-007"), "deployed");
    let signers = ws.read_string(".opsflow/allowed_signers");
    assert!(signers.starts_with("alice@example.com namespaces=\"git\" ssh-ed25519 "), "{signers}");
}

/// A dev environment task and the design input it needs, committed and pushed by `clone`.
fn push_dev_task(remote: &Remote, clone: usize, id: &str) {
    let ws = remote.ws(clone);
    git(ws.path(), &["pull", "-q", "--rebase", "origin", "main"]);
    let design = ws.read_string("docs/workflow/artifacts/INFRA01-requirements.md");
    ws.write("docs/workflow/artifacts/INFRA04-env-specs.md", design);
    let mut tasks: Value = serde_json::from_slice(&ws.read(TASKS)).unwrap();
    let mut task = design_task(id);
    task["type"] = json!("infrastructure_dev_env");
    tasks["tasks"].as_array_mut().unwrap().push(task);
    ws.write(TASKS, serde_json::to_vec_pretty(&tasks).unwrap());
    git(ws.path(), &["add", "-A"]);
    git(ws.path(), &["commit", "-q", "-m", &format!("The task {id}")]);
    git(ws.path(), &["push", "-q", "origin", "main"]);
}

fn set_setup(ws: &Workspace, command: &str) {
    let mut config: Value = serde_json::from_slice(&ws.read("project-config.json")).unwrap();
    config["dev"]["setup"] = json!(command);
    ws.write("project-config.json", serde_json::to_vec_pretty(&config).unwrap());
}

#[test]
fn a_command_brought_in_by_sync_runs_only_once_trusted_and_a_local_edit_needs_no_trust() {
    let mut remote = Remote::new(&[], json!({"sync": true, "fetch_interval": "1s"}));
    let (runner, other) = (remote.clone(), remote.clone());
    assert_eq!(runner, RUNNER);
    let marks = tempfile::tempdir().unwrap();
    let local_mark = marks.path().join("local");
    let remote_mark = marks.path().join("remote");

    // A local edit of the command: the runner's own, it runs without a trust step.
    push_dev_task(&remote, runner, "T-1");
    set_setup(remote.ws(runner), &format!("echo local > '{}'", local_mark.display()));
    let run = remote.opsflow(runner, &["run"]);
    let out = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(local_mark.exists(), "the local command ran:\n{out}");
    assert_eq!(status_of(remote.ws(runner), "T-1"), "done", "{out}");
    // The runner's edit is committed and pushed by its owner.
    git(remote.ws(runner).path(), &["commit", "-q", "-am", "Local setup"]);
    git(remote.ws(runner).path(), &["push", "-q", "origin", "main"]);

    // Another clone changes the command and pushes; the runner's sync brings it in.
    push_dev_task(&remote, other, "T-2");
    let theirs = remote.ws(other);
    let command = format!("echo remote > '{}'", remote_mark.display());
    set_setup(theirs, &command);
    git(theirs.path(), &["commit", "-q", "-am", "Faster setup", "--author", "Bob <bob@example.com>"]);
    git(theirs.path(), &["push", "-q", "origin", "main"]);
    let brought = git(theirs.path(), &["rev-parse", "--short=7", "HEAD"]).trim().to_owned();

    let run = remote.opsflow(runner, &["run"]);
    let out = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert_eq!(run.status.code(), Some(3), "{out}");
    assert!(!remote_mark.exists(), "the command from elsewhere did not run:\n{out}");
    let ws = remote.ws(runner);
    assert_eq!(status_of(ws, "T-2"), "blocked", "{out}");
    let requests = ws.read_string("docs/workflow/human-requests.md");
    assert!(requests.contains("nobody trusted yet"), "{requests}");
    assert!(
        requests.contains(&format!(
            "`dev.setup` in project-config.json changed by git sync: `echo local > '{}'` → `{command}`",
            local_mark.display()
        )),
        "{requests}"
    );
    // The markdown escapes the `<` of the address.
    assert!(
        requests.contains(&format!("commit {brought} by Bob \\<bob@example.com> (\"Faster setup\")")),
        "{requests}"
    );
    let status = ws.run(&["status"]);
    assert!(status.stdout().contains("untrusted changes"), "{}", status.stdout());
    assert!(status.stdout().contains("Bob <bob@example.com>"), "{}", status.stdout());
    // The audit log names who committed the change.
    let audit = ws.read_string(".opsflow/audit.jsonl");
    assert!(audit.contains("config_change_untrusted") && audit.contains("Bob <bob@example.com>"), "{audit}");

    // Still held on the next run, until a person trusts it.
    let again = remote.opsflow(runner, &["run"]);
    assert_eq!(again.status.code(), Some(3));
    assert!(!remote_mark.exists());
    let trust = ws.run(&["trust", "--as", "alice"]);
    trust.status(0);
    assert!(trust.stdout().contains("trusted by alice"), "{}", trust.stdout());
    let run = remote.opsflow(runner, &["run"]);
    let out = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(remote_mark.exists(), "the trusted command ran:\n{out}");
    assert_eq!(status_of(ws, "T-2"), "done", "{out}");
    assert!(ws.read_string(".opsflow/trusted.json").contains("project-config.json#/dev/setup"));
    let audit = ws.read_string(".opsflow/audit.jsonl");
    assert!(audit.lines().any(|l| l.contains("\"trusted\"") && l.contains("trusted by alice")), "{audit}");
}
