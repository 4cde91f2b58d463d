//! Ranking metrics for a binary classifier: ROC AUC and the Kolmogorov–Smirnov statistic.

/// Area under the ROC curve, with tied scores counted as half. `None` if either class is absent
/// or any score is NaN.
pub fn auc(scores: &[f64], labels: &[u8]) -> Option<f64> {
    if scores.len() != labels.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // Sum of (average) ranks of positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += idx[i..=j].iter().filter(|&&k| labels[k] == 1).count() as f64 * avg_rank;
        i = j + 1;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Kolmogorov–Smirnov statistic: the largest gap between the score distributions of the two
/// classes. `None` if either class is absent or any score is NaN.
pub fn ks(scores: &[f64], labels: &[u8]) -> Option<f64> {
    if scores.len() != labels.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let pos = labels.iter().filter(|&&l| l == 1).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut cp, mut cn, mut best) = (0.0, 0.0, 0.0f64);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            if labels[idx[j]] == 1 {
                cp += 1.0;
            } else {
                cn += 1.0;
            }
            j += 1;
        }
        best = best.max((cp / pos - cn / neg).abs());
        i = j;
    }
    Some(best)
}

/// Expected calibration error with `bins` equal-width probability bins: the row-weighted mean
/// gap between mean predicted probability and observed default rate. `None` if empty.
pub fn ece(probs: &[f64], labels: &[u8], bins: usize) -> Option<f64> {
    if probs.is_empty() || probs.len() != labels.len() || bins == 0 || probs.iter().any(|p| p.is_nan()) {
        return None;
    }
    let mut sum_p = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    let mut count = vec![0usize; bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sum_p[b] += p;
        sum_y[b] += f64::from(y);
        count[b] += 1;
    }
    let n = probs.len() as f64;
    Some(
        (0..bins)
            .filter(|&b| count[b] > 0)
            .map(|b| (sum_p[b] - sum_y[b]).abs() / n)
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scores: &[f64], labels: &[u8], want_auc: Option<f64>, want_ks: Option<f64>) {
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-12,
            (None, None) => true,
            _ => false,
        };
        assert!(
            close(auc(scores, labels), want_auc),
            "auc {:?} want {want_auc:?}",
            auc(scores, labels)
        );
        assert!(
            close(ks(scores, labels), want_ks),
            "ks {:?} want {want_ks:?}",
            ks(scores, labels)
        );
    }

    #[test]
    fn ece_known_values() {
        // Perfectly calibrated bins.
        assert!(ece(&[0.25, 0.25, 0.25, 0.25], &[1, 0, 0, 0], 10).unwrap() < 1e-12);
        // Everyone predicted 0.9, half default: gap 0.4.
        assert!((ece(&[0.9, 0.9], &[1, 0], 10).unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(ece(&[], &[], 10), None);
    }

    #[test]
    fn known_values() {
        check(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1], Some(1.0), Some(1.0));
        check(&[0.9, 0.8, 0.2, 0.1], &[0, 0, 1, 1], Some(0.0), Some(1.0));
        check(&[0.5, 0.5, 0.5, 0.5], &[0, 1, 0, 1], Some(0.5), Some(0.0));
        // One inversion out of four pairs.
        check(&[0.1, 0.6, 0.5, 0.9], &[0, 0, 1, 1], Some(0.75), Some(0.5));
        check(&[0.1, 0.2], &[1, 1], None, None);
        check(&[f64::NAN, 0.2], &[0, 1], None, None);
    }
}
