//! The opt-in HTTP listener (`metrics.listen`): Prometheus metrics and
//! interactive queries.
//!
//! - `GET /metrics`: every thread's and task's figures (see `metrics.rs`),
//!   in the OpenMetrics text format Prometheus scrapes.
//! - `GET /stores/...`: interactive queries (see `interactive_queries.rs`).
//!
//! Why a thread of its own: the design keeps async out of the stream
//! threads; the control plane runs on tokio. The listener runs a small
//! current-thread tokio runtime with hyper on a dedicated thread, so a slow
//! scrape or query never stalls processing. The socket is bound in
//! `KafkaStreams::start`, so an address in use is a start-up error, not a
//! log line. Queries touch RocksDB and the group coordinator, which block,
//! so they run on tokio's blocking pool.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::interactive_queries::{Answer, InteractiveQueries, ScanParams, percent_decode};
use super::metrics::{ThreadMetrics, encode_text};
use crate::error::{Result, StreamsError};

/// What the handlers share.
pub(crate) struct HttpState {
    pub threads: Arc<Vec<Arc<ThreadMetrics>>>,
    pub queries: Arc<InteractiveQueries>,
}

/// The running listener; stopped on drop.
pub(crate) struct HttpServer {
    pub local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `addr` now (so errors reach the caller) and serves on a thread.
pub(crate) fn serve(addr: SocketAddr, state: HttpState) -> Result<HttpServer> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the address is in use; pick a free port for metrics.listen or stop the process that listens there".to_string()
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "no interface has this address; use an address of this machine, e.g. 127.0.0.1 or 0.0.0.0".to_string()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied; use a port above 1023".to_string()
            }
            _ => e.to_string(),
        };
        StreamsError::Config(format!("metrics.listen {addr}: cannot listen: {why}"))
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| StreamsError::Config(format!("metrics.listen {addr}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| StreamsError::Config(format!("metrics.listen {addr}: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = Arc::new(state);
    let thread = std::thread::Builder::new()
        .name("kstreams-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the HTTP listener's runtime");
                    return;
                }
            };
            rt.block_on(accept_loop(listener, state, stop_rx));
        })
        .map_err(|e| StreamsError::IllegalState(format!("cannot spawn the HTTP thread: {e}")))?;
    tracing::info!(addr = %local_addr, "HTTP listener for metrics and queries is up");
    Ok(HttpServer {
        local_addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn accept_loop(
    listener: std::net::TcpListener,
    state: Arc<HttpState>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve HTTP");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "HTTP accept failed");
                        continue;
                    }
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                });
            }
        }
    }
}

fn json_response(a: Answer) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(&a.body).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(l) = a.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(LOCATION, l);
    }
    if a.status == 503 {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn error(status: u16, msg: &str) -> Response<Full<Bytes>> {
    json_response(Answer {
        status,
        body: serde_json::json!({ "error": msg }),
        location: None,
    })
}

fn scan_params(query: Option<&str>) -> ScanParams {
    let mut p = ScanParams::default();
    for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = Some(percent_decode(&v.replace('+', " ")));
        match k {
            "from" => p.from = v,
            "to" => p.to = v,
            "prefix" => p.prefix = v,
            "limit" => p.limit = v,
            _ => {}
        }
    }
    p
}

async fn handle(
    state: Arc<HttpState>,
    req: Request<Incoming>,
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(error(405, "only GET is supported"));
    }
    let path = req.uri().path().to_string();
    if path == "/metrics" {
        let text = encode_text(&state.threads);
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        return Ok(r);
    }
    let Some(rest) = path.strip_prefix("/stores/") else {
        return Ok(error(
            404,
            "not found; try /metrics, /stores/<store>/<key> or /stores/<store>?prefix=<p>",
        ));
    };
    let (store, key) = match rest.split_once('/') {
        Some((s, k)) => (percent_decode(s), Some(percent_decode(k))),
        None => (percent_decode(rest), None),
    };
    let params = scan_params(req.uri().query());
    let queries = state.queries.clone();
    let answer = tokio::task::spawn_blocking(move || match key {
        Some(k) if !k.is_empty() => queries.get(&store, &k),
        _ => queries.scan(&store, &params),
    })
    .await;
    Ok(match answer {
        Ok(a) => json_response(a),
        Err(e) => error(500, &format!("query failed: {e}")),
    })
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_params_are_decoded() {
        let p = scan_params(Some("from=a%20b&to=c+d&limit=5&x=1"));
        assert_eq!(p.from.as_deref(), Some("a b"));
        assert_eq!(p.to.as_deref(), Some("c d"));
        assert_eq!(p.limit.as_deref(), Some("5"));
        assert!(p.prefix.is_none());
    }
}
