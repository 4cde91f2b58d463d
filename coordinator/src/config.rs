//! The coordinator's configuration file (TOML), with documented defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tessera_common::config::ConfigError;

use serde::{Deserialize, Serialize};
use tessera_common::config::TransportSettings;
use tessera_common::model::ScoreScale;
use tessera_common::wire::PartyId;

/// Prefix of the environment variables that set coordinator configuration keys.
pub const ENV_PREFIX: &str = "TESSERA_COORDINATOR";

/// Everything the coordinator needs to run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// QUIC address parties dial. Default `0.0.0.0:4433`.
    #[serde(default = "default_quic")]
    pub listen_quic: SocketAddr,
    /// HTTP API address. Default `127.0.0.1:8080`.
    #[serde(default = "default_http")]
    pub listen_http: SocketAddr,
    /// Directory with `tls.crt`, `tls.key` and `ca.crt`.
    pub tls_dir: PathBuf,
    /// Where top models and manifests are kept.
    pub model_dir: PathBuf,
    /// The federation's parties, in the order their embeddings enter the top model.
    pub parties: Vec<PartyId>,
    /// Model to serve; default: the newest trained (recorded in `model_dir/CURRENT`).
    #[serde(default)]
    pub model_id: Option<String>,
    /// HTTP limits.
    #[serde(default)]
    pub http: HttpSettings,
    /// The score scale.
    #[serde(default)]
    pub score: ScoreScale,
    /// Scoring policy.
    #[serde(default)]
    pub scoring: ScoringSettings,
    /// Training hyperparameters.
    #[serde(default)]
    pub training: TrainingConfig,
    /// Transport timeouts and limits.
    #[serde(default)]
    pub transport: TransportSettings,
    /// The audit log of decisions.
    #[serde(default)]
    pub audit: crate::audit::AuditSettings,
    /// Authentication of HTTP API callers (`[auth]`: `mode`, `keys_file`).
    #[serde(default)]
    pub auth: crate::auth::AuthSettings,
    /// Serve `/metrics` on this address instead of on the API's (e.g. a port only the
    /// monitoring network reaches). Default: on the API's address, without authentication.
    #[serde(default)]
    pub listen_metrics: Option<SocketAddr>,
}

fn default_quic() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 4433))
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// When a score may be given with parties missing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringSettings {
    /// Least number of parties that must contribute an embedding; the others are replaced by
    /// their learned absent embedding and the answer is flagged `degraded`. Default 1.
    pub min_parties: usize,
    /// Monte Carlo dropout samples behind the 90% score interval (0: no interval, the
    /// interval is the point score). Default 64.
    pub interval_samples: usize,
    /// Most customers in one `POST /v1/score/batch`. Default 1,000.
    pub max_batch: usize,
    /// Dispatchers that coalesce concurrent single scores into batched fan-outs. Default 4.
    pub pipelines: usize,
}

impl Default for ScoringSettings {
    fn default() -> Self {
        Self {
            min_parties: 1,
            interval_samples: 64,
            max_batch: 1_000,
            pipelines: 4,
        }
    }
}

/// Limits of the HTTP API.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest request body, bytes. Default 16 KiB.
    pub max_body_bytes: usize,
    /// Most scoring requests in progress at once; more get 503. Default 1,024.
    pub max_concurrent: usize,
    /// Most open client connections; more wait in the kernel's accept queue. Default 4,096.
    pub max_connections: usize,
    /// Most open connections from one client address; more are closed at once (counted in
    /// `tessera_http_connections_refused_total`). Behind a proxy or load balancer that does not
    /// keep the client address, every client shares the proxy's: raise it to
    /// `max_connections` (a value above `max_connections` has the same effect). Default 256.
    pub max_connections_per_address: usize,
    /// Time for a client to send a request's headers (HTTP/1: also the longest idle time
    /// between keep-alive requests), milliseconds. Default 10,000.
    pub header_timeout_ms: u64,
    /// Time for a client to send a request's body, milliseconds (then 408). Default 10,000.
    pub body_timeout_ms: u64,
    /// On shutdown, how long in-flight requests may finish before their connections are
    /// dropped, milliseconds. Default 10,000.
    pub shutdown_grace_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024,
            max_concurrent: 1024,
            max_connections: 4096,
            max_connections_per_address: 256,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Training hyperparameters. Defaults are those found to work on `default_credit`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Seed for the holdout/validation split. Default 42.
    pub split_seed: u64,
    /// Seed for initialisation and minibatch order. Default 42.
    pub seed: u64,
    /// Fraction of customers held out for the final figures (stratified). Default 0.2.
    pub holdout_fraction: f64,
    /// Fraction of the remaining customers used for early stopping. Default 0.1.
    pub validation_fraction: f64,
    /// Most epochs. Default 40.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation AUC. Default 6.
    pub patience: usize,
    /// Minibatch size. Default 256.
    pub batch_size: usize,
    /// Hidden widths of each party's bottom model. Default `[32]`.
    pub bottom_hidden: Vec<u32>,
    /// Embedding width of each party. Default 16.
    pub emb_dim: u32,
    /// Hidden widths of the top model. Default `[32]`.
    pub top_hidden: Vec<usize>,
    /// Adam learning rate. Default 0.001.
    pub learning_rate: f32,
    /// Learning rate multiplier applied after every epoch. Default 0.95.
    pub lr_decay: f32,
    /// Decoupled weight decay. Default 0.0001.
    pub weight_decay: f32,
    /// Probability that a party's embedding is replaced by its learned "absent" embedding for
    /// a training row, so the model learns to score when a party is missing. Default 0.1.
    pub party_dropout: f64,
    /// Dropout rate of the top model's hidden layers in training; also what the 90% score
    /// interval samples at scoring time (Monte Carlo dropout). Default 0.1.
    pub top_dropout: f64,
    /// Fit Platt scaling on the validation split after training. Default false: measured on
    /// default_credit it raised the holdout ECE (docs/MODEL.md).
    pub calibrate: bool,
    /// Train on at most this many of the label holder's customers (quick runs). Default: all.
    pub max_rows: Option<usize>,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            split_seed: 42,
            seed: 42,
            holdout_fraction: 0.2,
            validation_fraction: 0.1,
            epochs: 40,
            patience: 6,
            batch_size: 256,
            bottom_hidden: vec![32],
            emb_dim: 16,
            top_hidden: vec![32],
            learning_rate: 1e-3,
            lr_decay: 0.95,
            weight_decay: 1e-4,
            party_dropout: 0.1,
            top_dropout: 0.1,
            calibrate: false,
            max_rows: None,
        }
    }
}

