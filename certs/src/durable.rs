//! Crash-safe file replacement, shared by every writer of state that must never be seen half
//! written (keys and certificates here; models and `CURRENT` at the coordinator and the
//! parties, through `tessera_common::fs`).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` so that after a crash at any moment `path` holds either the
/// old content or the new, whole: the bytes go to a temporary file in the same directory,
/// which is flushed to disk, renamed over `path`, and the directory itself is flushed so the
/// rename is durable. Secrets are created with mode 0600 before any byte is written.
///
/// # Errors
/// The IO error of the step that failed (the temporary file is removed on a failed write).
pub fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp: PathBuf = path.with_file_name(name);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = (|| {
        let mut f = opts.open(&tmp)?;
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path)?;
    sync_dir(path.parent())
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
#[cfg(unix)]
fn sync_dir(dir: Option<&Path>) -> io::Result<()> {
    let dir = match dir {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: Option<&Path>) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("CURRENT");
        write_atomic(&p, b"m-1", false).unwrap();
        write_atomic(&p, b"m-2", false).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"m-2");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("CURRENT")]);
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tls.key");
        write_atomic(&p, b"k", true).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_failed_write_leaves_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("x");
        assert!(write_atomic(&p, b"new", false).is_err());
        assert!(!p.exists());
    }
}
