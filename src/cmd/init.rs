//! `opsflow init [DIR]`: scaffold a workspace that validates, keeping every file that exists.
//!
//! In a git repository it also wires in the merge driver (PRODUCT.md §9): `.gitattributes`
//! lines for `tasks.json`, `state.json` and `human-requests.md`, and `merge.opsflow.*` in the
//! repository's git config, and prints both.

use std::fs;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::Exit;
use crate::merge::setup;
use crate::store::file;
use crate::workflow::BUILT_IN_NODES;

const HUMAN_REQUESTS: &str = "# Human requests\n\nopsflow appends an entry here when a gate blocks, a deployment fails or a decision needs a person.\nAnswer in the entry, or edit the approval file it names; opsflow reads the files again on its next pass.\n";

pub fn run(dir: &Path) -> anyhow::Result<Exit> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let project = fs::canonicalize(dir)?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "project".to_owned());
    let config = json!({
        "project": project,
        "agent": {"name": "DevOps-Engineer", "aliases": ["devops", "DEVOPS_ENGINEER_AGENT"]},
        "devops": {"require_human_approval": true, "auto_rollback_enabled": true},
        "gates": {"unit_pass_rate": 100, "regression_pass_rate": 95, "coverage_min": 80, "coverage_action": "warn", "max_critical": 0, "max_high": 0},
        "environments": {
            "staging": {"provider": "local", "strategy": "recreate", "path": ".opsflow/envs/staging",
                        "health_checks": [{"name": "current release", "command": "test -d current"}]},
            "production": {"provider": "local", "strategy": "blue-green", "path": ".opsflow/envs/production",
                           "health_checks": [{"name": "release present", "command": "test -n \"$(ls -A .)\""}]}
        }
    });
    let nodes: serde_json::Map<String, serde_json::Value> =
        BUILT_IN_NODES.iter().map(|name| ((*name).to_owned(), json!({"status": "pending"}))).collect();
    let state = json!({"workflow": "devops", "current_nodes": [], "nodes": nodes});
    let pretty =
        |value: &serde_json::Value| format!("{}\n", serde_json::to_string_pretty(value).expect("a Value serializes"));
    let files: Vec<(&str, String)> = vec![
        ("project-config.json", pretty(&config)),
        ("docs/workflow/tasks.json", crate::store::tasks::new_file(&[])),
        ("docs/workflow/state.json", pretty(&state)),
        ("docs/workflow/human-requests.md", HUMAN_REQUESTS.to_owned()),
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
        (".gitignore", "# opsflow's sidecar lock files\n*.lock\n".to_owned()),
    ];
    for (relative, content) in files {
        let path = dir.join(relative);
        if path.exists() || path.symlink_metadata().is_ok() {
            println!("kept     {relative}");
            continue;
        }
        file::write_atomic(&path, content.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("created  {relative}");
    }
    if dir.join(".gitignore").exists()
        && !fs::read_to_string(dir.join(".gitignore")).unwrap_or_default().contains(".lock")
    {
        println!("note: add `*.lock` to .gitignore so opsflow's sidecar lock files stay out of git");
    }
    let ws = crate::workspace::Workspace::open(dir, None, None)?;
    setup_git(&ws);
    let report = crate::validate::validate_workspace(&ws);
    for diagnostic in &report.diagnostics {
        println!("{diagnostic}");
    }
    if report.diagnostics.is_empty() {
        println!("workspace ready: {}", ws.root.display());
        Ok(Exit::Ok)
    } else {
        Ok(Exit::Invalid)
    }
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
