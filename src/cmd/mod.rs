//! One module per command; [`dispatch`] opens the workspace and calls the right one.

mod demo;
mod graph;
mod init;
mod merge_driver;
mod run;
mod status;
mod tasks;
mod validate;
mod watch;

use anyhow::bail;

use crate::Exit;
use crate::cli::{Cli, Command};
use crate::workspace::Workspace;

pub fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    let open = || Workspace::open(&cli.workspace_dir(), cli.config.as_deref(), cli.agent.as_deref());
    match &cli.command {
        Command::Init { dir } => init::run(&dir.clone().unwrap_or_else(|| cli.workspace_dir())),
        Command::Validate { json } => validate::run(&open()?, *json),
        Command::Status { json } => status::run(&open()?, *json),
        Command::Tasks(command) => tasks::run(&open()?, command),
        Command::Run { dry_run, json } => run::run(&open()?, *dry_run, *json),
        Command::Watch { http } => watch::run(&cli, *http),
        Command::Graph { format } => graph::run(&open()?, *format),
        Command::MergeDriver { base, ours, theirs, path } => merge_driver::run(base, ours, theirs, path.as_deref()),
        Command::Demo => demo::run(cli.dir.as_deref()),
    }
}

/// Refuses to act on a workspace whose config is invalid, listing why.
fn require_valid_config(ws: &Workspace) -> anyhow::Result<()> {
    if ws.config_problems.is_empty() {
        return Ok(());
    }
    for problem in &ws.config_problems {
        eprintln!("{problem}");
    }
    bail!("{} is invalid ({} problems); fix it first", ws.config_label, ws.config_problems.len())
}

/// Prints one JSON document on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = serde_json::to_string_pretty(value)?;
    out.push('\n');
    print!("{out}");
    Ok(())
}
