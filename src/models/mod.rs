//! Models fitted on the features: [`churn`] (logistic regression, [`logistic`]), [`btyd`] (BG/NBD family and
//! Gamma-Gamma, by maximum likelihood) and [`value`] (the BTYD value stage of the pipeline). Fitted models are plain serde
//! structs — what is saved is exactly what is scored.

pub mod boost;
pub mod btyd;
pub mod buy_again;
pub mod churn;
pub mod glm;
pub mod logistic;
pub mod sample;
pub mod saved;
pub mod spend;
pub mod spend_champion;
pub mod value;

pub use churn::{ChurnModel, ChurnParams, ModelError};
pub use saved::{InvalidField, SavedModel, SavedModelError, TrainingWindow, FORMAT_VERSION};
