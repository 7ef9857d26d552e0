//! The HTTP client of health checks, smoke tests, JSON metrics endpoints, the Prometheus
//! query API and notification webhooks: a GET (or a webhook's POST) through `ureq`, with TLS by
//! rustls (the `ring` provider).
//!
//! What a check needs from a client, and nothing more:
//! - `https://` trusted through the platform's verifier (on Linux the system's CA store, so a
//!   company CA installed there works), or only through the certificates of a `ca_file`: the CAs
//!   in it, and a server certificate that is byte for byte one of them (pinning, which is how a
//!   self-signed certificate made by `openssl req -x509`, marked `CA:TRUE`, is trusted, as curl's
//!   `--cacert` trusts it);
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
//! trusted, why in words and what to do about it.
//!
//! ureq takes no certificate verifier of its own, so a `ca_file` request goes through this
//! module's TLS connector (ureq's TCP connector chained to a rustls client whose verifier is
//! [`CaFileVerifier`]); the platform's requests keep ureq's own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme, StreamOwned};
use ureq::Agent;
use ureq::config::Config;
use ureq::tls::{PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, TcpConnector, Transport, TransportAdapter,
};

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

/// The client for `url` (the platform's trust, or only `ca_file`'s) and the URL without its
/// fragment; refused unless the URL is `http://` or `https://`.
fn agent_for<'u>(url: &'u str, request: &Request<'_>) -> Result<(Agent, &'u str), HttpError> {
    let scheme = url.split_once("://").map_or("none", |(scheme, _)| scheme);
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(HttpError::Scheme { scheme: scheme.to_owned() });
    }
    let agent = match request.ca_file {
        Some(path) => ca_file_agent(read_ca_file(path)?)?,
        None => platform_agent().clone(),
    };
    // A fragment is for browsers; `http::Uri` refuses it.
    Ok((agent, url.split('#').next().unwrap_or(url)))
}

/// The status and the body (lossy UTF-8, at most `max_body` bytes) of a response.
fn answer(mut response: ureq::http::Response<ureq::Body>, request: &Request<'_>) -> Result<(u16, String), HttpError> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(request.max_body)
        .read_to_vec()
        .map_err(|e| HttpError::Request(explain(e, request, Stage::Body)))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A GET of `url`: the status and the body (lossy UTF-8), whatever the status.
pub fn get(url: &str, request: &Request<'_>) -> Result<(u16, String), HttpError> {
    let (agent, url) = agent_for(url, request)?;
    let response = agent
        .get(url)
        .config()
        .timeout_global(Some(request.timeout))
        .build()
        .call()
        .map_err(|e| HttpError::Request(explain(e, request, Stage::Head)))?;
    answer(response, request)
}

/// A POST of `body` to `url` with `headers`: the status and the body (lossy UTF-8), whatever
/// the status. The same client as [`get`]: the same trust, no redirects, no proxy, one timeout
/// for the whole exchange, a cap on the answer's body.
pub fn post(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    request: &Request<'_>,
) -> Result<(u16, String), HttpError> {
    let (agent, url) = agent_for(url, request)?;
    let mut builder = agent.post(url);
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = builder
        .config()
        .timeout_global(Some(request.timeout))
        .build()
        .send(body)
        .map_err(|e| HttpError::Request(explain(e, request, Stage::Head)))?;
    answer(response, request)
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
    AGENT.get_or_init(|| config(RootCerts::PlatformVerifier).into())
}

/// How every request is made, whoever verifies the server.
fn config(roots: RootCerts) -> Config {
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
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The agent of a request with a `ca_file`: ureq's TCP connector, then [`CaFileTls`].
fn ca_file_agent(certificates: Vec<CertificateDer<'static>>) -> Result<Agent, HttpError> {
    let provider = provider();
    let verifier = CaFileVerifier::new(certificates, &provider);
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| HttpError::Request(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // The roots of this config are never consulted: ureq's own TLS connector is not in this
    // agent's chain.
    let connector = TcpConnector::default().chain(CaFileTls { config: Arc::new(tls) });
    Ok(Agent::with_parts(config(RootCerts::Specific(Arc::new(Vec::new()))), connector, DefaultResolver::default()))
}

/// The TLS of a `ca_file` request: a rustls client over the TCP transport, verified by
/// [`CaFileVerifier`].
#[derive(Debug)]
struct CaFileTls {
    config: Arc<rustls::ClientConfig>,
}

impl<In: Transport> Connector<In> for CaFileTls {
    type Out = Either<In, TlsTransport>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        // An IPv6 literal comes in brackets, which a `ServerName` does not take.
        let host = details.uri.host().unwrap_or_default();
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let name =
            ServerName::try_from(host.to_owned()).map_err(|_| ureq::Error::Tls("not a valid TLS server name"))?;
        let mut connection = ClientConnection::new(self.config.clone(), name)?;
        let mut socket = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        socket.set_timeout(remaining(details));
        connection.complete_io(&mut socket)?;
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Either::B(TlsTransport { buffers, stream: StreamOwned::new(connection, socket) })))
    }
}

