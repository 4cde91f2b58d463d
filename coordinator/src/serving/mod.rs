//! The active model and scoring: loading the model onto every party ([`load`]), readiness
//! ([`readiness`]), coalescing concurrent scores into batched fan-outs ([`batching`]), and
//! scoring over the registry of connected parties.

mod batching;
mod load;
mod readiness;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tessera_common::model::{ScoreScale, TopModel};
use tessera_common::wire::{PartyId, ReasonCode};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::artifact::Manifest;
use crate::registry::Registry;
use crate::scoring::ScoringContext;

pub use crate::scoring::{Interval, ItemError, PartyStatus, Reason, Scored};
pub use load::LoadError;
pub use readiness::{PartyReadiness, Readiness};

/// A model ready to score.
#[derive(Debug)]
pub struct ActiveModel {
    /// Its manifest.
    pub manifest: Manifest,
    /// The top model.
    pub top: TopModel,
}

/// Why a request could not be scored at all.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ScoreError {
    /// No model is active.
    #[error("no model is loaded")]
    NoModel,
    /// The one customer asked for could not be scored.
    #[error(transparent)]
    Item(#[from] ItemError),
}

impl ScoreError {
    /// Party statuses, where the error has them.
    pub fn parties(&self) -> &[(PartyId, PartyStatus)] {
        match self {
            ScoreError::Item(e) => e.parties(),
            _ => &[],
        }
    }
}

/// The active model and the parties it runs on.
pub struct Serving {
    registry: Registry,
    parties: Vec<PartyId>,
    scale: ScoreScale,
    min_parties: usize,
    interval_samples: usize,
    active: RwLock<Option<Arc<ActiveModel>>>,
    /// Each party's reason dictionary, as it answered when loading the model.
    dictionaries: RwLock<BTreeMap<PartyId, Vec<ReasonCode>>>,
    /// Single scores waiting for a dispatcher, once [`Serving::start_batching`] ran.
    queue: std::sync::OnceLock<mpsc::Sender<batching::Pending>>,
}

impl Serving {
    /// Serving over `parties` (configured order) with no model yet; a score needs at least
    /// `min_parties` contributing parties (others are replaced by their absent embedding).
    /// `interval_samples` Monte Carlo dropout samples give the score interval.
    pub fn new(
        registry: Registry,
        parties: Vec<PartyId>,
        scale: ScoreScale,
        min_parties: usize,
        interval_samples: usize,
    ) -> Self {
        Self {
            registry,
            parties,
            scale,
            min_parties,
            interval_samples,
            active: RwLock::new(None),
            dictionaries: RwLock::new(BTreeMap::new()),
            queue: std::sync::OnceLock::new(),
        }
    }

    /// The score scale and bands.
    pub fn scale(&self) -> &ScoreScale {
        &self.scale
    }

    /// The registry of connected parties.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Parties an answer needs at least.
    pub fn min_parties(&self) -> usize {
        self.min_parties.max(1)
    }

    /// The configured parties.
    pub fn parties(&self) -> &[PartyId] {
        &self.parties
    }

    /// The active model.
    pub fn active(&self) -> Option<Arc<ActiveModel>> {
        self.active.read().ok().and_then(|g| g.clone())
    }

    /// Makes `model` the active model and asks every connected party to load it. Parties that
    /// connect later are asked when they connect ([`Serving::load_on_link`]).
    pub async fn activate(&self, model: ActiveModel) {
        let id = model.manifest.model_id.clone();
        if let Ok(mut g) = self.active.write() {
            *g = Some(Arc::new(model));
            self.registry.metrics().set_model(&id);
        }
        info!(model = %id, "model activated");
        for p in self.parties.clone() {
            if self.registry.is_connected(&p)
                && let Err(e) = self.load_on_party(&p).await
            {
                warn!(party = %p, error = %e, "party could not load the model");
            }
        }
    }

    /// Scores one customer; `request_id` names the HTTP request in the parties' logs.
    ///
    /// # Errors
    /// [`ScoreError`]: no model, unknown customer, parties unavailable, malformed answer.
    pub async fn score(
        &self,
        customer_id: &str,
        request_id: &str,
        explain: bool,
    ) -> Result<Scored, ScoreError> {
        if let Some(queue) = self.queue.get() {
            let (reply, answer) = oneshot::channel();
            let pending = batching::Pending {
                id: customer_id.to_string(),
                request_id: request_id.to_string(),
                explain,
                reply,
            };
            if queue.send(pending).await.is_ok()
                && let Ok(r) = answer.await
            {
                return r;
            }
            // The dispatchers are gone (shutting down): score directly.
        }
        let mut v = self
            .score_many(&[customer_id.to_string()], &[request_id.to_string()], &[explain])
            .await?;
        v.pop()
            .unwrap_or(Err(ItemError::PartiesUnavailable(Vec::new())))
            .map_err(ScoreError::from)
    }

    /// Scores several customers in one fan-out per party (chunks of [`crate::scoring::CHUNK`]).
    /// `trace` names the HTTP requests served, for the parties' logs; `explain[i]` whether
    /// customer `i` gets reason codes (missing entries: yes).
    ///
    /// # Returns
    /// One result per id, in order.
    ///
    /// # Errors
    /// [`ScoreError::NoModel`].
    pub async fn score_many(
        &self,
        ids: &[String],
        trace: &[String],
        explain: &[bool],
    ) -> Result<Vec<Result<Scored, ItemError>>, ScoreError> {
        let model = self.active().ok_or(ScoreError::NoModel)?;
        let version = model.manifest.model_id.clone();
        // Only parties that have the active model loaded can contribute.
        let ready: Vec<PartyId> = self
            .parties
            .iter()
            .filter(|p| self.registry.model_of(p).as_ref() == Some(&version))
            .cloned()
            .collect();
        let dictionaries = self.dictionaries.read().map(|d| d.clone()).unwrap_or_default();
        let lost = |p: &PartyId| {
            // The party lost its model (restarted): mark it so readiness reflects it.
            if let Some(link) = self.registry.connection(p) {
                self.registry.set_model(p, &link, None);
            }
        };
        let ctx = ScoringContext {
            manifest: &model.manifest,
            top: &model.top,
            dictionaries: &dictionaries,
            scale: &self.scale,
            min_parties: self.min_parties,
            interval_samples: self.interval_samples,
            timeout: self.registry.settings().request_timeout(),
            on_lost_model: Some(&lost),
            trace,
        };
        Ok(crate::scoring::score_batch(&self.registry, &ready, &ctx, ids, explain).await)
    }
}
