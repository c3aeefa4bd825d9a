//! `churnclv generate`: synthetic event histories with a ground-truth sidecar.

use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use churnclv::config::parse_date;
use churnclv::error::Context;
use churnclv::generate::{
    event_schema, spill, truth_schema, GenerateError, GenerateParams, CHUNK_CUSTOMERS,
};
use churnclv::io::output::{write_parquet_stream_grouped, OutputError, ParquetOptions};
use churnclv::io::scratch::ScratchDir;
use churnclv::io::target;

/// Write synthetic events (purchases, sessions, carts, tickets, emails …) for N customers whose
/// latent purchase rate, lifetime and spend are known, plus a per-customer ground-truth file.
/// The same seed gives byte-identical files.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of customers.
    #[arg(long, default_value_t = 20_000)]
    pub customers: usize,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Events file to write (Parquet).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Ground-truth file to write; default: FILE with `.truth.parquet` in place of `.parquet`.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// First day of the simulated period (YYYY-MM-DD).
    #[arg(long, default_value = "2024-01-01")]
    pub start: String,
    /// Length of the simulated period in days.
    #[arg(long, default_value_t = 730)]
    pub days: u32,
    /// Testing knob: customers simulated and sorted together before their events are
    /// spilled as one sorted run (default 16,384). Same files for any value.
    #[arg(long, value_name = "N", hide = true, default_value_t = CHUNK_CUSTOMERS)]
    pub chunk_customers: usize,
}

/// Rows of the batches handed to the writer, which gathers them into its row groups of
/// 1,048,576 rows: a multiple of the column writers' mini-batch of 1,024 rows, so the pages
/// are cut where one whole batch would cut them.
const STREAM_BATCH_ROWS: usize = 1 << 16;

pub fn run(args: Args) -> churnclv::Result<()> {
    let params = GenerateParams {
        customers: args.customers,
        seed: args.seed,
        start: parse_date(&args.start).context("--start")?,
        days: args.days,
    };
    params.validate()?;
    target::check_file("--out", &args.out)?;
    let truth_path = args.truth.clone().unwrap_or_else(|| {
        let name = args
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.strip_suffix(".parquet").unwrap_or(&name);
        args.out.with_file_name(format!("{stem}.truth.parquet"))
    });
    target::check_file("--truth", &truth_path)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        target::create_folder("--out", &args.out, dir)?;
    }
    let started = Instant::now();
    // Removed when it goes out of scope: at the end, on an error, or by the signal handler.
    let scratch = ScratchDir::beside(&args.out, "generate")?;
    let spilled = spill(&params, scratch.path(), args.chunk_customers)?;
    let simulated_ms = started.elapsed().as_millis() as u64;
    let meta = |o: ParquetOptions| {
        o.metadata("churnclv.generator.seed", params.seed.to_string())
            .metadata("churnclv.generator.customers", params.customers.to_string())
            .metadata("churnclv.generator.start", params.start.to_string())
            .metadata("churnclv.generator.days", params.days.to_string())
    };
    let options = meta(ParquetOptions::default());
    // Written inside the scratch folder, then moved into place: a run stopped while it writes
    // (most of its time) leaves nothing in the output folder but the scratch folder.
    let staged = scratch.path().join("events.parquet");
    let rows = write_generated(
        &staged,
        event_schema(),
        spilled.events(STREAM_BATCH_ROWS)?,
        &options,
    )?;
    std::fs::rename(&staged, &args.out).map_err(|source| OutputError::Io {
        path: args.out.clone(),
        source,
    })?;
    let truth = spilled.truth(STREAM_BATCH_ROWS)?;
    write_generated(&truth_path, truth_schema(), truth, &options)?;
    drop(scratch);
    // One line for the stage: how long the simulation (and spilling) of the sorted runs took
    // is a field of it, the rest of the time is the merge and the writing.
    tracing::info!(
        stage = "generate",
        events = rows,
        customers = params.customers,
        runs = spilled.runs(),
        simulated_ms,
        duration_ms = started.elapsed().as_millis() as u64,
        "wrote {} and {}",
        args.out.display(),
        truth_path.display()
    );
    super::print(format_args!(
        "{} events for {} customers -> {} (truth: {})\n",
        rows,
        params.customers,
        args.out.display(),
        truth_path.display()
    ))?;
    Ok(())
}

/// Writes batches made from the scratch files; an error making one abandons the file and is
/// returned as it is (the writer only sees that the stream failed).
fn write_generated(
    path: &Path,
    schema: SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, GenerateError>>,
    options: &ParquetOptions,
) -> churnclv::Result<u64> {
    let mut failed = None;
    let stream = batches.map(|b| {
        b.map_err(|e| {
            failed = Some(e);
            ArrowError::ComputeError("making a batch failed".to_string())
        })
    });
    let written = write_parquet_stream_grouped(path, schema, stream, options);
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(written?),
    }
}
