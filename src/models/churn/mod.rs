//! The churn model: L2 logistic regression on standardised, log-compressed RFM features,
//! predicting P(churn): the saved model scores `sigmoid(intercept + w·z)`.
//!
//! Fitted by Newton's method ([`super::logistic`]) on linfa-logistic's objective (L2 on the
//! summed loss, intercept free). linfa-logistic's L-BFGS was the whole run's largest cost; its
//! positive-class quirk (rust-ml/linfa#393: the more frequent label is "positive") no longer
//! applies: `churned == true` is the positive class.
//!
//! `inputs.rs`: what the model reads (the [`FEATURES`] list, raw and logged rows, the learnt
//! scaling, [`Design`]); `validate.rs`: the checks of a saved model's fields.

mod inputs;
mod validate;

use std::collections::BTreeMap;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::models::logistic::{self, LogisticError, Settings};

pub use inputs::{
    apply_scaling, feature_column, fit_scaling, fit_scaling_logged, logged_matrix, logged_row,
    raw_row, standardise_logged, Design, FeatureScaling, Transform, FEATURES, MIN_STD, TRANSFORM,
};

/// Errors while fitting or applying a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{window}: all {rows} customers have the same churn label ({label}); cannot fit a churn model")]
    OneClass {
        window: String,
        rows: usize,
        label: &'static str,
    },
    #[error("{window}: no customers to fit the churn model on")]
    Empty { window: String },
    #[error("churn model fit did not finish within {seconds} s (max_iterations {iterations})")]
    Timeout { seconds: u64, iterations: u64 },
    #[error("{0}")]
    Linfa(String),
    #[error("churn model fit failed: {0}")]
    Solver(LogisticError),
    #[error("churn model: {0}")]
    Invalid(String),
    #[error("model expects {expected} features, got {found}")]
    Shape { expected: usize, found: usize },
    #[error("churn model: unknown feature {0:?}; this build computes {list}", list = FEATURES.join(", "))]
    UnknownFeature(String),
}

/// Checked hyperparameters (see `[churn]` in the config docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnParams {
    pub alpha: f64,
    pub max_iterations: u64,
    pub timeout_seconds: u64,
    /// Balance the classes: the minority class's rows weigh ⌊majority/minority⌉ (the same
    /// objective as replicating them that many times), then the intercept is shifted back by
    /// ln(factor) so that predictions stay calibrated probabilities.
    #[serde(default)]
    pub balanced: bool,
}

/// A fitted churn model. `score(z) = sigmoid(intercept + Σ coefficients·z)` = P(churn);
/// `coefficients[i]` belongs to `features[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnModel {
    pub features: Vec<FeatureScaling>,
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    pub params: ChurnParams,
    pub train_rows: usize,
    pub train_churn_rate: f64,
    /// Asymptotic standard errors of the coefficients (by feature name) and of the intercept
    /// (key `intercept`) at the optimum ([`logistic::Fitted::std_errors`]), in the units of the
    /// standardised features: what the next run's drift check measures coefficient shifts in.
    /// Required in a model file (`null` when the Hessian could not be inverted).
    #[serde(deserialize_with = "Option::deserialize")]
    pub std_errors: Option<BTreeMap<String, f64>>,
    /// The run's champion when the boosted challenger won on the validation window
    /// (`stages::challengers`): then it scores the customers (probabilities and reasons) and
    /// the logistic fields above are kept for reading and the drift checks. Required in a
    /// model file (`null` when the logistic model scores).
    #[serde(deserialize_with = "Option::deserialize")]
    pub boosted: Option<crate::models::boost::BoostedChurn>,
    /// The run's champion when the BTYD buy-again score won on the validation window
    /// ([`crate::models::buy_again`]): the saved value model's transaction fit then gives the
    /// probabilities, this the reasons' reference. Absent (not `null`) otherwise, so a model
    /// file written before it existed reads as what it is: a logistic or boosted champion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btyd_buy_again: Option<crate::models::buy_again::BuyAgainChurn>,
}

