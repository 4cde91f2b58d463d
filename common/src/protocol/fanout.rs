//! Deadline bookkeeping for one request sent to several parties at once.
//!
//! A [`Fanout`] is created with the parties asked and a deadline. The driver feeds it each
//! party's outcome with [`Fanout::handle_outcome`], and calls [`Fanout::handle_timeout`]
//! when the instant from [`Fanout::poll_timeout`] passes. Once [`Fanout::is_complete`], every
//! party has exactly one [`Outcome`]: an answer, a failure, or a time-out. Nothing here
//! reads a clock; `now` is an argument.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::wire::PartyId;

/// What became of the request to one party.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<R> {
    /// The party answered.
    Answered(R),
    /// The party could not be asked or the exchange failed.
    Failed(Failure),
    /// No answer before the deadline.
    TimedOut,
}

/// Why a request to a party produced no answer, other than its deadline passing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The party has no connection (never connected, or it went away).
    #[error("not connected")]
    NotConnected,
    /// The connection or the request's stream was lost or reset.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The party's answer was not a well-formed frame of the expected kind.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The party closed the stream without answering.
    #[error("closed the stream without answering")]
    NoAnswer,
}

/// One request fanned out to several parties, with one deadline for all.
#[derive(Debug)]
pub struct Fanout<R> {
    deadline: Instant,
    outcomes: BTreeMap<PartyId, Option<Outcome<R>>>,
}

impl<R> Fanout<R> {
    /// Starts a fan-out at `now` to `parties`, due within `timeout`.
    pub fn new(now: Instant, parties: impl IntoIterator<Item = PartyId>, timeout: Duration) -> Self {
        Self {
            deadline: now + timeout,
            outcomes: parties.into_iter().map(|p| (p, None)).collect(),
        }
    }

    /// Records a party's outcome. Outcomes for parties not asked, or after the party already
    /// has one (a late answer after a time-out), are ignored.
    pub fn handle_outcome(&mut self, party: &PartyId, outcome: Outcome<R>) {
        if let Some(slot) = self.outcomes.get_mut(party)
            && slot.is_none()
        {
            *slot = Some(outcome);
        }
    }

    /// Marks every party still pending as timed out if `now` is at or past the deadline.
    /// An early call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.deadline {
            return;
        }
        for slot in self.outcomes.values_mut() {
            if slot.is_none() {
                *slot = Some(Outcome::TimedOut);
            }
        }
    }

    /// When [`Fanout::handle_timeout`] should next be called; `None` once complete.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_complete()).then_some(self.deadline)
    }

    /// Whether every party has an outcome.
    pub fn is_complete(&self) -> bool {
        self.outcomes.values().all(Option::is_some)
    }

    /// The outcomes, in party id order. Parties still pending count as timed out.
    pub fn into_outcomes(self) -> Vec<(PartyId, Outcome<R>)> {
        self.outcomes
            .into_iter()
            .map(|(p, o)| (p, o.unwrap_or(Outcome::TimedOut)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PartyId {
        PartyId::new(s).unwrap()
    }

    #[test]
    fn completes_when_all_answer() {
        let t0 = Instant::now();
        let mut f = Fanout::new(t0, [id("a"), id("b")], Duration::from_secs(1));
        assert_eq!(f.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        f.handle_outcome(&id("b"), Outcome::Answered(2));
        assert!(!f.is_complete());
        f.handle_outcome(&id("zz"), Outcome::Answered(9)); // not asked: ignored
        f.handle_outcome(&id("a"), Outcome::Failed(Failure::Lost("reset".into())));
        assert!(f.is_complete());
        assert_eq!(f.poll_timeout(), None);
        assert_eq!(
            f.into_outcomes(),
            vec![
                (id("a"), Outcome::Failed(Failure::Lost("reset".into()))),
                (id("b"), Outcome::Answered(2))
            ]
        );
    }

    #[test]
    fn deadline_times_out_pending_parties_only() {
        let t0 = Instant::now();
        let mut f = Fanout::new(t0, [id("a"), id("b")], Duration::from_millis(100));
        f.handle_outcome(&id("a"), Outcome::Answered(1));
        f.handle_timeout(t0 + Duration::from_millis(99)); // early: nothing
        assert!(!f.is_complete());
        f.handle_timeout(t0 + Duration::from_millis(100));
        assert!(f.is_complete());
        f.handle_outcome(&id("b"), Outcome::Answered(2)); // late answer ignored
        assert_eq!(
            f.into_outcomes(),
            vec![(id("a"), Outcome::Answered(1)), (id("b"), Outcome::TimedOut)]
        );
    }

    #[test]
    fn first_outcome_wins() {
        let t0 = Instant::now();
        let mut f = Fanout::new(t0, [id("a")], Duration::from_secs(1));
        f.handle_outcome(&id("a"), Outcome::Answered(1));
        f.handle_outcome(&id("a"), Outcome::Answered(2));
        assert_eq!(f.into_outcomes(), vec![(id("a"), Outcome::Answered(1))]);
    }
}
