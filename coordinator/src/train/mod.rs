//! The training driver: aligns customers, splits them, and runs split-NN minibatch training
//! over the federation, with early stopping on validation AUC.
//!
//! [`train`] runs the steps in order, each in its own module:
//! 1. [`population::describe`] and [`population::label_holder`];
//! 2. [`align`]: private set intersection, row handles;
//! 3. [`population::split`] (the label holder's split) and [`population::Population`];
//! 4. [`population::labels`];
//! 5. [`epochs::init_parties`] (fresh bottom models) and [`epochs::Trainer::new`];
//! 6. [`epochs::Trainer::run`]: epochs, early stopping, checkpoint/restore, optional Platt;
//! 7. [`evaluate`]: holdout figures, AUC with each party absent;
//! 8. `Save` at every party; the manifest.
//!
//! Per step of an epoch: `Forward` to every party (embeddings of the batch) → the top model's
//! forward and backward pass here → `Backward` to every party with the gradient of its own
//! embedding columns. The coordinator sees labels (from the label holder) and embeddings,
//! never features.

pub mod align;
mod ctx;
pub mod epochs;
pub mod evaluate;
pub mod population;

use std::time::{Duration, Instant};

use tessera_common::federation::Federation;
use tessera_common::model::stability::Reference;
use tessera_common::model::{Platt, TopModel};
use tessera_common::protocol::fanout::Failure;
use tessera_common::wire::{ErrorCode, PartyId, Request};
use tracing::info;

use crate::artifact::{FORMAT, Manifest, TrainingMetrics};
use crate::config::TrainingConfig;
pub(crate) use ctx::Ctx;

/// Why training stopped without a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A party did not answer, answered with an error, or answered nonsense.
    #[error("party {party} during {stage}: {failure}")]
    Party {
        /// The party.
        party: PartyId,
        /// Which step of training.
        stage: &'static str,
        /// What happened.
        failure: PartyFailure,
    },
    /// The federation cannot be trained as configured.
    #[error("{0}")]
    Setup(String),
    /// The model diverged.
    #[error("training diverged: {0}")]
    Diverged(String),
}

/// What went wrong with one party during training.
#[derive(Debug, thiserror::Error)]
pub enum PartyFailure {
    /// The party answered with an error.
    #[error("{code:?}: {message}")]
    Refused {
        /// Its error code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The request could not be delivered or answered (not connected, connection lost, ...).
    #[error(transparent)]
    Failed(#[from] Failure),
    /// No answer before the deadline.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The answer was not what the step needs.
    #[error("{0}")]
    BadAnswer(String),
}

impl TrainError {
    /// A party answered something the step cannot use.
    pub fn bad(party: &PartyId, stage: &'static str, what: impl Into<String>) -> Self {
        TrainError::Party {
            party: party.clone(),
            stage,
            failure: PartyFailure::BadAnswer(what.into()),
        }
    }
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
    /// Wall time of each minibatch step of the epoch (forward at every party, the top model,
    /// backward at every party), seconds.
    pub step_seconds: Vec<f64>,
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
    /// The row handles (the label holder's alignment handles) of the training, validation and
    /// holdout customers: only the label holder can turn them into customer ids (in-process
    /// evaluation tools do, to train baselines on exactly the same rows).
    pub splits: [Vec<u64>; 3],
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

/// Bins of the holdout's score distribution kept for population stability (deciles).
const REFERENCE_BINS: usize = 10;

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
        trace: vec![format!("train:{model_id}")],
    };
    // 1. Who holds what.
    let infos = population::describe(&ctx).await?;
    let label_holder = population::label_holder(&infos)?;
    let holder_idx = parties.iter().position(|p| *p == label_holder).unwrap_or(0);
    let widths = epochs::widths(parties, &infos, cfg)?;
    // 2. Align customers by private set intersection: the label holder's customers, each
    //    named by an opaque handle, and which party holds which.
    let session: u64 = rand::random();
    let aligned = align::align(&ctx, holder_idx, session).await?;
    // 3. The label holder's split, and the customers it keeps.
    let tags = population::split(&ctx, &label_holder, session, &aligned, cfg).await?;
    let pop = population::Population::new(&tags, &aligned.membership)?;
    info!(
        customers = pop.customers.len(),
        in_every_party = pop.n_complete(),
        parties = parties.len(),
        "customers aligned"
    );
    // 4. Labels.
    let labels = population::labels(&ctx, &label_holder, session, &pop.customers).await?;
    // 5. Fresh bottom models, encodings fitted on training customers only; a fresh top model.
    let entries = epochs::init_parties(&ctx, session, cfg, &pop.handles(&pop.train), &widths).await?;
    let dims: Vec<usize> = entries.iter().map(|e| e.emb_dim as usize).collect();
    let trainer = epochs::Trainer::new(&dims, cfg);
    // 6. Epochs with early stopping, then back to the best weights everywhere.
    let (best, epochs_run) = trainer
        .run(&ctx, session, cfg, &pop, &labels, &mut on_epoch)
        .await?;
    let mut top = best.top;
    ctx.all("restore", |_| Request::Restore { session }).await?;
    if cfg.calibrate {
        let val_labels: Vec<u8> = pop.validation.iter().map(|&i| labels[i]).collect();
        let val_logits = ctx
            .logits(&top, session, &pop.handles(&pop.validation), None)
            .await?;
        top.calibration = Platt::fit(&val_logits, &val_labels);
    }
    // 7. Final figures on the holdout.
    let hold_ids = pop.handles(&pop.holdout);
    let holdout = Holdout {
        probs: ctx.predict(&top, session, &hold_ids, None).await?,
        labels: pop.holdout.iter().map(|&i| labels[i]).collect(),
        complete: pop.holdout.iter().map(|&i| pop.complete[i]).collect(),
    };
    let absent = evaluate::auc_party_absent(&ctx, &top, session, &hold_ids, &holdout.labels).await?;
    let f = evaluate::figures(&holdout);
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
            holdout_auc: f.auc,
            holdout_ks: f.ks,
            holdout_ece: f.ece,
            holdout_auc_complete: f.auc_complete,
            holdout_auc_partial: f.auc_partial,
            holdout_auc_party_absent: absent,
            validation_auc: best.auc,
            customers: pop.customers.len(),
            customers_in_every_party: pop.n_complete(),
            train_rows: pop.train.len(),
            validation_rows: pop.validation.len(),
            holdout_rows: hold_ids.len(),
            holdout_rows_partial: f.rows_partial,
            epochs_run,
            best_epoch: best.epoch,
            training_seconds: started.elapsed().as_secs_f64(),
            alignment_seconds: aligned.seconds,
            shared_with_label_holder: parties
                .iter()
                .zip(&aligned.membership)
                .map(|(p, m)| (p.to_string(), m.iter().filter(|&&b| b).count()))
                .collect(),
            score_reference: Reference::from_sample(&holdout.probs, REFERENCE_BINS).unwrap_or_default(),
        },
        training: cfg.clone(),
        code_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok(Trained {
        manifest,
        top,
        holdout,
        splits: [pop.handles(&pop.train), pop.handles(&pop.validation), hold_ids],
    })
}
