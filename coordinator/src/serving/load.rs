//! Loading a model (the active one, a shadow, one about to be activated) onto a party's
//! connection and checking its answer against the manifest.

use tessera_common::transport::Link;
use tessera_common::wire::{ErrorCode, PartyId, Request, Response};
use tracing::info;

use super::{ActiveModel, Serving};
use crate::registry::CallError;

/// Why a party could not load the active model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The party has no connection.
    #[error("not connected")]
    NotConnected,
    /// The active model was trained without this party.
    #[error("model {0} has no part for this party")]
    NoPart(String),
    /// The party's saved model does not fit the manifest.
    #[error(
        "party's model {model} has {n_features} features / embedding {emb_dim}, manifest says {want_features} / {want_emb_dim}"
    )]
    Mismatch {
        /// The model.
        model: String,
        /// Features the party's model takes.
        n_features: u32,
        /// Its embedding width.
        emb_dim: u32,
        /// Features the manifest records.
        want_features: u32,
        /// Embedding width the manifest records.
        want_emb_dim: u32,
    },
    /// The party refused (e.g. it does not have the model's files).
    #[error("{code:?}: {message}")]
    Refused {
        /// The party's error code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The party answered with something other than a model description.
    #[error("unexpected answer to load")]
    Unexpected,
    /// The call failed or timed out.
    #[error(transparent)]
    Call(#[from] CallError),
}

impl Serving {
    /// Asks the party's current connection to load `model`, and records it as loaded there.
    ///
    /// # Errors
    /// [`LoadError`] if the party is not connected, lacks the model, or its model does not
    /// match the manifest.
    pub async fn load_on_party(&self, party: &PartyId, model: &ActiveModel) -> Result<(), LoadError> {
        let link = self.registry.connection(party).ok_or(LoadError::NotConnected)?;
        self.load_model_on_link(party, &link, model).await?;
        self.registry.loaded(party, &link, &model.manifest.model_id);
        Ok(())
    }

    /// Asks the party on `link` (a connection about to become current) to load the active
    /// model and the shadow, if any.
    ///
    /// # Returns
    /// The models loaded, the active one first (empty when no model is active).
    ///
    /// # Errors
    /// [`LoadError`] if the party cannot load the active model (a shadow that fails is only
    /// logged).
    pub async fn load_on_link(&self, party: &PartyId, link: &Link) -> Result<Vec<String>, LoadError> {
        let Some(active) = self.active() else {
            return Ok(Vec::new());
        };
        self.load_model_on_link(party, link, &active).await?;
        let mut loaded = vec![active.manifest.model_id.clone()];
        if let Some(shadow) = self.shadow() {
            match self.load_model_on_link(party, link, &shadow).await {
                // Most recently loaded first: the shadow, then the active model.
                Ok(()) => loaded.insert(0, shadow.manifest.model_id.clone()),
                Err(e) => tracing::warn!(party = %party, error = %e, "party could not load the shadow model"),
            }
        }
        Ok(loaded)
    }

    /// Asks the party on `link` to load `model` and checks its answer against the manifest.
    /// Records the party's reason dictionary.
    ///
    /// # Errors
    /// [`LoadError`] if the party lacks the model or its model does not match.
    pub async fn load_model_on_link(
        &self,
        party: &PartyId,
        link: &Link,
        model: &ActiveModel,
    ) -> Result<(), LoadError> {
        let id = model.manifest.model_id.clone();
        let Some(entry) = model.manifest.parties.iter().find(|e| e.party_id == *party) else {
            return Err(LoadError::NoPart(id));
        };
        let request = Request::Load { model_id: id.clone() };
        let timeout = self.registry.settings().training_timeout();
        let answer = self.registry.call_on(party, link, &request, &[], timeout).await?;
        match answer {
            Response::Model {
                n_features,
                emb_dim,
                reasons,
            } if n_features == entry.n_features && emb_dim == entry.emb_dim => {
                info!(party = %party, model = %id, reason_codes = reasons.len(), "party loaded the model");
                if let Ok(mut d) = self.dictionaries.write() {
                    d.insert(party.clone(), reasons);
                }
                Ok(())
            }
            Response::Model {
                n_features, emb_dim, ..
            } => Err(LoadError::Mismatch {
                model: id,
                n_features,
                emb_dim,
                want_features: entry.n_features,
                want_emb_dim: entry.emb_dim,
            }),
            Response::Error { code, message } => Err(LoadError::Refused { code, message }),
            _ => Err(LoadError::Unexpected),
        }
    }
}
