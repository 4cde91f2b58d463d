//! Step 3 of scoring: the top model on the scorable customers (probabilities, each party's
//! logit gradient and share of the logit), and step 5's score interval.

use ndarray::Array2;
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use tessera_common::model::TopModel;
use tessera_common::wire::PartyId;

use super::embed::Gathered;
use super::{Interval, ScoringContext};
use crate::artifact::PartyEntry;

/// The top model's results for the scorable rows, in row order.
#[derive(Debug)]
pub struct TopPass {
    /// The top model's input (embeddings, absent embeddings where a party is missing).
    pub x: Array2<f64>,
    /// Calibrated probability of default.
    pub pds: Vec<f64>,
    /// Per party, the gradient of the logit with respect to its embedding.
    pub grads: Vec<Array2<f64>>,
    /// Per party, how much the logit drops when the party is replaced by its absent embedding.
    pub shares: Vec<Vec<f64>>,
    /// Per party, whether it contributed each scorable row.
    pub present: Vec<Vec<bool>>,
}

impl TopPass {
    /// Runs `top` on the rows `rows` of `gathered`.
    pub fn run(top: &TopModel, gathered: &Gathered, rows: &[usize]) -> Self {
        let parts: Vec<Array2<f64>> = gathered
            .parts
            .iter()
            .map(|m| m.select(ndarray::Axis(0), rows))
            .collect();
        let present: Vec<Vec<bool>> = gathered
            .present
            .iter()
            .map(|h| rows.iter().map(|&r| h[r]).collect())
            .collect();
        let x = top.input(&parts, &present);
        let pds = top.probabilities(x.view());
        let logits = top.logits(x.view());
        let grads = top.logit_gradients(x.view(), &present);
        let mut shares = vec![vec![0.0; rows.len()]; parts.len()];
        for (p, share) in shares.iter_mut().enumerate() {
            let mut without = present.clone();
            without[p].iter_mut().for_each(|v| *v = false);
            let z = top.logits(top.input(&parts, &without).view());
            for (k, s) in share.iter_mut().enumerate() {
                *s = logits[k] - z[k];
            }
        }
        Self {
            x,
            pds,
            grads,
            shares,
            present,
        }
    }

    /// The parties (manifest index and id) that contributed to at least one row: they are
    /// asked for reason codes.
    pub fn explainers(&self, entries: &[PartyEntry]) -> Vec<(usize, PartyId)> {
        entries
            .iter()
            .enumerate()
            .filter(|(p, _)| self.present.get(*p).is_some_and(|h| h.iter().any(|&v| v)))
            .map(|(p, e)| (p, e.party_id.clone()))
            .collect()
    }
}

/// The 90% Monte Carlo dropout interval of row `k` (customer `customer`), seeded per model and
/// customer so it is the same on every request; a point interval when sampling is off.
pub fn interval(ctx: &ScoringContext<'_>, pass: &TopPass, k: usize, customer: &str) -> Interval {
    let pd = pass.pds[k];
    if ctx.interval_samples == 0 {
        let score = ctx.scale.score(pd);
        return Interval {
            score_low: score,
            score_high: score,
            pd_low: pd,
            pd_high: pd,
        };
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed_for(&ctx.manifest.model_id, customer));
    let xr = pass.x.slice(ndarray::s![k..k + 1, ..]);
    let mut samples = ctx
        .top
        .sample_probabilities(xr, ctx.interval_samples, &mut rng)
        .row(0)
        .to_vec();
    samples.sort_by(f64::total_cmp);
    let (lo, hi) = (quantile(&samples, 0.05).min(pd), quantile(&samples, 0.95).max(pd));
    Interval {
        score_low: ctx.scale.score(hi),
        score_high: ctx.scale.score(lo),
        pd_low: lo,
        pd_high: hi,
    }
}

/// A statistic of the samples: the `q` quantile (linear interpolation).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A per-customer seed, so the interval of a customer is the same on every request.
fn seed_for(model: &str, customer: &str) -> u64 {
    let d = Sha256::new()
        .chain_update(model.as_bytes())
        .chain_update([0])
        .chain_update(customer.as_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_seeds() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.95) - 4.8).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(seed_for("m", "c1"), seed_for("m", "c1"));
        assert_ne!(seed_for("m", "c1"), seed_for("m", "c2"));
        assert_ne!(seed_for("m1", "c"), seed_for("m", "1c"));
    }

    #[test]
    fn a_partys_share_is_zero_where_it_is_absent_and_explainers_are_contributors() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let top = TopModel::new(&[2, 2], &[4], &mut rng);
        let gathered = Gathered {
            parts: vec![
                Array2::from_shape_vec((2, 2), vec![1.0, -1.0, 0.5, 0.2]).unwrap(),
                Array2::zeros((2, 2)),
            ],
            present: vec![vec![true, true], vec![false, false]],
            statuses: vec![],
        };
        let pass = TopPass::run(&top, &gathered, &[1]);
        assert_eq!(pass.pds.len(), 1);
        assert!(pass.pds[0] > 0.0 && pass.pds[0] < 1.0);
        assert_eq!(pass.shares[1], vec![0.0], "an absent party moves nothing");
        let entries = [
            PartyEntry {
                party_id: PartyId::new("a").unwrap(),
                n_features: 1,
                emb_dim: 2,
            },
            PartyEntry {
                party_id: PartyId::new("b").unwrap(),
                n_features: 1,
                emb_dim: 2,
            },
        ];
        assert_eq!(pass.explainers(&entries), vec![(0, PartyId::new("a").unwrap())]);
    }
}
