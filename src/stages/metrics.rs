//! The types of `metrics.json` (the layout documented in docs/metrics.md): the out-of-time
//! evaluation, churn and value metrics beside their baselines and BTYD, tiers, KPIs and row
//! counts. `train` fills the evaluation and model sections; the tiers, KPIs and counts come
//! from scoring and the scan, so `run` has them all and `train` alone writes the rest.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::evaluate::{
    brier, calibration, decile_table_ranked, lift_capture_ranked, log_loss, mae,
    normalized_gini_ranked, pr_auc_ranked, rmse, roc_auc, roc_auc_ranked, spearman_ranked,
    CalibrationBin, Decile, Ranked,
};
use crate::models::value::ValueFit;
use crate::stages::drift::{Drift, Profile};
use crate::stages::score::{Kpis, TierStats};
use crate::stages::value_select::{Challenger, ValueSelection};

/// Out-of-time evaluation (or the customer-split fallback).
#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub scheme: &'static str,
    pub train_cutoff: NaiveDate,
    pub train_labels_until: NaiveDate,
    pub eval_cutoff: NaiveDate,
    pub eval_labels_until: NaiveDate,
    pub train_customers: usize,
    pub eval_customers: usize,
    pub train_churn_rate: f64,
    pub eval_churn_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// How the churn model's L2 strength was chosen.
    pub alpha_selection: Option<AlphaSelection>,
    /// Set when training read a deterministic sample of the customers (the memory budget could
    /// not hold every customer's model inputs): the share kept and why. Scoring still covers
    /// every customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_sample: Option<CustomerSample>,
    /// Reported under `churn` in metrics.json.
    #[serde(skip)]
    pub model: ChurnScores,
    #[serde(skip)]
    pub baseline: ChurnScores,
    /// Reported under `value` in metrics.json.
    #[serde(skip)]
    pub value_model: ValueScoresMetrics,
    #[serde(skip)]
    pub value_baseline: ValueScoresMetrics,
    /// Every supervised spend model fitted on the same window, out of time (under `value`).
    #[serde(skip)]
    pub value_challengers: Vec<Challenger>,
    /// Churn model and recency scores with the labels of the evaluation customers (plots).
    #[serde(skip)]
    pub eval_scores: (Vec<f64>, Vec<f64>, Vec<bool>),
    /// The logistic model's bootstrap resamples on those customers, shared by every
    /// challenger's paired interval.
    #[serde(skip)]
    pub resampled_logistic: crate::stages::challengers::Resampled,
    /// Under the customer split, the rows of the `t1` sample held out for evaluation: every
    /// other churn score (BTYD buy-again) is evaluated on these same customers. `None` out of
    /// time (the whole `t1` sample is evaluated).
    #[serde(skip)]
    pub eval_rows: Option<Vec<usize>>,
    /// Every churn score on the evaluation customers (logistic, boosted, BTYD buy-again):
    /// reported under `churn.challengers`.
    #[serde(skip)]
    pub challengers: Vec<crate::stages::challengers::Challenger>,
}

/// A training on a deterministic customer sample (`run --memory-limit`, docs/operations.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerSample {
    /// Share of the customers kept (by a hash of the id, the same customers every night).
    pub fraction: f64,
    pub reason: String,
}

/// The L2 strength chosen by time-ordered validation.
#[derive(Debug, Serialize)]
pub struct AlphaSelection {
    pub chosen: f64,
    /// `time_ordered`: fitted on features before tv with labels [tv, t0), validated on
    /// features before t0 with labels [t0, t1); `config`: churn.alpha as configured.
    pub scheme: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// (alpha, validation log loss) for every candidate tried.
    pub grid: Vec<(f64, f64)>,
}

/// Ranking metrics of churn scores (and probability metrics for probabilities).
#[derive(Debug, Clone, Serialize)]
pub struct ChurnScores {
    pub name: &'static str,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub lift_top_decile: f64,
    pub capture_top_decile: f64,
    /// Probability metrics: only for scores that are probabilities (not the recency rank).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Vec<CalibrationBin>>,
}

impl ChurnScores {
    /// Metrics of `scores` (higher = more likely to churn) against `churned`.
    pub fn new(
        name: &'static str,
        scores: &[f64],
        churned: &[bool],
        probabilities: bool,
    ) -> ChurnScores {
        // One sort of the scores for the three ranking metrics.
        let ranked = Ranked::new(scores);
        let (lift, capture) =
            lift_capture_ranked(&ranked, churned, 0.1).unwrap_or((f64::NAN, f64::NAN));
        ChurnScores {
            name,
            roc_auc: roc_auc_ranked(&ranked, churned).unwrap_or(f64::NAN),
            pr_auc: pr_auc_ranked(&ranked, churned).unwrap_or(f64::NAN),
            lift_top_decile: lift,
            capture_top_decile: capture,
            log_loss: probabilities.then(|| log_loss(scores, churned)),
            brier: probabilities.then(|| brier(scores, churned)),
            calibration: probabilities.then(|| calibration(scores, churned, 10)),
        }
    }
}

