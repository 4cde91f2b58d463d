//! Party-local input encoding, fitted on training rows only: what each bank can compute from
//! its own columns, with no knowledge of other parties or of raw column statistics.
//!
//! Per column, decided from the training rows:
//! - **categorical** (at most [`MAX_CATEGORIES`] distinct values, e.g. repayment status, sex,
//!   education): one-hot over the values seen; an unseen value encodes as all zeros;
//! - **numeric**: the standardised value, plus a standardised signed log of its distance from
//!   the training minimum (`sign(d)·ln(1 + |d|/q)`, `q` a small quantile of the positive
//!   distances — a scale-free log for heavy-tailed amounts), plus an "at minimum" flag when at
//!   least 5% of rows sit at the minimum (e.g. no payment).

use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Columns with at most this many distinct training values are one-hot encoded.
pub const MAX_CATEGORIES: usize = 16;

/// How one column is encoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Column {
    /// One-hot over these values.
    Categorical {
        /// Distinct training values, ascending.
        values: Vec<f64>,
    },
    /// Standardised value, signed log and optional at-minimum flag.
    Numeric {
        /// Mean of the value.
        mean: f64,
        /// Standard deviation of the value.
        std: f64,
        /// Training minimum.
        min: f64,
        /// Scale of the log.
        q: f64,
        /// Mean of the signed log.
        log_mean: f64,
        /// Standard deviation of the signed log.
        log_std: f64,
        /// Whether to add the at-minimum flag.
        min_flag: bool,
    },
}

impl Column {
    fn width(&self) -> usize {
        match self {
            Column::Categorical { values } => values.len(),
            Column::Numeric { min_flag, .. } => 2 + usize::from(*min_flag),
        }
    }
}

/// The fitted encoding of a party's columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    /// One entry per raw column.
    pub columns: Vec<Column>,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 1.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let std = var.sqrt();
    (mean, if std > 1e-9 { std } else { 1.0 })
}

fn slog(x: f64, min: f64, q: f64) -> f64 {
    let d = x - min;
    d.signum() * (d.abs() / q).ln_1p()
}

impl Encoder {
    /// Fits the encoding on training rows `x`.
    pub fn fit(x: ArrayView2<'_, f64>) -> Self {
        let mut columns = Vec::with_capacity(x.ncols());
        for col in x.axis_iter(Axis(1)) {
            let mut values: Vec<f64> = col.to_vec();
            values.sort_by(f64::total_cmp);
            let mut distinct = values.clone();
            distinct.dedup();
            if distinct.len() <= MAX_CATEGORIES && !distinct.is_empty() {
                columns.push(Column::Categorical { values: distinct });
                continue;
            }
            let (mean, std) = mean_std(&values);
            let min = values.first().copied().unwrap_or(0.0);
            let positive: Vec<f64> = values.iter().map(|v| v - min).filter(|d| *d > 0.0).collect();
            let q = positive
                .get(positive.len() / 20)
                .copied()
                .filter(|q| *q > 0.0)
                .unwrap_or(1.0);
            let logs: Vec<f64> = values.iter().map(|&v| slog(v, min, q)).collect();
            let (log_mean, log_std) = mean_std(&logs);
            let at_min = values.iter().filter(|&&v| v == min).count();
            let min_flag = at_min * 20 >= values.len().max(1);
            columns.push(Column::Numeric {
                mean,
                std,
                min,
                q,
                log_mean,
                log_std,
                min_flag,
            });
        }
        Self { columns }
    }

    /// Number of raw input columns.
    pub fn n_inputs(&self) -> usize {
        self.columns.len()
    }

    /// For each encoded column, the raw column it comes from (attributions to encoded columns
    /// are summed back to raw columns with it).
    pub fn sources(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .flat_map(|(c, col)| std::iter::repeat_n(c, col.width()))
            .collect()
    }

    /// Width of the encoded rows.
    pub fn width(&self) -> usize {
        self.columns.iter().map(Column::width).sum()
    }

    /// Encodes raw rows.
    ///
    /// # Panics
    /// If `x` has another number of columns than the fit.
    pub fn transform(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        assert_eq!(x.ncols(), self.columns.len(), "column count differs from the fit");
        let mut out = Array2::zeros((x.nrows(), self.width()));
        let mut at = 0;
        for (c, col) in self.columns.iter().enumerate() {
            let src = x.column(c);
            match col {
                Column::Categorical { values } => {
                    for (r, &v) in src.iter().enumerate() {
                        if let Ok(k) = values.binary_search_by(|p| p.total_cmp(&v)) {
                            out[[r, at + k]] = 1.0;
                        }
                    }
                }
                Column::Numeric {
                    mean,
                    std,
                    min,
                    q,
                    log_mean,
                    log_std,
                    min_flag,
                } => {
                    for (r, &v) in src.iter().enumerate() {
                        out[[r, at]] = (v - mean) / std;
                        out[[r, at + 1]] = (slog(v, *min, *q) - log_mean) / log_std;
                        if *min_flag {
                            out[[r, at + 2]] = f64::from(u8::from(v <= *min));
                        }
                    }
                }
            }
            at += col.width();
        }
        out
    }

    /// Whether every fitted number is finite.
    pub fn is_finite(&self) -> bool {
        self.columns.iter().all(|c| match c {
            Column::Categorical { values } => values.iter().all(|v| v.is_finite()),
            Column::Numeric {
                mean,
                std,
                min,
                q,
                log_mean,
                log_std,
                ..
            } => [mean, std, min, q, log_mean, log_std]
                .iter()
                .all(|v| v.is_finite()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn categorical_and_numeric_columns() {
        // Column 0: 3 categories; column 1: 25 distinct amounts with 20% at the minimum.
        let n = 25;
        let x = Array2::from_shape_fn((n, 2), |(i, j)| {
            if j == 0 {
                (i % 3) as f64
            } else if i < 5 {
                0.0
            } else {
                (i * i) as f64
            }
        });
        let e = Encoder::fit(x.view());
        assert!(matches!(&e.columns[0], Column::Categorical { values } if values == &vec![0.0, 1.0, 2.0]));
        assert!(matches!(&e.columns[1], Column::Numeric { min_flag: true, .. }));
        assert_eq!(e.width(), 3 + 3);
        let t = e.transform(x.view());
        assert_eq!(t.row(4).to_vec()[..3], [0.0, 1.0, 0.0]);
        assert_eq!(t[[0, 5]], 1.0);
        assert_eq!(t[[10, 5]], 0.0);
        // Standardised columns have mean 0 on the training rows.
        for c in [3, 4] {
            assert!(t.column(c).mean().unwrap().abs() < 1e-9);
        }
        // An unseen category encodes as zeros; values stay finite far outside the range.
        let y = array![[7.0, -1e9], [1.0, 1e12]];
        let ty = e.transform(y.view());
        assert_eq!(ty.row(0).to_vec()[..3], [0.0, 0.0, 0.0]);
        assert!(ty.iter().all(|v| v.is_finite()));
        assert!(e.is_finite());
    }
}
