//! The only code that touches quinn: endpoints, mutual-TLS connections, the hello exchange,
//! and request/response streams carrying [`crate::wire`] frames.
//!
//! Shape of a connection: the party dials the coordinator (no inbound port at the bank),
//! opens one bidirectional stream and sends its [`crate::wire::Hello`]; the coordinator
//! answers with a welcome or a reject. After that the **coordinator** opens one bidirectional
//! stream per request ([`call`]); the party answers on the same stream.
//!
//! Every await on the network has a deadline from [`TransportSettings`]; every frame is
//! bounded by [`crate::wire::FrameLimits`].

pub mod reload;
pub mod stream;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, IdleTimeout, VarInt};
use tessera_certs::Identity;
use tokio::time::timeout;

use crate::config::TransportSettings;
use crate::protocol::{ProtocolError, handshake};
use crate::wire::{FrameError, Message, PartyId, Request, Response, Welcome};

pub use stream::{read_message, write_message};
pub use tessera_certs::inspect::{CertInfo, unix_now};
pub use tls::{TlsMaterial, TlsPaths};

/// Application close codes sent in QUIC CONNECTION_CLOSE frames.
pub mod close_code {
    /// Normal shutdown.
    pub const SHUTDOWN: u32 = 0;
    /// The handshake was refused (identity, version, membership).
    pub const REFUSED: u32 = 1;
    /// A newer connection from the same party replaced this one.
    pub const REPLACED: u32 = 2;
    /// The peer broke the protocol.
    pub const PROTOCOL: u32 = 3;
    /// The peer's certificate was revoked or has expired.
    pub const CERTIFICATE: u32 = 4;
    /// Superseded by a connection made with a rotated certificate.
    pub const ROTATED: u32 = 5;
}

/// Errors of the transport layer. Each ends at most one connection or stream.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The connection attempt could not start.
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed (includes TLS handshake failures).
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A stream was reset or could not be written or read.
    #[error("stream: {0}")]
    Stream(String),
    /// A deadline passed.
    #[error("timed out after {0:?} ({1})")]
    Timeout(Duration, &'static str),
    /// A bad frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The hello exchange failed.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The peer's certificate names no acceptable identity.
    #[error("peer certificate: {0}")]
    Identity(String),
    /// The stream closed without an answer.
    #[error("peer closed the stream without answering")]
    NoAnswer,
    /// The coordinator's address did not resolve.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
}

impl TransportError {
    /// Whether retrying cannot help until an operator changes configuration or certificates.
    pub fn is_permanent(&self) -> bool {
        match self {
            TransportError::Protocol(p) => p.is_permanent(),
            TransportError::Identity(_) | TransportError::Pem { .. } | TransportError::Tls(_) => true,
            _ => false,
        }
    }
}

fn transport_config(s: &TransportSettings) -> Result<Arc<quinn::TransportConfig>, TransportError> {
    let mut t = quinn::TransportConfig::default();
    let idle = IdleTimeout::try_from(s.idle_timeout())
        .map_err(|_| TransportError::Tls("idle timeout out of range".into()))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(s.keep_alive()));
    t.max_concurrent_bidi_streams(VarInt::from_u32(s.max_concurrent_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // A stream must hold one whole frame; the connection a few.
    let stream_window = u64::from(s.max_frame_bytes) + crate::wire::HEADER_LEN as u64;
    t.stream_receive_window(VarInt::from_u64(stream_window).unwrap_or(VarInt::MAX));
    t.receive_window(VarInt::from_u64(stream_window.saturating_mul(4)).unwrap_or(VarInt::MAX));
    Ok(Arc::new(t))
}

/// The coordinator's QUIC endpoint, listening on `addr` and requiring client certificates.
///
/// # Errors
/// TLS configuration or bind errors.
pub fn listen(
    addr: SocketAddr,
    material: &TlsMaterial,
    s: &TransportSettings,
) -> Result<Endpoint, TransportError> {
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(tls::server_config(material)?));
    cfg.transport_config(transport_config(s)?);
    Endpoint::server(cfg, addr).map_err(|source| TransportError::Bind { addr, source })
}

