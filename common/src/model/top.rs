//! The coordinator's top model: party embeddings concatenated in manifest order, with a learned
//! "absent" embedding per party standing in when that party does not know the customer, cannot
//! be reached, or is dropped out during training (so that the model learns to score without it).

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::calibrate::Platt;
use super::mlp::{Cache, Gradients, Mlp};

/// Top network plus one absent embedding per party.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopModel {
    /// The network from concatenated embeddings to one logit.
    pub mlp: Mlp,
    /// Embedding width of each party, in order.
    pub dims: Vec<usize>,
    /// Absent embedding of each party (`dims[p]` values each).
    pub absent: Vec<Array1<f64>>,
    /// Calibration from logit to probability (identity until fitted).
    #[serde(default)]
    pub calibration: Platt,
    /// Dropout rate of the hidden layers, used in training and for Monte Carlo dropout
    /// intervals at scoring time (0: none).
    #[serde(default)]
    pub dropout: f64,
}

/// Gradients of a [`TopModel`] step.
#[derive(Clone, Debug)]
pub struct TopGradients {
    /// Network gradients.
    pub mlp: Gradients,
    /// Gradient of each absent embedding.
    pub absent: Vec<Array1<f64>>,
    /// Gradient of each party's embeddings (rows where the party was absent are zero).
    pub parties: Vec<Array2<f64>>,
}

impl TopModel {
    /// A fresh model for parties with embedding widths `dims`.
    pub fn new(dims: &[usize], hidden: &[usize], rng: &mut impl Rng) -> Self {
        let mut sizes = vec![dims.iter().sum()];
        sizes.extend_from_slice(hidden);
        sizes.push(1);
        Self {
            mlp: Mlp::new(&sizes, rng),
            dims: dims.to_vec(),
            absent: dims.iter().map(|&d| Array1::zeros(d)).collect(),
            calibration: Platt::default(),
            dropout: 0.0,
        }
    }

    fn offsets(&self) -> Vec<usize> {
        self.dims
            .iter()
            .scan(0, |at, &d| {
                let o = *at;
                *at += d;
                Some(o)
            })
            .collect()
    }

    /// The network input: each party's embedding where `present[p][row]`, else its absent
    /// embedding.
    ///
    /// # Panics
    /// If shapes disagree with `dims` (a programming error).
    pub fn input(&self, parts: &[Array2<f64>], present: &[Vec<bool>]) -> Array2<f64> {
        let rows = present.first().map_or(0, Vec::len);
        let mut x = Array2::zeros((rows, self.dims.iter().sum()));
        for (p, o) in self.offsets().into_iter().enumerate() {
            let d = self.dims[p];
            let mut block = x.slice_mut(s![.., o..o + d]);
            for (r, &here) in present[p].iter().enumerate().take(rows) {
                if here {
                    block.row_mut(r).assign(&parts[p].row(r));
                } else {
                    block.row_mut(r).assign(&self.absent[p]);
                }
            }
        }
        x
    }

    /// Logits for an assembled input.
    pub fn logits(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        self.mlp.forward(x).column(0).to_vec()
    }

    /// Calibrated probabilities of default for an assembled input.
    pub fn probabilities(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        self.logits(x)
            .into_iter()
            .map(|z| self.calibration.probability(z))
            .collect()
    }

    /// Forward pass keeping what [`TopModel::backward`] needs.
    pub fn forward_train(&self, x: ArrayView2<'_, f64>) -> (Vec<f64>, Cache) {
        let (out, cache) = self.mlp.forward_train(x);
        (out.column(0).to_vec(), cache)
    }

    /// Training forward pass with the model's dropout (as [`TopModel::forward_train`] when the
    /// rate is 0).
    pub fn forward_train_dropout(&self, x: ArrayView2<'_, f64>, rng: &mut impl Rng) -> (Vec<f64>, Cache) {
        if self.dropout > 0.0 {
            let (out, cache) = self.mlp.forward_dropout(x, self.dropout, rng);
            (out.column(0).to_vec(), cache)
        } else {
            self.forward_train(x)
        }
    }

    /// Monte Carlo dropout: `samples` calibrated probabilities per row, each from a random
    /// dropout mask (`rows × samples`). Without dropout every sample is the point estimate.
    pub fn sample_probabilities(
        &self,
        x: ArrayView2<'_, f64>,
        samples: usize,
        rng: &mut impl Rng,
    ) -> Array2<f64> {
        let rows = x.nrows();
        if self.dropout <= 0.0 || samples == 0 {
            let p = self.probabilities(x);
            return Array2::from_shape_fn((rows, samples), |(r, _)| p[r]);
        }
        let logits = self.mlp.forward_dropout_samples(x, self.dropout, samples, rng);
        Array2::from_shape_fn((rows, samples), |(r, s)| {
            self.calibration.probability(logits[[r * samples + s, 0]])
        })
    }

    /// Gradient of each row's logit with respect to each present party's embedding (rows
    /// where the party is absent are zero): what a party needs to explain its part.
    pub fn logit_gradients(&self, x: ArrayView2<'_, f64>, present: &[Vec<bool>]) -> Vec<Array2<f64>> {
        let (_, cache) = self.forward_train(x);
        self.backward(&cache, &vec![1.0; x.nrows()], present).parties
    }

