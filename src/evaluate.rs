//! Metrics of predictions against observed labels: ranking (ROC-AUC, PR-AUC, lift and
//! capture, normalised Gini, Spearman), probability quality (log loss, Brier, calibration
//! table) and errors (MAE, RMSE). ROC-AUC is exact, in f64, by Mann–Whitney on average ranks
//! (linfa's ROC works in f32: it differed from the exact value by up to 3e-5 and loses the
//! order of scores past 2^24 distinct values).

use rayon::prelude::*;

/// Positions of `keys` in ascending order of key (descending with `descending`), ties in
/// position order: what a stable sort of the positions by key gives, but sorting contiguous
/// (key, position) pairs, in parallel for long inputs (the order is total, so the result does
/// not depend on the thread count). Every metric below ranks through it.
pub fn order(keys: &[f64], descending: bool) -> Vec<usize> {
    let mut pairs: Vec<(f64, usize)> = keys.iter().copied().zip(0..).collect();
    let cmp = |a: &(f64, usize), b: &(f64, usize)| {
        let by_key = if descending {
            b.0.total_cmp(&a.0)
        } else {
            a.0.total_cmp(&b.0)
        };
        by_key.then(a.1.cmp(&b.1))
    };
    if pairs.len() >= PARALLEL_SORT {
        pairs.par_sort_unstable_by(cmp);
    } else {
        pairs.sort_unstable_by(cmp);
    }
    pairs.into_iter().map(|p| p.1).collect()
}

/// Inputs at least this long are sorted in parallel.
const PARALLEL_SORT: usize = 1 << 15;

/// Scores sorted once for several metrics (a ROC-AUC, a PR-AUC and a lift read one sort).
pub struct Ranked<'a> {
    keys: &'a [f64],
    /// [`order`] ascending.
    asc: Vec<usize>,
}

impl<'a> Ranked<'a> {
    pub fn new(keys: &'a [f64]) -> Ranked<'a> {
        Ranked {
            keys,
            asc: order(keys, false),
        }
    }

    /// [`order`] descending, from the ascending one: the tie groups in reverse, each still in
    /// position order.
    fn descending(&self) -> Vec<usize> {
        let (v, idx) = (self.keys, &self.asc);
        let mut out = Vec::with_capacity(idx.len());
        let mut end = idx.len();
        while end > 0 {
            let mut start = end - 1;
            while start > 0 && v[idx[start - 1]] == v[idx[end - 1]] {
                start -= 1;
            }
            out.extend_from_slice(&idx[start..end]);
            end = start;
        }
        out
    }

    /// Average ranks (1-based; tied keys share the mean of their ranks), by position.
    fn average_ranks(&self) -> Vec<f64> {
        let (v, idx) = (self.keys, &self.asc);
        let mut ranks = vec![0.0; v.len()];
        let mut k = 0;
        while k < idx.len() {
            let mut j = k;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[k]] {
                j += 1;
            }
            let r = (k + j) as f64 / 2.0 + 1.0;
            for &i in &idx[k..=j] {
                ranks[i] = r;
            }
            k = j + 1;
        }
        ranks
    }
}

/// ROC-AUC of `scores` (any real numbers; higher = more likely positive) against `labels`:
/// the Mann–Whitney U statistic on average ranks (tied scores share their average rank, so a
/// tied positive–negative pair counts one half), `(R₊ − n₊(n₊+1)/2) / (n₊ n₋)`, in f64.
/// `None` when only one class is present or the lengths differ.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    roc_auc_ranked(&Ranked::new(scores), labels)
}

/// [`roc_auc`] of scores sorted already.
pub fn roc_auc_ranked(scores: &Ranked<'_>, labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count();
    if scores.keys.len() != labels.len() || pos == 0 || pos == labels.len() {
        return None;
    }
    let ranks = scores.average_ranks();
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(r, _)| r)
        .sum();
    let (p, n) = (pos as f64, (labels.len() - pos) as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (area under the precision-recall curve, step-wise as in scikit-learn):
/// `Σ_k (R_k − R_{k−1}) · P_k` over score thresholds, ties grouped. `None` without positives.
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    pr_auc_ranked(&Ranked::new(scores), labels)
}