impl TrainingConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let frac = |v: f64| v > 0.0 && v < 1.0;
        if !frac(self.holdout_fraction) || !frac(self.validation_fraction) {
            return Err(ConfigError::Invalid(
                "training.holdout_fraction and validation_fraction must be in (0, 1)".into(),
            ));
        }
        if self.epochs == 0 || self.batch_size == 0 || self.emb_dim == 0 {
            return Err(ConfigError::Invalid(
                "training.epochs, batch_size and emb_dim must be positive".into(),
            ));
        }
        if !(self.learning_rate > 0.0
            && self.lr_decay > 0.0
            && self.lr_decay <= 1.0
            && self.weight_decay >= 0.0)
        {
            return Err(ConfigError::Invalid(
                "training.learning_rate must be > 0, lr_decay in (0, 1], weight_decay >= 0".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.party_dropout) {
            return Err(ConfigError::Invalid(
                "training.party_dropout must be in [0, 1)".into(),
            ));
        }
        if !(0.0..0.9).contains(&self.top_dropout) {
            return Err(ConfigError::Invalid(
                "training.top_dropout must be in [0, 0.9)".into(),
            ));
        }
        if self.top_hidden.contains(&0) || self.bottom_hidden.contains(&0) {
            return Err(ConfigError::Invalid(
                "training layer widths must be positive".into(),
            ));
        }
        Ok(())
    }
}

impl CoordinatorConfig {
    /// Reads and checks a config file; relative paths resolve against its directory.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(Some(path))
    }

    /// Reads the config file (if any), applies `TESSERA_COORDINATOR__…` environment variables
    /// (see `tessera_common::config::env`), and checks it.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file or variable and the problem.
    pub fn load_with_env(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (mut cfg, base): (CoordinatorConfig, _) = tessera_common::config::env::load(path, ENV_PREFIX)?;
        let base = base.as_path();
        for p in [&mut cfg.tls_dir, &mut cfg.model_dir]
            .into_iter()
            .chain(cfg.audit.path.as_mut())
            .chain(cfg.audit.hmac_key_file.as_mut())
            .chain(cfg.auth.keys_file.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let what = path.map_or_else(|| format!("{ENV_PREFIX}__*"), |p| p.display().to_string());
        cfg.validate().map_err(|e| e.within(what))?;
        Ok(cfg)
    }

    /// Checks the whole configuration.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.parties.is_empty() {
            return Err(ConfigError::Invalid(
                "parties must list at least one party".into(),
            ));
        }
        let mut sorted = self.parties.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.parties.len() {
            return Err(ConfigError::Invalid("parties lists a party twice".into()));
        }
        if self.scoring.min_parties == 0 || self.scoring.min_parties > self.parties.len() {
            return Err(ConfigError::Invalid(
                "scoring.min_parties must be between 1 and the number of parties".into(),
            ));
        }
        if self.scoring.interval_samples > 10_000 {
            return Err(ConfigError::Invalid(
                "scoring.interval_samples must be at most 10,000".into(),
            ));
        }
        if self.scoring.pipelines == 0 || self.scoring.pipelines > 256 {
            return Err(ConfigError::Invalid(
                "scoring.pipelines must be between 1 and 256".into(),
            ));
        }
        if self.scoring.max_batch == 0 || self.scoring.max_batch > 100_000 {
            return Err(ConfigError::Invalid(
                "scoring.max_batch must be between 1 and 100,000".into(),
            ));
        }
        if self.http.max_body_bytes == 0 || self.http.max_concurrent == 0 {
            return Err(ConfigError::Invalid(
                "http.max_body_bytes and http.max_concurrent must be positive".into(),
            ));
        }
        let h = &self.http;
        if !(1..=1_000_000).contains(&h.max_connections)
            || h.header_timeout_ms == 0
            || h.body_timeout_ms == 0
            || h.shutdown_grace_ms == 0
        {
            return Err(ConfigError::Invalid(
                "http.max_connections must be 1 to 1,000,000 and http.header_timeout_ms, body_timeout_ms, shutdown_grace_ms positive".into(),
            ));
        }
        if h.max_connections_per_address == 0 {
            return Err(ConfigError::Invalid(
                "http.max_connections_per_address must be positive".into(),
            ));
        }
        self.transport.validate()?;
        self.audit.validate()?;
        self.auth.validate()?;
        self.score.validate()?;
        self.training.validate()
    }
}
