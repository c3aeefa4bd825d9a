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
