//! The party side of a [`Link`]: answer every request stream the coordinator opens, with a
//! [`Handler`], until the link closes.

use std::sync::Arc;
use std::time::Instant;

use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, error, warn};

use super::link::{CloseReason, Link};
use super::{read_message, write_message};
use crate::config::TransportSettings;
use crate::federation::Handler;
use crate::wire::{ErrorCode, Message, Response};

/// What [`serve`] reports after answering each request: the request kind, how long the
/// handler took, and whether it answered with an error.
pub type Observer = Arc<dyn Fn(&'static str, std::time::Duration, bool) + Send + Sync>;

/// Answers the request streams the coordinator opens on `link` until it closes. At most
/// `in_flight` requests are handled at once (the semaphore is shared across links, so a
/// rotated certificate's second link does not double it). Requests the handler calls cheap
/// ([`Handler::is_cheap`]) are answered on the async thread; the rest on the blocking pool.
///
/// Every read and write has the `training_timeout_ms` deadline; a stream that breaks the
/// protocol is reset with [`CloseReason::Protocol`] and the link carries on.
///
/// # Cancel safety
/// Cancel safe: dropping it stops accepting; requests already started finish.
pub async fn serve(
    link: Link,
    handler: Arc<dyn Handler>,
    settings: TransportSettings,
    in_flight: Arc<Semaphore>,
    observe: Observer,
) {
    let Some(conn) = link.connection() else {
        return; // An in-memory link is answered by its handler directly.
    };
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let (handler, settings, observe) = (handler.clone(), settings.clone(), observe.clone());
                tokio::spawn(async move {
                    answer(send, recv, handler, settings, observe).await;
                    drop(permit);
                });
            }
            Err(e) => {
                debug!(error = %e, "connection stopped accepting streams");
                return;
            }
        }
    }
}

/// Reads one request from the stream, answers it, and writes the response.
async fn answer(
    mut send: SendStream,
    mut recv: RecvStream,
    handler: Arc<dyn Handler>,
    settings: TransportSettings,
    observe: Observer,
) {
    let limits = settings.frame_limits();
    let read = tokio::time::timeout(settings.training_timeout(), read_message(&mut recv, &limits)).await;
    let (request, trace) = match read {
        Ok(Ok(Some(Message::Request(r)))) => (r, None),
        Ok(Ok(Some(Message::Traced(t)))) => (t.request, Some(t.request_ids)),
        Ok(Ok(None)) => return,
        Ok(Ok(Some(other))) => {
            warn!(kind = ?other.kind(), "unexpected frame on a request stream");
            let _ = send.reset(CloseReason::Protocol.varint());
            return;
        }
        Ok(Err(e)) => {
            warn!(error = %e, "bad request stream");
            let _ = send.reset(CloseReason::Protocol.varint());
            return;
        }
        Err(_) => {
            warn!("request stream timed out before a whole request arrived");
            let _ = send.reset(CloseReason::Protocol.varint());
            return;
        }
    };
    let kind = request.kind();
    let span = match &trace {
        // Field values are only computed when the span is enabled.
        Some(ids) => tracing::info_span!("request", request_id = %ids.join(","), kind),
        None => tracing::debug_span!("request", kind),
    };
    async move {
        let started = Instant::now();
        let response = if handler.is_cheap(&request) {
            handler.handle(request)
        } else {
            let span = tracing::Span::current();
            match tokio::task::spawn_blocking(move || span.in_scope(|| handler.handle(request))).await {
                Ok(r) => r,
                Err(e) => {
                    error!(error = %e, kind, "request handler failed");
                    Response::Error {
                        code: ErrorCode::Internal,
                        message: "handler failed".into(),
                    }
                }
            }
        };
        let failed = matches!(response, Response::Error { .. });
        observe(kind, started.elapsed(), failed);
        if let Response::Error { code, message } = &response {
            debug!(kind, ?code, message, "request refused");
        }
        let write = tokio::time::timeout(
            settings.training_timeout(),
            write_message(&mut send, &Message::Response(response), &limits),
        )
        .await;
        match write {
            Ok(Ok(())) => debug!("answered"),
            Ok(Err(e)) => debug!(error = %e, kind, "could not send response"),
            Err(_) => debug!(kind, "sending response timed out"),
        }
    }
    .instrument(span)
    .await
}
