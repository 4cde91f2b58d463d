//! The API keys file: who may call the HTTP API, with which scopes, at what rate.
//!
//! A key is an opaque bearer token, `tsk_` followed by 43 characters (32 random bytes,
//! base64url). The file keeps only its SHA-256, so reading the file (a backup, a Kubernetes
//! Secret dump) gives no usable credential. The token's 256 bits of entropy make a plain hash
//! enough: there is nothing to brute-force, unlike a password.
//!
//! ```toml
//! [[client]]
//! name = "loan-origination"
//! key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! scopes = ["score", "decisions"]
//! rate_per_second = 1000   # customers scored (or other calls) per second; default 1,000
//! burst = 2000             # short bursts above the rate; default 2,000
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a client may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `POST /v1/score` and `/v1/score/batch`.
    Score,
    /// `GET /v1/decisions/{id}`: the recorded decisions.
    Decisions,
    /// Administration (model lifecycle).
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Score, Scope::Decisions, Scope::Admin];

    /// Its name, as in the keys file.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Score => "score",
            Scope::Decisions => "decisions",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = KeysError;
    fn from_str(s: &str) -> Result<Self, KeysError> {
        Scope::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| KeysError::Invalid(format!("unknown scope {s:?} (score, decisions, admin)")))
    }
}

/// Default sustained rate per client: calls (a batch counts each customer) per second.
pub const DEFAULT_RATE: u32 = 1_000;
/// Default burst per client.
pub const DEFAULT_BURST: u32 = 2_000;
/// Most clients in one file.
pub const MAX_CLIENTS: usize = 10_000;

/// One client in the keys file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// Who it is: recorded in every audit row it causes and in logs. 1–64 of `[A-Za-z0-9._-]`.
    pub name: String,
    /// SHA-256 of the token, lowercase hex.
    pub key_sha256: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Sustained calls per second (a batch counts each customer). Default 1,000.
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Burst above the rate. Default 2,000; must cover the largest batch the client sends.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// When the key stops working (RFC 3339, e.g. `2027-03-01T00:00:00Z`); none: it works
    /// until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl ClientEntry {
    /// The expiry as Unix seconds (`None`: never; an unreadable one is refused by
    /// [`KeysFile::validate`]).
    pub fn expires_unix(&self) -> Option<i64> {
        self.expires_at.as_deref().and_then(parse_time)
    }
}

/// Unix seconds of an RFC 3339 time.
fn parse_time(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn default_rate() -> u32 {
    DEFAULT_RATE
}
fn default_burst() -> u32 {
    DEFAULT_BURST
}

/// The whole keys file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// The clients.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientEntry>,
}

/// Errors of the keys file.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read or written.
    #[error("API keys file {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The file is not valid TOML of the expected shape.
    #[error("API keys file {0}: {1}")]
    Parse(PathBuf, String),
    /// A value is out of range or a name is repeated.
    #[error("{0}")]
    Invalid(String),
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl KeysFile {
    /// Reads and checks a keys file.
    ///
    /// # Errors
    /// [`KeysError`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeysError::Io(path.to_path_buf(), e))?;
        let file: KeysFile =
            toml::from_str(&text).map_err(|e| KeysError::Parse(path.to_path_buf(), e.to_string()))?;
        file.validate()
            .map_err(|e| KeysError::Parse(path.to_path_buf(), e.to_string()))?;
        Ok(file)
    }

    /// Checks names, hashes, scopes and rates.
    ///
    /// # Errors
    /// [`KeysError::Invalid`] naming the first problem.
    pub fn validate(&self) -> Result<(), KeysError> {
        if self.clients.len() > MAX_CLIENTS {
            return Err(KeysError::Invalid(format!("more than {MAX_CLIENTS} clients")));
        }
        let (mut names, mut hashes) = (HashSet::new(), HashSet::new());
        for c in &self.clients {
            if !valid_name(&c.name) {
                return Err(KeysError::Invalid(format!(
                    "client name {:?}: 1-64 of letters, digits, '.', '_', '-'",
                    c.name
                )));
            }
            if parse_hash(&c.key_sha256).is_none() {
                return Err(KeysError::Invalid(format!(
                    "client {}: key_sha256 must be 64 lowercase hex digits",
                    c.name
                )));
            }
            if c.scopes.is_empty() {
                return Err(KeysError::Invalid(format!("client {}: no scopes", c.name)));
            }
            if c.rate_per_second == 0 || c.burst == 0 {
                return Err(KeysError::Invalid(format!(
                    "client {}: rate_per_second and burst must be positive",
                    c.name
                )));
            }
            if c.expires_at.is_some() && c.expires_unix().is_none() {
                return Err(KeysError::Invalid(format!(
                    "client {}: expires_at must be an RFC 3339 time such as 2027-03-01T00:00:00Z",
                    c.name
                )));
            }
            if !names.insert(c.name.as_str()) {
                return Err(KeysError::Invalid(format!("client {} listed twice", c.name)));
            }
            if !hashes.insert(c.key_sha256.as_str()) {
                return Err(KeysError::Invalid(format!(
                    "client {}: the same key as another client",
                    c.name
                )));
            }
        }
        Ok(())
    }

    /// Writes the file atomically (owner-only permissions: it names every client).
    ///
    /// # Errors
    /// [`KeysError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), KeysError> {
        let mut text = String::from(
            "# Tessera API clients. Only SHA-256 hashes of their keys are kept here.\n\
             # Edit with `tessera-coordinator api-key add|revoke|list`; the coordinator reloads it.\n\n",
        );
        text += &toml::to_string(self).map_err(|e| KeysError::Invalid(e.to_string()))?;
        tessera_common::fs::write_atomic(path, text.as_bytes(), true)
            .map_err(|e| KeysError::Io(path.to_path_buf(), e))
    }

    /// Adds a client with a fresh key and returns the key (shown once, never stored).
    ///
    /// # Errors
    /// [`KeysError::Invalid`] if the name is taken or a value is invalid.
    pub fn add(
        &mut self,
        name: &str,
        scopes: Vec<Scope>,
        rate: u32,
        burst: u32,
    ) -> Result<String, KeysError> {
        if self.clients.iter().any(|c| c.name == name) {
            return Err(KeysError::Invalid(format!(
                "client {name} exists: revoke it first to issue a new key"
            )));
        }
        let token = new_token();
        self.clients.push(ClientEntry {
            name: name.to_string(),
            key_sha256: hash_hex(&token),
            scopes,
            rate_per_second: rate,
            burst,
            expires_at: None,
        });
        if let Err(e) = self.validate() {
            self.clients.pop();
            return Err(e);
        }
        Ok(token)
    }

    /// Sets when client `name`'s key stops working (`days` from `now`, Unix seconds).
    ///
    /// # Errors
    /// [`KeysError::Invalid`] if there is no such client or the time is out of range.
    pub fn set_expiry(&mut self, name: &str, now: i64, days: u32) -> Result<String, KeysError> {
        let at = time::OffsetDateTime::from_unix_timestamp(now + i64::from(days) * 86_400)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .ok_or_else(|| KeysError::Invalid(format!("{days} days from now is out of range")))?;
        let entry = self
            .clients
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| KeysError::Invalid(format!("no client {name}")))?;
        entry.expires_at = Some(at.clone());
        Ok(at)
    }

    /// Removes a client; whether it was there.
    pub fn revoke(&mut self, name: &str) -> bool {
        let before = self.clients.len();
        self.clients.retain(|c| c.name != name);
        self.clients.len() != before
    }
}

