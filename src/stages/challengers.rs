//! Churn challengers and the champion of a run: the boosted model ([`crate::models::boost`])
//! beside the logistic model and the BTYD buy-again score. The booster's rounds are chosen by
//! early stopping on the time-ordered validation window (fitted at `tv`, validated at `t0`),
//! the same window the logistic model's L2 strength is chosen on; the champion is the model
//! with the lower validation log loss; every challenger is then measured on the same
//! out-of-time customers, with a paired bootstrap interval of its ROC-AUC difference to the
//! logistic model. Nothing here looks at the evaluation window to choose anything.

use std::time::Instant;

use ndarray::Array2;
use rayon::prelude::*;
use serde::Serialize;

use crate::evaluate::log_loss;
use crate::models::boost::{self, mix64, BoostError, BoostParams, BoostedChurn, Objective, Platt};
use crate::models::churn::FEATURES;
use crate::models::sample::Sample;
use crate::stages::metrics::{auc_or_nan, ChurnScores};

/// The booster's fixed hyperparameters (docs/models.md, "Boosted churn model": chosen on the
/// generated sample's validation window, tv → t0; the number of rounds is chosen per run).
pub fn churn_params() -> BoostParams {
    BoostParams {
        objective: Objective::Logistic,
        learning_rate: 0.3,
        max_depth: 4,
        min_leaf_rows: 100,
        lambda: 1.0,
        bins: 64,
        max_rounds: 300,
        patience: 10,
        subsample: 0.5,
    }
}

/// Rounds used when there is no validation window (history shorter than 3H): a conservative
/// count at the learning rate above, recorded with the reason.
pub const DEFAULT_ROUNDS: usize = 60;

fn sigmoid(m: f64) -> f64 {
    1.0 / (1.0 + (-m).exp())
}

fn labels(y: &[bool]) -> Vec<f64> {
    y.iter().map(|&c| f64::from(u8::from(c))).collect()
}

/// How the booster was set up for this run (metrics.json `churn.booster`).
#[derive(Debug, Clone, Serialize)]
pub struct BoostSelection {
    /// `time_ordered` (early stopping on the validation window) or `config` (no validation
    /// window: [`DEFAULT_ROUNDS`]).
    pub scheme: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub params: BoostParams,
    pub rounds: usize,
    /// The booster's validation log loss at the chosen round (after Platt scaling if used).
    pub validation_log_loss: Option<f64>,
    /// Calibration slope of the unscaled booster on the validation window (the Platt slope).
    pub validation_calibration_slope: Option<f64>,
    /// Applied when the validation slope is outside 0.95–1.05.
    pub platt: Option<Platt>,
    /// Logged, not written: metrics.json holds only what the same inputs always give.
    #[serde(skip)]
    pub duration_ms: u64,
}

/// Chooses the booster's rounds (and Platt scaling) on the validation window: fitted on
/// `tune` (features before tv, labels [tv, t0)), early-stopped on `val` (before t0, labels
/// [t0, t1)). Without both, [`DEFAULT_ROUNDS`] and no scaling.
pub fn select_booster(
    tune: Option<&Sample>,
    val: Option<&Sample>,
    min_rows: usize,
) -> Result<BoostSelection, BoostError> {
    let t = Instant::now();
    let params = churn_params();
    let fixed = |reason: String| BoostSelection {
        scheme: "config",
        reason: Some(reason),
        params: BoostParams {
            max_rounds: DEFAULT_ROUNDS,
            ..params
        },
        rounds: DEFAULT_ROUNDS,
        validation_log_loss: None,
        validation_calibration_slope: None,
        platt: None,
        duration_ms: 0,
    };
    let (Some(tune), Some(val)) = (tune, val) else {
        return Ok(fixed("no labelled tables to validate on".into()));
    };
    let one_class = |l: &[bool]| l.iter().all(|&x| x) || l.iter().all(|&x| !x);
    if tune.len() < min_rows
        || val.is_empty()
        || one_class(&tune.churned)
        || one_class(&val.churned)
    {
        return Ok(fixed(format!(
            "{} tuning and {} validation customers (min_train_customers {min_rows}, both classes needed)",
            tune.len(),
            val.len()
        )));
    }
    let vy = labels(&val.churned);
    let fit = boost::fit(
        &params,
        &FEATURES,
        &tune.x,
        &labels(&tune.churned),
        Some((&val.x, &vy)),
    )?;
    let margins = fit.ensemble.margins(&val.x);
    let platt = fit_platt(&margins, &val.churned);
    let slope = platt.map(|p| p.slope);
    // Scaled only when the validation window shows it is needed (slope outside 0.95–1.05).
    let platt = platt.filter(|p| !(0.95..=1.05).contains(&p.slope));
    let probs: Vec<f64> = margins
        .iter()
        .map(|&m| platt.map_or_else(|| sigmoid(m), |p| p.apply(m)))
        .collect();
    Ok(BoostSelection {
        scheme: "time_ordered",
        reason: None,
        params,
        rounds: fit.rounds.max(1),
        validation_log_loss: Some(log_loss(&probs, &val.churned)),
        validation_calibration_slope: slope,
        platt,
        duration_ms: t.elapsed().as_millis() as u64,
    })
}

