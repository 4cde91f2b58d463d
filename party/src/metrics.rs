//! The party's own metrics and health endpoint, for the bank's monitoring. Off unless
//! `metrics_addr` is set; it serves only `/metrics` and `/healthz` and exposes no data.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};
use tessera_common::shutdown::Shutdown;
use tessera_common::transport::CertInfo;

use tessera_common::metrics::{CertExpiry, Define};

/// The party's metrics.
#[derive(Clone)]
pub struct PartyMetrics {
    registry: Registry,
    /// 1 while connected to the coordinator.
    pub connected: IntGauge,
    /// Requests served, by kind and outcome (`ok` or `error`).
    pub requests: IntCounterVec,
    /// Time to handle a request, by kind.
    pub latency: HistogramVec,
    cert_expiry: CertExpiry,
    certs: Arc<RwLock<(Option<CertInfo>, Option<CertInfo>)>>,
}

impl PartyMetrics {
    /// Creates and registers the metrics.
    ///
    /// # Errors
    /// If a metric definition is invalid (a programming error caught by tests).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let d = Define(&registry);
        tessera_common::metrics::register_process_and_build(&registry, "party")?;
        Ok(Self {
            connected: d.int_gauge(
                "tessera_bank_coordinator_connected",
                "1 while this bank is connected to the coordinator",
            )?,
            requests: d.counter_vec(
                "tessera_bank_requests_total",
                "Requests served by kind and outcome",
                &["kind", "outcome"],
            )?,
            latency: d.latency_vec(
                "tessera_bank_request_duration_seconds",
                "Time to handle a request",
                &["kind"],
            )?,
            cert_expiry: CertExpiry::register(&registry)?,
            registry,
            certs: Arc::new(RwLock::new((None, None))),
        })
    }

    /// Records our own certificate.
    pub fn set_own_cert(&self, c: CertInfo) {
        if let Ok(mut g) = self.certs.write() {
            g.0 = Some(c);
        }
    }

    /// Records the coordinator's certificate on the current connection.
    pub fn set_peer_cert(&self, c: Option<CertInfo>) {
        if let Ok(mut g) = self.certs.write() {
            g.1 = c;
        }
    }

    /// The metrics in Prometheus text format, certificate expiry computed as of now.
    pub fn render(&self, own_identity: &str) -> String {
        if let Ok(g) = self.certs.read() {
            let own = g.0.as_ref().map(|c| (own_identity, "self", c));
            let peer = g.1.as_ref().map(|c| ("coordinator", "peer", c));
            self.cert_expiry
                .refresh(tessera_common::transport::unix_now(), own.into_iter().chain(peer));
        }
        tessera_common::metrics::render(&self.registry)
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until shutdown.
///
/// # Errors
/// If the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: PartyMetrics,
    party: String,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .with_state((metrics, party));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.recv().await })
        .await
}

async fn render(State((metrics, party)): State<(PartyMetrics, String)>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(&party),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders() {
        let m = super::PartyMetrics::new().unwrap();
        m.connected.set(1);
        m.requests.with_label_values(&["embed", "ok"]).inc();
        let t = m.render("bank-a");
        assert!(
            t.contains("tessera_bank_coordinator_connected 1")
                && t.contains("tessera_bank_requests_total{kind=\"embed\",outcome=\"ok\"} 1"),
            "{t}"
        );
    }
}
