//! Who is calling the HTTP API: bearer API keys, their scopes and per-client rate limits.
//!
//! Why API keys rather than client certificates or JWTs: the callers are a bank's own
//! services (loan origination, a case-management UI) behind its gateway, few and long-lived.
//! A bearer key works through any HTTP proxy and load balancer (client certificates end at
//! the first TLS terminator), needs no clock agreement or key-set endpoint (JWT), and is
//! revoked by deleting one line. Keys are kept hashed ([`keys`]); the file is re-read when it
//! changes, so adding or revoking a client needs no restart.
//!
//! [`Authenticator::check`] turns an `Authorization` header into a [`Caller`] or an
//! [`AuthError`] (401 no or unknown key, 403 missing scope); [`Caller::charge`] applies the
//! client's rate limit (429), a batch counting each customer.

pub mod keys;
pub mod session;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

pub use keys::{KeysError, KeysFile, Scope};

/// How the HTTP API authenticates callers.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Bearer API keys listed in `keys_file` (the default).
    #[default]
    Keys,
    /// No authentication: every caller may do everything, without rate limit. For a
    /// developer's laptop only; the coordinator says so loudly at start.
    None,
}

/// `[auth]` of the coordinator's configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `keys` (default) or `none`.
    pub mode: AuthMode,
    /// The API keys file (see [`keys`]); required with `mode = "keys"`. Re-read when it
    /// changes.
    pub keys_file: Option<PathBuf>,
}

impl AuthSettings {
    /// Checks that `keys` mode names a keys file.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the missing key.
    pub fn validate(&self) -> Result<(), tessera_common::config::ConfigError> {
        match (self.mode, &self.keys_file) {
            (AuthMode::Keys, None) => Err(tessera_common::config::ConfigError::Invalid(
                "auth.keys_file is required (make one with `tessera-coordinator api-key add`), or set auth.mode = \"none\" to run without authentication (local testing only)"
                    .into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header, or a malformed one.
    #[error("missing bearer API key: send `Authorization: Bearer <key>`")]
    Missing,
    /// The key is not (or no longer) in the keys file.
    #[error("unknown or revoked API key")]
    Unknown,
    /// The key is past its `expires_at`.
    #[error("the API key of client {client} expired at {at}")]
    Expired {
        /// The client.
        client: String,
        /// When it expired (RFC 3339).
        at: String,
    },
    /// The client lacks the scope the route needs.
    #[error("client {client} lacks the {scope} scope")]
    Forbidden {
        /// The client.
        client: String,
        /// The scope it lacks.
        scope: &'static str,
    },
    /// Over the client's rate.
    #[error("client {client} is over its rate limit; retry after {retry_after_secs} s")]
    RateLimited {
        /// The client.
        client: String,
        /// Whole seconds until the call would be admitted.
        retry_after_secs: u64,
    },
    /// More at once than the client's burst can ever admit.
    #[error("client {client}: {cost} calls at once exceed its burst of {burst}")]
    OverBurst {
        /// The client.
        client: String,
        /// What the call costs.
        cost: u32,
        /// The client's burst.
        burst: u32,
    },
}

impl AuthError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Unknown => "unknown",
            AuthError::Expired { .. } => "expired",
            AuthError::Forbidden { .. } => "forbidden",
            AuthError::RateLimited { .. } | AuthError::OverBurst { .. } => "rate_limited",
        }
    }
}

/// An authenticated caller.
pub struct Caller {
    /// The client's name (recorded in audit rows and logs).
    pub name: String,
    scopes: Vec<Scope>,
    rate: u32,
    burst: u32,
    /// When the key stops working, Unix seconds.
    expires: Option<(i64, String)>,
    /// `None` when authentication is off.
    limiter: Option<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// The caller when authentication is off.
pub const ANONYMOUS: &str = "anonymous";

impl Caller {
    fn anonymous() -> Self {
        Self {
            name: ANONYMOUS.into(),
            scopes: Scope::ALL.to_vec(),
            rate: u32::MAX,
            burst: u32::MAX,
            expires: None,
            limiter: None,
        }
    }