/// Probabilities and per-input path contributions (margin scale, without the expected value;
/// [`crate::models::boost::Explainer::path_contributions`]) of the boosted champion for the
/// rows of `logged` (logged inputs, [`crate::models::churn::logged_row`]), in parallel: what `score` writes. One walk
/// per tree gives both. TreeSHAP gave the same kind of reasons but took 69 s wall for 199k
/// customers on the (loaded) bench machine with 89 trees of depth 4: too slow for the nightly
/// run.
pub fn score_boosted(b: &BoostedChurn, logged: &Array2<f64>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let explainer = b.ensemble.explainer();
    (0..logged.nrows())
        .into_par_iter()
        .map(|r| {
            let x = logged.row(r).to_vec();
            let (margin, mut c) = explainer.margin_and_path_contributions(&x);
            c.truncate(FEATURES.len());
            (b.probability_of_margin(margin), c)
        })
        .unzip()
}

/// Fits the booster with the selected rounds on `x` / `churned`.
pub fn fit_boosted(
    sel: &BoostSelection,
    x: &Array2<f64>,
    churned: &[bool],
) -> Result<BoostedChurn, BoostError> {
    let params = BoostParams {
        max_rounds: sel.rounds,
        ..sel.params
    };
    let fit = boost::fit(&params, &FEATURES, x, &labels(churned), None)?;
    Ok(BoostedChurn {
        ensemble: fit.ensemble,
        platt: sel.platt,
    })
}

/// Platt scaling: logistic regression of the labels on the margin (two parameters, Newton's
/// method). `None` when it does not converge (one class, or a separating margin).
pub fn fit_platt(margins: &[f64], y: &[bool]) -> Option<Platt> {
    let (mut a, mut b) = (1.0, 0.0);
    for _ in 0..50 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&m, &y) in margins.iter().zip(y) {
            let p = sigmoid(a * m + b);
            let r = p - f64::from(u8::from(y));
            let w = (p * (1.0 - p)).max(1e-12);
            ga += r * m;
            gb += r;
            haa += w * m * m;
            hab += w * m;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if !(det.is_finite() && det > 0.0) {
            return None;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() < 1e-10 && db.abs() < 1e-10 {
            return (a.is_finite() && b.is_finite()).then_some(Platt {
                slope: a,
                intercept: b,
            });
        }
    }
    None
}

/// Calibration slope of probabilities: the slope of a logistic regression of the outcome on
/// logit(p) (1 = calibrated; below 1 = too extreme).
pub fn calibration_slope(probabilities: &[f64], y: &[bool]) -> Option<f64> {
    let logits: Vec<f64> = probabilities
        .iter()
        .map(|&p| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            (p / (1.0 - p)).ln()
        })
        .collect();
    fit_platt(&logits, y).map(|p| p.slope)
}

