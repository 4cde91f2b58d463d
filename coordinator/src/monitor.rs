//! What the recent answers look like: a bounded window of the last scores (probability of
//! default, latency, missing parties) per model, their population stability against the
//! model's training holdout ([`tessera_common::model::stability`]), latency percentiles and
//! the degraded-answer rate per missing party. Feeds the UI's monitoring page and the
//! `tessera_score_psi` gauge. Holds no customer id and no feature: only figures.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tessera_common::model::stability::Reference;

use crate::metrics::Metrics;

/// Scores kept (the oldest leaves when a new one comes).
pub const WINDOW: usize = 5_000;

/// Scores needed before the stability index is computed (fewer say little).
pub const MIN_FOR_PSI: usize = 100;

struct Recent {
    bin: usize,
    latency_ms: Option<f64>,
    missing: Vec<String>,
}

#[derive(Default)]
struct Window {
    model: String,
    reference: Reference,
    items: VecDeque<Recent>,
    counts: Vec<u64>,
}

/// The window of recent answers. Cheap to share behind an `Arc`.
pub struct Monitor {
    window: Mutex<Window>,
    metrics: Metrics,
}

/// What the window shows now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The model the window is about.
    pub model: String,
    /// Answers in the window.
    pub answers: usize,
    /// Population stability index against the training holdout, once there are enough.
    pub psi: Option<f64>,
    /// Share of the training holdout in each bin.
    pub expected: Vec<f64>,
    /// Share of the window in each bin.
    pub actual: Vec<f64>,
    /// The probabilities of default between bins.
    pub cuts: Vec<f64>,
    /// Latency percentiles of the single scores in the window, milliseconds: p50, p90, p99.
    pub latency_ms: Option<[f64; 3]>,
    /// Degraded answers in the window by the party that was missing.
    pub degraded_by_party: BTreeMap<String, usize>,
    /// Degraded answers in the window.
    pub degraded: usize,
}

impl Monitor {
    /// An empty window recording into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            window: Mutex::new(Window::default()),
            metrics,
        }
    }

    /// Records one answer of `model` (whose training reference is `reference`): a new model
    /// starts a new window. `latency_ms`: the time to answer a single score (`None` for a
    /// customer of a batch, whose time is the batch's).
    pub fn observe(
        &self,
        model: &str,
        reference: &Reference,
        pd: f64,
        latency_ms: Option<f64>,
        missing: &[String],
    ) {
        let Ok(mut w) = self.window.lock() else { return };
        if w.model != model {
            *w = Window {
                model: model.to_string(),
                reference: reference.clone(),
                items: VecDeque::with_capacity(WINDOW),
                counts: vec![0; reference.bins()],
            };
        }
        let bin = if w.reference.is_empty() {
            0
        } else {
            w.reference.bin(pd)
        };
        if w.items.len() == WINDOW
            && let Some(old) = w.items.pop_front()
            && let Some(c) = w.counts.get_mut(old.bin)
        {
            *c = c.saturating_sub(1);
        }
        if let Some(c) = w.counts.get_mut(bin) {
            *c += 1;
        }
        w.items.push_back(Recent {
            bin,
            latency_ms,
            missing: missing.to_vec(),
        });
        let n = w.items.len();
        self.metrics.score_window.set(n as i64);
        let psi = if n >= MIN_FOR_PSI {
            w.reference.psi(&w.counts)
        } else {
            None
        };
        self.metrics.score_psi.set(psi.unwrap_or(f64::NAN));
    }

    /// The window as it is now.
    pub fn snapshot(&self) -> Snapshot {
        let Ok(w) = self.window.lock() else {
            return Snapshot::default();
        };
        let n = w.items.len();
        let mut latencies: Vec<f64> = w.items.iter().filter_map(|r| r.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let l = latencies.len();
        let pct = |q: f64| latencies[((q * l as f64).ceil() as usize).clamp(1, l) - 1];
        let mut degraded_by_party = BTreeMap::new();
        let mut degraded = 0;
        for r in &w.items {
            if !r.missing.is_empty() {
                degraded += 1;
            }
            for p in &r.missing {
                *degraded_by_party.entry(p.clone()).or_insert(0) += 1;
            }
        }
        Snapshot {
            model: w.model.clone(),
            answers: n,
            psi: if n >= MIN_FOR_PSI {
                w.reference.psi(&w.counts)
            } else {
                None
            },
            expected: w.reference.expected.clone(),
            actual: w
                .counts
                .iter()
                .map(|&c| if n == 0 { 0.0 } else { c as f64 / n as f64 })
                .collect(),
            cuts: w.reference.cuts.clone(),
            latency_ms: (l > 0).then(|| [pct(0.5), pct(0.9), pct(0.99)]),
            degraded_by_party,
            degraded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        let sample: Vec<f64> = (0..1000).map(|i| (i as f64 + 0.5) / 1000.0).collect();
        Reference::from_sample(&sample, 10).unwrap()
    }

    #[test]
    fn window_is_bounded_and_psi_follows_the_scores() {
        let metrics = Metrics::new().unwrap();
        let m = Monitor::new(metrics.clone());
        let r = reference();
        for i in 0..MIN_FOR_PSI - 1 {
            m.observe("m1", &r, (i % 100) as f64 / 100.0, Some(1.0), &[]);
        }
        assert!(m.snapshot().psi.is_none(), "too few scores for an index");
        assert!(metrics.score_psi.get().is_nan());
        for i in 0..WINDOW {
            m.observe("m1", &r, (i % 100) as f64 / 100.0 + 0.005, Some(2.0), &[]);
        }
        let s = m.snapshot();
        assert_eq!(s.answers, WINDOW);
        let psi = s.psi.unwrap();
        assert!(psi < 0.01, "same population: {psi}");
        assert_eq!(s.latency_ms, Some([2.0, 2.0, 2.0]));
        // Everyone now scores as a high risk: the index says shifted.
        for _ in 0..WINDOW {
            m.observe("m1", &r, 0.99, None, &["bank-b".to_string()]);
        }
        let s = m.snapshot();
        assert!(s.psi.unwrap() > 0.25, "{:?}", s.psi);
        assert_eq!(metrics.score_psi.get(), s.psi.unwrap());
        assert_eq!(s.degraded, WINDOW);
        assert_eq!(s.degraded_by_party.get("bank-b"), Some(&WINDOW));
        assert_eq!(metrics.score_window.get(), WINDOW as i64);
    }

    #[test]
    fn a_new_model_starts_a_new_window() {
        let m = Monitor::new(Metrics::new().unwrap());
        m.observe("m1", &reference(), 0.5, Some(1.0), &[]);
        m.observe("m2", &Reference::default(), 0.5, Some(1.0), &[]);
        let s = m.snapshot();
        assert_eq!((s.model.as_str(), s.answers), ("m2", 1));
        assert_eq!(s.psi, None, "no reference, no index");
    }
}
