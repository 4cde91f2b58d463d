//! Steps 5 and 6 of training: fresh bottom models at the parties, and minibatch epochs with
//! early stopping. Per step: `Forward` to every party → party dropout → the top model's
//! forward and backward pass here → `Backward` to every party with its own gradient slice.

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera_common::federation::Federation;
use tessera_common::model::adam::AdamVectors;
use tessera_common::model::{Adam, TopModel, bce_with_logits, metrics};
use tessera_common::wire::{BottomSpec, Matrix, PartyId, PartyInfo, Request, Response};

use super::ctx::Ctx;
use super::population::Population;
use super::{EpochReport, TrainError};
use crate::artifact::PartyEntry;
use crate::config::TrainingConfig;

/// The embedding width asked of each party (configured order): the configured width, or less
/// where the party's policy allows less (its announced `max_emb_dim`: below its encoded input
/// width).
///
/// # Errors
/// [`TrainError::Setup`] if a party allows no embedding at all.
pub fn widths(
    parties: &[PartyId],
    infos: &[PartyInfo],
    cfg: &TrainingConfig,
) -> Result<Vec<u32>, TrainError> {
    parties
        .iter()
        .map(|p| {
            let allowed = infos.iter().find(|i| i.party_id == *p).map_or(0, |i| i.max_emb_dim);
            if allowed == 0 {
                return Err(TrainError::Setup(format!(
                    "party {p} takes no part in training (its training.enabled is off, or its data is too narrow)"
                )));
            }
            Ok(cfg.emb_dim.min(allowed))
        })
        .collect()
}

/// Step 5: every party builds a fresh bottom model of embedding width `widths[p]`, its
/// encoding fitted on the training customers `fit` only. Each party's seed is the run's seed
/// plus its position (the party mixes in a seed of its own).
///
/// # Returns
/// The manifest entries, in party order.
///
/// # Errors
/// [`TrainError::Party`] on a failure or an embedding width other than asked.
pub(crate) async fn init_parties<F: Federation>(
    ctx: &Ctx<'_, F>,
    session: u64,
    cfg: &TrainingConfig,
    fit: &[u64],
    widths: &[u32],
) -> Result<Vec<PartyEntry>, TrainError> {
    let parties = ctx.parties;
    let width_of = |p: &PartyId| {
        parties
            .iter()
            .position(|q| q == p)
            .and_then(|i| widths.get(i).copied())
            .unwrap_or(cfg.emb_dim)
    };
    let answers = ctx
        .all("train init", |p| Request::TrainInit {
            session,
            spec: BottomSpec {
                hidden: cfg.bottom_hidden.clone(),
                emb_dim: width_of(p),
                learning_rate: cfg.learning_rate,
                weight_decay: cfg.weight_decay,
                seed: cfg
                    .seed
                    .wrapping_add(1 + parties.iter().position(|q| q == p).unwrap_or(0) as u64),
            },
            fit: fit.to_vec(),
        })
        .await?;
    answers
        .into_iter()
        .map(|(p, r)| match r {
            Response::Model {
                n_features, emb_dim, ..
            } if emb_dim == width_of(&p) => Ok(PartyEntry {
                party_id: p,
                n_features,
                emb_dim,
            }),
            _ => Err(TrainError::bad(&p, "train init", "bad answer")),
        })
        .collect()
}

/// Party dropout: hides a present party for a row with probability `rate`, keeping at least
/// one party present in every row.
pub fn party_dropout(present: &mut [Vec<bool>], rate: f64, rng: &mut impl Rng) {
    let parties = present.len();
    if rate <= 0.0 || parties < 2 {
        return;
    }
    let rows = present.first().map_or(0, Vec::len);
    // Indexes rows across several parties' masks at once.
    #[allow(clippy::needless_range_loop)]
    for r in 0..rows {
        for p in 0..parties {
            if present[p][r] && rng.r#gen::<f64>() < rate {
                let others = (0..parties).filter(|&q| q != p && present[q][r]).count();
                if others > 0 {
                    present[p][r] = false;
                }
            }
        }
    }
}

/// The best model so far and when it was seen.
pub struct Best {
    /// Validation AUC.
    pub auc: f64,
    /// 1-based epoch.
    pub epoch: usize,
    /// The top model then.
    pub top: TopModel,
}

/// The top model's training state across epochs.
pub struct Trainer {
    /// The top model being trained.
    pub top: TopModel,
    adam: Adam,
    adam_absent: AdamVectors,
    rng: ChaCha8Rng,
    step: u64,
    lr: f32,
}

impl Trainer {
    /// A fresh top model for embeddings of widths `dims`, seeded by `cfg.seed`.
    pub fn new(dims: &[usize], cfg: &TrainingConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut top = TopModel::new(dims, &cfg.top_hidden, &mut rng);
        top.dropout = cfg.top_dropout;
        let adam = Adam::new(
            &top.mlp,
            f64::from(cfg.learning_rate),
            f64::from(cfg.weight_decay),
        );
        let adam_absent = AdamVectors::new(&top.absent);
        Self {
            top,
            adam,
            adam_absent,
            rng,
            step: 0,
            lr: cfg.learning_rate,
        }
    }

