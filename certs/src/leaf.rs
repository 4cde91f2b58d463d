//! Leaf certificates: issue (key made here), the bank-side CSR flow (key never travels),
//! and rotation.
//!
//! A leaf directory holds `tls.crt` (leaf + intermediate), `tls.key` (0600), `ca.crt` (the
//! root: the trust anchor) and `crl.pem` (the CRL at issue time; replace it as new CRLs are
//! published). Files are replaced atomically, the key before the certificate; a process
//! reloading them checks that they match and retries if it caught them mid-rotation.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::files::{check_absent, create_dir, read_string, write_atomic};
use crate::inspect::CertInfo;
use crate::pki::{KeyType, PkiDir, random_serial};
use crate::{Error, Identity};

/// File name of a leaf certificate chain.
pub const LEAF_CERT: &str = "tls.crt";
/// File name of a leaf private key.
pub const LEAF_KEY: &str = "tls.key";
/// File name of the trust anchor in a leaf directory.
pub const CA_CERT: &str = "ca.crt";
/// File name of the CRL in a leaf directory.
pub const CRL: &str = "crl.pem";
/// File name of a certificate signing request.
pub const CSR: &str = "request.csr";
/// Default leaf validity, days.
pub const DEFAULT_LEAF_DAYS: u32 = 90;

/// What to put in a leaf certificate.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    /// Federation name (the authority part of the identity URI).
    pub federation: String,
    /// Who the certificate is for.
    pub identity: Identity,
    /// DNS names the holder is reached at (the coordinator's clients check one of them).
    pub dns_names: Vec<String>,
    /// IP addresses the holder is reached at.
    pub ips: Vec<IpAddr>,
    /// Validity in days from the start.
    pub days: u32,
    /// Start of validity relative to now, seconds (negative backdates; tests use it for
    /// expired and not-yet-valid certificates).
    pub not_before_offset_secs: i64,
    /// Key algorithm for a key made here.
    pub key_type: KeyType,
}

impl LeafRequest {
    /// Defaults for `identity`: the coordinator is reachable as `localhost` and `127.0.0.1`;
    /// parties carry no DNS names (they only dial out); 90 days; ECDSA P-256.
    pub fn new(federation: &str, identity: Identity) -> Self {
        let (dns_names, ips) = match identity {
            Identity::Coordinator => (vec!["localhost".to_string()], vec![IpAddr::from([127, 0, 0, 1])]),
            Identity::Party(_) => (Vec::new(), Vec::new()),
        };
        Self {
            federation: federation.to_string(),
            identity,
            dns_names,
            ips,
            days: DEFAULT_LEAF_DAYS,
            not_before_offset_secs: -300,
            key_type: KeyType::default(),
        }
    }

    fn sans(&self) -> Result<Vec<SanType>, Error> {
        let uri = self.identity.uri(&self.federation);
        let mut sans = vec![SanType::URI(
            uri.clone().try_into().map_err(|_| Error::InvalidName(uri))?,
        )];
        for dns in &self.dns_names {
            sans.push(SanType::DnsName(
                dns.clone()
                    .try_into()
                    .map_err(|_| Error::InvalidName(dns.clone()))?,
            ));
        }
        sans.extend(self.ips.iter().copied().map(SanType::IpAddress));
        Ok(sans)
    }

    /// The full certificate parameters (identity, usages, validity, fresh serial).
    fn params(&self) -> Result<CertificateParams, Error> {
        let mut params = CertificateParams::default();
        let cn = match &self.identity {
            Identity::Coordinator => "tessera coordinator".to_string(),
            Identity::Party(id) => format!("tessera party {id}"),
        };
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.federation.clone());
        params.subject_alt_names = self.sans()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match self.identity {
            Identity::Coordinator => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Identity::Party(_) => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        let start = OffsetDateTime::now_utc() + Duration::seconds(self.not_before_offset_secs);
        params.not_before = start;
        params.not_after = start + Duration::days(i64::from(self.days));
        params.serial_number = Some(random_serial());
        Ok(params)
    }
}

/// Signs `req` for `public_key` with the PKI's intermediate; returns the chain PEM (leaf +
/// intermediate).
fn sign_chain(pki: &PkiDir, req: &LeafRequest, public_key: &impl PublicKeyData) -> Result<String, Error> {
    let federation = pki.federation()?;
    if federation != req.federation {
        return Err(Error::WrongFederation {
            pki: federation,
            requested: req.federation.clone(),
        });
    }
    let issuer = pki.intermediate()?;
    let cert = req.params()?.signed_by(public_key, &issuer)?;
    Ok(format!("{}{}", cert.pem(), pki.intermediate_pem()?))
}

/// Copies the trust anchor and current CRL into a leaf directory.
fn install_trust(pki: &PkiDir, out: &Path) -> Result<(), Error> {
    write_atomic(
        &out.join(CA_CERT),
        read_string(&pki.trust_anchor())?.as_bytes(),
        false,
    )?;
    if pki.crl().exists() {
        write_atomic(&out.join(CRL), read_string(&pki.crl())?.as_bytes(), false)?;
    }
    Ok(())
}

