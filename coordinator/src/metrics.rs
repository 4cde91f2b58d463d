//! Prometheus metrics of the coordinator.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use tessera_common::transport::CertInfo;
use tessera_common::wire::PartyId;

use tessera_common::metrics::{CertExpiry, LATENCY_BUCKETS as BUCKETS};

/// All coordinator metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route and status code.
    pub http_requests: IntCounterVec,
    /// HTTP request latency by route.
    pub http_latency: HistogramVec,
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
        let http_requests = IntCounterVec::new(
            Opts::new(
                "tessera_http_requests_total",
                "HTTP requests by route and status code",
            ),
            &["route", "status"],
        )?;
        let http_latency = HistogramVec::new(
            HistogramOpts::new("tessera_http_request_duration_seconds", "HTTP request latency")
                .buckets(BUCKETS.to_vec()),
            &["route"],
        )?;
        let party_connected = IntGaugeVec::new(
            Opts::new("tessera_party_connected", "1 if the party is connected"),
            &["party"],
        )?;
        let party_latency = HistogramVec::new(
            HistogramOpts::new(
                "tessera_party_request_duration_seconds",
                "Latency of requests to parties",
            )
            .buckets(BUCKETS.to_vec()),
            &["party", "kind"],
        )?;
        let party_failures = IntCounterVec::new(
            Opts::new(
                "tessera_party_request_failures_total",
                "Failed or timed-out requests to parties",
            ),
            &["party", "outcome"],
        )?;
        let model_loaded = IntGauge::new("tessera_model_loaded", "1 when a model is active")?;
        let scores = IntCounterVec::new(
            Opts::new("tessera_scores_total", "Scored customers by outcome"),
            &["outcome"],
        )?;
        let audit_queue = IntGauge::new(
            "tessera_audit_queue_depth",
            "Decisions waiting in the audit queue",
        )?;
        let audit_dropped = IntCounter::new(
            "tessera_audit_dropped_total",
            "Decisions dropped because the audit queue was full",
        )?;
        let audit_written = IntCounter::new(
            "tessera_audit_written_total",
            "Decisions written to the audit database",
        )?;
        let audit_write_failures = IntCounter::new(
            "tessera_audit_write_failures_total",
            "Failed audit write transactions (retried)",
        )?;
        let auth_refusals = IntCounterVec::new(
            Opts::new(
                "tessera_http_auth_refusals_total",
                "HTTP calls refused by authentication, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(auth_refusals.clone()))?;
        let handshake_admission = IntCounterVec::new(
            Opts::new(
                "tessera_quic_handshake_admission_total",
                "QUIC connection attempts by admission decision",
            ),
            &["decision"],
        )?;
        registry.register(Box::new(handshake_admission.clone()))?;
        let handshake_refusals = IntCounterVec::new(
            Opts::new(
                "tessera_quic_handshake_refusals_total",
                "Connection attempts refused during their handshake, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(handshake_refusals.clone()))?;
        let score_latency = HistogramVec::new(
            HistogramOpts::new(
                "tessera_score_duration_seconds",
                "Time to answer a scoring request, by endpoint and outcome",
            )
            .buckets(BUCKETS.to_vec()),
            &["endpoint", "outcome"],
        )?;
        registry.register(Box::new(score_latency.clone()))?;
        let degraded = IntCounterVec::new(
            Opts::new(
                "tessera_degraded_answers_total",
                "Degraded answers by the party that did not contribute",
            ),
            &["party"],
        )?;
        registry.register(Box::new(degraded.clone()))?;
        let score_psi = Gauge::new(
            "tessera_score_psi",
            "Population stability index of recent scores against the training holdout (NaN until enough scores)",
        )?;
        score_psi.set(f64::NAN);
        registry.register(Box::new(score_psi.clone()))?;
        let score_window = IntGauge::new(
            "tessera_score_psi_window",
            "Recent scores the stability index is computed over",
        )?;
        registry.register(Box::new(score_window.clone()))?;
        let model_info = IntGaugeVec::new(
            Opts::new("tessera_model_info", "Always 1, labelled with the active model"),
            &["model_id"],
        )?;
        registry.register(Box::new(model_info.clone()))?;
        let training_step = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "tessera_training_step_duration_seconds",
                "Time of one training minibatch step: forward at every party, the top model, backward at every party",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(training_step.clone()))?;
        let training_epochs = IntCounter::new("tessera_training_epochs_total", "Training epochs completed")?;
        registry.register(Box::new(training_epochs.clone()))?;
        let party_connections = IntCounterVec::new(
            Opts::new(
                "tessera_party_connections_total",
                "Connections a party made current (each after the first is a reconnect)",
            ),
            &["party"],
        )?;
        registry.register(Box::new(party_connections.clone()))?;
        let shadow_compared = IntCounterVec::new(
            Opts::new(
                "tessera_shadow_comparisons_total",
                "Customers scored by both the active and the shadow model, by whether the band agreed",
            ),
            &["band"],
        )?;
        registry.register(Box::new(shadow_compared.clone()))?;
        let shadow_shift = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "tessera_shadow_score_shift",
                "Shadow score minus active score, points",
            )
            .buckets(vec![
                -100.0, -50.0, -25.0, -10.0, -5.0, 0.0, 5.0, 10.0, 25.0, 50.0, 100.0,
            ]),
        )?;
        registry.register(Box::new(shadow_shift.clone()))?;
        let shadow_psi = Gauge::new(
            "tessera_shadow_psi",
            "Population stability index of the shadow model's scores against the active model's (NaN without a shadow)",
        )?;
        shadow_psi.set(f64::NAN);
        registry.register(Box::new(shadow_psi.clone()))?;
        let shadow_skipped = IntCounter::new(
            "tessera_shadow_skipped_total",
            "Batches the shadow model skipped because it was busy",
        )?;
        registry.register(Box::new(shadow_skipped.clone()))?;
        tessera_common::metrics::register_process_and_build(&registry, "coordinator")?;
        for c in [&audit_dropped, &audit_written, &audit_write_failures] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(audit_queue.clone()))?;
        registry.register(Box::new(scores.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_latency.clone()))?;
        registry.register(Box::new(party_connected.clone()))?;
        registry.register(Box::new(party_latency.clone()))?;
        registry.register(Box::new(party_failures.clone()))?;
        registry.register(Box::new(model_loaded.clone()))?;
        let cert_expiry = CertExpiry::register(&registry)?;
        Ok(Self {
            registry,
            http_requests,
            http_latency,
            party_connected,
            party_latency,
            party_failures,
            model_loaded,
            cert_expiry,
            scores,
            audit_queue,
            audit_dropped,
            audit_written,
            audit_write_failures,
            auth_refusals,
            handshake_admission,
            handshake_refusals,
            score_latency,
            degraded,
            score_psi,
            score_window,
            model_info,
            training_step,
            training_epochs,
            party_connections,
            shadow_compared,
            shadow_shift,
            shadow_psi,
            shadow_skipped,
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
