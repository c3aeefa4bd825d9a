//! The churn model: L2 logistic regression on standardised, log-compressed RFM features,
//! predicting P(churn): the saved model scores `sigmoid(intercept + w·z)`.
//!
//! Fitted by Newton's method ([`super::logistic`]) on linfa-logistic's objective (L2 on the
//! summed loss, intercept free). linfa-logistic's L-BFGS was the whole run's largest cost; its
//! positive-class quirk (rust-ml/linfa#393: the more frequent label is "positive") no longer
//! applies: `churned == true` is the positive class.

use std::collections::BTreeMap;

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::features::Features;
use crate::models::logistic::{self, LogisticError, Settings};
use crate::models::saved::InvalidField;

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

/// How a raw feature value is compressed before standardisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transform {
    /// sign(x)·ln(1 + |x|).
    #[serde(rename = "signed_log1p")]
    SignedLog1p,
}

impl Transform {
    fn apply(self, v: f64) -> f64 {
        match self {
            Transform::SignedLog1p => signed_log1p(v),
        }
    }
}

/// How one raw feature becomes a model input: `(transform(x) − mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureScaling {
    /// One of [`FEATURES`]: the raw column is found by this name, not by position.
    pub name: String,
    pub transform: Transform,
    pub mean: f64,
    pub std: f64,
}

/// The smallest spread a fitted scaling keeps: a column whose transformed values spread less
/// is constant, and is given std 1 (it then carries no weight). A model file with a smaller
/// std was not written by a fit.
pub const MIN_STD: f64 = 1e-12;

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

/// Names of the model inputs, in matrix column order.
/// RFM and BTYD summary first, then behaviour (zero, hence constant and inert, for data with
/// purchases only).
pub const FEATURES: [&str; 17] = [
    "recency_days",
    "frequency",
    "monetary_total",
    "avg_order_value",
    "tenure_days",
    "t_days",
    "n_events",
    "days_since_last_event",
    "events_30d",
    "events_90d",
    "trend_30d",
    "active_days",
    "n_sessions",
    "cart_abandonments",
    "n_support_tickets",
    "n_email_opens",
    "refund_ratio",
];

/// The raw column of a feature name in [`FEATURES`] order (`None` for a name this build does not
/// compute).
pub fn feature_column(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| *f == name)
}

/// The raw feature row of one customer (who has purchased: recency is defined).
pub fn raw_row(r: &Features) -> [f64; 17] {
    [
        r.recency_days.unwrap_or(r.tenure_days),
        r.frequency as f64,
        r.monetary_total,
        r.avg_order_value.unwrap_or(0.0),
        r.tenure_days,
        r.t_days,
        r.n_events as f64,
        r.days_since_last_event,
        r.events_30d as f64,
        r.events_90d as f64,
        r.trend_30d,
        r.active_days as f64,
        r.n_sessions as f64,
        r.cart_abandonments as f64,
        r.n_support_tickets as f64,
        r.n_email_opens as f64,
        r.refund_ratio,
    ]
}

/// [`logged_row`] of every row, in parallel: the matrix every model scores from.
pub fn logged_matrix(rows: &[&Features]) -> Array2<f64> {
    let k = FEATURES.len();
    let mut flat = vec![0.0; rows.len() * k];
    flat.par_chunks_mut(k)
        .zip(rows.par_iter())
        .for_each(|(out, r)| out.copy_from_slice(&logged_row(r)));
    // `flat` holds rows.len() rows of k values: the shape always matches.
    Array2::from_shape_vec((rows.len(), k), flat).unwrap_or_else(|_| Array2::zeros((0, k)))
}

/// The transform every fitted scaling applies (see [`FeatureScaling`]).
pub const TRANSFORM: Transform = Transform::SignedLog1p;

/// One customer's model inputs before standardisation: [`raw_row`] with [`TRANSFORM`] applied.
/// Training builds these once per table ([`crate::models::sample::Sample`]), so no fit or
/// prediction takes a logarithm again.
pub fn logged_row(r: &Features) -> [f64; 17] {
    raw_row(r).map(|v| TRANSFORM.apply(v))
}

