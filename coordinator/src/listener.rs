//! The QUIC listener: admits certified, configured parties, registers their connections, has
//! them load the active model, and forgets them when they disconnect.
//!
//! Handshake admission, before any TLS work ([`Admission`]): an attempt from an address not
//! yet validated gets a stateless retry (a spoofed source never comes back, so it holds
//! nothing); a validated one needs a free handshake slot (at most [`MAX_HANDSHAKES`], at most
//! [`MAX_HANDSHAKES_PER_ADDRESS`] per IP address) or is refused at once, so a flood can neither
//! queue up behind the slots nor keep a bank from reconnecting for long (banks retry with
//! backoff); and an address may start at most [`ATTEMPTS_BURST`] validated attempts at once and
//! [`ATTEMPTS_PER_SECOND`] a second after that (a token bucket), so a reconnect storm from one
//! address costs the coordinator a bounded number of TLS handshakes per second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tessera_common::shutdown::Shutdown;
use tessera_common::transport::{self, Listener};
use tracing::{debug, info, warn};

use crate::serving::Serving;

/// Most handshakes in progress at once; more attempts are refused.
pub const MAX_HANDSHAKES: usize = 64;
/// Most handshakes in progress at once from one IP address.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 4;

/// Validated connection attempts one address may start at once (a bank reconnecting with its
/// backoff makes one every 200 ms at the most).
pub const ATTEMPTS_BURST: f64 = 10.0;
/// Validated connection attempts one address may start per second, beyond the burst.
pub const ATTEMPTS_PER_SECOND: f64 = 2.0;
/// Addresses whose attempt rate is remembered; beyond it, idle ones (a full bucket) are
/// forgotten.
const MAX_RATE_ENTRIES: usize = 10_000;

/// What to do with a connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Ask the peer to prove its address (stateless retry).
    Retry,
    /// Start the handshake (a slot is taken; give it back with [`Admission::done`]).
    Admit,
    /// Refuse: every slot is busy.
    Saturated,
    /// Refuse: this address already has its share of slots.
    TooManyFromAddress,
    /// Refuse: this address starts attempts faster than [`ATTEMPTS_PER_SECOND`].
    TooFrequent,
}

impl Decision {
    /// A label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Retry => "retry",
            Decision::Admit => "admitted",
            Decision::Saturated => "saturated",
            Decision::TooManyFromAddress => "per_address",
            Decision::TooFrequent => "rate",
        }
    }
}

/// Handshake slots, overall and per IP address, and each address's attempt rate (no IO:
/// decided from what an attempt shows and the time).
#[derive(Debug, Default)]
pub struct Admission {
    busy: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Per address: attempts it may still start now (a token bucket), as of when.
    rate: HashMap<IpAddr, (f64, Instant)>,
}

impl Admission {
    /// Decides on an attempt from `ip` now; takes a slot when admitting.
    pub fn decide(&mut self, ip: IpAddr, validated: bool) -> Decision {
        self.decide_at(ip, validated, Instant::now())
    }

    /// Decides on an attempt from `ip` at `now`; takes a slot when admitting.
    pub fn decide_at(&mut self, ip: IpAddr, validated: bool, now: Instant) -> Decision {
        if !validated {
            return Decision::Retry;
        }
        if !self.take_token(ip, now) {
            return Decision::TooFrequent;
        }
        if self.busy >= MAX_HANDSHAKES {
            return Decision::Saturated;
        }
        let mine = self.per_address.entry(ip).or_insert(0);
        if *mine >= MAX_HANDSHAKES_PER_ADDRESS {
            return Decision::TooManyFromAddress;
        }
        *mine += 1;
        self.busy += 1;
        Decision::Admit
    }

    /// Spends one of `ip`'s attempts, if it has one left at `now`.
    fn take_token(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate.len() >= MAX_RATE_ENTRIES && !self.rate.contains_key(&ip) {
            self.rate.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * ATTEMPTS_PER_SECOND
                    < ATTEMPTS_BURST
            });
            if self.rate.len() >= MAX_RATE_ENTRIES {
                return false; // that many addresses all busy: a flood
            }
        }
        let (tokens, at) = self.rate.entry(ip).or_insert((ATTEMPTS_BURST, now));
        let refilled = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * ATTEMPTS_PER_SECOND)
            .min(ATTEMPTS_BURST);
        *at = now;
        if refilled < 1.0 {
            *tokens = refilled;
            return false;
        }
        *tokens = refilled - 1.0;
        true
    }

    /// Gives back the slot of an admitted attempt from `ip` (its handshake ended).
    pub fn done(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
            self.busy = self.busy.saturating_sub(1);
        }
    }
}