/// Applies new TLS material to the coordinator's endpoint: later handshakes use it;
/// established connections are untouched.
///
/// # Errors
/// TLS configuration errors (the endpoint keeps its current configuration).
pub fn reconfigure_server(
    endpoint: &Endpoint,
    material: &TlsMaterial,
    s: &TransportSettings,
) -> Result<(), TransportError> {
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(tls::server_config(material)?));
    cfg.transport_config(transport_config(s)?);
    endpoint.set_server_config(Some(cfg));
    Ok(())
}

/// Applies new TLS material to a party's endpoint: the next connection uses it; the current
/// one is untouched.
///
/// # Errors
/// TLS configuration errors (the endpoint keeps its current configuration).
pub fn reconfigure_client(
    endpoint: &mut Endpoint,
    material: &TlsMaterial,
    s: &TransportSettings,
) -> Result<(), TransportError> {
    let mut cfg = quinn::ClientConfig::new(Arc::new(tls::client_config(material)?));
    cfg.transport_config(transport_config(s)?);
    endpoint.set_default_client_config(cfg);
    Ok(())
}

/// Resolves `host:port` (a name or an address) to one socket address, preferring IPv4 (what
/// [`dialer`] binds for a name). Resolved on every connection attempt, so a coordinator that
/// comes back at a new address (a restarted container) is found.
///
/// # Errors
/// [`TransportError::Resolve`] if the name does not resolve or has no port.
pub async fn resolve(addr: &str) -> Result<SocketAddr, TransportError> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(a);
    }
    let all: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| TransportError::Resolve(addr.to_string(), e.to_string()))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| TransportError::Resolve(addr.to_string(), "no address".into()))
}

