//! The party's configuration file (TOML).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tessera_common::config::ConfigError;

use serde::Deserialize;
use tessera_common::config::TransportSettings;
use tessera_common::wire::PartyId;

/// Prefix of the environment variables that set party configuration keys.
pub const ENV_PREFIX: &str = "TESSERA_PARTY";

/// Everything a party needs to run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyConfig {
    /// This party's id; must match the identity in its certificate.
    pub party_id: PartyId,
    /// Where the coordinator's QUIC endpoint is: `host:port` or `ip:port` (names are resolved
    /// on every connection attempt, IPv4 preferred). With `coordinator_discovery = "every"`,
    /// a comma-separated list of such entries is allowed too.
    pub coordinator_addr: String,
    /// `"one"` (default): one connection, to the first address `coordinator_addr` resolves
    /// to. `"every"`: one connection to every address every entry resolves to (the replicas
    /// behind a headless Service), re-resolved every `transport.reload_interval_ms`.
    #[serde(default)]
    pub coordinator_discovery: Discovery,
    /// Name the coordinator's certificate must carry (a DNS SAN). Default `localhost`.
    #[serde(default = "default_server_name")]
    pub coordinator_name: String,
    /// Directory with `tls.crt`, `tls.key` and `ca.crt` (as written by `tessera-certs issue`).
    pub tls_dir: PathBuf,
    /// Directory where this party keeps its bottom models.
    pub model_dir: PathBuf,
    /// The party's data.
    pub data: DataConfig,
    /// Address for the party's own `/metrics` and `/healthz` (for the bank's monitoring; no
    /// data is served there). Default: off.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// Limits of what one request may ask.
    #[serde(default)]
    pub limits: PartyLimits,
    /// Transport timeouts and limits.
    #[serde(default)]
    pub transport: TransportSettings,
    /// What this bank lets a coordinator do in training (`[training]`: `enabled`,
    /// `min_hidden_layers`, `seed`). Default: training disabled.
    #[serde(default)]
    pub training: crate::policy::TrainingPolicy,
    /// The published reason dictionary (`[[reasons]]`: code, text, features). Default: one
    /// code per feature column (`F01`…, text "Value of <column>").
    #[serde(default)]
    pub reasons: Vec<crate::reasons::ReasonConfig>,
}

/// How a party finds the coordinator's replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// One connection to one address.
    #[default]
    One,
    /// One connection to every address found.
    Every,
}

fn default_server_name() -> String {
    "localhost".into()
}

/// Where the party's features are and how to read them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// CSV file (`.csv` or `.csv.gz`).
    pub path: PathBuf,
    /// Id column name. Default `id`.
    #[serde(default = "default_id_column")]
    pub id_column: String,
    /// Label column, only at the label-holding party.
    #[serde(default)]
    pub label_column: Option<String>,
    /// Refuse files with more rows. Default 5,000,000.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Use only the first N rows (quick runs and tests).
    #[serde(default)]
    pub limit: Option<usize>,
}

fn default_id_column() -> String {
    "id".into()
}
fn default_max_rows() -> usize {
    5_000_000
}

/// Per-request limits a party enforces.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PartyLimits {
    /// Most ids in one forward, embed or labels request. Default 100,000.
    pub max_batch: usize,
    /// Most ids in one page of the id listing. Default 100,000.
    pub max_page: u32,
    /// Most concurrent requests being worked on. Default 64.
    pub max_in_flight: usize,
    /// Widest layer a training request may ask for. Default 1,024.
    pub max_width: u32,
    /// Most hidden layers a training request may ask for. Default 8.
    pub max_layers: usize,
}

impl Default for PartyLimits {
    fn default() -> Self {
        Self {
            max_batch: 100_000,
            max_page: 100_000,
            max_in_flight: 64,
            max_width: 1024,
            max_layers: 8,
        }
    }
}

impl PartyConfig {
    /// Reads and checks a config file; relative paths are resolved against the file's directory.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(Some(path))
    }

    /// Reads the config file (if any), applies `TESSERA_PARTY__…` environment variables (see
    /// `tessera_common::config::env`), and checks it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or variable and the problem.
    pub fn load_with_env(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (mut cfg, base): (PartyConfig, _) = tessera_common::config::env::load(path, ENV_PREFIX)?;
        let base = base.as_path();
        for p in [&mut cfg.tls_dir, &mut cfg.model_dir, &mut cfg.data.path] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let what = path.map_or_else(|| format!("{ENV_PREFIX}__*"), |p| p.display().to_string());
        cfg.transport.validate().map_err(|e| e.within(what.clone()))?;
        if cfg.training.max_peer_customers == 0 {
            return Err(ConfigError::Invalid(
                "training.max_peer_customers must be positive (the other banks' customers re-blinded per alignment)".into(),
            ));
        }
        if cfg.training.min_hidden_layers == 0 {
            return Err(ConfigError::Invalid(
                "training.min_hidden_layers must be at least 1 (a linear bottom model can be inverted)"
                    .into(),
            )
            .within(what));
        }
        let entries: Vec<&str> = cfg.coordinator_addr.split(',').map(str::trim).collect();
        if entries.len() > 1 && cfg.coordinator_discovery == Discovery::One {
            return Err(ConfigError::Invalid(
                "coordinator_addr lists several addresses: set coordinator_discovery = \"every\"".into(),
            )
            .within(what));
        }
        for e in entries {
            match e.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => {
                    return Err(
                        ConfigError::Invalid("coordinator_addr must be host:port".into()).within(what)
                    );
                }
            }
        }
        Ok(cfg)
    }
}
