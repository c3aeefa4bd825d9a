//! Metrics of predictions against observed labels. ROC curves come from linfa's own
//! implementation (`linfa::metrics::BinaryClassification`).

use linfa::dataset::Pr;
use linfa::metrics::BinaryClassification;
use ndarray::Array1;

/// ROC-AUC of `scores` (any real numbers; higher = more likely positive) against `labels`.
/// `None` when only one class is present.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count();
    if scores.len() != labels.len() || pos == 0 || pos == labels.len() {
        return None;
    }
    // linfa wants probabilities in [0, 1] as f32: map ranks (ties kept) onto [0, 1] so that
    // unbounded scores and near-equal probabilities keep their order exactly.
    let ranks = dense_ranks(scores);
    let top = ranks.iter().copied().max().unwrap_or(0).max(1) as f32;
    let probs: Array1<Pr> = ranks.iter().map(|&r| Pr::new(r as f32 / top)).collect();
    let roc = probs.roc(labels).ok()?;
    Some(f64::from(roc.area_under_curve()))
}

/// Mean absolute error.
pub fn mae(predicted: &[f64], actual: &[f64]) -> f64 {
    let n = predicted.len().min(actual.len());
    if n == 0 {
        return f64::NAN;
    }
    predicted
        .iter()
        .zip(actual)
        .map(|(p, a)| (p - a).abs())
        .sum::<f64>()
        / n as f64
}

/// Root mean squared error.
pub fn rmse(predicted: &[f64], actual: &[f64]) -> f64 {
    let n = predicted.len().min(actual.len());
    if n == 0 {
        return f64::NAN;
    }
    (predicted
        .iter()
        .zip(actual)
        .map(|(p, a)| (p - a).powi(2))
        .sum::<f64>()
        / n as f64)
        .sqrt()
}

/// Normalised Gini of `predicted` as a ranking of `actual` values: the Gini of actual values
/// ordered by prediction divided by the Gini of the ideal order. 1 = perfect ranking, 0 =
/// random, −1 = reversed. Ties in `predicted` are broken by position (stable).
pub fn normalized_gini(predicted: &[f64], actual: &[f64]) -> f64 {
    let ideal = gini(actual, actual);
    if ideal == 0.0 || !ideal.is_finite() {
        return f64::NAN;
    }
    gini(predicted, actual) / ideal
}

fn gini(order_by: &[f64], actual: &[f64]) -> f64 {
    let n = actual.len();
    if n == 0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| order_by[b].total_cmp(&order_by[a]));
    let total: f64 = actual.iter().sum();
    if total == 0.0 {
        return 0.0;
    }
    let mut cum = 0.0;
    let mut area = 0.0;
    for &i in &idx {
        cum += actual[i];
        area += cum / total;
    }
    area / n as f64 - (n as f64 + 1.0) / (2.0 * n as f64)
}

/// 0-based dense ranks (equal scores share a rank).
fn dense_ranks(scores: &[f64]) -> Vec<u32> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0u32; scores.len()];
    let mut rank = 0u32;
    for (k, &i) in order.iter().enumerate() {
        if k > 0 && scores[i] != scores[order[k - 1]] {
            rank += 1;
        }
        ranks[i] = rank;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AUC as the Mann-Whitney probability that a positive outranks a negative (ties half).
    fn auc_by_pairs(scores: &[f64], labels: &[bool]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &li) in labels.iter().enumerate() {
            for (j, &lj) in labels.iter().enumerate() {
                if li && !lj {
                    pairs += 1.0;
                    if scores[i] > scores[j] {
                        wins += 1.0;
                    } else if scores[i] == scores[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        wins / pairs
    }

    #[test]
    fn gini_and_errors() {
        let actual = [0.0, 10.0, 0.0, 30.0, 5.0];
        assert!((normalized_gini(&actual, &actual) - 1.0).abs() < 1e-12);
        let reversed: Vec<f64> = actual.iter().map(|v| -v).collect();
        // Perfectly reversed order: the ideal Gini with its sign flipped (up to the n+1 term).
        assert!(normalized_gini(&reversed, &actual) < -0.9);
        assert_eq!(mae(&[1.0, 2.0], &[2.0, 4.0]), 1.5);
        assert_eq!(rmse(&[0.0, 0.0], &[3.0, 4.0]), 12.5f64.sqrt());
    }

    #[test]
    fn matches_pairwise_definition() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.8, 0.05, 0.6, 0.3];
        let labels = [false, false, true, true, false, false, true, true];
        let got = roc_auc(&scores, &labels).unwrap_or(f64::NAN);
        assert!((got - auc_by_pairs(&scores, &labels)).abs() < 1e-6, "{got}");
        assert!((got - 0.65625).abs() < 1e-6);
        // Unbounded scores (days of recency) work the same.
        let days: Vec<f64> = scores.iter().map(|s| s * 1000.0).collect();
        assert_eq!(roc_auc(&days, &labels), Some(got));
        assert_eq!(roc_auc(&scores, &[true; 8]), None);
    }
}
