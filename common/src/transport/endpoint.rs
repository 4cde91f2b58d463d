//! QUIC endpoints: the coordinator's [`Listener`] and a party's [`Dialer`], each with its side
//! of the hello exchange, producing [`Link`]s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tessera_certs::Identity;
use tokio::time::timeout;

use super::link::{CloseReason, Link};
use super::{TlsMaterial, TransportError, read_message, tls, transport_config, write_message};
use crate::config::TransportSettings;
use crate::protocol::{ProtocolError, handshake};
use crate::wire::{FrameError, Message, PartyId, Welcome};

/// The coordinator's QUIC endpoint: accepts parties' connections (client certificates required).
#[derive(Clone)]
pub struct Listener {
    endpoint: quinn::Endpoint,
}

/// A connection attempt not yet accepted; complete it with [`Incoming::accept`].
pub struct Incoming(quinn::Incoming);

impl Listener {
    /// Listens on `addr` with `material`.
    ///
    /// # Errors
    /// TLS configuration or bind errors.
    pub fn bind(
        addr: SocketAddr,
        material: &TlsMaterial,
        s: &TransportSettings,
    ) -> Result<Self, TransportError> {
        let endpoint = quinn::Endpoint::server(server_config(material, s)?, addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        Ok(Self { endpoint })
    }

    /// The bound address.
    ///
    /// # Errors
    /// [`TransportError::Bind`] if the socket has none.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.endpoint.local_addr().map_err(|source| TransportError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })
    }

    /// The next connection attempt; `None` once the listener is closed.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&self) -> Option<Incoming> {
        self.endpoint.accept().await.map(Incoming)
    }

    /// Applies new TLS material: later handshakes use it; established connections are untouched.
    ///
    /// # Errors
    /// TLS configuration errors (the listener keeps its current configuration).
    pub fn reconfigure(&self, material: &TlsMaterial, s: &TransportSettings) -> Result<(), TransportError> {
        self.endpoint.set_server_config(Some(server_config(material, s)?));
        Ok(())
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self, reason: CloseReason) {
        self.endpoint.close(reason.varint(), reason.text().as_bytes());
    }

    /// Waits until closed connections have drained and the socket is released, at most `limit`.
    pub async fn wait_idle(&self, limit: Duration) {
        let _ = timeout(limit, self.endpoint.wait_idle()).await;
    }
}

fn server_config(
    material: &TlsMaterial,
    s: &TransportSettings,
) -> Result<quinn::ServerConfig, TransportError> {
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(tls::server_config(material)?));
    cfg.transport_config(transport_config(s, super::Side::Coordinator)?);
    Ok(cfg)
}

impl Incoming {
    /// The address the attempt came from.
    pub fn remote_address(&self) -> SocketAddr {
        self.0.remote_address()
    }

    /// Whether the peer has shown it receives packets at its address (it echoed a retry
    /// token), so the address is not spoofed.
    pub fn address_validated(&self) -> bool {
        self.0.remote_address_validated()
    }

    /// Answers with a stateless retry (QUIC address validation): nothing is kept for this
    /// attempt; a real peer comes back at once with the token, a spoofed source never does.
    ///
    /// # Returns
    /// `false` if the attempt cannot be retried (it already was); it is dropped then.
    pub fn retry(self) -> bool {
        self.0.retry().is_ok()
    }

    /// Refuses the attempt at once (the peer is told: connection refused).
    pub fn refuse(self) {
        self.0.refuse();
    }

    /// Completes the connection and its hello exchange: the certificate must name a party of
    /// the federation, the hello must claim that same party, it must be in `expected`, and no
    /// other process of it may be connected (`live_instance` gives the process instance of
    /// its current live connection; see [`handshake::admit`]).
    ///
    /// # Returns
    /// The link, the party id and the party process's instance.
    ///
    /// # Errors
    /// Connection, TLS, identity and protocol errors (a refused party is told why before the
    /// connection is closed); [`TransportError::Timeout`] after `connect_timeout_ms`.
    pub async fn accept(
        self,
        expected: &[PartyId],
        live_instance: &(dyn Fn(&PartyId) -> Option<u64> + Sync),
        s: &TransportSettings,
    ) -> Result<(Link, PartyId, u64), TransportError> {
        let attempt = async {
            let conn = self.0.await?;
            let link = Link::quic(conn.clone());
            let identity = match link.peer_identity(&s.federation) {
                Ok(id) => id,
                Err(e) => {
                    conn.close(CloseReason::Refused.varint(), b"bad certificate identity");
                    return Err(e);
                }
            };
            let (mut send, mut recv) = conn.accept_bi().await?;
            let limits = s.frame_limits();
            let hello = match read_message(&mut recv, &limits).await? {
                Some(Message::Hello(h)) => h,
                Some(other) => {
                    conn.close(CloseReason::Protocol.varint(), b"expected hello");
                    return Err(FrameError::Unexpected(other.kind()).into());
                }
                None => return Err(TransportError::NoAnswer),
            };
            let decision = handshake::accept(&hello, &identity, expected, &s.federation)
                .and_then(|w| handshake::admit(&hello, live_instance(&hello.party_id)).map(|()| w));
            match decision {
                Ok(welcome) => {
                    write_message(&mut send, &Message::Welcome(welcome), &limits).await?;
                    Ok((link, hello.party_id, hello.instance))
                }
                Err(reject) => {
                    write_message(&mut send, &Message::Reject(reject.clone()), &limits).await?;
                    // Let the reject reach the party before closing.
                    let _ = timeout(Duration::from_millis(500), send.stopped()).await;
                    link.close(CloseReason::Refused);
                    Err(ProtocolError::Rejected(reject).into())
                }
            }
        };
        timeout(s.connect_timeout(), attempt)
            .await
            .map_err(|_| TransportError::Timeout(s.connect_timeout(), "accepting a party"))?
    }
}

