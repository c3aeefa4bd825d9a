//! The supervised spend model that won the value selection of a run (chosen on the validation
//! window, see `stages::value_select`), as saved in `model.json` (`value_spend`) and applied by
//! scoring: it predicts each buyer's net spend over the next H days, which scoring turns into a
//! discounted CLV with the BTYD purchase timing ([`SpendChampion::clv`]).

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::models::boost::{Ensemble, Objective};
use crate::models::churn::{standardise_logged, ChurnModel, ChurnParams, FeatureScaling};
use crate::models::glm::SpendGlm;
use crate::models::saved::InvalidField;
use crate::models::spend::SpendModel;
use crate::models::ModelError;

/// One of the supervised spend models (externally tagged in JSON: `{"poisson_glm": {…}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendChampion {
    /// Least squares on `ln(1 + spend)` with Duan's smearing.
    Log1pOls(SpendModel),
    /// Log-link GLM, Poisson deviance.
    PoissonGlm(SpendGlm),
    /// Log-link GLM, Tweedie deviance (power in (1, 2)).
    TweedieGlm(SpendGlm),
    /// Gradient-boosted trees, Tweedie deviance, on the standardised inputs.
    BoostedTweedie(BoostedSpend),
}

/// A boosted spend model: the inputs are standardised with `features` (the scaling of the
/// window it was fitted on; trees only compare, so any monotone scale would do, and this one
/// is shared with the churn fit), then the ensemble's `exp(margin)` is the expected spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoostedSpend {
    pub features: Vec<FeatureScaling>,
    pub ensemble: Ensemble,
}

impl SpendChampion {
    /// Name used in metrics.json and the logs.
    pub fn name(&self) -> &'static str {
        match self {
            SpendChampion::Log1pOls(_) => "log1p_ols",
            SpendChampion::PoissonGlm(_) => "poisson_glm",
            SpendChampion::TweedieGlm(_) => "tweedie_glm",
            SpendChampion::BoostedTweedie(_) => "boosted_tweedie",
        }
    }

    fn scaling(&self) -> &[FeatureScaling] {
        match self {
            SpendChampion::Log1pOls(m) => &m.features,
            SpendChampion::PoissonGlm(m) | SpendChampion::TweedieGlm(m) => &m.features,
            SpendChampion::BoostedTweedie(m) => &m.features,
        }
    }

    /// Scaling, coefficients and intercept of a linear model; for the trees, the scaling with
    /// zero coefficients (so the scaling is checked the same way).
    fn linear(&self) -> (&[FeatureScaling], Vec<f64>, f64) {
        match self {
            SpendChampion::Log1pOls(m) => (&m.features, m.coefficients.clone(), m.intercept),
            SpendChampion::PoissonGlm(m) | SpendChampion::TweedieGlm(m) => {
                (&m.features, m.coefficients.clone(), m.intercept)
            }
            SpendChampion::BoostedTweedie(m) => (&m.features, vec![0.0; m.features.len()], 0.0),
        }
    }

    /// Expected net spend over the horizon for rows standardised with this model's scaling.
    pub fn predict_standardised(&self, z: &Array2<f64>) -> Vec<f64> {
        match self {
            SpendChampion::Log1pOls(m) => m.predict_standardised(z),
            SpendChampion::PoissonGlm(m) | SpendChampion::TweedieGlm(m) => {
                m.predict_standardised(z)
            }
            SpendChampion::BoostedTweedie(m) => m.ensemble.predict(z),
        }
    }

    /// Expected net spend over the horizon of rows of logged inputs
    /// ([`crate::models::churn::logged_matrix`]).
    pub fn predict_logged(&self, logged: &Array2<f64>) -> Result<Vec<f64>, ModelError> {
        Ok(self.predict_standardised(&standardise_logged(self.scaling(), logged)?))
    }

    /// The discounted CLV of a buyer whose expected spend over the horizon is `spend`: the
    /// spend spread over the horizon as the BTYD model spreads the buyer's purchases, so it is
    /// discounted by the same factor as the purchases (`discounted / expected` purchases of
    /// `FittedTransactions::discounted_purchases`; 1 when no purchase is expected).
    pub fn clv(spend: f64, expected_purchases: f64, discounted_purchases: f64) -> f64 {
        if expected_purchases > 0.0 && discounted_purchases.is_finite() {
            spend * (discounted_purchases / expected_purchases)
        } else {
            spend
        }
    }

    /// Checks every field used to score (JSON paths relative to `value_spend.<kind>`): the
    /// scaling and coefficients as the churn model's are checked, the Tweedie power, the
    /// smearing factor.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let (features, coefficients, intercept) = self.linear();
        let as_churn = ChurnModel {
            features: features.to_vec(),
            coefficients,
            intercept,
            params: ChurnParams {
                alpha: 0.0,
                max_iterations: 0,
                timeout_seconds: 0,
                balanced: false,
            },
            train_rows: 0,
            train_churn_rate: 0.0,
            std_errors: None,
            boosted: None,
            btyd_buy_again: None,
        };
        as_churn.validate().map_err(|e| e.within(self.name()))?;
        match self {
            SpendChampion::Log1pOls(m) if !(m.smearing.is_finite() && m.smearing > 0.0) => Err(
                InvalidField::new("log1p_ols.smearing", "must be finite and > 0", m.smearing),
            ),
            SpendChampion::PoissonGlm(m) if m.power != 1.0 => Err(InvalidField::new(
                "poisson_glm.power",
                "must be 1 (Poisson)",
                m.power,
            )),
            SpendChampion::TweedieGlm(m) if !(m.power > 1.0 && m.power < 2.0) => Err(
                InvalidField::new("tweedie_glm.power", "must be in (1, 2)", m.power),
            ),
            SpendChampion::BoostedTweedie(m) => {
                let names: Vec<&str> = m.features.iter().map(|f| f.name.as_str()).collect();
                m.ensemble
                    .validate(&names)
                    .map_err(|e| e.within("boosted_tweedie.ensemble"))?;
                match m.ensemble.objective {
                    Objective::Tweedie { .. } => Ok(()),
                    Objective::Logistic => Err(InvalidField::new(
                        "boosted_tweedie.ensemble.objective",
                        "must be tweedie",
                        "logistic",
                    )),
                }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clv_is_the_horizon_spend_discounted_like_the_purchases() {
        // 3 purchases expected, worth 2.9 after monthly discounting: 100 of spend is 96.67.
        let clv = SpendChampion::clv(100.0, 3.0, 2.9);
        assert!((clv - 100.0 * 2.9 / 3.0).abs() < 1e-12, "{clv}");
        // No purchase expected: nothing to time the spend by, left undiscounted.
        assert_eq!(SpendChampion::clv(5.0, 0.0, 0.0), 5.0);
    }
}
