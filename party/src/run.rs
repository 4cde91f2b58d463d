//! The party's driver: dial the coordinator, keep the connection up with backoff, and answer
//! every request stream the coordinator opens.

use std::sync::Arc;

use rand::Rng;
use tessera_common::config::Backoff;
use tessera_common::shutdown::Shutdown;
use tessera_common::transport::{self, CloseReason, Dialer, Link, Observer, TlsMaterial};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, error, info, warn};

use crate::config::PartyConfig;
use crate::metrics::PartyMetrics;
use crate::service::PartyService;

/// Connection state, observable by tests and health checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected; dialling or backing off.
    Disconnected,
    /// Connected and welcomed by the coordinator.
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
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel::<TlsMaterial>(4);
    let watcher = tokio::spawn(transport::reload::watch(
        paths,
        config.transport.reload_interval(),
        shutdown.clone(),
        move |m| {
            let _ = reload_tx.try_send(m);
        },
    ));
    let mut backoff = Backoff::new(&config.transport);
    let mut driver = Driver {
        in_flight: Arc::new(Semaphore::new(config.limits.max_in_flight.max(1))),
        observe: observer(&metrics),
        own_serial: material.leaf_info.serial.clone(),
        config,
        service,
        dialer,
        reload_rx,
        metrics,
    };
    while !shutdown.is_shutdown() {
        let attempt = tokio::select! {
            r = driver.dial() => r,
            _ = shutdown.recv() => break,
        };
        let ended = match attempt {
            Ok((link, _welcome)) => {
                backoff.reset();
                state.send_replace(LinkState::Connected);
                let ended = driver.connected(link, &mut shutdown).await;
                state.send_replace(LinkState::Disconnected);
                driver.metrics.connected.set(0);
                ended
            }
            Err(e) => {
                driver.failed(&e);
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
        if ended == Ended::Failed {
            // New TLS material may be why we failed: apply it before the next attempt.
            while let Ok(m) = driver.reload_rx.try_recv() {
                driver.apply(&m);
            }
        }
    }
    watcher.abort();
    driver.dialer.shut_down(CloseReason::Shutdown).await;
    info!(party = %driver.service.id(), "party stopped");
    Ok(())
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

/// The party's side of the connection: dialling, serving, and applying reloaded TLS material.
struct Driver {
    config: PartyConfig,
    service: Arc<PartyService>,
    dialer: Dialer,
    own_serial: String,
    reload_rx: tokio::sync::mpsc::Receiver<TlsMaterial>,
    metrics: PartyMetrics,
    /// Requests handled at once, across every connection.
    in_flight: Arc<Semaphore>,
    observe: Observer,
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
    /// Resolves the coordinator's address (every attempt: it may have moved) and connects.
    async fn dial(&self) -> Result<(Link, tessera_common::wire::Welcome), transport::TransportError> {
        let addr = transport::resolve(&self.config.coordinator_addr).await?;
        self.dialer
            .connect(
                addr,
                &self.config.coordinator_name,
                self.service.id(),
                &self.config.transport,
            )
            .await
    }

    /// Logs a failed attempt, louder when retrying cannot help.
    fn failed(&self, e: &transport::TransportError) {
        if e.is_permanent() {
            error!(party = %self.service.id(), error = %e, "coordinator refused this party; fix configuration or certificates (will keep retrying)");
        } else {
            warn!(party = %self.service.id(), error = %e, "cannot reach coordinator");
        }
    }

    /// Answers the requests the coordinator opens on `link`, in a task of its own.
    fn serve(&self, link: &Link) {
        tokio::spawn(transport::serve(
            link.clone(),
            self.service.clone(),
            self.config.transport.clone(),
            self.in_flight.clone(),
            self.observe.clone(),
        ));
    }

    /// Serves `current` until it closes or shutdown, applying reloaded TLS material: a
    /// revoked or expired coordinator certificate closes the connection; a rotated own
    /// certificate connects again before the old connection is let go (make before break).
    async fn connected(&mut self, mut current: Link, shutdown: &mut Shutdown) -> Ended {
        info!(party = %self.service.id(), coordinator = %self.config.coordinator_addr, "connected to coordinator");
        self.metrics.connected.set(1);
        self.metrics.set_peer_cert(current.peer_certificate());
        self.serve(&current);
        loop {
            tokio::select! {
                reason = current.closed() => {
                    info!(%reason, "connection to coordinator closed");
                    return Ended::Closed;
                }
                Some(m) = self.reload_rx.recv() => {
                    let rotated = self.apply(&m);
                    self.metrics.set_own_cert(m.leaf_info.clone());
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
                self.metrics.set_peer_cert(new.peer_certificate());
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
