//! Tessera certificate tooling.
//!
//! Layout:
//! - [`identity`]: party ids and the URI SAN that binds a certificate to one federation identity.
//! - [`issue`]: a development CA and leaf certificates for the coordinator and each party
//!   (rcgen), written as PEM with owner-only (0600) private keys.
//!
//! The `tessera-certs` binary and `scripts/issue-party-cert.sh` wrap [`issue`].
#![warn(missing_docs, unreachable_pub)]

pub mod identity;
pub mod issue;

pub use identity::{Identity, PartyId};

/// Errors from identity handling and certificate issuing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A party id that breaks the naming rule (`a-z0-9-`, 1–63 characters).
    #[error(
        "invalid party id {0:?}: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    InvalidPartyId(String),
    /// A certificate or key that could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    /// A certificate with no identity URI of this federation.
    #[error("certificate names no identity of this federation (no matching spiffe:// URI SAN)")]
    NoIdentity,
    /// A certificate naming several identities of this federation.
    #[error("certificate names more than one federation identity")]
    AmbiguousIdentity,
    /// rcgen refused to build a certificate or key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An output file exists and overwriting was not requested.
    #[error("{0} already exists (pass --force to overwrite)")]
    Exists(std::path::PathBuf),
    /// A DNS name or IP for the certificate that is not valid.
    #[error("invalid subject alternative name {0:?}")]
    InvalidName(String),
}
