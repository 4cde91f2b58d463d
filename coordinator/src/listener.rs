//! The QUIC listener: admits certified, configured parties, registers their connections, has
//! them load the active model, and forgets them when they disconnect.

use std::sync::Arc;

use tessera_common::shutdown::Shutdown;
use tessera_common::transport::{self, Listener};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::serving::Serving;

/// Most handshakes in progress at once; more incoming connections wait.
const MAX_HANDSHAKES: usize = 64;

/// Accepts parties until shutdown; returns once every connection task has finished.
pub async fn run(listener: Listener, serving: Arc<Serving>, mut shutdown: Shutdown) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
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
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            break;
        };
        let serving = serving.clone();
        let mut shutdown = shutdown.clone();
        connections.spawn(async move {
            let remote = incoming.remote_address();
            let settings = serving.registry().settings().clone();
            let registry = serving.registry().clone();
            let live = move |p: &tessera_common::wire::PartyId| registry.live_instance(p);
            let accepted = incoming.accept(serving.parties(), &live, &settings).await;
            drop(permit);
            let (link, party, instance) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    warn!(%remote, error = %e, "refused a connection");
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
            let model = match serving.load_on_link(&party, &link).await {
                Ok(m) => m,
                Err(e) => {
                    warn!(party = %party, error = %e, "party could not load the active model");
                    None
                }
            };
            if !serving.registry().insert(party.clone(), link.clone(), model, cert, instance) {
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
