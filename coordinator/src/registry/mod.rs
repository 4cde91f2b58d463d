//! Which parties are connected, and calls to them: one request, or one request fanned out to
//! several parties under a single deadline (driving [`tessera_common::protocol::fanout`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tessera_common::config::TransportSettings;
use tessera_common::protocol::fanout::{Failure, Fanout, Outcome};
use tessera_common::transport::{self, CertInfo, CloseReason, Link};
use tessera_common::wire::{MAX_LOADED_MODELS, PartyId, Request, Response};
use tokio::task::JoinSet;

use crate::metrics::Metrics;

mod probe;

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A connected party.
#[derive(Clone)]
struct Member {
    link: Link,
    /// The models this party has loaded for scoring, most recently loaded first, as far as the
    /// coordinator knows (the party keeps the same [`MAX_LOADED_MODELS`]).
    models: Vec<String>,
    /// Whether the last request to this party timed out (cleared by the next answer).
    unresponsive: bool,
    /// Whether a probe (the one call that waits the full deadline while the party is
    /// unresponsive) is in flight.
    probing: Arc<AtomicBool>,
    /// The party's certificate on this connection.
    cert: Option<CertInfo>,
    /// The party process on the other end (see [`tessera_common::protocol::handshake::admit`]).
    instance: u64,
    /// When the party last answered on this connection, Unix milliseconds (0: not yet).
    last_answer_ms: Arc<AtomicI64>,
}

/// A connected party as the UI shows it.
#[derive(Clone, Debug)]
pub struct MemberView {
    /// The models it has loaded, most recently loaded first.
    pub models: Vec<String>,
    /// Whether its last request timed out.
    pub unresponsive: bool,
    /// The transport's round-trip estimate.
    pub rtt: Option<Duration>,
    /// When it last answered, Unix milliseconds.
    pub last_answer_ms: Option<i64>,
    /// Its certificate.
    pub cert: Option<CertInfo>,
}

/// The connected parties.
#[derive(Clone)]
pub struct Registry {
    links: Arc<RwLock<HashMap<PartyId, Member>>>,
    settings: TransportSettings,
    metrics: Metrics,
}

/// Why a call to a party did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The party is not connected.
    #[error("party {0} is not connected")]
    NotConnected(PartyId),
    /// The exchange failed or timed out.
    #[error("party {party}: {source}")]
    Transport {
        /// The party.
        party: PartyId,
        /// The cause.
        source: transport::TransportError,
    },
}

impl CallError {
    /// The call's outcome in a fan-out.
    pub fn outcome<R>(&self) -> Outcome<R> {
        match self {
            CallError::NotConnected(_) => Outcome::Failed(Failure::NotConnected),
            CallError::Transport {
                source: transport::TransportError::Timeout(..),
                ..
            } => Outcome::TimedOut,
            CallError::Transport { source, .. } => Outcome::Failed(source.failure()),
        }
    }
}

impl Registry {
    /// An empty registry.
    pub fn new(settings: TransportSettings, metrics: Metrics) -> Self {
        Self {
            links: Arc::new(RwLock::new(HashMap::new())),
            settings,
            metrics,
        }
    }

    /// The metrics the registry records into (shared with the rest of the coordinator).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Transport settings used for calls.
    pub fn settings(&self) -> &TransportSettings {
        &self.settings
    }

