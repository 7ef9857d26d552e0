//! `opsflow watch [--http ADDR]`: the daemon, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::Exit;
use crate::cli::Cli;
use crate::daemon::{self, Handles, Settings};

/// Watches the workspace at `dir` (already found by [`super::find_workspace`]).
pub fn run(cli: &Cli, dir: PathBuf, http: Option<SocketAddr>) -> anyhow::Result<Exit> {
    let settings = Settings { dir, config_file: cli.config.clone(), agent: cli.agent.clone(), http };
    // One thread for the loop and the server; reconciles run on tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(daemon::run(settings, Handles::default(), shutdown_signal()))
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
