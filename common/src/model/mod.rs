//! Split-NN math, hand-written on ndarray with explicit gradients (checked numerically in
//! tests): parties run a bottom [`Mlp`] on their own features and send its output (the
//! embedding); the coordinator concatenates embeddings and runs the top [`Mlp`] to one logit.

pub mod adam;
pub mod attribution;
pub mod calibrate;
pub mod encode;
pub mod metrics;
pub mod mlp;
pub mod scorecard;
pub mod stability;
pub mod top;

pub use adam::Adam;
pub use calibrate::Platt;
pub use encode::Encoder;
pub use mlp::{Cache, Gradients, Mlp};
pub use scorecard::ScoreScale;
pub use top::{TopGradients, TopModel};

/// Logistic function, numerically stable for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Mean binary cross-entropy of logits against 0/1 labels, and its gradient per logit.
///
/// # Panics
/// If `logits` and `labels` differ in length (a programming error, not an input error).
pub fn bce_with_logits(logits: &[f64], labels: &[f64]) -> (f64, Vec<f64>) {
    assert_eq!(logits.len(), labels.len(), "logits and labels differ in length");
    let n = logits.len().max(1) as f64;
    let mut loss = 0.0;
    let mut grad = Vec::with_capacity(logits.len());
    for (&z, &y) in logits.iter().zip(labels) {
        // log(1 + e^z) - y z, computed stably.
        loss += z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
        grad.push((sigmoid(z) - y) / n);
    }
    (loss / n, grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_and_symmetric() {
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-12);
        assert!(sigmoid(1000.0) <= 1.0 && sigmoid(-1000.0) >= 0.0);
        assert!((sigmoid(3.0) + sigmoid(-3.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bce_gradient_matches_finite_differences() {
        let z = [0.3, -2.0, 5.0];
        let y = [1.0, 0.0, 0.0];
        let (_, g) = bce_with_logits(&z, &y);
        for i in 0..3 {
            let eps = 1e-6;
            let mut zp = z;
            zp[i] += eps;
            let mut zm = z;
            zm[i] -= eps;
            let num = (bce_with_logits(&zp, &y).0 - bce_with_logits(&zm, &y).0) / (2.0 * eps);
            assert!((num - g[i]).abs() < 1e-8, "{num} vs {}", g[i]);
        }
    }
}
