//! Revocation: a ledger of revoked serials and the CRL made from it, signed by the
//! intermediate CA. Coordinator and parties load the CRL into their TLS verifiers and re-read
//! it while running.

use std::collections::HashSet;
use std::path::Path;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::files::{read_string, write_atomic};
use crate::inspect::{CertInfo, hex};
use crate::layout::PkiDir;

/// Default validity of a CRL (`next_update` − `this_update`), days.
pub const DEFAULT_CRL_DAYS: u32 = 30;

/// Why a certificate was revoked (RFC 5280 reason codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// No reason given.
    Unspecified,
    /// The private key is, or may be, compromised.
    KeyCompromise,
    /// The holder left the federation or changed role.
    AffiliationChanged,
    /// Replaced by a newer certificate (rotation).
    Superseded,
    /// The holder stopped operating.
    CessationOfOperation,
}

impl std::str::FromStr for Reason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "unspecified" => Reason::Unspecified,
            "key-compromise" => Reason::KeyCompromise,
            "affiliation-changed" => Reason::AffiliationChanged,
            "superseded" => Reason::Superseded,
            "cessation-of-operation" => Reason::CessationOfOperation,
            other => {
                return Err(format!(
                    "unknown reason {other:?} (unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation)"
                ));
            }
        })
    }
}

impl From<Reason> for RevocationReason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
        }
    }
}

/// One revoked certificate in the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revoked {
    /// Serial number, hex (as `openssl x509 -serial` prints it).
    pub serial: String,
    /// When it was revoked (Unix seconds).
    pub revoked_at: i64,
    /// Why.
    pub reason: Reason,
    /// Subject of the certificate, when known.
    #[serde(default)]
    pub subject: Option<String>,
}

fn read_ledger(pki: &PkiDir) -> Result<Vec<Revoked>, Error> {
    let path = pki.ledger();
    if !path.exists() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&read_string(&path)?).map_err(|e| Error::Parse(format!("{}: {e}", path.display())))
}

fn parse_hex(serial: &str) -> Result<Vec<u8>, Error> {
    let clean: String = serial.chars().filter(|c| *c != ':').collect();
    if clean.is_empty() || !clean.len().is_multiple_of(2) || clean.len() > 40 {
        return Err(Error::InvalidName(serial.to_string()));
    }
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).map_err(|_| Error::InvalidName(serial.to_string())))
        .collect()
}

/// Adds a serial (hex) to the ledger and writes a new CRL. Revoking twice is harmless.
///
/// # Errors
/// Invalid serial, PKI and IO errors.
pub fn revoke(pki: &PkiDir, serial: &str, reason: Reason, subject: Option<String>) -> Result<Revoked, Error> {
    let serial = hex(&parse_hex(serial)?);
    let mut ledger = read_ledger(pki)?;
    let entry = match ledger.iter().find(|r| r.serial == serial) {
        Some(e) => e.clone(),
        None => {
            let e = Revoked {
                serial,
                revoked_at: crate::inspect::unix_now(),
                reason,
                subject,
            };
            ledger.push(e.clone());
            let json = serde_json::to_vec_pretty(&ledger).map_err(|e| Error::Parse(e.to_string()))?;
            write_atomic(&pki.ledger(), &json, false)?;
            e
        }
    };
    write_crl(pki, DEFAULT_CRL_DAYS)?;
    Ok(entry)
}

/// Revokes the leaf certificate in a PEM file.
///
/// # Errors
/// Parse, PKI and IO errors.
pub fn revoke_cert(pki: &PkiDir, cert: &Path, reason: Reason) -> Result<Revoked, Error> {
    let info = CertInfo::from_file(cert)?;
    revoke(pki, &info.serial, reason, Some(info.subject))
}

/// Signs a fresh CRL from the ledger (valid `days`) into the PKI's `crl.pem` and returns its PEM.
///
/// # Errors
/// PKI and IO errors.
pub fn write_crl(pki: &PkiDir, days: u32) -> Result<String, Error> {
    let ledger = read_ledger(pki)?;
    let issuer = pki.intermediate()?;
    let now = OffsetDateTime::now_utc();
    let mut revoked = Vec::with_capacity(ledger.len());
    for r in &ledger {
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&parse_hex(&r.serial)?),
            revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at).unwrap_or(now),
            reason_code: Some(r.reason.into()),
            invalidity_date: None,
        });
    }
    let number = now.unix_timestamp_nanos().to_be_bytes();
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(i64::from(days.max(1))),
        crl_number: SerialNumber::from_slice(&number[4..]),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&issuer)?;
    let pem = crl.pem()?;
    write_atomic(&pki.crl(), pem.as_bytes(), false)?;
    Ok(pem)
}

/// The revoked serials (hex) listed in a DER CRL. Used at run time to close live connections
/// of peers revoked after they connected.
///
/// # Errors
/// [`Error::Parse`] if `der` is not a CRL.
pub fn revoked_serials(der: &[u8]) -> Result<HashSet<String>, Error> {
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| Error::Parse(e.to_string()))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| hex(r.raw_serial()))
        .collect())
}

/// When a DER CRL says a newer one will be out (`next_update`, Unix seconds), if it says.
///
/// # Errors
/// [`Error::Parse`] if `der` is not a CRL.
pub fn next_update(der: &[u8]) -> Result<Option<i64>, Error> {
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| Error::Parse(e.to_string()))?;
    Ok(crl.next_update().map(|t| t.timestamp()))
}

use x509_parser::prelude::FromDer;
