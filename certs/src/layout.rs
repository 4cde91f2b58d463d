//! Where each file of a PKI directory lives, and reading its CA. Used by [`crate::pki`]
//! (creating it) and [`crate::crl`] (revocation), neither of which depends on the other's
//! internals.
//!
//! Layout of a PKI directory (`tessera-certs init --out pki`):
//!
//! | path | what | who needs it |
//! |---|---|---|
//! | `root/ca.crt`, `root/ca.key` | root CA (long-lived) | only `init`; move `root/ca.key` offline afterwards |
//! | `intermediate/ca.crt`, `intermediate/ca.key` | intermediate CA: signs leaves and CRLs | `issue`, `sign`, `revoke`, `crl`, `rotate` |
//! | `ca.crt` | copy of the root certificate: the trust anchor every holder gets | everyone |
//! | `crl.pem` | the current CRL, signed by the intermediate | everyone (copied into leaf directories) |
//! | `revoked.json` | the revocation ledger the CRL is made from | the operator |
//! | `federation` | the federation name | the tooling |

use std::path::PathBuf;

use rcgen::{Issuer, KeyPair};

use crate::Error;
use crate::files::read_string;

/// Paths of a PKI directory.
#[derive(Clone, Debug)]
pub struct PkiDir {
    /// The directory.
    pub dir: PathBuf,
}

impl PkiDir {
    /// An existing PKI directory: it must hold the intermediate CA and the federation name.
    /// Issuing, signing, revoking and rotating open the PKI this way, so a mistyped path is
    /// refused instead of treated as an empty PKI.
    ///
    /// # Errors
    /// [`Error::NotPki`] naming the directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let p = Self::new(dir);
        let complete = [p.intermediate_cert(), p.intermediate_key(), p.federation_file()]
            .iter()
            .all(|f| f.is_file());
        if !complete {
            return Err(Error::NotPki(p.dir.clone()));
        }
        Ok(p)
    }

    /// A PKI directory at `dir` (not checked).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// Root certificate.
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("root/ca.crt")
    }
    /// Root private key.
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("root/ca.key")
    }
    /// Intermediate certificate.
    pub fn intermediate_cert(&self) -> PathBuf {
        self.dir.join("intermediate/ca.crt")
    }
    /// Intermediate private key.
    pub fn intermediate_key(&self) -> PathBuf {
        self.dir.join("intermediate/ca.key")
    }
    /// The trust anchor to distribute (copy of the root certificate).
    pub fn trust_anchor(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    /// The current CRL.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }
    /// The revocation ledger.
    pub fn ledger(&self) -> PathBuf {
        self.dir.join("revoked.json")
    }
    pub(crate) fn federation_file(&self) -> PathBuf {
        self.dir.join("federation")
    }

    /// The federation name recorded at `init`.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory is not an initialised PKI.
    pub fn federation(&self) -> Result<String, Error> {
        Ok(read_string(&self.federation_file())?.trim().to_string())
    }

    /// The intermediate CA as an rcgen issuer.
    ///
    /// # Errors
    /// IO or parse errors; the message names the missing file.
    pub fn intermediate(&self) -> Result<Issuer<'static, KeyPair>, Error> {
        let key = KeyPair::from_pem(&read_string(&self.intermediate_key())?)?;
        Ok(Issuer::from_ca_cert_pem(
            &read_string(&self.intermediate_cert())?,
            key,
        )?)
    }

    /// The intermediate certificate's PEM (appended to leaf chains).
    ///
    /// # Errors
    /// IO errors.
    pub fn intermediate_pem(&self) -> Result<String, Error> {
        read_string(&self.intermediate_cert())
    }
}
