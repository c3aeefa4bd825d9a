//! Scoring in shards (the scale-out path, docs/scale-out.md): the as-of feature table split
//! into customer buckets, each scored on its own, with the same result as scoring the whole
//! table — in two passes and three file contracts:
//!
//! 1. **pass 1** (per bucket, in parallel): [`raw_keys`] — each customer's rank keys
//!    (−recency, purchase days, monetary total, CLV) → a small *raw* Parquet file
//!    ([`raw_schema`]; `churnclv score --features B --model M --raw R`);
//! 2. **cut points** (once): [`cuts_of_raw`] over every bucket's raw file → `cuts.json`
//!    ([`Cuts`]; `churnclv cuts --raw R… --out cuts.json`), in bounded memory
//!    ([`crate::stages::sharded_cuts`]);
//! 3. **pass 2** (per bucket, in parallel): the bucket scored with the cuts → a *part* of the
//!    score table (`churnclv score … --cuts cuts.json --part P`; the cuts' digest in its
//!    metadata); then `churnclv publish` ([`crate::stages::sharded_publish`]) checks that the
//!    parts cover the feature buckets exactly once, with one model and one set of cuts, and
//!    publishes through the one publisher: the layout, manifest and `_SUCCESS` of `churnclv
//!    score`, in bounded memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use sha2::{Digest, Sha256};

use crate::cuts::Cuts;
use crate::error::{Context, Error, Result};
use crate::features::FeatureTable;
use crate::io::discover::{discover_with, DiscoverOptions};
use crate::io::output::{write_bytes, write_parquet};
use crate::io::ParquetOptions;
use crate::models::SavedModel;
use crate::plan::{Inputs, Plan};
use crate::stages::score::{rank_keys, score_saved_with, Scored};

/// Parquet metadata key of a part: the SHA-256 of the `cuts.json` it was scored with.
pub const CUTS_DIGEST_KEY: &str = "churnclv.cuts_sha256";

/// A raw-keys, cuts or part file that cannot be used (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ShardedError {
    #[error("{flag} {path}: cannot read")]
    Io {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {path}: not a readable Parquet file")]
    Parquet {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{flag} {path}: expected the columns {expected}, found {found}")]
    Columns {
        flag: &'static str,
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{flag} {path}: row {row}: column '{column}' is null")]
    Null {
        flag: &'static str,
        path: PathBuf,
        row: usize,
        column: &'static str,
    },
    #[error("--raw {path}: row {row}: column '{column}' is {value}; expected a finite number")]
    NotFinite {
        path: PathBuf,
        row: usize,
        column: &'static str,
        value: f64,
    },
    #[error("{flag} {path}: row {row}: customer_id '{id}' follows '{previous}': the rows must be in customer_id order, as churnclv writes them")]
    NotSorted {
        flag: &'static str,
        path: PathBuf,
        row: u64,
        id: String,
        previous: String,
    },
    #[error("{flag}: customer '{id}' is in {first} and in {second}")]
    Duplicate {
        flag: &'static str,
        id: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("--cuts {path}: not a cut-point file written by `churnclv cuts`: {message}")]
    CutsFile { path: PathBuf, message: String },
    #[error("--cuts {path}: made with tiers.vip_top_share {cuts}, but the config has {config}")]
    VipShare {
        path: PathBuf,
        cuts: f64,
        config: f64,
    },
    #[error("--scores {path}: no {CUTS_DIGEST_KEY} metadata: not a part written by `churnclv score --cuts … --part`")]
    NotAPart { path: PathBuf },
    #[error("--scores: customer '{id}' {what}")]
    Coverage { id: String, what: &'static str },
    #[error("--scores {path}: {what} is '{found}', expected '{expected}' ({why})")]
    Mismatch {
        path: PathBuf,
        what: &'static str,
        found: String,
        expected: String,
        why: &'static str,
    },
}

/// The raw file of pass 1: a customer's rank keys (`None`: not ranked in that column).
pub fn raw_schema() -> SchemaRef {
    let real = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        real("recency_key"),
        real("frequency_key"),
        real("monetary_key"),
        real("clv"),
    ]))
}