/// Paired bootstrap of the ROC-AUC difference `a − b` on the same customers: `resamples`
/// Poisson(1)-weighted resamples, the 2.5% and 97.5% quantiles. Resamples go eight to a pass
/// over the sorted scores: one hash of (seed, pass, row) gives the row's eight weights, so
/// both scores see the same weights without a table of them, and the interval depends on the
/// seed only (not on the thread count). Sums are integers: each AUC is exact for its weights.
pub fn paired_auc_interval(
    a: &[f64],
    b: &[f64],
    y: &[bool],
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    if a.len() != y.len() || b.len() != y.len() || resamples == 0 {
        return None;
    }
    interval_of(
        &resample_aucs(a, y, resamples, seed),
        &resample_aucs(b, y, resamples, seed),
        resamples,
    )
}

/// ROC-AUC of `s` on each of `resamples` Poisson(1)-weighted resamples, in resample order
/// (`None` for a resample without weighted positives or negatives). Resample `l` of pass
/// `pass` weighs customer `row` by byte `l` of `mix64(key(pass) + row)`: the same weights
/// for every score of a pair.
fn resample_aucs(s: &[f64], y: &[bool], resamples: usize, seed: u64) -> Vec<Option<f64>> {
    let sorted = Sorted::new(s, y);
    (0..resamples.div_ceil(LANES))
        .into_par_iter()
        .flat_map_iter(|pass| {
            let key = seed ^ (pass as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let aucs = sorted.weighted_aucs(|row| mix64(key.wrapping_add(u64::from(row))));
            let lanes = (resamples - pass * LANES).min(LANES);
            aucs.into_iter().take(lanes)
        })
        .collect()
}

/// The 2.5% and 97.5% quantiles of `a − b` over the resamples where both are defined (`None`
/// when fewer than half are).
fn interval_of(a: &[Option<f64>], b: &[Option<f64>], resamples: usize) -> Option<(f64, f64)> {
    let mut diffs: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(&x, &y)| Some(x? - y?))
        .collect();
    if diffs.is_empty() || diffs.len() < resamples / 2 {
        return None;
    }
    diffs.sort_by(f64::total_cmp);
    let q = |p: f64| diffs[((p * (diffs.len() - 1) as f64).round() as usize).min(diffs.len() - 1)];
    Some((q(0.025), q(0.975)))
}

/// The logistic baseline's side of every paired interval of a run: its ROC-AUC and its AUC on
/// each bootstrap resample, computed once for all the challengers compared with it.
#[derive(Debug, Clone, Default)]
pub struct Resampled {
    pub auc: f64,
    aucs: Vec<Option<f64>>,
}

impl Resampled {
    pub fn new(scores: &[f64], y: &[bool]) -> Resampled {
        Resampled {
            auc: auc_or_nan(scores, y),
            aucs: if scores.len() == y.len() {
                resample_aucs(scores, y, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
            } else {
                Vec::new()
            },
        }
    }
}

/// Resamples per pass: one weight byte each in a 64-bit hash.
const LANES: usize = 8;

/// Scores in ascending order, prepared once for many weighted AUCs: the row of each position
/// and its kind (a score of its own, or a member of a tie group).
struct Sorted {
    row: Vec<u32>,
    kind: Vec<Kind>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A score of its own: 1 for a positive, 0 for a negative.
    Single(f64),
    /// Shares its score with the next position (`last: false`) or ends a tie group.
    Tied { positive: bool, last: bool },
}

impl Sorted {
    fn new(s: &[f64], y: &[bool]) -> Sorted {
        let row: Vec<u32> = crate::evaluate::order(s, false)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let score = |k: usize| s[row[k] as usize];
        let kind = (0..row.len())
            .map(|k| {
                let positive = y[row[k] as usize];
                let with_next = k + 1 < row.len() && score(k) == score(k + 1);
                let with_prev = k > 0 && score(k - 1) == score(k);
                match (with_prev || with_next, positive) {
                    (true, _) => Kind::Tied {
                        positive,
                        last: !with_next,
                    },
                    (false, positive) => Kind::Single(f64::from(u8::from(positive))),
                }
            })
            .collect();
        Sorted { row, kind }
    }