    /// Backward pass from the loss gradient per logit.
    pub fn backward(&self, cache: &Cache, dlogits: &[f64], present: &[Vec<bool>]) -> TopGradients {
        let g = Array2::from_shape_fn((dlogits.len(), 1), |(r, _)| dlogits[r]);
        let (mlp, gin) = self.mlp.backward(cache, g.view());
        let mut absent = Vec::with_capacity(self.dims.len());
        let mut parties = Vec::with_capacity(self.dims.len());
        for (p, o) in self.offsets().into_iter().enumerate() {
            let mut block = gin.slice(s![.., o..o + self.dims[p]]).to_owned();
            let mut ga = Array1::zeros(self.dims[p]);
            for (r, mut row) in block.axis_iter_mut(Axis(0)).enumerate() {
                if !present[p][r] {
                    ga += &row;
                    row.fill(0.0);
                }
            }
            absent.push(ga);
            parties.push(block);
        }
        TopGradients { mlp, absent, parties }
    }

    /// Whether every parameter is finite.
    pub fn is_finite(&self) -> bool {
        self.mlp.is_finite()
            && self.absent.iter().all(|a| a.iter().all(|v| v.is_finite()))
            && self.calibration.a.is_finite()
            && self.calibration.b.is_finite()
            && (0.0..1.0).contains(&self.dropout)
    }

    /// Whether the shapes fit together.
    pub fn is_consistent(&self) -> bool {
        !self.mlp.layers.is_empty()
            && self
                .mlp
                .layers
                .windows(2)
                .all(|w| w[0].w.ncols() == w[1].w.nrows())
            && self.mlp.layers.iter().all(|l| l.b.len() == l.w.ncols())
            && self.mlp.input_dim() == self.dims.iter().sum::<usize>()
            && self.mlp.output_dim() == 1
            && self.absent.len() == self.dims.len()
            && self.absent.iter().zip(&self.dims).all(|(a, &d)| a.len() == d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn monte_carlo_dropout_samples_spread_around_the_point_estimate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut top = TopModel::new(&[3, 2], &[16], &mut rng);
        let parts = vec![
            Array2::from_shape_fn((2, 3), |(r, c)| (r + c) as f64 * 0.4 - 0.3),
            Array2::from_shape_fn((2, 2), |(r, c)| (r * c) as f64 * 0.5 + 0.1),
        ];
        let x = top.input(&parts, &[vec![true, true], vec![true, false]]);
        let point = top.probabilities(x.view());
        // No dropout: every sample is the point estimate.
        let s = top.sample_probabilities(x.view(), 8, &mut rng);
        assert!(s.iter().enumerate().all(|(i, &p)| p == point[i / 8]));
        top.dropout = 0.2;
        let s = top.sample_probabilities(x.view(), 4000, &mut rng);
        for (row, &p0) in s.rows().into_iter().zip(&point) {
            let mean = row.mean().unwrap();
            assert!(row.iter().any(|&p| (p - p0).abs() > 1e-6), "samples differ");
            assert!((mean - p0).abs() < 0.05, "mean {mean} vs {p0}");
        }
    }

    #[test]
    fn absent_substitution_and_gradients_match_finite_differences() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut top = TopModel::new(&[2, 3], &[4], &mut rng);
        top.absent = vec![Array1::from(vec![0.3, -0.2]), Array1::from(vec![0.1, 0.5, -0.4])];
        for l in &mut top.mlp.layers {
            l.b.fill(0.05);
        }
        let parts = vec![
            Array2::from_shape_fn((3, 2), |(r, c)| (r + c) as f64 * 0.3 - 0.2),
            Array2::from_shape_fn((3, 3), |(r, c)| (r * c) as f64 * 0.2 - 0.1),
        ];
        let present = vec![vec![true, false, true], vec![false, true, true]];
        let x = top.input(&parts, &present);
        assert_eq!(x.row(1).to_vec()[..2], [0.3, -0.2]);
        assert_eq!(x.row(0).to_vec()[2..], [0.1, 0.5, -0.4]);
        let w = [0.7, -1.1, 0.4];
        let loss = |t: &TopModel, parts: &[Array2<f64>]| {
            t.logits(t.input(parts, &present).view())
                .iter()
                .zip(w)
                .map(|(z, w)| z * w)
                .sum::<f64>()
        };
        let (_, cache) = top.forward_train(x.view());
        let g = top.backward(&cache, &w, &present);
        let eps = 1e-6;
        for p in 0..2 {
            for j in 0..top.dims[p] {
                let mut a = top.clone();
                a.absent[p][j] += eps;
                let mut b = top.clone();
                b.absent[p][j] -= eps;
                let num = (loss(&a, &parts) - loss(&b, &parts)) / (2.0 * eps);
                assert!(
                    (num - g.absent[p][j]).abs() < 1e-6,
                    "absent[{p}][{j}] {num} vs {}",
                    g.absent[p][j]
                );
            }
            for r in 0..3 {
                for j in 0..top.dims[p] {
                    let mut pa = parts.clone();
                    pa[p][[r, j]] += eps;
                    let mut pb = parts.clone();
                    pb[p][[r, j]] -= eps;
                    let num = (loss(&top, &pa) - loss(&top, &pb)) / (2.0 * eps);
                    assert!((num - g.parties[p][[r, j]]).abs() < 1e-6, "party {p} [{r},{j}]");
                    if !present[p][r] {
                        assert_eq!(g.parties[p][[r, j]], 0.0);
                    }
                }
            }
        }
        assert!(top.is_consistent() && top.is_finite());
    }
}
