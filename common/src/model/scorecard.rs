//! The 300–850 credit score scale: points to double the odds.
//!
//! `score = base_score + pdo / ln 2 × ln(odds / base_odds)` where `odds = (1 − PD) / PD` is the
//! good:bad odds. With the defaults (600 points at 50:1, 20 points to double the odds) a PD of
//! 1/51 ≈ 1.96% scores 600, 0.99% scores ≈ 620, 3.85% ≈ 580. The result is rounded and
//! clamped to `[min_score, max_score]`.

use serde::{Deserialize, Serialize};

/// Parameters of the score scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreScale {
    /// Score at `base_odds`. Default 600.
    pub base_score: f64,
    /// Good:bad odds that score `base_score`. Default 50.
    pub base_odds: f64,
    /// Points to double the odds. Default 20.
    pub pdo: f64,
    /// Lowest score. Default 300.
    pub min_score: f64,
    /// Highest score. Default 850.
    pub max_score: f64,
}

impl Default for ScoreScale {
    fn default() -> Self {
        Self {
            base_score: 600.0,
            base_odds: 50.0,
            pdo: 20.0,
            min_score: 300.0,
            max_score: 850.0,
        }
    }
}

impl ScoreScale {
    /// The score for a probability of default.
    pub fn score(&self, pd: f64) -> i32 {
        let pd = if pd.is_nan() {
            1.0
        } else {
            pd.clamp(1e-12, 1.0 - 1e-12)
        };
        let odds = (1.0 - pd) / pd;
        let raw = self.base_score + self.pdo / std::f64::consts::LN_2 * (odds / self.base_odds).ln();
        raw.clamp(self.min_score, self.max_score).round() as i32
    }

    /// Checks that the parameters define a usable scale.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.pdo > 0.0 && self.base_odds > 0.0 && self.min_score < self.max_score) {
            return Err("score scale needs pdo > 0, base_odds > 0 and min_score < max_score".into());
        }
        if ![
            self.pdo,
            self.base_odds,
            self.base_score,
            self.min_score,
            self.max_score,
        ]
        .iter()
        .all(|v| v.is_finite())
        {
            return Err("score scale parameters must be finite".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_to_double_the_odds() {
        let s = ScoreScale::default();
        assert_eq!(s.score(1.0 / 51.0), 600);
        // Odds 100:1 → +20 points; 25:1 → −20.
        assert_eq!(s.score(1.0 / 101.0), 620);
        assert_eq!(s.score(1.0 / 26.0), 580);
        assert_eq!(s.score(0.999_999), 300);
        assert_eq!(s.score(1e-9), 850);
        assert_eq!(s.score(f64::NAN), 300);
        assert!(s.score(0.1) > s.score(0.2));
        s.validate().unwrap();
        assert!(ScoreScale { pdo: 0.0, ..s }.validate().is_err());
    }
}
