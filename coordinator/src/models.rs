//! The model registry on the coordinator's disk: the saved models with their figures, the log
//! of who activated (or rolled back, or shadowed) what and when, and the model card. Switching
//! the served model itself is [`crate::serving::Serving::switch`]; this module is its record.
//!
//! Files, beside the models in `model_dir`: `CURRENT` (the model a restart serves, also
//! watched by every replica sharing the directory) and `activations.jsonl` (one JSON object
//! per line, appended and synced).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::artifact::{ArtifactError, Manifest};

/// Models listed at most.
pub const MAX_LISTED: usize = 1_000;

/// Activation records kept in memory when reading the log (the newest).
pub const MAX_HISTORY: usize = 1_000;

/// The activation log's file name.
const LOG: &str = "activations.jsonl";

/// A saved model as listed.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ModelSummary {
    /// Model id.
    pub model_id: String,
    /// When it was trained.
    pub created_at: String,
    /// Holdout AUC.
    pub holdout_auc: f64,
    /// Holdout KS.
    pub holdout_ks: f64,
    /// Holdout expected calibration error.
    pub holdout_ece: f64,
    /// Its parties, in the order their embeddings enter the top model.
    pub parties: Vec<String>,
    /// Differential privacy: not applied to any model yet (always `null`).
    pub epsilon: Option<f64>,
}

impl From<&Manifest> for ModelSummary {
    fn from(m: &Manifest) -> Self {
        Self {
            model_id: m.model_id.clone(),
            created_at: m.created_at.clone(),
            holdout_auc: m.metrics.holdout_auc,
            holdout_ks: m.metrics.holdout_ks,
            holdout_ece: m.metrics.holdout_ece,
            parties: m.parties.iter().map(|p| p.party_id.to_string()).collect(),
            epsilon: None,
        }
    }
}

/// The saved models in `dir` whose manifest can be read, newest first (at most
/// [`MAX_LISTED`]). Unreadable entries are skipped (loading one names the problem).
///
/// # Errors
/// [`ArtifactError::Io`] if the directory cannot be read.
pub fn list(dir: &Path) -> Result<Vec<Manifest>, ArtifactError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ArtifactError::Io(dir.to_path_buf(), e))?;
    let mut out = Vec::new();
    for entry in entries.flatten().take(10 * MAX_LISTED) {
        let name = entry.file_name().to_string_lossy().to_string();
        if !tessera_common::wire::valid_model_id(&name) {
            continue;
        }
        let path = entry.path().join("manifest.json");
        let Ok(bytes) = std::fs::read(&path) else { continue };
        if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes)
            && m.model_id == name
        {
            out.push(m);
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.model_id.cmp(&a.model_id)));
    out.truncate(MAX_LISTED);
    Ok(out)
}

/// What was done to the served models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A model made active.
    Activate,
    /// The previous model made active again.
    Rollback,
    /// A shadow model set.
    Shadow,
    /// The shadow model removed.
    ShadowCleared,
}

/// One entry of the activation log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Activation {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The API client that asked.
    pub client: String,
    /// What was done.
    pub action: Action,
    /// The model it concerned (none when a shadow was cleared).
    pub model_id: Option<String>,
    /// The model active (or shadowing) before.
    pub previous: Option<String>,
}

impl Activation {
    /// An entry dated now.
    pub fn now(client: &str, action: Action, model_id: Option<String>, previous: Option<String>) -> Self {
        Self {
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            client: client.to_string(),
            action,
            model_id,
            previous,
        }
    }
}

/// Appends `entry` to the activation log in `dir`, synced to disk.
///
/// # Errors
/// [`ArtifactError::Io`].
pub fn record(dir: &Path, entry: &Activation) -> Result<(), ArtifactError> {
    let path = dir.join(LOG);
    let mut line =
        serde_json::to_vec(entry).map_err(|e| ArtifactError::Format(path.clone(), e.to_string()))?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| ArtifactError::Io(path.clone(), e))?;
    f.write_all(&line)
        .and_then(|()| f.sync_data())
        .map_err(|e| ArtifactError::Io(path, e))
}

/// The newest `limit` entries of the activation log, newest first (none if there is no log; a
/// line that cannot be read is skipped).
///
/// # Errors
/// [`ArtifactError::Io`] if the log exists but cannot be read.
pub fn history(dir: &Path, limit: usize) -> Result<Vec<Activation>, ArtifactError> {
    let path = dir.join(LOG);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ArtifactError::Io(path, e)),
    };
    Ok(text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str(l).ok())
        .take(limit.min(MAX_HISTORY))
        .collect())
}

