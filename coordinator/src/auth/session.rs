//! Web UI sessions: signing in with an API key gives the browser a random session token in an
//! `HttpOnly`, `SameSite=Strict` cookie. The coordinator keeps, per session, only the SHA-256
//! of the key it was opened with (and of the session token: a stolen memory dump does not
//! give usable tokens), and checks that key against the current keys file on every page, so a
//! revoked key ends its sessions at once. Sessions end after [`IDLE`] without use or [`MAX_AGE`]
//! in all, and at most [`MAX_SESSIONS`] are kept (the least recently used goes first).
//!
//! Sessions live in this replica's memory: behind several replicas the UI needs session
//! affinity, or a user signs in again when sent to another replica (docs/UI.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::keys;

/// A session unused this long is over.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// A session is over this long after sign-in, used or not.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 60 * 60);

/// Sessions kept at most.
pub const MAX_SESSIONS: usize = 10_000;

/// Name of the session cookie.
pub const COOKIE: &str = "tessera_session";

struct Session {
    key_hash: [u8; 32],
    created: Instant,
    used: Instant,
}

/// The open sessions.
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
    max: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::with_capacity(MAX_SESSIONS)
    }
}

impl Sessions {
    /// Keeping at most `max` sessions.
    pub fn with_capacity(max: usize) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// Opens a session for the key hashing to `key_hash`; returns the token for the cookie.
    pub fn open(&self, key_hash: [u8; 32]) -> String {
        let token = keys::new_token().replacen("tsk_", "tss_", 1);
        let now = Instant::now();
        if let Ok(mut open) = self.open.lock() {
            open.retain(|_, s| live(s, now));
            if open.len() >= self.max
                && let Some(oldest) = open.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| *k)
            {
                open.remove(&oldest);
            }
            open.insert(
                keys::hash(&token),
                Session {
                    key_hash,
                    created: now,
                    used: now,
                },
            );
        }
        token
    }

    /// The key hash of a live session, marking it used.
    pub fn key_of(&self, token: &str) -> Option<[u8; 32]> {
        if token.len() > 64 {
            return None;
        }
        let now = Instant::now();
        let mut open = self.open.lock().ok()?;
        let id = keys::hash(token);
        match open.get_mut(&id) {
            Some(s) if live(s, now) => {
                s.used = now;
                Some(s.key_hash)
            }
            Some(_) => {
                open.remove(&id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn close(&self, token: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&keys::hash(token));
        }
    }

    /// Sessions open now (expired ones included until the next sign-in sweeps them).
    pub fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.used) < IDLE && now.duration_since(s.created) < MAX_AGE
}

/// The session token in a `Cookie` header, if there is one.
pub fn token_in(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_knows_its_key_until_closed() {
        let s = Sessions::default();
        let key = keys::hash("tsk_x");
        let token = s.open(key);
        assert!(token.starts_with("tss_"));
        assert_eq!(s.key_of(&token), Some(key));
        assert_eq!(s.key_of("tss_forged"), None);
        assert_eq!(s.key_of(&"a".repeat(10_000)), None);
        s.close(&token);
        assert_eq!(s.key_of(&token), None);
        assert!(s.is_empty());
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::with_capacity(50);
        let first = s.open([1; 32]);
        for _ in 0..50 {
            s.open([2; 32]);
        }
        assert_eq!(s.len(), 50);
        assert_eq!(s.key_of(&first), None, "the least recently used went first");
    }

    #[test]
    fn finds_the_cookie() {
        assert_eq!(token_in("a=1; tessera_session=tss_abc; b=2"), Some("tss_abc"));
        assert_eq!(token_in("tessera_session="), None);
        assert_eq!(token_in("other=1"), None);
    }
}