/// The address family a dialer for `addr` should bind: IPv6 only for a literal IPv6 address.
pub fn dial_family(addr: &str) -> SocketAddr {
    match addr.parse::<SocketAddr>() {
        Ok(a) if a.is_ipv6() => SocketAddr::from(([0u16; 8], 0)),
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

/// A party's client endpoint (ephemeral local port, outbound only), of the address family of
/// `coordinator`.
///
/// # Errors
/// TLS configuration or bind errors.
pub fn dialer(
    coordinator: SocketAddr,
    material: &TlsMaterial,
    s: &TransportSettings,
) -> Result<Endpoint, TransportError> {
    let local: SocketAddr = if coordinator.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .map_err(|_| TransportError::Tls("bad local address".into()))?;
    let mut endpoint =
        Endpoint::client(local).map_err(|source| TransportError::Bind { addr: local, source })?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(tls::client_config(material)?));
    cfg.transport_config(transport_config(s)?);
    endpoint.set_default_client_config(cfg);
    Ok(endpoint)
}

/// The identity in the verified certificate of the connection's peer.
///
/// # Errors
/// [`TransportError::Identity`] if there is no certificate or it names no single identity of
/// `federation`.
pub fn peer_identity(conn: &Connection, federation: &str) -> Result<Identity, TransportError> {
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

/// Summary of the peer's verified leaf certificate.
pub fn peer_certificate(conn: &Connection) -> Option<CertInfo> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()?;
    CertInfo::from_der(certs.first()?).ok()
}

/// Logs a warning if `info` expires within `warn_days` (or has expired).
pub fn warn_if_expiring(who: &str, info: &CertInfo, warn_days: u32) {
    let left = info.seconds_left(tessera_certs::inspect::unix_now());
    if left < i64::from(warn_days) * 86_400 {
        tracing::warn!(certificate = who, serial = %info.serial, days_left = left / 86_400, "certificate expires soon; rotate it (tessera-certs rotate)");
    }
}

/// Party side: dial the coordinator, check that it is the coordinator of our federation, and
/// exchange hello/welcome.
///
/// # Errors
/// Connection, TLS, identity and protocol errors; [`TransportError::Timeout`] after
/// `connect_timeout_ms`.
pub async fn connect(
    endpoint: &Endpoint,
    coordinator: SocketAddr,
    server_name: &str,
    party_id: &PartyId,
    s: &TransportSettings,
) -> Result<(Connection, Welcome), TransportError> {
    let attempt = async {
        let conn = endpoint.connect(coordinator, server_name)?.await?;
        match peer_identity(&conn, &s.federation) {
            Ok(Identity::Coordinator) => {}
            Ok(other) => {
                conn.close(VarInt::from_u32(close_code::REFUSED), b"not the coordinator");
                return Err(TransportError::Identity(format!(
                    "expected the coordinator, certificate belongs to {other}"
                )));
            }
            Err(e) => {
                conn.close(VarInt::from_u32(close_code::REFUSED), b"bad certificate identity");
                return Err(e);
            }
        }
        let (mut send, mut recv) = conn.open_bi().await?;
        let limits = s.frame_limits();
        write_message(&mut send, &Message::Hello(handshake::hello(party_id)), &limits).await?;
        let answer = read_message(&mut recv, &limits)
            .await?
            .ok_or(TransportError::NoAnswer)?;
        let welcome = handshake::check_answer(answer, &s.federation)?;
        Ok((conn, welcome))
    };
    timeout(s.connect_timeout(), attempt)
        .await
        .map_err(|_| TransportError::Timeout(s.connect_timeout(), "connecting to the coordinator"))?
}

/// Coordinator side: complete an incoming connection and its hello exchange.
///
/// # Returns
/// The connection and the party id, verified against the certificate and `expected`.
///
/// # Errors
/// Connection, TLS, identity and protocol errors (a refused party is told why before the
/// connection is closed); [`TransportError::Timeout`] after `connect_timeout_ms`.
pub async fn accept(
    incoming: quinn::Incoming,
    expected: &[PartyId],
    s: &TransportSettings,
) -> Result<(Connection, PartyId), TransportError> {
    let attempt = async {
        let conn = incoming.await?;
        let identity = match peer_identity(&conn, &s.federation) {
            Ok(id) => id,
            Err(e) => {
                conn.close(VarInt::from_u32(close_code::REFUSED), b"bad certificate identity");
                return Err(e);
            }
        };
        let (mut send, mut recv) = conn.accept_bi().await?;
        let limits = s.frame_limits();
        let hello = match read_message(&mut recv, &limits).await? {
            Some(Message::Hello(h)) => h,
            Some(other) => {
                conn.close(VarInt::from_u32(close_code::PROTOCOL), b"expected hello");
                return Err(FrameError::Unexpected(other.kind()).into());
            }
            None => return Err(TransportError::NoAnswer),
        };
        match handshake::accept(&hello, &identity, expected, &s.federation) {
            Ok(welcome) => {
                write_message(&mut send, &Message::Welcome(welcome), &limits).await?;
                Ok((conn, hello.party_id))
            }
            Err(reject) => {
                write_message(&mut send, &Message::Reject(reject.clone()), &limits).await?;
                // Let the reject reach the party before closing.
                let _ = timeout(Duration::from_millis(500), send.stopped()).await;
                conn.close(VarInt::from_u32(close_code::REFUSED), b"refused");
                Err(ProtocolError::Rejected(reject).into())
            }
        }
    };
    timeout(s.connect_timeout(), attempt)
        .await
        .map_err(|_| TransportError::Timeout(s.connect_timeout(), "accepting a party"))?
}

/// Coordinator side: send one request on a new stream and wait for the answer, within `deadline`.
///
/// # Errors
/// Stream and frame errors, [`TransportError::NoAnswer`], or [`TransportError::Timeout`].
pub async fn call(
    conn: &Connection,
    request: &Request,
    s: &TransportSettings,
    deadline: Duration,
) -> Result<Response, TransportError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let limits = s.frame_limits();
        write_message(&mut send, &Message::Request(request.clone()), &limits).await?;
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
