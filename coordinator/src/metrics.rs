//! Prometheus metrics of the coordinator.

use prometheus::{Gauge, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use tessera_common::transport::CertInfo;
use tessera_common::wire::PartyId;

use tessera_common::metrics::{CertExpiry, Define, LATENCY_BUCKETS as BUCKETS};

/// All coordinator metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route and status code.
    pub http_requests: IntCounterVec,
    /// HTTP request latency by route.
    pub http_latency: HistogramVec,
    /// HTTP connections closed at once because their client address had
    /// `http.max_connections_per_address` open.
    pub http_connections_refused: IntCounter,
    /// 1 if the party is connected, else 0.
    pub party_connected: IntGaugeVec,
    /// Latency of requests to parties, by party and request kind.
    pub party_latency: HistogramVec,
    /// Failed or timed-out requests to parties, by party and outcome.
    pub party_failures: IntCounterVec,
    /// 1 when a model is active.
    pub model_loaded: IntGauge,
    /// Seconds until each certificate expires: our own (`role="self"`) and connected peers'.
    pub cert_expiry: CertExpiry,
    /// Scored customers by outcome (`ok`, `degraded`, `not_found`, `unavailable`).
    pub scores: IntCounterVec,
    /// Decisions waiting in the audit queue.
    pub audit_queue: IntGauge,
    /// Decisions dropped because the audit queue was full.
    pub audit_dropped: IntCounter,
    /// Decisions written to the audit database.
    pub audit_written: IntCounter,
    /// Failed audit write transactions (retried).
    pub audit_write_failures: IntCounter,
    /// Seconds until each API client's key expires (clients whose key expires only).
    pub api_key_expiry: IntGaugeVec,
    /// HTTP calls refused by authentication, by reason (`missing`, `unknown`, `expired`,
    /// `forbidden`, `rate_limited`).
    pub auth_refusals: IntCounterVec,
    /// QUIC connection attempts by admission decision (`admitted`; `retry`: asked to
    /// validate its address; `saturated`, `per_address`: refused).
    pub handshake_admission: IntCounterVec,
    /// Admitted connection attempts that failed their handshake, by reason
    /// ([`tessera_common::transport::TransportError::refusal_label`]).
    pub handshake_refusals: IntCounterVec,
    /// Time to answer a scoring request, by endpoint (`score`, `batch`, `ui`) and outcome
    /// (`ok`, `degraded`, `not_found`, `unavailable`; an answered batch is `ok`).
    pub score_latency: HistogramVec,
    /// Degraded answers by the party that was missing (an answer missing two counts twice).
    pub degraded: IntCounterVec,
    /// Population stability index of the recent scores against the model's training holdout
    /// (NaN until enough scores: [`crate::monitor`]).
    pub score_psi: Gauge,
    /// Scores in the window the stability index is computed over.
    pub score_window: IntGauge,
    /// Always 1, labelled with the active model's id (no series without a model).
    pub model_info: IntGaugeVec,
    /// Time of one training minibatch step (forward, top model, backward), seconds.
    pub training_step: prometheus::Histogram,
    /// Training epochs completed.
    pub training_epochs: IntCounter,
    /// Connections a party made current, by party (each one after the first is a reconnect).
    pub party_connections: IntCounterVec,
    /// Customers scored by both the active and the shadow model, by whether the band agreed
    /// (`same`, `different`).
    pub shadow_compared: IntCounterVec,
    /// Shadow score minus active score, points.
    pub shadow_shift: prometheus::Histogram,
    /// Population stability index of the shadow's scores against the active's (NaN without).
    pub shadow_psi: Gauge,
    /// Batches the shadow skipped because it was busy.
    pub shadow_skipped: IntCounter,
}