/// A party's client endpoint (ephemeral local port, outbound only). A clone shares the socket
/// and takes the TLS configuration the original has at the time of cloning.
#[derive(Clone)]
pub struct Dialer {
    endpoint: quinn::Endpoint,
}

impl Dialer {
    /// A dialer of the address family of `coordinator` (see [`super::dial_family`]).
    ///
    /// # Errors
    /// TLS configuration or bind errors.
    pub fn new(
        coordinator: SocketAddr,
        material: &TlsMaterial,
        s: &TransportSettings,
    ) -> Result<Self, TransportError> {
        let local = if coordinator.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let mut endpoint =
            quinn::Endpoint::client(local).map_err(|source| TransportError::Bind { addr: local, source })?;
        endpoint.set_default_client_config(client_config(material, s)?);
        Ok(Self { endpoint })
    }

    /// Applies new TLS material: the next connection uses it; the current one is untouched.
    ///
    /// # Errors
    /// TLS configuration errors (the dialer keeps its current configuration).
    pub fn reconfigure(
        &mut self,
        material: &TlsMaterial,
        s: &TransportSettings,
    ) -> Result<(), TransportError> {
        self.endpoint
            .set_default_client_config(client_config(material, s)?);
        Ok(())
    }

    /// Dials the coordinator, checks that it is the coordinator of our federation, and
    /// exchanges hello/welcome.
    ///
    /// # Errors
    /// Connection, TLS, identity and protocol errors; [`TransportError::Timeout`] after
    /// `connect_timeout_ms`.
    pub async fn connect(
        &self,
        coordinator: SocketAddr,
        server_name: &str,
        party_id: &PartyId,
        instance: u64,
        s: &TransportSettings,
    ) -> Result<(Link, Welcome), TransportError> {
        let attempt = async {
            let conn = self.endpoint.connect(coordinator, server_name)?.await?;
            let link = Link::quic(conn.clone());
            match link.peer_identity(&s.federation) {
                Ok(Identity::Coordinator) => {}
                Ok(other) => {
                    conn.close(CloseReason::Refused.varint(), b"not the coordinator");
                    return Err(TransportError::Identity(format!(
                        "expected the coordinator, certificate belongs to {other}"
                    )));
                }
                Err(e) => {
                    conn.close(CloseReason::Refused.varint(), b"bad certificate identity");
                    return Err(e);
                }
            }
            let (mut send, mut recv) = conn.open_bi().await?;
            let limits = s.frame_limits();
            write_message(
                &mut send,
                &Message::Hello(handshake::hello(party_id, instance)),
                &limits,
            )
            .await?;
            let answer = read_message(&mut recv, &limits)
                .await?
                .ok_or(TransportError::NoAnswer)?;
            let welcome = handshake::check_answer(answer, &s.federation)?;
            Ok((link, welcome))
        };
        timeout(s.connect_timeout(), attempt)
            .await
            .map_err(|_| TransportError::Timeout(s.connect_timeout(), "connecting to the coordinator"))?
    }

    /// Closes every connection of this dialer and waits until they have drained, at most 2 s
    /// (a peer that vanished does not hold the shutdown).
    pub async fn shut_down(&self, reason: CloseReason) {
        self.endpoint.close(reason.varint(), reason.text().as_bytes());
        let _ = timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

fn client_config(
    material: &TlsMaterial,
    s: &TransportSettings,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut cfg = quinn::ClientConfig::new(Arc::new(tls::client_config(material)?));
    cfg.transport_config(transport_config(s, super::Side::Party)?);
    Ok(cfg)
}
