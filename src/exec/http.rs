//! The HTTP client of health checks, smoke tests, JSON metrics endpoints and the Prometheus
//! query API: one GET through `ureq`, with TLS by rustls (the `ring` provider).
//!
//! What a check needs from a client, and nothing more:
//! - `https://` trusted through the platform's verifier (on Linux the system's CA store, so a
//!   company CA installed there works), or only through the CA certificates of a `ca_file`;
//! - redirects never followed: a health endpoint that answers 302 to a login page is not
//!   healthy, and the status says so;
//! - no proxy from the environment: checks reach the host they name;
//! - the whole request (resolving, connecting, the TLS handshake, sending, every read of the
//!   body) bounded by one timeout, so a server that trickles bytes cannot hold a deploy;
//! - a cap on the body, so a runaway endpoint cannot fill the memory;
//! - the body framed as the server says (`Content-Length`, chunked, or to the end), and read
//!   as lossy UTF-8.
//!
//! Errors are sentences for a report: what went wrong, and for a certificate that is not
//! trusted, what to do about it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// The most body bytes a health check or smoke test reads.
pub const MAX_CHECK_BODY: u64 = 1024 * 1024;

/// The most body bytes a metrics endpoint or a Prometheus answer may have.
pub const MAX_METRICS_BODY: u64 = 8 * 1024 * 1024;

/// How one request is made.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Bounds the whole request, body included.
    pub timeout: Duration,
    /// The most body bytes read; a larger body is an error.
    pub max_body: u64,
    /// Trust only the CA certificates in this PEM file (already resolved against the
    /// workspace), instead of the platform's.
    pub ca_file: Option<&'a Path>,
}

/// Why a GET gave no response; a sentence for a report (the caller says which URL).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("expected an http:// or https:// URL, found scheme {scheme:?}")]
    Scheme { scheme: String },
    /// The `ca_file` cannot be read or holds no certificate.
    #[error("{reason}")]
    CaFile { path: PathBuf, reason: String },
    /// The request failed: no connection, a TLS failure, a timeout, a body too large.
    #[error("{0}")]
    Request(String),
}

/// A GET of `url`: the status and the body (lossy UTF-8), whatever the status.
pub fn get(url: &str, request: &Request<'_>) -> Result<(u16, String), HttpError> {
    let scheme = url.split_once("://").map_or("none", |(scheme, _)| scheme);
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(HttpError::Scheme { scheme: scheme.to_owned() });
    }
    let custom;
    let agent = match request.ca_file {
        Some(path) => {
            custom = agent(RootCerts::Specific(Arc::new(read_ca_file(path)?)));
            &custom
        }
        None => platform_agent(),
    };
    // A fragment is for browsers; `http::Uri` refuses it.
    let url = url.split('#').next().unwrap_or(url);
    let mut response = agent
        .get(url)
        .config()
        .timeout_global(Some(request.timeout))
        .build()
        .call()
        .map_err(|e| HttpError::Request(explain(e, request, Stage::Head)))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(request.max_body)
        .read_to_vec()
        .map_err(|e| HttpError::Request(explain(e, request, Stage::Body)))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
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

/// The agent that trusts the platform's CA store, built once (loading the store costs a
/// few milliseconds).
fn platform_agent() -> &'static Agent {
    static AGENT: OnceLock<Agent> = OnceLock::new();
    AGENT.get_or_init(|| agent(RootCerts::PlatformVerifier))
}

fn agent(roots: RootCerts) -> Agent {
    Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        // One connection per request, as a probe should: no reuse of a socket to a server
        // that may have been replaced since.
        .max_idle_connections(0)
        .user_agent("opsflow")
        .build()
        .into()
}

/// The certificates of a PEM file; a file without any is an error.
fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, HttpError> {
    let shown = path.display();
    let refused = |reason: String| HttpError::CaFile { path: path.to_owned(), reason };
    let pem = std::fs::read(path).map_err(|e| refused(format!("cannot read the CA file {shown}: {e}")))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(e) => return Err(refused(format!("cannot read the CA file {shown}: {e}"))),
        }
    }
    if certificates.is_empty() {
        return Err(refused(format!(
            "expected PEM certificates (-----BEGIN CERTIFICATE-----) in the CA file {shown}, found none"
        )));
    }
    Ok(certificates)
}

/// Where a request failed: before the status line and headers were complete, or in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Head,
    Body,
}

/// Turns a ureq error into a sentence for a report.
fn explain(error: ureq::Error, request: &Request<'_>, stage: Stage) -> String {
    use std::io::ErrorKind;
    if let Some(tls) = rustls_error(&error) {
        return match tls {
            rustls::Error::InvalidCertificate(why) => {
                let trusted = match request.ca_file {
                    Some(path) => format!("by the CA file {}", path.display()),
                    None => "by the system's CA store; set `ca_file` to the CA that signed it".to_owned(),
                };
                format!("the server's TLS certificate is not trusted ({why:?}) {trusted}")
            }
            other => format!("TLS handshake failed: {other}"),
        };
    }
    match error {
        ureq::Error::Timeout(_) => format!("timed out after {} ms", request.timeout.as_millis()),
        ureq::Error::BodyExceedsLimit(_) => format!("the response body is larger than {} bytes", request.max_body),
        ureq::Error::HostNotFound => "cannot resolve the host".to_owned(),
        ureq::Error::ConnectionFailed => "cannot connect".to_owned(),
        ureq::Error::Io(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::HostUnreachable) => {
            format!("cannot connect: {e}")
        }
        ureq::Error::Io(e) if e.kind() == ErrorKind::UnexpectedEof && stage == Stage::Head => {
            "the server closed the connection without a response".to_owned()
        }
        ureq::Error::Io(e) if e.kind() == ErrorKind::UnexpectedEof => {
            "the body ended early: the connection closed before the whole response arrived".to_owned()
        }
        ureq::Error::Io(e) => format!("{e}"),
        ureq::Error::Protocol(e) => format!("not a valid HTTP response: {e}"),
        other => other.to_string(),
    }
}

