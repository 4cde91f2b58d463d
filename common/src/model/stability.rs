//! Population stability: how far the scores served now have drifted from the scores of the
//! training holdout.
//!
//! The holdout's probabilities of default are cut into bins of equal population (deciles by
//! default); a [`Reference`] keeps the cut points, which is all a model needs to carry. The
//! population stability index of a later sample is
//! `PSI = Σ (actual − expected) · ln(actual / expected)` over the bins, with each bin's share
//! floored at [`FLOOR`] so an empty bin does not make it infinite. Conventional reading:
//! below 0.1 stable, 0.1–0.25 a moderate shift, 0.25 and above a significant shift.

use serde::{Deserialize, Serialize};

/// Smallest share a bin is given in the index (an empty bin would otherwise be infinite).
pub const FLOOR: f64 = 1e-4;

/// Below this the population is read as stable.
pub const STABLE_BELOW: f64 = 0.1;

/// From this on the population is read as shifted.
pub const SHIFTED_FROM: f64 = 0.25;

/// Bins of the training population: the cut points between bins of equal population and
/// each bin's share (equal by construction, up to ties).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Ascending cut points: bin `i` holds values in `(cuts[i-1], cuts[i]]`.
    pub cuts: Vec<f64>,
    /// Share of the training population in each bin (`cuts.len() + 1` entries, sum 1).
    pub expected: Vec<f64>,
}

impl Reference {
    /// Cuts `sample` into `bins` bins of (as near as ties allow) equal population. `None` if
    /// the sample has fewer values than bins, a value that is not finite, or `bins < 2`.
    pub fn from_sample(sample: &[f64], bins: usize) -> Option<Self> {
        if bins < 2 || sample.len() < bins || sample.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut sorted = sample.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut cuts: Vec<f64> = (1..bins).map(|i| sorted[i * sorted.len() / bins - 1]).collect();
        cuts.dedup();
        let mut counts = vec![0u64; cuts.len() + 1];
        for &v in &sorted {
            counts[bin_of(&cuts, v)] += 1;
        }
        let n = sorted.len() as f64;
        Some(Self {
            cuts,
            expected: counts.iter().map(|&c| c as f64 / n).collect(),
        })
    }

    /// Whether the reference is usable (a model trained before references existed has none).
    pub fn is_empty(&self) -> bool {
        self.expected.len() < 2 || self.expected.len() != self.cuts.len() + 1
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.expected.len()
    }

    /// The bin of `value` (a value that is not finite goes to the last bin).
    pub fn bin(&self, value: f64) -> usize {
        if value.is_nan() {
            return self.bins().saturating_sub(1);
        }
        bin_of(&self.cuts, value)
    }

    /// The population stability index of a sample given as counts per bin; `None` if the
    /// counts do not match the bins or are all zero.
    pub fn psi(&self, counts: &[u64]) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if self.is_empty() || counts.len() != self.expected.len() || total == 0 {
            return None;
        }
        Some(
            counts
                .iter()
                .zip(&self.expected)
                .map(|(&c, &e)| {
                    let a = (c as f64 / total as f64).max(FLOOR);
                    let e = e.max(FLOOR);
                    (a - e) * (a / e).ln()
                })
                .sum(),
        )
    }
}

/// The population stability index of `actual` against `expected`, both given as counts over
/// the same bins; `None` if the lengths differ or either is all zeros.
pub fn psi_counts(expected: &[u64], actual: &[u64]) -> Option<f64> {
    let (te, ta): (u64, u64) = (expected.iter().sum(), actual.iter().sum());
    if expected.len() != actual.len() || te == 0 || ta == 0 {
        return None;
    }
    Some(
        expected
            .iter()
            .zip(actual)
            .map(|(&e, &a)| {
                let e = (e as f64 / te as f64).max(FLOOR);
                let a = (a as f64 / ta as f64).max(FLOOR);
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

fn bin_of(cuts: &[f64], v: f64) -> usize {
    cuts.partition_point(|&c| c < v)
}

/// How a population stability index reads: `stable`, `moderate` or `shifted`.
pub fn reading(psi: f64) -> &'static str {
    if psi < STABLE_BELOW {
        "stable"
    } else if psi < SHIFTED_FROM {
        "moderate"
    } else {
        "shifted"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uniform(n: usize) -> Vec<f64> {
        (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect()
    }

    #[test]
    fn deciles_of_a_uniform_sample() {
        let r = Reference::from_sample(&uniform(1000), 10).unwrap();
        assert_eq!(r.bins(), 10);
        for e in &r.expected {
            assert!((e - 0.1).abs() < 1e-9, "{e}");
        }
        assert_eq!(r.bin(0.0), 0);
        assert_eq!(r.bin(0.95), 9);
        assert_eq!(r.bin(f64::NAN), 9);
    }

    #[test]
    fn same_population_is_stable_and_a_shift_is_not() {
        let r = Reference::from_sample(&uniform(1000), 10).unwrap();
        let count = |sample: &[f64]| {
            let mut c = vec![0u64; r.bins()];
            for &v in sample {
                c[r.bin(v)] += 1;
            }
            c
        };
        let same = r.psi(&count(&uniform(500))).unwrap();
        assert!(same < 1e-9, "{same}");
        // Every score moved into the top three deciles.
        let shifted: Vec<f64> = uniform(500).iter().map(|v| 0.7 + 0.3 * v).collect();
        let psi = r.psi(&count(&shifted)).unwrap();
        assert!(psi > SHIFTED_FROM, "{psi}");
        assert_eq!(reading(psi), "shifted");
        assert_eq!(reading(same), "stable");
    }

    #[test]
    fn refuses_what_it_cannot_bin() {
        assert!(Reference::from_sample(&[0.1, 0.2], 10).is_none());
        assert!(Reference::from_sample(&[0.1, f64::NAN, 0.3], 2).is_none());
        assert!(Reference::from_sample(&uniform(100), 1).is_none());
        let r = Reference::from_sample(&uniform(100), 10).unwrap();
        assert_eq!(r.psi(&[0; 10]), None);
        assert_eq!(r.psi(&[1; 3]), None);
        assert!(Reference::default().is_empty());
        assert_eq!(Reference::default().psi(&[]), None);
    }

    #[test]
    fn psi_of_counts() {
        assert_eq!(psi_counts(&[5, 5], &[50, 50]), Some(0.0));
        assert!(psi_counts(&[90, 10], &[10, 90]).unwrap() > SHIFTED_FROM);
        assert_eq!(psi_counts(&[1, 2], &[1]), None);
        assert_eq!(psi_counts(&[0, 0], &[1, 1]), None);
    }

    #[test]
    fn ties_merge_bins() {
        let r = Reference::from_sample(&[0.5; 100], 10).unwrap();
        assert_eq!(r.bins(), 2);
        let total: f64 = r.expected.iter().sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn psi_is_finite_and_not_negative(
            sample in proptest::collection::vec(0.0f64..1.0, 20..400),
            counts in proptest::collection::vec(0u64..1000, 10),
        ) {
            if let Some(r) = Reference::from_sample(&sample, 10) {
                let total: f64 = r.expected.iter().sum();
                prop_assert!((total - 1.0).abs() < 1e-9);
                let c: Vec<u64> = counts.iter().take(r.bins()).copied().collect();
                if let Some(p) = r.psi(&c) {
                    prop_assert!(p.is_finite() && p >= -1e-12, "{}", p);
                }
            }
        }
    }
}
