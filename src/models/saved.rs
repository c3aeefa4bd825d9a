//! The model file (`model.json`): everything `score` needs to reproduce a run's scores, in
//! readable JSON — churn features, scaling, coefficients and intercept, the BTYD and
//! Gamma-Gamma parameters, the windows, the horizon, and the run's evaluation metrics.
//!
//! A model file is input like any other: [`SavedModel::load`] trusts nothing in it. It checks
//! the format version first (so a file from another format is named as such, not as a pile of
//! odd fields), then parses every field with its JSON path (unknown fields are errors, so a typo
//! never silently falls back to a default), then checks each field's domain with the checks
//! that live next to the types ([`ChurnModel::validate`], [`ValueModel::validate`]). The first
//! bad field is reported as `{file}: invalid model: {json path}: {what it must be} (got …)`.
//! The rules are listed in `docs/models.md` ("The model file").

use std::fmt::Display;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::config::HORIZON_DAYS;
use crate::models::spend_champion::SpendChampion;
use crate::models::value::ValueModel;
use crate::models::ChurnModel;

/// The model-file format this build writes and reads. Bump it whenever a field is added,
/// removed or changes meaning; a build reads only its own format.
pub const FORMAT_VERSION: u32 = 4;

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
    /// A field that does not parse or is outside its domain.
    #[error("{path}: invalid model: {field}")]
    Invalid { path: String, field: InvalidField },
    /// The model passed every check but still gave a score that is not a number in its range
    /// (e.g. extreme but finite coefficients overflowing): nothing is published.
    #[error("{path}: the model gives unusable scores: {message}")]
    Unusable { path: String, message: String },
}

/// One bad field of a model: its JSON path (relative to the object that was checked) and what
/// is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    /// JSON path, e.g. `churn.features[3].std`.
    pub field: String,
    /// What the field must be and what it is, e.g. `must be finite and > 0 (got 0)`.
    pub problem: String,
}

impl InvalidField {
    /// `{field}: {expected} (got {got})`.
    pub fn new(field: impl Into<String>, expected: impl Display, got: impl Display) -> Self {
        InvalidField {
            field: field.into(),
            problem: format!("{expected} (got {got})"),
        }
    }

    /// The same field seen from the enclosing object: `within("churn")` turns
    /// `features[3].std` into `churn.features[3].std`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// The windows the churn model was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingWindow {
    pub features_before: NaiveDate,
    pub labels_from: NaiveDate,
    pub labels_until: NaiveDate,
}

/// A saved model; what is saved is exactly what is scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedModel {
    /// [`FORMAT_VERSION`] of the build that wrote it.
    pub format_version: u32,
    pub crate_version: String,
    pub run_id: String,
    pub horizon_days: u32,
    pub trained_on: TrainingWindow,
    /// The as-of date the run scored with it.
    pub scores_as_of: NaiveDate,
    pub churn: ChurnModel,
    pub value: ValueModel,
    /// The supervised spend model that scores CLV when it won the run's value selection
    /// (absent: BTYD × Gamma-Gamma scores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_spend: Option<SpendChampion>,
    /// The run's out-of-time metrics (as in metrics.json), for reading; not used to score.
    pub metrics: serde_json::Value,
}

/// The first two fields read on their own, so that a file of another format is reported as
/// such before its other fields are.
#[derive(Deserialize)]
struct Header {
    format_version: Option<serde_json::Value>,
}

/// Longest run id accepted (a run writes `YYYYMMDD-` and 12 hex digits).
const MAX_RUN_ID: usize = 64;

