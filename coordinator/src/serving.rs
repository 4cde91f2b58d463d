//! The active model and scoring: loading the model onto every party, readiness, and scoring
//! one customer by fanning out to the parties under one deadline.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tessera_party::local::LocalFederation;
use tokio::sync::{mpsc, oneshot};

use tessera_common::model::{ScoreScale, TopModel};
use tessera_common::wire::{PartyId, ReasonCode, Request, Response};
use tracing::{info, warn};

use crate::artifact::Manifest;
use crate::registry::Registry;
use crate::scoring::ScoringContext;

/// A model ready to score.
#[derive(Debug)]
pub struct ActiveModel {
    /// Its manifest.
    pub manifest: Manifest,
    /// The top model.
    pub top: TopModel,
}

pub use crate::scoring::{Interval, ItemError, PartyStatus, Reason, Scored};

/// Why a request could not be scored at all.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ScoreError {
    /// No model is active.
    #[error("no model is loaded")]
    NoModel,
    /// The one customer asked for could not be scored.
    #[error(transparent)]
    Item(#[from] ItemError),
    /// A party answered with something malformed.
    #[error("party {0} sent a malformed answer")]
    BadAnswer(PartyId),
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

/// Readiness of the coordinator to score.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Readiness {
    /// Whether scoring can succeed now.
    pub ready: bool,
    /// Why not, if not.
    pub reasons: Vec<String>,
    /// The active model.
    pub model_version: Option<String>,
    /// Each configured party: connected, and which model it has loaded.
    pub parties: Vec<PartyReadiness>,
}

/// One party's part of [`Readiness`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct PartyReadiness {
    /// The party.
    pub party: PartyId,
    /// Whether it is connected.
    pub connected: bool,
    /// Whether its last request timed out.
    pub unresponsive: bool,
    /// The model it has loaded.
    pub model: Option<String>,
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
    /// Parties in this process instead of over QUIC (the serving benchmark's floor).
    local: Option<LocalFederation>,
    /// The model each in-process party has loaded.
    local_models: RwLock<BTreeMap<PartyId, String>>,
    /// Single scores waiting for a dispatcher, once [`Serving::start_batching`] ran.
    queue: std::sync::OnceLock<mpsc::Sender<Pending>>,
}

/// A single-customer score waiting to be batched with others.
struct Pending {
    id: String,
    reply: oneshot::Sender<Result<Scored, ScoreError>>,
}

