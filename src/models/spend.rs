//! The supervised value model: ordinary least squares (linfa-linear) of `ln(1 + spend)` in the
//! next H days on the churn model's scaled features, with Duan's smearing factor to turn
//! log-scale predictions back into expected spend.
//!
//! Why this and not a Tweedie GLM: linfa-linear 0.8.1's `TweedieRegressor` hangs on Poisson
//! and silently returns intercept-only models for powers 1–1.3 (see the project's dependency
//! notes); OLS on log1p is stable, fast and, with smearing, gets the totals right.

use linfa::traits::Fit;
use linfa::Dataset;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::models::churn::{apply_scaling, fit_scaling, FeatureScaling};
use crate::models::ModelError;

/// Ridge strength on the standardised inputs (a regulariser for degenerate columns only: on
/// thousands of rows it moves coefficients by a fraction of a percent).
const RIDGE: f64 = 1e-3;

/// A fitted spend model: `E[spend] = smearing · exp(intercept + w·z) − 1`, floored at 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendModel {
    pub features: Vec<FeatureScaling>,
    pub coefficients: Vec<f64>,
    pub intercept: f64,
    /// Duan's smearing factor: mean of `exp(residual)` on the training rows.
    pub smearing: f64,
    pub train_rows: usize,
}

impl SpendModel {
    /// Fits on raw feature rows and the net spend of the following window (negative spend,
    /// i.e. net refunds, counts as 0).
    pub fn fit(x: &Array2<f64>, spend: &[f64]) -> Result<SpendModel, ModelError> {
        if x.nrows() == 0 || spend.len() != x.nrows() {
            return Err(ModelError::Shape {
                expected: x.nrows(),
                found: spend.len(),
            });
        }
        let (features, z) = fit_scaling(x)?;
        let y: Array1<f64> = spend.iter().map(|s| s.max(0.0).ln_1p()).collect();
        // A small ridge (RIDGE on standardised inputs, through sqrt(RIDGE)·I rows appended to
        // the centred problem) keeps the system solvable when columns are constant (behaviour
        // counts of purchase-only data) or duplicated (recency = days since last event there).
        let (n, k) = z.dim();
        let mean = y.mean().unwrap_or(0.0);
        let mut za = Array2::zeros((n + k, k));
        for (i, row) in z.rows().into_iter().enumerate() {
            za.row_mut(i).assign(&row);
        }
        for j in 0..k {
            za[[n + j, j]] = RIDGE.sqrt();
        }
        let mut ya = Array1::zeros(n + k);
        for (i, v) in y.iter().enumerate() {
            ya[i] = v - mean;
        }
        let fitted = LinearRegression::new()
            .with_intercept(false)
            .fit(&Dataset::new(za, ya))
            .map_err(|e| ModelError::Linfa(format!("spend model fit failed: {e}")))?;
        let w = fitted.params().to_vec();
        let b = mean;
        let fitted_log = z.dot(fitted.params()) + b;
        let smearing = (&y - &fitted_log).mapv(f64::exp).mean().unwrap_or(1.0);
        if !(smearing.is_finite() && w.iter().all(|v| v.is_finite()) && b.is_finite()) {
            return Err(ModelError::Invalid("spend regression is not finite".into()));
        }
        Ok(SpendModel {
            features,
            coefficients: w,
            intercept: b,
            smearing,
            train_rows: x.nrows(),
        })
    }

    /// Expected net spend in the next window for raw feature rows.
    pub fn predict(&self, x: &Array2<f64>) -> Result<Vec<f64>, ModelError> {
        let z = apply_scaling(&self.features, x)?;
        let w = Array1::from(self.coefficients.clone());
        Ok((z.dot(&w) + self.intercept)
            .iter()
            .map(|v| (self.smearing * v.exp() - 1.0).max(0.0))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::churn::FEATURES;

    #[test]
    fn recovers_a_log_linear_relation_and_its_level() {
        // spend = exp(1 + 0.8·ln(1 + frequency)) − 1 exactly: up to the small ridge, the fit
        // is exact, the smearing factor 1 and the predictions equal to the targets.
        let n = 200;
        let mut x = Array2::zeros((n, FEATURES.len()));
        let mut spend = Vec::with_capacity(n);
        for i in 0..n {
            for j in 0..FEATURES.len() {
                x[[i, j]] = ((i * (j + 3)) % 17) as f64 + j as f64;
            }
            x[[i, 1]] = (i % 23) as f64;
            spend.push((1.0 + 0.8 * x[[i, 1]].ln_1p()).exp() - 1.0);
        }
        let m = SpendModel::fit(&x, &spend).unwrap_or_else(|e| panic!("{e}"));
        assert!((m.smearing - 1.0).abs() < 1e-6, "{}", m.smearing);
        let p = m.predict(&x).unwrap_or_default();
        for (a, b) in p.iter().zip(&spend) {
            assert!((a - b).abs() < 1e-4 * b.max(1.0), "{a} vs {b}");
        }
        // Constant and duplicated columns (purchase-only data) still fit.
        let mut x2 = x.clone();
        x2.column_mut(7).fill(0.0);
        let c0 = x2.column(0).to_owned();
        x2.column_mut(8).assign(&c0);
        assert!(SpendModel::fit(&x2, &spend).is_ok());
    }
}
