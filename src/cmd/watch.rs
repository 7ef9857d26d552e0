//! `opsflow watch [--http ADDR]`: the daemon, until SIGINT, SIGTERM or SIGHUP (a closed
//! terminal), each with the same graceful stop.

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

/// Completes on SIGINT, SIGTERM or SIGHUP. SIGHUP's default action would kill the daemon
/// outright (no grace period for a running deploy, locks left to time out), so it is caught
/// and treated like SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (terminate, hangup) = match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
        (Ok(terminate), Ok(hangup)) => (terminate, hangup),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot listen for SIGTERM and SIGHUP: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    let (mut terminate, mut hangup) = (terminate, hangup);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        _ = hangup.recv() => tracing::info!("SIGHUP: stopping as for SIGTERM"),
    }
}