/// [`pr_auc`] of scores sorted already.
pub fn pr_auc_ranked(ranked: &Ranked<'_>, labels: &[bool]) -> Option<f64> {
    let scores = ranked.keys;
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 || scores.len() != labels.len() {
        return None;
    }
    let idx = ranked.descending();
    let (mut tp, mut seen, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut k = 0;
    while k < idx.len() {
        let s = scores[idx[k]];
        while k < idx.len() && scores[idx[k]] == s {
            tp += usize::from(labels[idx[k]]);
            seen += 1;
            k += 1;
        }
        let recall = tp as f64 / positives as f64;
        ap += (recall - last_recall) * (tp as f64 / seen as f64);
        last_recall = recall;
    }
    Some(ap)
}

/// Mean negative log-likelihood of probabilities (clipped to [1e-15, 1 − 1e-15]).
pub fn log_loss(probabilities: &[f64], labels: &[bool]) -> f64 {
    let n = probabilities.len().min(labels.len());
    if n == 0 {
        return f64::NAN;
    }
    probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum::<f64>()
        / n as f64
}

/// Mean squared error of probabilities against 0/1 outcomes.
pub fn brier(probabilities: &[f64], labels: &[bool]) -> f64 {
    let actual: Vec<f64> = labels.iter().map(|&y| f64::from(u8::from(y))).collect();
    rmse(probabilities, &actual).powi(2)
}

/// One bin of a calibration table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CalibrationBin {
    /// Bin `[lower, upper)` of predicted probability (the last bin includes 1).
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub mean_predicted: Option<f64>,
    pub observed_rate: Option<f64>,
}

/// Calibration table with `bins` equal-width probability bins.
pub fn calibration(probabilities: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    let mut sum_p = vec![0.0; bins];
    let mut pos = vec![0usize; bins];
    let mut count = vec![0usize; bins];
    for (&p, &y) in probabilities.iter().zip(labels) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        sum_p[b] += p;
        pos[b] += usize::from(y);
        count[b] += 1;
    }
    (0..bins)
        .map(|b| CalibrationBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            count: count[b],
            mean_predicted: (count[b] > 0).then(|| sum_p[b] / count[b] as f64),
            observed_rate: (count[b] > 0).then(|| pos[b] as f64 / count[b] as f64),
        })
        .collect()
}

/// Lift and capture in the top `share` (e.g. 0.1) of customers ranked by score: lift = rate
/// of positives in the top / overall rate; capture = share of all positives found there.
/// The top holds `ceil(share · n)` customers, ties broken by position.
pub fn lift_capture(scores: &[f64], labels: &[bool], share: f64) -> Option<(f64, f64)> {
    let n = scores.len().min(labels.len());
    lift_capture_ranked(&Ranked::new(&scores[..n]), labels, share)
}

/// [`lift_capture`] of scores sorted already (no more of them than `labels`).
pub fn lift_capture_ranked(ranked: &Ranked<'_>, labels: &[bool], share: f64) -> Option<(f64, f64)> {
    let n = ranked.keys.len();
    let positives = labels.iter().filter(|&&l| l).count();
    if n == 0 || positives == 0 || n > labels.len() {
        return None;
    }
    let top = ((share * n as f64).ceil() as usize).clamp(1, n);
    let idx = ranked.descending();
    let hits = idx[..top].iter().filter(|&&i| labels[i]).count();
    let lift = (hits as f64 / top as f64) / (positives as f64 / n as f64);
    Some((lift, hits as f64 / positives as f64))
}

/// Spearman rank correlation (average ranks for ties).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    spearman_ranked(&Ranked::new(a), &Ranked::new(b))
}

/// [`spearman`] of values sorted already.
pub fn spearman_ranked(a: &Ranked<'_>, b: &Ranked<'_>) -> f64 {
    pearson(&a.average_ranks(), &b.average_ranks())
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

/// One decile of a value table: customers ranked by prediction (decile 10 = highest).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decile {
    pub decile: usize,
    pub count: usize,
    pub mean_predicted: f64,
    pub mean_actual: f64,
}

/// Mean predicted and actual value per decile of prediction (10 = highest predictions).
pub fn decile_table(predicted: &[f64], actual: &[f64]) -> Vec<Decile> {
    let n = predicted.len().min(actual.len());
    decile_table_ranked(&Ranked::new(&predicted[..n]), actual)
}

/// [`decile_table`] of predictions sorted already (no more of them than `actual`).
pub fn decile_table_ranked(ranked: &Ranked<'_>, actual: &[f64]) -> Vec<Decile> {
    let (predicted, idx) = (ranked.keys, &ranked.asc);
    let n = predicted.len();
    if n > actual.len() {
        return Vec::new();
    }
    (0..10)
        .filter_map(|d| {
            let (lo, hi) = (d * n / 10, (d + 1) * n / 10);
            (hi > lo).then(|| {
                let part = &idx[lo..hi];
                let c = part.len() as f64;
                Decile {
                    decile: d + 1,
                    count: part.len(),
                    mean_predicted: part.iter().map(|&i| predicted[i]).sum::<f64>() / c,
                    mean_actual: part.iter().map(|&i| actual[i]).sum::<f64>() / c,
                }
            })
        })
        .collect()
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
    normalized_gini_ranked(&Ranked::new(predicted), &Ranked::new(actual))
}

