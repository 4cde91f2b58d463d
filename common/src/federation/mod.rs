//! Fanning requests out to parties, independent of how they are reached.
//!
//! - [`Handler`]: anything that answers one [`Request`] with one [`Response`] (a party's service).
//! - [`Federation`]: what the training and scoring drivers need: one request fanned out to
//!   several parties, one [`Outcome`] each. The coordinator's QUIC registry implements it;
//!   [`InMemory`] implements it over handlers in this process, for tests, examples and the
//!   benchmarks' in-process baseline.

mod memory;

use std::future::Future;
use std::time::Duration;

use crate::protocol::fanout::Outcome;
use crate::wire::{PartyId, Request, Response};

pub use memory::InMemory;

/// Answers requests: the party side of the protocol, with no knowledge of how requests arrive.
pub trait Handler: Send + Sync {
    /// Answers one request. Errors are answered as [`Response::Error`].
    fn handle(&self, request: Request) -> Response;

    /// Whether `request` is cheap enough (tens of microseconds) to answer on an async worker
    /// thread instead of handing it to the blocking pool. The default is no.
    fn is_cheap(&self, _request: &Request) -> bool {
        false
    }
}

/// Something that can send requests to parties.
pub trait Federation: Sync {
    /// Sends `request_for(party)` to each of `parties` and returns one outcome per party, in
    /// party id order, within `timeout`. `trace` names what the requests serve (HTTP request
    /// ids, or the training run) for the parties' logs; it may be empty.
    fn fanout<F>(
        &self,
        parties: &[PartyId],
        request_for: F,
        timeout: Duration,
        trace: &[String],
    ) -> impl Future<Output = Vec<(PartyId, Outcome<Response>)>> + Send
    where
        F: Fn(&PartyId) -> Request + Send + Sync;
}
