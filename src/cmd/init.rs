//! `opsflow init [DIR]`: scaffold a workspace that validates, keeping every file that exists.

use std::fs;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::Exit;
use crate::workflow::BUILT_IN_NODES;
use crate::workspace::write;

const HUMAN_REQUESTS: &str = "# Human requests\n\nopsflow appends an entry here when a gate blocks, a deployment fails or a decision needs a person.\nAnswer in the entry, or edit the approval file it names; opsflow reads the files again on its next pass.\n";

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
        // A folder of an existing repository may be a symlink to elsewhere: refused, not
        // written through.
        write::write_file(&root, &path, content.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("created  {relative}");
    }
    if dir.join(".gitignore").exists()
        && !fs::read_to_string(dir.join(".gitignore")).unwrap_or_default().contains(".lock")
    {
        println!("note: add `*.lock` to .gitignore so opsflow's sidecar lock files stay out of git");
    }
    let ws = crate::workspace::Workspace::open(dir, None, None)?;
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
