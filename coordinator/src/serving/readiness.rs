//! Whether the coordinator can score now, and each party's part in that.

use tessera_common::wire::PartyId;

use super::Serving;

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

impl Serving {
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
}
