//! The active model and scoring: loading the model onto every party, readiness, and scoring
//! one customer by fanning out to the parties under one deadline.

use std::sync::{Arc, RwLock};

use ndarray::Array2;
use tessera_common::model::{ScoreScale, TopModel};
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{ErrorCode, PartyId, Request, Response};
use tracing::{info, warn};

use crate::artifact::Manifest;
use crate::registry::Registry;

/// A model ready to score.
#[derive(Debug)]
pub struct ActiveModel {
    /// Its manifest.
    pub manifest: Manifest,
    /// The top model.
    pub top: TopModel,
}

/// What became of one party during a scoring request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartyStatus {
    /// The party contributed its embedding.
    Ok,
    /// The party does not know this customer.
    UnknownCustomer,
    /// The party is not connected, has not loaded the model, or failed.
    Unavailable,
    /// The party did not answer in time.
    Timeout,
}

/// A scored customer.
#[derive(Clone, Debug)]
pub struct Scored {
    /// Probability of default.
    pub pd: f64,
    /// Score on the configured scale.
    pub score: i32,
    /// Model that scored.
    pub model_version: String,
    /// Each party's status.
    pub parties: Vec<(PartyId, PartyStatus)>,
    /// Parties that did not contribute (their absent embedding was used): the score is degraded.
    pub missing: Vec<PartyId>,
}

/// Why a customer could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// No model is active.
    #[error("no model is loaded")]
    NoModel,
    /// No party knows the customer, or a party needed by the model does not.
    #[error("customer not found at: {}", names(.0, PartyStatus::UnknownCustomer))]
    UnknownCustomer(Vec<(PartyId, PartyStatus)>),
    /// A party needed by the model is unavailable or timed out.
    #[error("parties unavailable: {}", unavailable(.0))]
    PartiesUnavailable(Vec<(PartyId, PartyStatus)>),
    /// A party answered with something malformed.
    #[error("party {0} sent a malformed answer")]
    BadAnswer(PartyId),
}

fn names(v: &[(PartyId, PartyStatus)], status: PartyStatus) -> String {
    v.iter()
        .filter(|(_, s)| *s == status)
        .map(|(p, _)| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn unavailable(v: &[(PartyId, PartyStatus)]) -> String {
    v.iter()
        .filter(|(_, s)| matches!(s, PartyStatus::Unavailable | PartyStatus::Timeout))
        .map(|(p, s)| {
            format!(
                "{p} ({})",
                if *s == PartyStatus::Timeout {
                    "timeout"
                } else {
                    "unavailable"
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl ScoreError {
    /// Party statuses, where the error has them.
    pub fn parties(&self) -> &[(PartyId, PartyStatus)] {
        match self {
            ScoreError::UnknownCustomer(v) | ScoreError::PartiesUnavailable(v) => v,
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
    active: RwLock<Option<Arc<ActiveModel>>>,
}

impl Serving {
    /// Serving over `parties` (configured order) with no model yet; a score needs at least
    /// `min_parties` contributing parties (others are replaced by their absent embedding).
    pub fn new(registry: Registry, parties: Vec<PartyId>, scale: ScoreScale, min_parties: usize) -> Self {
        Self {
            registry,
            parties,
            scale,
            min_parties,
            active: RwLock::new(None),
        }
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
            Ok(Response::Model { n_features, emb_dim })
                if n_features == entry.n_features && emb_dim == entry.emb_dim =>
            {
                info!(party = %party, model = %id, "party loaded the model");
                Ok(Some(id))
            }
            Ok(Response::Model { n_features, emb_dim }) => Err(format!(
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
                connected: self.registry.is_connected(p),
                unresponsive: self.registry.is_unresponsive(p),
                model: self.registry.model_of(p),
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
        let model = self.active().ok_or(ScoreError::NoModel)?;
        let version = model.manifest.model_id.clone();
        // Only parties that have the active model loaded can contribute.
        let ready: Vec<PartyId> = self
            .parties
            .iter()
            .filter(|p| self.registry.model_of(p).as_ref() == Some(&version))
            .cloned()
            .collect();
        let timeout = self.registry.settings().request_timeout();
        let ids = vec![customer_id.to_string()];
        let outcomes = self
            .registry
            .fanout(&ready, |_| Request::Embed { ids: ids.clone() }, timeout)
            .await;
        let mut statuses = Vec::with_capacity(self.parties.len());
        let mut parts = Vec::with_capacity(self.parties.len());
        let mut present = Vec::with_capacity(self.parties.len());
        for entry in &model.manifest.parties {
            let p = &entry.party_id;
            let d = entry.emb_dim as usize;
            let outcome = outcomes.iter().find(|(q, _)| q == p).map(|(_, o)| o);
            let mut embedding = None;
            let status = match outcome {
                None => PartyStatus::Unavailable,
                Some(Outcome::TimedOut) => PartyStatus::Timeout,
                Some(Outcome::Failed(_)) => PartyStatus::Unavailable,
                Some(Outcome::Answered(Response::Embeddings { matrix, known })) => {
                    if known.len() != 1
                        || matrix.rows != 1
                        || matrix.cols != entry.emb_dim
                        || !matrix.is_well_formed()
                    {
                        return Err(ScoreError::BadAnswer(p.clone()));
                    }
                    if known[0] {
                        embedding = Some(matrix.data.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>());
                        PartyStatus::Ok
                    } else {
                        PartyStatus::UnknownCustomer
                    }
                }
                Some(Outcome::Answered(Response::Error {
                    code: ErrorCode::NoModel,
                    ..
                })) => {
                    // The party lost its model (restarted): mark it so readiness reflects it.
                    if let Some(conn) = self.registry.connection(p) {
                        self.registry.set_model(p, &conn, None);
                    }
                    PartyStatus::Unavailable
                }
                Some(Outcome::Answered(_)) => PartyStatus::Unavailable,
            };
            present.push(vec![embedding.is_some()]);
            parts.push(
                Array2::from_shape_vec((1, d), embedding.unwrap_or_else(|| vec![0.0; d]))
                    .map_err(|_| ScoreError::BadAnswer(p.clone()))?,
            );
            statuses.push((p.clone(), status));
        }
        let contributing = statuses.iter().filter(|(_, s)| *s == PartyStatus::Ok).count();
        if contributing == 0 && statuses.iter().all(|(_, s)| *s == PartyStatus::UnknownCustomer) {
            return Err(ScoreError::UnknownCustomer(statuses));
        }
        if contributing < self.min_parties.max(1) {
            // Not enough of the federation to score: unknown customer if that is the reason,
            // else the parties are unavailable.
            if statuses
                .iter()
                .any(|(_, s)| matches!(s, PartyStatus::Unavailable | PartyStatus::Timeout))
            {
                return Err(ScoreError::PartiesUnavailable(statuses));
            }
            return Err(ScoreError::UnknownCustomer(statuses));
        }
        let x = model.top.input(&parts, &present);
        let pd = model.top.probabilities(x.view())[0];
        let missing: Vec<PartyId> = statuses
            .iter()
            .filter(|(_, s)| *s != PartyStatus::Ok)
            .map(|(p, _)| p.clone())
            .collect();
        Ok(Scored {
            pd,
            score: self.scale.score(pd),
            model_version: version,
            parties: statuses,
            missing,
        })
    }
}
