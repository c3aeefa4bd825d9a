//! The model file (`model.json`): everything `score` needs to reproduce a run's scores, in
//! readable JSON — churn features, scaling, coefficients and intercept, the BTYD and
//! Gamma-Gamma parameters, the windows, the horizon, and the run's evaluation metrics.

use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::models::value::ValueModel;
use crate::models::ChurnModel;

/// Errors reading a model file.
#[derive(Debug, thiserror::Error)]
pub enum SavedModelError {
    #[error("{path}: cannot read model")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a churnclv model file: {message}")]
    Parse { path: String, message: String },
}

/// The windows the churn model was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingWindow {
    pub features_before: NaiveDate,
    pub labels_from: NaiveDate,
    pub labels_until: NaiveDate,
}

/// A saved model; what is saved is exactly what is scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedModel {
    pub crate_version: String,
    pub run_id: String,
    pub horizon_days: u32,
    pub trained_on: TrainingWindow,
    /// The as-of date the run scored with it.
    pub scores_as_of: NaiveDate,
    pub churn: ChurnModel,
    pub value: ValueModel,
    /// The run's out-of-time metrics (as in metrics.json), for reading; not used to score.
    pub metrics: serde_json::Value,
}

impl SavedModel {
    /// Reads and checks a model file.
    pub fn load(path: &Path) -> Result<SavedModel, SavedModelError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SavedModelError::Read {
            path: name.clone(),
            source,
        })?;
        let model: SavedModel =
            serde_json::from_str(&text).map_err(|e| SavedModelError::Parse {
                path: name.clone(),
                message: e.to_string(),
            })?;
        model
            .value
            .transactions
            .validate()
            .map_err(|e| SavedModelError::Parse {
                path: name.clone(),
                message: e.to_string(),
            })?;
        if model.churn.coefficients.len() != model.churn.features.len() {
            return Err(SavedModelError::Parse {
                path: name,
                message: format!(
                    "{} coefficients for {} features",
                    model.churn.coefficients.len(),
                    model.churn.features.len()
                ),
            });
        }
        Ok(model)
    }
}
