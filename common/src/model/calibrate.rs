//! Platt scaling: `p = σ(a·z + b)` on the model's logit `z`, fitted by Newton's method on a
//! validation split (never on the holdout used to report figures).

use serde::{Deserialize, Serialize};

use super::sigmoid;

/// A fitted Platt calibration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    /// Slope on the logit.
    pub a: f64,
    /// Intercept.
    pub b: f64,
}

impl Default for Platt {
    fn default() -> Self {
        Self { a: 1.0, b: 0.0 }
    }
}

impl Platt {
    /// Fits `a, b` minimising log loss of `σ(a·z + b)` against `labels`. Falls back to the
    /// identity if the data cannot support a fit (one class, non-finite values).
    pub fn fit(logits: &[f64], labels: &[u8]) -> Self {
        let pos = labels.iter().filter(|&&l| l == 1).count();
        if logits.len() != labels.len()
            || pos == 0
            || pos == labels.len()
            || logits.iter().any(|z| !z.is_finite())
        {
            return Self::default();
        }
        let (mut a, mut b) = (1.0, 0.0);
        for _ in 0..50 {
            // Gradient and Hessian of the mean log loss, with a tiny ridge for stability.
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (1e-6 * (a - 1.0), 1e-6 * b, 1e-6, 0.0, 1e-6);
            let n = logits.len() as f64;
            for (&z, &y) in logits.iter().zip(labels) {
                let p = sigmoid(a * z + b);
                let r = (p - f64::from(y)) / n;
                let w = (p * (1.0 - p)).max(1e-12) / n;
                ga += r * z;
                gb += r;
                haa += w * z * z;
                hab += w * z;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-18 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            a -= da;
            b -= db;
            if da.abs() < 1e-10 && db.abs() < 1e-10 {
                break;
            }
        }
        if a.is_finite() && b.is_finite() {
            Self { a, b }
        } else {
            Self::default()
        }
    }

    /// The calibrated probability for a logit.
    pub fn probability(&self, logit: f64) -> f64 {
        sigmoid(self.a * logit + self.b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_miscalibration() {
        // Labels drawn as Bernoulli(σ(2z − 1)) on a grid (deterministic: exact expected counts).
        let mut z = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let zi = -3.0 + 6.0 * i as f64 / 199.0;
            let p = sigmoid(2.0 * zi - 1.0);
            let ones = (p * 100.0).round() as usize;
            for k in 0..100 {
                z.push(zi);
                y.push(u8::from(k < ones));
            }
        }
        let c = Platt::fit(&z, &y);
        assert!((c.a - 2.0).abs() < 0.05 && (c.b + 1.0).abs() < 0.05, "{c:?}");
        assert_eq!(Platt::fit(&[1.0, 2.0], &[1, 1]), Platt::default());
    }
}
