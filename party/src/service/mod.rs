//! The party's request handler: a pure function of its state and one [`Request`], no IO
//! except model files. The driver in [`crate::run`] feeds it requests from the coordinator
//! through [`tessera_common::transport::serve`]; tests and benchmarks call it in process.
//!
//! Split along its seams: `alignment` (private set intersection), `training` (split, labels,
//! the training session), `scoring` (load, embed, explain).
//!
//! **Invariant:** nothing it returns contains a feature value: only embeddings, labels (label
//! holder, on request), ids, counts and fixed-text error messages.

mod alignment;
mod scoring;
mod training;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tessera_common::data::FeatureTable;
use tessera_common::federation::Handler;
use tessera_common::wire::{ErrorCode, PartyId, PartyInfo, Request, Response};

use crate::align::Alignment;
use crate::bottom::BottomModel;
use crate::config::PartyLimits;
use crate::policy::{ExplainAllowance, TrainingPolicy};
use crate::reasons::ReasonDictionary;
use training::Session;

/// Scoring requests for at most this many customers are answered on the async thread.
const INLINE_MAX_IDS: usize = 16;

/// One party's state: its data, the model it serves, and the training session if any.
pub struct PartyService {
    id: PartyId,
    data: FeatureTable,
    model_dir: PathBuf,
    limits: PartyLimits,
    /// Models loaded for scoring, most recently loaded first (at most
    /// [`tessera_common::wire::MAX_LOADED_MODELS`]).
    serving: RwLock<Vec<(String, Arc<BottomModel>)>>,
    alignment: RwLock<Option<Alignment>>,
    session: Mutex<Option<Session>>,
    reasons: ReasonDictionary,
    /// What this bank lets a coordinator do (see [`crate::policy`]).
    policy: TrainingPolicy,
    /// The bank's own seed, mixed into every bottom model's initialisation.
    own_seed: u64,
    /// Widest embedding the policy allows: below the encoded input width, within the limits.
    max_emb_dim: u32,
    /// Customers embedded moments ago, the only ones `Explain` answers for.
    explain: Mutex<ExplainAllowance>,
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

impl PartyService {
    /// A service over `data`, keeping models in `model_dir`.
    /// Reasons are one code per column until [`PartyService::with_reasons`] sets a dictionary.
    ///
    /// Training is refused until [`PartyService::with_policy`] enables it (the default
    /// [`TrainingPolicy`]).
    pub fn new(id: PartyId, data: FeatureTable, model_dir: PathBuf, limits: PartyLimits) -> Self {
        let reasons = ReasonDictionary::per_column(&data.feature_names);
        let width = tessera_common::model::Encoder::fit(data.features().view()).width();
        let max_emb_dim = (width.saturating_sub(1) as u32).min(limits.max_width);
        Self {
            reasons,
            id,
            data,
            model_dir,
            limits,
            serving: RwLock::new(Vec::new()),
            alignment: RwLock::new(None),
            session: Mutex::new(None),
            policy: TrainingPolicy::default(),
            own_seed: rand::random(),
            max_emb_dim,
            explain: Mutex::new(ExplainAllowance::default()),
        }
    }

    /// Uses `policy` for training requests (its seed, if set, as the bank's own seed).
    pub fn with_policy(mut self, policy: TrainingPolicy) -> Self {
        if let Some(seed) = policy.seed {
            self.own_seed = seed;
        }
        self.policy = policy;
        self
    }

    /// Loads the configured data and reason dictionary (one code per column when none is
    /// configured) and builds the service.
    ///
    /// # Errors
    /// [`crate::Error::Data`] if the data cannot be loaded, [`crate::Error::Reasons`] if the
    /// reason dictionary does not fit the data.
    pub fn from_config(cfg: &crate::config::PartyConfig) -> Result<Self, crate::Error> {
        let opts = tessera_common::data::LoadOptions {
            id_column: cfg.data.id_column.clone(),
            label_column: cfg.data.label_column.clone(),
            max_rows: cfg.data.max_rows,
            limit: cfg.data.limit,
        };
        let data = FeatureTable::load(&cfg.data.path, &opts)?;
        let reasons = if cfg.reasons.is_empty() {
            tracing::warn!("no reasons configured: reason codes are one per feature column (F01...)");
            ReasonDictionary::per_column(&data.feature_names)
        } else {
            ReasonDictionary::from_config(&cfg.reasons, &data.feature_names)?
        };
        Ok(Self::new(
            cfg.party_id.clone(),
            data,
            cfg.model_dir.clone(),
            cfg.limits.clone(),
        )
        .with_reasons(reasons)
        .with_policy(cfg.training.clone()))
    }

