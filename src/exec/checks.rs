//! Health checks and smoke tests: a command or an HTTP GET, with retries and an interval.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::command::Runner;
use crate::config::parse_duration;

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
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub interval: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    /// `command` or `http`.
    pub kind: &'static str,
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
    let timeout = spec.timeout.as_deref().and_then(|t| parse_duration(t).ok());
    let interval = spec.interval.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(Duration::from_secs(1));
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
                let (passed, detail) = http_check(url, spec, timeout.unwrap_or(Duration::from_secs(10)));
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
                kind,
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

/// A plain HTTP/1.1 GET (no TLS), enough for health endpoints on loopback or a private network.
fn http_check(url: &str, spec: &CheckSpec, timeout: Duration) -> (bool, String) {
    let expect = spec.expect_status.unwrap_or(200);
    match http_get(url, timeout) {
        Ok((status, body)) => {
            if status != expect {
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

pub fn http_get(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    let socket = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or("no address")?;
    let mut stream = TcpStream::connect_timeout(&socket, timeout).map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: opsflow\r\n\r\n")
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut response = Vec::new();
    stream.take(4 * 1024 * 1024).read_to_end(&mut response).map_err(|e| format!("cannot read the response: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {status_line:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}