/// The rustls error inside `error`, if the TLS layer failed.
fn rustls_error(error: &ureq::Error) -> Option<&rustls::Error> {
    match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    fn plain(timeout: Duration) -> Request<'static> {
        Request { timeout, max_body: MAX_CHECK_BODY, ca_file: None }
    }

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
    fn percent_encoding_protects_promql() {
        assert_eq!(
            percent_encode(r#"sum(rate(x{code="500"}[5s])) + 1"#),
            "sum%28rate%28x%7Bcode%3D%22500%22%7D%5B5s%5D%29%29%20%2B%201"
        );
        assert_eq!(percent_encode("a-b.c_d~é"), "a-b.c_d~%C3%A9");
    }

    #[test]
    fn other_schemes_are_refused() {
        let error = get("ftp://example.test/", &plain(Duration::from_secs(1))).unwrap_err().to_string();
        assert!(error.contains("found scheme \"ftp\""), "{error}");
        for malformed in ["http://", "http://a b/", "https://[::1/", "http://127.0.0.1:99999/", "http://\u{0}/"] {
            assert!(get(malformed, &plain(Duration::from_secs(1))).is_err(), "{malformed}");
        }
    }

    #[test]
    fn chunked_bodies_are_decoded_across_reads_and_the_query_is_sent() {
        let (url, server) = serve_once(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"",
            b"\r\n5;ext=1\r\n: 42}\r\n0\r\n\r\n",
        ]);
        let (status, body) = get(&format!("{url}/stats?x=1#fragment"), &plain(Duration::from_secs(30))).unwrap();
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
            // Keep the connection open until the client is done (or gone): it must not wait
            // for the end, which comes only after it returned.
            let _ = wait.recv();
        });
        let (status, body) = get(&url, &plain(Duration::from_secs(30))).unwrap();
        done.send(()).unwrap();
        server.join().unwrap();
        assert_eq!((status, body.as_str()), (503, "no"));
    }

    #[test]
    fn truncated_bodies_and_silence_are_errors() {
        let (url, server) = serve_once(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]);
        let error = get(&url, &plain(Duration::from_secs(30))).unwrap_err().to_string();
        server.join().unwrap();
        assert!(error.contains("body ended early"), "{error}");

        let (url, server) = serve_once(vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"]);
        let error = get(&url, &plain(Duration::from_secs(30))).unwrap_err().to_string();
        server.join().unwrap();
        assert!(error.contains("body ended early"), "{error}");

        let (url, server) = serve_once(vec![b"HTTP/1.1 200 OK\r\nContent-Le"]);
        let error = get(&url, &plain(Duration::from_secs(30))).unwrap_err().to_string();
        server.join().unwrap();
        assert_eq!(error, "the server closed the connection without a response");

        let (url, server) = serve_once(vec![b"SSH-2.0-OpenSSH_9.2\r\n\r\n"]);
        let error = get(&url, &plain(Duration::from_secs(30))).unwrap_err().to_string();
        server.join().unwrap();
        assert!(error.starts_with("not a valid HTTP response"), "{error}");

        let (url, server) = serve_once(vec![]);
        let error = get(&url, &plain(Duration::from_secs(30))).unwrap_err().to_string();
        server.join().unwrap();
        assert_eq!(error, "the server closed the connection without a response");
    }

    #[test]
    fn a_body_over_the_cap_is_an_error() {
        let (url, server) = serve_once(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789"]);
        let error = get(&url, &Request { max_body: 10, ..plain(Duration::from_secs(30)) }).unwrap_err().to_string();
        server.join().unwrap();
        assert_eq!(error, "the response body is larger than 10 bytes");
    }

    #[test]
    fn a_server_that_never_answers_times_out_on_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let error = get(&url, &plain(Duration::from_millis(300))).unwrap_err().to_string();
        assert_eq!(error, "timed out after 300 ms");
        drop(listener);
    }

    #[test]
    fn a_server_that_trickles_its_body_times_out_on_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").unwrap();
            // One byte every 50 ms until the client gives up: each read is quick, the whole is not.
            while wait.recv_timeout(Duration::from_millis(50)).is_err() {
                if stream.write_all(b"x").is_err() {
                    break;
                }
            }
        });
        let error = get(&url, &plain(Duration::from_millis(500))).unwrap_err().to_string();
        done.send(()).ok();
        server.join().unwrap();
        assert_eq!(error, "timed out after 500 ms");
    }

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let request = Request { ca_file: Some(&path), ..plain(Duration::from_secs(1)) };
        let error = get("https://127.0.0.1:1/", &request).unwrap_err().to_string();
        assert!(error.contains("found none") && error.contains("ca.pem"), "{error}");
        let missing = dir.path().join("missing.pem");
        let error =
            get("https://127.0.0.1:1/", &Request { ca_file: Some(&missing), ..request }).unwrap_err().to_string();
        assert!(error.starts_with("cannot read the CA file") && error.contains("missing.pem"), "{error}");
        let Err(HttpError::CaFile { path: named, .. }) = get("https://127.0.0.1:1/", &request) else {
            panic!("a CA file without certificates is not a CaFile error");
        };
        assert_eq!(named, path);
    }
}
