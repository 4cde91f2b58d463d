//! Steps 7 and 8 of training: figures on the holdout (overall, on customers every party
//! knows and on the others, and with each party absent), and the manifest.

use std::collections::BTreeMap;

use tessera_common::federation::Federation;
use tessera_common::model::{TopModel, metrics};

use super::Holdout;
use super::TrainError;
use super::ctx::Ctx;

/// Holdout figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// AUC on the whole holdout.
    pub auc: f64,
    /// KS statistic.
    pub ks: f64,
    /// Expected calibration error (10 bins).
    pub ece: f64,
    /// AUC on customers every party knows.
    pub auc_complete: Option<f64>,
    /// AUC on customers some party does not know.
    pub auc_partial: Option<f64>,
    /// Holdout customers some party does not know.
    pub rows_partial: usize,
}

/// The figures of `h`. Each AUC is `None` where a subset has one class only.
pub fn figures(h: &Holdout) -> Figures {
    let subset = |want: bool| -> (Vec<f64>, Vec<u8>) {
        h.probs
            .iter()
            .zip(&h.labels)
            .zip(&h.complete)
            .filter(|(_, c)| **c == want)
            .map(|((p, l), _)| (*p, *l))
            .unzip()
    };
    let (pc, lc) = subset(true);
    let (pp, lp) = subset(false);
    Figures {
        auc: metrics::auc(&h.probs, &h.labels).unwrap_or(0.5),
        ks: metrics::ks(&h.probs, &h.labels).unwrap_or(0.0),
        ece: metrics::ece(&h.probs, &h.labels, 10).unwrap_or(1.0),
        auc_complete: metrics::auc(&pc, &lc),
        auc_partial: metrics::auc(&pp, &lp),
        rows_partial: pp.len(),
    }
}

/// Holdout AUC with each party treated as absent (by party id), when there is more than one.
///
/// # Errors
/// [`TrainError`] from the evaluation passes.
pub(crate) async fn auc_party_absent<F: Federation>(
    ctx: &Ctx<'_, F>,
    top: &TopModel,
    session: u64,
    ids: &[u64],
    labels: &[u8],
) -> Result<BTreeMap<String, f64>, TrainError> {
    let mut out = BTreeMap::new();
    if ctx.parties.len() > 1 {
        for (p, party) in ctx.parties.iter().enumerate() {
            let probs = ctx.predict(top, session, ids, Some(p)).await?;
            out.insert(party.to_string(), metrics::auc(&probs, labels).unwrap_or(0.5));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_split_complete_and_partial_customers() {
        let h = Holdout {
            probs: vec![0.9, 0.1, 0.8, 0.2, 0.3, 0.7],
            labels: vec![1, 0, 1, 0, 1, 0],
            complete: vec![true, true, true, true, false, false],
        };
        let f = figures(&h);
        assert_eq!(f.auc_complete, Some(1.0));
        assert_eq!(f.auc_partial, Some(0.0));
        assert_eq!(f.rows_partial, 2);
        assert!(f.auc > 0.5 && f.auc < 1.0);
        let one_class = Holdout {
            probs: vec![0.5, 0.6],
            labels: vec![1, 1],
            complete: vec![true, false],
        };
        assert_eq!(figures(&one_class).auc_partial, None);
    }
}
