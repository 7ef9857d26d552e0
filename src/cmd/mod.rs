//! One module per command; [`dispatch`] finds and opens the workspace and calls the right one.
//!
//! The workspace is the directory `-C DIR` names, when it holds `docs/workflow/tasks.json` or
//! the config file, or else the nearest such directory from the current one upward, as git and
//! cargo find theirs. `-C` on a directory that holds neither (empty, or a typo) is refused like
//! a directory outside any workspace: every command but `init` and `demo` refuses, before it
//! creates anything, so a pipeline with a wrong `-C` fails instead of finding nothing to do.

mod decide;
mod demo;
mod graph;
mod history;
mod init;
mod lock;
mod merge_driver;
mod next;
mod rollback;
mod run;
mod status;
mod tasks;
mod trust;
mod validate;
mod watch;

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::Exit;
use crate::cli::{Cli, Command};
use crate::config::{self, Paths};
use crate::workspace::Workspace;

pub fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    let open = || Workspace::open(&find_workspace(&cli)?, cli.config.as_deref(), cli.agent.as_deref());
    crate::time::Clock::check_env()?;
    match &cli.command {
        Command::Init { dir } => init::run(&dir.clone().unwrap_or_else(|| cli.workspace_dir())),
        Command::Validate { json } => validate::run(&open()?, *json),
        Command::Status { json } => status::run(&open()?, *json),
        Command::Tasks(command) => tasks::run(&open()?, command, cli.agent.as_deref()),
        Command::Run { dry_run, json } => run::run(&open()?, *dry_run, *json),
        Command::Watch { http } => watch::run(&cli, find_workspace(&cli)?, *http),
        Command::Rollback { environment, to, reason, json } => {
            rollback::run(&open()?, environment, to.as_deref(), reason.as_deref(), *json)
        }
        Command::History { environment, json } => history::run(&open()?, environment, *json),
        Command::Approve { unit, version, by, note, json } => {
            decide::approve(&open()?, unit.as_deref(), version.as_deref(), by.as_deref(), note.as_deref(), *json)
        }
        Command::Hold { unit, version, by, reason, json } => {
            decide::hold(&open()?, unit.as_deref(), version.as_deref(), by.as_deref(), reason, *json)
        }
        Command::Promote { environment, by, reason, json } => {
            decide::decide_rollout(&open()?, environment, true, by.as_deref(), reason.as_deref(), *json)
        }
        Command::Abort { environment, by, reason, json } => {
            decide::decide_rollout(&open()?, environment, false, by.as_deref(), Some(reason), *json)
        }
        Command::Retry { task, by, json } => decide::retry(&open()?, task, by.as_deref(), *json),
        Command::Next { json } => next::run(&open()?, *json),
        Command::Trust { by, json } => trust::run(&open()?, by.as_deref(), *json),
        Command::Lock { environment, reason, by, json } => {
            lock::lock(&open()?, environment, reason, by.as_deref(), *json)
        }
        Command::Unlock { environment, by, json } => lock::unlock(&open()?, environment, by.as_deref(), *json),
        Command::Graph { format } => graph::run(&open()?, *format),
        Command::MergeDriver { base, ours, theirs, path } => merge_driver::run(base, ours, theirs, path.as_deref()),
        Command::Demo { agents } => demo::run(cli.dir.as_deref(), *agents),
    }
}

/// The workspace directory: `-C DIR` when it holds a workspace (it is not searched above: the
/// user named it), else the nearest workspace from the current directory upward.
pub fn find_workspace(cli: &Cli) -> anyhow::Result<PathBuf> {
    let tasks = Paths::default().tasks;
    let config_file = cli.config.as_deref().unwrap_or(Path::new(config::DEFAULT_CONFIG_FILE));
    let is_workspace = |dir: &Path| dir.join(&tasks).is_file() || dir.join(config_file).is_file();
    let config_name = config_file.display();
    if let Some(dir) = &cli.dir {
        if is_workspace(dir) {
            return Ok(dir.clone());
        }
        let shown = dir.display();
        if !dir.is_dir() {
            bail!("not an opsflow workspace: -C {shown} is not a directory");
        }
        bail!(
            "not an opsflow workspace: -C {shown} holds neither {tasks} nor {config_name}; run `opsflow init {shown}` to make one"
        );
    }
    let current = std::env::current_dir().map_err(|e| anyhow::anyhow!("cannot read the current directory: {e}"))?;
    match current.ancestors().find(|dir| is_workspace(dir)) {
        Some(dir) => Ok(dir.to_owned()),
        None => bail!("not an opsflow workspace (no {tasks} or {config_name} here or above); run `opsflow init`"),
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
    Err(config::ConfigError::Invalid { file: ws.config_label.clone(), count: ws.config_problems.len() }.into())
}

/// Prints one JSON document on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = serde_json::to_string_pretty(value)?;
    out.push('\n');
    print!("{out}");
    Ok(())
}
