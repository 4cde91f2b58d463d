//! The audit log's settings: where decisions go (SQLite file or PostgreSQL URL), how customer
//! ids are written, and the bounds of the writer's queue; checked before anything opens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tessera_common::config::ConfigError;

/// How customer ids are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerIdMode {
    /// As given in the request.
    #[default]
    Plain,
    /// HMAC-SHA256 with a secret key (hex): decisions can be found by customer only by
    /// whoever holds the key.
    Hmac,
}

/// `[audit]` of the coordinator configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Record decisions. Default true.
    pub enabled: bool,
    /// Database URL: `postgres://…` or `sqlite://…`. Default: SQLite at `path`.
    pub url: Option<String>,
    /// SQLite file when no URL is given. Default `<model_dir>/audit.sqlite`.
    pub path: Option<PathBuf>,
    /// `plain` (default) or `hmac`.
    pub customer_id: CustomerIdMode,
    /// File holding the HMAC key (at least 32 bytes), required for `hmac`.
    pub hmac_key_file: Option<PathBuf>,
    /// Decisions waiting to be written; beyond it they are dropped and counted. Default 10,000.
    pub queue_capacity: usize,
    /// Decisions per transaction. Default 500.
    pub batch_size: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            url: None,
            path: None,
            customer_id: CustomerIdMode::Plain,
            hmac_key_file: None,
            queue_capacity: 10_000,
            batch_size: 500,
        }
    }
}

impl AuditSettings {
    /// Checks ranges and that `hmac` has a key file.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue_capacity == 0 || self.batch_size == 0 {
            return Err(ConfigError::Invalid(
                "audit.queue_capacity and audit.batch_size must be positive".into(),
            ));
        }
        if self.customer_id == CustomerIdMode::Hmac && self.hmac_key_file.is_none() {
            return Err(ConfigError::Invalid(
                "audit.customer_id = \"hmac\" needs audit.hmac_key_file".into(),
            ));
        }
        if let Some(u) = &self.url
            && !(u.starts_with("postgres://") || u.starts_with("postgresql://") || u.starts_with("sqlite:"))
        {
            return Err(ConfigError::Invalid(
                "audit.url must start with postgres://, postgresql:// or sqlite:".into(),
            ));
        }
        Ok(())
    }
}
