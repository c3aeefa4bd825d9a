//! The publish stage: **one** partition writer and **one** [`Manifest`] type for every
//! subcommand that publishes (`run`, `score`), through `io::publish`'s lock, marked staging
//! folder and one-step swap (whose guarantees are in docs/operations.md), plus the two model
//! outputs that are plain files (`run --save-model`, `train --out`).
//!
//! A run publishes one partition per table, each table in a folder of its own so that a
//! warehouse can mount it as it is (hive-partitioned by as-of, `as_of` in the path only):
//! `DIR/scores/as_of=D/scores.parquet`, `DIR/features/as_of=D/features.parquet`,
//! `DIR/rejects/as_of=D/rejects.parquet` (when events were read); then the run partition
//! `DIR/runs/as_of=D/` with `metrics.json` and `report.html` (when a model was trained),
//! `model.json`, `manifest.json` and `_SUCCESS`, swapped in last. The manifest lists every
//! other file of the run by its path relative to DIR, with its size and SHA-256, the inputs,
//! the row accounting, and the schema of each table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema};
use chrono::NaiveDate;
use serde::Serialize;

use crate::config::Config;
use crate::error::{Context, Result};
use crate::features::{features_schema, FeatureTable};
use crate::io::discover::Skipped;
use crate::io::output::{
    file_digest, write_bytes, write_json, write_parquet_direct, write_parquet_direct_from,
    write_parquet_direct_grouped,
};
use crate::io::publish::{publish_run, RUNS};
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

/// An output file of a run.
#[derive(Debug, Serialize)]
pub struct OutputFile {
    /// Its path relative to the output folder (`scores/as_of=D/scores.parquet`).
    pub file: String,
    /// The table it belongs to (Parquet files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<&'static str>,
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
    /// The columns of each table written, by table name (`scores`, `features`, `rejects`).
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
    /// The score table: whole, or streamed in customer_id order (`run` under a memory
    /// budget builds it by slices as it is written).
    pub scores: Table<'a, &'a RecordBatch>,
    /// Written without label columns, with its cutoff in the metadata.
    pub features: &'a FeatureTable,
    /// The rejected input rows (when events were read).
    pub rejects: Option<&'a [RecordBatch]>,
    pub metrics: Option<&'a Metrics<'a>>,
    pub report: Option<&'a str>,
    pub model: &'a SavedModel,
}

/// The partition folder of a table (or of [`RUNS`]) for `as_of`, relative to the output
/// folder: `scores/as_of=D`.
pub fn partition_path(table: &str, as_of: NaiveDate) -> String {
    format!("{table}/{}", partition_name(as_of))
}

fn partition_name(as_of: NaiveDate) -> String {
    format!("as_of={as_of}")
}

/// Writes a run's table partitions and its run partition into staging folders and publishes
/// them (tables first, the run partition with `_SUCCESS` last; see `io::publish_run`).
/// Returns the run partition's final path (`DIR/runs/as_of=D`).
pub fn publish(
    lock: &RunLock,
    as_of: NaiveDate,
    from: Provenance<'_>,
    files: Partition<'_>,
) -> Result<PathBuf> {
    let features = Table::Whole(files.features);
    let rest = Rest {
        rejects: files.rejects,
        metrics: files.metrics,
        report: files.report,
        model: files.model,
    };
    publish_rows(lock, as_of, from, files.scores, features, rest)
}

/// Batches made one at a time (a merge's output).
pub type BatchStream<'a> = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + 'a>;

/// [`publish`] of a score table and a feature table (cutoff `as_of`) streamed in
/// customer_id order (`churnclv publish`: the merge of sorted buckets), never whole in
/// memory: the same files, row groups, manifest and swap, with `model.json` and no rejects,
/// metrics or report.
pub fn publish_streamed<'a>(
    lock: &RunLock,
    as_of: NaiveDate,
    from: Provenance<'_>,
    scores: BatchStream<'a>,
    features: BatchStream<'a>,
    model: &SavedModel,
) -> Result<PathBuf> {
    let rest = Rest {
        rejects: None,
        metrics: None,
        report: None,
        model,
    };
    let (scores, features) = (Table::Stream(scores), Table::Stream(features));
    publish_rows(lock, as_of, from, scores, features, rest)
}

/// A partition's files but the score and feature tables.
struct Rest<'a> {
    rejects: Option<&'a [RecordBatch]>,
    metrics: Option<&'a Metrics<'a>>,
    report: Option<&'a str>,
    model: &'a SavedModel,
}