/// What is left of the request's time for the handshake: the timeout ureq gave the connection,
/// less what connecting took, so that the whole request stays within its one timeout (ureq's
/// own TLS connector does the same through an API it keeps to itself).
fn remaining(details: &ConnectionDetails) -> NextTimeout {
    use ureq::unversioned::transport::time::{Duration as Budget, Instant as Moment};
    let mut timeout = details.timeout;
    if let (Budget::Exact(limit), Moment::Exact(started), Moment::Exact(now)) =
        (timeout.after, details.now, (details.current_time)())
    {
        timeout.after = Budget::Exact(limit.saturating_sub(now.saturating_duration_since(started)));
    }
    timeout
}

/// An established TLS connection of [`CaFileTls`], as ureq reads and writes it.
struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        use std::io::Write;
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        use std::io::Read;
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// Trusts what a `ca_file` says: a chain to one of its certificates, as webpki verifies it, or
/// a server certificate that is byte for byte (DER) one of them, still valid now and for the
/// host. The second is pinning: a self-signed certificate made by `openssl req -x509` is marked
/// `CA:TRUE`, which webpki refuses as a server's own certificate (`CaUsedAsEndEntity`) where
/// OpenSSL and curl accept it as the trust anchor it was given as. The handshake's signature is
/// checked against the certificate in both cases.
#[derive(Debug)]
struct CaFileVerifier {
    /// None when no certificate of the file can be a trust anchor; then only pinning trusts.
    chain: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl CaFileVerifier {
    fn new(certificates: Vec<CertificateDer<'static>>, provider: &Arc<CryptoProvider>) -> CaFileVerifier {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(certificates.iter().cloned());
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().ok();
        CaFileVerifier { chain, pinned: certificates, algorithms: provider.signature_verification_algorithms }
    }
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chained = match &self.chain {
            Some(chain) => chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(CertificateError::UnknownIssuer.into()),
        };
        let error = match chained {
            Ok(verified) => return Ok(verified),
            Err(error) => error,
        };
        let pinned = self.pinned.iter().any(|certificate| certificate.as_ref() == end_entity.as_ref());
        // webpki checks a server certificate's validity period before its basic constraints,
        // so an expired or not yet valid certificate is refused whether pinned or not.
        let about_time = matches!(
            error,
            rustls::Error::InvalidCertificate(
                CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. }
                    | CertificateError::Revoked
            )
        );
        if !pinned || about_time {
            return Err(error);
        }
        // The chain was refused before the name was looked at; a pinned certificate must
        // still name the host.
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The certificates of a PEM file; a file without any is an error.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let shown = path.display();
    let refused = |reason: String| HttpError::CaFile { path: path.to_owned(), reason };
    let pem = std::fs::read(path).map_err(|e| refused(format!("cannot read the CA file {shown}: {e}")))?;
    let mut certificates = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(certificate)) => {
                certificates.push(CertificateDer::from(certificate.der().to_vec()));
            }
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

/// How to make a server certificate that any verifier takes, for the sentences below.
pub const MAKE_CERTIFICATE: &str = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
     -keyout server.key -out server.pem -days 365 -subj /CN=HOST -addext subjectAltName=DNS:HOST \
     -addext basicConstraints=critical,CA:FALSE";