    /// Step 6: epochs of minibatches over the training customers, validation AUC after each,
    /// a checkpoint at the parties on improvement, early stopping after `cfg.patience`
    /// epochs without one.
    ///
    /// # Returns
    /// The best model and the number of epochs run.
    ///
    /// # Errors
    /// [`TrainError`] from any party, or [`TrainError::Diverged`].
    pub(crate) async fn run<F: Federation>(
        mut self,
        ctx: &Ctx<'_, F>,
        session: u64,
        cfg: &TrainingConfig,
        pop: &Population,
        labels: &[u8],
        on_epoch: &mut impl FnMut(&EpochReport),
    ) -> Result<(Best, usize), TrainError> {
        let train_ids = pop.handles(&pop.train);
        let val_ids = pop.handles(&pop.validation);
        let val_labels: Vec<u8> = pop.validation.iter().map(|&i| labels[i]).collect();
        let mut order: Vec<usize> = (0..train_ids.len()).collect();
        let mut best = Best {
            auc: f64::NEG_INFINITY,
            epoch: 0,
            top: self.top.clone(),
        };
        let mut epochs_run = 0;
        for epoch in 1..=cfg.epochs {
            let t0 = Instant::now();
            order.shuffle(&mut self.rng);
            let mut loss_sum = 0.0;
            let mut batches = 0usize;
            let mut step_seconds = Vec::with_capacity(order.len().div_ceil(cfg.batch_size.max(1)));
            for batch in order.chunks(cfg.batch_size) {
                let started = Instant::now();
                let ids: Vec<u64> = batch.iter().map(|&i| train_ids[i]).collect();
                let y: Vec<f64> = batch.iter().map(|&i| f64::from(labels[pop.train[i]])).collect();
                let loss = self.step(ctx, session, cfg, &ids, &y).await?;
                if !loss.is_finite() {
                    return Err(TrainError::Diverged(format!("loss is {loss} at epoch {epoch}")));
                }
                loss_sum += loss;
                batches += 1;
                step_seconds.push(started.elapsed().as_secs_f64());
            }
            epochs_run = epoch;
            let val_scores = ctx.predict(&self.top, session, &val_ids, None).await?;
            let val_auc = metrics::auc(&val_scores, &val_labels).unwrap_or(0.5);
            on_epoch(&EpochReport {
                epoch,
                epochs: cfg.epochs,
                train_loss: loss_sum / batches.max(1) as f64,
                validation_auc: val_auc,
                seconds: t0.elapsed().as_secs_f64(),
                step_seconds,
            });
            if val_auc > best.auc {
                best = Best {
                    auc: val_auc,
                    epoch,
                    top: self.top.clone(),
                };
                ctx.all("checkpoint", |_| Request::Checkpoint { session }).await?;
            } else if epoch - best.epoch >= cfg.patience {
                break;
            }
            self.lr *= cfg.lr_decay;
        }
        Ok((best, epochs_run))
    }

    /// One minibatch: embeddings, party dropout, the top model's update, and each party's
    /// gradient sent back. Returns the batch loss (not yet checked for divergence).
    async fn step<F: Federation>(
        &mut self,
        ctx: &Ctx<'_, F>,
        session: u64,
        cfg: &TrainingConfig,
        ids: &[u64],
        y: &[f64],
    ) -> Result<f64, TrainError> {
        self.step += 1;
        let step = self.step;
        let (parts, mut present) = ctx
            .embeddings("forward", session, step, ids, true, &self.top.dims)
            .await?;
        party_dropout(&mut present, cfg.party_dropout, &mut self.rng);
        let x = self.top.input(&parts, &present);
        let (logits, cache) = self.top.forward_train_dropout(x.view(), &mut self.rng);
        let (loss, grad) = bce_with_logits(&logits, y);
        if !loss.is_finite() {
            return Ok(loss);
        }
        let grads = self.top.backward(&cache, &grad, &present);
        self.adam.lr = f64::from(self.lr);
        self.adam.step(&mut self.top.mlp, &grads.mlp);
        self.adam_absent
            .step(&mut self.top.absent, &grads.absent, f64::from(self.lr));
        let slices: Vec<(PartyId, Matrix)> = ctx
            .parties
            .iter()
            .zip(&grads.parties)
            .map(|(p, g)| (p.clone(), Matrix::from_array(g)))
            .collect();
        let lr = self.lr;
        ctx.all("backward", |p| Request::Backward {
            session,
            step,
            grad: slices
                .iter()
                .find(|(q, _)| q == p)
                .map(|(_, m)| m.clone())
                .unwrap_or_else(|| Matrix::zeros(0, 0)),
            learning_rate: lr,
        })
        .await?;
        Ok(loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_dropout_never_empties_a_row_and_respects_the_rate() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let rows = 2_000;
        let mut present = vec![vec![true; rows], vec![true; rows], vec![false; rows]];
        party_dropout(&mut present, 0.5, &mut rng);
        for r in 0..rows {
            assert!(present.iter().any(|p| p[r]), "row {r} lost every party");
            assert!(!present[2][r], "an absent party never becomes present");
        }
        let hidden = present[..2].iter().flatten().filter(|&&v| !v).count();
        assert!(hidden > rows / 2 && hidden < rows * 3 / 2, "{hidden}");
        let mut untouched = vec![vec![true; 10], vec![true; 10]];
        party_dropout(&mut untouched, 0.0, &mut rng);
        assert!(untouched.iter().flatten().all(|&v| v));
        let mut single = vec![vec![true; 10]];
        party_dropout(&mut single, 1.0, &mut rng);
        assert!(single[0].iter().all(|&v| v));
    }
}
