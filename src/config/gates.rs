//! `[gates]`: the night-over-night drift gates (docs/config.md) — how far a run may move from
//! the previous published run before it refuses to publish (exit 3), and how many earlier
//! runs form the baseline window the run is also reported against.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Limits of the drift comparison (`src/stages/drift/`). Each is checked against the
/// reference run (the latest published partition strictly before this as-of); a limit of
/// `inf` switches its gate off (it is still measured and reported).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatesConfig {
    /// Published runs (before this as-of) in the baseline window reported beside the
    /// reference (1 to 365).
    pub baseline_runs: usize,
    /// Largest relative change of the customers scored, |current / reference − 1|.
    pub max_customer_change: f64,
    /// Largest ratio between this run's and the reference's share of rows rejected for any
    /// one reason, or in total, whichever way it moved (rows merely after as-of are not
    /// counted; shares below `min_reject_share` count as that share, so a reason that was
    /// absent trips once it reaches `max_reject_share_ratio × min_reject_share`).
    pub max_reject_share_ratio: f64,
    /// The floor of the reject shares in that ratio (0.0001 = 0.01% of the rows).
    pub min_reject_share: f64,
    /// Largest change of one event type's share of the used rows relative to the larger of
    /// the two shares, for types with at least `min_event_type_share` of the rows in either
    /// run: 1 = the type vanished (or is new), 0.5 = its share halved (or doubled).
    pub max_event_type_share_change: f64,
    /// Event types rarer than this share of the rows in both runs are reported, not gated.
    pub min_event_type_share: f64,
    /// Largest relative change of mean order value and of purchases per buyer.
    pub max_input_mean_change: f64,
    /// Largest population stability index of any churn-model input (bins of the reference).
    pub max_input_psi: f64,
    /// Largest PSI of the churn probability and of the CLV.
    pub max_score_psi: f64,
    /// Largest change of an engagement tier's share of the customers, in share points.
    pub max_tier_share_change: f64,
    /// Largest shift of a churn coefficient or BTYD / Gamma-Gamma parameter against the
    /// previous fit, in standard errors of the difference: |a − b| / √(se_a² + se_b²).
    pub max_param_shift_se: f64,
    /// Largest drop of the out-of-time churn ROC-AUC against the reference run.
    pub max_auc_drop: f64,
}

impl Default for GatesConfig {
    fn default() -> Self {
        // The defaults were set from runs on generated data (docs/config.md "Gates"): a rerun
        // and a next-day run move every figure far less than these; the broken feeds of
        // tests/drift.rs (amounts ×3, an event type gone, half the customers gone, a week of
        // rows sent twice) each pass one of them by a wide margin.
        GatesConfig {
            baseline_runs: 7,
            max_customer_change: 0.2,
            max_reject_share_ratio: 3.0,
            min_reject_share: 0.0001,
            max_event_type_share_change: 0.4,
            min_event_type_share: 0.001,
            max_input_mean_change: 0.25,
            max_input_psi: 0.25,
            max_score_psi: 0.25,
            max_tier_share_change: 0.05,
            max_param_shift_se: 6.0,
            max_auc_drop: 0.05,
        }
    }
}

impl GatesConfig {
    /// Every limit must be a number >= 0 (`inf` allowed: the gate is off); the window 1 to
    /// 365 runs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("gates.max_customer_change", self.max_customer_change),
            ("gates.max_reject_share_ratio", self.max_reject_share_ratio),
            (
                "gates.max_event_type_share_change",
                self.max_event_type_share_change,
            ),
            ("gates.min_event_type_share", self.min_event_type_share),
            ("gates.max_input_mean_change", self.max_input_mean_change),
            ("gates.max_input_psi", self.max_input_psi),
            ("gates.max_score_psi", self.max_score_psi),
            ("gates.max_tier_share_change", self.max_tier_share_change),
            ("gates.max_param_shift_se", self.max_param_shift_se),
            ("gates.max_auc_drop", self.max_auc_drop),
        ] {
            if v.is_nan() || v < 0.0 {
                return Err(ConfigError::Range {
                    key,
                    expected: "a number >= 0 (inf switches the gate off)",
                    value: v.to_string(),
                });
            }
        }
        if !(self.min_reject_share > 0.0 && self.min_reject_share <= 1.0) {
            return Err(ConfigError::Range {
                key: "gates.min_reject_share",
                expected: "a share > 0 and <= 1",
                value: self.min_reject_share.to_string(),
            });
        }
        if !(1..=365).contains(&self.baseline_runs) {
            return Err(ConfigError::Range {
                key: "gates.baseline_runs",
                expected: "1 to 365 runs",
                value: self.baseline_runs.to_string(),
            });
        }
        Ok(())
    }
}
