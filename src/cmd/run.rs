//! `opsflow run [--dry-run] [--json]`: reconcile until nothing more is runnable, then exit.

use std::collections::HashSet;
use std::sync::Arc;

use super::{print_json, require_valid_config};
use crate::Exit;
use crate::engine::{Engine, Options, Summary};
use crate::validate::{FailingEntries, load_tasks};
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, dry_run: bool, as_json: bool) -> anyhow::Result<Exit> {
    let Some(summary) = reconcile(ws, dry_run)? else { return Ok(Exit::Invalid) };
    if as_json {
        print_json(&summary)?;
    } else {
        print_summary(&summary, dry_run);
    }
    Ok(summary.exit())
}

/// Runs the engine until nothing more is runnable and returns what it did, or `None` when
/// the workspace's files keep it from starting (the problems are printed on stderr).
pub fn reconcile(ws: &Workspace, dry_run: bool) -> anyhow::Result<Option<Summary>> {
    require_valid_config(ws)?;
    let _lock = if dry_run { None } else { Some(crate::instance::acquire(ws)?) };
    // `--dry-run` changes nothing, so it neither fetches nor pushes.
    let sync = if dry_run { None } else { crate::sync::GitSync::open(ws)?.map(Arc::new) };
    let engine = match Engine::new(ws, Options { dry_run, sync, ..Options::default() }) {
        Ok(engine) => engine,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            return Ok(None);
        }
    };
    let mut summary = engine.run();
    // The engine decodes only the entries it may act on; the whole file is checked once here,
    // so that entries that fail the schema (a status or an agent spelled another way) are
    // said on stderr, and this runner's own count as problems rather than "nothing to do".
    let failing = FailingEntries::of(ws, &load_tasks(ws));
    if let Some(sentence) = failing.sentence(&ws.config.agent.name) {
        eprintln!("{sentence}");
    }
    let prefix = failing.prefix.as_str();
    let reported: HashSet<usize> =
        summary.problems.iter().filter_map(|d| crate::engine::readiness::entry_of(d, prefix)).collect();
    summary.problems.extend(
        failing
            .owned_problems
            .into_iter()
            .filter(|d| crate::engine::readiness::entry_of(d, prefix).is_some_and(|index| !reported.contains(&index))),
    );
    Ok(Some(summary))
}

pub fn print_summary(summary: &Summary, dry_run: bool) {
    // Columns as wide as the longest id, so a long task id never shifts the rest of its line.
    let ids = summary
        .ran
        .iter()
        .map(|r| &r.task)
        .chain(summary.blocked.iter().map(|b| &b.task))
        .chain(summary.waiting.iter().map(|w| &w.task))
        .chain(summary.plan.iter().map(|p| &p.task));
    let w = ids.map(|id| id.chars().count()).max().unwrap_or(0).max(12);
    for ran in &summary.ran {
        println!("{:<w$} {:<36} {:<12} {:>6} ms  {}", ran.task, ran.node, ran.outcome, ran.duration_ms, ran.summary);
        for warning in &ran.warnings {
            println!("    warn {warning}");
        }
    }
    if dry_run {
        if summary.plan.is_empty() {
            println!("plan: nothing would run now");
        }
        for planned in &summary.plan {
            println!("would run  {:<w$} {}", planned.task, planned.node);
            for check in &planned.checks {
                println!("    {} {}: {}", if check.passed { "pass" } else { "warn" }, check.name, check.detail);
            }
        }
    }
    for blocked in &summary.blocked {
        println!("blocked    {:<w$} {}", blocked.task, blocked.node);
        for check in blocked.checks.iter().filter(|c| c.blocks()) {
            println!("    fail {}: {}", check.name, check.detail);
        }
    }
    for waiting in &summary.waiting {
        println!("waiting    {:<w$} on {}", waiting.task, waiting.why.join(", "));
    }
    for problem in &summary.problems {
        println!("problem    {problem}");
    }
    for error in &summary.write_errors {
        println!("error      {error}");
    }
    if summary.ran.is_empty()
        && summary.blocked.is_empty()
        && summary.problems.is_empty()
        && summary.write_errors.is_empty()
        && !dry_run
    {
        println!("nothing to do");
    }
}