/// The key of the intercept's standard error in [`ChurnModel::std_errors`].
pub const INTERCEPT: &str = "intercept";

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl ChurnModel {
    /// Fits on raw features `x` (rows × [`FEATURES`]) and labels `churned`.
    pub fn fit(
        params: ChurnParams,
        x: &Array2<f64>,
        churned: &[bool],
        window: &str,
    ) -> Result<ChurnModel, ModelError> {
        if x.nrows() == 0 {
            return Err(ModelError::Empty {
                window: window.to_string(),
            });
        }
        if x.ncols() != FEATURES.len() {
            return Err(ModelError::Shape {
                expected: FEATURES.len(),
                found: x.ncols(),
            });
        }
        Self::fit_design(params, &Design::new(x)?, churned, window, None)
    }

    /// Fits on a [`Design`], from the parameters of `start` when given (a fit on the same
    /// design at another `alpha`: fewer Newton iterations, the same optimum).
    pub fn fit_design(
        params: ChurnParams,
        design: &Design,
        churned: &[bool],
        window: &str,
        start: Option<&ChurnModel>,
    ) -> Result<ChurnModel, ModelError> {
        let n = design.rows();
        if n == 0 {
            return Err(ModelError::Empty {
                window: window.to_string(),
            });
        }
        if churned.len() != n {
            return Err(ModelError::Shape {
                expected: n,
                found: churned.len(),
            });
        }
        let positives = churned.iter().filter(|&&c| c).count();
        if positives == 0 || positives == n {
            return Err(ModelError::OneClass {
                window: window.to_string(),
                rows: n,
                label: if positives == 0 {
                    "not churned"
                } else {
                    "churned"
                },
            });
        }
        let tt = std::time::Instant::now();
        let negatives = n - positives;
        let (minority, factor) = if positives < negatives {
            (true, (negatives as f64 / positives as f64).round() as usize)
        } else {
            (
                false,
                (positives as f64 / negatives as f64).round() as usize,
            )
        };
        let (weights, shift) = if params.balanced && factor >= 2 {
            // Oversampling churners by f multiplies the fitted odds by f: subtract ln f.
            let f = factor as f64;
            if minority {
                ((f, 1.0), -f.ln())
            } else {
                ((1.0, f), f.ln())
            }
        } else {
            ((1.0, 1.0), 0.0)
        };
        let start: Option<Vec<f64>> = start.map(|m| {
            let mut t = m.coefficients.clone();
            t.push(m.intercept - shift);
            t
        });
        let fitted = logistic::fit(
            &design.z,
            churned,
            &Settings {
                alpha: params.alpha,
                max_iterations: params.max_iterations,
                timeout_seconds: params.timeout_seconds,
                class_weights: weights,
            },
            start.as_deref(),
        )
        .map_err(|e| match e {
            LogisticError::Timeout { seconds, .. } => ModelError::Timeout {
                seconds,
                iterations: params.max_iterations,
            },
            e => ModelError::Solver(e),
        })?;
        tracing::debug!(
            window,
            alpha = params.alpha,
            newton_iterations = fitted.iterations,
            duration_ms = tt.elapsed().as_millis() as u64,
            "churn model fitted"
        );
        let std_errors = fitted.std_errors.as_ref().map(|se| {
            design
                .features
                .iter()
                .map(|f| f.name.clone())
                .chain([INTERCEPT.to_string()])
                .zip(se.iter().copied())
                .collect()
        });
        Ok(ChurnModel {
            std_errors,
            features: design.features.clone(),
            coefficients: fitted.weights,
            intercept: fitted.intercept + shift,
            params,
            train_rows: n,
            train_churn_rate: positives as f64 / n as f64,
            boosted: None,
            btyd_buy_again: None,
        })
    }

    /// Standardised inputs of raw rows ([`FEATURES`] order), as the model sees them: column `i`
    /// is `features[i]`.
    pub fn standardise(&self, x: &Array2<f64>) -> Result<Array2<f64>, ModelError> {
        if self.coefficients.len() != self.features.len() {
            return Err(ModelError::Shape {
                expected: self.features.len(),
                found: self.coefficients.len(),
            });
        }
        apply_scaling(&self.features, x)
    }

    /// [`ChurnModel::standardise`] of rows already transformed ([`logged_row`]).
    pub fn standardise_logged(&self, logged: &Array2<f64>) -> Result<Array2<f64>, ModelError> {
        standardise_logged(&self.features, logged)
    }

    /// The same model with its features (and their coefficients) in [`FEATURES`] order. Scores
    /// do not depend on the order (features are matched by name), but floating-point sums do
    /// to the last bit, and churn reasons break ties by position: in one order, a model whose
    /// features were listed differently scores exactly the same. Call after [`validate`].
    ///
    /// [`validate`]: ChurnModel::validate
    pub fn in_feature_order(self) -> ChurnModel {
        let mut terms: Vec<(FeatureScaling, f64)> =
            self.features.into_iter().zip(self.coefficients).collect();
        // Stable: unknown names (refused by `validate`) would keep their order at the end.
        terms.sort_by_key(|(f, _)| feature_column(&f.name).unwrap_or(usize::MAX));
        let (features, coefficients) = terms.into_iter().unzip();
        ChurnModel {
            features,
            coefficients,
            ..self
        }
    }

    /// P(churn) for each raw row.
    pub fn predict(&self, x: &Array2<f64>) -> Result<Vec<f64>, ModelError> {
        Ok(self.predict_standardised(&self.standardise(x)?))
    }

    /// P(churn) for rows already standardised with this model's scaling (columns in its
    /// feature order).
    pub fn predict_standardised(&self, z: &Array2<f64>) -> Vec<f64> {
        z.rows()
            .into_iter()
            .map(|row| {
                let s: f64 = row.iter().zip(&self.coefficients).map(|(a, b)| a * b).sum();
                sigmoid(self.intercept + s)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn synthetic(n: usize, churn_share: f64) -> (Array2<f64>, Vec<bool>) {
        // Churn probability rises with recency; everything else is noise.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut x = Array2::zeros((n, FEATURES.len()));
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            for j in 0..FEATURES.len() {
                x[[i, j]] = rng.gen_range(1.0..100.0);
            }
            let r = x[[i, 0]];
            let logit = 4.0 * ((r / 100.0) - (1.0 - churn_share));
            y.push(rng.gen::<f64>() < sigmoid(logit * 3.0));
        }
        (x, y)
    }

    #[test]
    fn balanced_weighting_keeps_probabilities_calibrated() {
        let (x, y) = synthetic(4000, 0.15);
        let p = ChurnParams {
            balanced: true,
            ..params()
        };
        let m = ChurnModel::fit(p, &x, &y, "test").unwrap_or_else(|e| panic!("{e}"));
        assert!(m.coefficients[0] > 0.5);
        let pred = m.predict(&x).unwrap_or_default();
        let avg = mean(pred.iter().copied());
        let rate = y.iter().filter(|&&c| c).count() as f64 / y.len() as f64;
        assert!(
            (avg - rate).abs() < 0.03,
            "calibration-in-the-large: {avg} vs {rate}"
        );
    }

    fn params() -> ChurnParams {
        ChurnParams {
            balanced: false,
            alpha: 1.0,
            max_iterations: 200,
            timeout_seconds: 60,
        }
    }

    #[test]
    fn predicts_churn_whichever_class_is_more_frequent() {
        for share in [0.2, 0.8] {
            let (x, y) = synthetic(3000, share);
            let m = ChurnModel::fit(params(), &x, &y, "test").map_err(|e| e.to_string());
            let m = m.unwrap_or_else(|e| panic!("{e}"));
            assert!(
                m.coefficients[0] > 0.5,
                "recency must raise churn: {:?}",
                m.coefficients
            );
            let p = m.predict(&x).unwrap_or_default();
            let mean_churned = mean(p.iter().zip(&y).filter(|(_, &c)| c).map(|(p, _)| *p));
            let mean_kept = mean(p.iter().zip(&y).filter(|(_, &c)| !c).map(|(p, _)| *p));
            assert!(
                mean_churned > mean_kept + 0.2,
                "share {share}: {mean_churned} vs {mean_kept}"
            );
            let avg = mean(p.iter().copied());
            let rate = y.iter().filter(|&&c| c).count() as f64 / y.len() as f64;
            assert!(
                (avg - rate).abs() < 0.02,
                "calibration-in-the-large: {avg} vs {rate}"
            );
        }
    }

    fn mean(it: impl Iterator<Item = f64>) -> f64 {
        let (s, n) = it.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        s / n as f64
    }

    #[test]
    fn scaling_reads_raw_columns_by_feature_name() {
        let (x, y) = synthetic(500, 0.3);
        let m = ChurnModel::fit(params(), &x, &y, "test").unwrap_or_else(|e| panic!("{e}"));
        let z = m.standardise(&x).unwrap_or_else(|e| panic!("{e}"));
        // The same model with its terms listed backwards.
        let mut reversed = m.clone();
        reversed.features.reverse();
        reversed.coefficients.reverse();
        let zr = reversed.standardise(&x).unwrap_or_else(|e| panic!("{e}"));
        let n = FEATURES.len();
        for (j, name) in FEATURES.iter().enumerate() {
            assert_eq!(zr.column(n - 1 - j), z.column(j), "{name}");
        }
        // Same probabilities up to the order of the sum; in feature order, exactly the same.
        let p = m.predict(&x).unwrap_or_default();
        let pr = reversed.predict(&x).unwrap_or_default();
        assert_eq!(p.len(), 500);
        assert!(p.iter().zip(&pr).all(|(a, b)| (a - b).abs() < 1e-12));
        let back = reversed.in_feature_order();
        assert_eq!(back, m);
        assert_eq!(back.predict(&x).unwrap_or_default(), p);
    }

    #[test]
    fn unknown_feature_is_an_error_not_a_position() {
        let (x, y) = synthetic(200, 0.3);
        let mut m = ChurnModel::fit(params(), &x, &y, "test").unwrap_or_else(|e| panic!("{e}"));
        m.features[2].name = "lifetime_value".into();
        let err = m
            .predict(&x)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("churn model: unknown feature \"lifetime_value\"; this build computes recency_days, "),
            "{err}"
        );
        assert_eq!(
            m.validate().map_err(|e| e.field),
            Err("features[2].name".to_string())
        );
    }

    #[test]
    fn one_class_is_a_clear_error() {
        let (x, _) = synthetic(10, 0.5);
        let err = ChurnModel::fit(params(), &x, &[true; 10], "window [1997-01-01, 1997-04-01)")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("window [1997-01-01, 1997-04-01): all 10 customers have the same churn label (churned); cannot fit a churn model")
        );
    }
}
