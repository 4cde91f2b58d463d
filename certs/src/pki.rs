//! The federation's certificate authority: an offline root and an online intermediate,
//! created by [`init`] in the layout [`PkiDir`] describes.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
    SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::files::{check_absent, create_dir, write_atomic};
pub use crate::layout::PkiDir;

/// Default validity of the root CA, days.
pub const DEFAULT_ROOT_DAYS: u32 = 3650;
/// Default validity of the intermediate CA, days.
pub const DEFAULT_INTERMEDIATE_DAYS: u32 = 1095;

/// Key algorithm for new keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (default; widest compatibility).
    #[default]
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// The rcgen algorithm.
    pub fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// A fresh key pair.
    ///
    /// # Errors
    /// [`Error::Generate`] if the key cannot be generated.
    pub fn generate(self) -> Result<KeyPair, Error> {
        Ok(KeyPair::generate_for(self.algorithm())?)
    }
}

impl std::str::FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ecdsa-p256" | "p256" | "ecdsa" => Ok(KeyType::EcdsaP256),
            "ed25519" => Ok(KeyType::Ed25519),
            other => Err(format!("unknown key type {other:?} (use ecdsa-p256 or ed25519)")),
        }
    }
}

/// A random positive 128-bit serial number.
pub(crate) fn random_serial() -> SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // no leading zero byte: stable hex rendering
    SerialNumber::from_slice(&bytes)
}

fn ca_params(cn: String, federation: &str, days: u32, path_len: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, federation.to_string());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    params
}

/// Options of [`init`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Federation name.
    pub federation: String,
    /// Key algorithm of both CAs.
    pub key_type: KeyType,
    /// Root validity, days.
    pub root_days: u32,
    /// Intermediate validity, days.
    pub intermediate_days: u32,
    /// Overwrite an existing PKI.
    pub force: bool,
}

/// Creates the federation's root and intermediate CAs and an empty CRL.
///
/// # Errors
/// [`Error::Exists`] if a PKI is there and `force` is false; IO and generation errors.
pub fn init(pki: &PkiDir, opts: &InitOptions) -> Result<(), Error> {
    if opts.federation.is_empty()
        || !opts
            .federation
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
    {
        return Err(Error::InvalidName(opts.federation.clone()));
    }
    check_absent(&[&pki.root_key(), &pki.intermediate_key()], opts.force)?;
    create_dir(&pki.dir.join("root"))?;
    create_dir(&pki.dir.join("intermediate"))?;
    let root_key = opts.key_type.generate()?;
    let root_params = ca_params(
        format!("Tessera root CA ({})", opts.federation),
        &opts.federation,
        opts.root_days,
        1,
    );
    let root_cert = root_params.self_signed(&root_key)?;
    let root = Issuer::new(root_params, &root_key);
    let int_key = opts.key_type.generate()?;
    let int_params = ca_params(
        format!("Tessera intermediate CA ({})", opts.federation),
        &opts.federation,
        opts.intermediate_days.min(opts.root_days),
        0,
    );
    let int_cert = int_params.signed_by(&int_key, &root)?;
    write_atomic(&pki.root_cert(), root_cert.pem().as_bytes(), false)?;
    write_atomic(&pki.root_key(), root_key.serialize_pem().as_bytes(), true)?;
    write_atomic(&pki.intermediate_cert(), int_cert.pem().as_bytes(), false)?;
    write_atomic(&pki.intermediate_key(), int_key.serialize_pem().as_bytes(), true)?;
    write_atomic(&pki.trust_anchor(), root_cert.pem().as_bytes(), false)?;
    write_atomic(
        &pki.federation_file(),
        format!("{}\n", opts.federation).as_bytes(),
        false,
    )?;
    write_atomic(&pki.ledger(), b"[]\n", false)?;
    crate::crl::write_crl(pki, crate::crl::DEFAULT_CRL_DAYS)?;
    Ok(())
}

/// Whether `path` is inside an initialised PKI directory.
pub fn is_pki(dir: &Path) -> bool {
    PkiDir::new(dir).intermediate_key().exists()
}
