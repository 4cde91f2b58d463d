//! The QUIC registry as a [`Federation`] for the training driver.

use std::future::Future;
use std::time::Duration;

use tessera_common::federation::Federation;
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{PartyId, Request, Response};

use crate::registry::Registry;

impl Federation for Registry {
    fn fanout<F>(
        &self,
        parties: &[PartyId],
        request_for: F,
        timeout: Duration,
        trace: &[String],
    ) -> impl Future<Output = Vec<(PartyId, Outcome<Response>)>> + Send
    where
        F: Fn(&PartyId) -> Request + Send + Sync,
    {
        Registry::fanout(self, parties, request_for, timeout, trace)
    }
}
