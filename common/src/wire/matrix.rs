//! [`Matrix`]: the one dense matrix type on the wire (embeddings and their gradients), and its
//! checked conversions to and from ndarray. Every place that turns a matrix from a peer into
//! numbers goes through [`Matrix::to_array`], so shape and finiteness are checked once, here.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// A dense row-major matrix of `f32` (embeddings and their gradients).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    /// Number of rows (one per customer in the batch).
    pub rows: u32,
    /// Number of columns (the embedding width).
    pub cols: u32,
    /// `rows * cols` values, row-major.
    pub data: Vec<f32>,
}

/// Why a [`Matrix`] could not become an array of the expected shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    /// `data` does not hold `rows * cols` values, or holds a non-finite one.
    #[error("matrix data does not match its shape or has non-finite values")]
    Malformed,
    /// Well formed, but not the shape the receiver expects.
    #[error("matrix is {got_rows}×{got_cols}, expected {rows}×{cols}")]
    Shape {
        /// Rows expected.
        rows: usize,
        /// Columns expected.
        cols: usize,
        /// Rows received.
        got_rows: usize,
        /// Columns received.
        got_cols: usize,
    },
}

impl Matrix {
    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows: rows as u32,
            cols: cols as u32,
            data: vec![0.0; rows * cols],
        }
    }

    /// The values of `a`, narrowed to `f32` for the wire.
    pub fn from_array(a: &Array2<f64>) -> Self {
        Self {
            rows: a.nrows() as u32,
            cols: a.ncols() as u32,
            data: a.iter().map(|&v| v as f32).collect(),
        }
    }

    /// Whether `data` has exactly `rows * cols` values, all finite.
    pub fn is_well_formed(&self) -> bool {
        (self.rows as usize).checked_mul(self.cols as usize) == Some(self.data.len())
            && self.data.iter().all(|v| v.is_finite())
    }

    /// The values as a `rows × cols` array of `f64`.
    ///
    /// # Errors
    /// [`MatrixError::Malformed`] unless well formed; [`MatrixError::Shape`] unless it is
    /// exactly `rows × cols`.
    pub fn to_array(&self, rows: usize, cols: usize) -> Result<Array2<f64>, MatrixError> {
        if !self.is_well_formed() {
            return Err(MatrixError::Malformed);
        }
        if self.rows as usize != rows || self.cols as usize != cols {
            return Err(MatrixError::Shape {
                rows,
                cols,
                got_rows: self.rows as usize,
                got_cols: self.cols as usize,
            });
        }
        Array2::from_shape_vec((rows, cols), self.data.iter().map(|&v| f64::from(v)).collect())
            .map_err(|_| MatrixError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shape_and_finiteness_are_checked() {
        let m = Matrix {
            rows: 2,
            cols: 1,
            data: vec![1.0, 2.0],
        };
        assert_eq!(m.to_array(2, 1).map(|a| a[[1, 0]]), Ok(2.0));
        assert!(matches!(m.to_array(1, 2), Err(MatrixError::Shape { .. })));
        let short = Matrix {
            data: vec![1.0],
            ..m.clone()
        };
        assert_eq!(short.to_array(2, 1), Err(MatrixError::Malformed));
        let nan = Matrix {
            data: vec![1.0, f32::NAN],
            ..m.clone()
        };
        assert_eq!(nan.to_array(2, 1), Err(MatrixError::Malformed));
        let overflow = Matrix {
            rows: u32::MAX,
            cols: u32::MAX,
            data: vec![],
        };
        assert_eq!(overflow.to_array(0, 0), Err(MatrixError::Malformed));
        assert_eq!(Matrix::zeros(2, 3).to_array(2, 3).map(|a| a.sum()), Ok(0.0));
    }

    proptest! {
        #[test]
        fn round_trips_through_ndarray(r in 0usize..5, c in 0usize..5, seed in any::<u64>()) {
            let a = Array2::from_shape_fn((r, c), |(i, j)| ((seed as f64) * 1e-12 + (i * 7 + j) as f64).sin());
            let m = Matrix::from_array(&a);
            prop_assert!(m.is_well_formed());
            let back = m.to_array(r, c).unwrap();
            for (x, y) in a.iter().zip(back.iter()) {
                prop_assert!((x - y).abs() < 1e-6);
            }
        }
    }
}
