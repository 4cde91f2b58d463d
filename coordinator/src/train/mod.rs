//! The training driver: aligns customers, splits them, and runs split-NN minibatch training
//! over the federation, with early stopping on validation AUC.
//!
//! Per step: `Forward` to every party (embeddings of the batch) → the top model's forward and
//! backward pass here → `Backward` to every party with the gradient of its own embedding
//! columns. The coordinator sees labels (from the label holder) and embeddings, never features.

pub mod align;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tessera_common::model::adam::AdamVectors;
use tessera_common::model::{Adam, Platt, TopModel, bce_with_logits, metrics};
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{
    BottomSpec, Matrix, PartyId, PartyInfo, Request, Response, SPLIT_HOLDOUT, SPLIT_TRAIN, SPLIT_UNUSED,
    SPLIT_VALIDATION,
};
use tracing::info;

use crate::artifact::{FORMAT, Manifest, PartyEntry, TrainingMetrics};
use crate::config::TrainingConfig;
use tessera_common::federation::Federation;

/// Handles per labels request.
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

/// A trained model: its manifest and top model (bottom models were saved by the parties).
#[derive(Clone, Debug)]
pub struct Trained {
    /// The manifest, metrics included.
    pub manifest: Manifest,
    /// The top model.
    pub top: TopModel,
    /// Holdout predictions and labels, for reports.
    pub holdout: Holdout,
}

/// Holdout predictions for reports (probabilities, labels, whether every party knew the customer).
#[derive(Clone, Debug, Default)]
pub struct Holdout {
    /// Predicted probability of default.
    pub probs: Vec<f64>,
    /// Observed label.
    pub labels: Vec<u8>,
    /// Whether every party knew the customer.
    pub complete: Vec<bool>,
}

/// The federation, the parties in configured order, and the time-out of one request.
pub(crate) struct Ctx<'a, F> {
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
        self.some(self.parties, stage, request_for).await
    }

    /// Fans out to `subset` (configured order kept) and demands an answer from each.
    async fn some(
        &self,
        subset: &[PartyId],
        stage: &'static str,
        request_for: impl Fn(&PartyId) -> Request + Send + Sync,
    ) -> Result<Vec<(PartyId, Response)>, TrainError> {
        let outcomes = self.fed.fanout(subset, request_for, self.timeout).await;
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
        for p in subset {
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

    /// Embeddings of `ids` from every party (party order) and which party knows which row.
    async fn embeddings(
        &self,
        stage: &'static str,
        session: u64,
        step: u64,
        ids: &[u64],
        train: bool,
        dims: &[usize],
    ) -> Result<(Vec<Array2<f64>>, Vec<Vec<bool>>), TrainError> {
        let answers = self
            .all(stage, |_| Request::Forward {
                session,
                step,
                rows: ids.to_vec(),
                train,
            })
            .await?;
        let mut parts = Vec::with_capacity(dims.len());
        let mut known_all = Vec::with_capacity(dims.len());
        for ((party, r), &d) in answers.into_iter().zip(dims) {
            let bad = |m: &str| TrainError::Party {
                party: party.clone(),
                stage,
                message: m.to_string(),
            };
            let Response::Embeddings { matrix, known } = r else {
                return Err(bad("expected embeddings"));
            };
            if !matrix.is_well_formed()
                || matrix.rows as usize != ids.len()
                || matrix.cols as usize != d
                || known.len() != ids.len()
            {
                return Err(bad("embedding matrix has the wrong shape or non-finite values"));
            }
            let m = Array2::from_shape_vec(
                (ids.len(), d),
                matrix.data.iter().map(|&v| f64::from(v)).collect(),
            )
            .map_err(|_| bad("embedding shape"))?;
            parts.push(m);
            known_all.push(known);
        }
        Ok((parts, known_all))
    }

    /// Calibrated probabilities for `ids`; with `absent = Some(p)`, as if party `p` were missing.
    async fn predict(
        &self,
        top: &TopModel,
        session: u64,
        ids: &[u64],
        absent: Option<usize>,
    ) -> Result<Vec<f64>, TrainError> {
        let logits = self.logits(top, session, ids, absent).await?;
        Ok(logits
            .into_iter()
            .map(|z| top.calibration.probability(z))
            .collect())
    }

    /// Raw logits for `ids`; with `absent = Some(p)`, as if party `p` were missing.
    async fn logits(
        &self,
        top: &TopModel,
        session: u64,
        ids: &[u64],
        absent: Option<usize>,
    ) -> Result<Vec<f64>, TrainError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(EVAL_CHUNK) {
            let (parts, mut present) = self
                .embeddings("evaluation", session, 0, chunk, false, &top.dims)
                .await?;
            if let Some(p) = absent {
                present[p].iter_mut().for_each(|v| *v = false);
            }
            let x = top.input(&parts, &present);
            out.extend(top.logits(x.view()));
        }
        Ok(out)
    }
}

