//! Tessera certificate tooling: the whole lifecycle of a federation's certificates.
//!
//! Layout:
//! - [`identity`]: party ids and the URI SAN that binds a certificate to one federation identity.
//! - [`pki`]: `init` — an offline root CA and an intermediate that signs leaves and CRLs.
//! - [`leaf`]: `issue`, the bank-side `csr` / operator-side `sign` flow, `rotate`.
//! - [`crl`]: `revoke` and the CRL; reading revoked serials at run time.
//! - [`inspect`]: `inspect` (summary) and `verify` (chain + CRL check via webpki).
//! - [`k8s`]: Kubernetes `kubernetes.io/tls` Secret manifests.
//!
//! Private keys are written with mode 0600 and never printed. The `tessera-certs` binary and
//! `scripts/*cert*.sh` wrap this library.
#![warn(missing_docs, unreachable_pub)]

pub mod crl;
pub mod durable;
mod files;
pub use files::{Owner, chown_tree};
pub mod identity;
pub mod inspect;
pub mod k8s;
pub mod layout;
pub mod leaf;
pub mod pki;

pub use identity::{Identity, PartyId};

/// Errors of certificate handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A party id that breaks the naming rule (`a-z0-9-`, 1–63 characters).
    #[error(
        "invalid party id {0:?}: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    InvalidPartyId(String),
    /// A certificate, key, CSR or CRL that could not be parsed.
    #[error("cannot parse: {0}")]
    Parse(String),
    /// A certificate with no identity URI of this federation.
    #[error("certificate names no identity of this federation (no matching spiffe:// URI SAN)")]
    NoIdentity,
    /// A certificate naming several identities of this federation.
    #[error("certificate names more than one federation identity")]
    AmbiguousIdentity,
    /// rcgen refused to build a certificate, key or CRL.
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
    /// The directory given as the PKI is not one (no intermediate CA in it).
    #[error(
        "{0} is not a federation PKI directory (no intermediate/ca.crt, intermediate/ca.key and federation there): pass the right --ca, or create one with `tessera-certs init --out DIR`"
    )]
    NotPki(std::path::PathBuf),
    /// An output file exists and overwriting was not requested.
    #[error("{0} already exists (pass --force to overwrite)")]
    Exists(std::path::PathBuf),
    /// A name, address or serial that is not valid where it is used.
    #[error("invalid value {0:?}")]
    InvalidName(String),
    /// The PKI belongs to another federation than requested.
    #[error("this PKI is for federation {pki:?}, not {requested:?}")]
    WrongFederation {
        /// The PKI's federation.
        pki: String,
        /// The requested one.
        requested: String,
    },
    /// A CSR asks for another identity than the operator is signing for.
    #[error("the CSR asks for {requested} but you are signing for {signing}; refusing")]
    CsrMismatch {
        /// Identity in the CSR.
        requested: String,
        /// Identity being signed.
        signing: String,
    },
    /// Chain or revocation check failed.
    #[error("verification failed: {0}")]
    Verify(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crl::Reason;
    use crate::inspect::{CertInfo, verify};
    use crate::leaf::{LeafRequest, issue};
    use crate::pki::{InitOptions, KeyType, PkiDir, init};

    fn pki(dir: &std::path::Path, key_type: KeyType) -> PkiDir {
        let p = PkiDir::new(dir.join("pki"));
        let opts = InitOptions {
            federation: "fed".into(),
            key_type,
            root_days: 100,
            intermediate_days: 50,
            force: false,
        };
        init(&p, &opts).unwrap();
        assert!(matches!(init(&p, &opts), Err(Error::Exists(_))));
        p
    }

    fn party(id: &str) -> Identity {
        Identity::Party(PartyId::new(id).unwrap())
    }

    #[test]
    fn issue_verify_revoke() {
        for kt in [KeyType::EcdsaP256, KeyType::Ed25519] {
            let d = tempfile::tempdir().unwrap();
            let p = pki(d.path(), kt);
            let out = d.path().join("a");
            let info = issue(&p, &LeafRequest::new("fed", party("bank-a")), &out, false).unwrap();
            assert_eq!(info.identity("fed").unwrap(), party("bank-a"));
            assert_eq!(info.extended_key_usage, vec!["clientAuth"]);
            let crt = out.join("tls.crt");
            verify(&crt, &out.join("ca.crt"), Some(&out.join("crl.pem")), "fed").unwrap();
            // Wrong federation for the tooling and for verification.
            assert!(matches!(
                issue(
                    &p,
                    &LeafRequest::new("other", party("x")),
                    &d.path().join("x"),
                    false
                ),
                Err(Error::WrongFederation { .. })
            ));
            assert!(matches!(
                verify(&crt, &out.join("ca.crt"), None, "other"),
                Err(Error::NoIdentity)
            ));
            crl::revoke_cert(&p, &crt, Reason::KeyCompromise).unwrap();
            let err = verify(&crt, &p.trust_anchor(), Some(&p.crl()), "fed").unwrap_err();
            assert!(err.to_string().contains("Revoked"), "{err}");
            // Still valid without the CRL: revocation is what refuses it.
            verify(&crt, &p.trust_anchor(), None, "fed").unwrap();
            let serials = crl::revoked_serials(
                &x509_parser::pem::parse_x509_pem(std::fs::read(p.crl()).unwrap().as_slice())
                    .unwrap()
                    .1
                    .contents,
            )
            .unwrap();
            assert!(serials.contains(&info.serial));
        }
    }

    #[test]
    fn expired_and_not_yet_valid_fail_verification() {
        let d = tempfile::tempdir().unwrap();
        let p = pki(d.path(), KeyType::EcdsaP256);
        for (name, offset) in [("expired", -3 * 86_400), ("future", 86_400)] {
            let mut req = LeafRequest::new("fed", party("bank-a"));
            req.not_before_offset_secs = offset;
            req.days = 1;
            let out = d.path().join(name);
            issue(&p, &req, &out, false).unwrap();
            let err = verify(&out.join("tls.crt"), &p.trust_anchor(), None, "fed")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("Expired") || err.contains("NotValidYet"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn csr_flow_uses_only_the_public_key_and_refuses_other_identities() {
        let d = tempfile::tempdir().unwrap();
        let p = pki(d.path(), KeyType::EcdsaP256);
        let bank = d.path().join("bank-b");
        let csr_path = leaf::csr(&LeafRequest::new("fed", party("bank-b")), &bank, false).unwrap();
        let key_before = std::fs::read(bank.join("tls.key")).unwrap();
        let info = leaf::sign(&p, &csr_path, &LeafRequest::new("fed", party("bank-b")), &bank).unwrap();
        assert_eq!(info.identity("fed").unwrap(), party("bank-b"));
        assert_eq!(
            std::fs::read(bank.join("tls.key")).unwrap(),
            key_before,
            "the key never moves"
        );
        let chain = x509_parser::pem::Pem::iter_from_buffer(&std::fs::read(bank.join("tls.crt")).unwrap())
            .next()
            .unwrap()
            .unwrap()
            .contents;
        assert!(leaf::key_matches(&String::from_utf8(key_before).unwrap(), &chain));
        verify(
            &bank.join("tls.crt"),
            &bank.join("ca.crt"),
            Some(&bank.join("crl.pem")),
            "fed",
        )
        .unwrap();
        let err = leaf::sign(
            &p,
            &csr_path,
            &LeafRequest::new("fed", party("bank-c")),
            &d.path().join("c"),
        )
        .unwrap_err();
        assert!(matches!(err, Error::CsrMismatch { .. }), "{err}");
    }

    #[test]
    fn rotate_keeps_identity_and_names_and_changes_key() {
        let d = tempfile::tempdir().unwrap();
        let p = pki(d.path(), KeyType::EcdsaP256);
        let out = d.path().join("c");
        let mut req = LeafRequest::new("fed", Identity::Coordinator);
        req.dns_names = vec!["coord.example".into()];
        issue(&p, &req, &out, false).unwrap();
        let key_before = std::fs::read(out.join("tls.key")).unwrap();
        let (old, new) = leaf::rotate(&p, &out, 30, KeyType::EcdsaP256).unwrap();
        assert_ne!(old.serial, new.serial);
        assert_eq!(new.identity("fed").unwrap(), Identity::Coordinator);
        assert_eq!(new.dns_names, vec!["coord.example".to_string()]);
        assert_eq!(new.extended_key_usage, vec!["serverAuth", "clientAuth"]);
        assert_ne!(std::fs::read(out.join("tls.key")).unwrap(), key_before);
        verify(&out.join("tls.crt"), &p.trust_anchor(), None, "fed").unwrap();
        assert!(CertInfo::from_file(&out.join("tls.crt")).unwrap().seconds_left(0) > 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for k in [out.join("tls.key"), p.root_key(), p.intermediate_key()] {
                assert_eq!(
                    std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
                    0o600,
                    "{k:?}"
                );
            }
        }
    }

    #[test]
    fn kubernetes_secret_has_the_tls_type_and_all_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = pki(d.path(), KeyType::EcdsaP256);
        let out = d.path().join("a");
        issue(&p, &LeafRequest::new("fed", party("bank-a")), &out, false).unwrap();
        let y = k8s::secret_manifest(&out, "tessera-tls", "bank-a").unwrap();
        for needle in [
            "kind: Secret",
            "type: kubernetes.io/tls",
            "namespace: bank-a",
            "tls.crt: ",
            "tls.key: ",
            "ca.crt: ",
            "crl.pem: ",
        ] {
            assert!(y.contains(needle), "{needle}");
        }
        assert!(k8s::secret_manifest(&out, "Bad_Name", "x").is_err());
    }
}