/// Out-of-time evaluation of the BTYD models: fitted on history before t1, predicting the
/// holdout [t1, as_of) of the customers who had bought before t1 (the literature's
/// calibration/holdout design).
#[derive(Debug, Serialize)]
pub struct BtydEvaluation {
    /// The transaction model used (`fit.requested` unless a fallback was needed).
    pub model: String,
    /// How the calibration models were fitted: requested / used model, failed attempts.
    pub fit: ValueFit,
    pub calibration_end: NaiveDate,
    pub holdout_until: NaiveDate,
    pub customers: usize,
    /// Customers the buy-again and spend scores are compared on: the churn model's evaluation
    /// customers (all of `customers` out of time, the held-out 20% under the customer split).
    pub compared_customers: usize,
    pub params: serde_json::Value,
    pub log_likelihood: f64,
    pub holdout_purchases_mae: f64,
    pub predicted_total_purchases: f64,
    pub actual_total_purchases: u64,
    pub buy_again_roc_auc: f64,
    /// Holdout net spend predicted as expected purchases × expected order value.
    pub spend: ValueScoresMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend_note: Option<String>,
    /// Churn as "no purchase in the holdout", ranked by −expected purchases.
    #[serde(skip)]
    pub churn: ChurnScores,
    /// P(no purchase in the holdout) ≈ exp(−expected purchases) (Poisson), on the compared
    /// customers: the buy-again score as a churn probability (a challenger).
    #[serde(skip)]
    pub churn_probability: Vec<f64>,
}

/// Metrics of a predicted H-window spend against the actual net spend.
#[derive(Debug, Clone, Serialize)]
pub struct ValueScoresMetrics {
    pub name: &'static str,
    pub mae: f64,
    pub rmse: f64,
    pub spearman: f64,
    pub gini: f64,
    pub predicted_total: f64,
    pub actual_total: f64,
    pub deciles: Vec<Decile>,
}

impl ValueScoresMetrics {
    pub fn new(name: &'static str, predicted: &[f64], actual: &[f64]) -> ValueScoresMetrics {
        // One sort of each side for the rank correlation, the Gini and the deciles.
        let n = predicted.len().min(actual.len());
        let (p, a) = (Ranked::new(&predicted[..n]), Ranked::new(&actual[..n]));
        ValueScoresMetrics {
            name,
            mae: mae(predicted, actual),
            rmse: rmse(predicted, actual),
            spearman: spearman_ranked(&p, &a),
            gini: normalized_gini_ranked(&p, &a),
            predicted_total: predicted.iter().sum(),
            actual_total: actual.iter().sum(),
            deciles: decile_table_ranked(&p, actual),
        }
    }
}

/// ROC-AUC, NaN when undefined (one class).
pub fn auc_or_nan(scores: &[f64], labels: &[bool]) -> f64 {
    roc_auc(scores, labels).unwrap_or(f64::NAN)
}

/// `metrics.json` (and the `metrics` of `model.json`).
#[derive(Serialize)]
pub struct Metrics<'a> {
    pub run_id: String,
    pub crate_version: &'static str,
    pub as_of: NaiveDate,
    pub horizon_days: u32,
    pub evaluation: &'a Evaluation,
    pub churn: ChurnMetrics<'a>,
    pub value: ValueMetrics<'a>,
    /// Engagement tiers of the scored customers: size, share, mean CLV and churn probability
    /// (absent when nothing was scored: `train` alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiers: Option<&'a BTreeMap<&'static str, TierStats>>,
    /// What the engagement teams track, for the run and per tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kpis: Option<KpiMetrics<'a>>,
    /// Customers scored and rows read (absent without a scan and scoring: `train` alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// The comparison with the runs published before this as-of (`run` only; see
    /// `stages::drift`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<&'a Drift>,
    /// What the next run compares itself with (`run` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a Profile>,
}

#[derive(Serialize)]
pub struct KpiMetrics<'a> {
    /// Share of the evaluation customers who did not buy in the last window `[t1, as_of)`.
    pub observed_churn_rate_last_window: f64,
    pub run: &'a Kpis,
    pub by_tier: &'a BTreeMap<&'static str, Kpis>,
}

#[derive(Serialize)]
pub struct ChurnMetrics<'a> {
    pub model: &'a ChurnScores,
    pub baseline: &'a ChurnScores,
    /// Ranking customers by BTYD expected purchases ("buys again"): the same AUC as ranking
    /// churn by their negation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub btyd: Option<&'a ChurnScores>,
    /// The model that scored the customers, and how it was chosen.
    pub champion: &'a crate::stages::challengers::Champion,
    /// The boosted model's rounds and scaling, chosen on the validation window.
    pub booster: &'a crate::stages::challengers::BoostSelection,
    /// Every churn score on the same out-of-time customers beside the logistic model.
    pub challengers: &'a [crate::stages::challengers::Challenger],
}

#[derive(Serialize)]
pub struct ValueMetrics<'a> {
    pub model: &'a ValueScoresMetrics,
    pub baseline: &'a ValueScoresMetrics,
    pub btyd: &'a BtydEvaluation,
    /// How the BTYD models used for scoring (history before as-of) were fitted.
    pub btyd_final_fit: &'a ValueFit,
    /// The value champion, chosen on the validation window: it scores CLV.
    pub selection: &'a ValueSelection,
    /// Every supervised spend model, out of time (BTYD × Gamma-Gamma is `btyd.spend`).
    pub challengers: &'a [Challenger],
}

/// Customers scored and the scan's rows.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    pub customers_scored: usize,
    pub customers_with_churn_probability: usize,
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_rejected: u64,
}
