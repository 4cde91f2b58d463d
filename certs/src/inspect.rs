//! Reading certificates: a human-readable summary (`inspect`) and a chain check against the
//! federation's root and CRL (`verify`), using the same path validation as the TLS stack
//! (webpki).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::read_cert_chain;
use crate::{Error, Identity};

/// Now, as Unix seconds (what certificate validity is compared with).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Uppercase hex without separators, as `openssl x509 -serial` prints serials.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// What a certificate says.
#[derive(Clone, Debug, PartialEq)]
pub struct CertInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial, hex.
    pub serial: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// URI SANs.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// Extended key usages.
    pub extended_key_usage: Vec<&'static str>,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// Public key algorithm.
    pub key_algorithm: String,
}

impl CertInfo {
    /// Summarises a DER certificate.
    ///
    /// # Errors
    /// [`Error::Parse`] if it is not a certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| Error::Parse(e.to_string()))?;
        let (mut uris, mut dns_names, mut ips) = (Vec::new(), Vec::new(), Vec::new());
        let mut extended_key_usage = Vec::new();
        let mut is_ca = false;
        for ext in c.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for n in &san.general_names {
                        match n {
                            GeneralName::URI(u) => uris.push(u.to_string()),
                            GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                            GeneralName::IPAddress(b) => match b.len() {
                                4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                                16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                                _ => {}
                            },
                            _ => {}
                        }
                    }
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    if eku.server_auth {
                        extended_key_usage.push("serverAuth");
                    }
                    if eku.client_auth {
                        extended_key_usage.push("clientAuth");
                    }
                }
                ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
                _ => {}
            }
        }
        Ok(Self {
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            serial: hex(c.raw_serial()),
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            uris,
            dns_names,
            ips,
            extended_key_usage,
            is_ca,
            key_algorithm: match c.public_key().algorithm.algorithm.to_id_string().as_str() {
                "1.2.840.10045.2.1" => "ECDSA".to_string(),
                "1.3.101.112" => "Ed25519".to_string(),
                "1.2.840.113549.1.1.1" => "RSA".to_string(),
                other => other.to_string(),
            },
        })
    }

    /// Summarises the first certificate of a PEM file.
    ///
    /// # Errors
    /// IO and parse errors.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let chain = read_cert_chain(path)?;
        Self::from_der(&chain[0])
    }

    /// The federation identity the certificate names.
    ///
    /// # Errors
    /// [`Error::NoIdentity`] or [`Error::AmbiguousIdentity`].
    pub fn identity(&self, federation: &str) -> Result<Identity, Error> {
        let mut found: Vec<Identity> = self
            .uris
            .iter()
            .filter_map(|u| Identity::from_uri(u, federation))
            .collect();
        match found.len() {
            0 => Err(Error::NoIdentity),
            1 => Ok(found.remove(0)),
            _ => Err(Error::AmbiguousIdentity),
        }
    }

    /// Seconds until expiry from `now` (negative when expired).
    pub fn seconds_left(&self, now: i64) -> i64 {
        self.not_after - now
    }
}

fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = unix_now();
        writeln!(f, "subject:     {}", self.subject)?;
        writeln!(f, "issuer:      {}", self.issuer)?;
        writeln!(f, "serial:      {}", self.serial)?;
        writeln!(
            f,
            "valid:       {} .. {}",
            date(self.not_before),
            date(self.not_after)
        )?;
        let left = self.seconds_left(now);
        if now < self.not_before {
            writeln!(f, "status:      NOT YET VALID")?;
        } else if left < 0 {
            writeln!(f, "status:      EXPIRED {} days ago", -left / 86_400)?;
        } else {
            writeln!(f, "days left:   {}", left / 86_400)?;
        }
        for u in &self.uris {
            writeln!(f, "identity:    {u}")?;
        }
        if !self.dns_names.is_empty() {
            writeln!(f, "dns names:   {}", self.dns_names.join(", "))?;
        }
        if !self.ips.is_empty() {
            let ips: Vec<String> = self.ips.iter().map(|i| i.to_string()).collect();
            writeln!(f, "ip addrs:    {}", ips.join(", "))?;
        }
        writeln!(
            f,
            "usage:       {}",
            if self.is_ca {
                "CA".to_string()
            } else {
                self.extended_key_usage.join(", ")
            }
        )?;
        write!(f, "key:         {}", self.key_algorithm)
    }
}

/// Checks the certificate chain in `cert` (leaf first, then intermediates) against the root(s)
/// in `ca` at the current time, for the usage its identity needs (server for the coordinator,
/// client for parties), and against the CRLs in `crl` if given.
///
/// # Errors
/// [`Error::Verify`] with webpki's reason; IO and parse errors.
pub fn verify(cert: &Path, ca: &Path, crl: Option<&Path>, federation: &str) -> Result<CertInfo, Error> {
    let chain = read_cert_chain(cert)?;
    let roots_der = read_cert_chain(ca)?;
    let info = CertInfo::from_der(&chain[0])?;
    let identity = info.identity(federation)?;
    let anchors: Vec<_> = roots_der
        .iter()
        .map(|r| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(r.as_slice()))
                .map(|a| a.to_owned())
                .map_err(|e| Error::Verify(format!("trust anchor: {e:?}")))
        })
        .collect::<Result<_, _>>()?;
    let leaf = CertificateDer::from(chain[0].as_slice());
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| Error::Verify(format!("{e:?}")))?;
    let crl_ders: Vec<Vec<u8>> = match crl {
        Some(p) => {
            let text = crate::files::read_string(p)?;
            x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
                .filter_map(Result::ok)
                .filter(|p| p.label == "X509 CRL")
                .map(|p| p.contents)
                .collect()
        }
        None => Vec::new(),
    };
    let crls: Vec<webpki::CertRevocationList<'_>> = crl_ders
        .iter()
        .map(|d| {
            webpki::BorrowedCertRevocationList::from_der(d.as_slice())
                .map(webpki::CertRevocationList::from)
                .map_err(|e| Error::Verify(format!("CRL: {e:?}")))
        })
        .collect::<Result<_, _>>()?;
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let revocation = if crl_refs.is_empty() {
        None
    } else {
        Some(
            webpki::RevocationOptionsBuilder::new(&crl_refs)
                .map_err(|e| Error::Verify(format!("{e:?}")))?
                .with_depth(webpki::RevocationCheckDepth::EndEntity)
                .build(),
        )
    };
    let usage = match identity {
        Identity::Coordinator => webpki::KeyUsage::server_auth(),
        Identity::Party(_) => webpki::KeyUsage::client_auth(),
    };
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        UnixTime::now(),
        usage,
        revocation,
        None,
    )
    .map_err(|e| Error::Verify(format!("{e:?}")))?;
    Ok(info)
}
