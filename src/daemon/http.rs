//! `/healthz` and `/metrics` over HTTP (hyper), bound only where `--http` says.
//!
//! The port may be reachable by anything on the network, so the server defends the daemon:
//! - at most [`MAX_CONNECTIONS`] connections at once, and never more than half the process's
//!   file descriptor limit, so the reconciles keep descriptors for their own files; a
//!   connection over the limit is closed at once;
//! - a client must send its request head within [`HEADER_READ_TIMEOUT`] (also between
//!   requests on a kept-alive connection), and no connection lives longer than
//!   [`CONNECTION_LIFETIME`], so a slowloris client holds nothing for long;
//! - a failing `accept` (EMFILE: out of descriptors) backs off from 100 ms to 1 s instead of
//!   spinning, and repeated errors are logged once per [`LOG_INTERVAL`], with a count.
//!
//! `/healthz` answers 503 with the reason when the reconcile loop stopped, when the file
//! watcher is down, when its last reconciles all failed, or when it stalled (see
//! [`Metrics::health`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send a request head, counted from when the server waits for it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection is kept, however busy: then it is closed after its current
/// request.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Repeated errors of one kind are logged at most once per interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a static response is valid")
}

async fn handle(request: Request<Incoming>, metrics: Arc<Metrics>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match request.uri().path() {
        "/healthz" => match metrics.health() {
            Ok(()) => respond(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(reason) => respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{reason}\n")),
        },
        "/metrics" => respond(StatusCode::OK, super::metrics::CONTENT_TYPE, metrics.render()),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found: try /healthz or /metrics\n".into()),
    })
}

/// Logs an error that may repeat many times a second at most once per [`LOG_INTERVAL`],
/// saying how many were left unlogged since.
#[derive(Debug)]
pub struct RateLimitedLog {
    what: &'static str,
    last: Option<Instant>,
    unlogged: u64,
}

impl RateLimitedLog {
    pub fn new(what: &'static str) -> RateLimitedLog {
        RateLimitedLog { what, last: None, unlogged: 0 }
    }

    /// Returns the line to log now, if it is time for one.
    pub fn note(&mut self, now: Instant, detail: &str) -> Option<String> {
        if self.last.is_some_and(|last| now.duration_since(last) < LOG_INTERVAL) {
            self.unlogged += 1;
            return None;
        }
        let line = match self.unlogged {
            0 => format!("http: {}: {detail}", self.what),
            n => format!("http: {}: {detail} ({n} more since the last report)", self.what),
        };
        self.last = Some(now);
        self.unlogged = 0;
        Some(line)
    }
}

/// The wait after the `failures`-th accept error in a row: 100 ms, doubling, at most 1 s.
pub fn accept_backoff(failures: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(4)).min(MAX_BACKOFF)
}

/// How many connections may be open now: [`MAX_CONNECTIONS`], or half the soft limit of
/// file descriptors if that is lower (read each time: `prlimit` can change it at run time).
fn connection_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return MAX_CONNECTIONS;
    }
    usize::try_from(limit.rlim_cur / 2).unwrap_or(MAX_CONNECTIONS).clamp(1, MAX_CONNECTIONS)
}

/// Serves until `cancel`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, cancel: CancellationToken) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut accept_errors = RateLimitedLog::new("cannot accept a connection");
    let mut refusals = RateLimitedLog::new("connection closed at once");
    let mut failures: u32 = 0;
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    failures = 0;
                    accepted
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if let Some(line) = accept_errors.note(Instant::now(), &e.to_string()) {
                        tracing::warn!("{line}");
                    }
                    // Out of descriptors, the error repeats until a connection closes:
                    // waiting instead of retrying at once keeps the CPU for the rest.
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(accept_backoff(failures)) => {}
                    }
                    continue;
                }
            },
        };
        let in_use = MAX_CONNECTIONS - open.available_permits();
        let permit = if in_use < connection_limit() { Arc::clone(&open).try_acquire_owned().ok() } else { None };
        let Some(permit) = permit else {
            let detail = format!("{in_use} connections are open, the limit is {}", connection_limit());
            if let Some(line) = refusals.note(Instant::now(), &detail) {
                tracing::warn!("{line}");
            }
            drop(stream);
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| handle(request, Arc::clone(&metrics)));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = cancel.cancelled() => return,
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("http: connection ended: {e}");
                    }
                    return;
                }
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
            }
            // Past its lifetime: finish the request in flight, then close.
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(HEADER_READ_TIMEOUT, connection).await;
        });
    }
}

pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backs_off_from_100_ms_to_1_s() {
        let waits: Vec<u128> = (1..=7).map(|n| accept_backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn a_repeated_error_is_logged_once_per_interval_with_a_count() {
        let mut log = RateLimitedLog::new("cannot accept a connection");
        let start = Instant::now();
        let lines: Vec<String> = (0..1000u64)
            .filter_map(|i| log.note(start + Duration::from_millis(i * 25), "Too many open files"))
            .collect();
        // 25 seconds of errors every 25 ms: at 0 s, 10 s and 20 s.
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], "http: cannot accept a connection: Too many open files");
        assert!(lines[1].ends_with("(399 more since the last report)"), "{lines:?}");
    }
}
