//! `churnclv features`: the feature table at one cutoff, on its own.

use std::path::PathBuf;

use churnclv::features::features_schema;
use churnclv::io::output::write_parquet_stream;
use churnclv::io::target;
use churnclv::labels::date_us;

use super::{features_parquet_options, FEATURE_SLICE};
use super::{read_options, resolve_as_of, scan_histories, InputArgs, Scanned};

/// Build the per-customer feature table (RFM, BTYD summary, behaviour; see docs/features.md)
/// from events strictly before --as-of and write it as one Parquet file, with the cutoff in
/// its key-value metadata (`churnclv.cutoff`). One row per customer with any event before the
/// cutoff, sorted by customer_id. Events on or after the cutoff are counted, not used.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Cutoff date (YYYY-MM-DD): features use events before its midnight UTC. Default: the
    /// day after the last event.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Parquet file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.input.config()?;
    let types = cfg.validate()?;
    target::check_file("--out", &args.out)?;
    let inputs = args.input.open(&cfg)?;
    let as_of = resolve_as_of(&inputs, args.as_of.as_deref(), &cfg)?;
    let cutoff = date_us(as_of);
    let Scanned {
        histories, stats, ..
    } = scan_histories(
        &inputs,
        &read_options(&cfg, types, cutoff, args.as_of.is_some()),
        &[cutoff],
    )?;
    // Written in slices of customers, so only a slice or two of rows is in memory at a time.
    let slices = (0..histories.len()).step_by(FEATURE_SLICE).map(|lo| {
        let hi = (lo + FEATURE_SLICE).min(histories.len());
        histories.feature_batch(0, lo..hi)
    });
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        target::create_folder("--out", &args.out, dir)?;
    }
    let rows = write_parquet_stream(
        &args.out,
        features_schema(),
        slices,
        &features_parquet_options(as_of),
    )?;
    println!(
        "{} customers, features before {} -> {} ({} rows read, {} used, {} rejected: {})",
        rows,
        as_of,
        args.out.display(),
        stats.rows_read,
        stats.rows_used,
        stats.rows_rejected,
        stats.reasons_line()
    );
    Ok(())
}
