//! `opsflow history ENV [--json]`: what an environment ran, newest first, from its record
//! (as `kubectl argo rollouts history` and `cap deploy:log` show theirs).

use serde_json::json;

use super::print_json;
use crate::Exit;
use crate::environment::view::{self, EnvironmentView};
use crate::rollout::deploy::{self, EnvConfig};
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, environment: &str, as_json: bool) -> anyhow::Result<Exit> {
    super::require_valid_config(ws)?;
    let env = known_environment(ws, environment)?;
    let path = env.record_path(ws);
    // The record alone says what is live and what a rollback restores; its archive adds the
    // deployments compacted out of it.
    let current = env.history(ws)?;
    let live = env.live(ws, &current);
    let restorable = deploy::restorable(ws, &env, &current);
    let (record, archive_problem) = env.full_history(ws)?;
    let mut summary = EnvironmentView::new(environment, ws.label(&path), Ok((live.clone(), restorable)));
    summary.hosts = record.hosts.clone();
    let rows = view::history_rows(&record, live.as_ref());
    if as_json {
        print_json(&json!({
            "environment": environment,
            "record": summary.record,
            "live": summary.live,
            "rollback_restores": summary.rollback_restores,
            "restorable": summary.restorable,
            "hosts": summary.hosts,
            "deployments": rows,
            "events": record.events.iter().rev().collect::<Vec<_>>(),
            "archive_error": archive_problem,
        }))?;
        return Ok(Exit::Ok);
    }
    for line in summary.lines() {
        println!("{line}");
    }
    if let Some(problem) = &archive_problem {
        eprintln!("warning: {problem}");
    }
    if rows.is_empty() {
        println!("no deployments recorded in {}", summary.record);
        return Ok(Exit::Ok);
    }
    println!();
    let width = rows.iter().map(|r| r.release.chars().count()).max().unwrap_or(0).max("RELEASE".len());
    println!(
        "  {:<9} {:<width$}  {:<20}  {:<12}  {:<14}  RUN",
        "STATUS", "RELEASE", "STARTED", "COMMIT", "APPROVED BY"
    );
    for row in &rows {
        let commit = row.commit.as_deref().map(view::short).unwrap_or("-");
        let dirty = if row.dirty == Some(true) { "+" } else { "" };
        println!(
            "{} {:<9} {:<width$}  {:<20}  {:<12}  {:<14}  {}",
            if row.live { "*" } else { " " },
            row.status,
            row.release,
            row.started_at,
            format!("{commit}{dirty}"),
            row.approved_by.as_deref().unwrap_or("-"),
            row.run_id,
        );
        if !row.hosts.is_empty() {
            let hosts: Vec<String> =
                row.hosts.iter().map(|(host, runs)| format!("{host} {}", view::host_release(runs))).collect();
            println!("    hosts: {}", hosts.join(", "));
        }
        if let Some(replaced) = &row.replaced {
            println!("    replaced {replaced}");
        }
        for allowed in &row.allowed_revert {
            println!("    removed {allowed} on purpose (allow_revert)");
        }
        if let Some(reason) = &row.reason {
            println!("    {reason}");
        }
        for rollback in &row.rolled_back {
            println!("    rolled back {rollback}");
        }
    }
    Ok(Exit::Ok)
}

/// The environment of that name in the config, or an error listing those configured.
pub fn known_environment(ws: &Workspace, environment: &str) -> anyhow::Result<EnvConfig> {
    if ws.environment(environment).is_err() {
        let known: Vec<&str> = ws.environments.iter().map(|env| env.name.as_str()).collect();
        anyhow::bail!(
            "there is no environment `{environment}` in {} (configured: {})",
            ws.config_label,
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        );
    }
    Ok(ws.environment(environment)?.clone())
}
