//! `/healthz` and `/metrics` over HTTP (hyper), bound only where `--http` says.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a static response is valid")
}

async fn handle(request: Request<Incoming>, metrics: Arc<Metrics>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match request.uri().path() {
        "/healthz" if metrics.alive.load(Ordering::Relaxed) => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/healthz" => respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "the reconcile loop has stopped\n".into()),
        "/metrics" => respond(StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found: try /healthz or /metrics\n".into()),
    })
}

/// Serves until `cancel`; returns the address it bound (useful with port 0) through `bound`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, cancel: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("http: cannot accept: {e}");
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, Arc::clone(&metrics)));
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = connection => if let Err(e) = result {
                    tracing::debug!("http: connection ended: {e}");
                },
            }
        });
    }
}

pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))
}
