//! A multi-layer perceptron: dense layers with ReLU between them and a linear output.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::Rng;
use rand_distr_free::normal;
use serde::{Deserialize, Serialize};

/// One dense layer `y = x W + b`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Weights, `inputs × outputs`.
    pub w: Array2<f64>,
    /// Bias, `outputs`.
    pub b: Array1<f64>,
}

/// Dense layers with ReLU after every layer except the last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    /// The layers, input first.
    pub layers: Vec<Dense>,
}

/// What [`Mlp::forward_train`] keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct Cache {
    /// The input of each layer (after the previous activation).
    inputs: Vec<Array2<f64>>,
    /// Each hidden layer's pre-activation (for the ReLU mask).
    pre: Vec<Array2<f64>>,
    /// Each hidden layer's dropout mask (0 or 1/(1 − rate)); empty without dropout.
    masks: Vec<Array2<f64>>,
}

/// Gradients of every layer's parameters, in layer order.
#[derive(Clone, Debug)]
pub struct Gradients {
    /// `(dW, db)` per layer.
    pub layers: Vec<(Array2<f64>, Array1<f64>)>,
}

impl Mlp {
    /// A network with layer widths `sizes` (input first, output last), He-initialised from `rng`.
    ///
    /// # Panics
    /// If fewer than two sizes are given.
    pub fn new(sizes: &[usize], rng: &mut impl Rng) -> Self {
        assert!(sizes.len() >= 2, "an MLP needs an input and an output size");
        let layers = sizes
            .windows(2)
            .map(|io| {
                let (i, o) = (io[0], io[1]);
                let scale = (2.0 / i.max(1) as f64).sqrt();
                Dense {
                    w: Array2::from_shape_fn((i, o), |_| normal(rng) * scale),
                    b: Array1::zeros(o),
                }
            })
            .collect();
        Self { layers }
    }

    /// Input width.
    pub fn input_dim(&self) -> usize {
        self.layers.first().map_or(0, |l| l.w.nrows())
    }

    /// Output width.
    pub fn output_dim(&self) -> usize {
        self.layers.last().map_or(0, |l| l.w.ncols())
    }

