//! `validate`'s work: read every row of the input, validate it and summarise what was found —
//! files, rows read, used and rejected by reason, customers, time range, event types (unknown
//! ones listed) — without building features or training anything.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;
use serde::Serialize;

use crate::error::Result;
use crate::io::{scan, InputError, InputSet, ReadOptions};
use crate::stages::features::{reject_gate, scan_partitions, with_duplicates};
use crate::stages::publish::InputEntry;
use crate::time::date_of_us;

/// What `validate` prints (as text or JSON).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub files: Vec<InputEntry>,
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Unusable rows over the rows not merely after as-of (the `validation.max_reject_share`
    /// gate).
    pub reject_share: f64,
    pub customers: usize,
    pub first_event: Option<String>,
    pub last_event: Option<String>,
    pub event_types: BTreeMap<String, u64>,
    pub unknown_event_types: BTreeMap<String, u64>,
}

/// Scans `inputs` and summarises them. The summary comes back with the verdict: `Err` when no
/// row is usable (exit 2) or the reject-share gate fails (exit 3), so the caller can print
/// the summary either way.
pub fn validate(inputs: &InputSet, read: &ReadOptions) -> Result<(Summary, Result<()>)> {
    let opts = with_duplicates(inputs, read)?;
    // Partitions hold disjoint customers: the count is the sum of their sizes.
    let sets = (0..scan_partitions()).map(|_| FxHashSet::<Box<str>>::default());
    let result = scan(inputs, &opts, sets.collect(), |set, batch| {
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
        files: InputEntry::of_events(inputs),
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
    let verdict = if stats.rows_used == 0 {
        Err(InputError::NoUsableRows {
            path: inputs.spec.clone(),
            read: stats.rows_read,
            reasons: stats.reasons_line(),
        }
        .into())
    } else {
        reject_gate(stats, &opts)
    };
    Ok((summary, verdict))
}

impl Summary {
    /// The text form.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        out.push(format!("files:      {}", self.files.len()));
        for f in &self.files {
            out.push(format!(
                "  {} ({} bytes, {} rows, {} row groups)",
                f.path, f.bytes, f.rows, f.row_groups
            ));
        }
        out.push(format!("rows read:  {}", self.rows_read));
        out.push(format!("rows used:  {}", self.rows_used));
        out.push(format!("rejected:   {}", self.rows_rejected));
        for (r, n) in &self.rejected_by_reason {
            out.push(format!("  {r}: {n}"));
        }
        out.push(format!(
            "unusable:   {:.2}% of rows not after as-of",
            100.0 * self.reject_share
        ));
        out.push(format!("customers:  {}", self.customers));
        out.push(format!(
            "time range: {} .. {}",
            self.first_event.as_deref().unwrap_or("-"),
            self.last_event.as_deref().unwrap_or("-")
        ));
        out.push("event types:".to_string());
        for (k, n) in &self.event_types {
            out.push(format!("  {k}: {n}"));
        }
        if !self.unknown_event_types.is_empty() {
            out.push("unknown event types (counted as other):".to_string());
            for (k, n) in &self.unknown_event_types {
                out.push(format!("  {k:?}: {n}"));
            }
        }
        out.join("\n")
    }
}
