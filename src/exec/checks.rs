//! Health checks and smoke tests: a command or an HTTP(S) GET ([`super::http`]), with retries
//! and an interval.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::command::Runner;
use super::http;
use crate::duration::{defaults, duration_text};

#[derive(Debug, Clone, Deserialize)]
pub struct CheckSpec {
    pub name: String,
    #[serde(default)]
    pub http: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub expect_status: Option<u16>,
    #[serde(default)]
    pub expect_body_contains: Option<String>,
    /// A PEM file of the CA certificates to trust for an `https` check instead of the
    /// system's, relative to the workspace.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Read when the config is loaded: a value that is not a duration is an error there.
    #[serde(default, deserialize_with = "duration_text::option::deserialize")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default, deserialize_with = "duration_text::option::deserialize")]
    pub interval: Option<Duration>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CheckResult {
    pub name: String,
    /// `command` or `http`.
    pub kind: String,
    pub target: String,
    pub passed: bool,
    pub attempts: u32,
    pub duration_ms: u64,
    pub detail: String,
    /// The log of the last attempt, for command checks.
    pub log: String,
}

/// Runs one check, retrying up to `retries` times `interval` apart.
pub fn run_check(
    runner: &Runner,
    step_prefix: &str,
    spec: &CheckSpec,
    cwd: &Path,
    env: &[(String, String)],
) -> CheckResult {
    let started = Instant::now();
    let timeout = spec.timeout;
    let interval = spec.interval.unwrap_or(defaults::CHECK_INTERVAL);
    let attempts_allowed = spec.retries.unwrap_or(0) + 1;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (kind, target, passed, detail, log) = match (&spec.command, &spec.http) {
            (Some(command), _) => {
                let result = runner.run(&format!("{step_prefix}-{}", spec.name), command, Some(cwd), timeout, env);
                ("command", runner.secrets.mask(command), result.success, result.summary(), result.log)
            }
            (None, Some(url)) => {
                let timeout = timeout.unwrap_or(defaults::HTTP_CHECK_TIMEOUT);
                let (passed, detail) = http_check(url, spec, timeout, &runner.workspace);
                ("http", url.clone(), passed, runner.secrets.mask(&detail), String::new())
            }
            (None, None) => (
                "command",
                String::new(),
                false,
                "the check has neither `command` nor `http`".to_owned(),
                String::new(),
            ),
        };
        if passed || attempts >= attempts_allowed {
            return CheckResult {
                name: spec.name.clone(),
                kind: kind.to_owned(),
                target,
                passed,
                attempts,
                duration_ms: started.elapsed().as_millis() as u64,
                detail,
                log,
            };
        }
        std::thread::sleep(interval);
    }
}

/// An HTTP GET that passes on the expected status (default any 2xx) and, when asked, a body
/// that contains a text. A `ca_file` is relative to the workspace.
fn http_check(url: &str, spec: &CheckSpec, timeout: Duration, workspace: &Path) -> (bool, String) {
    let ca_file = spec.ca_file.as_deref().map(|file| workspace.join(file));
    let request = http::Request { timeout, max_body: http::MAX_CHECK_BODY, ca_file: ca_file.as_deref() };
    match http::get(url, &request) {
        Ok((status, body)) => {
            let expected = match spec.expect_status {
                Some(expect) => status == expect,
                None => (200..300).contains(&status),
            };
            if !expected {
                let expect = spec.expect_status.map_or_else(|| "2xx".to_owned(), |code| code.to_string());
                return (false, format!("GET {url}: status {status}, expected {expect}"));
            }
            if let Some(needle) = &spec.expect_body_contains
                && !body.contains(needle.as_str())
            {
                return (false, format!("GET {url}: status {status}, but the body does not contain {needle:?}"));
            }
            (true, format!("GET {url}: status {status}"))
        }
        Err(e) => (false, format!("GET {url}: {e}")),
    }
}
