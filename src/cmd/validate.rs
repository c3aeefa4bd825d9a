//! `churnclv validate`: check an event input without training anything.

use std::collections::BTreeMap;

use anyhow::Context;
use churnclv::config::parse_date;
use churnclv::io::input::InputError;
use churnclv::io::scan;
use churnclv::labels::{date_of_us, date_us};
use rustc_hash::FxHashSet;
use serde::Serialize;

use super::{
    input_entries, read_options, reject_gate, scan_partitions, with_duplicates, InputArgs,
    InputEntry,
};

/// Read every row of the input, validate it, and print what was found: files, rows read, used
/// and rejected by reason, customers, time range, event-type counts (unknown types listed).
/// Exits 2 when the input cannot be read or has no usable row.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Count rows on or after this date (YYYY-MM-DD) as `after_as_of` instead of used.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    files: Vec<InputEntry>,
    rows_read: u64,
    rows_used: u64,
    rows_rejected: u64,
    rejected_by_reason: BTreeMap<String, u64>,
    /// Unusable rows over the rows not merely after as-of (the `validation.max_reject_share`
    /// gate).
    reject_share: f64,
    customers: usize,
    first_event: Option<String>,
    last_event: Option<String>,
    event_types: BTreeMap<String, u64>,
    unknown_event_types: BTreeMap<String, u64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.input.config()?;
    let types = cfg.validate()?;
    let as_of_us = match &args.as_of {
        Some(d) => date_us(parse_date(d).context("--as-of")?),
        None => i64::MAX,
    };
    let inputs = args.input.open(&cfg)?;
    let opts = with_duplicates(
        &inputs,
        &read_options(&cfg, types, as_of_us, args.as_of.is_some()),
    )?;
    // Partitions hold disjoint customers: the count is the sum of their sizes.
    let sets = (0..scan_partitions()).map(|_| FxHashSet::<Box<str>>::default());
    let result = scan(&inputs, &opts, sets.collect(), |set, batch| {
        for &j in batch.customer {
            let id = batch.ids.get(j);
            if !set.contains(id) {
                set.insert(id.into());
            }
        }
    })?;
    let stats = &result.stats;
    let fmt_time = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
            .unwrap_or_else(|| date_of_us(us).to_string())
    };
    let summary = Summary {
        files: input_entries(&inputs),
        rows_read: stats.rows_read,
        rows_used: stats.rows_used,
        rows_rejected: stats.rows_rejected,
        rejected_by_reason: stats
            .rejected_by_reason
            .iter()
            .map(|(r, n)| (r.as_str().to_string(), *n))
            .collect(),
        reject_share: stats.reject_share(),
        customers: result.parts.iter().map(|s| s.len()).sum(),
        first_event: stats.min_time_us.map(fmt_time),
        last_event: stats.max_time_us.map(fmt_time),
        event_types: stats
            .event_types
            .iter()
            .map(|(k, n)| (k.as_str().to_string(), *n))
            .collect(),
        unknown_event_types: stats.unknown_event_types.clone(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_text(&summary);
    }
    if stats.rows_used == 0 {
        return Err(InputError::NoUsableRows {
            path: args.input.events.clone(),
            read: stats.rows_read,
            reasons: stats.reasons_line(),
        }
        .into());
    }
    reject_gate(stats, &opts)?;
    Ok(())
}

fn print_text(s: &Summary) {
    println!("files:      {}", s.files.len());
    for f in &s.files {
        println!(
            "  {} ({} bytes, {} rows, {} row groups)",
            f.path, f.bytes, f.rows, f.row_groups
        );
    }
    println!("rows read:  {}", s.rows_read);
    println!("rows used:  {}", s.rows_used);
    println!("rejected:   {}", s.rows_rejected);
    for (r, n) in &s.rejected_by_reason {
        println!("  {r}: {n}");
    }
    println!(
        "unusable:   {:.2}% of rows not after as-of",
        100.0 * s.reject_share
    );
    println!("customers:  {}", s.customers);
    println!(
        "time range: {} .. {}",
        s.first_event.as_deref().unwrap_or("-"),
        s.last_event.as_deref().unwrap_or("-")
    );
    println!("event types:");
    for (k, n) in &s.event_types {
        println!("  {k}: {n}");
    }
    if !s.unknown_event_types.is_empty() {
        println!("unknown event types (counted as other):");
        for (k, n) in &s.unknown_event_types {
            println!("  {k:?}: {n}");
        }
    }
}