    /// Makes `link` the party's current connection, with the model it has loaded and its
    /// certificate. An older connection of the same party is not cut: requests already on it
    /// finish, and it is closed after `training_timeout_ms` unless the party closes it first
    /// (as it does after reconnecting with a rotated certificate).
    ///
    /// One identity, one live party: if the current connection is live and comes from another
    /// process (`instance`), `link` is closed with [`CloseReason::Duplicate`] instead (two
    /// processes that passed the handshake check at the same moment), and `false` returned.
    pub fn insert(
        &self,
        party: PartyId,
        link: Link,
        models: Vec<String>,
        cert: Option<CertInfo>,
        instance: u64,
    ) -> bool {
        let member = Member {
            link,
            models,
            unresponsive: false,
            probing: Arc::new(AtomicBool::new(false)),
            cert,
            instance,
            last_answer_ms: Arc::new(AtomicI64::new(0)),
        };
        let Ok(mut links) = self.links.write() else {
            return false;
        };
        if let Some(current) = links.get(&party)
            && current.instance != instance
            && !current.link.is_closed()
            && !current.unresponsive
        {
            member.link.close(CloseReason::Duplicate);
            return false;
        }
        let old = links.insert(party.clone(), member);
        drop(links);
        if let Some(old) = old {
            let grace = self.settings.training_timeout();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(grace) => old.link.close(CloseReason::Replaced),
                    _ = old.link.closed() => {}
                }
            });
        }
        self.metrics
            .party_connected
            .with_label_values(&[party.as_str()])
            .set(1);
        self.metrics
            .party_connections
            .with_label_values(&[party.as_str()])
            .inc();
        true
    }

    /// The process instance of the party's current connection, if it is live.
    pub fn live_instance(&self, party: &PartyId) -> Option<u64> {
        self.links.read().ok().and_then(|m| {
            m.get(party)
                .filter(|l| !l.link.is_closed() && !l.unresponsive)
                .map(|l| l.instance)
        })
    }

    /// Closes and forgets connections whose peer certificate is revoked (serial in `revoked`)
    /// or expired at `now` (Unix seconds). Returns the parties cut off.
    pub fn close_untrusted(&self, revoked: &std::collections::HashSet<String>, now: i64) -> Vec<PartyId> {
        let mut cut = Vec::new();
        if let Ok(mut m) = self.links.write() {
            m.retain(|party, link| {
                let bad = link
                    .cert
                    .as_ref()
                    .is_some_and(|c| revoked.contains(&c.serial) || c.not_after < now);
                if bad {
                    link.link.close(CloseReason::Certificate);
                    self.metrics
                        .party_connected
                        .with_label_values(&[party.as_str()])
                        .set(0);
                    cut.push(party.clone());
                }
                !bad
            });
        }
        cut
    }

    /// Each connected party's certificate.
    pub fn peer_certificates(&self) -> Vec<(PartyId, CertInfo)> {
        self.links
            .read()
            .map(|m| {
                m.iter()
                    .filter_map(|(p, l)| l.cert.clone().map(|c| (p.clone(), c)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes the party if `link` is still its current connection.
    pub fn remove_if_current(&self, party: &PartyId, link: &Link) {
        if let Ok(mut m) = self.links.write()
            && m.get(party).is_some_and(|l| l.link.id() == link.id())
        {
            m.remove(party);
            self.metrics
                .party_connected
                .with_label_values(&[party.as_str()])
                .set(0);
        }
    }

    /// Records that `party`'s connection `link` loaded `model` (the party then drops its least
    /// recently loaded model beyond [`MAX_LOADED_MODELS`], and so does this record).
    pub fn loaded(&self, party: &PartyId, link: &Link, model: &str) {
        if let Ok(mut m) = self.links.write()
            && let Some(member) = m.get_mut(party)
            && member.link.id() == link.id()
        {
            member.models.retain(|id| id != model);
            member.models.insert(0, model.to_string());
            member.models.truncate(MAX_LOADED_MODELS);
        }
    }

    /// Records that `party` no longer has `model` loaded (it answered so: it restarted).
    pub fn unloaded(&self, party: &PartyId, model: &str) {
        if let Ok(mut m) = self.links.write()
            && let Some(member) = m.get_mut(party)
        {
            member.models.retain(|id| id != model);
        }
    }

    /// Whether the last request to the party timed out with no answer since (a party that
    /// died without closing its connection shows here before the idle timeout notices).
    pub fn is_unresponsive(&self, party: &PartyId) -> bool {
        self.links
            .read()
            .is_ok_and(|m| m.get(party).is_some_and(|l| l.unresponsive))
    }

    fn set_unresponsive(&self, party: &PartyId, link: &Link, value: bool) {
        if let Ok(mut m) = self.links.write()
            && let Some(member) = m.get_mut(party)
            && member.link.id() == link.id()
            && member.unresponsive != value
        {
            member.unresponsive = value;
        }
    }

    /// The party's connection as the UI shows it (`None`: not connected).
    pub fn view(&self, party: &PartyId) -> Option<MemberView> {
        let m = self.links.read().ok()?;
        let member = m.get(party)?;
        let last = member.last_answer_ms.load(Ordering::Relaxed);
        Some(MemberView {
            models: member.models.clone(),
            unresponsive: member.unresponsive,
            rtt: member.link.rtt(),
            last_answer_ms: (last > 0).then_some(last),
            cert: member.cert.clone(),
        })
    }

    /// Notes an answer from `party` on `link`: when, and that it is responsive again. Takes
    /// the write lock only if the party was marked unresponsive.
    fn answered(&self, party: &PartyId, link: &Link) {
        let was_unresponsive = match self.links.read() {
            Ok(m) => match m.get(party).filter(|l| l.link.id() == link.id()) {
                Some(member) => {
                    member.last_answer_ms.store(unix_ms(), Ordering::Relaxed);
                    member.unresponsive
                }
                None => false,
            },
            Err(_) => false,
        };
        if was_unresponsive {
            self.set_unresponsive(party, link, false);
        }
    }

    /// Whether the party is connected.
    pub fn is_connected(&self, party: &PartyId) -> bool {
        self.links.read().is_ok_and(|m| m.contains_key(party))
    }

    /// Whether the party is connected with `model` loaded.
    pub fn has_model(&self, party: &PartyId, model: &str) -> bool {
        self.links.read().is_ok_and(|m| {
            m.get(party)
                .is_some_and(|l| l.models.iter().any(|id| id == model))
        })
    }

    /// The models the party has loaded, most recently loaded first (empty if not connected).
    pub fn models_of(&self, party: &PartyId) -> Vec<String> {
        self.links
            .read()
            .ok()
            .and_then(|m| m.get(party).map(|l| l.models.clone()))
            .unwrap_or_default()
    }

    /// The party's current connection.
    pub fn connection(&self, party: &PartyId) -> Option<Link> {
        self.links
            .read()
            .ok()
            .and_then(|m| m.get(party).map(|l| l.link.clone()))
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        if let Ok(m) = self.links.read() {
            for l in m.values() {
                l.link.close(CloseReason::Shutdown);
            }
        }
    }

    /// One request to one party, within `deadline`, on its current connection.
    ///
    /// # Errors
    /// [`CallError`] if the party is not connected or the exchange fails or times out.
    pub async fn call(
        &self,
        party: &PartyId,
        request: &Request,
        trace: &[String],
        deadline: Duration,
    ) -> Result<Response, CallError> {
        let link = self
            .connection(party)
            .ok_or_else(|| CallError::NotConnected(party.clone()))?;
        self.call_on(party, &link, request, trace, deadline).await
    }

    /// One request to one party on `link` (current or about to be), within `deadline`,
    /// with the latency, failure and unresponsiveness bookkeeping of every call.
    ///
    /// # Errors
    /// [`CallError::Transport`] if the exchange fails or times out.
    pub async fn call_on(
        &self,
        party: &PartyId,
        link: &Link,
        request: &Request,
        trace: &[String],
        deadline: Duration,
    ) -> Result<Response, CallError> {
        let started = Instant::now();
        let (deadline, probe) = self.deadline_for(party, link, deadline);
        if let Some(probe) = probe {
            self.spawn_probe(party, link, probe);
        }
        let result = link.call(request, trace, &self.settings, deadline).await;
        let label = party.as_str();
        match &result {
            Ok(_) => {
                self.answered(party, link);
                self.metrics
                    .party_latency
                    .with_label_values(&[label, request.kind()])
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(transport::TransportError::Timeout(..)) => {
                self.set_unresponsive(party, link, true);
                self.metrics
                    .party_failures
                    .with_label_values(&[label, "timeout"])
                    .inc();
            }
            Err(_) => self
                .metrics
                .party_failures
                .with_label_values(&[label, "error"])
                .inc(),
        }
        result.map_err(|source| CallError::Transport {
            party: party.clone(),
            source,
        })
    }

    /// Sends `request_for(party)` to every party in `parties` at once; every party has an
    /// outcome by `timeout` from now.
    pub async fn fanout(
        &self,
        parties: &[PartyId],
        request_for: impl Fn(&PartyId) -> Request,
        timeout: Duration,
        trace: &[String],
    ) -> Vec<(PartyId, Outcome<Response>)> {
        let trace: std::sync::Arc<[String]> = trace.into();
        let mut fanout = Fanout::new(Instant::now(), parties.iter().cloned(), timeout);
        let mut tasks = JoinSet::new();
        for party in parties {
            let (this, party, request, trace) =
                (self.clone(), party.clone(), request_for(party), trace.clone());
            tasks.spawn(async move {
                let outcome = match this.call(&party, &request, &trace, timeout).await {
                    Ok(r) => Outcome::Answered(r),
                    Err(e) => e.outcome(),
                };
                (party, outcome)
            });
        }
        while let Some(deadline) = fanout.poll_timeout() {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(Ok((party, o))) => fanout.handle_outcome(&party, o),
                    Some(Err(_)) => {} // a panicked task leaves its party pending: it times out
                    None => fanout.handle_timeout(deadline.max(Instant::now())),
                },
                _ = tokio::time::sleep_until(deadline.into()) => fanout.handle_timeout(Instant::now()),
            }
        }
        tasks.abort_all();
        let outcomes = fanout.into_outcomes();
        // A party that missed the deadline is unresponsive even if its own call task was
        // aborted before it could say so.
        for (party, outcome) in &outcomes {
            if matches!(outcome, Outcome::TimedOut)
                && let Some(link) = self.connection(party)
            {
                self.set_unresponsive(party, &link, true);
                self.metrics
                    .party_failures
                    .with_label_values(&[party.as_str(), "timeout"])
                    .inc();
            }
        }
        outcomes
    }
}
