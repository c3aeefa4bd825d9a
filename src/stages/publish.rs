//! The publish stage: **one** partition writer and **one** [`Manifest`] type for every
//! subcommand that publishes (`run`, `score`), through `io::publish`'s lock, marked staging
//! folder and one-step swap (whose guarantees are in docs/operations.md), plus the two model
//! outputs that are plain files (`run --save-model`, `train --out`).
//!
//! A partition holds `scores.parquet`, `features.parquet`, `rejects.parquet` (when events were
//! read), `metrics.json` and `report.html` (when a model was trained), `model.json` and
//! `manifest.json` (written last before `_SUCCESS`): the manifest lists every other file with
//! its size and SHA-256, the inputs, the row accounting, and the schema of each table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use chrono::NaiveDate;
use serde::Serialize;

use crate::config::Config;
use crate::error::{Context, Result};
use crate::features::FeatureTable;
use crate::io::discover::Skipped;
use crate::io::output::{file_digest, write_bytes, write_json, write_parquet_direct};
use crate::io::read::rejects_schema;
use crate::io::{InputSet, ParquetOptions, RunLock, ScanStats, Staging};
use crate::labels::Cutoffs;
use crate::models::SavedModel;
use crate::stages::metrics::Metrics;
use crate::stages::score::scores_schema;

/// A file read, as the manifest lists it.
#[derive(Debug, Clone, Serialize)]
pub struct InputEntry {
    /// As given (found from --events, or the flag's path).
    pub path: String,
    /// Absolute, links resolved: what was read.
    pub canonical: String,
    pub bytes: u64,
    pub rows: u64,
    pub row_groups: usize,
}

impl InputEntry {
    /// The manifest entries of the event files.
    pub fn of_events(inputs: &InputSet) -> Vec<InputEntry> {
        inputs
            .files
            .iter()
            .map(|f| InputEntry {
                path: f.path.display().to_string(),
                canonical: f.canonical.display().to_string(),
                bytes: f.bytes,
                rows: f.rows,
                row_groups: f.row_groups,
            })
            .collect()
    }
}

/// An output file of a partition.
#[derive(Debug, Serialize)]
pub struct OutputFile {
    pub file: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub bytes: u64,
    pub sha256: String,
}

/// One column of a table, as the manifest describes it.
#[derive(Debug, Serialize)]
pub struct ColumnDesc {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// The columns of a schema.
pub fn describe(schema: &Schema) -> Vec<ColumnDesc> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnDesc {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// `manifest.json`: what produced a partition and what it holds. The same type for every
/// subcommand that publishes; fields that do not apply are left out.
#[derive(Serialize)]
pub struct Manifest<'a> {
    /// The subcommand that wrote the partition (`run`, `score`).
    pub command: &'static str,
    pub run_id: &'a str,
    pub crate_version: &'static str,
    pub created_at: String,
    pub as_of: NaiveDate,
    /// The run's windows (`run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cutoffs: Option<Cutoffs>,
    /// The model file used (`score`): its path, the run that fitted it, its horizon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub horizon_days: Option<u32>,
    pub inputs: Vec<InputEntry>,
    /// Folder links not followed and second paths to a file already read.
    pub inputs_skipped: &'a [Skipped],
    /// The scan's row accounting (when events were read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<&'a ScanStats>,
    /// The effective configuration (`run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<&'a Config>,
    pub outputs: Vec<OutputFile>,
    pub schema: BTreeMap<&'static str, Vec<ColumnDesc>>,
}

/// What produced a partition: everything of its manifest but the outputs.
pub struct Provenance<'a> {
    pub command: &'static str,
    pub run_id: &'a str,
    pub cutoffs: Option<Cutoffs>,
    /// (model file path, the run that fitted it) for `score`.
    pub model: Option<(String, &'a str)>,
    pub inputs: Vec<InputEntry>,
    pub inputs_skipped: &'a [Skipped],
    pub rows: Option<&'a ScanStats>,
    pub config: Option<&'a Config>,
}

/// The files of one partition.
pub struct Partition<'a> {
    pub scores: &'a RecordBatch,
    /// Written without label columns, with its cutoff in the metadata.
    pub features: &'a FeatureTable,
    /// The rejected input rows (when events were read).
    pub rejects: Option<&'a [RecordBatch]>,
    pub metrics: Option<&'a Metrics<'a>>,
    pub report: Option<&'a str>,
    pub model: &'a SavedModel,
}

