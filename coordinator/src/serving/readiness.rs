//! Whether the coordinator can score now, and each party's part in that.
//!
//! Ready means a model is loaded and at least `scoring.min_parties` banks are connected,
//! responsive and have loaded it: what a score needs. A bank that is down makes answers
//! degraded, not the coordinator unready, so one bank's outage does not take every
//! coordinator replica out of its load balancer; the body and the metrics name it.

use tessera_common::wire::PartyId;

use super::Serving;

/// Readiness of the coordinator to score.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Readiness {
    /// Whether scoring can succeed now.
    pub ready: bool,
    /// Why not, if not; and, when ready, why answers are degraded.
    pub reasons: Vec<String>,
    /// Whether some configured bank cannot contribute now (answers are degraded).
    pub degraded: bool,
    /// The banks that cannot contribute now.
    pub missing_parties: Vec<PartyId>,
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
    /// The active model if it has it loaded, else the model it loaded last.
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
                model: match &model_version {
                    Some(active) if self.registry.has_model(p, active) => Some(active.clone()),
                    _ => self.registry.models_of(p).into_iter().next(),
                },
            })
            .collect();
        let mut missing = Vec::new();
        for p in &parties {
            let why = if !p.connected {
                "is not connected"
            } else if p.unresponsive {
                "did not answer its last request in time"
            } else if model_version.is_some() && p.model != model_version {
                "has not loaded the model"
            } else {
                continue;
            };
            reasons.push(format!("party {} {why}", p.party));
            missing.push(p.party.clone());
        }
        let able = parties.len() - missing.len();
        let ready = model_version.is_some() && able >= self.min_parties.max(1);
        if model_version.is_some() && !ready {
            reasons.push(format!(
                "{able} of {} parties can contribute; scoring needs at least {}",
                parties.len(),
                self.min_parties.max(1)
            ));
        }
        Readiness {
            ready,
            degraded: !missing.is_empty(),
            missing_parties: missing,
            reasons,
            model_version,
            parties,
        }
    }
}