/// Pass 1: the rank keys of a scored bucket (its table and the scores of it).
pub fn raw_keys(set: &FeatureTable, scored: &Scored) -> Result<RecordBatch> {
    let [r, f, m] = rank_keys(set);
    let clv = scored
        .table
        .column_by_name("clv")
        .ok_or_else(|| Error::Internal("the score table has no clv column".into()))?
        .clone();
    let real = |v: Vec<Option<f64>>| -> ArrayRef { Arc::new(Float64Array::from(v)) };
    let ids = StringArray::from_iter_values(set.customer_ids.iter().map(|s| s.as_ref()));
    Ok(RecordBatch::try_new(
        raw_schema(),
        vec![Arc::new(ids), real(r), real(f), real(m), clv],
    )?)
}

/// Writes a pass-1 raw file or a pass-2 part (through a temporary file renamed into place).
pub fn write_table(path: &Path, batch: &RecordBatch, options: &ParquetOptions) -> Result<u64> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    Ok(write_parquet(
        path,
        batch.schema(),
        std::slice::from_ref(batch),
        options,
    )?)
}

/// Opens a Parquet file of `schema`'s columns (names and types; the file's nullability is
/// not checked, the values are) for reading in batches of `batch_rows`, with its key-value
/// metadata.
pub(crate) fn open_reader(
    flag: &'static str,
    path: &Path,
    schema: &Schema,
    batch_rows: usize,
) -> Result<(ParquetRecordBatchReader, Vec<(String, String)>), ShardedError> {
    let parquet = |source| ShardedError::Parquet {
        flag,
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|source| ShardedError::Io {
        flag,
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?;
    let meta: Vec<(String, String)> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let describe = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = builder.schema().clone();
    let same = found.fields().len() == schema.fields().len()
        && found
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if !same {
        return Err(ShardedError::Columns {
            flag,
            path: path.to_path_buf(),
            expected: describe(schema),
            found: describe(&found),
        });
    }
    let reader = builder
        .with_batch_size(batch_rows)
        .build()
        .map_err(parquet)?;
    Ok((reader, meta))
}

/// Reads a whole Parquet file of `schema`'s columns ([`open_reader`]), with its key-value
/// metadata.
pub(crate) fn read_whole(
    flag: &'static str,
    path: &Path,
    schema: &Schema,
) -> Result<(RecordBatch, Vec<(String, String)>), ShardedError> {
    let parquet = |source| ShardedError::Parquet {
        flag,
        path: path.to_path_buf(),
        source,
    };
    let (reader, meta) = open_reader(flag, path, schema, 8192)?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| parquet(e.into()))?;
    let target = Arc::new(schema.clone());
    let batch =
        arrow_select::concat::concat_batches(&target, &batches).map_err(|e| parquet(e.into()))?;
    Ok((batch, meta))
}

/// The cut points of every bucket's raw file (each customer in exactly one, each file in
/// customer_id order as `score --raw` writes it), in bounded memory
/// ([`crate::stages::sharded_cuts`]).
pub fn cuts_of_raw(paths: &[PathBuf], vip_top_share: f64) -> Result<Cuts> {
    use crate::stages::sharded_cuts::{cuts_of_raw_with, BUDGET};
    let (cuts, passes) = cuts_of_raw_with(paths, vip_top_share, BUDGET)?;
    tracing::info!(
        stage = "cuts",
        "{} customers: {} passes over {} raw files, at most {} keys held for sorting",
        cuts.customers,
        passes.scans,
        paths.len(),
        passes.held
    );
    Ok(cuts)
}

/// `cuts.json` as written (pretty JSON; f64 round-trips exactly).
pub fn cuts_json(cuts: &Cuts) -> Result<Vec<u8>> {
    let mut text = serde_json::to_string_pretty(cuts)?;
    text.push('\n');
    Ok(text.into_bytes())
}

/// Writes `cuts.json` (through a temporary file renamed into place).
pub fn write_cuts(path: &Path, cuts: &Cuts) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map_or("cuts.json".into(), |n| n.to_string_lossy())
    ));
    write_bytes(&tmp, &cuts_json(cuts)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("--out {}", path.display()))?;
    Ok(())
}