impl Metrics {
    /// Creates and registers the metrics.
    ///
    /// # Errors
    /// If a metric definition is invalid (a programming error caught by tests).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let d = Define(&registry);
        tessera_common::metrics::register_process_and_build(&registry, "coordinator")?;
        Ok(Self {
            http_requests: d.counter_vec(
                "tessera_http_requests_total",
                "HTTP requests by route and status code",
                &["route", "status"],
            )?,
            http_latency: d.latency_vec("tessera_http_request_duration_seconds", "HTTP request latency", &["route"])?,
            http_connections_refused: d.counter(
                "tessera_http_connections_refused_total",
                "HTTP connections closed at once: their client address had too many open",
            )?,
            party_connected: d.int_gauge_vec("tessera_party_connected", "1 if the party is connected", &["party"])?,
            party_latency: d.latency_vec(
                "tessera_party_request_duration_seconds",
                "Latency of requests to parties",
                &["party", "kind"],
            )?,
            party_failures: d.counter_vec(
                "tessera_party_request_failures_total",
                "Failed or timed-out requests to parties",
                &["party", "outcome"],
            )?,
            model_loaded: d.int_gauge("tessera_model_loaded", "1 when a model is active")?,
            cert_expiry: CertExpiry::register(&registry)?,
            scores: d.counter_vec("tessera_scores_total", "Scored customers by outcome", &["outcome"])?,
            audit_queue: d.int_gauge("tessera_audit_queue_depth", "Decisions waiting in the audit queue")?,
            audit_dropped: d.counter(
                "tessera_audit_dropped_total",
                "Decisions dropped because the audit queue was full",
            )?,
            audit_written: d.counter("tessera_audit_written_total", "Decisions written to the audit database")?,
            audit_write_failures: d.counter(
                "tessera_audit_write_failures_total",
                "Failed audit write transactions (retried)",
            )?,
            api_key_expiry: d.int_gauge_vec(
                "tessera_api_key_expiry_seconds",
                "Seconds until each API client's key expires (negative: expired)",
                &["client"],
            )?,
            auth_refusals: d.counter_vec(
                "tessera_http_auth_refusals_total",
                "HTTP calls refused by authentication, by reason",
                &["reason"],
            )?,
            handshake_admission: d.counter_vec(
                "tessera_quic_handshake_admission_total",
                "QUIC connection attempts by admission decision",
                &["decision"],
            )?,
            handshake_refusals: d.counter_vec(
                "tessera_quic_handshake_refusals_total",
                "Connection attempts refused during their handshake, by reason",
                &["reason"],
            )?,
            score_latency: d.latency_vec(
                "tessera_score_duration_seconds",
                "Time to answer a scoring request, by endpoint and outcome",
                &["endpoint", "outcome"],
            )?,
            degraded: d.counter_vec(
                "tessera_degraded_answers_total",
                "Degraded answers by the party that did not contribute",
                &["party"],
            )?,
            score_psi: d.gauge(
                "tessera_score_psi",
                "Population stability index of recent scores against the training holdout (NaN until enough scores)",
                f64::NAN,
            )?,
            score_window: d.int_gauge(
                "tessera_score_psi_window",
                "Recent scores the stability index is computed over",
            )?,
            model_info: d.int_gauge_vec("tessera_model_info", "Always 1, labelled with the active model", &["model_id"])?,
            training_step: d.histogram(
                "tessera_training_step_duration_seconds",
                "Time of one training minibatch step: forward at every party, the top model, backward at every party",
                BUCKETS,
            )?,
            training_epochs: d.counter("tessera_training_epochs_total", "Training epochs completed")?,
            party_connections: d.counter_vec(
                "tessera_party_connections_total",
                "Connections a party made current (each after the first is a reconnect)",
                &["party"],
            )?,
            shadow_compared: d.counter_vec(
                "tessera_shadow_comparisons_total",
                "Customers scored by both the active and the shadow model, by whether the band agreed",
                &["band"],
            )?,
            shadow_shift: d.histogram(
                "tessera_shadow_score_shift",
                "Shadow score minus active score, points",
                &[-100.0, -50.0, -25.0, -10.0, -5.0, 0.0, 5.0, 10.0, 25.0, 50.0, 100.0],
            )?,
            shadow_psi: d.gauge(
                "tessera_shadow_psi",
                "Population stability index of the shadow model's scores against the active model's (NaN without a shadow)",
                f64::NAN,
            )?,
            shadow_skipped: d.counter(
                "tessera_shadow_skipped_total",
                "Batches the shadow model skipped because it was busy",
            )?,
            registry,
        })
    }

    /// Sets the certificate expiry gauges to the given certificates as of `now` (Unix seconds),
    /// dropping series of certificates no longer in use.
    pub fn refresh_cert_expiry(&self, now: i64, own: Option<&CertInfo>, peers: &[(PartyId, CertInfo)]) {
        let own = own.map(|c| ("coordinator", "self", c));
        self.cert_expiry.refresh(
            now,
            own.into_iter()
                .chain(peers.iter().map(|(p, c)| (p.as_str(), "peer", c))),
        );
    }

    /// Sets the API key expiry gauges as of `now` (Unix seconds), dropping clients no longer
    /// listed or whose key no longer expires.
    pub fn refresh_api_key_expiry(&self, now: i64, expiries: &[(String, i64)]) {
        self.api_key_expiry.reset();
        for (client, at) in expiries {
            self.api_key_expiry
                .with_label_values(&[client.as_str()])
                .set(at - now);
        }
    }

    /// Marks `model_id` as the active model in `tessera_model_info` and `tessera_model_loaded`.
    pub fn set_model(&self, model_id: &str) {
        self.model_info.reset();
        self.model_info.with_label_values(&[model_id]).set(1);
        self.model_loaded.set(1);
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        tessera_common::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_registered_metrics() {
        let m = super::Metrics::new().unwrap();
        m.http_requests.with_label_values(&["/v1/score", "200"]).inc();
        m.party_connected.with_label_values(&["bank-a"]).set(1);
        let text = m.render();
        assert!(
            text.contains("tessera_http_requests_total{route=\"/v1/score\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("tessera_party_connected{party=\"bank-a\"} 1"));
    }
}
