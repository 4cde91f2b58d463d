//! The active model and scoring: loading the model onto every party ([`load`]), readiness
//! ([`readiness`]), coalescing concurrent scores into batched fan-outs ([`batching`]), and
//! scoring over the registry of connected parties.

mod batching;
mod load;
mod readiness;
pub mod shadow;

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

/// Why a model could not be made active.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// Fewer parties than an answer needs could load it; the active model stays.
    #[error("model {model}: {loaded} parties loaded it, an answer needs {needed}; the active model stays")]
    TooFewParties {
        /// The model.
        model: String,
        /// Parties that loaded it.
        loaded: usize,
        /// Parties an answer needs.
        needed: usize,
        /// Each failing party and why.
        failures: Vec<(PartyId, String)>,
    },
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
    /// The model active before the current one.
    previous: RwLock<Option<Arc<ActiveModel>>>,
    /// The shadow (challenger) model.
    shadow: RwLock<Option<Arc<ActiveModel>>>,
    /// How the shadow compares with the active model.
    shadow_stats: Arc<shadow::Stats>,
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
        let shadow_stats = Arc::new(shadow::Stats::new(registry.metrics().clone()));
        Self {
            registry,
            parties,
            scale,
            min_parties,
            interval_samples,
            active: RwLock::new(None),
            previous: RwLock::new(None),
            shadow: RwLock::new(None),
            shadow_stats,
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

    /// The model active before the current one (what a rollback returns to).
    pub fn previous(&self) -> Option<Arc<ActiveModel>> {
        self.previous.read().ok().and_then(|g| g.clone())
    }

    /// The shadow (challenger) model, if one is set.
    pub fn shadow(&self) -> Option<Arc<ActiveModel>> {
        self.shadow.read().ok().and_then(|g| g.clone())
    }

    /// How the shadow model compares with the active one so far.
    pub fn shadow_report(&self) -> Option<shadow::Report> {
        self.shadow_stats.report()
    }

    /// Makes `model` the active model whatever the parties say (start-up, a model just
    /// trained): every connected party is asked to load it first, then it becomes active;
    /// parties that connect later load it when they connect ([`Serving::load_on_link`]).
    pub async fn activate(&self, model: ActiveModel) {
        let model = Arc::new(model);
        self.prepare(&model).await;
        self.swap(model).await;
    }

    /// Makes `model` the active model only if at least `scoring.min_parties` parties loaded it
    /// first; otherwise the active model stays and the error says which parties failed.
    ///
    /// Every answer is computed with one model's parts only: a score captures the active model
    /// once and names it in every request to the parties, and a party answers with that model
    /// or refuses. So switching (or rolling back) under load never mixes two models.
    ///
    /// # Errors
    /// [`SwitchError::TooFewParties`].
    pub async fn switch(&self, model: ActiveModel) -> Result<(), SwitchError> {
        self.switch_arc(Arc::new(model)).await
    }

    /// [`Serving::switch`] to a model already in memory (a rollback).
    ///
    /// # Errors
    /// [`SwitchError::TooFewParties`].
    pub async fn switch_arc(&self, model: Arc<ActiveModel>) -> Result<(), SwitchError> {
        let results = self.prepare(&model).await;
        let loaded = results.iter().filter(|(_, r)| r.is_ok()).count();
        if loaded < self.min_parties() {
            return Err(SwitchError::TooFewParties {
                model: model.manifest.model_id.clone(),
                loaded,
                needed: self.min_parties(),
                failures: results
                    .into_iter()
                    .filter_map(|(p, r)| r.err().map(|e| (p, e.to_string())))
                    .collect(),
            });
        }
        self.swap(model).await;
        Ok(())
    }

    /// Sets (or, with `None`, clears) the shadow model: it scores the same customers as the
    /// active one, after the answer, without affecting it; every connected party loads it.
    pub async fn set_shadow(&self, model: Option<ActiveModel>) {
        let model = model.map(Arc::new);
        if let Some(m) = &model {
            self.prepare(m).await;
        }
        self.shadow_stats
            .reset(model.as_ref().map(|m| m.manifest.model_id.clone()));
        if let Ok(mut g) = self.shadow.write() {
            *g = model;
        }
    }

    /// Asks every connected party to load `model`, all at once; each party's result.
    async fn prepare(&self, model: &ActiveModel) -> Vec<(PartyId, Result<(), LoadError>)> {
        let connected: Vec<PartyId> = self
            .parties
            .iter()
            .filter(|p| self.registry.is_connected(p))
            .cloned()
            .collect();
        let loads = connected.iter().map(|p| self.load_on_party(p, model));
        let results = futures_util::future::join_all(loads).await;
        let out: Vec<_> = connected.into_iter().zip(results).collect();
        for (p, r) in &out {
            if let Err(e) = r {
                warn!(party = %p, model = %model.manifest.model_id, error = %e, "party could not load the model");
            }
        }
        out
    }

    /// Makes `model` active (the current one becomes the previous), then has any connected
    /// party that lacks it (one that connected meanwhile) load it.
    async fn swap(&self, model: Arc<ActiveModel>) {
        let id = model.manifest.model_id.clone();
        if let Ok(mut g) = self.active.write() {
            let old = g.replace(model.clone());
            if let Some(old) = old.filter(|o| o.manifest.model_id != id)
                && let Ok(mut p) = self.previous.write()
            {
                *p = Some(old);
            }
            self.registry.metrics().set_model(&id);
        }
        info!(model = %id, "model activated");
        for p in self.parties.clone() {
            if self.registry.is_connected(&p)
                && !self.registry.has_model(&p, &id)
                && let Err(e) = self.load_on_party(&p, &model).await
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
        // The model is captured once: every request of this score names it.
        let model = self.active().ok_or(ScoreError::NoModel)?;
        let dictionaries = self.dictionaries.read().map(|d| d.clone()).unwrap_or_default();
        let results = score_with(
            &self.registry,
            &self.parties,
            &model,
            &dictionaries,
            &self.scale,
            (self.min_parties, self.interval_samples),
            trace,
            ids,
            explain,
        )
        .await;
        if let Some(challenger) = self.shadow() {
            shadow::compare_later(
                &self.shadow_stats,
                self.registry.clone(),
                self.parties.clone(),
                challenger,
                dictionaries,
                self.scale.clone(),
                (self.min_parties, self.interval_samples),
                ids,
                &results,
            );
        }
        Ok(results)
    }
}

/// Scores `ids` with `model` over the parties of `parties` that have it loaded.
#[allow(clippy::too_many_arguments)]
async fn score_with(
    registry: &Registry,
    parties: &[PartyId],
    model: &ActiveModel,
    dictionaries: &BTreeMap<PartyId, Vec<ReasonCode>>,
    scale: &ScoreScale,
    (min_parties, interval_samples): (usize, usize),
    trace: &[String],
    ids: &[String],
    explain: &[bool],
) -> Vec<Result<Scored, ItemError>> {
    let version = &model.manifest.model_id;
    // Only parties that have this model loaded can contribute.
    let ready: Vec<PartyId> = parties
        .iter()
        .filter(|p| registry.has_model(p, version))
        .cloned()
        .collect();
    // A party that answers it lacks the model (it restarted): noted, so readiness says so.
    let lost = |p: &PartyId| registry.unloaded(p, version);
    let ctx = ScoringContext {
        manifest: &model.manifest,
        top: &model.top,
        dictionaries,
        scale,
        min_parties,
        interval_samples,
        timeout: registry.settings().request_timeout(),
        on_lost_model: Some(&lost),
        trace,
    };
    crate::scoring::score_batch(registry, &ready, &ctx, ids, explain).await
}