/// Most customers one dispatcher scores in one fan-out.
const MAX_COALESCED: usize = 256;

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
            local: None,
            local_models: RwLock::new(BTreeMap::new()),
            queue: std::sync::OnceLock::new(),
        }
    }

    /// Starts `pipelines` dispatchers that coalesce concurrent single-customer scores into one
    /// fan-out per party: a free dispatcher takes every request waiting (up to 256) and
    /// scores them together, so under load the parties see a few batched requests instead of
    /// many small ones, and an idle federation answers a lone request at once (no batching
    /// delay). The dispatchers end when `self` is dropped.
    pub fn start_batching(self: &Arc<Self>, pipelines: usize) {
        let (tx, rx) = mpsc::channel::<Pending>(8 * MAX_COALESCED.max(pipelines));
        if self.queue.set(tx).is_err() {
            return;
        }
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..pipelines.max(1) {
            let (rx, me) = (rx.clone(), Arc::downgrade(self));
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        // One request, then every other one already waiting (up to the cap).
                        let mut rx = rx.lock().await;
                        if rx.recv_many(&mut batch, MAX_COALESCED).await == 0 {
                            return;
                        }
                    }
                    let Some(serving) = me.upgrade() else { return };
                    let ids: Vec<String> = batch.iter().map(|p| p.id.clone()).collect();
                    match serving.score_many(&ids).await {
                        Ok(results) => {
                            for (p, r) in batch.into_iter().zip(results) {
                                let _ = p.reply.send(r.map_err(ScoreError::from));
                            }
                        }
                        Err(e) => {
                            for p in batch {
                                let _ = p.reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            });
        }
    }

    /// Serves with `parties` in this process, called directly instead of over QUIC: the same
    /// scoring code with no network (the floor the serving benchmark compares against).
    pub fn with_local(mut self, parties: LocalFederation) -> Self {
        self.local = Some(parties);
        self
    }

    /// The model `party` has loaded, over QUIC or in this process.
    fn party_model(&self, party: &PartyId) -> Option<String> {
        match &self.local {
            Some(_) => self.local_models.read().ok().and_then(|m| m.get(party).cloned()),
            None => self.registry.model_of(party),
        }
    }

    async fn load_local(&self, fed: &LocalFederation, model: &ActiveModel) {
        use tessera_common::federation::Federation;
        let id = model.manifest.model_id.clone();
        let outcomes = fed
            .fanout(
                &self.parties,
                |_| Request::Load { model_id: id.clone() },
                Duration::from_secs(60),
            )
            .await;
        for (party, o) in outcomes {
            let entry = model.manifest.parties.iter().find(|e| e.party_id == party);
            match (o, entry) {
                (
                    tessera_common::protocol::fanout::Outcome::Answered(Response::Model {
                        n_features,
                        emb_dim,
                        reasons,
                    }),
                    Some(e),
                ) if n_features == e.n_features && emb_dim == e.emb_dim => {
                    if let Ok(mut d) = self.dictionaries.write() {
                        d.insert(party.clone(), reasons);
                    }
                    if let Ok(mut m) = self.local_models.write() {
                        m.insert(party, id.clone());
                    }
                }
                _ => warn!(party = %party, "in-process party could not load the model"),
            }
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

    /// The configured parties.
    pub fn parties(&self) -> &[PartyId] {
        &self.parties
    }

    /// The active model.
    pub fn active(&self) -> Option<Arc<ActiveModel>> {
        self.active.read().ok().and_then(|g| g.clone())
    }

    /// Makes `model` the active model and asks every connected party to load it. Parties that
    /// connect later are asked when they connect ([`Serving::load_on_party`]).
    pub async fn activate(&self, model: ActiveModel) {
        let id = model.manifest.model_id.clone();
        if let Ok(mut g) = self.active.write() {
            *g = Some(Arc::new(model));
        }
        info!(model = %id, "model activated");
        if let (Some(fed), Some(model)) = (&self.local, self.active()) {
            self.load_local(fed, &model).await;
            return;
        }
        for p in self.parties.clone() {
            if self.registry.is_connected(&p)
                && let Err(e) = self.load_on_party(&p).await
            {
                warn!(party = %p, error = %e, "party could not load the model");
            }
        }
    }

    /// Asks the party's current connection to load the active model.
    ///
    /// # Errors
    /// A message for the operator if the party is not connected, lacks the model, or its model
    /// does not match the manifest.
    pub async fn load_on_party(&self, party: &PartyId) -> Result<(), String> {
        let conn = self.registry.connection(party).ok_or("not connected")?;
        let model = self.load_on_conn(party, &conn).await?;
        self.registry.set_model(party, &conn, model);
        Ok(())
    }

    /// Asks the party on `conn` to load the active model and checks its answer against the
    /// manifest. Returns the model id loaded (`None` when no model is active).
    ///
    /// # Errors
    /// A message for the operator if the party lacks the model or its model does not match.
    pub async fn load_on_conn(
        &self,
        party: &PartyId,
        conn: &quinn::Connection,
    ) -> Result<Option<String>, String> {
        let Some(model) = self.active() else {
            return Ok(None);
        };
        let id = model.manifest.model_id.clone();
        let Some(entry) = model.manifest.parties.iter().find(|e| e.party_id == *party) else {
            return Err(format!("model {id} has no part for this party"));
        };
        let settings = self.registry.settings();
        let request = Request::Load { model_id: id.clone() };
        let r = tessera_common::transport::call(conn, &request, settings, settings.training_timeout()).await;
        match r {
            Ok(Response::Model {
                n_features,
                emb_dim,
                reasons,
            }) if n_features == entry.n_features && emb_dim == entry.emb_dim => {
                info!(party = %party, model = %id, reason_codes = reasons.len(), "party loaded the model");
                if let Ok(mut d) = self.dictionaries.write() {
                    d.insert(party.clone(), reasons);
                }
                Ok(Some(id))
            }
            Ok(Response::Model {
                n_features, emb_dim, ..
            }) => Err(format!(
                "party's model {id} has {n_features} features / embedding {emb_dim}, manifest says {} / {}",
                entry.n_features, entry.emb_dim
            )),
            Ok(Response::Error { code, message }) => Err(format!("{code:?}: {message}")),
            Ok(_) => Err("unexpected answer to load".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether scoring can succeed now, and why not.
    pub fn readiness(&self) -> Readiness {
        let model = self.active();
        let model_version = model.as_ref().map(|m| m.manifest.model_id.clone());
        let mut reasons = Vec::new();
        if model_version.is_none() {
            reasons.push("no model is loaded".to_string());
        }
        let parties: Vec<PartyReadiness> = self
            .parties
            .iter()
            .map(|p| PartyReadiness {
                party: p.clone(),
                connected: self.local.is_some() || self.registry.is_connected(p),
                unresponsive: self.local.is_none() && self.registry.is_unresponsive(p),
                model: self.party_model(p),
            })
            .collect();
        for p in &parties {
            if !p.connected {
                reasons.push(format!("party {} is not connected", p.party));
            } else if p.unresponsive {
                reasons.push(format!(
                    "party {} did not answer its last request in time",
                    p.party
                ));
            } else if model_version.is_some() && p.model != model_version {
                reasons.push(format!("party {} has not loaded the model", p.party));
            }
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
            model_version,
            parties,
        }
    }

    /// Scores one customer.
    ///
    /// # Errors
    /// [`ScoreError`]: no model, unknown customer, parties unavailable, malformed answer.
    pub async fn score(&self, customer_id: &str) -> Result<Scored, ScoreError> {
        if let Some(queue) = self.queue.get() {
            let (reply, answer) = oneshot::channel();
            let pending = Pending {
                id: customer_id.to_string(),
                reply,
            };
            if queue.send(pending).await.is_ok()
                && let Ok(r) = answer.await
            {
                return r;
            }
            // The dispatchers are gone (shutting down): score directly.
        }
        let mut v = self.score_many(&[customer_id.to_string()]).await?;
        v.pop()
            .unwrap_or(Err(ItemError::PartiesUnavailable(Vec::new())))
            .map_err(ScoreError::from)
    }

    /// Scores several customers in one fan-out per party (chunks of [`crate::scoring::CHUNK`]).
    ///
    /// # Returns
    /// One result per id, in order.
    ///
    /// # Errors
    /// [`ScoreError::NoModel`] or [`ScoreError::BadAnswer`] (the whole batch fails).
    pub async fn score_many(&self, ids: &[String]) -> Result<Vec<Result<Scored, ItemError>>, ScoreError> {
        let model = self.active().ok_or(ScoreError::NoModel)?;
        let version = model.manifest.model_id.clone();
        // Only parties that have the active model loaded can contribute.
        let ready: Vec<PartyId> = self
            .parties
            .iter()
            .filter(|p| self.party_model(p).as_ref() == Some(&version))
            .cloned()
            .collect();
        let dictionaries = self.dictionaries.read().map(|d| d.clone()).unwrap_or_default();
        let lost = |p: &PartyId| {
            // The party lost its model (restarted): mark it so readiness reflects it.
            if let Some(conn) = self.registry.connection(p) {
                self.registry.set_model(p, &conn, None);
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
        };
        let scored = match &self.local {
            Some(fed) => crate::scoring::score_batch(fed, &ready, &ctx, ids).await,
            None => crate::scoring::score_batch(&self.registry, &ready, &ctx, ids).await,
        };
        scored.map_err(|crate::scoring::BatchError::BadAnswer(p)| ScoreError::BadAnswer(p))
    }
}
