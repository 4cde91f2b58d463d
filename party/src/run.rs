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
    let mut dialer = Dialer::new(
        transport::dial_family(&config.coordinator_addr),
        &material,
        &config.transport,
    )?;
    let mut own_serial = material.leaf_info.serial.clone();
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<TlsMaterial>(4);
    let watcher = tokio::spawn(transport::reload::watch(
        paths,
        config.transport.reload_interval(),
        shutdown.clone(),
        move |m| {
            let _ = reload_tx.try_send(m);
        },
    ));
    let mut backoff = Backoff::new(&config.transport);
    let in_flight = Arc::new(Semaphore::new(config.limits.max_in_flight.max(1)));
    let observe: Observer = {
        let metrics = metrics.clone();
        Arc::new(move |kind, elapsed, failed| {
            metrics
                .latency
                .with_label_values(&[kind])
                .observe(elapsed.as_secs_f64());
            let outcome = if failed { "error" } else { "ok" };
            metrics.requests.with_label_values(&[kind, outcome]).inc();
        })
    };
    let serve = |link: &Link| {
        tokio::spawn(transport::serve(
            link.clone(),
            service.clone(),
            config.transport.clone(),
            in_flight.clone(),
            observe.clone(),
        ));
    };
    let dial = |dialer: &Dialer| {
        let dialer = dialer.clone();
        let config = config.clone();
        let id = service.id().clone();
        async move {
            let addr = transport::resolve(&config.coordinator_addr).await?;
            dialer
                .connect(addr, &config.coordinator_name, &id, &config.transport)
                .await
        }
    };
    'outer: while !shutdown.is_shutdown() {
        let attempt = tokio::select! {
            r = dial(&dialer) => r,
            _ = shutdown.recv() => break,
        };
        let mut current = match attempt {
            Ok((conn, _welcome)) => conn,
            Err(e) => {
                if e.is_permanent() {
                    error!(party = %service.id(), error = %e, "coordinator refused this party; fix configuration or certificates (will keep retrying)");
                } else {
                    warn!(party = %service.id(), error = %e, "cannot reach coordinator");
                }
                let delay = backoff.next_delay(rand::thread_rng().r#gen());
                debug!(?delay, "reconnecting after delay");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.recv() => break,
                }
                // New TLS material may be why we failed: apply it before the next attempt.
                while let Ok(m) = reload_rx.try_recv() {
                    apply_client(&mut dialer, &m, &config, &mut own_serial);
                }
                continue;
            }
        };
        backoff.reset();
        info!(party = %service.id(), coordinator = %config.coordinator_addr, "connected to coordinator");
        state.send_replace(LinkState::Connected);
        metrics.connected.set(1);
        metrics.set_peer_cert(current.peer_certificate());
        serve(&current);
        loop {
            tokio::select! {
                reason = current.closed() => {
                    info!(%reason, "connection to coordinator closed");
                    break;
                }
                Some(m) = reload_rx.recv() => {
                    let rotated = apply_client(&mut dialer, &m, &config, &mut own_serial);
                    metrics.set_own_cert(m.leaf_info.clone());
                    let revoked = m.revoked_serials();
                    let coordinator_bad = current.peer_certificate()
                        .is_some_and(|c| revoked.contains(&c.serial) || c.not_after < tessera_common::transport::unix_now());
                    if coordinator_bad {
                        warn!("coordinator certificate is revoked or expired; closing the connection");
                        current.close(CloseReason::Certificate);
                        break;
                    }
                    if rotated {
                        // Make before break: connect with the new certificate, then let the old
                        // connection finish what it is doing.
                        match dial(&dialer).await {
                            Ok((new, _)) => {
                                info!("reconnected with the rotated certificate");
                                serve(&new);
                                metrics.set_peer_cert(new.peer_certificate());
                                let old = std::mem::replace(&mut current, new);
                                let grace = config.transport.request_timeout() * 2;
                                tokio::spawn(async move {
                                    tokio::time::sleep(grace).await;
                                    old.close(CloseReason::Rotated);
                                });
                            }
                            Err(e) => warn!(error = %e, "could not connect with the rotated certificate; keeping the current connection"),
                        }
                    }
                }
                _ = shutdown.recv() => {
                    current.close(CloseReason::Shutdown);
                    state.send_replace(LinkState::Disconnected);
                    break 'outer;
                }
            }
        }
        state.send_replace(LinkState::Disconnected);
        metrics.connected.set(0);
        let delay = backoff.next_delay(rand::thread_rng().r#gen());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.recv() => break,
        }
    }
    watcher.abort();
    dialer.shut_down(CloseReason::Shutdown).await;
    info!(party = %service.id(), "party stopped");
    Ok(())
}

/// Applies reloaded material to the endpoint; returns whether our own certificate changed.
fn apply_client(dialer: &mut Dialer, m: &TlsMaterial, config: &PartyConfig, own_serial: &mut String) -> bool {
    if let Err(e) = dialer.reconfigure(m, &config.transport) {
        warn!(error = %e, "new TLS material rejected; keeping the current one");
        return false;
    }
    transport::warn_if_expiring("own", &m.leaf_info, config.transport.cert_warn_days);
    if m.leaf_info.serial != *own_serial {
        info!(old = %own_serial, new = %m.leaf_info.serial, "own certificate rotated");
        *own_serial = m.leaf_info.serial.clone();
        return true;
    }
    false
}