/// Turns a ureq error into a sentence for a report.
fn explain(error: ureq::Error, request: &Request<'_>, stage: Stage) -> String {
    use std::io::ErrorKind;
    if let Some(tls) = rustls_error(&error) {
        return tls_sentence(tls, request.ca_file);
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

/// A TLS failure in words: what is wrong, and what to do about it.
fn tls_sentence(error: &rustls::Error, ca_file: Option<&Path>) -> String {
    use rustls::Error;
    match error {
        Error::InvalidCertificate(why) => {
            let trusted_by = match ca_file {
                Some(path) => format!("the CA file {}", path.display()),
                None => "the system's CA store".to_owned(),
            };
            let (problem, advice) = certificate_problem(why, ca_file);
            let advice = match (advice, ca_file) {
                (Some(advice), _) => advice,
                (None, Some(_)) => "put the CA that signed it, or this exact certificate, in the CA file".to_owned(),
                (None, None) => "set `ca_file` to the CA that signed it, or to the server's own certificate".to_owned(),
            };
            format!("the server's TLS certificate is not trusted by {trusted_by}: {problem}; {advice}")
        }
        Error::AlertReceived(alert) => {
            format!("the server ended the TLS handshake with the alert `{}`", alert_name(&format!("{alert:?}")))
        }
        Error::PeerIncompatible(_) => {
            "the server offers no TLS version or cipher suite opsflow speaks (TLS 1.2 or 1.3, modern ciphers)"
                .to_owned()
        }
        Error::InvalidMessage(_) => "the server did not answer in TLS; is this port plain http://?".to_owned(),
        Error::NoCertificatesPresented => "the server presented no TLS certificate".to_owned(),
        Error::PeerMisbehaved(_) => "the server broke the TLS protocol during the handshake".to_owned(),
        other => format!("the TLS handshake failed: {other}"),
    }
}

/// Why a certificate was refused, in words, and what to do when the general advice does not fit.
fn certificate_problem(why: &CertificateError, ca_file: Option<&Path>) -> (String, Option<String>) {
    let date = |time: &UnixTime| crate::time::rfc3339(time.as_secs() as i64);
    match why {
        CertificateError::UnknownIssuer => ("it is not signed by a CA trusted there".to_owned(), None),
        CertificateError::Expired => ("it has expired".to_owned(), Some("renew it on the server".to_owned())),
        CertificateError::ExpiredContext { not_after, .. } => {
            (format!("it expired at {}", date(not_after)), Some("renew it on the server".to_owned()))
        }
        CertificateError::NotValidYet => ("it is not valid yet".to_owned(), Some("check the clocks".to_owned())),
        CertificateError::NotValidYetContext { not_before, .. } => {
            (format!("it is valid only from {}", date(not_before)), Some("check the clocks".to_owned()))
        }
        CertificateError::NotValidForName => {
            ("it is for another host name".to_owned(), Some("use the host name it was made for".to_owned()))
        }
        CertificateError::NotValidForNameContext { expected, presented } => {
            let presented: Vec<&str> = presented.iter().map(|name| bare_name(name)).collect();
            let presented = if presented.is_empty() { "no name".to_owned() } else { presented.join(", ") };
            (
                format!("it is for {presented}, not {}", expected.to_str()),
                Some("use a host name the certificate names, or make one for this host".to_owned()),
            )
        }
        CertificateError::Revoked => ("it has been revoked".to_owned(), Some("replace it on the server".to_owned())),
        CertificateError::BadEncoding => ("it is not a valid X.509 certificate".to_owned(), None),
        CertificateError::BadSignature => ("its signature does not verify".to_owned(), None),
        CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => (
            "it is signed with an algorithm opsflow does not accept".to_owned(),
            Some(format!("make one with `{MAKE_CERTIFICATE}`")),
        ),
        CertificateError::Other(other)
            if matches!(other.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity)) =>
        {
            let advice = match ca_file {
                Some(path) => format!(
                    "put this exact certificate in {} (it is then trusted as itself), or make a server \
                     certificate with `{MAKE_CERTIFICATE}`",
                    path.display()
                ),
                None => format!(
                    "set `ca_file` to this exact certificate, or make a server certificate with `{MAKE_CERTIFICATE}`"
                ),
            };
            (
                "it is a CA certificate (`CA:TRUE`, as `openssl req -x509` makes by default) used as the server's own"
                    .to_owned(),
                Some(advice),
            )
        }
        other => (format!("{other}"), None),
    }
}

/// A name as rustls presents it (`DnsName("api.example.test")`), without its kind.
fn bare_name(presented: &str) -> &str {
    match (presented.find('('), presented.rfind(')')) {
        (Some(open), Some(close)) if open < close => presented[open + 1..close].trim_matches('"'),
        _ => presented,
    }
}

/// `HandshakeFailure` as TLS names it, `handshake_failure`.
fn alert_name(debug: &str) -> String {
    let mut name = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
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
    fn names_and_alerts_read_as_tls_writes_them() {
        assert_eq!(bare_name("DnsName(\"api.example.test\")"), "api.example.test");
        assert_eq!(bare_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(bare_name("plain"), "plain");
        assert_eq!(alert_name("HandshakeFailure"), "handshake_failure");
        assert_eq!(alert_name("BadCertificate"), "bad_certificate");
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
    fn a_server_that_never_finishes_the_handshake_times_out_through_a_ca_file() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let server = thread::spawn(move || {
            // Accepts, then says nothing until the client is gone.
            let (_stream, _) = listener.accept().unwrap();
            let _ = wait.recv();
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key);
        std::fs::write(&path, certificate.unwrap().pem()).unwrap();
        let request = Request { ca_file: Some(&path), ..plain(Duration::from_millis(300)) };
        let error = get(&url, &request).unwrap_err().to_string();
        done.send(()).ok();
        server.join().unwrap();
        assert_eq!(error, "timed out after 300 ms");
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
