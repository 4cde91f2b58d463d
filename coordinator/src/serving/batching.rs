//! Coalescing concurrent single-customer scores into batched fan-outs.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{ScoreError, Scored, Serving};

/// A single-customer score waiting to be batched with others.
pub(super) struct Pending {
    pub(super) id: String,
    pub(super) request_id: String,
    pub(super) explain: bool,
    pub(super) reply: oneshot::Sender<Result<Scored, ScoreError>>,
}

/// Most customers one dispatcher scores in one fan-out (also the most request ids a
/// [`tessera_common::wire::Traced`] request names).
const MAX_COALESCED: usize = tessera_common::wire::MAX_TRACE_IDS;

impl Serving {
    /// Starts `pipelines` dispatchers that coalesce concurrent single-customer scores into one
    /// fan-out per party: a free dispatcher takes every request waiting (up to 256) and
    /// scores them together, so under load the parties see a few batched requests instead of
    /// many small ones, and an idle federation answers a lone request at once (no batching
    /// delay). The dispatchers end when `self` is dropped.
    pub fn start_batching(self: &Arc<Self>, pipelines: usize) {
        let (tx, rx) = mpsc::channel::<Pending>(8 * MAX_COALESCED.max(pipelines));
        if self.queue.set(tx).is_err() {
            return;
        }
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..pipelines.max(1) {
            let (rx, me) = (rx.clone(), Arc::downgrade(self));
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        // One request, then every other one already waiting (up to the cap).
                        let mut rx = rx.lock().await;
                        if rx.recv_many(&mut batch, MAX_COALESCED).await == 0 {
                            return;
                        }
                    }
                    let Some(serving) = me.upgrade() else { return };
                    dispatch(&serving, batch).await;
                }
            });
        }
    }
}

/// Scores one coalesced batch and answers each waiting request.
async fn dispatch(serving: &Serving, batch: Vec<Pending>) {
    let ids: Vec<String> = batch.iter().map(|p| p.id.clone()).collect();
    let trace: Vec<String> = batch.iter().map(|p| p.request_id.clone()).collect();
    let explain: Vec<bool> = batch.iter().map(|p| p.explain).collect();
    // Field values are only computed when the span is enabled.
    let span = tracing::info_span!("score_batch", request_id = %trace.join(","), customers = ids.len());
    match serving.score_many(&ids, &trace, &explain).instrument(span).await {
        Ok(results) => {
            for (p, r) in batch.into_iter().zip(results) {
                let _ = p.reply.send(r.map_err(ScoreError::from));
            }
        }
        Err(e) => {
            for p in batch {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}