    /// Uses `reasons` as the published reason dictionary.
    pub fn with_reasons(mut self, reasons: ReasonDictionary) -> Self {
        self.reasons = reasons;
        self
    }

    /// Number of customers.
    pub fn rows(&self) -> usize {
        self.data.len()
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.data.n_features()
    }

    /// Whether this party holds labels.
    pub fn has_labels(&self) -> bool {
        self.data.labels().is_some()
    }

    /// The party id.
    pub fn id(&self) -> &PartyId {
        &self.id
    }

    /// The id of the model loaded last for scoring, if any.
    pub fn serving_model(&self) -> Option<String> {
        self.loaded_models().into_iter().next()
    }

    /// The ids of the models loaded for scoring, most recently loaded first.
    pub fn loaded_models(&self) -> Vec<String> {
        self.serving
            .read()
            .map(|g| g.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default()
    }

    /// The customer id behind `handle` in the current alignment, if this party holds it.
    /// For the bank's own use in this process (audits of what was matched, tests); never sent.
    pub fn aligned_customer(&self, handle: u64) -> Option<String> {
        let g = self.alignment.read().ok()?;
        let row = g.as_ref()?.row(handle)?;
        self.data.ids().get(row).cloned()
    }

    /// Answers one request.
    pub fn handle(&self, request: Request) -> Response {
        match request {
            Request::Describe => Response::Info(PartyInfo {
                party_id: self.id.clone(),
                n_features: self.data.n_features() as u32,
                n_rows: self.data.len() as u64,
                has_labels: self.data.labels().is_some(),
                max_emb_dim: if self.policy.enabled { self.max_emb_dim } else { 0 },
            }),
            Request::PsiInit { .. }
            | Request::PsiBlind { .. }
            | Request::PsiReblind { .. }
            | Request::PsiAssign { .. } => self.alignment_request(request),
            Request::Split {
                session,
                complete,
                holdout_fraction,
                validation_fraction,
                seed,
                max_rows,
            } => self.split(
                session,
                &complete,
                (holdout_fraction, validation_fraction),
                seed,
                max_rows,
            ),
            Request::Labels { session, handles } => self.labels(session, &handles),
            Request::TrainInit { session, spec, fit } => self.train_init(session, &spec, &fit),
            Request::Forward {
                session,
                step,
                rows,
                train,
            } => self.forward(session, step, &rows, train),
            Request::Backward {
                session,
                step,
                grad,
                learning_rate,
            } => self.backward(session, step, &grad, learning_rate),
            Request::Checkpoint { session } => self.checkpoint(session),
            Request::Restore { session } => self.restore(session),
            Request::Save { session, model_id } => self.save(session, &model_id),
            Request::Load { model_id } => self.load(&model_id),
            Request::Embed { model_id, ids } => self.embed(&model_id, &ids),
            Request::Explain { model_id, ids, grads } => self.explain(&model_id, &ids, &grads),
        }
    }
    fn check_len(&self, n: usize) -> Option<Response> {
        (n > self.limits.max_batch).then(|| {
            error(
                ErrorCode::BadRequest,
                format!("{n} ids exceed the limit of {}", self.limits.max_batch),
            )
        })
    }
}

impl Handler for PartyService {
    fn handle(&self, request: Request) -> Response {
        PartyService::handle(self, request)
    }

    /// Scoring a handful of customers takes tens of microseconds: less than the hand-off to
    /// the blocking pool would cost. Everything else is model math for the blocking pool.
    fn is_cheap(&self, request: &Request) -> bool {
        matches!(request, Request::Embed { ids, .. } | Request::Explain { ids, .. } if ids.len() <= INLINE_MAX_IDS)
    }
}

#[cfg(test)]
mod tests;