/// Learns the scaling of the raw feature columns ([`FEATURES`] order): `signed_log1p`, then
/// standardisation (a constant column keeps std 1). Returns it and the scaled matrix.
pub fn fit_scaling(x: &Array2<f64>) -> Result<(Vec<FeatureScaling>, Array2<f64>), ModelError> {
    // The shape is checked by the logged version.
    fit_scaling_logged(x.mapv(|v| TRANSFORM.apply(v)))
}

/// [`fit_scaling`] of rows already transformed ([`logged_row`]): standardised in place.
pub fn fit_scaling_logged(
    mut z: Array2<f64>,
) -> Result<(Vec<FeatureScaling>, Array2<f64>), ModelError> {
    let n = z.nrows().max(1) as f64;
    if z.ncols() != FEATURES.len() {
        return Err(ModelError::Shape {
            expected: FEATURES.len(),
            found: z.ncols(),
        });
    }
    let mut features = Vec::with_capacity(FEATURES.len());
    for (j, name) in FEATURES.iter().enumerate() {
        let col = z.column(j);
        let mean = col.sum() / n;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let std = if var.sqrt() > MIN_STD {
            var.sqrt()
        } else {
            1.0
        };
        z.column_mut(j).mapv_inplace(|v| (v - mean) / std);
        features.push(FeatureScaling {
            name: name.to_string(),
            transform: TRANSFORM,
            mean,
            std,
        });
    }
    if z.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::Invalid("non-finite feature value".into()));
    }
    Ok((features, z))
}

/// Applies a learnt scaling to raw rows (columns in [`FEATURES`] order). Column `j` of the result
/// is `features[j]`, read from the raw column of that *name*: a model whose features are listed
/// in another order is applied correctly.
pub fn apply_scaling(
    features: &[FeatureScaling],
    x: &Array2<f64>,
) -> Result<Array2<f64>, ModelError> {
    // The shape is checked by the logged version.
    standardise_logged(features, &x.mapv(|v| TRANSFORM.apply(v)))
}

/// [`apply_scaling`] of rows already transformed ([`logged_row`]).
pub fn standardise_logged(
    features: &[FeatureScaling],
    logged: &Array2<f64>,
) -> Result<Array2<f64>, ModelError> {
    if logged.ncols() != FEATURES.len() {
        return Err(ModelError::Shape {
            expected: FEATURES.len(),
            found: logged.ncols(),
        });
    }
    let mut z = Array2::zeros((logged.nrows(), features.len()));
    for (j, f) in features.iter().enumerate() {
        let col =
            feature_column(&f.name).ok_or_else(|| ModelError::UnknownFeature(f.name.clone()))?;
        if f.transform != TRANSFORM {
            return Err(ModelError::Invalid(format!(
                "{}: transform {:?} is not the one training rows carry",
                f.name, f.transform
            )));
        }
        let (mean, std) = (f.mean, f.std);
        ndarray::Zip::from(z.column_mut(j))
            .and(logged.column(col))
            .for_each(|z, &v| *z = (v - mean) / std);
    }
    Ok(z)
}

