//! Parties in this process: a [`Federation`] that calls [`PartyService`]s directly, with no
//! network. Used by tests, hyperparameter searches, and as the in-process baseline that
//! federated training is benchmarked against. The same requests, the same code paths, no QUIC.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tessera_common::federation::Federation;
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{PartyId, Request, Response};

use crate::service::PartyService;

/// Party services by id.
#[derive(Clone, Default)]
pub struct LocalFederation {
    parties: BTreeMap<PartyId, Arc<PartyService>>,
}

impl LocalFederation {
    /// An empty federation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a party.
    pub fn add(&mut self, service: Arc<PartyService>) {
        self.parties.insert(service.id().clone(), service);
    }

    /// The party ids, in id order.
    pub fn ids(&self) -> Vec<PartyId> {
        self.parties.keys().cloned().collect()
    }
}

impl Federation for LocalFederation {
    fn fanout<F>(
        &self,
        parties: &[PartyId],
        request_for: F,
        _timeout: Duration,
    ) -> impl Future<Output = Vec<(PartyId, Outcome<Response>)>> + Send
    where
        F: Fn(&PartyId) -> Request + Send + Sync,
    {
        let mut out: Vec<(PartyId, Outcome<Response>)> = parties
            .iter()
            .map(|p| {
                let o = match self.parties.get(p) {
                    Some(s) => Outcome::Answered(s.handle(request_for(p))),
                    None => Outcome::Failed(format!("party {p} is not in this federation")),
                };
                (p.clone(), o)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        std::future::ready(out)
    }
}
