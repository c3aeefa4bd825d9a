//! churnclv: churn and customer-lifetime-value scoring from Parquet event histories.
//!
//! Stages, data flowing one way: [`io`] (read and validate events, write outputs atomically)
//! → [`features`] (per-customer accumulators, rayon) → [`labels`] (time windows)
//! → [`models`] (churn, BTYD, spend) → [`evaluate`] (metrics) → [`score`] (the score table)
//! and [`segment`] (segments and engagement tiers).
//! [`generate`] makes synthetic histories with known ground truth; [`config`] is the one
//! validated configuration struct; [`time`] owns the time units and date conversions;
//! [`diag`] puts an error on one line for the operator. The command-line front end lives in
//! `src/cmd/`.
#![forbid(unsafe_code)]

pub mod batch;
pub mod config;
pub mod diag;
pub mod evaluate;
pub mod events;
pub mod features;
pub mod generate;
pub mod io;
pub mod labels;
pub mod models;
pub mod report;
pub mod score;
pub mod segment;
pub mod time;

pub use config::{Config, ConfigError};
pub use events::EventKind;
pub use labels::Cutoffs;