impl SavedModel {
    /// Reads and checks a model file; the churn features come back in this build's
    /// [`FEATURES`](crate::models::churn::FEATURES) order (they are matched by name).
    pub fn load(path: &Path) -> Result<SavedModel, SavedModelError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SavedModelError::Read {
            path: name.clone(),
            source,
        })?;
        SavedModel::from_json(&text).map_err(|e| match e {
            Problem::Parse(message) => SavedModelError::Parse {
                path: name,
                message,
            },
            Problem::Field(field) => SavedModelError::Invalid { path: name, field },
        })
    }

    /// Parses and checks model JSON (see the module doc for the order of the checks).
    fn from_json(text: &str) -> Result<SavedModel, Problem> {
        // A file that is not JSON at all falls through to the full parse, whose message says
        // where it stops being JSON (with the field it was in).
        if let Ok(header) = serde_json::from_str::<Header>(text) {
            check_format(header.format_version.as_ref())?;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let model: SavedModel = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            if field == "." {
                Problem::Parse(message)
            } else {
                Problem::Field(InvalidField {
                    field,
                    problem: message,
                })
            }
        })?;
        de.end().map_err(|e| Problem::Parse(e.to_string()))?;
        model.validate().map_err(Problem::Field)?;
        Ok(SavedModel {
            churn: model.churn.in_feature_order(),
            ..model
        })
    }

    /// Checks every field used to score (the format version is checked before parsing);
    /// returns the first bad one.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.format_version != FORMAT_VERSION {
            return Err(format_mismatch(self.format_version));
        }
        check_crate_version(&self.crate_version)?;
        check_run_id(&self.run_id)?;
        if !HORIZON_DAYS.contains(&self.horizon_days) {
            return Err(InvalidField::new(
                "horizon_days",
                format!(
                    "must be {} to {} days, as --horizon",
                    HORIZON_DAYS.start(),
                    HORIZON_DAYS.end()
                ),
                self.horizon_days,
            ));
        }
        self.check_windows()?;
        self.churn.validate().map_err(|e| e.within("churn"))?;
        self.value.validate().map_err(|e| e.within("value"))?;
        if self.churn.btyd_buy_again.is_some()
            && self.value.transactions.kind == crate::models::btyd::ModelKind::ParetoNbd
        {
            return Err(InvalidField::new(
                "churn.btyd_buy_again",
                "needs value.transactions of kind bgnbd or mbgnbd (P(no purchase) in closed form)",
                self.value.transactions.kind.key(),
            ));
        }
        if let Some(s) = &self.value_spend {
            s.validate().map_err(|e| e.within("value_spend"))?;
        }
        Ok(())
    }

    /// `features_before <= labels_from < labels_until <= scores_as_of`, and the label window
    /// is the horizon: the churn model predicts churn over exactly that many days, so a
    /// horizon edited on its own would publish probabilities for another window.
    fn check_windows(&self) -> Result<(), InvalidField> {
        let w = &self.trained_on;
        if w.features_before > w.labels_from {
            return Err(InvalidField::new(
                "trained_on.features_before",
                format!(
                    "must be on or before trained_on.labels_from {}",
                    w.labels_from
                ),
                w.features_before,
            ));
        }
        if w.labels_until <= w.labels_from {
            return Err(InvalidField::new(
                "trained_on.labels_until",
                format!("must be after trained_on.labels_from {}", w.labels_from),
                w.labels_until,
            ));
        }
        if self.scores_as_of < w.labels_until {
            return Err(InvalidField::new(
                "scores_as_of",
                format!(
                    "must be on or after trained_on.labels_until {}",
                    w.labels_until
                ),
                self.scores_as_of,
            ));
        }
        let window = (w.labels_until - w.labels_from).num_days();
        if window != i64::from(self.horizon_days) {
            return Err(InvalidField::new(
                "horizon_days",
                format!(
                    "must equal the churn label window trained_on.labels_from {} .. labels_until {} ({window} days)",
                    w.labels_from, w.labels_until
                ),
                self.horizon_days,
            ));
        }
        Ok(())
    }
}

/// Why model JSON was refused.
enum Problem {
    /// Not a model file (not JSON, no format version).
    Parse(String),
    /// A model file with a bad field.
    Field(InvalidField),
}

fn format_mismatch(got: impl Display) -> InvalidField {
    InvalidField::new(
        "format_version",
        format!("this build reads model files of format_version {FORMAT_VERSION} only; rerun `churnclv run` with this build to write one"),
        got,
    )
}

