//! Protocol logic with no IO and no clock reads: the handshake decision and the deadline
//! bookkeeping of a request fanned out to several parties.
//!
//! Drivers in `party` and `coordinator` (and [`crate::transport`]) feed these with messages
//! and the current time, and act on what they return. Tests drive them directly with a fake
//! clock.

pub mod fanout;
pub mod handshake;

use crate::wire::{FrameError, Reject, RejectCode};

/// Errors in the protocol exchange.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The coordinator refused our hello.
    #[error("coordinator refused the connection ({:?}): {}", .0.code, .0.message)]
    Rejected(Reject),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, peer speaks {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// The federation name in the welcome is not ours.
    #[error("coordinator belongs to federation {theirs:?}, we are configured for {ours:?}")]
    WrongFederation {
        /// Our federation.
        ours: String,
        /// The coordinator's.
        theirs: String,
    },
    /// A frame that is not valid at this point.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ProtocolError {
    /// Whether retrying the connection can succeed without an operator changing something.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ProtocolError::VersionMismatch { .. }
                | ProtocolError::WrongFederation { .. }
                | ProtocolError::Rejected(Reject {
                    code: RejectCode::VersionMismatch
                        | RejectCode::IdentityMismatch
                        | RejectCode::UnknownParty,
                    ..
                })
        )
    }
}