    /// Forward pass for inference.
    ///
    /// # Panics
    /// If `x` does not have [`Mlp::input_dim`] columns.
    pub fn forward(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let mut h = x.to_owned();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            h = h.dot(&l.w) + &l.b;
            if i < last {
                h.mapv_inplace(|v| v.max(0.0));
            }
        }
        h
    }

    /// Forward pass that keeps what [`Mlp::backward`] needs.
    ///
    /// # Panics
    /// If `x` does not have [`Mlp::input_dim`] columns.
    pub fn forward_train(&self, x: ArrayView2<'_, f64>) -> (Array2<f64>, Cache) {
        self.forward_impl(x, None::<(f64, &mut rand::rngs::ThreadRng)>)
    }

    /// Forward pass with inverted dropout after every hidden activation: each unit is zeroed
    /// with probability `rate`, the others scaled by `1 / (1 − rate)`, so the expected output
    /// equals [`Mlp::forward`]. The masks are kept for [`Mlp::backward`]. Used in training and
    /// for Monte Carlo dropout samples at scoring time.
    ///
    /// # Panics
    /// If `x` does not have [`Mlp::input_dim`] columns or `rate` is not in `[0, 1)`.
    pub fn forward_dropout(
        &self,
        x: ArrayView2<'_, f64>,
        rate: f64,
        rng: &mut impl Rng,
    ) -> (Array2<f64>, Cache) {
        assert!((0.0..1.0).contains(&rate), "dropout rate must be in [0, 1)");
        self.forward_impl(x, Some((rate, rng)))
    }

    /// Monte Carlo dropout outputs: `samples` forward passes of each row of `x`, each with its
    /// own dropout masks (row `r`, sample `s` at `r * samples + s`). The first layer comes
    /// before any dropout, so it is computed once per row and only the rest per sample.
    ///
    /// # Panics
    /// If `x` does not have [`Mlp::input_dim`] columns or `rate` is not in `[0, 1)`.
    pub fn forward_dropout_samples(
        &self,
        x: ArrayView2<'_, f64>,
        rate: f64,
        samples: usize,
        rng: &mut impl Rng,
    ) -> Array2<f64> {
        assert!((0.0..1.0).contains(&rate), "dropout rate must be in [0, 1)");
        let first = &self.layers[0];
        let mut h = x.dot(&first.w) + &first.b;
        if self.layers.len() == 1 {
            // No hidden layer, no dropout: every sample is the same.
            let mut out = Array2::zeros((h.nrows() * samples, h.ncols()));
            for r in 0..h.nrows() {
                for s in 0..samples {
                    out.row_mut(r * samples + s).assign(&h.row(r));
                }
            }
            return out;
        }
        h.mapv_inplace(|v| v.max(0.0));
        let keep = 1.0 / (1.0 - rate);
        let mut rep = Array2::zeros((h.nrows() * samples, h.ncols()));
        for r in 0..h.nrows() {
            for s in 0..samples {
                rep.row_mut(r * samples + s).assign(&h.row(r));
            }
        }
        rep.mapv_inplace(|v| if rng.r#gen::<f64>() < rate { 0.0 } else { v * keep });
        let rest = Mlp {
            layers: self.layers[1..].to_vec(),
        };
        if rest.layers.len() == 1 {
            rest.forward(rep.view())
        } else {
            rest.forward_dropout(rep.view(), rate, rng).0
        }
    }

    fn forward_impl<R: Rng>(
        &self,
        x: ArrayView2<'_, f64>,
        mut dropout: Option<(f64, &mut R)>,
    ) -> (Array2<f64>, Cache) {
        let mut cache = Cache {
            inputs: Vec::with_capacity(self.layers.len()),
            pre: Vec::new(),
            masks: Vec::new(),
        };
        let mut h = x.to_owned();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let z = h.dot(&l.w) + &l.b;
            cache.inputs.push(h);
            if i < last {
                h = z.mapv(|v| v.max(0.0));
                if let Some((rate, rng)) = dropout.as_mut() {
                    let keep = 1.0 / (1.0 - *rate);
                    let mask = Array2::from_shape_fn(h.raw_dim(), |_| {
                        if rng.r#gen::<f64>() < *rate { 0.0 } else { keep }
                    });
                    h *= &mask;
                    cache.masks.push(mask);
                }
                cache.pre.push(z);
            } else {
                h = z;
            }
        }
        (h, cache)
    }

    /// Backward pass: parameter gradients and the gradient with respect to the input, given
    /// the gradient of the loss with respect to the output.
    ///
    /// # Panics
    /// If shapes do not match the cached forward pass.
    pub fn backward(&self, cache: &Cache, grad_out: ArrayView2<'_, f64>) -> (Gradients, Array2<f64>) {
        let mut g = grad_out.to_owned();
        let mut grads = Vec::with_capacity(self.layers.len());
        for i in (0..self.layers.len()).rev() {
            if i < self.layers.len() - 1 {
                if let Some(mask) = cache.masks.get(i) {
                    g *= mask;
                }
                let pre = &cache.pre[i];
                ndarray::Zip::from(&mut g).and(pre).for_each(|gv, &z| {
                    if z <= 0.0 {
                        *gv = 0.0;
                    }
                });
            }
            let input = &cache.inputs[i];
            let dw = input.t().dot(&g);
            let db = g.sum_axis(Axis(0));
            g = g.dot(&self.layers[i].w.t());
            grads.push((dw, db));
        }
        grads.reverse();
        (Gradients { layers: grads }, g)
    }

    /// Whether every parameter is finite.
    pub fn is_finite(&self) -> bool {
        self.layers
            .iter()
            .all(|l| l.w.iter().chain(l.b.iter()).all(|v| v.is_finite()))
    }
}

/// Standard normal sampling without pulling in rand_distr.
mod rand_distr_free {
    use rand::Rng;

    /// One draw from N(0, 1) by Box–Muller.
    pub(crate) fn normal(rng: &mut impl Rng) -> f64 {
        let u1: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.r#gen::<f64>();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn loss(net: &Mlp, x: &Array2<f64>, w: &Array2<f64>) -> f64 {
        // A fixed linear functional of the output: L = sum(out * w).
        (net.forward(x.view()) * w).sum()
    }

