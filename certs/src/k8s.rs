//! Kubernetes output: a `kubernetes.io/tls` Secret (with `ca.crt`) for one holder's directory.

use std::path::Path;

use base64::Engine;

use crate::Error;
use crate::files::read_string;
use crate::leaf::{CA_CERT, CRL, LEAF_CERT, LEAF_KEY};

/// The Secret manifest (YAML) for the leaf directory `dir`. Includes `crl.pem` when present.
///
/// The output contains the private key: write it to a file with restricted permissions or pipe
/// it to `kubectl apply -f -`; never paste it into a ticket.
///
/// # Errors
/// IO errors; [`Error::InvalidName`] for a name or namespace that Kubernetes would refuse.
pub fn secret_manifest(dir: &Path, name: &str, namespace: &str) -> Result<String, Error> {
    let dns1123 = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
    };
    for v in [name, namespace] {
        if !dns1123(v) {
            return Err(Error::InvalidName(v.to_string()));
        }
    }
    let b64 = |p: &str| -> Result<String, Error> {
        Ok(base64::engine::general_purpose::STANDARD.encode(read_string(&dir.join(p))?.as_bytes()))
    };
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    app.kubernetes.io/part-of: tessera\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n  ca.crt: {}\n",
        b64(LEAF_CERT)?,
        b64(LEAF_KEY)?,
        b64(CA_CERT)?
    );
    if dir.join(CRL).exists() {
        out.push_str(&format!("  crl.pem: {}\n", b64(CRL)?));
    }
    Ok(out)
}
