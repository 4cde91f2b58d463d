//! [`Link`]: one established connection to a peer, over which the coordinator sends requests.
//!
//! A link is either a mutual-TLS QUIC connection or an in-memory handle on a [`Handler`] in
//! this process (the benchmarks' floor and tests: the same calls with the network removed).
//! Code above the transport sees one type: call it, close it with a [`CloseReason`], ask for
//! the peer's certificate, wait for it to close.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quinn::{Connection, VarInt};
use tessera_certs::Identity;
use tokio::sync::watch;
use tokio::time::timeout;

use super::{CertInfo, TransportError, read_message, write_message};
use crate::config::TransportSettings;
use crate::federation::Handler;
use crate::wire::{FrameError, Message, Request, Response, Traced};

/// Why a link is closed. Sent to a QUIC peer as the application close code and reason text,
/// so the other side's log says why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Normal shutdown of the closing side.
    Shutdown,
    /// The handshake was refused (identity, version, membership).
    Refused,
    /// A newer connection from the same party replaced this one.
    Replaced,
    /// The peer broke the protocol.
    Protocol,
    /// The peer's certificate was revoked or has expired.
    Certificate,
    /// Superseded by a connection made with a rotated certificate.
    Rotated,
    /// Another process of the same party holds the live connection.
    Duplicate,
}

impl CloseReason {
    /// The QUIC application close code.
    pub fn code(self) -> u32 {
        match self {
            CloseReason::Shutdown => 0,
            CloseReason::Refused => 1,
            CloseReason::Replaced => 2,
            CloseReason::Protocol => 3,
            CloseReason::Certificate => 4,
            CloseReason::Rotated => 5,
            CloseReason::Duplicate => 6,
        }
    }

    /// The reason text sent with the close.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Shutdown => "shutting down",
            CloseReason::Refused => "refused",
            CloseReason::Replaced => "replaced by a newer connection",
            CloseReason::Protocol => "protocol violation",
            CloseReason::Certificate => "certificate revoked or expired",
            CloseReason::Rotated => "rotated",
            CloseReason::Duplicate => "another process of this party is connected",
        }
    }

    pub(super) fn varint(self) -> VarInt {
        VarInt::from_u32(self.code())
    }
}

/// One connection to a peer. Cheap to clone; clones are the same connection.
#[derive(Clone)]
pub struct Link {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Quic(Connection),
    Memory(Arc<Memory>),
}

/// An in-memory peer: its handler, and whether the link was closed.
struct Memory {
    id: usize,
    handler: Arc<dyn Handler>,
    closed: watch::Sender<Option<CloseReason>>,
}

/// Ids of in-memory links, far above any QUIC connection's `stable_id` (a pointer value is
/// not used, so ids are never reused).
static NEXT_MEMORY_ID: AtomicU64 = AtomicU64::new(1 << 62);

impl Link {
    pub(super) fn quic(conn: Connection) -> Self {
        Self {
            inner: Inner::Quic(conn),
        }
    }

    /// A link to `handler` in this process: [`Link::call`] answers with
    /// [`Handler::handle`] directly, no encoding and no network. It has no certificate.
    pub fn in_memory(handler: Arc<dyn Handler>) -> Self {
        let id = NEXT_MEMORY_ID.fetch_add(1, Ordering::Relaxed) as usize;
        Self {
            inner: Inner::Memory(Arc::new(Memory {
                id,
                handler,
                closed: watch::Sender::new(None),
            })),
        }
    }

    /// A number that tells this connection apart from every other one of the process (a
    /// party's newer connection has another id).
    pub fn id(&self) -> usize {
        match &self.inner {
            Inner::Quic(c) => c.stable_id(),
            Inner::Memory(m) => m.id,
        }
    }

