//! The HTTP server loop: bounded in connections and in time, so slow or idle clients can
//! neither exhaust the process nor hold a shutdown open.
//!
//! `axum::serve` has no header timeout, no connection cap and waits for every connection on
//! shutdown; this drives hyper directly with:
//! - at most `http.max_connections` open connections (beyond it, new ones wait in the kernel's
//!   accept queue: nothing is allocated for them);
//! - request headers within `http.header_timeout_ms` (HTTP/1: also the idle time allowed
//!   between keep-alive requests), request bodies within `http.body_timeout_ms` (408);
//! - on shutdown, no new connection, in-flight requests finish, and connections still open
//!   after `http.shutdown_grace_ms` are dropped, so what follows (the audit log's last writes)
//!   always runs.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tessera_common::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::config::HttpSettings;

/// Serves `app` on `listener` until `shutdown`, then drains for at most the grace period.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpSettings, mut shutdown: Shutdown) {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        Duration::from_millis(limits.body_timeout_ms),
    ));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Forget the connections that have ended.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.recv() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    let open = limits.max_connections - slots.available_permits();
    if open > 0 {
        info!(
            connections = open,
            grace_ms = limits.shutdown_grace_ms,
            "HTTP: draining connections"
        );
    }
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        warn!(
            connections = connections.len(),
            grace_ms = limits.shutdown_grace_ms,
            "HTTP: connections still open after the grace period are dropped"
        );
    }
    // Dropping a connection's task drops its requests and their handles on shared state.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}
