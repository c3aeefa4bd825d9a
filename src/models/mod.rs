//! Models fitted on the features: [`churn`] (linfa-logistic). Fitted models are plain serde
//! structs — what is saved is exactly what is scored.

pub mod churn;

pub use churn::{ChurnModel, ChurnParams, ModelError};
