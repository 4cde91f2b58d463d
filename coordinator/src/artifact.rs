//! Model artifacts on the coordinator's side: the top model and the manifest describing the
//! whole federated model. Each party keeps its own bottom model; the coordinator never has it.
//!
//! Layout: `model_dir/<model_id>/manifest.json`, `model_dir/<model_id>/top.bin`, and
//! `model_dir/CURRENT` naming the newest model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tessera_common::model::TopModel;
use tessera_common::wire::{PartyId, valid_model_id};

use crate::config::TrainingConfig;

/// Format version of the artifacts.
pub const FORMAT: u32 = 2;

/// One party's part of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartyEntry {
    /// The party.
    pub party_id: PartyId,
    /// Features its bottom model takes.
    pub n_features: u32,
    /// Width of its embedding.
    pub emb_dim: u32,
}

/// Figures measured at the end of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetrics {
    /// ROC AUC on the stratified holdout.
    pub holdout_auc: f64,
    /// KS statistic on the holdout.
    pub holdout_ks: f64,
    /// Expected calibration error (10 bins) of the probability of default on the holdout.
    pub holdout_ece: f64,
    /// AUC on holdout customers known to every party.
    pub holdout_auc_complete: Option<f64>,
    /// AUC on holdout customers unknown to at least one party.
    pub holdout_auc_partial: Option<f64>,
    /// Holdout AUC with each party treated as absent.
    pub holdout_auc_party_absent: std::collections::BTreeMap<String, f64>,
    /// Best validation AUC (early stopping).
    pub validation_auc: f64,
    /// The label holder's customers (the training population).
    pub customers: usize,
    /// Of them, known to every party.
    pub customers_in_every_party: usize,
    /// Training rows.
    pub train_rows: usize,
    /// Validation rows.
    pub validation_rows: usize,
    /// Holdout rows.
    pub holdout_rows: usize,
    /// Holdout rows unknown to at least one party.
    pub holdout_rows_partial: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// Epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Wall time of training, seconds (alignment included).
    pub training_seconds: f64,
    /// Wall time of the private set intersection, seconds.
    #[serde(default)]
    pub alignment_seconds: f64,
    /// Customers each party shares with the label holder (from the private set intersection).
    #[serde(default)]
    pub shared_with_label_holder: std::collections::BTreeMap<String, usize>,
    /// Deciles of the holdout's probabilities of default: the reference against which the
    /// population stability of served scores is measured (empty for models trained before).
    #[serde(default)]
    pub score_reference: tessera_common::model::stability::Reference,
}

/// Describes a trained federated model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Artifact format.
    pub format: u32,
    /// Model id (also the version reported by the API).
    pub model_id: String,
    /// Creation time, RFC 3339, UTC.
    pub created_at: String,
    /// Parties in the order their embeddings enter the top model.
    pub parties: Vec<PartyEntry>,
    /// The party that held the labels.
    pub label_holder: PartyId,
    /// Layer widths of the top model.
    pub top_layers: Vec<usize>,
    /// Figures from training.
    pub metrics: TrainingMetrics,
    /// Hyperparameters used.
    pub training: TrainingConfig,
    /// The Tessera release that trained it (empty for models trained before it was recorded).
    #[serde(default)]
    pub code_version: String,
}

/// Errors reading or writing artifacts.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// File IO failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A file is unreadable, inconsistent or of another format.
    #[error("{0}: {1}")]
    Format(PathBuf, String),
    /// No model has been trained yet.
    #[error("no model in {0} (train one first)")]
    NoModel(PathBuf),
    /// The model's parties are not the configured ones.
    #[error(
        "model {model_id} was trained with parties [{model}] but the coordinator is configured for [{configured}]"
    )]
    PartyMismatch {
        /// The model.
        model_id: String,
        /// Parties in the manifest.
        model: String,
        /// Parties configured.
        configured: String,
    },
    /// A model id that is not a safe file name.
    #[error("invalid model id {0:?}")]
    InvalidId(String),
}

#[derive(Serialize, Deserialize)]
struct TopFile {
    format: u32,
    top: TopModel,
}

/// Writes the artifacts and points `CURRENT` at them.
///
/// # Errors
/// [`ArtifactError`] on IO or encoding failure.
pub fn save(dir: &Path, manifest: &Manifest, top: &TopModel) -> Result<(), ArtifactError> {
    if !valid_model_id(&manifest.model_id) {
        return Err(ArtifactError::InvalidId(manifest.model_id.clone()));
    }
    let mdir = dir.join(&manifest.model_id);
    std::fs::create_dir_all(&mdir).map_err(|e| ArtifactError::Io(mdir.clone(), e))?;
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| ArtifactError::Format(mdir.clone(), e.to_string()))?;
    write_atomic(&mdir.join("manifest.json"), &json)?;
    let bytes = bincode::serde::encode_to_vec(
        TopFile {
            format: FORMAT,
            top: top.clone(),
        },
        bincode::config::standard(),
    )
    .map_err(|e| ArtifactError::Format(mdir.clone(), e.to_string()))?;
    write_atomic(&mdir.join("top.bin"), &bytes)?;
    write_atomic(&dir.join("CURRENT"), manifest.model_id.as_bytes())
}

/// Points `CURRENT` at saved model `model_id` (what a restart, and every replica watching
/// the directory, serves).
///
/// # Errors
/// [`ArtifactError`] on an invalid id or IO failure.
pub fn set_current(dir: &Path, model_id: &str) -> Result<(), ArtifactError> {
    if !valid_model_id(model_id) {
        return Err(ArtifactError::InvalidId(model_id.to_string()));
    }
    write_atomic(&dir.join("CURRENT"), model_id.as_bytes())
}

