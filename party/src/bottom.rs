//! The party's bottom model: input standardisation plus an MLP whose output is the embedding.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tessera_common::model::{Mlp, Standardizer};

use crate::Error;

/// Format version of saved bottom models.
const FORMAT: u32 = 1;

/// A trained or training bottom model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BottomModel {
    format: u32,
    /// Standardisation fitted on the training customers.
    pub standardizer: Standardizer,
    /// The network.
    pub mlp: Mlp,
}

impl BottomModel {
    /// A fresh model for `n_features` inputs.
    pub fn new(
        standardizer: Standardizer,
        n_features: usize,
        hidden: &[usize],
        emb_dim: usize,
        seed: u64,
    ) -> Self {
        let mut sizes = vec![n_features];
        sizes.extend_from_slice(hidden);
        sizes.push(emb_dim);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Self {
            format: FORMAT,
            standardizer,
            mlp: Mlp::new(&sizes, &mut rng),
        }
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.mlp.input_dim()
    }

    /// Embedding width.
    pub fn emb_dim(&self) -> usize {
        self.mlp.output_dim()
    }

    /// Embeddings of raw feature rows.
    pub fn embed(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        self.mlp.forward(self.standardizer.transform(x).view())
    }

    /// Where model `model_id` lives in `dir`.
    pub fn path(dir: &Path, model_id: &str) -> PathBuf {
        dir.join(format!("{model_id}.bottom"))
    }

    /// Saves atomically (write to a temporary file, then rename).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::ModelFormat`].
    pub fn save(&self, dir: &Path, model_id: &str) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(dir.to_path_buf(), e))?;
        let bytes = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| Error::ModelFormat(e.to_string()))?;
        let path = Self::path(dir, model_id);
        let tmp = path.with_extension("bottom.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| Error::Io(tmp.clone(), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::Io(path.clone(), e))
    }

    /// Loads a saved model.
    ///
    /// # Errors
    /// [`Error::NoModel`] if absent; [`Error::ModelFormat`] if unreadable or inconsistent.
    pub fn load(dir: &Path, model_id: &str) -> Result<Self, Error> {
        let path = Self::path(dir, model_id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoModel(model_id.to_string()));
            }
            Err(e) => return Err(Error::Io(path, e)),
        };
        let cfg = bincode::config::standard().with_limit::<{ 256 * 1024 * 1024 }>();
        let (m, _): (BottomModel, usize) = bincode::serde::decode_from_slice(&bytes, cfg)
            .map_err(|e| Error::ModelFormat(format!("{}: {e}", path.display())))?;
        if m.format != FORMAT {
            return Err(Error::ModelFormat(format!(
                "{}: format {} (expected {FORMAT})",
                path.display(),
                m.format
            )));
        }
        let consistent = m.mlp.layers.windows(2).all(|w| w[0].w.ncols() == w[1].w.nrows())
            && m.mlp.layers.iter().all(|l| l.b.len() == l.w.ncols())
            && !m.mlp.layers.is_empty()
            && m.standardizer.mean.len() == m.n_features()
            && m.standardizer.std.len() == m.n_features()
            && m.mlp.is_finite();
        if !consistent {
            return Err(Error::ModelFormat(format!(
                "{}: inconsistent shapes or non-finite weights",
                path.display()
            )));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array1;

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let st = Standardizer {
            mean: Array1::zeros(3),
            std: Array1::ones(3),
        };
        let m = BottomModel::new(st, 3, &[4], 2, 1);
        m.save(dir.path(), "m1").unwrap();
        let back = BottomModel::load(dir.path(), "m1").unwrap();
        assert_eq!(back.mlp, m.mlp);
        assert!(matches!(
            BottomModel::load(dir.path(), "nope"),
            Err(Error::NoModel(_))
        ));
        std::fs::write(BottomModel::path(dir.path(), "bad"), b"garbage").unwrap();
        assert!(matches!(
            BottomModel::load(dir.path(), "bad"),
            Err(Error::ModelFormat(_))
        ));
    }
}
