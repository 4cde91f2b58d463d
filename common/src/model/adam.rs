//! AdamW: Adam with decoupled weight decay.

use ndarray::{Array1, Array2};

use super::{Gradients, Mlp};

/// Optimiser state for one [`Mlp`].
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// Decoupled weight decay (applied to weights, not biases).
    pub weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    t: i32,
    m: Vec<(Array2<f64>, Array1<f64>)>,
    v: Vec<(Array2<f64>, Array1<f64>)>,
}

impl Adam {
    /// Fresh state for `net` with the usual betas (0.9, 0.999).
    pub fn new(net: &Mlp, lr: f64, weight_decay: f64) -> Self {
        let zeros: Vec<_> = net
            .layers
            .iter()
            .map(|l| (Array2::zeros(l.w.raw_dim()), Array1::zeros(l.b.raw_dim())))
            .collect();
        Self {
            lr,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// Applies one update.
    ///
    /// # Panics
    /// If `grads` does not match the network's shapes.
    pub fn step(&mut self, net: &mut Mlp, grads: &Gradients) {
        self.t = self.t.saturating_add(1);
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        let (lr, wd, eps) = (self.lr, self.weight_decay, self.eps);
        for (((layer, (gw, gb)), (mw, mb)), (vw, vb)) in net
            .layers
            .iter_mut()
            .zip(&grads.layers)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            ndarray::Zip::from(&mut layer.w)
                .and(gw)
                .and(mw)
                .and(vw)
                .for_each(|p, &g, m, v| {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= lr * ((*m / c1) / ((*v / c2).sqrt() + eps) + wd * *p);
                });
            ndarray::Zip::from(&mut layer.b)
                .and(gb)
                .and(mb)
                .and(vb)
                .for_each(|p, &g, m, v| {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= lr * ((*m / c1) / ((*v / c2).sqrt() + eps));
                });
        }
    }
}

/// Adam state for a list of plain vectors (the absent embeddings), no weight decay.
#[derive(Clone, Debug)]
pub struct AdamVectors {
    m: Vec<ndarray::Array1<f64>>,
    v: Vec<ndarray::Array1<f64>>,
    t: i32,
}

impl AdamVectors {
    /// Fresh state for vectors shaped like `params`.
    pub fn new(params: &[ndarray::Array1<f64>]) -> Self {
        let zeros: Vec<_> = params
            .iter()
            .map(|p| ndarray::Array1::zeros(p.raw_dim()))
            .collect();
        Self {
            m: zeros.clone(),
            v: zeros,
            t: 0,
        }
    }

    /// One update with learning rate `lr`.
    ///
    /// # Panics
    /// If shapes differ from the state's.
    pub fn step(&mut self, params: &mut [ndarray::Array1<f64>], grads: &[ndarray::Array1<f64>], lr: f64) {
        self.t = self.t.saturating_add(1);
        let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            ndarray::Zip::from(p)
                .and(g)
                .and(m)
                .and(v)
                .for_each(|p, &g, m, v| {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= lr * ((*m / c1) / ((*v / c2).sqrt() + eps));
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;

    #[test]
    fn adam_fits_a_linear_target() {
        // y = 2 x0 - x1 + 0.5, squared loss.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut net = Mlp::new(&[2, 1], &mut rng);
        let mut opt = Adam::new(&net, 0.05, 0.0);
        let x = Array2::from_shape_fn((32, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 5.0 - 1.0);
        let y = x.column(0).mapv(|v| 2.0 * v) - x.column(1) + 0.5;
        let mse = |net: &Mlp| {
            (net.forward(x.view()).column(0).to_owned() - &y)
                .mapv(|d| d * d)
                .mean()
                .unwrap()
        };
        let before = mse(&net);
        for _ in 0..500 {
            let (out, cache) = net.forward_train(x.view());
            let g = (out.column(0).to_owned() - &y)
                .mapv(|d| 2.0 * d / 32.0)
                .insert_axis(ndarray::Axis(1));
            let (grads, _) = net.backward(&cache, g.view());
            opt.step(&mut net, &grads);
        }
        assert!(
            mse(&net) < 1e-3 && mse(&net) < before / 100.0,
            "mse {} (was {before})",
            mse(&net)
        );
    }
}
