//! The `git` command line, run with a timeout.
//!
//! opsflow drives git through its command line, never a library, so the user's own git, its
//! config, credentials and hooks apply. Every call has a deadline after which git is killed,
//! never prompts (no terminal, no editor), and has both of its pipes drained by threads so a
//! chatty git never blocks on a full pipe.

use std::io::Read;
use std::path::Path;
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

/// Runs `git args…` in `dir`, killing it after `timeout`. An error says which command could
/// not run or did not finish; a command that ran and failed is an `Ok` with `success: false`.
pub fn run(dir: &Path, args: &[&str], timeout: Duration) -> Result<GitOutput, String> {
    let shown = format!("git {}", args.join(" "));
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_EDITOR", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
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
                return Err(format!("`{shown}` did not finish within {}s and was stopped", timeout.as_secs()));
            }
            Err(e) => return Err(format!("cannot wait for `{shown}`: {e}")),
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
        }
    }
}
