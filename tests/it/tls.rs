//! HTTPS checks and metrics against a real rustls server on 127.0.0.1, whose certificate is
//! signed by a CA that each test generates with rcgen (so no system store trusts it).
//!
//! What a user sees: a check with `ca_file` naming that CA passes; without it the check fails
//! with a certificate error that says what to set; a redirect is reported, not followed. A
//! server presenting a self-signed `CA:TRUE` certificate (the `openssl req -x509` shape) passes
//! when `ca_file` is that certificate, and any other is refused in words.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use opsflow::exec::checks::{CheckSpec, run_check};
use opsflow::exec::command::Runner;
use opsflow::exec::metrics::{MetricsSpec, sample};
use opsflow::exec::secrets::Secrets;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

use crate::util::Workspace;

/// A TLS server on a loopback port: `/health` answers 200, `/moved` a 302 to `/health`,
/// `/stats` a JSON document. It counts the requests for `/health` it served.
struct TlsServer {
    address: SocketAddr,
    /// The PEM of the CA that signed the server's certificate.
    ca_pem: String,
    health_requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    fn start() -> TlsServer {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "opsflow test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        TlsServer::presenting(server_cert.der().to_vec(), &server_key, ca_cert.pem())
    }

    /// A server presenting a self-signed certificate for `names` made the way `openssl req
    /// -x509` makes one: marked `CA:TRUE`. `ca_pem` is that certificate's own PEM.
    fn self_signed_ca(names: &[&str]) -> TlsServer {
        let (der, pem, key) = self_signed_ca_certificate(names);
        TlsServer::presenting(der, &key, pem)
    }

    fn presenting(certificate: Vec<u8>, key: &KeyPair, ca_pem: String) -> TlsServer {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(certificate)],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let health_requests = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, health_requests) = (stop.clone(), health_requests.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
                            // A client that refuses the certificate ends the handshake: that
                            // connection fails, the server goes on.
                            let _ = serve(rustls::StreamOwned::new(connection, stream), &health_requests);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            })
        };
        TlsServer { address, ca_pem, health_requests, stop, thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.address)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    stream: rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
    health_requests: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let response: String = match path.as_str() {
        "/health" => {
            health_requests.fetch_add(1, Ordering::Relaxed);
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned()
        }
        "/moved" => {
            "HTTP/1.1 302 Found\r\nlocation: /health\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
        }
        "/stats" => {
            let body = r#"{"error_rate": 0.5}"#;
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
        }
        _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
    };
    let stream = reader.get_mut();
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// A self-signed certificate for `names` with `CA:TRUE`, as `openssl req -x509` makes it by
/// default: its DER, its PEM and its key.
fn self_signed_ca_certificate(names: &[&str]) -> (Vec<u8>, String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    let certificate = params.self_signed(&key).unwrap();
    (certificate.der().to_vec(), certificate.pem(), key)
}

fn runner(dir: &std::path::Path) -> Runner {
    Runner {
        run_dir: dir.join(".opsflow/runs/test"),
        workspace: dir.to_owned(),
        env: Vec::new(),
        secrets: Secrets::from_vars(Vec::<(String, String)>::new(), &[]),
        default_timeout: Duration::from_secs(30),
        abort: Arc::default(),
    }
}

fn check(value: serde_json::Value) -> CheckSpec {
    serde_json::from_value(value).unwrap()
}

#[test]
fn an_https_check_passes_with_its_ca_file_and_fails_without_it() {
    let server = TlsServer::start();
    let ws = Workspace::new().file("certs/ca.pem", &server.ca_pem);
    let runner = runner(ws.path());

    let trusted =
        check(json!({"name": "api", "http": server.url("/health"), "ca_file": "certs/ca.pem", "timeout": "30s"}));
    let result = run_check(&runner, "health", &trusted, ws.path(), &[]);
    assert!(result.passed, "{}", result.detail);
    assert_eq!(result.detail, format!("GET {}: status 200", server.url("/health")));

    let untrusted = check(json!({"name": "api", "http": server.url("/health"), "timeout": "30s"}));
    let result = run_check(&runner, "health", &untrusted, ws.path(), &[]);
    assert!(!result.passed);
    assert!(
        result.detail.contains("TLS certificate is not trusted") && result.detail.contains("set `ca_file`"),
        "{}",
        result.detail
    );
    assert_eq!(server.health_requests.load(Ordering::Relaxed), 1, "the untrusted check must not reach the app");
}

