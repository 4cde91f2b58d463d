//! A cloneable shutdown signal that tasks `select!` against.

use tokio::sync::watch;

/// Sends the shutdown signal to every [`Shutdown`] made from it.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Listens for shutdown. Cheap to clone; each task holds one.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Signals shutdown to every listener (idempotent).
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// A new listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Whether shutdown has been signalled.
    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until shutdown is signalled (or the trigger is dropped).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv(&mut self) {
        // An error means the trigger is gone: treat as shutdown.
        let _ = self.0.wait_for(|v| *v).await;
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM, whichever comes first.
///
/// # Cancel safety
/// Cancel safe.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn all_listeners_see_the_signal() {
        let (t, mut a) = super::channel();
        let mut b = t.subscribe();
        assert!(!a.is_shutdown());
        t.trigger();
        a.recv().await;
        b.recv().await;
        assert!(a.is_shutdown() && b.is_shutdown());
    }
}
