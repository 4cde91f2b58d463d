//! Loading TLS material from disk and building mutual-TLS rustls configurations for QUIC.
//!
//! Both sides verify the other's certificate against the federation CA (TLS 1.3 only, ring
//! provider). Identity (which party, or the coordinator) is checked on top of that by
//! [`super::peer_identity`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tessera_certs::inspect::CertInfo;

use super::TransportError;

/// ALPN protocol id; a peer offering another is refused during the TLS handshake.
pub const ALPN: &[u8] = b"tessera/1";

/// A holder's certificate chain, private key, the federation roots it trusts, and the CRLs it
/// checks peers against.
#[derive(Debug)]
pub struct TlsMaterial {
    /// The holder's certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The holder's private key. Never logged.
    pub key: PrivateKeyDer<'static>,
    /// The federation trust anchors.
    pub roots: Arc<RootCertStore>,
    /// CRLs to check peers' certificates against (at least one).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Summary of our own leaf certificate.
    pub leaf_info: CertInfo,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            roots: self.roots.clone(),
            crls: self.crls.clone(),
            leaf_info: self.leaf_info.clone(),
        }
    }
}

/// Paths of the PEM files, by default `tls.crt`, `tls.key`, `ca.crt` and (optional) `crl.pem`
/// in one directory (the layout `tessera-certs issue` writes).
#[derive(Clone, Debug)]
pub struct TlsPaths {
    /// Certificate chain (PEM): leaf, then intermediates.
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Federation root certificate(s) (PEM).
    pub ca: PathBuf,
    /// CRL(s) (PEM); required: a holder without it refuses to start.
    pub crl: PathBuf,
}

/// What the files looked like at one moment (modification time and length of each), to notice
/// changes cheaply.
pub type Fingerprint = Vec<Option<(std::time::SystemTime, u64)>>;

impl TlsPaths {
    /// The standard files inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: dir.join("ca.crt"),
            crl: dir.join("crl.pem"),
        }
    }

    /// The files' current fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        [&self.cert, &self.key, &self.ca, &self.crl]
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

impl TlsMaterial {
    /// Reads and checks the PEM files: a chain, a key that matches its leaf, at least one root,
    /// and the CRLs of `crl.pem`, which must exist (revocation checking fails closed).
    ///
    /// # Errors
    /// [`TransportError::Pem`] naming the file that is missing, unreadable, empty or inconsistent.
    pub fn load(paths: &TlsPaths) -> Result<Self, TransportError> {
        let pem_err = |path: &Path, what: String| TransportError::Pem {
            path: path.to_path_buf(),
            what,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&paths.cert)
            .map_err(|e| pem_err(&paths.cert, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err(&paths.cert, e.to_string()))?;
        let Some(leaf) = chain.first() else {
            return Err(pem_err(&paths.cert, "no certificate found".into()));
        };
        let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| pem_err(&paths.key, e.to_string()))?;
        let key_pem = std::fs::read_to_string(&paths.key).map_err(|e| pem_err(&paths.key, e.to_string()))?;
        if !tessera_certs::leaf::key_matches(&key_pem, leaf) {
            return Err(pem_err(
                &paths.key,
                "private key does not match the certificate in tls.crt".into(),
            ));
        }
        let leaf_info = CertInfo::from_der(leaf).map_err(|e| pem_err(&paths.cert, e.to_string()))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&paths.ca).map_err(|e| pem_err(&paths.ca, e.to_string()))? {
            let cert = cert.map_err(|e| pem_err(&paths.ca, e.to_string()))?;
            roots.add(cert).map_err(|e| pem_err(&paths.ca, e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(pem_err(&paths.ca, "no CA certificate found".into()));
        }
        // Fail closed: without a CRL a revoked peer would get in, so a missing one is an error.
        if !paths.crl.exists() {
            return Err(pem_err(
                &paths.crl,
                "missing: revocation cannot be checked without the federation's CRL; copy the current crl.pem here (tessera-certs issue writes one; tessera-certs crl makes a new one)".into(),
            ));
        }
        let crls: Vec<CertificateRevocationListDer<'static>> =
            CertificateRevocationListDer::pem_file_iter(&paths.crl)
                .map_err(|e| pem_err(&paths.crl, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| pem_err(&paths.crl, e.to_string()))?;
        if crls.is_empty() {
            return Err(pem_err(&paths.crl, "no CRL found".into()));
        }
        // A CRL past its next update may miss recent revocations: refused, as the handshakes
        // would refuse it (`enforce_revocation_expiration`), with the way out.
        let now = super::unix_now();
        for crl in &crls {
            let next = tessera_certs::crl::next_update(crl.as_ref())
                .map_err(|e| pem_err(&paths.crl, e.to_string()))?;
            if let Some(next) = next.filter(|&t| t < now) {
                return Err(pem_err(
                    &paths.crl,
                    format!(
                        "expired {} s ago (its next_update has passed): revocations since may be missing; sign a fresh one with `tessera-certs crl` and copy it here",
                        now - next
                    ),
                ));
            }
        }
        Ok(Self {
            chain,
            key,
            roots: Arc::new(roots),
            crls,
            leaf_info,
        })
    }

    /// Serials (hex) revoked by our CRLs.
    pub fn revoked_serials(&self) -> std::collections::HashSet<String> {
        self.crls
            .iter()
            .filter_map(|c| tessera_certs::crl::revoked_serials(c.as_ref()).ok())
            .flatten()
            .collect()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server (coordinator) side: present our chain, require a client certificate from the CA.
///
/// # Errors
/// [`TransportError::Tls`] if the key does not match or the CA cannot build a verifier.
pub fn server_config(m: &TlsMaterial) -> Result<quinn::crypto::rustls::QuicServerConfig, TransportError> {
    let mut builder = WebPkiClientVerifier::builder_with_provider(m.roots.clone(), provider());
    if !m.crls.is_empty() {
        builder = builder
            .with_crls(m.crls.clone())
            .only_check_end_entity_revocation()
            .enforce_revocation_expiration();
    }
    let verifier = builder.build().map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // No session resumption: every connection presents and verifies a full certificate chain
    // against the current roots and CRLs, so an expired or revoked party cannot come back on a
    // resumed session between two sweeps.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    quinn::crypto::rustls::QuicServerConfig::try_from(cfg).map_err(|e| TransportError::Tls(e.to_string()))
}

/// Client (party) side: verify the coordinator against the CA, present our chain.
///
/// # Errors
/// [`TransportError::Tls`] if the key does not match or the CA cannot build a verifier.
pub fn client_config(m: &TlsMaterial) -> Result<quinn::crypto::rustls::QuicClientConfig, TransportError> {
    let mut builder = WebPkiServerVerifier::builder_with_provider(m.roots.clone(), provider());
    if !m.crls.is_empty() {
        builder = builder
            .with_crls(m.crls.clone())
            .only_check_end_entity_revocation()
            .enforce_revocation_expiration();
    }
    let verifier = builder.build().map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| TransportError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.resumption = rustls::client::Resumption::disabled();
    quinn::crypto::rustls::QuicClientConfig::try_from(cfg).map_err(|e| TransportError::Tls(e.to_string()))
}
