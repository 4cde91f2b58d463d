//! The party's reason dictionary: which of its feature columns each published reason code
//! stands for, and how attributions become codes. Part of the party's configuration
//! (`[[reasons]]` in its TOML); the codes and texts are public, the attributions behind them
//! never leave the party.

use ndarray::ArrayView1;
use serde::Deserialize;
use tessera_common::wire::{MAX_REASONS, ReasonCode};

/// One `[[reasons]]` entry of the party's configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReasonConfig {
    /// Stable code (1–16 of `A-Z0-9_-`), e.g. `CC03`.
    pub code: String,
    /// Text for adverse-action notices, e.g. "High utilisation of card limit" (≤ 120 chars).
    pub text: String,
    /// The feature columns (CSV header names) this reason stands for.
    pub features: Vec<String>,
}

/// A validated dictionary bound to the party's columns.
#[derive(Clone, Debug, PartialEq)]
pub struct ReasonDictionary {
    entries: Vec<(ReasonCode, Vec<usize>)>,
}

fn valid_code(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 16
        && c.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// Why a configured reason dictionary does not fit the data; the message names the entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReasonError(pub String);

impl ReasonDictionary {
    /// Binds configured reasons to the columns named `features` (the data's header order).
    ///
    /// # Errors
    /// [`ReasonError`] naming the bad entry: invalid or repeated code, over-long text, unknown
    /// or repeated column.
    pub fn from_config(reasons: &[ReasonConfig], features: &[String]) -> Result<Self, ReasonError> {
        let mut entries = Vec::with_capacity(reasons.len());
        let mut used = vec![false; features.len()];
        for r in reasons {
            if !valid_code(&r.code) {
                return Err(ReasonError(format!(
                    "reason code {:?}: 1-16 characters of A-Z 0-9 _ -",
                    r.code
                )));
            }
            if entries
                .iter()
                .any(|(c, _): &(ReasonCode, Vec<usize>)| c.code == r.code)
            {
                return Err(ReasonError(format!("reason code {} appears twice", r.code)));
            }
            if r.text.trim().is_empty()
                || r.text.chars().count() > 120
                || r.text.chars().any(char::is_control)
            {
                return Err(ReasonError(format!(
                    "reason {}: text must be 1-120 printable characters",
                    r.code
                )));
            }
            if r.features.is_empty() {
                return Err(ReasonError(format!("reason {}: lists no feature", r.code)));
            }
            let mut cols = Vec::with_capacity(r.features.len());
            for f in &r.features {
                let Some(c) = features.iter().position(|n| n == f) else {
                    return Err(ReasonError(format!(
                        "reason {}: no feature column {f:?} in the data",
                        r.code
                    )));
                };
                if std::mem::replace(&mut used[c], true) {
                    return Err(ReasonError(format!(
                        "reason {}: column {f:?} already belongs to a reason",
                        r.code
                    )));
                }
                cols.push(c);
            }
            entries.push((
                ReasonCode {
                    code: r.code.clone(),
                    text: r.text.trim().to_string(),
                },
                cols,
            ));
        }
        Ok(Self { entries })
    }

    /// The dictionary used when none is configured: one code per column (`F01`, `F02`, …)
    /// whose text names the column.
    pub fn per_column(features: &[String]) -> Self {
        Self {
            entries: features
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    (
                        ReasonCode {
                            code: format!("F{:02}", i + 1),
                            text: format!("Value of {f}"),
                        },
                        vec![i],
                    )
                })
                .collect(),
        }
    }

    /// The published codes and texts.
    pub fn published(&self) -> Vec<ReasonCode> {
        self.entries.iter().map(|(c, _)| c.clone()).collect()
    }

    /// Codes whose columns together pushed the logit up (toward default), most adverse first,
    /// at most [`MAX_REASONS`]; ties keep dictionary order. `contributions` has one value per
    /// raw column. Columns in no reason are not reported.
    pub fn rank(&self, contributions: ArrayView1<'_, f64>) -> Vec<String> {
        let mut scored: Vec<(f64, usize)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (_, cols))| (cols.iter().filter_map(|&c| contributions.get(c)).sum::<f64>(), i))
            .filter(|(v, _)| *v > 0.0 && v.is_finite())
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(MAX_REASONS)
            .map(|(_, i)| self.entries[i].0.code.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn names() -> Vec<String> {
        ["LIMIT", "UTIL", "LATE1", "LATE2", "AGE"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn cfg(code: &str, features: &[&str]) -> ReasonConfig {
        ReasonConfig {
            code: code.into(),
            text: format!("text of {code}"),
            features: features.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn ranks_adverse_reasons_by_summed_contribution() {
        let d = ReasonDictionary::from_config(
            &[
                cfg("CC01", &["UTIL"]),
                cfg("DL01", &["LATE1", "LATE2"]),
                cfg("LM01", &["LIMIT"]),
            ],
            &names(),
        )
        .unwrap();
        // LATE1 + LATE2 = 0.5 beats UTIL 0.4; LIMIT lowers risk; AGE is in no reason.
        assert_eq!(
            d.rank(array![-0.3, 0.4, 0.2, 0.3, 9.0].view()),
            vec!["DL01", "CC01"]
        );
        assert!(d.rank(array![-1.0, -1.0, 0.0, 0.0, 1.0].view()).is_empty());
        assert_eq!(d.published().len(), 3);
    }

    #[test]
    fn configuration_errors_are_named() {
        let n = names();
        for (bad, needle) in [
            (vec![cfg("cc01", &["UTIL"])], "cc01"),
            (vec![cfg("A", &["UTIL"]), cfg("A", &["AGE"])], "twice"),
            (vec![cfg("A", &["NOPE"])], "NOPE"),
            (vec![cfg("A", &["UTIL"]), cfg("B", &["UTIL"])], "already"),
            (vec![cfg("A", &[])], "no feature"),
        ] {
            let e = ReasonDictionary::from_config(&bad, &n).unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
        let per = ReasonDictionary::per_column(&n);
        assert_eq!(per.published()[1].code, "F02");
        assert_eq!(
            per.rank(array![0.0, 0.1, 0.0, 0.0, 0.3].view()),
            vec!["F05", "F02"]
        );
    }
}
