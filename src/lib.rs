//! opsflow: the DevOps stage of a file-based multi-agent software workflow.
//!
//! The binary is a thin shell around [`run`]. The data flows from [`cli`] (what the user
//! asked) through [`workspace`] (which files, read defensively) and [`schema`] (are they
//! valid) to [`store`] (locked, byte-preserving edits of `tasks.json` and `state.json`).
//! [`validate`] checks the whole workspace; [`cmd`] holds one module per command.

pub mod audit;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod exec;
pub mod instance;
pub mod merge;
pub mod render;
pub mod sample;
pub mod schema;
pub mod sha256;
pub mod store;
pub mod time;
pub mod validate;
pub mod workflow;
pub mod workspace;

use std::process::ExitCode;

/// The exit codes of PRODUCT.md §8. When several apply, the lowest non-zero one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    Ok = 0,
    /// A node failed or was rolled back.
    Failed = 1,
    /// Bad usage, bad config or an invalid input file.
    Invalid = 2,
    /// Work is waiting on a gate or an approval.
    Waiting = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// Runs one command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<Exit> {
    init_logging(&cli);
    cmd::dispatch(cli)
}

fn init_logging(cli: &cli::Cli) {
    use tracing_subscriber::EnvFilter;
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("OPSFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(format!("opsflow={level}")));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match cli.log_format {
        cli::LogFormat::Text => builder.try_init(),
        cli::LogFormat::Json => builder.json().try_init(),
    };
}

/// True while a process with this pid exists (on this host).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
