//! Issuing: a development federation CA and leaf certificates for the coordinator and parties.
//!
//! Files follow the Kubernetes `kubernetes.io/tls` naming so the same directory can become a
//! Secret later: a CA directory holds `ca.crt` and `ca.key`; a leaf directory holds `tls.crt`,
//! `tls.key` and a copy of `ca.crt` (the trust anchor the holder verifies peers against).
//! Private keys are created with mode 0600 and never printed.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::{Error, Identity};

/// File name of a CA certificate (in CA and leaf directories).
pub const CA_CERT: &str = "ca.crt";
/// File name of the CA private key (CA directory only).
pub const CA_KEY: &str = "ca.key";
/// File name of a leaf certificate.
pub const LEAF_CERT: &str = "tls.crt";
/// File name of a leaf private key.
pub const LEAF_KEY: &str = "tls.key";

/// Default validity of a development CA, in days.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default validity of a leaf certificate, in days.
pub const DEFAULT_LEAF_DAYS: u32 = 90;

/// What to put in a leaf certificate.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    /// Federation name (the authority part of the identity URI).
    pub federation: String,
    /// Who the certificate is for.
    pub identity: Identity,
    /// DNS names the holder is reached at (meaningful for the coordinator, which is a server).
    pub dns_names: Vec<String>,
    /// IP addresses the holder is reached at.
    pub ips: Vec<IpAddr>,
    /// Validity in days from now.
    pub days: u32,
    /// Start of validity relative to now, in seconds (negative backdates; tests use it to
    /// make expired or not-yet-valid certificates).
    pub not_before_offset_secs: i64,
}

impl LeafRequest {
    /// A request with the defaults for `identity`: the coordinator is reachable as
    /// `localhost` and `127.0.0.1`; parties carry no DNS names (they only dial out).
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
        }
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive INTEGER
    SerialNumber::from_slice(&bytes)
}

/// Creates a development CA for `federation` in `dir` (`ca.crt`, `ca.key`).
///
/// # Errors
/// [`Error::Exists`] if the files exist and `force` is false; I/O and generation errors.
pub fn create_ca(dir: &Path, federation: &str, days: u32, force: bool) -> Result<(), Error> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    for p in [&cert_path, &key_path] {
        if p.exists() && !force {
            return Err(Error::Exists(p.clone()));
        }
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("Tessera federation CA ({federation})"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, federation.to_string());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key)?;
    create_dir(dir)?;
    write_file(&cert_path, cert.pem().as_bytes(), false)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    Ok(())
}

/// Issues a leaf certificate signed by the CA in `ca_dir`, writing `tls.crt`, `tls.key` and
/// `ca.crt` into `out_dir`.
///
/// Coordinator certificates carry server and client authentication usages; party
/// certificates carry client authentication only, so a party certificate can never stand in
/// for the coordinator.
///
/// # Errors
/// [`Error::Exists`] if outputs exist and `force` is false; parse, I/O and generation errors.
pub fn issue_leaf(ca_dir: &Path, req: &LeafRequest, out_dir: &Path, force: bool) -> Result<(), Error> {
    let cert_path = out_dir.join(LEAF_CERT);
    let key_path = out_dir.join(LEAF_KEY);
    for p in [&cert_path, &key_path] {
        if p.exists() && !force {
            return Err(Error::Exists(p.clone()));
        }
    }
    let ca_pem = read_string(&ca_dir.join(CA_CERT))?;
    let ca_key_pem = read_string(&ca_dir.join(CA_KEY))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let cn = match &req.identity {
        Identity::Coordinator => "tessera coordinator".to_string(),
        Identity::Party(id) => format!("tessera party {id}"),
    };
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, req.federation.clone());
    let uri = req.identity.uri(&req.federation);
    let mut sans = vec![SanType::URI(
        uri.clone().try_into().map_err(|_| Error::InvalidName(uri))?,
    )];
    for dns in &req.dns_names {
        sans.push(SanType::DnsName(
            dns.clone()
                .try_into()
                .map_err(|_| Error::InvalidName(dns.clone()))?,
        ));
    }
    sans.extend(req.ips.iter().copied().map(SanType::IpAddress));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match req.identity {
        Identity::Coordinator => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Identity::Party(_) => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc() + Duration::seconds(req.not_before_offset_secs);
    params.not_before = now;
    params.not_after = now + Duration::days(i64::from(req.days));
    params.serial_number = Some(random_serial());
    let cert = params.signed_by(&key, &issuer)?;

    create_dir(out_dir)?;
    write_file(&cert_path, cert.pem().as_bytes(), false)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&out_dir.join(CA_CERT), ca_pem.as_bytes(), false)?;
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn read_string(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a file; secrets are created with mode 0600 before any byte is written.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: PathBuf::from(path),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    #[cfg(unix)]
    if secret {
        // An existing file keeps its old mode on open: force 0600.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PartyId;

    #[test]
    fn issues_leaf_with_identity_and_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        create_ca(&ca, "fed", 30, false).unwrap();
        assert!(matches!(create_ca(&ca, "fed", 30, false), Err(Error::Exists(_))));
        let out = dir.path().join("bank-a");
        let id = Identity::Party(PartyId::new("bank-a").unwrap());
        issue_leaf(&ca, &LeafRequest::new("fed", id.clone()), &out, false).unwrap();
        let pem = fs::read_to_string(out.join(LEAF_CERT)).unwrap();
        let der = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents;
        assert_eq!(Identity::from_cert_der(&der, "fed").unwrap(), id);
        assert!(matches!(
            Identity::from_cert_der(&der, "other"),
            Err(Error::NoIdentity)
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for k in [ca.join(CA_KEY), out.join(LEAF_KEY)] {
                assert_eq!(fs::metadata(&k).unwrap().permissions().mode() & 0o777, 0o600);
            }
        }
    }
}
