//! The training report written next to each model: `metrics.json` (the manifest's figures) and
//! `report.svg` (ROC curve, calibration curve, and score distribution by class on the holdout).

use std::path::Path;

use plotters::prelude::*;
use tessera_common::model::ScoreScale;

use crate::artifact::{ArtifactError, Manifest};
use crate::train::Holdout;

/// Writes `metrics.json` and `report.svg` into `dir`.
///
/// # Errors
/// [`ArtifactError`] if a file cannot be written or the chart cannot be drawn.
pub fn write(
    dir: &Path,
    manifest: &Manifest,
    holdout: &Holdout,
    scale: &ScoreScale,
) -> Result<(), ArtifactError> {
    let json = serde_json::to_vec_pretty(&manifest.metrics)
        .map_err(|e| ArtifactError::Format(dir.to_path_buf(), e.to_string()))?;
    std::fs::write(dir.join("metrics.json"), json)
        .map_err(|e| ArtifactError::Io(dir.join("metrics.json"), e))?;
    let svg =
        render(manifest, holdout, scale).map_err(|e| ArtifactError::Format(dir.join("report.svg"), e))?;
    std::fs::write(dir.join("report.svg"), svg).map_err(|e| ArtifactError::Io(dir.join("report.svg"), e))
}

/// ROC points (false positive rate, true positive rate), thresholds from high to low.
fn roc(probs: &[f64], labels: &[u8]) -> Vec<(f64, f64)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let pos = labels.iter().filter(|&&l| l == 1).count().max(1) as f64;
    let neg = labels.iter().filter(|&&l| l == 0).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    for i in idx {
        if labels[i] == 1 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        out.push((fp / neg, tp / pos));
    }
    out
}

/// Calibration points (mean predicted, observed rate) over 10 equal-width bins.
fn calibration(probs: &[f64], labels: &[u8]) -> Vec<(f64, f64)> {
    let mut sums = [(0.0, 0.0, 0usize); 10];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * 10.0) as usize).min(9);
        sums[b].0 += p;
        sums[b].1 += f64::from(y);
        sums[b].2 += 1;
    }
    sums.iter()
        .filter(|s| s.2 > 0)
        .map(|s| (s.0 / s.2 as f64, s.1 / s.2 as f64))
        .collect()
}

/// Share of each class per 25-point score bucket.
fn distribution(probs: &[f64], labels: &[u8], scale: &ScoreScale, class: u8) -> Vec<(f64, f64)> {
    let buckets = 22; // 300..850 in 25-point steps
    let mut counts = vec![0usize; buckets];
    let mut n = 0usize;
    for (&p, &y) in probs.iter().zip(labels) {
        if y == class {
            let b = (((scale.score(p) - 300) / 25).max(0) as usize).min(buckets - 1);
            counts[b] += 1;
            n += 1;
        }
    }
    counts
        .iter()
        .enumerate()
        .map(|(b, &c)| (300.0 + 25.0 * b as f64 + 12.5, c as f64 / n.max(1) as f64))
        .collect()
}

fn render(manifest: &Manifest, h: &Holdout, scale: &ScoreScale) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let m = &manifest.metrics;
        let title = format!(
            "Tessera model {} — holdout AUC {:.4}, KS {:.4}, ECE {:.4} ({} rows)",
            manifest.model_id, m.holdout_auc, m.holdout_ks, m.holdout_ece, m.holdout_rows
        );
        let root = root
            .titled(&title, ("sans-serif", 18))
            .map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, 3));
        let e = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();

        let mut c = ChartBuilder::on(&panels[0])
            .caption("ROC", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .draw()
            .map_err(e)?;
        c.draw_series(LineSeries::new(roc(&h.probs, &h.labels), &BLUE))
            .map_err(e)?;
        c.draw_series(LineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], &BLACK.mix(0.3)))
            .map_err(e)?;

        let top = calibration(&h.probs, &h.labels)
            .iter()
            .map(|p| p.0.max(p.1))
            .fold(0.1, f64::max)
            .min(1.0);
        let mut c = ChartBuilder::on(&panels[1])
            .caption("Calibration (10 bins)", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..top, 0f64..top)
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("predicted PD")
            .y_desc("observed default rate")
            .draw()
            .map_err(e)?;
        c.draw_series(LineSeries::new(vec![(0.0, 0.0), (top, top)], &BLACK.mix(0.3)))
            .map_err(e)?;
        let cal = calibration(&h.probs, &h.labels);
        c.draw_series(LineSeries::new(cal.clone(), &RED)).map_err(e)?;
        c.draw_series(cal.into_iter().map(|p| Circle::new(p, 3, RED.filled())))
            .map_err(e)?;

        let good = distribution(&h.probs, &h.labels, scale, 0);
        let bad = distribution(&h.probs, &h.labels, scale, 1);
        let ymax = good.iter().chain(&bad).map(|p| p.1).fold(0.05, f64::max) * 1.1;
        let mut c = ChartBuilder::on(&panels[2])
            .caption(
                "Score distribution (blue: repaid, red: defaulted)",
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(300f64..850f64, 0f64..ymax)
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("score")
            .y_desc("share of class")
            .draw()
            .map_err(e)?;
        c.draw_series(LineSeries::new(good, &BLUE)).map_err(e)?;
        c.draw_series(LineSeries::new(bad, &RED)).map_err(e)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_have_the_expected_ends_and_shares() {
        let probs = [0.9, 0.8, 0.3, 0.2, 0.1];
        let labels = [1, 0, 1, 0, 0];
        let r = roc(&probs, &labels);
        assert_eq!(r.first(), Some(&(0.0, 0.0)));
        assert_eq!(r.last(), Some(&(1.0, 1.0)));
        let d = distribution(&probs, &labels, &ScoreScale::default(), 0);
        assert!((d.iter().map(|p| p.1).sum::<f64>() - 1.0).abs() < 1e-12);
        let c = calibration(&probs, &labels);
        assert!(
            c.iter()
                .all(|(p, o)| (0.0..=1.0).contains(p) && (0.0..=1.0).contains(o))
        );
    }
}