/// Reads `cuts.json`, checks it was made with the config's VIP share; returns it with its
/// SHA-256 (recorded in each part, compared when publishing).
pub fn read_cuts(path: &Path, vip_top_share: f64) -> Result<(Cuts, String)> {
    let bytes = std::fs::read(path).map_err(|source| ShardedError::Io {
        flag: "--cuts",
        path: path.to_path_buf(),
        source,
    })?;
    let cuts: Cuts = serde_json::from_slice(&bytes).map_err(|e| ShardedError::CutsFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if cuts.vip_top_share != vip_top_share {
        return Err(ShardedError::VipShare {
            path: path.to_path_buf(),
            cuts: cuts.vip_top_share,
            config: vip_top_share,
        }
        .into());
    }
    Ok((cuts, hex(&Sha256::digest(&bytes))))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The run id of a partition scored with a saved model (as `churnclv score`'s).
pub fn score_run_id(as_of: NaiveDate, saved: &SavedModel) -> String {
    format!("{}-score-{}", as_of.format("%Y%m%d"), saved.run_id)
}

/// The feature table and the model of a `score --features … --model …` plan.
fn table_and_model(plan: &Plan) -> Result<(&FeatureTable, &SavedModel)> {
    match (&plan.inputs, &plan.model) {
        (Inputs::Table(table, _), Some(saved)) => Ok((table, saved)),
        _ => Err(Error::Internal(
            "scoring a bucket needs a feature table and a model".into(),
        )),
    }
}

/// Pass 1 (`score --raw FILE`): the bucket of the plan scored on its own, its rank keys
/// written to `out`. Returns the customers written.
pub fn score_raw(plan: &Plan, model_path: &Path, out: &Path) -> Result<u64> {
    let (table, saved) = table_and_model(plan)?;
    let run_id = score_run_id(plan.as_of()?, saved);
    let scored = score_saved_with(table, saved, model_path, &plan.config.tiers, &run_id, None)?;
    write_table(out, &raw_keys(table, &scored)?, &ParquetOptions::default())
}

/// Pass 2 (`score --cuts cuts.json --part FILE`): the bucket of the plan scored with the
/// whole table's cut points, written to `out` (the score table's columns; the cuts' digest
/// in its metadata). Returns the customers written.
pub fn score_part(plan: &Plan, model_path: &Path, cuts_path: &Path, out: &Path) -> Result<u64> {
    let (table, saved) = table_and_model(plan)?;
    let (cuts, digest) = read_cuts(cuts_path, plan.config.tiers.vip_top_share)?;
    let run_id = score_run_id(plan.as_of()?, saved);
    let scored = score_saved_with(
        table,
        saved,
        model_path,
        &plan.config.tiers,
        &run_id,
        Some(&cuts),
    )?;
    let options = ParquetOptions::default().metadata(CUTS_DIGEST_KEY, digest);
    write_table(out, &scored.table, &options)
}

/// The Parquet files of each `spec` (a file, a folder searched recursively, or a glob; names
/// starting with `.` or `_` skipped, as Spark writes `_SUCCESS`), in order, each once.
pub fn files_of(flag: &'static str, specs: &[String]) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for spec in specs {
        let (found, _) = discover_with(spec, DiscoverOptions::default()).context(flag)?;
        if found.is_empty() {
            return Err(Error::Usage(format!(
                "{flag} {spec}: no Parquet file found"
            )));
        }
        files.extend(found.into_iter().map(|f| f.path));
    }
    Ok(files)
}
