//! `opsflow init [DIR]`: scaffold a workspace that validates, keeping every file that exists.
//!
//! The scaffold is a small project that runs end to end: `app/index.html` is the product,
//! `release.build` copies it to `dist/`, and the two `local` environments check that it
//! arrived. Its `.gitignore` files name only what opsflow and that build write, so a project's
//! own lock files (Cargo.lock, yarn.lock, poetry.lock) are still committed.
//!
//! In a git repository it also wires in the merge driver: `.gitattributes`
//! lines for `tasks.json`, `state.json` and `human-requests.md`, and `merge.opsflow.*` in the
//! repository's git config, and prints both.

use std::fs;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::Exit;
use crate::merge::setup;
use crate::workflow::BUILT_IN_NODES;
use crate::workspace::write;

const INDEX_HTML: &str = "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{project}</title></head>\n<body><h1>{project}</h1><p>Deployed by opsflow.</p></body>\n</html>\n";

const ROOT_GITIGNORE: &str =
    "# Build output of `release.build` (project-config.json); releases are kept by opsflow\n/dist/\n";

const NEXT_STEPS: &str = "next steps (the README's first hour):
  1. the other stages hand over INFRA01-03, R04-merge-result.md and QA's reports; take the sample's:
       opsflow demo --dir /tmp/opsflow-sample, then copy them (the README lists the files)
  2. opsflow tasks add --title \"Design the environments\" --owner devops --type infrastructure_design
  3. opsflow tasks add --title \"Build the first release\" --owner devops --type release_build \\
       --set unit_id=UNIT-001 --set version=1.0.0
  4. opsflow run --dry-run    # what would run, and why
  5. opsflow run              # builds dist/ from app/, deploys it to staging, waits for the production approval
  6. opsflow status           # where the workflow stands, what runs where, what waits on whom
";

const HUMAN_REQUESTS: &str = crate::engine::requests::HEADER;

pub fn run(dir: &Path) -> anyhow::Result<Exit> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let root = fs::canonicalize(dir)?;
    let project = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "project".to_owned());
    let config = json!({
        "project": project,
        "agent": {"name": "DevOps-Engineer", "aliases": ["devops", "DEVOPS_ENGINEER_AGENT"]},
        "devops": {"require_human_approval": true, "auto_rollback_enabled": true},
        "release": {"build": "mkdir -p dist && cp -R app/. dist/", "artifacts": ["dist/"], "git_tag": false},
        "gates": {"unit_pass_rate": 100, "regression_pass_rate": 95, "coverage_min": 80, "coverage_action": "warn", "max_critical": 0, "max_high": 0},
        "environments": {
            "staging": {"provider": "local", "strategy": "recreate", "path": ".opsflow/envs/staging",
                        "health_checks": [{"name": "page present", "command": "test -f index.html"}]},
            "production": {"provider": "local", "strategy": "blue-green", "path": ".opsflow/envs/production",
                           "health_checks": [{"name": "page present", "command": "test -f index.html"}]}
        }
    });
    let nodes: serde_json::Map<String, serde_json::Value> =
        BUILT_IN_NODES.iter().map(|name| ((*name).to_owned(), json!({"status": "pending"}))).collect();
    let state = json!({"workflow": "devops", "current_nodes": [], "nodes": nodes});
    let pretty =
        |value: &serde_json::Value| format!("{}\n", serde_json::to_string_pretty(value).expect("a Value serializes"));
    let files: Vec<(&str, String)> = vec![
        ("project-config.json", pretty(&config)),
        ("app/index.html", INDEX_HTML.replace("{project}", &html_escape(&project))),
        ("docs/workflow/tasks.json", crate::store::tasks::new_file(&[])),
        ("docs/workflow/state.json", pretty(&state)),
        ("docs/workflow/human-requests.md", HUMAN_REQUESTS.to_owned()),
        ("docs/workflow/.gitignore", crate::store::file::LOCK_GITIGNORE.to_owned()),
        ("docs/workflow/artifacts/.gitkeep", String::new()),
        ("docs/workflow/deployments/.gitkeep", String::new()),
        ("QA/.gitkeep", String::new()),
        ("ARTIFACTS/qa-engineer/.gitkeep", String::new()),
        ("ARTIFACTS/devops-engineer/.gitkeep", String::new()),
        ("ARTIFACTS/system/.gitkeep", String::new()),
        (
            ".opsflow/.gitignore",
            "# opsflow's runtime state: audit log, run logs, locks, local environments\n*\n".to_owned(),
        ),
        (".gitignore", ROOT_GITIGNORE.to_owned()),
    ];
    for (relative, content) in files {
        let path = dir.join(relative);
        if path.exists() || path.symlink_metadata().is_ok() {
            println!("kept     {relative}");
            continue;
        }
        // A folder of an existing repository may be a symlink to elsewhere: refused, not
        // written through.
        write::write_file(&root, &path, content.as_bytes()).map_err(|e| write_error(&path, e))?;
        println!("created  {relative}");
    }
    if !fs::read_to_string(dir.join("docs/workflow/.gitignore")).unwrap_or_default().contains("/*.lock") {
        println!(
            "note: add `/*.lock` and `/.*.opsflow-tmp` to docs/workflow/.gitignore so opsflow's \
             lock files stay out of git"
        );
    }
    let ws = crate::workspace::Workspace::open(dir, None, None)?;
    setup_git(&ws);
    let report = crate::validate::validate_workspace(&ws);
    for diagnostic in &report.diagnostics {
        println!("{diagnostic}");
    }
    if report.diagnostics.is_empty() {
        println!("workspace ready: {}\n", ws.root.display());
        print!("{NEXT_STEPS}");
        Ok(Exit::Ok)
    } else {
        Ok(Exit::Invalid)
    }
}

