//! Hostile workspaces: folders that are symlinks to elsewhere, configured paths that climb
//! out, releases that hold symlinks, secrets that span lines or hold backslashes, commands
//! that print one endless line, ids that outgrow the schema.

use std::fs;
use std::path::Path;

use serde_json::json;

use crate::engine::{CONFIG, edit_json, status_of};
use crate::util::{Workspace, task};

/// Every file and folder under `dir`, for proving that nothing was written there.
fn entries_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            out.push(entry.path().display().to_string());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(entries_under(&entry.path()));
            }
        }
    }
    out
}

// What broke: `Workspace::inside` resolved only the file, so with one of these folders a
// symlink to a directory outside the workspace, opsflow wrote its reports, its CI file, the
// environment's releases and even moved a release out of the workspace.
#[test]
fn a_symlinked_folder_that_leads_outside_is_never_written_through() {
    for folder in [
        "ARTIFACTS/system",
        "ARTIFACTS/devops-engineer",
        "docs/workflow/deployments",
        ".github/workflows",
        ".opsflow/envs/staging",
        "docs/workflow/artifacts/R06-release-artifacts",
    ] {
        let outside = tempfile::tempdir().unwrap();
        let ws = Workspace::new().sample();
        let _ = fs::remove_dir_all(ws.join(folder));
        let ws = ws.symlink(folder, outside.path());
        let run = ws.run(&["run"]);
        assert!(matches!(run.code(), Some(1 | 2)), "{folder}: exit {:?}\n{}", run.code(), run.stderr());
        let said = format!("{}{}", run.stderr(), ws.read_string(crate::util::TASKS));
        assert!(said.contains(folder), "{folder}: the error names the folder\n{said}");
        assert!(said.contains("leads outside the workspace"), "{folder}: the error says why\n{said}");
        assert_eq!(entries_under(outside.path()), Vec::<String>::new(), "{folder}: written outside the workspace");
    }
}

#[test]
fn configured_paths_that_climb_out_fail_validate() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["ci"]["output"] = json!("../../../../tmp/x");
        c["environments"]["staging"]["path"] = json!("/srv/staging");
    });
    let run = ws.run(&["validate"]);
    run.status(2);
    let out = format!("{}{}", run.stdout(), run.stderr());
    assert!(out.contains("`ci.output` `../../../../tmp/x` climbs out of the workspace with `..`"), "{out}");
    assert!(out.contains("`environments.staging.path` `/srv/staging` is absolute"), "{out}");
    // Commands that act refuse to run on it.
    let run = ws.run(&["run"]);
    run.status(2);
    assert!(run.stderr().contains("`ci.output`"), "{}", run.stderr());
}

// What broke: a symlink in the build's output was followed into SHA256SUMS (the hash of
// /etc/passwd), copied into R06 and deployed.
#[test]
fn a_release_that_holds_a_symlink_is_refused() {
    let ws = Workspace::new().sample();
    edit_json(&ws, CONFIG, |c| {
        c["release"]["build"] = json!("mkdir -p dist && cp -R app/. dist/ && ln -s /etc/passwd dist/passwd.txt");
    });
    let run = ws.run(&["run"]);
    run.status(1);
    let build = task(&ws.tasks(), "DEVOPS-005").clone();
    assert_eq!(build["status"], "failed", "{build}");
    let summary = build["outcome"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("dist/passwd.txt is a symlink (to /etc/passwd)"), "{build}");
    assert!(!ws.join("docs/workflow/artifacts/R06-release-artifacts/1.0.0").exists());
    assert!(!ws.join(".opsflow/envs/staging/current").exists(), "nothing was deployed");
    assert_ne!(status_of(&ws, "DEVOPS-006"), "deployed");
}