    fn of(entry: &keys::ClientEntry) -> Self {
        let rate = NonZeroU32::new(entry.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(entry.burst).unwrap_or(NonZeroU32::MIN);
        Self {
            name: entry.name.clone(),
            scopes: entry.scopes.clone(),
            rate: rate.get(),
            burst: burst.get(),
            expires: entry.expires_unix().zip(entry.expires_at.clone()),
            limiter: Some(RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))),
        }
    }

    /// Whether the caller has `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Takes `cost` calls from the client's rate limit.
    ///
    /// # Errors
    /// [`AuthError::RateLimited`] (with when to retry) or [`AuthError::OverBurst`].
    pub fn charge(&self, cost: u32) -> Result<(), AuthError> {
        let (Some(limiter), Some(n)) = (&self.limiter, NonZeroU32::new(cost)) else {
            return Ok(());
        };
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(AuthError::RateLimited {
                    client: self.name.clone(),
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                })
            }
            Err(_) => Err(AuthError::OverBurst {
                client: self.name.clone(),
                cost,
                burst: self.burst,
            }),
        }
    }
}

/// The clients currently admitted, by the SHA-256 of their key.
type Table = HashMap<[u8; 32], Arc<Caller>>;

/// Checks `Authorization` headers against the keys file (or admits everyone when off).
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    table: Arc<RwLock<Arc<Table>>>,
    anonymous: Arc<Caller>,
}

fn build(file: &KeysFile, old: Option<&Table>) -> Table {
    file.clients
        .iter()
        .filter_map(|c| {
            let hash = keys::parse_hash(&c.key_sha256)?;
            // A client whose entry did not change keeps its limiter (and so its spent budget).
            let kept = old.and_then(|t| t.get(&hash)).filter(|k| {
                k.name == c.name
                    && k.scopes == c.scopes
                    && k.rate == c.rate_per_second
                    && k.burst == c.burst
                    && k.expires.as_ref().map(|e| &e.1) == c.expires_at.as_ref()
            });
            Some((hash, kept.cloned().unwrap_or_else(|| Arc::new(Caller::of(c)))))
        })
        .collect()
}

impl Authenticator {
    /// From the configuration: loads the keys file in `keys` mode.
    ///
    /// # Errors
    /// [`KeysError`] if the keys file is missing or invalid.
    pub fn from_settings(s: &AuthSettings) -> Result<Self, KeysError> {
        let table = match (s.mode, &s.keys_file) {
            (AuthMode::Keys, Some(path)) => {
                let file = KeysFile::load(path)?;
                if file.clients.is_empty() {
                    warn!(file = %path.display(), "the API keys file lists no client: every API call will be refused until one is added");
                }
                build(&file, None)
            }
            (AuthMode::Keys, None) => {
                return Err(KeysError::Invalid(
                    "auth.keys_file is required in keys mode".into(),
                ));
            }
            (AuthMode::None, _) => {
                warn!(
                    "HTTP API authentication is OFF (auth.mode = \"none\"): anyone who reaches the port may score and read decisions"
                );
                Table::new()
            }
        };
        Ok(Self {
            mode: s.mode,
            table: Arc::new(RwLock::new(Arc::new(table))),
            anonymous: Arc::new(Caller::anonymous()),
        })
    }

