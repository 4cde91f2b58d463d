//! Picking up new certificates, keys, roots and CRLs from disk while running.
//!
//! [`watch`] polls the files' fingerprints every `reload_interval_ms` and reloads at once on
//! SIGHUP. A set of files that does not load (for example a key and certificate caught half-way
//! through a rotation) is skipped with a warning and retried on the next tick; the material in
//! use stays in force until a consistent set loads.

use std::time::Duration;

use tracing::{info, warn};

use super::tls::{TlsMaterial, TlsPaths};
use crate::shutdown::Shutdown;

/// Calls `apply` with freshly loaded material whenever the files change (or on SIGHUP), until
/// shutdown.
///
/// # Cancel safety
/// Cancel safe; dropping it stops watching.
pub async fn watch(
    paths: TlsPaths,
    interval: Duration,
    mut shutdown: Shutdown,
    mut apply: impl FnMut(TlsMaterial) + Send,
) {
    let mut seen = paths.fingerprint();
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hup_recv = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup_recv = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = hup_recv => true,
            _ = shutdown.recv() => return,
        };
        let now = paths.fingerprint();
        if now == seen && !forced {
            continue;
        }
        match TlsMaterial::load(&paths) {
            Ok(m) => {
                seen = now;
                info!(serial = %m.leaf_info.serial, crls = m.crls.len(), forced, "TLS material reloaded");
                apply(m);
            }
            Err(e) => {
                warn!(error = %e, "TLS files changed but do not load; keeping the current ones and retrying")
            }
        }
    }
}
