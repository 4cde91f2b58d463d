//! The party's driver: dial the coordinator, keep the connection up with backoff, and answer
//! every request stream the coordinator opens.
//!
//! With `coordinator_discovery = "one"` (the default) the party keeps one connection, to the
//! first address `coordinator_addr` resolves to. With `"every"` it keeps one connection to
//! every address that every entry of `coordinator_addr` resolves to (the replicas behind a
//! headless Service), re-resolving every `reload_interval_ms`: a replica that appears is
//! dialled, one that disappears is let go.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;
use tessera_common::config::Backoff;
use tessera_common::shutdown::{self, Shutdown, ShutdownTrigger};
use tessera_common::transport::{self, CloseReason, Dialer, Link, Observer, TlsMaterial};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{Discovery, PartyConfig};
use crate::metrics::PartyMetrics;
use crate::service::PartyService;

/// Connection state, observable by tests and health checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected; dialling or backing off.
    Disconnected,
    /// Connected and welcomed by the coordinator (by at least one replica, with discovery
    /// `"every"`).
    Connected,
}

/// Runs the party until `shutdown`: dials out, serves, reconnects with backoff, and keeps its
/// TLS material current (see [`tessera_common::transport::reload`]).
///
/// # Errors
/// Only setup errors (TLS material, socket); connection failures are retried.
pub async fn run(
    config: PartyConfig,
    service: Arc<PartyService>,
    mut shutdown: Shutdown,
    state: watch::Sender<LinkState>,
    metrics: PartyMetrics,
) -> Result<(), crate::Error> {
    let paths = transport::TlsPaths::in_dir(&config.tls_dir);
    let material = TlsMaterial::load(&paths)?;
    metrics.set_own_cert(material.leaf_info.clone());
    transport::warn_if_expiring("own", &material.leaf_info, config.transport.cert_warn_days);
    let dialer = Dialer::new(
        transport::dial_family(&config.coordinator_addr),
        &material,
        &config.transport,
    )?;
    let (reload_tx, reload_rx) = watch::channel::<Option<TlsMaterial>>(None);
    let watcher = tokio::spawn(transport::reload::watch(
        paths,
        config.transport.reload_interval(),
        shutdown.clone(),
        move |m| {
            reload_tx.send_replace(Some(m));
        },
    ));
    let shared = Arc::new(Shared {
        in_flight: Arc::new(Semaphore::new(config.limits.max_in_flight.max(1))),
        observe: observer(&metrics),
        instance: rand::random(),
        connections: AtomicUsize::new(0),
        state,
        metrics,
        service,
    });
    let driver = Driver {
        own_serial: material.leaf_info.serial.clone(),
        target: None,
        config,
        shared,
        dialer,
        reload_rx,
    };
    match driver.config.coordinator_discovery {
        Discovery::One => driver.run(shutdown.clone()).await,
        Discovery::Every => supervise(driver, &mut shutdown).await,
    }
    watcher.abort();
    Ok(())
}