/// The format version, read before anything else. Missing: not a model file (or one written
/// before versions existed).
fn check_format(v: Option<&serde_json::Value>) -> Result<(), Problem> {
    match v {
        None => Err(Problem::Parse(format!(
            "missing field `format_version` (this build reads model files of format_version {FORMAT_VERSION}, written by `churnclv run` {})",
            compatible_series()
        ))),
        Some(v) if v.as_u64() == Some(u64::from(FORMAT_VERSION)) => Ok(()),
        Some(v) => Err(Problem::Field(format_mismatch(v))),
    }
}

/// The builds whose models this build reads: same major version, and for 0.x the same minor
/// (Cargo's compatibility rule, applied both ways: a model from a later patch release is read,
/// one from another minor release of 0.x is not, since feature definitions may change there).
fn compatible(model: &semver::Version, build: &semver::Version) -> bool {
    model.major == build.major
        && (build.major > 0 || model.minor == build.minor)
        && (build.major > 0 || build.minor > 0 || model.patch == build.patch)
}

/// `0.1.x` for this build: the versions [`compatible`] accepts, for messages.
fn compatible_series() -> String {
    match semver::Version::parse(env!("CARGO_PKG_VERSION")) {
        Ok(v) if v.major > 0 => format!("{}.x", v.major),
        Ok(v) if v.minor > 0 => format!("0.{}.x", v.minor),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

fn check_crate_version(text: &str) -> Result<(), InvalidField> {
    let build = semver::Version::parse(env!("CARGO_PKG_VERSION")).map_err(|e| {
        InvalidField::new(
            "crate_version",
            "(this build's own version does not parse)",
            e,
        )
    })?;
    let expected = format!(
        "must be a churnclv version this build ({build}) reads: {}",
        compatible_series()
    );
    match semver::Version::parse(text) {
        Ok(model) if compatible(&model, &build) => Ok(()),
        _ => Err(InvalidField::new(
            "crate_version",
            expected,
            format_args!("{text:?}"),
        )),
    }
}

/// The run id goes into the staging folder name and the `model_version` column: letters,
/// digits, `-`, `_`, `.`, not starting with `.`, at most [`MAX_RUN_ID`] characters.
fn check_run_id(id: &str) -> Result<(), InvalidField> {
    let ok = !id.is_empty()
        && id.len() <= MAX_RUN_ID
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidField::new(
            "run_id",
            format!(
                "must be 1 to {MAX_RUN_ID} letters, digits, '-', '_' or '.', not starting with '.'"
            ),
            format_args!("{id:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn crate_compatibility_is_cargos_rule_both_ways() {
        let build = v("0.1.3");
        for (model, ok) in [
            ("0.1.0", true),
            ("0.1.3", true),
            ("0.1.9", true),
            ("0.1.0-rc.1", true),
            ("0.2.0", false),
            ("0.0.9", false),
            ("1.1.3", false),
        ] {
            assert_eq!(compatible(&v(model), &build), ok, "{model}");
        }
        let build = v("2.4.0");
        for (model, ok) in [("2.0.0", true), ("2.9.1", true), ("1.4.0", false)] {
            assert_eq!(compatible(&v(model), &build), ok, "{model}");
        }
        assert!(compatible(&v("0.0.4"), &v("0.0.4")));
        assert!(!compatible(&v("0.0.4"), &v("0.0.5")));
    }

    #[test]
    fn run_ids_that_could_leave_the_output_folder_are_refused() {
        assert_eq!(check_run_id("20240205-0123456789ab"), Ok(()));
        for bad in ["", "../x", "a/b", ".hidden", "a b", "é", &"x".repeat(65)] {
            assert_eq!(
                check_run_id(bad).map_err(|e| e.field),
                Err("run_id".to_string()),
                "{bad}"
            );
        }
    }

    #[test]
    fn within_builds_json_paths() {
        let e = InvalidField::new("features[3].std", "must be > 0", 0);
        assert_eq!(
            e.within("churn").to_string(),
            "churn.features[3].std: must be > 0 (got 0)"
        );
        let e = InvalidField::new("[2]", "x", 1).within("coefficients");
        assert_eq!(e.field, "coefficients[2]");
    }
}