/// Writes the partition `as_of=D` into a staging folder and publishes it (`_SUCCESS` last,
/// swapped into place in one step). Returns its final path.
pub fn publish(
    lock: &RunLock,
    as_of: NaiveDate,
    from: Provenance<'_>,
    files: Partition<'_>,
) -> Result<PathBuf> {
    let staging = lock.stage(&format!("as_of={as_of}"), from.run_id)?;
    let plain = ParquetOptions::default();
    let mut written: Vec<(&'static str, u64)> = Vec::new();
    let mut schemas = BTreeMap::new();
    written.push((
        "scores.parquet",
        write_parquet_direct(
            &staging.path("scores.parquet"),
            scores_schema(),
            std::slice::from_ref(files.scores),
            &plain,
        )?,
    ));
    schemas.insert("scores.parquet", describe(&scores_schema()));
    let features = files.features.features_batch()?;
    written.push((
        "features.parquet",
        write_parquet_direct(
            &staging.path("features.parquet"),
            features.schema(),
            std::slice::from_ref(&features),
            &FeatureTable::parquet_options(files.features.cutoff, None),
        )?,
    ));
    schemas.insert("features.parquet", describe(&features.schema()));
    if let Some(rejects) = files.rejects {
        written.push((
            "rejects.parquet",
            write_parquet_direct(
                &staging.path("rejects.parquet"),
                rejects_schema(),
                rejects,
                &plain,
            )?,
        ));
        schemas.insert("rejects.parquet", describe(&rejects_schema()));
    }
    let mut names: Vec<&'static str> = written.iter().map(|(n, _)| *n).collect();
    if let Some(metrics) = files.metrics {
        write_json(&staging.path("metrics.json"), metrics)?;
        names.push("metrics.json");
    }
    if let Some(page) = files.report {
        write_bytes(&staging.path("report.html"), page.as_bytes())?;
    }
    write_json(&staging.path("model.json"), files.model)?;
    names.push("model.json");
    if files.report.is_some() {
        names.push("report.html");
    }
    let (model, model_run_id) = match from.model {
        Some((path, run)) => (Some(path), Some(run)),
        None => (None, None),
    };
    let manifest = Manifest {
        command: from.command,
        run_id: from.run_id,
        crate_version: env!("CARGO_PKG_VERSION"),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        as_of,
        cutoffs: from.cutoffs,
        horizon_days: model_run_id.map(|_| files.model.horizon_days),
        model,
        model_run_id,
        inputs: from.inputs,
        inputs_skipped: from.inputs_skipped,
        rows: from.rows,
        config: from.config,
        outputs: output_entries(&staging, &names, &written)?,
        schema: schemas,
    };
    write_json(&staging.path("manifest.json"), &manifest)?;
    Ok(staging.publish()?)
}

/// Size, SHA-256 and (for tables) row count of each named file of a staging folder.
fn output_entries(
    staging: &Staging<'_>,
    names: &[&'static str],
    rows: &[(&'static str, u64)],
) -> Result<Vec<OutputFile>> {
    names
        .iter()
        .map(|&name| {
            let (sha256, bytes) = file_digest(&staging.path(name))?;
            Ok(OutputFile {
                file: name,
                rows: rows.iter().find(|(n, _)| *n == name).map(|(_, r)| *r),
                bytes,
                sha256,
            })
        })
        .collect()
}

/// Writes `bytes` as `dir/name` through a temporary file renamed into place (`flag` names the
/// folder in errors).
fn write_file_atomic(flag: &str, dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("{flag} {}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    write_bytes(&tmp, bytes)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("{flag} {}", dir.display()))?;
    Ok(path)
}

/// `run --save-model MODELS`: a copy of the published `model.json` as
/// `MODELS/<run_id>/model.json`.
pub fn save_model_copy(published: &Path, models: &Path, run_id: &str) -> Result<PathBuf> {
    let from = published.join("model.json");
    let bytes = std::fs::read(&from).with_context(|| published.display().to_string())?;
    let path = write_file_atomic("--save-model", &models.join(run_id), "model.json", &bytes)?;
    tracing::info!(stage = "publish", "model saved to {}", path.display());
    Ok(path)
}

/// `train --out MODEL_DIR`: `metrics.json`, then `model.json` (each replaced atomically; the
/// model last, so a model file beside its metrics is always the pair of one training).
pub fn write_model_dir(dir: &Path, metrics: &Metrics<'_>, model: &SavedModel) -> Result<PathBuf> {
    write_file_atomic("--out", dir, "metrics.json", &pretty_json(metrics)?)?;
    write_file_atomic("--out", dir, "model.json", &pretty_json(model)?)
}

/// JSON as `write_json` writes it: pretty, with a final newline.
fn pretty_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text.into_bytes())
}
