//! Parties in this process: a [`Federation`] that calls [`Handler`]s directly, with no
//! network. Used by tests, examples, and as the in-process baseline that federated training
//! is benchmarked against: the same requests and code paths, no QUIC.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Federation, Handler};
use crate::protocol::fanout::{Failure, Outcome};
use crate::wire::{PartyId, Request, Response};

/// Handlers by party id.
#[derive(Clone, Default)]
pub struct InMemory {
    parties: BTreeMap<PartyId, Arc<dyn Handler>>,
}

impl InMemory {
    /// An empty federation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `party`, answered by `handler`.
    pub fn add(&mut self, party: PartyId, handler: Arc<dyn Handler>) {
        self.parties.insert(party, handler);
    }

    /// The party ids, in id order.
    pub fn ids(&self) -> Vec<PartyId> {
        self.parties.keys().cloned().collect()
    }

    /// Each party and its handler, in id order.
    pub fn handlers(&self) -> impl Iterator<Item = (&PartyId, &Arc<dyn Handler>)> {
        self.parties.iter()
    }
}

impl Federation for InMemory {
    fn fanout<F>(
        &self,
        parties: &[PartyId],
        request_for: F,
        _timeout: Duration,
        _trace: &[String],
    ) -> impl Future<Output = Vec<(PartyId, Outcome<Response>)>> + Send
    where
        F: Fn(&PartyId) -> Request + Send + Sync,
    {
        let mut out: Vec<(PartyId, Outcome<Response>)> = parties
            .iter()
            .map(|p| {
                let o = match self.parties.get(p) {
                    Some(h) => Outcome::Answered(h.handle(request_for(p))),
                    None => Outcome::Failed(Failure::NotConnected),
                };
                (p.clone(), o)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        std::future::ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, _request: Request) -> Response {
            Response::Ack
        }
    }

    #[test]
    fn unknown_parties_fail_as_not_connected_and_outcomes_come_in_id_order() {
        let mut fed = InMemory::new();
        let (a, b) = (PartyId::new("a").unwrap(), PartyId::new("b").unwrap());
        fed.add(a.clone(), Arc::new(Echo));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let out = rt.block_on(fed.fanout(
            &[b.clone(), a.clone()],
            |_| Request::Describe,
            Duration::ZERO,
            &[],
        ));
        assert_eq!(
            out,
            vec![
                (a, Outcome::Answered(Response::Ack)),
                (b, Outcome::Failed(Failure::NotConnected))
            ]
        );
    }
}