/// With discovery `"every"`: one driver per address the coordinator's entries resolve to,
/// re-resolved every reload interval, until shutdown.
async fn supervise(template: Driver, shutdown: &mut Shutdown) {
    let mut drivers: BTreeMap<SocketAddr, (ShutdownTrigger, JoinHandle<()>)> = BTreeMap::new();
    let every = template.config.transport.reload_interval();
    loop {
        match transport::resolve_all(&template.config.coordinator_addr).await {
            Ok(found) => {
                drivers.retain(|addr, (trigger, _)| {
                    let keep = found.contains(addr);
                    if !keep {
                        info!(coordinator = %addr, "coordinator replica gone from discovery; letting it go");
                        trigger.trigger();
                    }
                    keep
                });
                for addr in found {
                    if drivers.contains_key(&addr) {
                        continue;
                    }
                    info!(coordinator = %addr, "coordinator replica discovered");
                    let (trigger, child) = shutdown::channel();
                    let driver = template.clone_for(addr);
                    let task = tokio::spawn(async move { driver.run(child).await });
                    drivers.insert(addr, (trigger, task));
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot resolve the coordinator's replicas; keeping the current ones")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.recv() => break,
        }
    }
    for (trigger, _) in drivers.values() {
        trigger.trigger();
    }
    for (_, (_, task)) in drivers {
        let _ = task.await;
    }
    template.dialer.shut_down(CloseReason::Shutdown).await;
}

/// How a connection (or an attempt at one) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// The attempt failed.
    Failed,
    /// The connection closed (or was closed for a revoked coordinator certificate).
    Closed,
    /// The party is shutting down.
    Shutdown,
}

/// What every connection of the party shares.
struct Shared {
    service: Arc<PartyService>,
    metrics: PartyMetrics,
    /// Requests handled at once, across every connection.
    in_flight: Arc<Semaphore>,
    observe: Observer,
    /// This process's instance number, sent in every hello.
    instance: u64,
    /// Live connections (one per coordinator replica).
    connections: AtomicUsize,
    state: watch::Sender<LinkState>,
}

impl Shared {
    /// Counts a connection up or down and publishes the state.
    fn connection(&self, up: bool) {
        let n = if up {
            self.connections.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.connections.fetch_sub(1, Ordering::SeqCst).saturating_sub(1)
        };
        self.metrics.connected.set(n as i64);
        self.state.send_replace(if n > 0 {
            LinkState::Connected
        } else {
            LinkState::Disconnected
        });
    }
}

/// The party's side of one coordinator connection: dialling, serving, and applying reloaded
/// TLS material.
struct Driver {
    config: PartyConfig,
    shared: Arc<Shared>,
    /// A fixed coordinator address (discovery `"every"`), else resolved on every attempt.
    target: Option<SocketAddr>,
    dialer: Dialer,
    own_serial: String,
    reload_rx: watch::Receiver<Option<TlsMaterial>>,
}

/// Records each answered request's latency and outcome in the party's metrics.
fn observer(metrics: &PartyMetrics) -> Observer {
    let metrics = metrics.clone();
    Arc::new(move |kind, elapsed, failed| {
        metrics
            .latency
            .with_label_values(&[kind])
            .observe(elapsed.as_secs_f64());
        let outcome = if failed { "error" } else { "ok" };
        metrics.requests.with_label_values(&[kind, outcome]).inc();
    })
}

impl Driver {
    /// A driver for the replica at `addr`, with this driver's TLS state.
    fn clone_for(&self, addr: SocketAddr) -> Driver {
        Driver {
            config: self.config.clone(),
            shared: self.shared.clone(),
            target: Some(addr),
            dialer: self.dialer.clone(),
            own_serial: self.own_serial.clone(),
            reload_rx: self.reload_rx.clone(),
        }
    }

    /// Dials, serves and reconnects with backoff until `shutdown`.
    async fn run(mut self, mut shutdown: Shutdown) {
        let mut backoff = Backoff::new(&self.config.transport);
        while !shutdown.is_shutdown() {
            let attempt = tokio::select! {
                r = self.dial() => r,
                _ = shutdown.recv() => break,
            };
            let ended = match attempt {
                Ok((link, _welcome)) => {
                    backoff.reset();
                    self.shared.connection(true);
                    let ended = self.connected(link, &mut shutdown).await;
                    self.shared.connection(false);
                    ended
                }
                Err(e) => {
                    self.failed(&e);
                    Ended::Failed
                }
            };
            if ended == Ended::Shutdown {
                break;
            }
            let delay = backoff.next_delay(rand::thread_rng().r#gen());
            debug!(?delay, "reconnecting after delay");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.recv() => break,
            }
            // New TLS material may be why we failed: apply it before the next attempt.
            if ended == Ended::Failed && self.reload_rx.has_changed().unwrap_or(false) {
                let m = self.reload_rx.borrow_and_update().clone();
                if let Some(m) = m {
                    self.apply(&m);
                }
            }
        }
        if self.target.is_none() {
            self.dialer.shut_down(CloseReason::Shutdown).await;
        }
        info!(party = %self.shared.service.id(), coordinator = %self.where_to(), "stopped");
    }

    fn where_to(&self) -> String {
        self.target
            .map_or_else(|| self.config.coordinator_addr.clone(), |a| a.to_string())
    }

    /// Resolves the coordinator's address (every attempt: it may have moved) and connects.
    async fn dial(&self) -> Result<(Link, tessera_common::wire::Welcome), transport::TransportError> {
        let addr = match self.target {
            Some(a) => a,
            None => transport::resolve(&self.config.coordinator_addr).await?,
        };
        self.dialer
            .connect(
                addr,
                &self.config.coordinator_name,
                self.shared.service.id(),
                self.shared.instance,
                &self.config.transport,
            )
            .await
    }

    /// Logs a failed attempt, louder when retrying cannot help.
    fn failed(&self, e: &transport::TransportError) {
        let (party, coordinator) = (self.shared.service.id(), self.where_to());
        if e.is_permanent() {
            error!(%party, %coordinator, error = %e, "coordinator refused this party; fix configuration or certificates (will keep retrying)");
        } else {
            warn!(%party, %coordinator, error = %e, "cannot connect to the coordinator");
        }
    }

    /// Answers the requests the coordinator opens on `link`, in a task of its own.
    fn serve(&self, link: &Link) {
        tokio::spawn(transport::serve(
            link.clone(),
            self.shared.service.clone(),
            self.config.transport.clone(),
            self.shared.in_flight.clone(),
            self.shared.observe.clone(),
        ));
    }

    /// Serves `current` until it closes or shutdown, applying reloaded TLS material: a
    /// revoked or expired coordinator certificate closes the connection; a rotated own
    /// certificate connects again before the old connection is let go (make before break).
    async fn connected(&mut self, mut current: Link, shutdown: &mut Shutdown) -> Ended {
        info!(party = %self.shared.service.id(), coordinator = %self.where_to(), "connected to coordinator");
        self.shared.metrics.set_peer_cert(current.peer_certificate());
        self.serve(&current);
        loop {
            tokio::select! {
                reason = current.closed() => {
                    info!(%reason, coordinator = %self.where_to(), "connection to coordinator closed");
                    return Ended::Closed;
                }
                Ok(()) = self.reload_rx.changed() => {
                    let Some(m) = self.reload_rx.borrow_and_update().clone() else { continue };
                    let rotated = self.apply(&m);
                    self.shared.metrics.set_own_cert(m.leaf_info.clone());
                    let revoked = m.revoked_serials();
                    let coordinator_bad = current.peer_certificate()
                        .is_some_and(|c| revoked.contains(&c.serial) || c.not_after < transport::unix_now());
                    if coordinator_bad {
                        warn!("coordinator certificate is revoked or expired; closing the connection");
                        current.close(CloseReason::Certificate);
                        return Ended::Closed;
                    }
                    if rotated {
                        current = self.reconnect_rotated(current).await;
                    }
                }
                _ = shutdown.recv() => {
                    current.close(CloseReason::Shutdown);
                    return Ended::Shutdown;
                }
            }
        }
    }

    /// Connects with the rotated certificate and returns the new link; the old one finishes
    /// what it is doing and is closed after two request time-outs. Keeps `old` if the new
    /// connection fails.
    async fn reconnect_rotated(&self, old: Link) -> Link {
        match self.dial().await {
            Ok((new, _)) => {
                info!("reconnected with the rotated certificate");
                self.serve(&new);
                self.shared.metrics.set_peer_cert(new.peer_certificate());
                let grace = self.config.transport.request_timeout() * 2;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    old.close(CloseReason::Rotated);
                });
                new
            }
            Err(e) => {
                warn!(error = %e, "could not connect with the rotated certificate; keeping the current connection");
                old
            }
        }
    }

    /// Applies reloaded material to the dialer; returns whether our own certificate changed.
    fn apply(&mut self, m: &TlsMaterial) -> bool {
        if let Err(e) = self.dialer.reconfigure(m, &self.config.transport) {
            warn!(error = %e, "new TLS material rejected; keeping the current one");
            return false;
        }
        transport::warn_if_expiring("own", &m.leaf_info, self.config.transport.cert_warn_days);
        if m.leaf_info.serial != self.own_serial {
            info!(old = %self.own_serial, new = %m.leaf_info.serial, "own certificate rotated");
            self.own_serial = m.leaf_info.serial.clone();
            return true;
        }
        false
    }
}
