//! `churnclv score`: apply a saved model to the events as of a date, without training.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use churnclv::features::features_schema;
use churnclv::io::output::{write_json, write_parquet_direct, ParquetOptions};
use churnclv::io::read::rejects_schema;
use churnclv::io::{target, RunLock, ScanStats};
use churnclv::labels::date_us;
use churnclv::models::{SavedModel, SavedModelError};
use churnclv::score::{apply_models, model_version, scores_schema, ScoreError};

use super::features_parquet_options;
use super::progress::Progress;
use super::{
    input_entries, output_entries, output_schemas, read_options, resolve_as_of, scan_histories,
    ColumnDesc, InputArgs, InputEntry, OutputFile, Scanned,
};

/// Score every customer with any event before --as-of using a model.json written by `run`
/// (churn coefficients and scaling, BTYD and Gamma-Gamma parameters, horizon), and publish
/// DIR/as_of=YYYY-MM-DD/ (scores.parquet, features.parquet, rejects.parquet, model.json,
/// manifest.json, _SUCCESS) atomically. With the same events and as-of date as the run that
/// wrote the model, the scores are identical to that run's.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// The saved model (DIR/as_of=…/model.json of a run).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Scoring date (YYYY-MM-DD). Default: the day after the last event.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Output root; writes DIR/as_of=YYYY-MM-DD/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Serialize)]
struct Manifest<'a> {
    command: &'static str,
    run_id: String,
    crate_version: &'static str,
    created_at: String,
    as_of: chrono::NaiveDate,
    model: String,
    model_run_id: &'a str,
    horizon_days: u32,
    inputs: Vec<InputEntry>,
    /// Folder links not followed and second paths to a file already read.
    inputs_skipped: &'a [churnclv::io::input::Skipped],
    rows: &'a ScanStats,
    outputs: Vec<OutputFile>,
    schema: std::collections::BTreeMap<&'static str, Vec<ColumnDesc>>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let saved = SavedModel::load(&args.model)?;
    let cfg = args.input.config()?;
    let types = cfg.validate()?;
    target::check_folder("--out", &args.out)?;
    let inputs = args.input.open(&cfg)?;
    let as_of = resolve_as_of(&inputs, args.as_of.as_deref(), &cfg)?;
    let cutoff = date_us(as_of);
    target::create_folder("--out", &args.out, &args.out)?;
    let lock = RunLock::acquire(&args.out)?;
    lock.recover()?;
    let mut progress = Progress::stages(3);
    progress.stage("features: reading events");
    let Scanned {
        histories,
        stats,
        rejects,
    } = scan_histories(
        &inputs,
        &read_options(&cfg, types, cutoff, args.as_of.is_some()),
        &[cutoff],
    )?;
    progress.stage("score: applying the saved model");
    let set = histories.features(0);
    let run_id = format!("{}-score-{}", as_of.format("%Y%m%d"), saved.run_id);
    let scored = apply_models(
        &set,
        as_of,
        &saved.churn,
        &saved.value,
        saved.horizon_days,
        &cfg.tiers,
        &model_version(&saved.run_id),
        &run_id,
    )
    .map_err(|e| match e {
        // Numbers the model file gave: its fault (exit 2), like any other bad field.
        ScoreError::Unusable { .. } => SavedModelError::Unusable {
            path: args.model.display().to_string(),
            message: e.to_string(),
        }
        .into(),
        e => anyhow::Error::from(e),
    })?;
    let scores = scored.table;
    progress.stage("publish: writing the partition");
    let staging = lock.stage(&format!("as_of={as_of}"), &run_id)?;
    let opts = ParquetOptions::default();
    let mut rows = vec![(
        "scores.parquet",
        write_parquet_direct(
            &staging.path("scores.parquet"),
            scores_schema(),
            &[scores],
            &opts,
        )?,
    )];
    let fopts = features_parquet_options(as_of);
    rows.push((
        "features.parquet",
        write_parquet_direct(
            &staging.path("features.parquet"),
            features_schema(),
            &[set.to_record_batch()?],
            &fopts,
        )?,
    ));
    rows.push((
        "rejects.parquet",
        write_parquet_direct(
            &staging.path("rejects.parquet"),
            rejects_schema(),
            &rejects,
            &opts,
        )?,
    ));
    write_json(&staging.path("model.json"), &saved)?;
    let manifest = Manifest {
        command: "score",
        run_id: run_id.clone(),
        crate_version: env!("CARGO_PKG_VERSION"),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        as_of,
        model: args.model.display().to_string(),
        model_run_id: &saved.run_id,
        horizon_days: saved.horizon_days,
        inputs: input_entries(&inputs),
        inputs_skipped: &inputs.skipped,
        rows: &stats,
        outputs: output_entries(
            &staging,
            &[
                "scores.parquet",
                "features.parquet",
                "rejects.parquet",
                "model.json",
            ],
            &rows,
        )?,
        schema: output_schemas(),
    };
    write_json(&staging.path("manifest.json"), &manifest)?;
    let target = staging.publish()?;
    tracing::info!(
        stage = "publish",
        duration_ms = started.elapsed().as_millis() as u64,
        "published {}",
        target.display()
    );
    progress.finish();
    println!(
        "published {} ({} customers scored with model {} of run {})",
        target.display(),
        set.rows.len(),
        args.model.display(),
        saved.run_id
    );
    Ok(())
}
