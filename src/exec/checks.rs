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

/// The most bytes `http_get` reads, headers included; a larger response is an error.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// A plain HTTP/1.1 GET (no TLS), enough for health endpoints, JSON stats and a Prometheus
/// server on loopback or a private network. Returns the status and the body (lossy UTF-8).
///
/// `timeout` bounds the whole request (every address tried, the connect, the send and every
/// read), so a server that trickles bytes cannot hold a deploy. The body is framed the way
/// the server says: `Transfer-Encoding: chunked` is decoded, `Content-Length` is read
/// exactly, otherwise the body runs to the end of the connection. The URL may carry a query
/// string (`?query=...`, already percent-encoded, see [`percent_encode`]); a fragment is
/// dropped.
pub fn http_get(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let target = HttpTarget::parse(url)?;
    let mut stream = connect(&target, deadline)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: */*\r\nUser-Agent: opsflow\r\n\r\n",
        target.path, target.authority
    );
    stream.set_write_timeout(Some(remaining(deadline)?)).map_err(|e| e.to_string())?;
    stream.write_all(request.as_bytes()).map_err(|e| format!("cannot send the request: {e}"))?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let mut head: Option<ResponseHead> = None;
    loop {
        if let Some(head) = &head
            && let Some(body) = head.complete_body(&response)?
        {
            return Ok((head.status, String::from_utf8_lossy(&body).into_owned()));
        }
        let Ok(left) = remaining(deadline) else {
            return Err(format!("timed out after {} ms reading the response", timeout.as_millis()));
        };
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let read = match stream.read(&mut buffer) {
            Ok(read) => read,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("timed out after {} ms reading the response", timeout.as_millis()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read the response: {e}")),
        };
        if read == 0 {
            // The server closed the connection: the body is whatever came, if its framing
            // allows that.
            let Some(head) = &head else {
                return Err(if response.is_empty() {
                    "the server closed the connection without a response".to_owned()
                } else {
                    let start = String::from_utf8_lossy(&response[..response.len().min(80)]).into_owned();
                    format!("not an HTTP response: expected a status line and headers, found {start:?}")
                });
            };
            return head.body_at_end(&response).map(|body| (head.status, String::from_utf8_lossy(&body).into_owned()));
        }
        response.extend_from_slice(&buffer[..read]);
        if response.len() > MAX_RESPONSE_BYTES {
            return Err(format!("the response is larger than {MAX_RESPONSE_BYTES} bytes"));
        }
        if head.is_none() {
            head = ResponseHead::parse(&response)?;
        }
    }
}

/// Percent-encodes `text` for a URL query value: every byte but the unreserved characters
/// of RFC 3986 (`A-Z a-z 0-9 - . _ ~`), so PromQL's braces, quotes, spaces and `+` survive.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() { Err("timed out".to_owned()) } else { Ok(left) }
}

/// What an `http://` URL asks for: the `Host` to send, the address to connect to, and the
/// request target (path and query).
#[derive(Debug, PartialEq)]
struct HttpTarget {
    authority: String,
    address: String,
    path: String,
}

impl HttpTarget {
    fn parse(url: &str) -> Result<HttpTarget, String> {
        let Some(rest) = url.strip_prefix("http://") else {
            let scheme = url.split_once("://").map_or("none", |(scheme, _)| scheme);
            return Err(format!("expected an http:// URL (TLS is not supported), found scheme {scheme:?}"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.is_empty() {
            return Err("expected a host after http://, found none".to_owned());
        }
        if authority.contains('@') {
            return Err("expected a URL without credentials (user@host is not supported)".to_owned());
        }
        let target = target.split('#').next().unwrap_or_default();
        let path = match target.strip_prefix('?') {
            Some(_) => format!("/{target}"),
            None if target.is_empty() => "/".to_owned(),
            None => target.to_owned(),
        };
        // A port is present when the authority ends in `:digits` after any IPv6 brackets.
        let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']'))
        });
        let address = if has_port { authority.to_owned() } else { format!("{authority}:80") };
        Ok(HttpTarget { authority: authority.to_owned(), address, path })
    }
}

/// Connects to the first address of the host that answers (`localhost` may resolve to `::1`
/// first while the server listens on `127.0.0.1` only).
fn connect(target: &HttpTarget, deadline: Instant) -> Result<TcpStream, String> {
    let addresses: Vec<_> =
        target.address.to_socket_addrs().map_err(|e| format!("cannot resolve {}: {e}", target.authority))?.collect();
    let mut last_error = format!("{} resolves to no address", target.authority);
    for address in addresses {
        let left = remaining(deadline).map_err(|_| format!("timed out connecting to {}", target.authority))?;
        match TcpStream::connect_timeout(&address, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = format!("cannot connect to {address}: {e}"),
        }
    }
    Err(last_error)
}

/// The status line and the framing headers of a response.
#[derive(Debug)]
struct ResponseHead {
    status: u16,
    /// Where the body starts in the response bytes.
    body_start: usize,
    content_length: Option<usize>,
    chunked: bool,
}

impl ResponseHead {
    /// Parses the head once it is complete; `Ok(None)` while more bytes are needed.
    fn parse(response: &[u8]) -> Result<Option<ResponseHead>, String> {
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&response[..end]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| {
                format!(
                    "not an HTTP response: expected a status line such as \"HTTP/1.1 200 OK\", found {status_line:?}"
                )
            })?;
        let mut content_length = None;
        let mut chunked = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = Some(
                    value
                        .parse()
                        .map_err(|_| format!("expected a number in the Content-Length header, found {value:?}"))?,
                );
            } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            }
        }
        // A response to GET with one of these statuses has no body whatever the headers say.
        if status == 204 || status == 304 || (100..200).contains(&status) {
            content_length = Some(0);
            chunked = false;
        }
        Ok(Some(ResponseHead { status, body_start: end + 4, content_length, chunked }))
    }

    /// The body when the bytes so far hold all of it.
    fn complete_body(&self, response: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let body = &response[self.body_start..];
        if self.chunked {
            return decode_chunked(body);
        }
        match self.content_length {
            Some(length) if body.len() >= length => Ok(Some(body[..length].to_vec())),
            _ => Ok(None),
        }
    }

    /// The body when the server has closed the connection.
    fn body_at_end(&self, response: &[u8]) -> Result<Vec<u8>, String> {
        let body = &response[self.body_start..];
        if self.chunked {
            return decode_chunked(body)?.ok_or_else(|| {
                "the chunked body ended early: expected a last chunk of size 0, found the end of the connection"
                    .to_owned()
            });
        }
        match self.content_length {
            Some(length) if body.len() < length => {
                Err(format!("the body ended early: expected {length} bytes (Content-Length), found {}", body.len()))
            }
            Some(length) => Ok(body[..length].to_vec()),
            None => Ok(body.to_vec()),
        }
    }
}

/// Decodes a `Transfer-Encoding: chunked` body: `Ok(None)` while the last chunk has not
/// arrived. Chunk extensions and trailers are ignored.
fn decode_chunked(mut data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[..line_end]);
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunked body: expected a hexadecimal chunk size, found {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size > MAX_RESPONSE_BYTES {
            return Err(format!(
                "bad chunked body: expected a chunk of at most {MAX_RESPONSE_BYTES} bytes, found {size}"
            ));
        }
        if size == 0 {
            return Ok(Some(body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        if &data[size..size + 2] != b"\r\n" {
            return Err(format!("bad chunked body: expected CRLF after a chunk of {size} bytes"));
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// Serves one connection with `response` written in the given pieces, then closes it.
    fn serve_once(pieces: Vec<&'static [u8]>) -> (String, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            for piece in pieces {
                stream.write_all(piece).unwrap();
                stream.flush().unwrap();
            }
            String::from_utf8(request).unwrap()
        });
        (url, handle)
    }

    #[test]
    fn targets_keep_the_query_and_default_the_port() {
        let target = HttpTarget::parse("http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22a%22%7D#x").unwrap();
        assert_eq!(target.address, "127.0.0.1:9090");
        assert_eq!(target.path, "/api/v1/query?query=up%7Bjob%3D%22a%22%7D");
        let target = HttpTarget::parse("http://example.test?x=1").unwrap();
        assert_eq!((target.address.as_str(), target.path.as_str()), ("example.test:80", "/?x=1"));
        assert_eq!(HttpTarget::parse("http://[::1]/").unwrap().address, "[::1]:80");
        assert_eq!(HttpTarget::parse("http://[::1]:8080").unwrap().address, "[::1]:8080");
        assert!(HttpTarget::parse("https://example.test/").unwrap_err().contains("found scheme \"https\""));
        assert!(HttpTarget::parse("http://user:pw@example.test/").unwrap_err().contains("credentials"));
    }

    #[test]
    fn percent_encoding_protects_promql() {
        assert_eq!(
            percent_encode(r#"sum(rate(x{code="500"}[5s])) + 1"#),
            "sum%28rate%28x%7Bcode%3D%22500%22%7D%5B5s%5D%29%29%20%2B%201"
        );
        assert_eq!(percent_encode("a-b.c_d~é"), "a-b.c_d~%C3%A9");
    }

    #[test]
    fn chunked_bodies_are_decoded_across_reads() {
        let (url, server) = serve_once(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"",
            b"\r\n5;ext=1\r\n: 42}\r\n0\r\n\r\n",
        ]);
        let (status, body) = http_get(&format!("{url}/stats?x=1"), Duration::from_secs(5)).unwrap();
        assert_eq!((status, body.as_str()), (200, "{\"a\": 42}"));
        assert!(server.join().unwrap().starts_with("GET /stats?x=1 HTTP/1.1\r\n"));
    }

    #[test]
    fn content_length_is_read_exactly_even_if_the_server_keeps_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\nnoEXTRA").unwrap();
            // Keep the connection open until the client is done: it must not wait for the end.
            let _ = wait.recv_timeout(Duration::from_secs(10));
        });
        let (status, body) = http_get(&url, Duration::from_secs(5)).unwrap();
        done.send(()).unwrap();
        server.join().unwrap();
        assert_eq!((status, body.as_str()), (503, "no"));
    }

    #[test]
    fn truncated_bodies_and_silence_are_errors() {
        let (url, server) = serve_once(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]);
        let error = http_get(&url, Duration::from_secs(5)).unwrap_err();
        server.join().unwrap();
        assert!(error.contains("expected 10 bytes") && error.contains("found 5"), "{error}");

        let (url, server) = serve_once(vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"]);
        let error = http_get(&url, Duration::from_secs(5)).unwrap_err();
        server.join().unwrap();
        assert!(error.contains("chunked body ended early"), "{error}");

        let (url, server) = serve_once(vec![]);
        let error = http_get(&url, Duration::from_secs(5)).unwrap_err();
        server.join().unwrap();
        assert!(error.contains("closed the connection without a response"), "{error}");
    }

    #[test]
    fn a_server_that_never_answers_times_out_on_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        // The request runs on a thread of its own, so a client that ignores its timeout fails
        // the test at a generous deadline instead of hanging it.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(http_get(&url, Duration::from_millis(300))));
        let outcome = receiver.recv_timeout(Duration::from_secs(60)).expect("the request returns after its timeout");
        let error = outcome.unwrap_err();
        assert!(error.contains("timed out"), "{error}");
        drop(listener);
    }
}