#[test]
fn a_self_signed_certificate_marked_ca_true_is_trusted_as_itself_in_ca_file() {
    // What broke: the certificate `openssl req -x509` makes (`CA:TRUE`), given as `ca_file`,
    // was refused with `not trusted (Other(OtherError(CaUsedAsEndEntity)))`, where curl
    // `--cacert` accepts it.
    let server = TlsServer::self_signed_ca(&["127.0.0.1", "localhost"]);
    let ws = Workspace::new().file("certs/server.pem", &server.ca_pem);
    let spec =
        check(json!({"name": "api", "http": server.url("/health"), "ca_file": "certs/server.pem", "timeout": "30s"}));
    let result = run_check(&runner(ws.path()), "health", &spec, ws.path(), &[]);
    assert!(result.passed, "{}", result.detail);
    assert_eq!(result.detail, format!("GET {}: status 200", server.url("/health")));
    assert_eq!(server.health_requests.load(Ordering::Relaxed), 1);

    // The same file also pins metrics.
    let metrics = MetricsSpec::from_value(&json!({
        "http": server.url("/stats"), "ca_file": "certs/server.pem", "error_rate": "/error_rate", "timeout": "30s"
    }))
    .unwrap();
    assert_eq!(sample(&runner(ws.path()), &metrics, &[]).error_rate, Some(0.5));
}

#[test]
fn another_self_signed_ca_true_certificate_is_refused_in_words_with_the_command_that_makes_one() {
    let server = TlsServer::self_signed_ca(&["127.0.0.1"]);
    let (_, other_pem, _) = self_signed_ca_certificate(&["127.0.0.1"]);
    let ws = Workspace::new().file("certs/server.pem", &other_pem);
    let spec =
        check(json!({"name": "api", "http": server.url("/health"), "ca_file": "certs/server.pem", "timeout": "30s"}));
    let result = run_check(&runner(ws.path()), "health", &spec, ws.path(), &[]);
    assert!(!result.passed);
    let ca_file = ws.join("certs/server.pem");
    assert_eq!(
        result.detail,
        format!(
            "GET {}: the server's TLS certificate is not trusted by the CA file {ca}: it is a CA certificate \
             (`CA:TRUE`, as `openssl req -x509` makes by default) used as the server's own; put this exact \
             certificate in {ca} (it is then trusted as itself), or make a server certificate with `{make}`",
            server.url("/health"),
            ca = ca_file.display(),
            make = opsflow::exec::http::MAKE_CERTIFICATE,
        )
    );
    assert_eq!(server.health_requests.load(Ordering::Relaxed), 0, "a refused certificate reached the app");

    // Without a `ca_file` the same certificate is refused by the system's store, in words.
    let spec = check(json!({"name": "api", "http": server.url("/health"), "timeout": "30s"}));
    let result = run_check(&runner(ws.path()), "health", &spec, ws.path(), &[]);
    assert!(!result.passed);
    assert!(result.detail.contains("not trusted by the system's CA store: "), "{}", result.detail);
    assert!(!result.detail.contains("Other(") && !result.detail.contains("Error("), "{}", result.detail);
}

#[test]
fn a_pinned_certificate_must_still_name_the_host() {
    let server = TlsServer::self_signed_ca(&["api.example.test"]);
    let ws = Workspace::new().file("server.pem", &server.ca_pem);
    let spec = check(json!({"name": "api", "http": server.url("/health"), "ca_file": "server.pem", "timeout": "30s"}));
    let result = run_check(&runner(ws.path()), "health", &spec, ws.path(), &[]);
    assert!(!result.passed);
    assert!(
        result.detail.ends_with(
            "it is for api.example.test, not 127.0.0.1; use a host name the certificate names, or make one for this host"
        ),
        "{}",
        result.detail
    );
    assert_eq!(server.health_requests.load(Ordering::Relaxed), 0);
}