/// The newest model id recorded in `dir/CURRENT`.
///
/// # Errors
/// [`ArtifactError::NoModel`] if none was trained; IO errors.
pub fn current(dir: &Path) -> Result<String, ArtifactError> {
    let path = dir.join("CURRENT");
    match std::fs::read_to_string(&path) {
        Ok(s) if valid_model_id(s.trim()) => Ok(s.trim().to_string()),
        Ok(_) => Err(ArtifactError::Format(path, "not a model id".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ArtifactError::NoModel(dir.to_path_buf())),
        Err(e) => Err(ArtifactError::Io(path, e)),
    }
}

/// Loads a model's manifest and top network, checking they fit together and that the model's
/// parties are exactly `configured`, in order.
///
/// # Errors
/// [`ArtifactError`] naming the file or the mismatch.
pub fn load(
    dir: &Path,
    model_id: &str,
    configured: &[PartyId],
) -> Result<(Manifest, TopModel), ArtifactError> {
    if !valid_model_id(model_id) {
        return Err(ArtifactError::InvalidId(model_id.to_string()));
    }
    let mdir = dir.join(model_id);
    let mpath = mdir.join("manifest.json");
    let text = match std::fs::read(&mpath) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ArtifactError::NoModel(mdir)),
        Err(e) => return Err(ArtifactError::Io(mpath, e)),
    };
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| ArtifactError::Format(mpath.clone(), e.to_string()))?;
    if manifest.format != FORMAT || manifest.model_id != model_id {
        return Err(ArtifactError::Format(
            mpath,
            "format or model id does not match".into(),
        ));
    }
    let tpath = mdir.join("top.bin");
    let bytes = std::fs::read(&tpath).map_err(|e| ArtifactError::Io(tpath.clone(), e))?;
    let cfg = bincode::config::standard().with_limit::<{ 256 * 1024 * 1024 }>();
    let (top, _): (TopFile, usize) = bincode::serde::decode_from_slice(&bytes, cfg)
        .map_err(|e| ArtifactError::Format(tpath.clone(), e.to_string()))?;
    let dims: Vec<usize> = manifest.parties.iter().map(|p| p.emb_dim as usize).collect();
    let consistent =
        top.format == FORMAT && top.top.dims == dims && top.top.is_consistent() && top.top.is_finite();
    if !consistent {
        return Err(ArtifactError::Format(
            tpath,
            "top model does not match the manifest".into(),
        ));
    }
    let model_parties: Vec<&PartyId> = manifest.parties.iter().map(|p| &p.party_id).collect();
    if model_parties != configured.iter().collect::<Vec<_>>() {
        let join = |v: Vec<&PartyId>| v.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
        return Err(ArtifactError::PartyMismatch {
            model_id: model_id.to_string(),
            model: join(model_parties),
            configured: join(configured.iter().collect()),
        });
    }
    Ok((manifest, top.top))
}

/// Crash-safe: a reader (or a restart after a crash) sees the old file or the new, whole.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    tessera_common::fs::write_atomic(path, bytes, false).map_err(|e| ArtifactError::Io(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn pid(s: &str) -> PartyId {
        PartyId::new(s).unwrap()
    }

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            model_id: "m1".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            parties: vec![
                PartyEntry {
                    party_id: pid("a"),
                    n_features: 3,
                    emb_dim: 2,
                },
                PartyEntry {
                    party_id: pid("b"),
                    n_features: 4,
                    emb_dim: 2,
                },
            ],
            label_holder: pid("a"),
            top_layers: vec![4, 3, 1],
            metrics: TrainingMetrics {
                holdout_auc: 0.7,
                holdout_ks: 0.3,
                holdout_ece: 0.01,
                holdout_auc_complete: Some(0.7),
                holdout_auc_partial: None,
                holdout_auc_party_absent: Default::default(),
                validation_auc: 0.7,
                customers: 10,
                customers_in_every_party: 10,
                train_rows: 7,
                validation_rows: 1,
                holdout_rows: 2,
                holdout_rows_partial: 0,
                epochs_run: 1,
                best_epoch: 1,
                training_seconds: 0.1,
                alignment_seconds: 0.05,
                shared_with_label_holder: Default::default(),
                score_reference: Default::default(),
            },
            training: TrainingConfig::default(),
            code_version: "test".into(),
        }
    }

    #[test]
    fn round_trip_and_party_checks() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let top = TopModel::new(&[2, 2], &[3], &mut rng);
        save(dir.path(), &manifest(), &top).unwrap();
        assert_eq!(current(dir.path()).unwrap(), "m1");
        let (m, t) = load(dir.path(), "m1", &[pid("a"), pid("b")]).unwrap();
        assert_eq!((m, t), (manifest(), top));
        let err = load(dir.path(), "m1", &[pid("a"), pid("c")]).unwrap_err();
        assert!(matches!(err, ArtifactError::PartyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("[a, b]") && err.to_string().contains("[a, c]"));
        assert!(matches!(
            load(dir.path(), "m2", &[pid("a")]),
            Err(ArtifactError::NoModel(_))
        ));
        assert!(matches!(
            load(dir.path(), "../m1", &[pid("a")]),
            Err(ArtifactError::InvalidId(_))
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(current(empty.path()), Err(ArtifactError::NoModel(_))));
    }
}
