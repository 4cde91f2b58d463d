//! The training driver: aligns customers, splits them, and runs split-NN minibatch training
//! over the federation, with early stopping on validation AUC.
//!
//! Per step: `Forward` to every party (embeddings of the batch) → the top model's forward and
//! backward pass here → `Backward` to every party with the gradient of its own embedding
//! columns. The coordinator sees labels (from the label holder) and embeddings, never features.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ndarray::{Array2, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use tessera_common::data::stratified_split;
use tessera_common::model::{Adam, Mlp, bce_with_logits, metrics, sigmoid};
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{BottomSpec, Matrix, PartyId, PartyInfo, Request, Response};
use tracing::info;

use crate::artifact::{FORMAT, Manifest, PartyEntry, TrainingMetrics};
use crate::config::TrainingConfig;
use tessera_common::federation::Federation;

/// Page size when listing ids and fetching labels.
const PAGE: u32 = 50_000;
/// Rows per evaluation request.
const EVAL_CHUNK: usize = 8_192;

/// Why training stopped without a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A party did not answer, answered with an error, or answered nonsense.
    #[error("party {party} during {stage}: {message}")]
    Party {
        /// The party.
        party: PartyId,
        /// Which step of training.
        stage: &'static str,
        /// What happened.
        message: String,
    },
    /// The federation cannot be trained as configured.
    #[error("{0}")]
    Setup(String),
    /// The model diverged.
    #[error("training diverged: {0}")]
    Diverged(String),
}

/// Progress reported after every epoch.
#[derive(Clone, Debug)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Most epochs.
    pub epochs: usize,
    /// Mean training loss of the epoch.
    pub train_loss: f64,
    /// Validation AUC after the epoch.
    pub validation_auc: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// A trained model: its manifest and top network (bottom models were saved by the parties).
#[derive(Clone, Debug)]
pub struct Trained {
    /// The manifest, metrics included.
    pub manifest: Manifest,
    /// The top network.
    pub top: Mlp,
}

struct Ctx<'a, F> {
    fed: &'a F,
    parties: &'a [PartyId],
    timeout: Duration,
}

impl<F: Federation> Ctx<'_, F> {
    /// Fans out and demands an answer (not an error) from every party.
    async fn all(
        &self,
        stage: &'static str,
        request_for: impl Fn(&PartyId) -> Request + Send + Sync,
    ) -> Result<Vec<(PartyId, Response)>, TrainError> {
        let outcomes = self.fed.fanout(self.parties, request_for, self.timeout).await;
        let mut out = Vec::with_capacity(outcomes.len());
        for (party, o) in outcomes {
            let fail = |message: String| TrainError::Party {
                party: party.clone(),
                stage,
                message,
            };
            match o {
                Outcome::Answered(Response::Error { code, message }) => {
                    return Err(fail(format!("{code:?}: {message}")));
                }
                Outcome::Answered(r) => out.push((party, r)),
                Outcome::Failed(e) => return Err(fail(e)),
                Outcome::TimedOut => return Err(fail(format!("no answer within {:?}", self.timeout))),
            }
        }
        // Back into the configured party order.
        let mut ordered = Vec::with_capacity(out.len());
        for p in self.parties {
            if let Some(i) = out.iter().position(|(q, _)| q == p) {
                ordered.push(out.swap_remove(i));
            }
        }
        Ok(ordered)
    }

    async fn one(
        &self,
        party: &PartyId,
        stage: &'static str,
        request: Request,
    ) -> Result<Response, TrainError> {
        let single = Ctx {
            fed: self.fed,
            parties: std::slice::from_ref(party),
            timeout: self.timeout,
        };
        let mut r = single.all(stage, |_| request.clone()).await?;
        r.pop()
            .map(|(_, r)| r)
            .ok_or_else(|| TrainError::Setup("empty fan-out".into()))
    }

    /// Embeddings of `ids` from every party, concatenated in party order.
    async fn embeddings(
        &self,
        stage: &'static str,
        session: u64,
        step: u64,
        ids: &[String],
        train: bool,
        dims: &[usize],
    ) -> Result<Array2<f64>, TrainError> {
        let answers = self
            .all(stage, |_| Request::Forward {
                session,
                step,
                ids: ids.to_vec(),
                train,
            })
            .await?;
        let total: usize = dims.iter().sum();
        let mut x = Array2::zeros((ids.len(), total));
        let mut col = 0;
        for ((party, r), &d) in answers.into_iter().zip(dims) {
            let bad = |m: &str| TrainError::Party {
                party: party.clone(),
                stage,
                message: m.to_string(),
            };
            let Response::Embeddings { matrix, .. } = r else {
                return Err(bad("expected embeddings"));
            };
            if !matrix.is_well_formed() || matrix.rows as usize != ids.len() || matrix.cols as usize != d {
                return Err(bad("embedding matrix has the wrong shape or non-finite values"));
            }
            let m = Array2::from_shape_vec(
                (ids.len(), d),
                matrix.data.iter().map(|&v| f64::from(v)).collect(),
            )
            .map_err(|_| bad("embedding shape"))?;
            x.slice_mut(s![.., col..col + d]).assign(&m);
            col += d;
        }
        Ok(x)
    }

    async fn predict(
        &self,
        top: &Mlp,
        session: u64,
        ids: &[String],
        dims: &[usize],
    ) -> Result<Vec<f64>, TrainError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(EVAL_CHUNK) {
            let x = self
                .embeddings("evaluation", session, 0, chunk, false, dims)
                .await?;
            out.extend(top.forward(x.view()).column(0).iter().map(|&z| sigmoid(z)));
        }
        Ok(out)
    }
}

