//! churnclv: churn and customer-lifetime-value scoring from Parquet event histories.
//!
//! The job is a library of stages ([`stages`]): [`plan`] turns what the user typed into a
//! checked plan, then features → train → score → publish, each runnable on its own from
//! files, `run` being all four in one process. Beneath them: [`io`] (read and validate
//! events, write outputs, publish partitions atomically) → [`features`] (per-customer
//! accumulators, rayon; the feature table, the stages' file contract) → [`labels`] (time
//! windows) → [`models`] (churn, BTYD, spend; the saved model) → [`evaluate`] (metrics) and
//! [`segment`] (segments and engagement tiers); [`report`] draws the page; [`sql`] writes the
//! feature stage as Spark SQL for the scale-out path (`spark/`).
//! [`generate`] makes synthetic histories with known ground truth; [`config`] is the one
//! validated configuration struct; [`time`] owns the time units and date conversions;
//! [`batch`] is what the reader hands the accumulators; [`error`] the one error type,
//! carrying its exit code;
//! [`diag`] puts an error on one line for the operator. The command-line front end
//! (`src/cmd/`) only turns arguments into a plan, calls the stages and prints.
#![forbid(unsafe_code)]

pub mod batch;
pub mod config;
pub mod cuts;
pub mod diag;
pub mod error;
pub mod evaluate;
pub mod events;
pub mod features;
pub mod generate;
pub mod io;
pub mod labels;
pub mod memory;
pub mod models;
pub mod plan;
pub mod report;
pub mod segment;
pub mod select;
pub mod sql;
pub mod stages;
pub mod time;

pub use config::{Config, ConfigError};
pub use error::{Error, Result};
pub use events::EventKind;
pub use labels::Cutoffs;
