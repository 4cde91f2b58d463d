//! What a training driver needs from a federation: fan one request out to several parties and
//! collect one [`Outcome`] each. The coordinator's QUIC registry implements it; the party
//! crate's in-process federation implements it for tests and benchmarks.

use std::future::Future;
use std::time::Duration;

use crate::protocol::fanout::Outcome;
use crate::wire::{PartyId, Request, Response};

/// Something that can send requests to parties.
pub trait Federation: Sync {
    /// Sends `request_for(party)` to each of `parties` and returns one outcome per party, in
    /// party id order, within `timeout`.
    fn fanout<F>(
        &self,
        parties: &[PartyId],
        request_for: F,
        timeout: Duration,
    ) -> impl Future<Output = Vec<(PartyId, Outcome<Response>)>> + Send
    where
        F: Fn(&PartyId) -> Request + Send + Sync;
}