/// Trains a model over `parties` (in the order their embeddings enter the top model).
///
/// `timeout` bounds every request to a party; `on_epoch` is called after each epoch.
///
/// # Errors
/// [`TrainError`] naming the party and step that failed.
pub async fn train<F: Federation>(
    fed: &F,
    parties: &[PartyId],
    cfg: &TrainingConfig,
    model_id: &str,
    timeout: Duration,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<Trained, TrainError> {
    let started = Instant::now();
    let ctx = Ctx {
        fed,
        parties,
        timeout,
    };

    // 1. Who holds what.
    let infos: Vec<PartyInfo> = ctx
        .all("describe", |_| Request::Describe)
        .await?
        .into_iter()
        .map(|(p, r)| match r {
            Response::Info(i) if i.party_id == p => Ok(i),
            _ => Err(TrainError::Party {
                party: p,
                stage: "describe",
                message: "bad answer".into(),
            }),
        })
        .collect::<Result<_, _>>()?;
    let holders: Vec<&PartyInfo> = infos.iter().filter(|i| i.has_labels).collect();
    let label_holder = match holders.as_slice() {
        [one] => one.party_id.clone(),
        [] => return Err(TrainError::Setup("no party holds labels".into())),
        _ => return Err(TrainError::Setup("more than one party holds labels".into())),
    };

    // 2. Align customers (v0: ids listed in the clear; PSI replaces this).
    let mut per_party: Vec<Vec<String>> = Vec::with_capacity(parties.len());
    for p in parties {
        let mut ids = Vec::new();
        loop {
            let r = ctx
                .one(
                    p,
                    "list ids",
                    Request::ListIds {
                        offset: ids.len() as u64,
                        limit: PAGE,
                    },
                )
                .await?;
            let Response::Ids { ids: page, total } = r else {
                return Err(TrainError::Party {
                    party: p.clone(),
                    stage: "list ids",
                    message: "bad answer".into(),
                });
            };
            let done = page.is_empty() || ids.len() + page.len() >= total as usize;
            ids.extend(page);
            if done {
                break;
            }
        }
        per_party.push(ids);
    }
    let holder_idx = parties.iter().position(|p| *p == label_holder).unwrap_or(0);
    let others: Vec<HashSet<&String>> = per_party
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != holder_idx)
        .map(|(_, v)| v.iter().collect())
        .collect();
    let mut aligned: Vec<String> = per_party[holder_idx]
        .iter()
        .filter(|id| others.iter().all(|o| o.contains(id)))
        .cloned()
        .collect();
    if let Some(max) = cfg.max_rows {
        aligned.truncate(max);
    }
    drop(per_party);
    info!(
        aligned = aligned.len(),
        parties = parties.len(),
        "customers aligned"
    );

    // 3. Labels.
    let mut labels = Vec::with_capacity(aligned.len());
    for chunk in aligned.chunks(PAGE as usize) {
        let r = ctx
            .one(&label_holder, "labels", Request::Labels { ids: chunk.to_vec() })
            .await?;
        match r {
            Response::Labels { labels: l } if l.len() == chunk.len() && l.iter().all(|&v| v <= 1) => {
                labels.extend(l)
            }
            _ => {
                return Err(TrainError::Party {
                    party: label_holder.clone(),
                    stage: "labels",
                    message: "bad answer".into(),
                });
            }
        }
    }
    let positives = labels.iter().filter(|&&l| l == 1).count();
    if positives < 10 || labels.len() - positives < 10 {
        return Err(TrainError::Setup(format!(
            "too few customers of each class to train ({} aligned, {positives} positive)",
            labels.len()
        )));
    }

    // 4. Split: holdout, then validation from the rest.
    let (rest, holdout) = stratified_split(&labels, cfg.holdout_fraction, cfg.seed);
    let rest_labels: Vec<u8> = rest.iter().map(|&i| labels[i]).collect();
    let (train_pos, val_pos) =
        stratified_split(&rest_labels, cfg.validation_fraction, cfg.seed.wrapping_add(1));
    let train_idx: Vec<usize> = train_pos.iter().map(|&i| rest[i]).collect();
    let val_idx: Vec<usize> = val_pos.iter().map(|&i| rest[i]).collect();
    let ids_of = |idx: &[usize]| idx.iter().map(|&i| aligned[i].clone()).collect::<Vec<_>>();
    let labels_of = |idx: &[usize]| idx.iter().map(|&i| labels[i]).collect::<Vec<_>>();
    let (train_ids, val_ids, hold_ids) = (ids_of(&train_idx), ids_of(&val_idx), ids_of(&holdout));
    let (val_labels, hold_labels) = (labels_of(&val_idx), labels_of(&holdout));

    // 5. Fresh bottom models, standardisation fitted on training customers only.
    let session: u64 = rand::random();
    let answers = ctx
        .all("train init", |p| Request::TrainInit {
            session,
            spec: BottomSpec {
                hidden: cfg.bottom_hidden.clone(),
                emb_dim: cfg.emb_dim,
                learning_rate: cfg.learning_rate,
                weight_decay: cfg.weight_decay,
                seed: cfg
                    .seed
                    .wrapping_add(1 + parties.iter().position(|q| q == p).unwrap_or(0) as u64),
            },
            fit_ids: train_ids.clone(),
        })
        .await?;
    let mut entries = Vec::with_capacity(parties.len());
    for (p, r) in answers {
        match r {
            Response::Model { n_features, emb_dim } if emb_dim == cfg.emb_dim => entries.push(PartyEntry {
                party_id: p,
                n_features,
                emb_dim,
            }),
            _ => {
                return Err(TrainError::Party {
                    party: p,
                    stage: "train init",
                    message: "bad answer".into(),
                });
            }
        }
    }
    let dims: Vec<usize> = entries.iter().map(|e| e.emb_dim as usize).collect();
    let mut sizes = vec![dims.iter().sum::<usize>()];
    sizes.extend_from_slice(&cfg.top_hidden);
    sizes.push(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut top = Mlp::new(&sizes, &mut rng);
    let mut adam = Adam::new(&top, f64::from(cfg.learning_rate), f64::from(cfg.weight_decay));

    // 6. Epochs with early stopping.
    let mut order: Vec<usize> = (0..train_ids.len()).collect();
    let mut best = (f64::NEG_INFINITY, 0usize, top.clone());
    let mut step = 0u64;
    let mut epochs_run = 0;
    let mut lr = cfg.learning_rate;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut batches = 0usize;
        for batch in order.chunks(cfg.batch_size) {
            step += 1;
            let ids: Vec<String> = batch.iter().map(|&i| train_ids[i].clone()).collect();
            let y: Vec<f64> = batch.iter().map(|&i| f64::from(labels[train_idx[i]])).collect();
            let x = ctx
                .embeddings("forward", session, step, &ids, true, &dims)
                .await?;
            let (out, cache) = top.forward_train(x.view());
            let logits: Vec<f64> = out.column(0).to_vec();
            let (loss, grad) = bce_with_logits(&logits, &y);
            if !loss.is_finite() {
                return Err(TrainError::Diverged(format!("loss is {loss} at epoch {epoch}")));
            }
            loss_sum += loss;
            batches += 1;
            let g = Array2::from_shape_vec((grad.len(), 1), grad)
                .map_err(|e| TrainError::Diverged(e.to_string()))?;
            let (grads, gin) = top.backward(&cache, g.view());
            adam.lr = f64::from(lr);
            adam.step(&mut top, &grads);
            let mut offsets = Vec::with_capacity(dims.len());
            let mut col = 0;
            for &d in &dims {
                offsets.push(col);
                col += d;
            }
            let slices: Vec<(PartyId, Matrix)> = parties
                .iter()
                .zip(offsets.iter().zip(&dims))
                .map(|(p, (&o, &d))| {
                    let part = gin.slice(s![.., o..o + d]);
                    let data: Vec<f32> = part.iter().map(|&v| v as f32).collect();
                    (
                        p.clone(),
                        Matrix {
                            rows: part.nrows() as u32,
                            cols: d as u32,
                            data,
                        },
                    )
                })
                .collect();
            ctx.all("backward", |p| {
                let grad = slices
                    .iter()
                    .find(|(q, _)| q == p)
                    .map(|(_, m)| m.clone())
                    .unwrap_or(Matrix {
                        rows: 0,
                        cols: 0,
                        data: vec![],
                    });
                Request::Backward {
                    session,
                    step,
                    grad,
                    learning_rate: lr,
                }
            })
            .await?;
        }
        epochs_run = epoch;
        let val_scores = ctx.predict(&top, session, &val_ids, &dims).await?;
        let val_auc = metrics::auc(&val_scores, &val_labels).unwrap_or(0.5);
        let report = EpochReport {
            epoch,
            epochs: cfg.epochs,
            train_loss: loss_sum / batches.max(1) as f64,
            validation_auc: val_auc,
            seconds: t0.elapsed().as_secs_f64(),
        };
        on_epoch(&report);
        if val_auc > best.0 {
            best = (val_auc, epoch, top.clone());
            ctx.all("checkpoint", |_| Request::Checkpoint { session }).await?;
        } else if epoch - best.1 >= cfg.patience {
            break;
        }
        lr *= cfg.lr_decay;
    }
    let (validation_auc, best_epoch, best_top) = best;
    top = best_top;
    ctx.all("restore", |_| Request::Restore { session }).await?;

    // 7. Final figures on the holdout.
    let hold_scores = ctx.predict(&top, session, &hold_ids, &dims).await?;
    let holdout_auc = metrics::auc(&hold_scores, &hold_labels).unwrap_or(0.5);
    let holdout_ks = metrics::ks(&hold_scores, &hold_labels).unwrap_or(0.0);

    // 8. Parties save their bottom models; the caller saves the top model and manifest.
    ctx.all("save", |_| Request::Save {
        session,
        model_id: model_id.to_string(),
    })
    .await?;
    let created_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let manifest = Manifest {
        format: FORMAT,
        model_id: model_id.to_string(),
        created_at,
        parties: entries,
        top_layers: sizes,
        metrics: TrainingMetrics {
            holdout_auc,
            holdout_ks,
            validation_auc,
            aligned_rows: aligned.len(),
            train_rows: train_ids.len(),
            validation_rows: val_ids.len(),
            holdout_rows: hold_ids.len(),
            epochs_run,
            best_epoch,
            training_seconds: started.elapsed().as_secs_f64(),
        },
        training: cfg.clone(),
    };
    Ok(Trained { manifest, top })
}
