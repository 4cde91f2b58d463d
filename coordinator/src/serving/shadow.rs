//! Shadow (challenger) scoring: a second model scores the customers the active model just
//! answered, in the background, without touching the answers. The comparison (same band or
//! not, score shift, population stability of the shadow's scores against the active's) is
//! kept here and exported as metrics; `/v1/model` and `/v1/models` report it.
//!
//! Bounded: at most [`MAX_IN_FLIGHT`] shadow fan-outs at once; when all are busy a batch is
//! skipped and counted (`tessera_shadow_skipped_total`), so the shadow never queues work.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tessera_common::model::ScoreScale;
use tessera_common::model::stability::psi_counts;
use tessera_common::wire::{PartyId, ReasonCode};
use tokio::sync::Semaphore;
use utoipa::ToSchema;

use super::{ActiveModel, ItemError, Scored, score_with};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Shadow fan-outs at most in flight.
pub const MAX_IN_FLIGHT: usize = 2;

/// Score bins of the stability comparison: 50 points wide from 300.
const BIN_WIDTH: i32 = 50;
const BINS: usize = 12;

#[derive(Default)]
struct Tally {
    model: Option<String>,
    compared: u64,
    same_band: u64,
    shift_sum: f64,
    abs_shift_sum: f64,
    skipped: u64,
    active_bins: Vec<u64>,
    shadow_bins: Vec<u64>,
}

/// The comparison so far.
pub struct Stats {
    tally: Mutex<Tally>,
    in_flight: Arc<Semaphore>,
    metrics: Metrics,
}

/// How the shadow model compares with the active one, over the customers both scored since
/// the shadow was set.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Report {
    /// The shadow model.
    pub model_id: String,
    /// Customers scored by both.
    pub compared: u64,
    /// Share of them in the same band under both.
    pub same_band_rate: Option<f64>,
    /// Mean of (shadow score − active score), points.
    pub mean_score_shift: Option<f64>,
    /// Mean absolute score difference, points.
    pub mean_abs_score_shift: Option<f64>,
    /// Population stability index of the shadow's scores against the active's (50-point bins).
    pub psi: Option<f64>,
    /// Batches not compared because the shadow was busy.
    pub skipped_batches: u64,
}

fn bin(score: i32) -> usize {
    usize::try_from((score - 300).max(0) / BIN_WIDTH)
        .unwrap_or(0)
        .min(BINS - 1)
}

impl Stats {
    /// No shadow yet.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            tally: Mutex::new(Tally::default()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            metrics,
        }
    }

    /// Starts over for `model` (or no shadow).
    pub fn reset(&self, model: Option<String>) {
        if let Ok(mut t) = self.tally.lock() {
            *t = Tally {
                model,
                active_bins: vec![0; BINS],
                shadow_bins: vec![0; BINS],
                ..Tally::default()
            };
        }
        self.metrics.shadow_psi.set(f64::NAN);
    }

    /// The comparison so far (`None` without a shadow).
    pub fn report(&self) -> Option<Report> {
        let t = self.tally.lock().ok()?;
        let model_id = t.model.clone()?;
        let n = t.compared as f64;
        let mean = |v: f64| (t.compared > 0).then(|| v / n);
        Some(Report {
            model_id,
            compared: t.compared,
            same_band_rate: mean(t.same_band as f64),
            mean_score_shift: mean(t.shift_sum),
            mean_abs_score_shift: mean(t.abs_shift_sum),
            psi: psi_counts(&t.active_bins, &t.shadow_bins),
            skipped_batches: t.skipped,
        })
    }

    /// Records one customer scored by both, if `shadow_model` is still the shadow.
    fn record(&self, shadow_model: &str, active: &Scored, shadow: &Scored) {
        let Ok(mut t) = self.tally.lock() else { return };
        if t.model.as_deref() != Some(shadow_model) {
            return;
        }
        let shift = f64::from(shadow.score - active.score);
        let same = active.band == shadow.band;
        t.compared += 1;
        t.same_band += u64::from(same);
        t.shift_sum += shift;
        t.abs_shift_sum += shift.abs();
        let (a, s) = (bin(active.score), bin(shadow.score));
        t.active_bins[a] += 1;
        t.shadow_bins[s] += 1;
        self.metrics
            .shadow_compared
            .with_label_values(&[if same { "same" } else { "different" }])
            .inc();
        self.metrics.shadow_shift.observe(shift);
        if let Some(p) = psi_counts(&t.active_bins, &t.shadow_bins) {
            self.metrics.shadow_psi.set(p);
        }
    }

    fn skip(&self) {
        if let Ok(mut t) = self.tally.lock() {
            t.skipped += 1;
        }
        self.metrics.shadow_skipped.inc();
    }
}