    /// ROC-AUCs of [`LANES`] resamples at once: `weights(row)` holds the row's Poisson(1)
    /// quantile byte of each resample (byte `l` for resample `l`). Ties share half credit, as
    /// in [`crate::evaluate::roc_auc`]. Every sum is a multiple of ½ far below 2^53, so f64
    /// keeps it exactly. `None` for a resample without weighted positives or negatives.
    fn weighted_aucs(&self, weights: impl Fn(u32) -> u64) -> [Option<f64>; LANES] {
        let mut num = [0.0f64; LANES];
        let mut neg_below = [0.0f64; LANES];
        let mut pos_total = [0.0f64; LANES];
        // A tie group's weighted positives and negatives, until its last member.
        let (mut p, mut n) = ([0.0f64; LANES], [0.0f64; LANES]);
        for (&row, &kind) in self.row.iter().zip(&self.kind) {
            let h = weights(row);
            let w: [f64; LANES] =
                std::array::from_fn(|l| POISSON1[((h >> (8 * l)) & 0xFF) as usize]);
            match kind {
                // Branch-free for the common case (labels are unpredictable): `m` is 1 for a
                // positive, 0 for a negative.
                Kind::Single(m) => {
                    for l in 0..LANES {
                        num[l] += m * w[l] * neg_below[l];
                        pos_total[l] += m * w[l];
                        neg_below[l] += (1.0 - m) * w[l];
                    }
                }
                Kind::Tied { positive, last } => {
                    let side = if positive { &mut p } else { &mut n };
                    for l in 0..LANES {
                        side[l] += w[l];
                    }
                    if last {
                        for l in 0..LANES {
                            num[l] += p[l] * (neg_below[l] + 0.5 * n[l]);
                            neg_below[l] += n[l];
                            pos_total[l] += p[l];
                        }
                        (p, n) = ([0.0; LANES], [0.0; LANES]);
                    }
                }
            }
        }
        std::array::from_fn(|l| {
            (pos_total[l] > 0.0 && neg_below[l] > 0.0)
                .then(|| num[l] / (pos_total[l] * neg_below[l]))
        })
    }
}

/// Poisson(1) weights at the 256 byte quantiles `(u + ½)/256`: P(0) = P(1) = 94/256 (exact
/// 0.368), P(2) = 47/256 (0.184), P(3) = 16/256 (0.061), P(4) = 4/256, P(5) = 1/256: the
/// bootstrap's weights to 1/256 of probability.
const POISSON1: [f64; 256] = poisson1_table();

const fn poisson1_table() -> [f64; 256] {
    let mut t = [0.0; 256];
    let mut u = 0;
    // Cumulative Poisson(1) probabilities times 256, rounded: 94, 188, 235, 251, 255, 256.
    let bounds = [94, 188, 235, 251, 255, 256];
    let mut k = 0;
    while u < 256 {
        while u >= bounds[k] {
            k += 1;
        }
        t[u] = k as f64;
        u += 1;
    }
    t
}

/// Resamples of the paired bootstrap and its seed (fixed: the same interval every night for
/// the same scores).
pub const BOOTSTRAP_RESAMPLES: usize = 1000;
pub const BOOTSTRAP_SEED: u64 = 14;

/// One churn score measured out of time beside the logistic baseline (metrics.json
/// `churn.challengers`).
#[derive(Debug, Serialize)]
pub struct Challenger {
    #[serde(flatten)]
    pub scores: ChurnScores,
    pub calibration_slope: Option<f64>,
    /// ROC-AUC minus the logistic model's on the same customers, and its 95% paired
    /// bootstrap interval.
    pub roc_auc_minus_logistic: f64,
    pub roc_auc_minus_logistic_95: Option<(f64, f64)>,
    /// Log loss on the validation window (what the champion is chosen by); `None` for a score
    /// that cannot compete (no validation-window fit).
    pub validation_log_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_eligible: Option<&'static str>,
    /// Probabilities of the evaluation customers (the report's charts).
    #[serde(skip)]
    pub probabilities: Vec<f64>,
}

impl Challenger {
    /// `probabilities` of churn on the evaluation customers, beside the logistic model's
    /// (`logistic`, resampled once per run; the logistic model itself: a difference of 0, no
    /// interval to compute).
    pub fn new(
        name: &'static str,
        probabilities: Vec<f64>,
        logistic: &Resampled,
        churned: &[bool],
        validation_log_loss: Option<f64>,
    ) -> Challenger {
        let scores = ChurnScores::new(name, &probabilities, churned, true);
        let diff = scores.roc_auc - logistic.auc;
        let interval = || {
            let own = resample_aucs(&probabilities, churned, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED);
            interval_of(&own, &logistic.aucs, BOOTSTRAP_RESAMPLES)
        };
        Challenger {
            calibration_slope: calibration_slope(&probabilities, churned),
            roc_auc_minus_logistic: diff,
            roc_auc_minus_logistic_95: (name != "logistic" && probabilities.len() == churned.len())
                .then(interval)
                .flatten(),
            scores,
            validation_log_loss,
            not_eligible: None,
            probabilities,
        }
    }
}

/// The run's champion: which model scores the customers, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Champion {
    pub name: &'static str,
    /// How it was chosen: `validation_log_loss` (lower wins) or `logistic_by_default` (no
    /// validation window for the booster).
    pub chosen_by: &'static str,
}

