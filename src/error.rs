//! The crate's one error type: every stage returns [`Error`], and each error knows its exit
//! code ([`Error::exit_code`]), so the binary maps `err.exit_code()` and never inspects types.
//!
//! Exit codes (docs/operations.md): **2** bad input, config, usage, a held lock, an unusable
//! model or feature-table file, a foreign folder where churnclv must write; **3** a quality
//! gate failed (nothing published); **1** anything else (an internal error). Each module keeps
//! its own `thiserror` enum carrying the file, column, row or value; this type wraps them
//! `transparent`ly, so the one-line message (src/diag.rs) reads exactly as the module's error
//! and its causes. [`Error::Context`] puts a prefix in front (`--as-of: invalid date …`,
//! `final churn model: …`) and keeps the exit code of what it wraps.

use crate::config::ConfigError;
use crate::features::table::FeatureTableError;
use crate::generate::GenerateError;
use crate::io::target::TargetError;
use crate::io::{InputError, LockError, OutputError, PublishError};
use crate::models::btyd::BtydError;
use crate::models::{ModelError, SavedModelError};
use crate::report::ReportError;
use crate::sql::SqlError;
use crate::stages::score::ScoreError;
use crate::stages::sharded::ShardedError;

/// Every error a stage or subcommand can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event input: missing, unreadable, wrong columns, no usable row (2).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The config file, `--map`, `--horizon`, a date flag (2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A command line that parses but asks for something impossible (2).
    #[error("{0}")]
    Usage(String),
    /// An output path that can never be written (2).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Another run holds the output folder (2).
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Staging or publishing a partition: 2 when something churnclv did not make is in the
    /// way, 1 otherwise.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A model file that cannot be used (2).
    #[error(transparent)]
    SavedModel(#[from] SavedModelError),
    /// A feature-table file without the documented schema (2).
    #[error(transparent)]
    FeatureTable(#[from] FeatureTableError),
    /// A raw-keys, cut-point or score-part file of scoring in shards (2).
    #[error(transparent)]
    Sharded(#[from] ShardedError),
    /// `generate` parameters (2); its scratch files (1).
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// A BTYD fit: 2 when the data or the options make it impossible, 1 otherwise.
    #[error(transparent)]
    Btyd(#[from] BtydError),
    /// The churn model: 2 when the data has no customers or one class, 1 otherwise.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// `churnclv sql`: 2 for a flag naming a wrong column, 1 for a column without definition.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// A quality gate failed; nothing was published (3).
    #[error("quality gate failed: {0}")]
    QualityGate(String),
    /// Writing an output file (1).
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Scoring produced something unusable (1; `score` maps a saved model's to 2).
    #[error(transparent)]
    Score(#[from] ScoreError),
    /// Drawing the report (1).
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Building an Arrow table (1).
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A file operation outside the modules' own errors (1).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Serialising JSON (1).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An invariant that does not hold (1).
    #[error("{0}")]
    Internal(String),
    /// What was being done when `source` happened; the exit code is `source`'s.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// 2 for bad input / config / usage / lock / model or table file / foreign folder, 3 for a
    /// failed quality gate, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_)
            | Error::Config(_)
            | Error::Usage(_)
            | Error::Target(_)
            | Error::Lock(_)
            | Error::SavedModel(_)
            | Error::FeatureTable(_)
            | Error::Sharded(_) => 2,
            Error::Generate(e) => match e {
                // The generator's own scratch files, not the user's parameters.
                GenerateError::Scratch { .. } | GenerateError::ScratchRecord { .. } => 1,
                _ => 2,
            },
            Error::Publish(e) => match e {
                PublishError::NotOurs { .. } => 2,
                _ => 1,
            },
            Error::Btyd(e) => match e {
                BtydError::Empty
                | BtydError::InvalidCustomer { .. }
                | BtydError::InvalidOptions(_) => 2,
                _ => 1,
            },
            Error::Model(e) => match e {
                ModelError::OneClass { .. } | ModelError::Empty { .. } => 2,
                _ => 1,
            },
            Error::Sql(e) => match e {
                SqlError::Undefined(_) => 1,
                _ => 2,
            },
            Error::QualityGate(_) => 3,
            Error::Output(_)
            | Error::Score(_)
            | Error::Report(_)
            | Error::Arrow(_)
            | Error::Json(_)
            | Error::Io(_)
            | Error::Internal(_) => 1,
            Error::Context { source, .. } => source.exit_code(),
        }
    }
}

/// `.context("…")` on any result whose error converts into [`Error`]: the message goes in
/// front of the error on the final line, the exit code stays the error's.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T, Error>;
    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T, Error>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T, Error> {
        self.map_err(|e| Error::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T, Error> {
        self.map_err(|e| Error::Context {
            context: context().into(),
            source: Box::new(e.into()),
        })
    }
}

/// Results of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::error_line;

    #[test]
    fn context_keeps_the_exit_code_and_reads_as_one_line() {
        let e: Result<()> = Err(ConfigError::Date("x".into())).context("--as-of");
        let e = e.err().map(|e| (e.exit_code(), error_line(&e)));
        assert_eq!(
            e,
            Some((
                2,
                "--as-of: invalid date 'x': expected YYYY-MM-DD".to_string()
            ))
        );
        let gate = Error::QualityGate("churn ROC-AUC 0.5 is below --min-auc 0.9".into());
        assert_eq!(gate.exit_code(), 3);
        let nested: Result<()> = Err(gate).context("run");
        assert_eq!(nested.err().map(|e| e.exit_code()), Some(3));
        assert_eq!(Error::Internal("x".into()).exit_code(), 1);
        assert_eq!(
            Error::from(PublishError::NotOurs { path: "d".into() }).exit_code(),
            2
        );
        assert_eq!(Error::from(BtydError::Empty).exit_code(), 2);
        assert_eq!(
            Error::from(BtydError::InvalidParams("p".into())).exit_code(),
            1
        );
    }
}
