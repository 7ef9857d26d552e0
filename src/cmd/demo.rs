//! `opsflow demo [--dir DIR]`: the whole pipeline on the built-in sample workspace.
//!
//! Copies the sample (embedded in the binary) to DIR, runs the engine until production waits
//! for a human, signs the approval request visibly as `demo`, and runs again to the end.
//! Prints what each node did and where to look.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;

use super::run::print_summary;
use crate::Exit;
use crate::engine::{Engine, Options, Summary};
use crate::workspace::Workspace;

pub fn run(dir: Option<&Path>) -> anyhow::Result<Exit> {
    let started = Instant::now();
    let dir = match dir {
        Some(dir) => dir.to_owned(),
        None => fresh_temp_dir()?,
    };
    if dir.exists() && fs::read_dir(&dir)?.next().is_some() {
        bail!("{} is not empty; the demo needs an empty or new directory", dir.display());
    }
    for (relative, content) in crate::sample::FILES {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().expect("sample files are in the workspace"))?;
        fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("opsflow demo: sample workspace copied to {}\n", dir.display());
    let ws = Workspace::open(&dir, None, None)?;
    super::require_valid_config(&ws)?;
    let _lock = crate::instance::acquire(&ws)?;
    let engine = match Engine::new(&ws, Options::default()) {
        Ok(engine) => engine,
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            return Ok(Exit::Invalid);
        }
    };
    println!("== first run: everything up to the production approval");
    let first = engine.run();
    print_summary(&first, false);
    let approval = dir.join(&ws.config.paths.artifacts).join("R12-prod-approval.md");
    if first.blocked.is_empty() || !approval.exists() {
        println!("\nthe pipeline did not stop at the production approval as expected");
        return Ok(first.exit());
    }
    println!("\n== a human approves production: the demo signs {} as `demo`", ws.label(&approval));
    sign(&approval)?;
    println!("\n== second run: production, verification, feedback");
    let second = engine.run();
    print_summary(&second, false);
    print_nodes(&ws, &first, &second)?;
    println!("\nwhere to look (in {}):", dir.display());
    for (what, path) in [
        ("tasks and their outcomes", ws.config.paths.tasks.as_str()),
        ("workflow position", ws.config.paths.state.as_str()),
        ("artifacts (INFRA, R, D series)", ws.config.paths.artifacts.as_str()),
        ("deployment report", ws.config.paths.deployment_report.as_str()),
        ("hand-off signal", ws.config.paths.completion_signal.as_str()),
        ("human requests", ws.config.paths.human_requests.as_str()),
        ("audit log", ".opsflow/audit.jsonl"),
        ("run logs", ".opsflow/runs/"),
        ("production (blue-green)", ".opsflow/envs/production/active"),
    ] {
        println!("  {what:<32} {path}");
    }
    println!("\ndemo finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(second.exit())
}

fn fresh_temp_dir() -> anyhow::Result<PathBuf> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let dir = std::env::temp_dir().join(format!("opsflow-demo-{}-{:x}", std::process::id(), stamp & 0xffff_ffff));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Approves the request the way a human would: front matter and the ticked box.
fn sign(path: &Path) -> anyhow::Result<()> {
    let text = fs::read_to_string(path)?;
    let signed = text
        .replacen("status: \"pending\"", "status: \"approved\"", 1)
        .replacen("approved_by: null", "approved_by: \"demo\"", 1)
        .replacen("- [ ] Approved", "- [x] Approved", 1);
    if signed == text {
        bail!("{} does not look like opsflow's approval request", path.display());
    }
    fs::write(path, signed)?;
    Ok(())
}

fn print_nodes(ws: &Workspace, first: &Summary, second: &Summary) -> anyhow::Result<()> {
    let state_path = ws.path(&ws.config.paths.state);
    let state_text =
        fs::read_to_string(&state_path).with_context(|| format!("cannot read {}", state_path.display()))?;
    let state: Value = serde_json::from_str(&state_text).with_context(|| ws.config.paths.state.clone())?;
    println!("\n{:<36} {:<11} {:>8}  artifacts", "node", "status", "time");
    let graph = crate::workflow::graph::Graph::load(ws).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the workflow is invalid: {}", problems.join("; "))
    })?;
    for node in &graph.nodes {
        let status =
            state.pointer(&format!("/nodes/{}/status", node.name)).and_then(Value::as_str).unwrap_or("pending");
        let ran = first.ran.iter().chain(&second.ran).rfind(|r| r.node == node.name);
        let time = ran.map(|r| format!("{} ms", r.duration_ms)).unwrap_or_else(|| "-".into());
        let artifacts = ran
            .map(|r| {
                r.artifacts
                    .iter()
                    .map(|a| a.rsplit('/').find(|s| !s.is_empty()).unwrap_or(a).to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        println!("{:<36} {:<11} {:>8}  {}", node.name, status, time, artifacts);
    }
    Ok(())
}