/// Accepts parties until shutdown; returns once every connection task has finished.
pub async fn run(listener: Listener, serving: Arc<Serving>, mut shutdown: Shutdown) {
    let admission = Arc::new(Mutex::new(Admission::default()));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
        let incoming = tokio::select! {
            i = listener.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = shutdown.recv() => break,
        };
        let ip = incoming.remote_address().ip();
        let decision = match admission.lock() {
            Ok(mut a) => a.decide(ip, incoming.address_validated()),
            Err(_) => Decision::Saturated,
        };
        serving
            .registry()
            .metrics()
            .handshake_admission
            .with_label_values(&[decision.label()])
            .inc();
        match decision {
            Decision::Admit => {}
            Decision::Retry => {
                if !incoming.retry() {
                    debug!(%ip, "connection attempt could not be retried; dropped");
                }
                continue;
            }
            Decision::Saturated | Decision::TooManyFromAddress | Decision::TooFrequent => {
                debug!(%ip, reason = decision.label(), "connection attempt refused");
                incoming.refuse();
                continue;
            }
        }
        let slot = Slot(admission.clone(), ip);
        let serving = serving.clone();
        let mut shutdown = shutdown.clone();
        connections.spawn(async move {
            let remote = incoming.remote_address();
            let settings = serving.registry().settings().clone();
            let registry = serving.registry().clone();
            let live = move |p: &tessera_common::wire::PartyId| registry.live_instance(p);
            let accepted = incoming.accept(serving.parties(), &live, &settings).await;
            drop(slot);
            let (link, party, instance) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    let reason = e.refusal_label();
                    serving
                        .registry()
                        .metrics()
                        .handshake_refusals
                        .with_label_values(&[reason])
                        .inc();
                    warn!(%remote, reason, error = %e, "refused a connection");
                    return;
                }
            };
            let cert = link.peer_certificate();
            if let Some(c) = &cert {
                transport::warn_if_expiring(party.as_str(), c, settings.cert_warn_days);
            }
            info!(party = %party, %remote, serial = cert.as_ref().map(|c| c.serial.as_str()).unwrap_or("?"), "party connected");
            // Load the model before the connection becomes current, so that a party reconnecting
            // (e.g. after rotating its certificate) never appears without the model.
            let models = match serving.load_on_link(&party, &link).await {
                Ok(m) => m,
                Err(e) => {
                    warn!(party = %party, error = %e, "party could not load the active model");
                    Vec::new()
                }
            };
            if !serving.registry().insert(party.clone(), link.clone(), models, cert, instance) {
                warn!(party = %party, %remote, "refused a second live connection for this party (another process holds it)");
                return;
            }
            tokio::select! {
                reason = link.closed() => warn!(party = %party, %reason, "party disconnected"),
                _ = shutdown.recv() => {}
            }
            serving.registry().remove_if_current(&party, &link);
        });
    }
    // Handshakes in progress end with the endpoint; established connections see shutdown.
    while connections.join_next().await.is_some() {}
}

/// An admitted attempt's slot, given back when dropped.
struct Slot(Arc<Mutex<Admission>>, IpAddr);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut a) = self.0.lock() {
            a.done(self.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unvalidated_attempts_are_retried_and_slots_are_bounded_overall_and_per_address() {
        let mut a = Admission::default();
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        // Not validated: a retry, and no slot taken however many come.
        for _ in 0..1_000 {
            assert_eq!(a.decide(ip(1), false), Decision::Retry);
        }
        // One address gets its share, then is refused; others still get in.
        for _ in 0..MAX_HANDSHAKES_PER_ADDRESS {
            assert_eq!(a.decide(ip(1), true), Decision::Admit);
        }
        assert_eq!(a.decide(ip(1), true), Decision::TooManyFromAddress);
        assert_eq!(a.decide(ip(2), true), Decision::Admit);
        // Fill every slot from many addresses: the next is refused, not queued.
        let mut k = 3;
        while a.busy < MAX_HANDSHAKES {
            assert_eq!(a.decide(ip(k), true), Decision::Admit);
            k += 1;
        }
        assert_eq!(a.decide(ip(999), true), Decision::Saturated);
        // A finished handshake frees its slot and its address's share.
        a.done(ip(1));
        assert_eq!(a.decide(ip(999), true), Decision::Admit);
        assert_eq!(a.decide(ip(1), true), Decision::Saturated);
        a.done(ip(2));
        assert_eq!(a.decide(ip(1), true), Decision::Admit);
        // Giving back a slot never taken changes nothing.
        let before = a.busy;
        a.done(ip(12345));
        assert_eq!(a.busy, before);
    }

    #[test]
    fn an_address_starts_a_burst_of_attempts_then_two_a_second() {
        let mut a = Admission::default();
        let (one, other) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        let burst = ATTEMPTS_BURST as usize;
        for _ in 0..burst {
            assert_eq!(a.decide_at(one, true, t0), Decision::Admit);
            a.done(one);
        }
        assert_eq!(a.decide_at(one, true, t0), Decision::TooFrequent);
        assert_eq!(
            a.decide_at(other, true, t0),
            Decision::Admit,
            "another address is not affected"
        );
        // Unvalidated attempts (retries) spend nothing.
        assert_eq!(a.decide_at(one, false, t0), Decision::Retry);
        // Half a second later, one more (2 a second); then none again.
        let later = t0 + std::time::Duration::from_millis(500);
        assert_eq!(a.decide_at(one, true, later), Decision::Admit);
        a.done(one);
        assert_eq!(a.decide_at(one, true, later), Decision::TooFrequent);
        // Refused attempts do not push the next allowed one further away.
        let much_later = t0 + std::time::Duration::from_secs(60);
        for _ in 0..burst {
            assert_eq!(a.decide_at(one, true, much_later), Decision::Admit);
            a.done(one);
        }
        assert_eq!(a.decide_at(one, true, much_later), Decision::TooFrequent);
    }

    #[test]
    fn the_rate_table_forgets_idle_addresses_and_is_bounded() {
        let mut a = Admission::default();
        let t0 = Instant::now();
        for i in 0..MAX_RATE_ENTRIES as u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(a.decide_at(ip, true, t0), Decision::Admit);
            a.done(ip);
        }
        assert_eq!(a.rate.len(), MAX_RATE_ENTRIES);
        // At once, every entry is still spending: a new address is refused, the table stays bounded.
        let new = IpAddr::from([192, 168, 0, 1]);
        assert_eq!(a.decide_at(new, true, t0), Decision::TooFrequent);
        assert_eq!(a.rate.len(), MAX_RATE_ENTRIES);
        // Once they have refilled, they are forgotten and the new address gets in.
        let later = t0 + std::time::Duration::from_secs(10);
        assert_eq!(a.decide_at(new, true, later), Decision::Admit);
        assert_eq!(a.rate.len(), 1);
    }
}
