//! The party's driver: dial the coordinator, keep the connection up with backoff, and answer
//! every request stream the coordinator opens.

use std::sync::Arc;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use rand::Rng;
use tessera_common::config::Backoff;
use tessera_common::shutdown::Shutdown;
use tessera_common::transport::{self, TlsMaterial, close_code};
use tessera_common::wire::{Message, Response};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, error, info, warn};

use crate::config::PartyConfig;
use crate::service::PartyService;

/// Connection state, observable by tests and health checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected; dialling or backing off.
    Disconnected,
    /// Connected and welcomed by the coordinator.
    Connected,
}

/// Runs the party until `shutdown`: dials out, serves, reconnects with backoff.
///
/// # Errors
/// Only setup errors (TLS material, socket); connection failures are retried.
pub async fn run(
    config: PartyConfig,
    service: Arc<PartyService>,
    mut shutdown: Shutdown,
    state: watch::Sender<LinkState>,
) -> Result<(), crate::Error> {
    let material = TlsMaterial::load(&transport::TlsPaths::in_dir(&config.tls_dir))?;
    let endpoint = transport::dialer(config.coordinator_addr, &material, &config.transport)?;
    let mut backoff = Backoff::new(&config.transport);
    let in_flight = Arc::new(Semaphore::new(config.limits.max_in_flight.max(1)));
    while !shutdown.is_shutdown() {
        let attempt = tokio::select! {
            r = transport::connect(&endpoint, config.coordinator_addr, &config.coordinator_name, service.id(), &config.transport) => r,
            _ = shutdown.recv() => break,
        };
        match attempt {
            Ok((conn, _welcome)) => {
                backoff.reset();
                info!(party = %service.id(), coordinator = %config.coordinator_addr, "connected to coordinator");
                state.send_replace(LinkState::Connected);
                serve(&conn, &service, &config, &in_flight, &mut shutdown).await;
                state.send_replace(LinkState::Disconnected);
            }
            Err(e) if e.is_permanent() => {
                error!(party = %service.id(), error = %e, "coordinator refused this party; fix configuration or certificates (will keep retrying)");
            }
            Err(e) => warn!(party = %service.id(), error = %e, "cannot reach coordinator"),
        }
        let delay = backoff.next_delay(rand::thread_rng().r#gen());
        debug!(?delay, "reconnecting after delay");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.recv() => break,
        }
    }
    endpoint.close(VarInt::from_u32(close_code::SHUTDOWN), b"party shutting down");
    endpoint.wait_idle().await;
    info!(party = %service.id(), "party stopped");
    Ok(())
}

/// Serves one connection until it closes or shutdown.
async fn serve(
    conn: &Connection,
    service: &Arc<PartyService>,
    config: &PartyConfig,
    in_flight: &Arc<Semaphore>,
    shutdown: &mut Shutdown,
) {
    loop {
        tokio::select! {
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
                    let service = service.clone();
                    let settings = config.transport.clone();
                    tokio::spawn(async move {
                        handle_stream(send, recv, service, settings).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    info!(error = %e, "connection to coordinator closed");
                    return;
                }
            },
            _ = shutdown.recv() => {
                conn.close(VarInt::from_u32(close_code::SHUTDOWN), b"party shutting down");
                return;
            }
        }
    }
}

async fn handle_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    service: Arc<PartyService>,
    settings: tessera_common::config::TransportSettings,
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
    // Model math is CPU work: keep it off the async threads.
    let response = match tokio::task::spawn_blocking(move || service.handle(request)).await {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, kind, "request handler failed");
            Response::Error {
                code: tessera_common::wire::ErrorCode::Internal,
                message: "handler failed".into(),
            }
        }
    };
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
