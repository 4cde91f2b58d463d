//! The HTTP server loop: bounded in connections and in time, so slow or idle clients can
//! neither exhaust the process nor hold a shutdown open.
//!
//! `axum::serve` has no header timeout, no connection cap and waits for every connection on
//! shutdown; this drives hyper directly with:
//! - at most `http.max_connections` open connections (beyond it, new ones wait in the kernel's
//!   accept queue: nothing is allocated for them), and at most
//!   `http.max_connections_per_address` from one client address (beyond it, a new connection
//!   is closed at once), so one client cannot fill every slot with idle or slow connections;
//! - a first byte and then the request headers each within `http.header_timeout_ms` (HTTP/1:
//!   also the idle time allowed between keep-alive requests), request bodies within `http.body_timeout_ms` (408);
//! - on shutdown, no new connection, in-flight requests finish, and connections still open
//!   after `http.shutdown_grace_ms` are dropped, so what follows (the audit log's last writes)
//!   always runs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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

/// Open connections per client address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One open connection counted against its address; uncounted when dropped.
struct AddressSlot(Arc<PerAddress>, IpAddr);

impl PerAddress {
    /// Counts a connection from `ip`, unless `ip` already has `max` open.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut m = self.0.lock().ok()?;
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot(self.clone(), ip))
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = (self.0).0.lock()
            && let Some(n) = m.get_mut(&self.1)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then drains for at most the grace period.
/// `refused` counts connections closed at once because their address had too many open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpSettings,
    refused: prometheus::IntCounter,
    mut shutdown: Shutdown,
) {
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
    let per_address = Arc::new(PerAddress::default());
    let header_timeout = Duration::from_millis(limits.header_timeout_ms);
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
        let Some(address_slot) = per_address.admit(peer.ip(), limits.max_connections_per_address) else {
            // Dropping the stream closes it; the global slot goes back with the permit.
            refused.inc();
            debug!(%peer, "HTTP connection refused: too many open from this address");
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY not set");
        }
        let (service, builder, watcher) = (
            TowerToHyperService::new(app.clone()),
            builder.clone(),
            graceful.watcher(),
        );
        connections.spawn(async move {
            // A client that sends nothing would hold its slot for ever: telling HTTP/1 from
            // HTTP/2 waits for the first bytes with no time limit, before hyper's header
            // time-out starts. Give it the header time-out to send its first byte.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                _ => debug!(%peer, "HTTP connection closed: nothing sent within the header time-out"),
            }
            drop(address_slot);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_share_and_gets_it_back() {
        let per = Arc::new(PerAddress::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = per.admit(a, 2).unwrap();
        let _second = per.admit(a, 2).unwrap();
        assert!(
            per.admit(a, 2).is_none(),
            "a third from the same address is refused"
        );
        assert!(per.admit(b, 2).is_some(), "another address is not affected");
        drop(first);
        assert!(
            per.admit(a, 2).is_some(),
            "a closed connection gives its place back"
        );
    }

    #[test]
    fn counts_are_forgotten_when_an_address_has_none_open() {
        let per = Arc::new(PerAddress::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        drop(per.admit(a, 1).unwrap());
        assert!(per.0.lock().unwrap().is_empty());
    }
}