fn signed_log1p(v: f64) -> f64 {
    v.signum() * v.abs().ln_1p()
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Customers' raw features made model inputs once: the scaling learnt on them and the
/// standardised matrix. Fits that share the customers (the alpha grid) share one design.
#[derive(Debug, Clone)]
pub struct Design {
    features: Vec<FeatureScaling>,
    z: Array2<f64>,
}

impl Design {
    /// Learns the scaling of raw rows `x` (rows × [`FEATURES`]) and applies it.
    pub fn new(x: &Array2<f64>) -> Result<Design, ModelError> {
        let (features, z) = fit_scaling(x)?;
        Ok(Design { features, z })
    }

    /// The design of rows already transformed ([`logged_row`]), standardised in place.
    pub fn from_logged(logged: Array2<f64>) -> Result<Design, ModelError> {
        let (features, z) = fit_scaling_logged(logged)?;
        Ok(Design { features, z })
    }

    /// The learnt scaling.
    pub fn scaling(&self) -> &[FeatureScaling] {
        &self.features
    }

    /// The standardised rows.
    pub fn z(&self) -> &Array2<f64> {
        &self.z
    }

    /// The scaling and the standardised rows, for a fit that may consume the rows
    /// (`stages::value_select`: the boosted candidate splits them in place).
    pub fn into_parts(self) -> (Vec<FeatureScaling>, Array2<f64>) {
        (self.features, self.z)
    }

    /// Other transformed rows ([`logged_row`]) standardised with this design's scaling.
    pub fn standardise_logged(&self, logged: &Array2<f64>) -> Result<Array2<f64>, ModelError> {
        standardise_logged(&self.features, logged)
    }

    pub fn rows(&self) -> usize {
        self.z.nrows()
    }

    /// Other raw rows standardised with this design's scaling.
    pub fn standardise(&self, x: &Array2<f64>) -> Result<Array2<f64>, ModelError> {
        apply_scaling(&self.features, x)
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

    /// Checks every field used to score; the first bad one comes back with its JSON path
    /// relative to the model (`features[3].std`). The features must be exactly the ones this
    /// build computes ([`FEATURES`]), each once, in any order.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let mut seen = [None::<usize>; FEATURES.len()];
        for (i, f) in self.features.iter().enumerate() {
            let at = |field: &str| format!("features[{i}].{field}");
            let Some(col) = feature_column(&f.name) else {
                return Err(InvalidField::new(
                    at("name"),
                    format!(
                        "must be a feature this build computes ({})",
                        FEATURES.join(", ")
                    ),
                    format_args!("{:?}", f.name),
                ));
            };
            if let Some(first) = seen[col] {
                return Err(InvalidField::new(
                    at("name"),
                    format!("must be listed once (also features[{first}].name)"),
                    format_args!("{:?}", f.name),
                ));
            }
            seen[col] = Some(i);
            if !f.mean.is_finite() {
                return Err(InvalidField::new(at("mean"), "must be finite", f.mean));
            }
            if !(f.std.is_finite() && f.std >= MIN_STD) {
                return Err(InvalidField::new(
                    at("std"),
                    format!(
                        "must be finite and >= {MIN_STD:e} (a fit gives a constant feature std 1)"
                    ),
                    f.std,
                ));
            }
        }
        if let Some(missing) = seen.iter().position(Option::is_none) {
            return Err(InvalidField::new(
                "features",
                format!(
                    "must list all {} features this build computes; {:?} is missing",
                    FEATURES.len(),
                    FEATURES[missing]
                ),
                format_args!("{} features", self.features.len()),
            ));
        }
        if self.coefficients.len() != self.features.len() {
            return Err(InvalidField::new(
                "coefficients",
                format!("must hold one value per feature ({})", self.features.len()),
                format_args!("{} values", self.coefficients.len()),
            ));
        }
        if let Some((i, c)) = self
            .coefficients
            .iter()
            .enumerate()
            .find(|(_, c)| !c.is_finite())
        {
            return Err(InvalidField::new(
                format!("coefficients[{i}]"),
                "must be finite",
                c,
            ));
        }
        if !self.intercept.is_finite() {
            return Err(InvalidField::new(
                "intercept",
                "must be finite",
                self.intercept,
            ));
        }
        // Not used to score, but read by the next run's drift check: a name it cannot match
        // or a value that is no standard error would make that comparison meaningless.
        for (name, se) in self.std_errors.iter().flatten() {
            if name != INTERCEPT && feature_column(name).is_none() {
                return Err(InvalidField::new(
                    format!("std_errors.{name}"),
                    "must be named after a feature this build computes or `intercept`",
                    format_args!("{name:?}"),
                ));
            }
            if !(se.is_finite() && *se > 0.0) {
                return Err(InvalidField::new(
                    format!("std_errors.{name}"),
                    "must be finite and > 0",
                    se,
                ));
            }
        }
        if let Some(b) = &self.boosted {
            b.validate().map_err(|e| e.within("boosted"))?;
        }
        if let Some(b) = &self.btyd_buy_again {
            if self.boosted.is_some() {
                return Err(InvalidField::new(
                    "btyd_buy_again",
                    "must be absent when `boosted` is set (one champion scores)",
                    "both set",
                ));
            }
            b.validate().map_err(|e| e.within("btyd_buy_again"))?;
        }
        Ok(())
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
