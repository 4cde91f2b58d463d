//! Per-column standardisation fitted on training rows only.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Column means and standard deviations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Column means.
    pub mean: Array1<f64>,
    /// Column standard deviations (at least 1e-9, so constant columns map to 0).
    pub std: Array1<f64>,
}

impl Standardizer {
    /// Fits on the rows of `x`. With no rows, the identity transform.
    pub fn fit(x: ArrayView2<'_, f64>) -> Self {
        if x.nrows() == 0 {
            return Self {
                mean: Array1::zeros(x.ncols()),
                std: Array1::ones(x.ncols()),
            };
        }
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(x.ncols()));
        let std = x.std_axis(Axis(0), 0.0).mapv(|s| if s > 1e-9 { s } else { 1.0 });
        Self { mean, std }
    }

    /// `(x − mean) / std`, column-wise.
    ///
    /// # Panics
    /// If `x` has another number of columns than the fit.
    pub fn transform(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        (&x - &self.mean) / &self.std
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn standardizes_and_handles_constant_columns() {
        let x = array![[1.0, 5.0], [3.0, 5.0]];
        let s = Standardizer::fit(x.view());
        assert_eq!(s.transform(x.view()), array![[-1.0, 0.0], [1.0, 0.0]]);
        let empty = Standardizer::fit(Array2::<f64>::zeros((0, 2)).view());
        assert_eq!(empty.transform(x.view()), x);
    }
}
