//! The 300–850 credit score scale: points to double the odds.
//!
//! `score = base_score + pdo / ln 2 × ln(odds / base_odds)` where `odds = (1 − PD) / PD` is the
//! good:bad odds. With the defaults (600 points at 50:1, 20 points to double the odds) a PD of
//! 1/51 ≈ 1.96% scores 600, 0.99% scores ≈ 620, 3.85% ≈ 580. The result is rounded and
//! clamped to `[min_score, max_score]`. Scores fall into named bands by configurable cut-offs
//! (default: poor < 580 ≤ fair < 670 ≤ good < 740 ≤ very good < 800 ≤ exceptional).

use serde::{Deserialize, Serialize};

/// Why a score scale is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScaleError(pub String);

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
    /// Bands, by ascending lowest score; the first must start at or below `min_score`.
    pub bands: Vec<Band>,
}

/// A named score band: scores from `min_score` up to the next band's `min_score`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Name returned by the API (e.g. `good`).
    pub name: String,
    /// Lowest score in the band.
    pub min_score: i32,
}

fn band(name: &str, min_score: i32) -> Band {
    Band {
        name: name.to_string(),
        min_score,
    }
}

impl Default for ScoreScale {
    fn default() -> Self {
        Self {
            base_score: 600.0,
            base_odds: 50.0,
            pdo: 20.0,
            min_score: 300.0,
            max_score: 850.0,
            bands: vec![
                band("poor", 300),
                band("fair", 580),
                band("good", 670),
                band("very_good", 740),
                band("exceptional", 800),
            ],
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

    /// The band a score falls in (the last band whose `min_score` it reaches; the first band
    /// for anything below).
    pub fn band(&self, score: i32) -> &str {
        self.bands
            .iter()
            .rev()
            .find(|b| score >= b.min_score)
            .or(self.bands.first())
            .map_or("", |b| b.name.as_str())
    }

    /// Checks that the parameters define a usable scale.
    ///
    /// # Errors
    /// [`ScaleError`] naming the problem.
    pub fn validate(&self) -> Result<(), ScaleError> {
        if !(self.pdo > 0.0 && self.base_odds > 0.0 && self.min_score < self.max_score) {
            return Err(ScaleError(
                "score scale needs pdo > 0, base_odds > 0 and min_score < max_score".into(),
            ));
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
            return Err(ScaleError("score scale parameters must be finite".into()));
        }
        match self.bands.first() {
            None => return Err(ScaleError("score.bands needs at least one band".into())),
            Some(b) if f64::from(b.min_score) > self.min_score => {
                return Err(ScaleError(
                    "the first of score.bands must start at or below min_score".into(),
                ));
            }
            _ => {}
        }
        if !self.bands.windows(2).all(|w| w[0].min_score < w[1].min_score) {
            return Err(ScaleError(
                "score.bands must be in strictly ascending min_score order".into(),
            ));
        }
        if self
            .bands
            .iter()
            .any(|b| b.name.is_empty() || b.name.len() > 32 || b.name.chars().any(char::is_control))
        {
            return Err(ScaleError(
                "score.bands names must be 1-32 printable characters".into(),
            ));
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
        assert!(
            ScoreScale {
                pdo: 0.0,
                ..s.clone()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn bands_follow_the_cut_offs() {
        let s = ScoreScale::default();
        assert_eq!(s.band(300), "poor");
        assert_eq!(s.band(579), "poor");
        assert_eq!(s.band(580), "fair");
        assert_eq!(s.band(739), "good");
        assert_eq!(s.band(740), "very_good");
        assert_eq!(s.band(850), "exceptional");
        assert_eq!(s.band(10), "poor");
        let mut bad = s.clone();
        bad.bands.swap(1, 2);
        assert!(bad.validate().is_err());
        bad.bands.clear();
        assert!(bad.validate().is_err());
    }
}
