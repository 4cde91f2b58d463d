//! File helpers: atomic writes, owner-only private keys, PEM reading.

use std::fs;
use std::path::Path;

use crate::Error;

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(io(dir))
}

pub(crate) fn read_string(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(io(path))
}

/// A numeric owner, `UID:GID` (how container volumes written by a one-shot job running as root
/// are handed to the unprivileged service that uses them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl std::str::FromStr for Owner {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (u, g) = s.split_once(':').ok_or("expected UID:GID")?;
        Ok(Self {
            uid: u.parse().map_err(|_| "UID must be a number")?,
            gid: g.parse().map_err(|_| "GID must be a number")?,
        })
    }
}

/// Gives `path` and everything under it to `owner` (modes are kept: keys stay 0600).
///
/// # Errors
/// [`Error::Io`] naming the first path that could not be changed.
pub fn chown_tree(path: &Path, owner: Owner) -> Result<(), Error> {
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).map_err(io(path))?;
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(io(path))? {
            let entry = entry.map_err(io(path))?;
            chown_tree(&entry.path(), owner)?;
        }
    }
    Ok(())
}

/// Refuses to overwrite `paths` unless `force`.
pub(crate) fn check_absent(paths: &[&Path], force: bool) -> Result<(), Error> {
    for p in paths {
        if p.exists() && !force {
            return Err(Error::Exists(p.to_path_buf()));
        }
    }
    Ok(())
}

/// Writes a file crash-safely (see [`crate::durable::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<(), Error> {
    crate::durable::write_atomic(path, bytes, secret).map_err(io(path))
}

/// All DER certificates in a PEM file, in order.
pub(crate) fn read_cert_chain(path: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let text = read_string(path)?;
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| Error::Parse(format!("{}: {e}", path.display())))?;
        if pem.label == "CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        return Err(Error::Parse(format!("{}: no certificate", path.display())));
    }
    Ok(out)
}
