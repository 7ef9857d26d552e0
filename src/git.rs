//! The `git` command line, run with a timeout.
//!
//! opsflow drives git through its command line, never a library, so the user's own git, its
//! config, credentials and hooks apply. Every call has a deadline after which git is killed,
//! never prompts (no terminal, no editor), and has both of its pipes drained by threads so a
//! chatty git never blocks on a full pipe.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a git command printed, and whether it succeeded.
#[derive(Debug)]
pub struct GitOutput {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A git command that could not run or did not finish, or (from [`GitOutput::ok`]) that ran
/// and failed. Each names the command and the directory it ran in.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git could not be started (not installed, the directory is gone).
    #[error("cannot run `{command}` in {}: {source}", dir.display())]
    Start { command: String, dir: PathBuf, source: std::io::Error },
    /// git ran longer than its timeout and was killed.
    #[error("`{command}` did not finish within {}s and was stopped (in {})", timeout.as_secs(), dir.display())]
    Timeout { command: String, dir: PathBuf, timeout: Duration },
    /// Waiting for git failed.
    #[error("cannot wait for `{command}` in {}: {source}", dir.display())]
    Wait { command: String, dir: PathBuf, source: std::io::Error },
    /// git ran and exited with a failure; `stderr` is what it printed, trimmed.
    #[error("`{command}` failed in {}: {}", dir.display(), failed(*code, stderr))]
    Failed { command: String, dir: PathBuf, code: Option<i32>, stderr: String },
}

fn failed(code: Option<i32>, stderr: &str) -> String {
    let status = status(code);
    if stderr.is_empty() { status } else { format!("{status}: {stderr}") }
}

/// How git ended, as errors and logs say it: `exit N`, or `killed by a signal`.
pub fn status(code: Option<i32>) -> String {
    code.map_or_else(|| "killed by a signal".to_owned(), |code| format!("exit {code}"))
}

impl GitOutput {
    /// The output when git succeeded, else a [`GitError::Failed`] naming `git args…` and `dir`.
    pub fn ok(self, dir: &Path, args: &[&str]) -> Result<GitOutput, GitError> {
        if self.success {
            return Ok(self);
        }
        Err(GitError::Failed {
            command: shown(args),
            dir: dir.to_owned(),
            code: self.code,
            stderr: self.stderr.trim().to_owned(),
        })
    }
}

/// `git args…`, as errors and logs show a command.
pub fn shown(args: &[&str]) -> String {
    format!("git {}", args.join(" "))
}

/// Runs `git args…` in `dir`, killing it after `timeout`. An error says which command could
/// not run or did not finish; a command that ran and failed is an `Ok` with `success: false`.
pub fn run(dir: &Path, args: &[&str], timeout: Duration) -> Result<GitOutput, GitError> {
    let shown = shown(args);
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_EDITOR", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| GitError::Start { command: shown.clone(), dir: dir.to_owned(), source })?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(GitError::Timeout { command: shown, dir: dir.to_owned(), timeout });
            }
            Err(source) => return Err(GitError::Wait { command: shown, dir: dir.to_owned(), source }),
        }
    };
    Ok(GitOutput {
        success: status.success(),
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_failure_are_reported_as_git_gave_them() {
        let dir = tempfile::tempdir().unwrap();
        let version = run(dir.path(), &["--version"], Duration::from_secs(30)).unwrap();
        assert!(version.success && version.stdout.starts_with("git version"), "{version:?}");
        let outside = run(dir.path(), &["rev-parse", "--show-toplevel"], Duration::from_secs(30)).unwrap();
        if !outside.success {
            assert!(outside.stderr.contains("not a git repository"), "{outside:?}");
            assert_eq!(outside.code, Some(128));
            let error = outside.ok(dir.path(), &["rev-parse", "--show-toplevel"]).unwrap_err().to_string();
            let expected =
                format!("`git rev-parse --show-toplevel` failed in {}: exit 128: fatal:", dir.path().display());
            assert!(error.starts_with(&expected), "{error}");
        }
        let gone = dir.path().join("gone");
        let error = run(&gone, &["status"], Duration::from_secs(30)).unwrap_err();
        assert!(matches!(error, GitError::Start { .. }), "{error:?}");
        assert!(error.to_string().starts_with(&format!("cannot run `git status` in {}: ", gone.display())), "{error}");
    }
}
