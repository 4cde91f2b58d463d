//! Prometheus metrics of the coordinator.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tessera_common::transport::CertInfo;
use tessera_common::wire::PartyId;

/// Latency buckets from 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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
    pub cert_expiry: IntGaugeVec,
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
        let cert_expiry = IntGaugeVec::new(
            Opts::new(
                "tessera_certificate_expiry_seconds",
                "Seconds until the certificate expires",
            ),
            &["identity", "role", "serial"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_latency.clone()))?;
        registry.register(Box::new(party_connected.clone()))?;
        registry.register(Box::new(party_latency.clone()))?;
        registry.register(Box::new(party_failures.clone()))?;
        registry.register(Box::new(model_loaded.clone()))?;
        registry.register(Box::new(cert_expiry.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_latency,
            party_connected,
            party_latency,
            party_failures,
            model_loaded,
            cert_expiry,
        })
    }

    /// Sets the certificate expiry gauges to the given certificates as of `now` (Unix seconds),
    /// dropping series of certificates no longer in use.
    pub fn refresh_cert_expiry(&self, now: i64, own: Option<&CertInfo>, peers: &[(PartyId, CertInfo)]) {
        self.cert_expiry.reset();
        if let Some(c) = own {
            self.cert_expiry
                .with_label_values(&["coordinator", "self", &c.serial])
                .set(c.seconds_left(now));
        }
        for (p, c) in peers {
            self.cert_expiry
                .with_label_values(&[p.as_str(), "peer", &c.serial])
                .set(c.seconds_left(now));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
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
