//! The only code that touches quinn: endpoints, mutual-TLS connections, the hello exchange,
//! and request/response streams carrying [`crate::wire`] frames.
//!
//! Shape of a connection: the party dials the coordinator with a [`Dialer`] (no inbound port
//! at the bank), opens one bidirectional stream and sends its [`crate::wire::Hello`]; the
//! coordinator's [`Listener`] answers with a welcome or a reject. Both sides then hold a
//! [`Link`]. The **coordinator** opens one bidirectional stream per request ([`Link::call`]);
//! the party answers on the same stream ([`serve`]).
//!
//! **Architecture invariant:** no other module, and no other crate of the workspace, names
//! quinn. Everything above speaks of [`Link`]s, [`Listener`]s and [`Dialer`]s.
//!
//! Every await on the network has a deadline from [`TransportSettings`]; every frame is
//! bounded by [`crate::wire::FrameLimits`].

mod endpoint;
mod link;
pub mod reload;
mod serve;
pub mod stream;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, VarInt};

use crate::config::TransportSettings;
use crate::protocol::ProtocolError;
use crate::protocol::fanout::Failure;
use crate::wire::FrameError;

pub use endpoint::{Dialer, Incoming, Listener};
pub use link::{CloseReason, Link};
pub use serve::{Observer, serve};
pub use stream::{read_message, write_message};
pub use tessera_certs::inspect::{CertInfo, unix_now};
pub use tls::{TlsMaterial, TlsPaths};

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
    /// How a failed call is reported in a fan-out ([`TransportError::Timeout`] is not a
    /// failure but a time-out, and is reported as such by the caller).
    pub fn failure(&self) -> Failure {
        match self {
            TransportError::Frame(e) => Failure::Malformed(e.to_string()),
            TransportError::NoAnswer => Failure::NoAnswer,
            other => Failure::Lost(other.to_string()),
        }
    }

    /// Why a connection attempt was refused, as a short stable label (metrics, tests):
    /// `untrusted_chain`, `revoked`, `expired`, `not_yet_valid`, `key_usage`, `tls` (other TLS
    /// failures) for the peer's certificate, the same prefixed `peer_` when the peer refused
    /// ours, `identity` (no acceptable `spiffe://` identity
    /// of this federation), `identity_mismatch`, `unknown_party`, `already_connected`,
    /// `version`, `timeout`, `protocol`, `other`.
    pub fn refusal_label(&self) -> &'static str {
        match self {
            TransportError::Connection(e) => {
                // rustls reports certificate errors by name inside quinn's error text; "aborted
                // by peer" means the other side refused *our* certificate.
                let text = e.to_string();
                let has = |s: &str| text.contains(s);
                let by_peer = has("aborted by peer");
                let pick = |ours: &'static str, theirs: &'static str| if by_peer { theirs } else { ours };
                if has("UnknownIssuer") || has("BadSignature") || has("UnknownCA") {
                    pick("untrusted_chain", "peer_untrusted_chain")
                } else if has("Revoked") || has("revoked") {
                    pick("revoked", "peer_revoked")
                } else if has("NotValidYet") || has("not valid yet") {
                    pick("not_yet_valid", "peer_not_yet_valid")
                } else if has("Expired") || has("expired") {
                    pick("expired", "peer_expired")
                } else if has("InvalidPurpose") || has("extended key usage") {
                    pick("key_usage", "peer_key_usage")
                } else {
                    pick("tls", "peer_tls")
                }
            }
            TransportError::Identity(_) => "identity",
            TransportError::Protocol(ProtocolError::Rejected(r)) => match r.code {
                crate::wire::RejectCode::IdentityMismatch => "identity_mismatch",
                crate::wire::RejectCode::UnknownParty => "unknown_party",
                crate::wire::RejectCode::AlreadyConnected => "already_connected",
                crate::wire::RejectCode::VersionMismatch => "version",
            },
            TransportError::Timeout(..) => "timeout",
            TransportError::Protocol(_) | TransportError::Frame(_) | TransportError::NoAnswer => "protocol",
            _ => "other",
        }
    }

    /// Whether retrying cannot help until an operator changes configuration or certificates.
    pub fn is_permanent(&self) -> bool {
        match self {
            TransportError::Protocol(p) => p.is_permanent(),
            TransportError::Identity(_) | TransportError::Pem { .. } | TransportError::Tls(_) => true,
            _ => false,
        }
    }
}

/// Who a transport configuration is for: it bounds the streams the *peer* may open.
#[derive(Clone, Copy)]
enum Side {
    /// The coordinator's listener: a party opens only its hello stream, so it may have one
    /// stream open at a time. More would sit unread in the coordinator's memory (up to a frame
    /// each).
    Coordinator,
    /// A party's dialer: the coordinator opens a stream per request, up to
    /// `max_concurrent_streams` at once.
    Party,
}

fn transport_config(
    s: &TransportSettings,
    side: Side,
) -> Result<Arc<quinn::TransportConfig>, TransportError> {
    let mut t = quinn::TransportConfig::default();
    let idle = IdleTimeout::try_from(s.idle_timeout())
        .map_err(|_| TransportError::Tls("idle timeout out of range".into()))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(s.keep_alive()));
    let peer_streams = match side {
        Side::Coordinator => 1,
        Side::Party => s.max_concurrent_streams,
    };
    t.max_concurrent_bidi_streams(VarInt::from_u32(peer_streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // A stream must hold one whole frame; the connection a few.
    let stream_window = u64::from(s.max_frame_bytes) + crate::wire::HEADER_LEN as u64;
    t.stream_receive_window(VarInt::from_u64(stream_window).unwrap_or(VarInt::MAX));
    t.receive_window(VarInt::from_u64(stream_window.saturating_mul(4)).unwrap_or(VarInt::MAX));
    Ok(Arc::new(t))
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

/// Every address of every comma-separated `host:port` entry of `spec`, in order, without
/// repeats: the coordinator replicas a party with discovery `"every"` connects to.
///
/// # Errors
/// [`TransportError::Resolve`] if an entry does not resolve or nothing is found.
pub async fn resolve_all(spec: &str) -> Result<Vec<SocketAddr>, TransportError> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let found: Vec<SocketAddr> = match entry.parse::<SocketAddr>() {
            Ok(a) => vec![a],
            Err(_) => tokio::net::lookup_host(entry)
                .await
                .map_err(|e| TransportError::Resolve(entry.to_string(), e.to_string()))?
                .collect(),
        };
        for a in found {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    if out.is_empty() {
        return Err(TransportError::Resolve(spec.to_string(), "no address".into()));
    }
    Ok(out)
}

/// The address family a dialer for `addr` should bind: IPv6 only for a literal IPv6 address.
pub fn dial_family(addr: &str) -> SocketAddr {
    match addr.parse::<SocketAddr>() {
        Ok(a) if a.is_ipv6() => SocketAddr::from(([0u16; 8], 0)),
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

/// Logs a warning if `info` expires within `warn_days` (or has expired).
pub fn warn_if_expiring(who: &str, info: &CertInfo, warn_days: u32) {
    let left = info.seconds_left(tessera_certs::inspect::unix_now());
    if left < i64::from(warn_days) * 86_400 {
        tracing::warn!(certificate = who, serial = %info.serial, days_left = left / 86_400, "certificate expires soon; rotate it (tessera-certs rotate)");
    }
}