#[test]
fn https_to_a_plain_http_port_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    });
    let ws = Workspace::new().file("ca.pem", self_signed_ca_certificate(&["127.0.0.1"]).1);
    let spec = check(json!({"name": "api", "http": format!("https://{address}/health"), "ca_file": "ca.pem"}));
    let result = run_check(&runner(ws.path()), "health", &spec, ws.path(), &[]);
    server.join().unwrap();
    assert!(!result.passed);
    assert_eq!(
        result.detail,
        format!("GET https://{address}/health: the server did not answer in TLS; is this port plain http://?")
    );
}

#[test]
fn a_ca_that_did_not_sign_the_certificate_is_not_enough() {
    let server = TlsServer::start();
    let other = TlsServer::start();
    let ws = Workspace::new().file("ca.pem", &other.ca_pem);
    let spec = check(json!({"name": "api", "http": server.url("/health"), "ca_file": "ca.pem", "timeout": "30s"}));
    let result = run_check(&runner(ws.path()), "health", &spec, ws.path(), &[]);
    assert!(!result.passed);
    assert!(result.detail.contains("not trusted") && result.detail.contains("by the CA file"), "{}", result.detail);
}

#[test]
fn a_redirect_is_reported_not_followed() {
    let server = TlsServer::start();
    let ws = Workspace::new().file("ca.pem", &server.ca_pem);
    let spec = check(json!({"name": "api", "http": server.url("/moved"), "ca_file": "ca.pem", "timeout": "30s"}));
    let result = run_check(&runner(ws.path()), "health", &spec, ws.path(), &[]);
    assert!(!result.passed);
    assert_eq!(result.detail, format!("GET {}: status 302, expected 2xx", server.url("/moved")));
    assert_eq!(server.health_requests.load(Ordering::Relaxed), 0, "the redirect was followed");

    let expecting_it =
        check(json!({"name": "api", "http": server.url("/moved"), "ca_file": "ca.pem", "expect_status": 302}));
    assert!(run_check(&runner(ws.path()), "health", &expecting_it, ws.path(), &[]).passed);
}

#[test]
fn https_metrics_read_with_a_ca_file() {
    let server = TlsServer::start();
    let ws = Workspace::new().file("ca.pem", &server.ca_pem);
    let spec = MetricsSpec::from_value(&json!({
        "http": server.url("/stats"), "ca_file": "ca.pem", "error_rate": "/error_rate", "timeout": "30s"
    }))
    .unwrap();
    let result = sample(&runner(ws.path()), &spec, &[]);
    assert_eq!(result.error_rate, Some(0.5), "{:?}", result.error);
}

#[test]
fn the_config_schema_takes_ca_file_on_checks_and_metrics() {
    let config = json!({
        "environments": {"staging": {
            "provider": "local",
            "health_checks": [{"name": "api", "http": "https://127.0.0.1:8443/health", "ca_file": "certs/ca.pem"}],
            "metrics": {"prometheus": "https://127.0.0.1:9090", "ca_file": "certs/ca.pem", "error_rate": "up"}
        }}
    });
    let ws = Workspace::new().sample().file("project-config.json", serde_json::to_string_pretty(&config).unwrap());
    ws.run(&["validate"]).status(0);

    let config = json!({
        "environments": {"staging": {
            "provider": "local",
            "health_checks": [{"name": "api", "http": "https://127.0.0.1:8443/health", "ca_file": ""}]
        }}
    });
    let ws = Workspace::new().sample().file("project-config.json", serde_json::to_string_pretty(&config).unwrap());
    let run = ws.run(&["validate"]);
    run.status(2);
    assert!(run.stdout().contains("project-config.json") && run.stdout().contains("ca_file"), "{}", run.stdout());
}