/// Fewest validation customers for the booster to become champion. Below it a small
/// validation log-loss edge is noise, and switching model family between nights moves every
/// score (on 3,000-customer histories the switch tripped the score PSI drift gate).
pub const MIN_VALIDATION_CUSTOMERS: usize = 5000;

/// The lowest validation log loss among the logistic model, the booster and the BTYD
/// buy-again score (`btyd_buy_again`: its loss on the same validation customers,
/// `models::buy_again`) wins; a challenger must be strictly lower than every one before it in
/// that order, so ties keep the logistic model (then the booster). Without the logistic
/// model's loss, or with validation windows smaller than [`MIN_VALIDATION_CUSTOMERS`], the
/// logistic model stays; a challenger without a finite loss does not compete.
pub fn choose(
    logistic_loss: Option<f64>,
    boosted: &BoostSelection,
    btyd_buy_again: Option<f64>,
    validation_customers: usize,
) -> Champion {
    let by_default = Champion {
        name: "logistic",
        chosen_by: "logistic_by_default",
    };
    if validation_customers < MIN_VALIDATION_CUSTOMERS {
        return by_default;
    }
    let Some(l) = logistic_loss.filter(|l| l.is_finite()) else {
        return by_default;
    };
    let mut best = ("logistic", l);
    let mut competed = false;
    for (name, loss) in [
        ("boosted", boosted.validation_log_loss),
        ("btyd_buy_again", btyd_buy_again),
    ] {
        if let Some(loss) = loss.filter(|v| v.is_finite()) {
            competed = true;
            if loss < best.1 {
                best = (name, loss);
            }
        }
    }
    if !competed {
        return by_default;
    }
    Champion {
        name: best.0,
        chosen_by: "validation_log_loss",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::roc_auc;

    #[test]
    fn weighted_auc_with_unit_weights_is_the_exact_auc() {
        let s = [0.5, 0.8, 0.2, 0.5, 0.5, 0.1];
        let y = [true, true, false, false, true, false];
        let sorted = Sorted::new(&s, &y);
        // Byte 94 is the first quantile of weight 1, 188 of weight 2 (POISSON1).
        let ones = u64::from_le_bytes([94; 8]);
        assert_eq!(sorted.weighted_aucs(|_| ones), [roc_auc(&s, &y); LANES]);
        // Weight 2 on a row = the row twice; weight 0 = the row left out (lane 1).
        let (s2, y2) = (
            [0.5, 0.8, 0.2, 0.5, 0.5, 0.1, 0.1],
            [true, true, false, false, true, false, false],
        );
        let twice_last = |row: u32| {
            let mut b = [94u8; 8];
            if row == 5 {
                b[0] = 188;
            }
            if row == 1 {
                b[1] = 0;
            }
            u64::from_le_bytes(b)
        };
        let aucs = sorted.weighted_aucs(twice_last);
        assert_eq!(aucs[0], roc_auc(&s2, &y2));
        let (s3, y3) = ([0.5, 0.2, 0.5, 0.5, 0.1], [true, false, false, true, false]);
        assert_eq!(aucs[1], roc_auc(&s3, &y3));
        assert_eq!(aucs[2], roc_auc(&s, &y));
    }

    #[test]
    fn bootstrap_interval_covers_the_difference_and_is_seeded() {
        let n = 2000;
        let y: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let good: Vec<f64> = (0..n)
            .map(|i| f64::from(u8::from(y[i])) + ((i * 7919) % 101) as f64 / 60.0)
            .collect();
        let weak: Vec<f64> = (0..n)
            .map(|i| f64::from(u8::from(y[i])) + ((i * 104_729) % 103) as f64 / 30.0)
            .collect();
        let d = roc_auc(&good, &y).unwrap_or(f64::NAN) - roc_auc(&weak, &y).unwrap_or(f64::NAN);
        let (lo, hi) = paired_auc_interval(&good, &weak, &y, 300, 1).expect("interval");
        assert!(lo < d && d < hi && lo > 0.0, "{lo} {d} {hi}");
        assert_eq!(
            paired_auc_interval(&good, &weak, &y, 300, 1),
            Some((lo, hi))
        );
    }

    #[test]
    fn champion_among_three_by_validation_log_loss() {
        let booster = |loss: Option<f64>| BoostSelection {
            scheme: "time_ordered",
            reason: None,
            params: churn_params(),
            rounds: 10,
            validation_log_loss: loss,
            validation_calibration_slope: None,
            platt: None,
            duration_ms: 0,
        };
        let n = MIN_VALIDATION_CUSTOMERS;
        let pick = |l, b, y, n| choose(l, &booster(b), y, n).name;
        assert_eq!(
            pick(Some(0.40), Some(0.35), Some(0.30), n),
            "btyd_buy_again"
        );
        assert_eq!(pick(Some(0.40), Some(0.30), Some(0.35), n), "boosted");
        assert_eq!(pick(Some(0.30), Some(0.35), Some(0.40), n), "logistic");
        // Ties keep the earlier model; a missing or non-finite loss does not compete.
        assert_eq!(pick(Some(0.30), Some(0.35), Some(0.30), n), "logistic");
        assert_eq!(pick(Some(0.40), Some(0.30), Some(0.30), n), "boosted");
        assert_eq!(pick(Some(0.40), None, Some(0.30), n), "btyd_buy_again");
        assert_eq!(
            pick(Some(0.40), Some(f64::NAN), Some(0.30), n),
            "btyd_buy_again"
        );
        let c = choose(Some(0.40), &booster(None), None, n);
        assert_eq!((c.name, c.chosen_by), ("logistic", "logistic_by_default"));
        // Too few validation customers, or no logistic loss: the logistic model.
        let c = choose(Some(0.40), &booster(Some(0.3)), Some(0.2), n - 1);
        assert_eq!((c.name, c.chosen_by), ("logistic", "logistic_by_default"));
        assert_eq!(pick(None, Some(0.3), Some(0.2), n), "logistic");
    }

    #[test]
    fn platt_recovers_a_known_slope() {
        // Labels drawn from sigmoid(0.5·m − 0.2): Platt finds about (0.5, −0.2).
        let m: Vec<f64> = (0..20_000).map(|i| (i % 200) as f64 / 20.0 - 5.0).collect();
        let y: Vec<bool> = m
            .iter()
            .zip(0u64..)
            .map(|(&m, i)| {
                ((mix64(3 + i) >> 11) as f64 / (1u64 << 53) as f64) < sigmoid(0.5 * m - 0.2)
            })
            .collect();
        let p = fit_platt(&m, &y).expect("fit");
        assert!(
            (p.slope - 0.5).abs() < 0.03 && (p.intercept + 0.2).abs() < 0.05,
            "{p:?}"
        );
        // Calibrated probabilities have slope 1.
        let probs: Vec<f64> = m.iter().map(|&m| sigmoid(0.5 * m - 0.2)).collect();
        let s = calibration_slope(&probs, &y).expect("slope");
        assert!((s - 1.0).abs() < 0.06, "{s}");
    }
}