    /// Sends one request on a new stream and waits for the answer, within `deadline`. With
    /// `trace` non-empty the request travels as [`Traced`], so the party logs those ids.
    ///
    /// # Errors
    /// Stream and frame errors, [`TransportError::NoAnswer`], or [`TransportError::Timeout`].
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped call abandons its stream; the connection is unaffected.
    pub async fn call(
        &self,
        request: &Request,
        trace: &[String],
        s: &TransportSettings,
        deadline: Duration,
    ) -> Result<Response, TransportError> {
        let conn = match &self.inner {
            Inner::Quic(c) => c,
            Inner::Memory(m) => {
                if m.closed.borrow().is_some() {
                    return Err(TransportError::Stream("link closed".into()));
                }
                return Ok(m.handler.handle(request.clone()));
            }
        };
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            let limits = s.frame_limits();
            let message = if trace.is_empty() {
                Message::Request(request.clone())
            } else {
                Message::Traced(Traced::new(trace, request.clone()))
            };
            write_message(&mut send, &message, &limits).await?;
            match read_message(&mut recv, &limits).await? {
                Some(Message::Response(r)) => Ok(r),
                Some(other) => Err(FrameError::Unexpected(other.kind()).into()),
                None => Err(TransportError::NoAnswer),
            }
        };
        timeout(deadline, exchange)
            .await
            .map_err(|_| TransportError::Timeout(deadline, "waiting for a party"))?
    }

    /// Closes the link, telling the peer `reason`. Requests in flight fail.
    pub fn close(&self, reason: CloseReason) {
        match &self.inner {
            Inner::Quic(c) => c.close(reason.varint(), reason.text().as_bytes()),
            Inner::Memory(m) => {
                m.closed.send_replace(Some(reason));
            }
        }
    }

    /// Waits until the link is closed, by either side or by the network.
    ///
    /// # Returns
    /// Why, for the log.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> String {
        match &self.inner {
            Inner::Quic(c) => c.closed().await.to_string(),
            Inner::Memory(m) => {
                let mut rx = m.closed.subscribe();
                match rx.wait_for(Option::is_some).await {
                    Ok(r) => r.map(|r| r.text()).unwrap_or("closed").to_string(),
                    Err(_) => "closed".to_string(),
                }
            }
        }
    }

    /// Whether the link has been closed (by either side or the network).
    pub fn is_closed(&self) -> bool {
        match &self.inner {
            Inner::Quic(c) => c.close_reason().is_some(),
            Inner::Memory(m) => m.closed.borrow().is_some(),
        }
    }

    /// The transport's current estimate of the round-trip time (`None` in memory).
    pub fn rtt(&self) -> Option<Duration> {
        match &self.inner {
            Inner::Quic(c) => Some(c.rtt()),
            Inner::Memory(_) => None,
        }
    }

    /// Summary of the peer's verified leaf certificate (`None` in memory).
    pub fn peer_certificate(&self) -> Option<CertInfo> {
        let Inner::Quic(conn) = &self.inner else {
            return None;
        };
        let certs = conn
            .peer_identity()?
            .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
            .ok()?;
        CertInfo::from_der(certs.first()?).ok()
    }

    /// The identity in the verified certificate of the peer.
    ///
    /// # Errors
    /// [`TransportError::Identity`] if there is no certificate (always, in memory) or it names
    /// no single identity of `federation`.
    pub fn peer_identity(&self, federation: &str) -> Result<Identity, TransportError> {
        let Inner::Quic(conn) = &self.inner else {
            return Err(TransportError::Identity("no certificate presented".into()));
        };
        let certs = conn
            .peer_identity()
            .and_then(|any| {
                any.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .ok_or_else(|| TransportError::Identity("no certificate presented".into()))?;
        let leaf = certs
            .first()
            .ok_or_else(|| TransportError::Identity("empty certificate chain".into()))?;
        Identity::from_cert_der(leaf, federation).map_err(|e| TransportError::Identity(e.to_string()))
    }

    /// The QUIC connection, for the serve loop and the handshake.
    pub(super) fn connection(&self) -> Option<&Connection> {
        match &self.inner {
            Inner::Quic(c) => Some(c),
            Inner::Memory(_) => None,
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Quic(c) => write!(f, "Link(quic {} to {})", c.stable_id(), c.remote_address()),
            Inner::Memory(m) => write!(f, "Link(memory {})", m.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, request: Request) -> Response {
            match request {
                Request::Describe => Response::Ack,
                _ => Response::Error {
                    code: crate::wire::ErrorCode::BadRequest,
                    message: "no".into(),
                },
            }
        }
    }

    #[tokio::test]
    async fn an_in_memory_link_answers_until_closed_and_reports_why() {
        let link = Link::in_memory(Arc::new(Echo));
        let other = Link::in_memory(Arc::new(Echo));
        assert_ne!(link.id(), other.id());
        let s = TransportSettings::default();
        let r = link
            .call(&Request::Describe, &[], &s, Duration::from_secs(1))
            .await;
        assert_eq!(r.ok(), Some(Response::Ack));
        assert!(link.peer_certificate().is_none());
        assert!(matches!(
            link.peer_identity("f"),
            Err(TransportError::Identity(_))
        ));
        let waiter = tokio::spawn({
            let link = link.clone();
            async move { link.closed().await }
        });
        link.close(CloseReason::Rotated);
        assert_eq!(waiter.await.ok().as_deref(), Some("rotated"));
        let r = link
            .call(&Request::Describe, &[], &s, Duration::from_secs(1))
            .await;
        assert!(matches!(r, Err(TransportError::Stream(_))), "{r:?}");
    }
}