    /// Each admitted client whose key expires, with when (Unix seconds), by client name.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        let Ok(table) = self.table.read() else {
            return Vec::new();
        };
        let mut out: Vec<(String, i64)> = table
            .values()
            .filter_map(|c| c.expires.as_ref().map(|e| (c.name.clone(), e.0)))
            .collect();
        out.sort();
        out
    }

    /// The authentication mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller behind an `Authorization` header value, if it has `scope` (any known
    /// client when `scope` is `None`).
    ///
    /// # Errors
    /// [`AuthError::Missing`], [`AuthError::Unknown`] or [`AuthError::Forbidden`].
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        scope: Option<Scope>,
    ) -> Result<Arc<Caller>, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(self.anonymous.clone());
        }
        let token = authorization
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| {
                let (scheme, rest) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(AuthError::Missing)?;
        self.by_hash(&keys::hash(token), scope)
    }

    /// The caller whose key hashes to `hash` (a UI session keeps the hash, never the key), if
    /// it has `scope`. A key revoked since is refused here, so revoking a key also ends the
    /// sessions signed in with it.
    ///
    /// # Errors
    /// [`AuthError::Unknown`] or [`AuthError::Forbidden`].
    pub fn by_hash(&self, hash: &[u8; 32], scope: Option<Scope>) -> Result<Arc<Caller>, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(self.anonymous.clone());
        }
        // Looked up by the hash of the presented key: how long the lookup takes says nothing
        // about any stored key.
        let table = self
            .table
            .read()
            .map(|t| t.clone())
            .map_err(|_| AuthError::Unknown)?;
        let caller = table.get(hash).cloned().ok_or(AuthError::Unknown)?;
        if let Some((at, text)) = &caller.expires
            && tessera_common::transport::unix_now() >= *at
        {
            return Err(AuthError::Expired {
                client: caller.name.clone(),
                at: text.clone(),
            });
        }
        if let Some(scope) = scope.filter(|&s| !caller.may(s)) {
            return Err(AuthError::Forbidden {
                client: caller.name.clone(),
                scope: scope.as_str(),
            });
        }
        Ok(caller)
    }

    /// Re-reads the keys file. On error the current clients stay.
    ///
    /// # Errors
    /// [`KeysError`] if the file cannot be read or is invalid.
    pub fn reload(&self, path: &Path) -> Result<usize, KeysError> {
        let file = KeysFile::load(path)?;
        let mut guard = self
            .table
            .write()
            .map_err(|_| KeysError::Invalid("keys table poisoned".into()))?;
        let table = build(&file, Some(&guard));
        let n = table.len();
        *guard = Arc::new(table);
        Ok(n)
    }

    /// Watches the keys file (every `every`) and reloads it when it changes, until
    /// `shutdown`. Nothing to do when authentication is off.
    pub async fn watch(
        self,
        settings: AuthSettings,
        every: Duration,
        mut shutdown: tessera_common::shutdown::Shutdown,
    ) {
        let (AuthMode::Keys, Some(path)) = (settings.mode, settings.keys_file) else {
            return;
        };
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        let mut last = stamp(&path);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.recv() => return,
            }
            let now = stamp(&path);
            if now == last {
                continue;
            }
            match self.reload(&path) {
                Ok(n) => {
                    info!(file = %path.display(), clients = n, "API keys reloaded");
                    last = now;
                }
                // Kept `last` so the next change (a fixed file) is tried again.
                Err(e) => {
                    error!(error = %e, "API keys file changed but cannot be used; keeping the previous clients")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_clients() -> (tempfile::TempDir, PathBuf, Authenticator, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let mut f = KeysFile::default();
        let scorer = f.add("scorer", vec![Scope::Score], 2, 3).unwrap();
        let auditor = f.add("auditor", vec![Scope::Decisions], 100, 100).unwrap();
        f.save(&path).unwrap();
        let a = Authenticator::from_settings(&AuthSettings {
            mode: AuthMode::Keys,
            keys_file: Some(path.clone()),
        })
        .unwrap();
        (dir, path, a, scorer, auditor)
    }

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let (_d, _p, a, scorer, auditor) = with_clients();
        assert_eq!(a.check(None, Some(Scope::Score)).unwrap_err(), AuthError::Missing);
        assert_eq!(
            a.check(Some(b"Basic abc"), Some(Scope::Score)).unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            a.check(Some(b"Bearer "), Some(Scope::Score)).unwrap_err(),
            AuthError::Missing
        );
        assert_eq!(
            a.check(Some(&bearer("tsk_nope")), Some(Scope::Score))
                .unwrap_err(),
            AuthError::Unknown
        );
        assert_eq!(
            a.check(Some(&bearer(&auditor)), Some(Scope::Score)).unwrap_err(),
            AuthError::Forbidden {
                client: "auditor".into(),
                scope: "score"
            }
        );
        assert_eq!(
            a.check(Some(&bearer(&scorer)), Some(Scope::Score)).unwrap().name,
            "scorer"
        );
        assert_eq!(
            a.check(Some(format!("bearer  {scorer} ").as_bytes()), Some(Scope::Score))
                .unwrap()
                .name,
            "scorer"
        );
    }

    #[test]
    fn an_expired_key_is_refused_and_a_future_expiry_admits() {
        let (_d, path, a, scorer, auditor) = with_clients();
        let mut f = KeysFile::load(&path).unwrap();
        let now = tessera_common::transport::unix_now();
        // Expired a day ago (set as if issued two days ago with one day to live).
        f.set_expiry("scorer", now - 2 * 86_400, 1).unwrap();
        let later = f.set_expiry("auditor", now, 30).unwrap();
        f.save(&path).unwrap();
        a.reload(&path).unwrap();
        let e = a.check(Some(&bearer(&scorer)), Some(Scope::Score)).unwrap_err();
        assert!(
            matches!(&e, AuthError::Expired { client, .. } if client == "scorer"),
            "{e:?}"
        );
        assert_eq!(e.label(), "expired");
        assert!(e.to_string().contains("expired at"));
        assert_eq!(
            a.check(Some(&bearer(&auditor)), Some(Scope::Decisions))
                .unwrap()
                .name,
            "auditor"
        );
        assert!(later.starts_with("20"), "{later}");
        // What the expiry metric shows: each expiring key by client, expired ones too.
        let m = crate::metrics::Metrics::new().unwrap();
        let expiries = a.expiries();
        assert_eq!(
            expiries.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            ["auditor", "scorer"]
        );
        m.refresh_api_key_expiry(now, &expiries);
        let text = m.render();
        assert!(
            text.contains("tessera_api_key_expiry_seconds{client=\"auditor\"} 2592000"),
            "{text}"
        );
        assert!(
            text.contains("tessera_api_key_expiry_seconds{client=\"scorer\"} -86400"),
            "{text}"
        );
        // A malformed expiry is refused with the reason; the previous clients stay.
        let mut bad = KeysFile::load(&path).unwrap();
        bad.clients[1].expires_at = Some("next tuesday".into());
        assert!(bad.validate().unwrap_err().to_string().contains("RFC 3339"));
        assert!(f.set_expiry("nobody", now, 1).is_err());
    }

    #[test]
    fn the_rate_limit_counts_customers_and_says_when_to_retry() {
        let (_d, _p, a, scorer, _) = with_clients();
        let c = a.check(Some(&bearer(&scorer)), Some(Scope::Score)).unwrap();
        assert!(matches!(
            c.charge(4),
            Err(AuthError::OverBurst {
                cost: 4,
                burst: 3,
                ..
            })
        ));
        c.charge(3).unwrap();
        match c.charge(1) {
            Err(AuthError::RateLimited {
                client,
                retry_after_secs,
            }) => {
                assert_eq!(client, "scorer");
                assert_eq!(retry_after_secs, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_revoked_key_is_refused_after_reload_and_others_keep_their_budget() {
        let (_d, path, a, scorer, auditor) = with_clients();
        a.check(Some(&bearer(&scorer)), Some(Scope::Score))
            .unwrap()
            .charge(3)
            .unwrap();
        let mut f = KeysFile::load(&path).unwrap();
        assert!(f.revoke("auditor"));
        f.save(&path).unwrap();
        assert_eq!(a.reload(&path).unwrap(), 1);
        assert_eq!(
            a.check(Some(&bearer(&auditor)), Some(Scope::Decisions))
                .unwrap_err(),
            AuthError::Unknown
        );
        let c = a.check(Some(&bearer(&scorer)), Some(Scope::Score)).unwrap();
        assert!(
            matches!(c.charge(1), Err(AuthError::RateLimited { .. })),
            "a reload is no way around the limit"
        );
        std::fs::write(&path, "not toml [").unwrap();
        assert!(a.reload(&path).is_err());
        assert!(
            a.check(Some(&bearer(&scorer)), Some(Scope::Score)).is_ok(),
            "a broken file keeps the previous clients"
        );
    }

    #[test]
    fn off_admits_everyone_as_anonymous_and_keys_mode_needs_a_file() {
        let a = Authenticator::from_settings(&AuthSettings {
            mode: AuthMode::None,
            keys_file: None,
        })
        .unwrap();
        let c = a.check(None, Some(Scope::Admin)).unwrap();
        assert_eq!(c.name, ANONYMOUS);
        c.charge(1_000_000).unwrap();
        assert!(
            AuthSettings::default()
                .validate()
                .unwrap_err()
                .to_string()
                .contains("auth.keys_file")
        );
        let missing = AuthSettings {
            mode: AuthMode::Keys,
            keys_file: Some("/nonexistent/keys.toml".into()),
        };
        assert!(matches!(
            Authenticator::from_settings(&missing),
            Err(KeysError::Io(..))
        ));
    }
}
