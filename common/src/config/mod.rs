//! Configuration shared by parties and the coordinator, with documented defaults.
//!
//! Durations are given in milliseconds so that TOML files and environment variables stay
//! plain numbers.

pub mod env;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::FrameLimits;

/// Why a configuration cannot be used. Every message names the file or variable and the
/// setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not TOML, or not the shape of the configuration (unknown key, wrong type).
    #[error("{what}: {message}")]
    Parse {
        /// The file, or the environment.
        what: String,
        /// What the parser said.
        message: String,
    },
    /// An environment override is malformed.
    #[error(transparent)]
    Env(#[from] env::EnvError),
    /// A setting is out of range or inconsistent with another; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// `problem`, found in `what` (a file or the environment).
    #[error("{what}: {problem}")]
    In {
        /// The file, or the environment.
        what: String,
        /// The problem.
        problem: Box<ConfigError>,
    },
}

impl ConfigError {
    /// This error, found in `what`.
    pub fn within(self, what: impl Into<String>) -> Self {
        ConfigError::In {
            what: what.into(),
            problem: Box::new(self),
        }
    }
}

impl From<crate::model::scorecard::ScaleError> for ConfigError {
    fn from(e: crate::model::scorecard::ScaleError) -> Self {
        ConfigError::Invalid(e.to_string())
    }
}

/// Timeouts and limits of the QUIC transport. Every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSettings {
    /// Federation name; certificates must carry identities of this federation. Default `tessera`.
    pub federation: String,
    /// Time allowed for the QUIC + TLS handshake and the hello exchange. Default 5000 ms.
    pub connect_timeout_ms: u64,
    /// Time allowed for one request to one party, scoring or training. Default 2000 ms.
    pub request_timeout_ms: u64,
    /// A training step (forward or backward over a batch) may take longer. Default 30000 ms.
    pub training_timeout_ms: u64,
    /// While a party is unresponsive (its last request timed out, no answer since), scoring
    /// requests to it give up after this long, so a dead or frozen party delays answers by
    /// this much, not by the whole request timeout; a background probe (with the full request
    /// timeout) clears the mark as soon as the party answers. Training requests are not
    /// shortened. At most `request_timeout_ms`. Default 250 ms.
    pub unresponsive_timeout_ms: u64,
    /// A connection with no traffic for this long is closed. Default 10000 ms.
    pub idle_timeout_ms: u64,
    /// Keep-alive interval, well under the idle timeout. Default 2000 ms.
    pub keep_alive_ms: u64,
    /// First reconnect delay of a party; doubles up to `reconnect_max_ms`. Default 200 ms.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay. Default 10000 ms.
    pub reconnect_max_ms: u64,
    /// Largest request or response frame payload. Default 32 MiB.
    pub max_frame_bytes: u32,
    /// Most concurrent request streams on one connection. Default 256.
    pub max_concurrent_streams: u32,
    /// How often certificate, key, CA and CRL files are checked for changes (also on SIGHUP).
    /// Default 5000 ms.
    pub reload_interval_ms: u64,
    /// Warn in the log when a certificate (ours or a peer's) expires within this many days.
    /// Default 14.
    pub cert_warn_days: u32,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            federation: "tessera".to_string(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 2_000,
            training_timeout_ms: 30_000,
            unresponsive_timeout_ms: 250,
            idle_timeout_ms: 10_000,
            keep_alive_ms: 2_000,
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            max_frame_bytes: FrameLimits::default().max_data_payload,
            max_concurrent_streams: 256,
            reload_interval_ms: 5_000,
            cert_warn_days: 14,
        }
    }
}

impl TransportSettings {
    /// Frame limits derived from these settings.
    pub fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            max_data_payload: self.max_frame_bytes,
        }
    }
    /// [`Self::connect_timeout_ms`] as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    /// [`Self::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    /// [`Self::training_timeout_ms`] as a duration.
    pub fn training_timeout(&self) -> Duration {
        Duration::from_millis(self.training_timeout_ms)
    }
    /// [`Self::unresponsive_timeout_ms`] as a duration.
    pub fn unresponsive_timeout(&self) -> Duration {
        Duration::from_millis(self.unresponsive_timeout_ms)
    }
    /// [`Self::idle_timeout_ms`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
    /// [`Self::keep_alive_ms`] as a duration.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }

    /// [`Self::reload_interval_ms`] as a duration.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }

    /// Checks that the values make sense together.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("training_timeout_ms", self.training_timeout_ms),
            ("unresponsive_timeout_ms", self.unresponsive_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("keep_alive_ms", self.keep_alive_ms),
            ("reconnect_min_ms", self.reconnect_min_ms),
            ("max_frame_bytes", u64::from(self.max_frame_bytes)),
            ("max_concurrent_streams", u64::from(self.max_concurrent_streams)),
            ("reload_interval_ms", self.reload_interval_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!(
                "transport.{name} must be greater than 0"
            )));
        }
        if self.keep_alive_ms >= self.idle_timeout_ms {
            return Err(ConfigError::Invalid(
                "transport.keep_alive_ms must be less than transport.idle_timeout_ms".into(),
            ));
        }
        if self.unresponsive_timeout_ms > self.request_timeout_ms {
            return Err(ConfigError::Invalid(
                "transport.unresponsive_timeout_ms must be at most transport.request_timeout_ms".into(),
            ));
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(ConfigError::Invalid(
                "transport.reconnect_max_ms must be at least transport.reconnect_min_ms".into(),
            ));
        }
        Ok(())
    }
}

/// Exponential reconnect backoff with full jitter, as used by a party's dial loop.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff from the settings' reconnect bounds.
    pub fn new(settings: &TransportSettings) -> Self {
        let min = Duration::from_millis(settings.reconnect_min_ms);
        Self {
            min,
            max: Duration::from_millis(settings.reconnect_max_ms),
            current: min,
        }
    }

    /// The next delay: a uniformly random fraction (given as `jitter` in 0..=1) between half
    /// and all of the current step, which then doubles up to the maximum.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// Back to the minimum after a successful connection.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_parse_from_empty_toml() {
        let s: TransportSettings = toml::from_str("").unwrap();
        assert_eq!(s, TransportSettings::default());
        s.validate().unwrap();
        let bad: TransportSettings = toml::from_str("keep_alive_ms = 20000").unwrap();
        assert!(bad.validate().is_err());
        let bad: TransportSettings = toml::from_str("unresponsive_timeout_ms = 3000").unwrap();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("unresponsive_timeout_ms must be at most")
        );
        assert!(toml::from_str::<TransportSettings>("nonsense = 1").is_err());
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let s = TransportSettings {
            reconnect_min_ms: 100,
            reconnect_max_ms: 400,
            ..Default::default()
        };
        let mut b = Backoff::new(&s);
        let d: Vec<u64> = (0..5).map(|_| b.next_delay(1.0).as_millis() as u64).collect();
        assert_eq!(d, vec![100, 200, 400, 400, 400]);
        assert_eq!(b.next_delay(0.0).as_millis(), 200);
        b.reset();
        assert_eq!(b.next_delay(1.0).as_millis(), 100);
    }
}