/// Scores, in the background, the customers of `ids` the active model answered (`results`)
/// with `challenger`, and records the comparison. Never waits: with [`MAX_IN_FLIGHT`] shadow
/// batches already running, this one is skipped.
#[allow(clippy::too_many_arguments)]
pub(super) fn compare_later(
    stats: &Arc<Stats>,
    registry: Registry,
    parties: Vec<PartyId>,
    challenger: Arc<ActiveModel>,
    dictionaries: BTreeMap<PartyId, Vec<ReasonCode>>,
    scale: ScoreScale,
    limits: (usize, usize),
    ids: &[String],
    results: &[Result<Scored, ItemError>],
) {
    let pairs: Vec<(String, Scored)> = ids
        .iter()
        .zip(results)
        .filter_map(|(id, r)| r.as_ref().ok().map(|s| (id.clone(), s.clone())))
        .collect();
    if pairs.is_empty() {
        return;
    }
    let Ok(permit) = stats.in_flight.clone().try_acquire_owned() else {
        stats.skip();
        return;
    };
    let stats = stats.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let ids: Vec<String> = pairs.iter().map(|(id, _)| id.clone()).collect();
        let no_reasons = vec![false; ids.len()];
        let trace = ["shadow".to_string()];
        let shadow = score_with(
            &registry,
            &parties,
            &challenger,
            &dictionaries,
            &scale,
            limits,
            &trace,
            &ids,
            &no_reasons,
        )
        .await;
        let model = &challenger.manifest.model_id;
        for ((_, active), s) in pairs.iter().zip(shadow) {
            if let Ok(s) = s {
                stats.record(model, active, &s);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::Interval;

    fn scored(score: i32, band: &str) -> Scored {
        Scored {
            pd: 0.1,
            score,
            band: band.into(),
            interval: Interval {
                score_low: score,
                score_high: score,
                pd_low: 0.1,
                pd_high: 0.1,
            },
            reasons: Vec::new(),
            model_version: "m".into(),
            parties: Vec::new(),
            missing: Vec::new(),
        }
    }

    #[test]
    fn compares_only_for_the_current_shadow() {
        let metrics = Metrics::new().unwrap();
        let s = Stats::new(metrics.clone());
        assert_eq!(s.report(), None);
        s.reset(Some("challenger".into()));
        s.record("challenger", &scored(600, "fair"), &scored(610, "fair"));
        s.record("challenger", &scored(600, "fair"), &scored(680, "good"));
        s.record("old-shadow", &scored(600, "fair"), &scored(300, "poor"));
        let r = s.report().unwrap();
        assert_eq!(r.compared, 2);
        assert_eq!(r.same_band_rate, Some(0.5));
        assert_eq!(r.mean_score_shift, Some(45.0));
        assert!(r.psi.unwrap() > 0.0);
        assert_eq!(metrics.shadow_compared.with_label_values(&["same"]).get(), 1);
        s.skip();
        assert_eq!(s.report().unwrap().skipped_batches, 1);
        s.reset(None);
        assert_eq!(s.report(), None);
        assert!(metrics.shadow_psi.get().is_nan());
    }

    #[test]
    fn bins_cover_the_scale() {
        assert_eq!(bin(300), 0);
        assert_eq!(bin(349), 0);
        assert_eq!(bin(850), BINS - 1);
        assert_eq!(bin(-5), 0);
        assert_eq!(bin(9_999), BINS - 1);
    }
}