/// Issues a key and certificate into `out` (`tls.crt`, `tls.key`, `ca.crt`, `crl.pem`).
///
/// # Errors
/// [`Error::Exists`] if outputs exist and `force` is false; PKI, IO and generation errors.
pub fn issue(pki: &PkiDir, req: &LeafRequest, out: &Path, force: bool) -> Result<CertInfo, Error> {
    check_absent(&[&out.join(LEAF_CERT), &out.join(LEAF_KEY)], force)?;
    let key = req.key_type.generate()?;
    let chain = sign_chain(pki, req, &key)?;
    create_dir(out)?;
    write_atomic(&out.join(LEAF_KEY), key.serialize_pem().as_bytes(), true)?;
    write_atomic(&out.join(LEAF_CERT), chain.as_bytes(), false)?;
    install_trust(pki, out)?;
    CertInfo::from_file(&out.join(LEAF_CERT))
}

/// Bank side: makes a private key (`tls.key`, 0600) and a CSR (`request.csr`) in `out`. Only
/// the CSR is sent to the federation operator.
///
/// # Errors
/// [`Error::Exists`] unless `force`; generation and IO errors.
pub fn csr(req: &LeafRequest, out: &Path, force: bool) -> Result<PathBuf, Error> {
    check_absent(&[&out.join(LEAF_KEY), &out.join(CSR)], force)?;
    let key = req.key_type.generate()?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = req.sans()?;
    params
        .distinguished_name
        .push(DnType::CommonName, req.identity.uri(&req.federation));
    let csr = params.serialize_request(&key)?;
    create_dir(out)?;
    write_atomic(&out.join(LEAF_KEY), key.serialize_pem().as_bytes(), true)?;
    let path = out.join(CSR);
    write_atomic(&path, csr.pem()?.as_bytes(), false)?;
    Ok(path)
}

/// Operator side: signs a CSR for the identity the operator names. Only the CSR's public key
/// is used; the identity, names, usages and validity come from `req`. A CSR asking for another
/// identity of this federation is refused.
///
/// Writes `tls.crt`, `ca.crt` and `crl.pem` into `out` (which may be the bank's directory,
/// next to its key).
///
/// # Errors
/// [`Error::CsrMismatch`] if the CSR names another identity; parse, PKI and IO errors.
pub fn sign(pki: &PkiDir, csr_path: &Path, req: &LeafRequest, out: &Path) -> Result<CertInfo, Error> {
    let csr = CertificateSigningRequestParams::from_pem(&read_string(csr_path)?)
        .map_err(|e| Error::Parse(format!("{}: {e}", csr_path.display())))?;
    for san in &csr.params.subject_alt_names {
        if let SanType::URI(uri) = san {
            let uri = uri.as_str();
            if uri.starts_with("spiffe://")
                && Identity::from_uri(uri, &req.federation) != Some(req.identity.clone())
            {
                return Err(Error::CsrMismatch {
                    requested: uri.to_string(),
                    signing: req.identity.uri(&req.federation),
                });
            }
        }
    }
    let chain = sign_chain(pki, req, &csr.public_key)?;
    create_dir(out)?;
    write_atomic(&out.join(LEAF_CERT), chain.as_bytes(), false)?;
    install_trust(pki, out)?;
    CertInfo::from_file(&out.join(LEAF_CERT))
}

/// Rotates the certificate in leaf directory `dir`: a new key and a certificate for the same
/// identity and names, replacing the files atomically (key first). Returns the old and new
/// certificate summaries.
///
/// # Errors
/// Parse, PKI, IO and generation errors; nothing is replaced on error.
pub fn rotate(pki: &PkiDir, dir: &Path, days: u32, key_type: KeyType) -> Result<(CertInfo, CertInfo), Error> {
    let old = CertInfo::from_file(&dir.join(LEAF_CERT))?;
    let federation = pki.federation()?;
    let identity = old.identity(&federation)?;
    let mut req = LeafRequest::new(&federation, identity);
    req.dns_names = old.dns_names.clone();
    req.ips = old.ips.clone();
    req.days = days;
    req.key_type = key_type;
    let key = req.key_type.generate()?;
    let chain = sign_chain(pki, &req, &key)?;
    write_atomic(&dir.join(LEAF_KEY), key.serialize_pem().as_bytes(), true)?;
    write_atomic(&dir.join(LEAF_CERT), chain.as_bytes(), false)?;
    install_trust(pki, dir)?;
    let new = CertInfo::from_file(&dir.join(LEAF_CERT))?;
    Ok((old, new))
}

/// Whether `KeyPair` PEM in `key_pem` holds the public key of the leaf in `cert_der`.
pub fn key_matches(key_pem: &str, cert_der: &[u8]) -> bool {
    let Ok(key) = KeyPair::from_pem(key_pem) else {
        return false;
    };
    let Ok((_, cert)) =
        <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(cert_der)
    else {
        return false;
    };
    cert.public_key().subject_public_key.data.as_ref() == key.der_bytes()
}
