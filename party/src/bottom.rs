//! The party's bottom model: input standardisation plus an MLP whose output is the embedding.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayView2};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tessera_common::model::{Encoder, Mlp};

use crate::Error;

/// Format version of saved bottom models.
const FORMAT: u32 = 3;

/// A trained or training bottom model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BottomModel {
    format: u32,
    /// Input encoding fitted on the training customers.
    pub encoder: Encoder,
    /// The network.
    pub mlp: Mlp,
    /// Mean encoded training row: the baseline attributions are measured against.
    pub baseline: Array1<f64>,
}

impl BottomModel {
    /// A fresh model on top of `encoder`, with the mean encoded training row `baseline`.
    ///
    /// # Panics
    /// If `baseline` is not as wide as the encoding (a programming error).
    pub fn new(encoder: Encoder, baseline: Array1<f64>, hidden: &[usize], emb_dim: usize, seed: u64) -> Self {
        assert_eq!(baseline.len(), encoder.width(), "baseline width");
        let mut sizes = vec![encoder.width()];
        sizes.extend_from_slice(hidden);
        sizes.push(emb_dim);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Self {
            format: FORMAT,
            encoder,
            mlp: Mlp::new(&sizes, &mut rng),
            baseline,
        }
    }

    /// Number of raw input features (data columns).
    pub fn n_features(&self) -> usize {
        self.encoder.n_inputs()
    }

    /// Encoded rows, the network's input.
    pub fn encode(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        self.encoder.transform(x)
    }

    /// Embedding width.
    pub fn emb_dim(&self) -> usize {
        self.mlp.output_dim()
    }

    /// Embeddings of raw feature rows.
    pub fn embed(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        self.mlp.forward(self.encoder.transform(x).view())
    }

    /// Attributions (`rows × raw columns`) of raw rows for the logit gradients `grad_emb`
    /// (see `tessera_common::model::attribution`).
    pub fn attribute(&self, x: ArrayView2<'_, f64>, grad_emb: ArrayView2<'_, f64>) -> Array2<f64> {
        tessera_common::model::attribution::attribute(
            &self.encoder,
            &self.mlp,
            self.baseline.view(),
            x,
            grad_emb,
        )
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
        tessera_common::fs::write_atomic(&path, &bytes, false).map_err(|e| Error::Io(path.clone(), e))
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
            && m.encoder.width() == m.mlp.input_dim()
            && m.baseline.len() == m.encoder.width()
            && m.baseline.iter().all(|v| v.is_finite())
            && m.encoder.is_finite()
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

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let x = ndarray::Array2::from_shape_fn((40, 3), |(i, j)| (i * (j + 1)) as f64);
        let enc = Encoder::fit(x.view());
        let baseline = enc.transform(x.view()).mean_axis(ndarray::Axis(0)).unwrap();
        let m = BottomModel::new(enc, baseline, &[4], 2, 1);
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