/// A fresh token: `tsk_` and 32 random bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "tsk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// SHA-256 of a token, lowercase hex (as in the keys file).
pub fn hash_hex(token: &str) -> String {
    hash(token).iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a `key_sha256` value, if it is 64 lowercase hex digits.
pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 || !b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)) {
        return None;
    }
    let nib = |c: u8| {
        if c.is_ascii_digit() {
            c - b'0'
        } else {
            c - b'a' + 10
        }
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(b[2 * i]) << 4 | nib(b[2 * i + 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_stored_only_as_its_hash_and_found_by_it() {
        let mut f = KeysFile::default();
        let token = f.add("app", vec![Scope::Score], 10, 20).unwrap();
        assert!(token.starts_with("tsk_") && token.len() == 47, "{token}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        f.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token[4..]), "the token itself is never written");
        let back = KeysFile::load(&path).unwrap();
        assert_eq!(back, f);
        assert_eq!(parse_hash(&back.clients[0].key_sha256), Some(hash(&token)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
        }
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        let mut f = KeysFile::default();
        f.add("app", vec![Scope::Score], 10, 20).unwrap();
        assert!(
            matches!(f.add("app", vec![Scope::Score], 1, 1), Err(KeysError::Invalid(m)) if m.contains("exists"))
        );
        for (name, scopes, rate, want) in [
            ("bad name", vec![Scope::Score], 1, "client name"),
            ("x", vec![], 1, "no scopes"),
            ("y", vec![Scope::Admin], 0, "positive"),
        ] {
            match f.add(name, scopes, rate, 1) {
                Err(KeysError::Invalid(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(f.clients.len(), 1, "a refused client is not kept");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "[[client]]\nname = \"a\"\nkey_sha256 = \"00\"\nscopes = [\"score\"]\n",
        )
        .unwrap();
        assert!(
            matches!(KeysFile::load(&path), Err(KeysError::Parse(_, m)) if m.contains("64 lowercase hex"))
        );
        std::fs::write(
            &path,
            "[[client]]\nname = \"a\"\nkey_sha256 = \"00\"\nscopes = [\"root\"]\n",
        )
        .unwrap();
        assert!(
            matches!(KeysFile::load(&path), Err(KeysError::Parse(_, m)) if m.contains("unknown variant"))
        );
        assert!(f.revoke("app") && !f.revoke("app"));
    }

    #[test]
    fn hash_hex_round_trips() {
        let t = new_token();
        assert_eq!(parse_hash(&hash_hex(&t)), Some(hash(&t)));
        assert_ne!(new_token(), t);
        assert_eq!(parse_hash(&"A".repeat(64)), None);
    }
}