/// A model card: what a model-risk committee reads about a model.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Card {
    /// Model id.
    pub model_id: String,
    /// When it was trained.
    pub created_at: String,
    /// The Tessera release that trained it (`unknown` for models from before it was recorded).
    pub code_version: String,
    /// The bank holding the labels.
    pub label_holder: String,
    /// Each bank's part: feature count (names and values stay at the bank), embedding width,
    /// customers shared with the label holder, holdout AUC without it.
    pub parties: Vec<CardParty>,
    /// Customers in the population, and those every bank knows.
    pub customers: (usize, usize),
    /// Rows of training, validation and holdout.
    pub rows: (usize, usize, usize),
    /// Holdout AUC, KS, expected calibration error.
    pub holdout: (f64, f64, f64),
    /// Validation AUC of the kept epoch.
    pub validation_auc: f64,
    /// Whether Platt calibration was fitted on the validation split.
    pub calibrated: bool,
    /// Epochs run and the epoch kept.
    pub epochs: (usize, usize),
    /// Training and alignment wall time, seconds.
    pub seconds: (f64, f64),
    /// Differential privacy: not applied (`null`); no ε to report.
    pub epsilon: Option<f64>,
    /// The hyperparameters, as trained.
    pub training: serde_json::Value,
}

/// One bank in a model card.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CardParty {
    /// The bank.
    pub party: String,
    /// Its feature count.
    pub features: u32,
    /// Its embedding width.
    pub embedding: u32,
    /// Customers it shares with the label holder.
    pub shared_with_label_holder: Option<usize>,
    /// Holdout AUC with this bank absent.
    pub holdout_auc_without: Option<f64>,
}

/// The card of `m`.
pub fn card(m: &Manifest) -> Card {
    let t = &m.metrics;
    Card {
        model_id: m.model_id.clone(),
        created_at: m.created_at.clone(),
        code_version: if m.code_version.is_empty() {
            "unknown".to_string()
        } else {
            m.code_version.clone()
        },
        label_holder: m.label_holder.to_string(),
        parties: m
            .parties
            .iter()
            .map(|p| CardParty {
                party: p.party_id.to_string(),
                features: p.n_features,
                embedding: p.emb_dim,
                shared_with_label_holder: t.shared_with_label_holder.get(p.party_id.as_str()).copied(),
                holdout_auc_without: t.holdout_auc_party_absent.get(p.party_id.as_str()).copied(),
            })
            .collect(),
        customers: (t.customers, t.customers_in_every_party),
        rows: (t.train_rows, t.validation_rows, t.holdout_rows),
        holdout: (t.holdout_auc, t.holdout_ks, t.holdout_ece),
        validation_auc: t.validation_auc,
        calibrated: m.training.calibrate,
        epochs: (t.epochs_run, t.best_epoch),
        seconds: (t.training_seconds, t.alignment_seconds),
        epsilon: None,
        training: serde_json::to_value(&m.training).unwrap_or_default(),
    }
}

/// The card as Markdown.
pub fn markdown(c: &Card) -> String {
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    let mut s = format!(
        "# Model card: {}\n\n\
         | | |\n|---|---|\n\
         | Trained | {} |\n| Code version | tessera {} |\n| Label holder | {} |\n\
         | Customers | {} ({} known to every bank) |\n\
         | Rows | training {}, validation {}, holdout {} |\n\
         | Holdout AUC | {:.4} |\n| Holdout KS | {:.4} |\n| Holdout ECE | {:.4} |\n\
         | Validation AUC | {:.4} |\n| Calibrated (Platt) | {} |\n\
         | Epochs | {} run, epoch {} kept |\n| Training time | {:.1} s (alignment {:.1} s) |\n\
         | Differential privacy | not applied (no ε) |\n\n\
         ## Banks\n\n\
         Feature counts only: feature names and values stay at each bank.\n\n\
         | Bank | Features | Embedding | Shared with label holder | Holdout AUC without it |\n\
         |---|---|---|---|---|\n",
        c.model_id,
        c.created_at,
        c.code_version,
        c.label_holder,
        c.customers.0,
        c.customers.1,
        c.rows.0,
        c.rows.1,
        c.rows.2,
        c.holdout.0,
        c.holdout.1,
        c.holdout.2,
        c.validation_auc,
        if c.calibrated { "yes" } else { "no" },
        c.epochs.0,
        c.epochs.1,
        c.seconds.0,
        c.seconds.1,
    );
    for p in &c.parties {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            p.party,
            p.features,
            p.embedding,
            p.shared_with_label_holder
                .map_or("–".to_string(), |v| v.to_string()),
            opt(p.holdout_auc_without)
        ));
    }
    s.push_str(&format!(
        "\n## Training configuration\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(&c.training).unwrap_or_default()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_the_newest_first_and_skips_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(history(dir.path(), 10).unwrap().is_empty());
        let a = Activation::now("ops", Action::Activate, Some("m1".into()), None);
        let b = Activation::now("ops", Action::Rollback, Some("m0".into()), Some("m1".into()));
        record(dir.path(), &a).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        record(dir.path(), &b).unwrap();
        assert_eq!(history(dir.path(), 10).unwrap(), vec![b.clone(), a]);
        assert_eq!(history(dir.path(), 1).unwrap(), vec![b]);
    }

    #[test]
    fn lists_readable_models_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        std::fs::create_dir_all(dir.path().join("broken")).unwrap();
        std::fs::write(dir.path().join("broken/manifest.json"), "{").unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        assert!(list(&dir.path().join("missing")).is_err());
    }
}