    /// Checks analytic gradients of parameters and input against central differences.
    fn check(sizes: &[usize], x: Array2<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut net = Mlp::new(sizes, &mut rng);
        // Non-zero biases so ReLU kinks are away from the evaluation point.
        for l in &mut net.layers {
            l.b.mapv_inplace(|_| 0.1);
        }
        let w = Array2::from_shape_fn((x.nrows(), net.output_dim()), |(i, j)| {
            0.3 + 0.1 * (i + 2 * j) as f64
        });
        let (_, cache) = net.forward_train(x.view());
        let (grads, gx) = net.backward(&cache, w.view());
        let eps = 1e-6;
        for li in 0..net.layers.len() {
            for idx in 0..net.layers[li].w.len() {
                let (r, c) = (idx / net.layers[li].w.ncols(), idx % net.layers[li].w.ncols());
                let mut p = net.clone();
                p.layers[li].w[[r, c]] += eps;
                let mut m = net.clone();
                m.layers[li].w[[r, c]] -= eps;
                let num = (loss(&p, &x, &w) - loss(&m, &x, &w)) / (2.0 * eps);
                let ana = grads.layers[li].0[[r, c]];
                assert!(
                    (num - ana).abs() < 1e-5 * (1.0 + num.abs()),
                    "dW[{li}][{r},{c}]: {num} vs {ana}"
                );
            }
            for j in 0..net.layers[li].b.len() {
                let mut p = net.clone();
                p.layers[li].b[j] += eps;
                let mut m = net.clone();
                m.layers[li].b[j] -= eps;
                let num = (loss(&p, &x, &w) - loss(&m, &x, &w)) / (2.0 * eps);
                let ana = grads.layers[li].1[j];
                assert!(
                    (num - ana).abs() < 1e-5 * (1.0 + num.abs()),
                    "db[{li}][{j}]: {num} vs {ana}"
                );
            }
        }
        for r in 0..x.nrows() {
            for c in 0..x.ncols() {
                let mut xp = x.clone();
                xp[[r, c]] += eps;
                let mut xm = x.clone();
                xm[[r, c]] -= eps;
                let num = (loss(&net, &xp, &w) - loss(&net, &xm, &w)) / (2.0 * eps);
                assert!((num - gx[[r, c]]).abs() < 1e-5 * (1.0 + num.abs()), "dx[{r},{c}]");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        check(&[3, 1], array![[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]]);
        check(
            &[3, 5, 2],
            array![[0.5, -1.0, 2.0], [1.5, 0.2, -0.3], [0.0, 0.7, 0.9]],
        );
        check(&[2, 4, 4, 3], array![[0.5, -1.0], [1.5, 0.2], [-0.4, 0.8]]);
    }

    #[test]
    fn dropout_gradients_match_finite_differences_under_a_fixed_mask() {
        // With the masks fixed, the network is a fixed function: compare against central
        // differences of the same masked forward pass.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut net = Mlp::new(&[3, 6, 2], &mut rng);
        for l in &mut net.layers {
            l.b.mapv_inplace(|_| 0.1);
        }
        let x = array![[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]];
        let w = array![[0.3, -0.7], [1.1, 0.4]];
        let (_, cache) = net.forward_dropout(x.view(), 0.3, &mut ChaCha8Rng::seed_from_u64(9));
        let (grads, _) = net.backward(&cache, w.view());
        let masked = |n: &Mlp| {
            let (out, _) = n.forward_dropout(x.view(), 0.3, &mut ChaCha8Rng::seed_from_u64(9));
            (out * &w).sum()
        };
        let eps = 1e-6;
        for li in 0..2 {
            for idx in 0..net.layers[li].w.len() {
                let (r, c) = (idx / net.layers[li].w.ncols(), idx % net.layers[li].w.ncols());
                let mut p = net.clone();
                p.layers[li].w[[r, c]] += eps;
                let mut m = net.clone();
                m.layers[li].w[[r, c]] -= eps;
                let num = (masked(&p) - masked(&m)) / (2.0 * eps);
                assert!((num - grads.layers[li].0[[r, c]]).abs() < 1e-5 * (1.0 + num.abs()));
            }
        }
        // Some unit was dropped, and the expectation over masks is the plain forward pass.
        assert!(cache.masks[0].iter().any(|&m| m == 0.0));
        let mut mean = Array2::zeros((2, 2));
        let mut r = ChaCha8Rng::seed_from_u64(1);
        let big = Mlp {
            layers: vec![
                Dense {
                    w: Array2::eye(3),
                    b: Array1::zeros(3),
                },
                Dense {
                    w: Array2::ones((3, 2)),
                    b: Array1::zeros(2),
                },
            ],
        };
        let xx = array![[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]];
        for _ in 0..4000 {
            mean += &big.forward_dropout(xx.view(), 0.2, &mut r).0;
        }
        mean /= 4000.0;
        let exact = big.forward(xx.view());
        assert!((mean - exact).iter().all(|d| d.abs() < 0.1));
    }

    #[test]
    fn forward_and_forward_train_agree() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let net = Mlp::new(&[4, 8, 3], &mut rng);
        let x = Array2::from_shape_fn((5, 4), |(i, j)| (i as f64 - j as f64) / 3.0);
        assert_eq!(net.forward(x.view()), net.forward_train(x.view()).0);
        assert_eq!((net.input_dim(), net.output_dim()), (4, 3));
    }
}
