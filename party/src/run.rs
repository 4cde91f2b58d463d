//! The party's driver: dial the coordinator, keep the connection up with backoff, and answer
//! every request stream the coordinator opens.

use std::sync::Arc;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use rand::Rng;
use tessera_common::config::{Backoff, TransportSettings};
use tessera_common::shutdown::Shutdown;
use tessera_common::transport::{self, TlsMaterial, close_code};
use tessera_common::wire::{Message, Request, Response};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, error, info, warn};

use crate::config::PartyConfig;
use crate::metrics::PartyMetrics;
use crate::service::PartyService;

/// Scoring requests for at most this many customers are answered on the async thread.
const INLINE_MAX_IDS: usize = 16;

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
    let mut endpoint = transport::dialer(
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
    let dial = |endpoint: &quinn::Endpoint| {
        let endpoint = endpoint.clone();
        let config = config.clone();
        let id = service.id().clone();
        async move {
            let addr = transport::resolve(&config.coordinator_addr).await?;
            transport::connect(&endpoint, addr, &config.coordinator_name, &id, &config.transport).await
        }
    };
    'outer: while !shutdown.is_shutdown() {
        let attempt = tokio::select! {
            r = dial(&endpoint) => r,
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
                    apply_client(&mut endpoint, &m, &config, &mut own_serial);
                }
                continue;
            }
        };
        backoff.reset();
        info!(party = %service.id(), coordinator = %config.coordinator_addr, "connected to coordinator");
        state.send_replace(LinkState::Connected);
        metrics.connected.set(1);
        metrics.set_peer_cert(transport::peer_certificate(&current));
        spawn_serve(
            current.clone(),
            service.clone(),
            config.transport.clone(),
            in_flight.clone(),
            metrics.clone(),
        );
        loop {
            tokio::select! {
                reason = current.closed() => {
                    info!(%reason, "connection to coordinator closed");
                    break;
                }
                Some(m) = reload_rx.recv() => {
                    let rotated = apply_client(&mut endpoint, &m, &config, &mut own_serial);
                    metrics.set_own_cert(m.leaf_info.clone());
                    let revoked = m.revoked_serials();
                    let coordinator_bad = transport::peer_certificate(&current)
                        .is_some_and(|c| revoked.contains(&c.serial) || c.not_after < tessera_common::transport::unix_now());
                    if coordinator_bad {
                        warn!("coordinator certificate is revoked or expired; closing the connection");
                        current.close(VarInt::from_u32(close_code::CERTIFICATE), b"certificate revoked or expired");
                        break;
                    }
                    if rotated {
                        // Make before break: connect with the new certificate, then let the old
                        // connection finish what it is doing.
                        match dial(&endpoint).await {
                            Ok((new, _)) => {
                                info!("reconnected with the rotated certificate");
                                spawn_serve(new.clone(), service.clone(), config.transport.clone(), in_flight.clone(), metrics.clone());
                                metrics.set_peer_cert(transport::peer_certificate(&new));
                                let old = std::mem::replace(&mut current, new);
                                let grace = config.transport.request_timeout() * 2;
                                tokio::spawn(async move {
                                    tokio::time::sleep(grace).await;
                                    old.close(VarInt::from_u32(close_code::ROTATED), b"rotated");
                                });
                            }
                            Err(e) => warn!(error = %e, "could not connect with the rotated certificate; keeping the current connection"),
                        }
                    }
                }
                _ = shutdown.recv() => {
                    current.close(VarInt::from_u32(close_code::SHUTDOWN), b"party shutting down");
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
    endpoint.close(VarInt::from_u32(close_code::SHUTDOWN), b"party shutting down");
    endpoint.wait_idle().await;
    info!(party = %service.id(), "party stopped");
    Ok(())
}

/// Applies reloaded material to the endpoint; returns whether our own certificate changed.
fn apply_client(
    endpoint: &mut quinn::Endpoint,
    m: &TlsMaterial,
    config: &PartyConfig,
    own_serial: &mut String,
) -> bool {
    if let Err(e) = transport::reconfigure_client(endpoint, m, &config.transport) {
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

/// Serves the request streams the coordinator opens on `conn`, until it closes.
fn spawn_serve(
    conn: Connection,
    service: Arc<PartyService>,
    settings: TransportSettings,
    in_flight: Arc<Semaphore>,
    metrics: PartyMetrics,
) {
    tokio::spawn(async move {
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        return;
                    };
                    let (service, settings, metrics) = (service.clone(), settings.clone(), metrics.clone());
                    tokio::spawn(async move {
                        handle_stream(send, recv, service, settings, metrics).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    debug!(error = %e, "connection stopped accepting streams");
                    return;
                }
            }
        }
    });
}

async fn handle_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    service: Arc<PartyService>,
    settings: TransportSettings,
    metrics: PartyMetrics,
) {
    let limits = settings.frame_limits();
    let read = tokio::time::timeout(
        settings.training_timeout(),
        transport::read_message(&mut recv, &limits),
    )
    .await;
    let request = match read {
        Ok(Ok(Some(Message::Request(r)))) => r,
        Ok(Ok(None)) => return,
        Ok(Ok(Some(other))) => {
            warn!(kind = ?other.kind(), "unexpected frame on a request stream");
            let _ = send.reset(VarInt::from_u32(close_code::PROTOCOL));
            return;
        }
        Ok(Err(e)) => {
            warn!(error = %e, "bad request stream");
            let _ = send.reset(VarInt::from_u32(close_code::PROTOCOL));
            return;
        }
        Err(_) => {
            warn!("request stream timed out before a whole request arrived");
            let _ = send.reset(VarInt::from_u32(close_code::PROTOCOL));
            return;
        }
    };
    let kind = request.kind();
    let started = std::time::Instant::now();
    // Model math is CPU work: keep it off the async threads, except for scoring a handful of
    // customers (tens of microseconds), where the hand-off to the blocking pool would cost
    // more than the work.
    let inline = matches!(&request,
        Request::Embed { ids } | Request::Explain { ids, .. } if ids.len() <= INLINE_MAX_IDS);
    let response = if inline {
        service.handle(request)
    } else {
        match tokio::task::spawn_blocking(move || service.handle(request)).await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, kind, "request handler failed");
                Response::Error {
                    code: tessera_common::wire::ErrorCode::Internal,
                    message: "handler failed".into(),
                }
            }
        }
    };
    metrics
        .latency
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
    let outcome = if matches!(response, Response::Error { .. }) {
        "error"
    } else {
        "ok"
    };
    metrics.requests.with_label_values(&[kind, outcome]).inc();
    if let Response::Error { code, message } = &response {
        debug!(kind, ?code, message, "request refused");
    }
    let write = tokio::time::timeout(
        settings.training_timeout(),
        transport::write_message(&mut send, &Message::Response(response), &limits),
    )
    .await;
    match write {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, kind, "could not send response"),
        Err(_) => debug!(kind, "sending response timed out"),
    }
}
