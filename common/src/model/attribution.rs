//! Feature attribution inside a party: how much each of its raw columns pushed a customer's
//! logit, given the gradient of the logit with respect to the party's embedding (sent by the
//! coordinator). Integrated gradients on the encoded input against a baseline (the mean encoded
//! training row): the gradient of `grad_emb · embedding` averaged along the straight path from
//! the baseline to the row ([`STEPS`] midpoints), times (input − baseline), summed back to raw
//! columns. The attributions add up to `grad_emb · (embedding(row) − embedding(baseline))`
//! (completeness), so a one-hot jump or a ReLU kink is credited in full, not to first order.
//! The numbers never leave the party: it turns them into reason codes.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};

use super::{Encoder, Mlp};

/// Points on the path from the baseline to the row.
pub const STEPS: usize = 4;

/// Attributions (`rows × raw columns`) of raw rows `x` through `encoder` and `mlp`, for the
/// output direction `grad_emb` (`rows × embedding width`), against `baseline` (one encoded row).
/// A positive value means the column pushed the logit up (toward default).
///
/// # Panics
/// If shapes disagree (a programming error: callers check widths first).
pub fn attribute(
    encoder: &Encoder,
    mlp: &Mlp,
    baseline: ArrayView1<'_, f64>,
    x: ArrayView2<'_, f64>,
    grad_emb: ArrayView2<'_, f64>,
) -> Array2<f64> {
    let xe = encoder.transform(x);
    let delta = &xe - &baseline.insert_axis(Axis(0));
    let (rows, width) = xe.dim();
    // Every point of every row's path in one matrix (row-major: row r, step k at r*STEPS+k),
    // so the network runs once forward and once backward.
    let mut points = Array2::<f64>::zeros((rows * STEPS, width));
    let mut grads = Array2::<f64>::zeros((rows * STEPS, grad_emb.ncols()));
    for r in 0..rows {
        for k in 0..STEPS {
            let alpha = (k as f64 + 0.5) / STEPS as f64;
            let mut p = points.row_mut(r * STEPS + k);
            p.assign(&baseline);
            p.scaled_add(alpha, &delta.row(r));
            grads.row_mut(r * STEPS + k).assign(&grad_emb.row(r));
        }
    }
    let (_, cache) = mlp.forward_train(points.view());
    let (_, g_in) = mlp.backward(&cache, grads.view());
    let mut mean_grad = Array2::<f64>::zeros((rows, width));
    for r in 0..rows {
        let block = g_in.slice(ndarray::s![r * STEPS..(r + 1) * STEPS, ..]);
        if let Some(m) = block.mean_axis(Axis(0)) {
            mean_grad.row_mut(r).assign(&m);
        }
    }
    let contrib = mean_grad * delta;
    let mut out = Array2::zeros((x.nrows(), encoder.n_inputs()));
    for (j, &src) in encoder.sources().iter().enumerate() {
        let col = contrib.column(j);
        let mut dst = out.column_mut(src);
        dst += &col;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, array};
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn data() -> Array2<f64> {
        // Column 0 numeric, column 1 categorical (3 values).
        Array2::from_shape_fn(
            (40, 2),
            |(i, j)| if j == 0 { i as f64 * 1.7 } else { (i % 3) as f64 },
        )
    }

    proptest! {
        #[test]
        fn a_linear_bottom_model_is_explained_exactly(seed in any::<u64>(), row in 0usize..40, g in proptest::collection::vec(-2.0f64..2.0, 3)) {
            // With no hidden layer the attributions add up to the change of the output
            // direction between the row and the baseline.
            let x = data();
            let enc = Encoder::fit(x.view());
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mlp = Mlp::new(&[enc.width(), 3], &mut rng);
            let xe = enc.transform(x.view());
            let baseline = xe.mean_axis(Axis(0)).unwrap();
            let grad = Array2::from_shape_vec((1, 3), g.clone()).unwrap();
            let xr = x.select(Axis(0), &[row]);
            let a = attribute(&enc, &mlp, baseline.view(), xr.view(), grad.view());
            let out_row = mlp.forward(enc.transform(xr.view()).view());
            let out_base = mlp.forward(baseline.view().insert_axis(Axis(0)));
            let expected: f64 = (0..3).map(|k| g[k] * (out_row[[0, k]] - out_base[[0, k]])).sum();
            prop_assert!((a.sum() - expected).abs() < 1e-9, "{} vs {expected}", a.sum());
        }
    }

    #[test]
    fn integrated_gradients_are_nearly_complete_on_a_relu_network() {
        let x = data();
        let enc = Encoder::fit(x.view());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mlp = Mlp::new(&[enc.width(), 8, 3], &mut rng);
        let xe = enc.transform(x.view());
        let baseline = xe.mean_axis(Axis(0)).unwrap();
        let g = [0.7, -0.2, 1.1];
        let grad = Array2::from_shape_vec((1, 3), g.to_vec()).unwrap();
        for row in [0, 17, 39] {
            let xr = x.select(Axis(0), &[row]);
            let a = attribute(&enc, &mlp, baseline.view(), xr.view(), grad.view());
            let out = mlp.forward(enc.transform(xr.view()).view());
            let base = mlp.forward(baseline.view().insert_axis(Axis(0)));
            let expected: f64 = (0..3).map(|k| g[k] * (out[[0, k]] - base[[0, k]])).sum();
            let err = (a.sum() - expected).abs();
            assert!(
                err < 0.05 * (1.0 + expected.abs()),
                "row {row}: {} vs {expected}",
                a.sum()
            );
        }
    }

    #[test]
    fn attributions_point_the_right_way() {
        // Output = +w * (encoded column 0): a high value of column 0 pushes up, a low one down,
        // and the categorical column (weight 0) gets nothing.
        let x = data();
        let enc = Encoder::fit(x.view());
        let mut w = Array2::zeros((enc.width(), 1));
        w[[0, 0]] = 2.0;
        let mlp = Mlp {
            layers: vec![super::super::mlp::Dense {
                w,
                b: Array1::zeros(1),
            }],
        };
        let baseline = enc.transform(x.view()).mean_axis(Axis(0)).unwrap();
        let rows = x.select(Axis(0), &[39, 0]);
        let a = attribute(
            &enc,
            &mlp,
            baseline.view(),
            rows.view(),
            array![[1.0], [1.0]].view(),
        );
        assert!(a[[0, 0]] > 0.0 && a[[1, 0]] < 0.0, "{a:?}");
        assert_eq!(a[[0, 1]], 0.0);
        // The gradient's sign flips the story.
        let neg = attribute(
            &enc,
            &mlp,
            baseline.view(),
            rows.view(),
            array![[-1.0], [-1.0]].view(),
        );
        assert!(neg[[0, 0]] < 0.0);
    }
}