/// [`normalized_gini`] of predictions and actual values sorted already.
pub fn normalized_gini_ranked(predicted: &Ranked<'_>, actual: &Ranked<'_>) -> f64 {
    let ideal = gini(actual, actual.keys);
    if ideal == 0.0 || !ideal.is_finite() {
        return f64::NAN;
    }
    gini(predicted, actual.keys) / ideal
}

fn gini(order_by: &Ranked<'_>, actual: &[f64]) -> f64 {
    let n = actual.len();
    if n == 0 {
        return f64::NAN;
    }
    if order_by.keys.len() < n {
        return f64::NAN;
    }
    let idx: Vec<usize> = order_by
        .descending()
        .into_iter()
        .filter(|&i| i < n)
        .collect();
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
    fn probability_metrics_by_hand() {
        let p = [0.9, 0.8, 0.7, 0.6, 0.2];
        let y = [true, false, true, false, false];
        // Thresholds 0.9 (1/1), 0.8 (1/2), 0.7 (2/3): AP = 0.5·1 + 0.5·(2/3).
        assert!((pr_auc(&p, &y).unwrap_or(f64::NAN) - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        let ll = -(0.9f64.ln() + 0.2f64.ln() + 0.7f64.ln() + 0.4f64.ln() + 0.8f64.ln()) / 5.0;
        assert!((log_loss(&p, &y) - ll).abs() < 1e-12);
        let b = (0.01 + 0.64 + 0.09 + 0.36 + 0.04) / 5.0;
        assert!((brier(&p, &y) - b).abs() < 1e-12);
        let cal = calibration(&p, &y, 10);
        assert_eq!(cal.len(), 10);
        assert_eq!((cal[9].count, cal[9].observed_rate), (1, Some(1.0)));
        assert_eq!((cal[2].count, cal[5].count), (1, 0));
        // Top 40% = 2 customers, 1 positive: rate 0.5 vs 0.4 overall; half the positives.
        assert_eq!(lift_capture(&p, &y, 0.4), Some((1.25, 0.5)));
    }

    #[test]
    fn rank_metrics_by_hand() {
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(
            Ranked::new(&[5.0, 1.0, 5.0]).average_ranks(),
            vec![2.5, 1.0, 2.5]
        );
        let pred: Vec<f64> = (0..20).map(f64::from).collect();
        let actual: Vec<f64> = pred.iter().map(|v| v * 2.0).collect();
        let d = decile_table(&pred, &actual);
        assert_eq!(d.len(), 10);
        assert_eq!(
            (
                d[0].decile,
                d[0].count,
                d[0].mean_predicted,
                d[0].mean_actual
            ),
            (1, 2, 0.5, 1.0)
        );
        assert_eq!(d[9].mean_actual, 37.0);
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
        assert!(
            (got - auc_by_pairs(&scores, &labels)).abs() < 1e-15,
            "{got}"
        );
        assert_eq!(got, 0.65625);
        // Unbounded scores (days of recency) work the same.
        let days: Vec<f64> = scores.iter().map(|s| s * 1000.0).collect();
        assert_eq!(roc_auc(&days, &labels), Some(got));
        assert_eq!(roc_auc(&scores, &[true; 8]), None);
    }

    #[test]
    fn exact_auc_with_ties_by_hand() {
        // Positives 0.8, 0.5, 0.5; negatives 0.5, 0.2. Pairs (3 × 2 = 6): 0.8 beats both (2),
        // each 0.5 positive ties the 0.5 negative (½ each) and beats 0.2 (1 each): 2 + 3 = 5,
        // AUC = 5/6 exactly. Average ranks: 0.2→1, the three 0.5s→3, 0.8→5; R₊ = 11,
        // U = 11 − 3·4/2 = 5.
        let scores = [0.5, 0.8, 0.2, 0.5, 0.5];
        let labels = [true, true, false, false, true];
        assert_eq!(roc_auc(&scores, &labels), Some(5.0 / 6.0));
        // All tied: one half. Reversed: 1 − AUC.
        assert_eq!(roc_auc(&[1.0; 4], &[true, false, true, false]), Some(0.5));
        let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
        assert_eq!(roc_auc(&neg, &labels), Some(1.0 / 6.0));
        // Scores closer than f32 resolves keep their order (linfa's f32 ROC merged them).
        let close = [1.0, 1.0 + 1e-12, 1.0 + 2e-12, 1.0 + 3e-12];
        assert_eq!(roc_auc(&close, &[false, false, true, true]), Some(1.0));
    }
}