/// A table's rows: in memory, or streamed (the same file either way: row groups of the
/// same rows, `io::output::write_parquet_direct_grouped`).
pub enum Table<'a, T> {
    Whole(T),
    Stream(BatchStream<'a>),
}

fn publish_rows(
    lock: &RunLock,
    as_of: NaiveDate,
    from: Provenance<'_>,
    scores_rows: Table<'_, &RecordBatch>,
    features_rows: Table<'_, &FeatureTable>,
    files: Rest<'_>,
) -> Result<PathBuf> {
    let part = partition_name(as_of);
    // Every staging folder first: a foreign folder at any partition's name stops the run
    // before the heavy writing.
    let scores = lock.stage("scores", &part, from.run_id)?;
    let features_stage = lock.stage("features", &part, from.run_id)?;
    let rejects_stage = match files.rejects {
        Some(_) => Some(lock.stage("rejects", &part, from.run_id)?),
        None => None,
    };
    let run = lock.stage(RUNS, &part, from.run_id)?;
    let plain = ParquetOptions::default();
    let mut outputs = Vec::new();
    let mut schemas = BTreeMap::new();
    let path = scores.path("scores.parquet");
    let rows = match scores_rows {
        Table::Whole(batch) => {
            write_parquet_direct(&path, scores_schema(), std::slice::from_ref(batch), &plain)?
        }
        Table::Stream(s) => write_parquet_direct_grouped(&path, scores_schema(), s, &plain)?,
    };
    outputs.push(output_entry(
        &scores,
        "scores",
        "scores.parquet",
        as_of,
        Some(rows),
    )?);
    schemas.insert("scores", describe(&scores_schema()));
    let path = features_stage.path("features.parquet");
    let cutoff = match &features_rows {
        Table::Whole(table) => table.cutoff,
        Table::Stream(_) => as_of,
    };
    let options = FeatureTable::parquet_options(cutoff, None);
    let rows = match features_rows {
        Table::Whole(table) => {
            write_parquet_direct_from(&path, features_schema(), table.features_batches(), &options)?
        }
        Table::Stream(s) => write_parquet_direct_grouped(&path, features_schema(), s, &options)?,
    };
    outputs.push(output_entry(
        &features_stage,
        "features",
        "features.parquet",
        as_of,
        Some(rows),
    )?);
    schemas.insert("features", describe(&features_schema()));
    if let (Some(rejects), Some(stage)) = (files.rejects, &rejects_stage) {
        let rows = write_parquet_direct(
            &stage.path("rejects.parquet"),
            rejects_schema(),
            rejects,
            &plain,
        )?;
        outputs.push(output_entry(
            stage,
            "rejects",
            "rejects.parquet",
            as_of,
            Some(rows),
        )?);
        schemas.insert("rejects", describe(&rejects_schema()));
    }
    let mut names = Vec::new();
    if let Some(metrics) = files.metrics {
        write_json(&run.path("metrics.json"), metrics)?;
        names.push("metrics.json");
    }
    if let Some(page) = files.report {
        write_bytes(&run.path("report.html"), page.as_bytes())?;
    }
    write_json(&run.path("model.json"), files.model)?;
    names.push("model.json");
    if files.report.is_some() {
        names.push("report.html");
    }
    for name in names {
        outputs.push(output_entry(&run, RUNS, name, as_of, None)?);
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
        outputs,
        schema: schemas,
    };
    write_json(&run.path("manifest.json"), &manifest)?;
    let mut tables = vec![scores, features_stage];
    // A rerun without events leaves no rejects of an earlier run of this as-of behind.
    let mut obsolete = Vec::new();
    match rejects_stage {
        Some(stage) => tables.push(stage),
        None => obsolete.push(lock.dir().join(partition_path("rejects", as_of))),
    }
    Ok(publish_run(tables, &obsolete, run)?)
}

/// The manifest entry of `name` in a staging folder of `table`: its final path relative to
/// DIR, size, SHA-256 and (for tables) row count.
fn output_entry(
    staging: &Staging<'_>,
    table: &'static str,
    name: &str,
    as_of: NaiveDate,
    rows: Option<u64>,
) -> Result<OutputFile> {
    let (sha256, bytes) = file_digest(&staging.path(name))?;
    Ok(OutputFile {
        file: format!("{}/{name}", partition_path(table, as_of)),
        table: rows.map(|_| table),
        rows,
        bytes,
        sha256,
    })
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
