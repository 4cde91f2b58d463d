//! The circuit breaker of an unresponsive party: while its last request timed out, scoring
//! calls to it give up after `transport.unresponsive_timeout_ms`, and one background probe at
//! a time, with the full timeout, clears the mark when it answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tessera_common::transport::Link;
use tessera_common::wire::{PartyId, Request};

use super::Registry;

/// The claim on probing an unresponsive party; the next probe may start once it is dropped.
pub(super) struct Probe(Arc<AtomicBool>);

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Registry {
    /// The deadline of a call to `party` on `link`: `deadline`, unless the party is
    /// unresponsive (its last request timed out, no answer since) and `deadline` is a scoring
    /// deadline (at most `request_timeout_ms`; training calls are not shortened); then at most
    /// `unresponsive_timeout_ms`, so a dead or frozen party delays answers by that much, not by
    /// the whole timeout. With it, the first such call claims the probe: a `Describe` sent in
    /// the background with the full request timeout, which clears the mark when the party
    /// answers (one probe at a time per connection).
    pub(super) fn deadline_for(
        &self,
        party: &PartyId,
        link: &Link,
        deadline: Duration,
    ) -> (Duration, Option<Probe>) {
        let Ok(m) = self.links.read() else {
            return (deadline, None);
        };
        let Some(member) = m
            .get(party)
            .filter(|l| l.link.id() == link.id() && l.unresponsive)
        else {
            return (deadline, None);
        };
        if deadline > self.settings.request_timeout() {
            return (deadline, None);
        }
        let probe = member
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then(|| Probe(member.probing.clone()));
        (deadline.min(self.settings.unresponsive_timeout()), probe)
    }

    /// Sends the probe of an unresponsive party in the background (see [`Self::deadline_for`]).
    pub(super) fn spawn_probe(&self, party: &PartyId, link: &Link, probe: Probe) {
        let (this, party, link) = (self.clone(), party.clone(), link.clone());
        tokio::spawn(async move {
            let answer = link
                .call(
                    &Request::Describe,
                    &[],
                    &this.settings,
                    this.settings.request_timeout(),
                )
                .await;
            if answer.is_ok() {
                this.answered(&party, &link);
            }
            drop(probe);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use tessera_common::config::TransportSettings;
    use tessera_common::federation::Handler;
    use tessera_common::wire::Response;

    struct Silent;
    impl Handler for Silent {
        fn handle(&self, _request: Request) -> Response {
            Response::Ack
        }
    }

    #[test]
    fn an_unresponsive_party_gets_short_deadlines_and_one_probe_at_a_time() {
        let settings = TransportSettings::default();
        let registry = Registry::new(settings.clone(), Metrics::new().unwrap());
        let party = PartyId::new("bank-a").unwrap();
        let link = Link::in_memory(Arc::new(Silent));
        assert!(registry.insert(party.clone(), link.clone(), Vec::new(), None, 1));
        let full = settings.request_timeout();
        let short = settings.unresponsive_timeout();
        let training = settings.training_timeout();
        assert!(short < full && full < training);

        // Responsive: the full deadline, no probe.
        let (d, probe) = registry.deadline_for(&party, &link, full);
        assert_eq!((d, probe.is_some()), (full, false));

        registry.set_unresponsive(&party, &link, true);
        let (d1, probe1) = registry.deadline_for(&party, &link, full);
        assert_eq!(
            (d1, probe1.is_some()),
            (short, true),
            "short, and the first call claims the probe"
        );
        let (d2, probe2) = registry.deadline_for(&party, &link, full);
        assert_eq!((d2, probe2.is_some()), (short, false), "one probe at a time");
        let tiny = Duration::from_millis(1);
        assert_eq!(
            registry.deadline_for(&party, &link, tiny).0,
            tiny,
            "a shorter deadline is kept"
        );
        let (dt, probet) = registry.deadline_for(&party, &link, training);
        assert_eq!(
            (dt, probet.is_some()),
            (training, false),
            "training calls are not shortened"
        );
        drop(probe1);
        let (_, probe3) = registry.deadline_for(&party, &link, full);
        assert!(
            probe3.is_some(),
            "the next probe may start once the last one ended"
        );
        drop(probe3);

        // Another link of the same party (not the current one) is not affected.
        let other = Link::in_memory(Arc::new(Silent));
        assert_eq!(registry.deadline_for(&party, &other, full).0, full);

        // An answer clears it.
        registry.answered(&party, &link);
        let (d, probe) = registry.deadline_for(&party, &link, full);
        assert_eq!((d, probe.is_some()), (full, false));
    }

    #[tokio::test]
    async fn the_probe_clears_the_mark_when_the_party_answers() {
        let registry = Registry::new(TransportSettings::default(), Metrics::new().unwrap());
        let party = PartyId::new("bank-a").unwrap();
        let link = Link::in_memory(Arc::new(Silent));
        assert!(registry.insert(party.clone(), link.clone(), Vec::new(), None, 1));
        registry.set_unresponsive(&party, &link, true);
        let (_, probe) = registry.deadline_for(&party, &link, Duration::from_secs(1));
        registry.spawn_probe(&party, &link, probe.unwrap());
        for _ in 0..100 {
            if !registry.is_unresponsive(&party) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the probe's answer did not clear the mark");
    }
}