/// `text` safe inside HTML: the project name comes from a directory name.
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Sets up the merge driver when the workspace is inside a git work tree; a failure is a note,
/// not an error: the workspace itself is ready either way.
fn setup_git(ws: &crate::workspace::Workspace) {
    let Some(top) = setup::toplevel(&ws.root) else { return };
    let Ok(inside) = ws.root.strip_prefix(&top) else {
        println!("note: the workspace {} is not under the git work tree {}", ws.root.display(), top.display());
        return;
    };
    let paths = &ws.config.paths;
    let workspace = inside.to_string_lossy().replace('\\', "/");
    let lines = setup::attribute_lines(&workspace, &paths.tasks, &paths.state, &paths.human_requests);
    match setup::install(&top, &lines) {
        Ok(installed) => {
            let shown =
                installed.gitattributes.strip_prefix(&top).unwrap_or(&installed.gitattributes).display().to_string();
            if installed.added.is_empty() {
                println!("kept     {shown} (already names the merge drivers)");
            }
            for line in &installed.added {
                println!("git      {shown}: {line}");
            }
            println!("git      config merge.{}.driver = {}", setup::DRIVER, installed.driver);
            println!("git      config merge.{}.name = {}", setup::DRIVER, installed.name);
        }
        Err(e) => println!("note: the git merge driver is not set up: {e}"),
    }
}

/// A scaffold file that could not be written: a failed write (exit 1, naming the file), or a
/// folder that leads outside the workspace, which `init` refuses to write through (exit 2).
fn write_error(path: &Path, error: std::io::Error) -> anyhow::Error {
    use crate::store::StoreError;
    if error.get_ref().is_none() {
        // From creating its folders: the OS said no.
        return anyhow::Error::new(StoreError::Io {
            path: path.to_owned(),
            action: "cannot create its folder",
            source: error,
        });
    }
    match error.into_inner().map(|inner| inner.downcast::<StoreError>()) {
        Some(Ok(store)) => anyhow::Error::new(*store),
        Some(Err(refused)) => anyhow::anyhow!("{refused}"),
        None => anyhow::anyhow!("{}: cannot be written", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::{Path, PathBuf};

    use super::write_error;
    use crate::Exit;
    use crate::store::StoreError;

    #[test]
    fn a_failed_write_exits_1_and_a_refused_folder_2_each_naming_the_file() {
        let path = Path::new("/repo/docs/workflow/tasks.json");
        // write_atomic's error, as write_file passes it on.
        let store = StoreError::Io {
            path: PathBuf::from("/repo/docs/workflow/tasks.json"),
            action: "cannot write",
            source: io::Error::from_raw_os_error(28),
        };
        let failed = write_error(path, io::Error::other(store));
        assert_eq!(Exit::of(&failed), Exit::Failed);
        assert!(failed.to_string().starts_with("/repo/docs/workflow/tasks.json: cannot write: "), "{failed}");

        let os = write_error(path, io::Error::from_raw_os_error(30));
        assert_eq!(Exit::of(&os), Exit::Failed);
        assert!(os.to_string().starts_with("/repo/docs/workflow/tasks.json: cannot create its folder: "), "{os}");

        let refusal = "docs/workflow/tasks.json: `docs/workflow` is a symlink that leads outside the workspace";
        let refused = write_error(path, io::Error::new(io::ErrorKind::PermissionDenied, refusal));
        assert_eq!(Exit::of(&refused), Exit::Invalid);
        assert_eq!(refused.to_string(), refusal);
    }
}
