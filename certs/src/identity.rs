//! Federation identities and how they are written into certificates.
//!
//! Every certificate in a Tessera federation names exactly one identity in a URI
//! subject alternative name: `spiffe://<federation>/coordinator` or
//! `spiffe://<federation>/party/<party-id>`. The transport reads this URI from the
//! peer's verified certificate and compares it with what the peer claims to be, so a
//! certificate issued to `bank-b` cannot answer as `bank-a`.

use std::fmt;

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::Error;

/// Longest party id accepted (it must fit in a DNS label).
pub const MAX_PARTY_ID_LEN: usize = 63;

/// A party's identifier: 1–63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
///
/// The same string appears in the party's certificate, its configuration, the coordinator's
/// list of expected parties, and every API response naming the party.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PartyId(String);

impl PartyId {
    /// Validates and wraps a party id.
    ///
    /// # Errors
    /// [`Error::InvalidPartyId`] if the string is empty, too long or has characters outside `a-z0-9-`.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= MAX_PARTY_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-')
            && !id.ends_with('-');
        if ok {
            Ok(Self(id))
        } else {
            Err(Error::InvalidPartyId(id))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PartyId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::new(value)
    }
}

impl From<PartyId> for String {
    fn from(value: PartyId) -> Self {
        value.0
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for PartyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

/// Who a certificate belongs to inside one federation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The federation's coordinator.
    Coordinator,
    /// A party (bank) with its id.
    Party(PartyId),
}

impl Identity {
    /// The SPIFFE-style URI written into the certificate's subject alternative names.
    pub fn uri(&self, federation: &str) -> String {
        match self {
            Identity::Coordinator => format!("spiffe://{federation}/coordinator"),
            Identity::Party(id) => format!("spiffe://{federation}/party/{id}"),
        }
    }

    /// Parses an identity URI, accepting only the given federation.
    ///
    /// Returns `None` for URIs of another federation or of another shape.
    pub fn from_uri(uri: &str, federation: &str) -> Option<Identity> {
        let rest = uri.strip_prefix("spiffe://")?.strip_prefix(federation)?;
        let rest = rest.strip_prefix('/')?;
        if rest == "coordinator" {
            return Some(Identity::Coordinator);
        }
        let id = rest.strip_prefix("party/")?;
        PartyId::new(id).ok().map(Identity::Party)
    }

    /// Reads the one identity of `federation` named in a DER certificate's URI SANs.
    ///
    /// This does **not** verify the certificate; callers use it on certificates that the TLS
    /// layer has already verified against the federation CA.
    ///
    /// # Errors
    /// [`Error::Parse`] if the DER is not a certificate; [`Error::NoIdentity`] if no URI SAN of
    /// this federation is present, or [`Error::AmbiguousIdentity`] if several are.
    pub fn from_cert_der(der: &[u8], federation: &str) -> Result<Identity, Error> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::Parse(e.to_string()))?;
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| Error::Parse(e.to_string()))?;
        let mut found = Vec::new();
        if let Some(sans) = sans {
            for name in &sans.value.general_names {
                if let GeneralName::URI(uri) = name
                    && let Some(identity) = Identity::from_uri(uri, federation)
                {
                    found.push(identity);
                }
            }
        }
        match found.len() {
            0 => Err(Error::NoIdentity),
            1 => Ok(found.remove(0)),
            _ => Err(Error::AmbiguousIdentity),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Coordinator => f.write_str("coordinator"),
            Identity::Party(id) => write!(f, "party {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_ids_are_validated() {
        for ok in ["bank-a", "a", "b2", &"x".repeat(63)] {
            assert!(PartyId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Bank", "-a", "a-", "a b", "a/b", "ü", &"x".repeat(64)] {
            assert!(PartyId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uris_round_trip_and_federation_is_checked() {
        let p = Identity::Party(PartyId::new("bank-a").unwrap());
        assert_eq!(p.uri("fed"), "spiffe://fed/party/bank-a");
        assert_eq!(Identity::from_uri(&p.uri("fed"), "fed"), Some(p.clone()));
        assert_eq!(Identity::from_uri(&p.uri("fed"), "other"), None);
        assert_eq!(Identity::from_uri("spiffe://fedx/party/bank-a", "fed"), None);
        assert_eq!(
            Identity::from_uri(&Identity::Coordinator.uri("fed"), "fed"),
            Some(Identity::Coordinator)
        );
        assert_eq!(Identity::from_uri("spiffe://fed/party/BAD", "fed"), None);
        assert_eq!(Identity::from_uri("spiffe://fed/party/a/b", "fed"), None);
    }
}