/// Trains a model over `parties` (in the order their embeddings enter the top model).
///
/// The label holder's customers are the training population; a customer unknown to another
/// party uses that party's learned absent embedding. `timeout` bounds every request to a party;
/// `on_epoch` is called after each epoch.
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
    let holder_idx = parties.iter().position(|p| *p == label_holder).unwrap_or(0);

    // 2. Align customers by private set intersection: the label holder's customers, each
    //    named by an opaque handle, and which party holds which.
    let session: u64 = rand::random();
    let aligned = align::align(&ctx, holder_idx, session).await?;
    // 3. The label holder splits its customers (in its own file order, so the holdout is
    //    the same customers in every run), stratified by label and by whether every party
    //    knows the customer.
    let n = aligned.n;
    let mut bitmap = vec![0u8; n.div_ceil(8)];
    for h in 0..n {
        if aligned.membership.iter().all(|m| m[h]) {
            bitmap[h / 8] |= 1 << (h % 8);
        }
    }
    let tags = match ctx
        .one(
            &label_holder,
            "split",
            Request::Split {
                session,
                complete: bitmap,
                holdout_fraction: cfg.holdout_fraction,
                validation_fraction: cfg.validation_fraction,
                seed: cfg.split_seed,
                max_rows: cfg.max_rows.map(|m| m as u64),
            },
        )
        .await?
    {
        Response::Split { tags } if tags.len() == n && tags.iter().all(|&t| t <= SPLIT_UNUSED) => tags,
        _ => {
            return Err(TrainError::Party {
                party: label_holder.clone(),
                stage: "split",
                message: "bad answer".into(),
            });
        }
    };
    let customers: Vec<u64> = (0..n as u64)
        .filter(|&h| tags[h as usize] != SPLIT_UNUSED)
        .collect();
    // membership[p][i]: party p knows customer i.
    let membership: Vec<Vec<bool>> = aligned
        .membership
        .iter()
        .map(|m| customers.iter().map(|&h| m[h as usize]).collect())
        .collect();
    let complete: Vec<bool> = (0..customers.len())
        .map(|i| membership.iter().all(|m| m[i]))
        .collect();
    let n_complete = complete.iter().filter(|&&c| c).count();
    info!(
        customers = customers.len(),
        in_every_party = n_complete,
        parties = parties.len(),
        "customers aligned"
    );

    // 4. Labels.
    let mut labels = Vec::with_capacity(customers.len());
    for chunk in customers.chunks(PAGE as usize) {
        let r = ctx
            .one(
                &label_holder,
                "labels",
                Request::Labels {
                    session,
                    handles: chunk.to_vec(),
                },
            )
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
            "too few customers of each class to train ({} customers, {positives} positive)",
            labels.len()
        )));
    }

    let with_tag = |t: u8| -> Vec<usize> {
        (0..customers.len())
            .filter(|&i| tags[customers[i] as usize] == t)
            .collect()
    };
    let (train_idx, val_idx, holdout) = (
        with_tag(SPLIT_TRAIN),
        with_tag(SPLIT_VALIDATION),
        with_tag(SPLIT_HOLDOUT),
    );
    if train_idx.is_empty() || val_idx.is_empty() || holdout.is_empty() {
        return Err(TrainError::Setup(
            "the split left the training, validation or holdout set empty".into(),
        ));
    }
    let ids_of = |idx: &[usize]| idx.iter().map(|&i| customers[i]).collect::<Vec<_>>();
    let labels_of = |idx: &[usize]| idx.iter().map(|&i| labels[i]).collect::<Vec<_>>();
    let (train_ids, val_ids, hold_ids) = (ids_of(&train_idx), ids_of(&val_idx), ids_of(&holdout));
    let (val_labels, hold_labels) = (labels_of(&val_idx), labels_of(&holdout));

    // 5. Fresh bottom models, encodings fitted on training customers only.
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
            fit: train_ids.clone(),
        })
        .await?;
    let mut entries = Vec::with_capacity(parties.len());
    for (p, r) in answers {
        match r {
            Response::Model {
                n_features, emb_dim, ..
            } if emb_dim == cfg.emb_dim => entries.push(PartyEntry {
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
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut top = TopModel::new(&dims, &cfg.top_hidden, &mut rng);
    top.dropout = cfg.top_dropout;
    let mut adam = Adam::new(
        &top.mlp,
        f64::from(cfg.learning_rate),
        f64::from(cfg.weight_decay),
    );
    let mut adam_absent = AdamVectors::new(&top.absent);

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
            let ids: Vec<u64> = batch.iter().map(|&i| train_ids[i]).collect();
            let y: Vec<f64> = batch.iter().map(|&i| f64::from(labels[train_idx[i]])).collect();
            let (parts, mut present) = ctx
                .embeddings("forward", session, step, &ids, true, &dims)
                .await?;
            // Party dropout: hide a present party for a row, keeping at least one party.
            if cfg.party_dropout > 0.0 && parties.len() > 1 {
                // Indexes rows across several parties' masks at once.
                #[allow(clippy::needless_range_loop)]
                for r in 0..ids.len() {
                    for p in 0..parties.len() {
                        if present[p][r] && rng.r#gen::<f64>() < cfg.party_dropout {
                            let others = (0..parties.len()).filter(|&q| q != p && present[q][r]).count();
                            if others > 0 {
                                present[p][r] = false;
                            }
                        }
                    }
                }
            }
            let x = top.input(&parts, &present);
            let (logits, cache) = top.forward_train_dropout(x.view(), &mut rng);
            let (loss, grad) = bce_with_logits(&logits, &y);
            if !loss.is_finite() {
                return Err(TrainError::Diverged(format!("loss is {loss} at epoch {epoch}")));
            }
            loss_sum += loss;
            batches += 1;
            let grads = top.backward(&cache, &grad, &present);
            adam.lr = f64::from(lr);
            adam.step(&mut top.mlp, &grads.mlp);
            adam_absent.step(&mut top.absent, &grads.absent, f64::from(lr));
            let slices: BTreeMap<PartyId, Matrix> = parties
                .iter()
                .zip(&grads.parties)
                .map(|(p, g)| {
                    let data: Vec<f32> = g.iter().map(|&v| v as f32).collect();
                    (
                        p.clone(),
                        Matrix {
                            rows: g.nrows() as u32,
                            cols: g.ncols() as u32,
                            data,
                        },
                    )
                })
                .collect();
            ctx.all("backward", |p| {
                let grad = slices.get(p).cloned().unwrap_or(Matrix {
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
        let val_scores = ctx.predict(&top, session, &val_ids, None).await?;
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
    if cfg.calibrate {
        let val_logits = ctx.logits(&top, session, &val_ids, None).await?;
        top.calibration = Platt::fit(&val_logits, &val_labels);
    }

    // 7. Final figures on the holdout.
    let hold_probs = ctx.predict(&top, session, &hold_ids, None).await?;
    let hold_complete: Vec<bool> = holdout.iter().map(|&i| complete[i]).collect();
    let subset = |want: bool| -> (Vec<f64>, Vec<u8>) {
        hold_probs
            .iter()
            .zip(&hold_labels)
            .zip(&hold_complete)
            .filter(|(_, c)| **c == want)
            .map(|((p, l), _)| (*p, *l))
            .unzip()
    };
    let (pc, lc) = subset(true);
    let (pp, lp) = subset(false);
    let mut absent_auc = BTreeMap::new();
    if parties.len() > 1 {
        for (p, party) in parties.iter().enumerate() {
            let probs = ctx.predict(&top, session, &hold_ids, Some(p)).await?;
            absent_auc.insert(
                party.to_string(),
                metrics::auc(&probs, &hold_labels).unwrap_or(0.5),
            );
        }
    }
    let holdout_auc = metrics::auc(&hold_probs, &hold_labels).unwrap_or(0.5);
    let holdout_ks = metrics::ks(&hold_probs, &hold_labels).unwrap_or(0.0);
    let holdout_ece = metrics::ece(&hold_probs, &hold_labels, 10).unwrap_or(1.0);

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
        label_holder: label_holder.clone(),
        top_layers: top.mlp.layers.iter().map(|l| l.w.nrows()).chain([1]).collect(),
        metrics: TrainingMetrics {
            holdout_auc,
            holdout_ks,
            holdout_ece,
            holdout_auc_complete: metrics::auc(&pc, &lc),
            holdout_auc_partial: metrics::auc(&pp, &lp),
            holdout_auc_party_absent: absent_auc,
            validation_auc,
            customers: customers.len(),
            customers_in_every_party: n_complete,
            train_rows: train_ids.len(),
            validation_rows: val_ids.len(),
            holdout_rows: hold_ids.len(),
            holdout_rows_partial: pp.len(),
            epochs_run,
            best_epoch,
            training_seconds: started.elapsed().as_secs_f64(),
            alignment_seconds: aligned.seconds,
            shared_with_label_holder: parties
                .iter()
                .zip(&aligned.membership)
                .map(|(p, m)| (p.to_string(), m.iter().filter(|&&b| b).count()))
                .collect(),
        },
        training: cfg.clone(),
    };
    Ok(Trained {
        manifest,
        top,
        holdout: Holdout {
            probs: hold_probs,
            labels: hold_labels,
            complete: hold_complete,
        },
    })
}
