//! Prometheus pieces shared by the coordinator and parties: latency buckets, text rendering,
//! the certificate expiry gauge, process metrics and the build-info gauge.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::transport::CertInfo;

/// Latency buckets from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Defines metrics and registers each in one registry as it is made: one call per metric, so
/// a definition cannot be made and left unregistered.
pub struct Define<'a>(pub &'a Registry);

impl Define<'_> {
    fn add<T: Collector + Clone + 'static>(&self, m: T) -> Result<T, prometheus::Error> {
        self.0.register(Box::new(m.clone()))?;
        Ok(m)
    }

    /// A counter.
    ///
    /// # Errors
    /// An invalid name or one already registered (programming errors caught by tests).
    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.add(IntCounter::new(name, help)?)
    }

    /// A counter with labels. Errors as [`Define::counter`].
    ///
    /// # Errors
    /// As [`Define::counter`].
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    /// An integer gauge.
    ///
    /// # Errors
    /// As [`Define::counter`].
    pub fn int_gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.add(IntGauge::new(name, help)?)
    }

    /// An integer gauge with labels.
    ///
    /// # Errors
    /// As [`Define::counter`].
    pub fn int_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    /// A float gauge starting at `initial` (NaN for "not known yet").
    ///
    /// # Errors
    /// As [`Define::counter`].
    pub fn gauge(&self, name: &str, help: &str, initial: f64) -> Result<Gauge, prometheus::Error> {
        let g = Gauge::new(name, help)?;
        g.set(initial);
        self.add(g)
    }

    /// A histogram with the given buckets.
    ///
    /// # Errors
    /// As [`Define::counter`].
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Result<Histogram, prometheus::Error> {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        )?)
    }

    /// A histogram with labels, latency buckets ([`LATENCY_BUCKETS`]).
    ///
    /// # Errors
    /// As [`Define::counter`].
    pub fn latency_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<HistogramVec, prometheus::Error> {
        self.add(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            labels,
        )?)
    }
}

/// A registry's metrics in Prometheus text format (empty if encoding fails).
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if TextEncoder::new().encode(&registry.gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Registers the process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// open file descriptors, start time; Linux only) and `tessera_build_info{component, version}`
/// (always 1), so dashboards can tell which release of which component they are looking at.
///
/// # Errors
/// If a metric is already registered in `registry`.
pub fn register_process_and_build(registry: &Registry, component: &str) -> Result<(), prometheus::Error> {
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    let build = IntGaugeVec::new(
        Opts::new(
            "tessera_build_info",
            "Always 1: the component and its release version",
        ),
        &["component", "version"],
    )?;
    build
        .with_label_values(&[component, env!("CARGO_PKG_VERSION")])
        .set(1);
    registry.register(Box::new(build))
}

/// `tessera_certificate_expiry_seconds{identity, role, serial}`: seconds until each certificate
/// in use expires (`role` is `self` for our own, `peer` for the other side's).
#[derive(Clone)]
pub struct CertExpiry(IntGaugeVec);

impl CertExpiry {
    /// Creates the gauge and registers it.
    ///
    /// # Errors
    /// If registration fails (a programming error caught by tests).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let g = IntGaugeVec::new(
            Opts::new(
                "tessera_certificate_expiry_seconds",
                "Seconds until the certificate expires",
            ),
            &["identity", "role", "serial"],
        )?;
        registry.register(Box::new(g.clone()))?;
        Ok(Self(g))
    }

    /// Replaces the series with `(identity, role, certificate)` as of `now` (Unix seconds).
    pub fn refresh<'a>(&self, now: i64, certs: impl IntoIterator<Item = (&'a str, &'a str, &'a CertInfo)>) {
        self.0.reset();
        for (identity, role, c) in certs {
            self.0
                .with_label_values(&[identity, role, &c.serial])
                .set(c.seconds_left(now));
        }
    }
}
