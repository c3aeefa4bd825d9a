//! The features stage: one scan of the events for a list of cutoffs → a [`FeatureTable`] per
//! cutoff (labelled with the window after it on request), with checked row accounting, the
//! reject-share gate and the rejected rows.
//!
//! The scan's accumulators split time at every date a table needs: its cutoff `c` and, for a
//! labelled table, `c − H` (the prior window's start) and `c + H` (the label window's end).
//! Features at a cutoff sum the segments before it, so they do not depend on the other dates
//! (sums are exact integers; see `features`), and each window is a run of whole segments.
//! `run`'s tables at `tv, t0, t1` (labelled) and `as_of` give the dates
//! `tv − H, tv, t0, t1, as_of`.

use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use arrow_array::RecordBatch;
use chrono::{Duration, NaiveDate};

use crate::error::{Error, Result};
use crate::features::table::FEATURE_SLICE;
use crate::features::{FeatureSet, FeatureTable, Histories, HistoryAcc, WindowLabels};
use crate::io::output::write_parquet_stream;
use crate::io::{scan as scan_rows, target, InputError, InputSet, ReadOptions, ScanStats};
use crate::labels::window_labels;
use crate::time::{date_of_us, date_us};

/// One table to build: its cutoff, and the label horizon when it is labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    pub cutoff: NaiveDate,
    pub label_horizon_days: Option<u32>,
}

impl TableSpec {
    /// The dates the scan must split at for this table.
    fn dates(&self) -> Vec<NaiveDate> {
        match self.label_horizon_days {
            None => vec![self.cutoff],
            Some(h) => {
                let h = Duration::days(i64::from(h));
                vec![self.cutoff - h, self.cutoff, self.cutoff + h]
            }
        }
    }
}

/// The scan's cutoffs (µs, ascending, distinct) for `specs`: the last one is where the scan
/// stops using rows (`ReadOptions::as_of_us` must be it).
pub fn scan_cutoffs(specs: &[TableSpec]) -> Vec<i64> {
    let mut cuts: Vec<i64> = specs
        .iter()
        .flat_map(TableSpec::dates)
        .map(date_us)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// What one scan gives: every customer's history over the cutoffs, the row accounting and the
/// rejected rows.
pub struct Scanned {
    pub histories: Histories,
    pub stats: ScanStats,
    pub rejects: Vec<RecordBatch>,
    specs: Vec<TableSpec>,
}

/// Customer partitions of a scan: enough that one partition's state stays in cache while a
/// batch is applied to it, and that threads rarely wait for one another.
pub fn scan_partitions() -> usize {
    32 * rayon::current_num_threads().max(1)
}

/// The read options with the input's duplicate rows found (a first, key-columns-only pass;
/// nothing to do when the files have neither `order_id` nor `event_id`).
pub fn with_duplicates(inputs: &InputSet, read: &ReadOptions) -> Result<ReadOptions> {
    if !read.deduplicate {
        return Ok(read.clone());
    }
    let dups = crate::io::read::duplicate_rows(inputs)?;
    Ok(ReadOptions {
        duplicates: Some(std::sync::Arc::new(dups)),
        ..read.clone()
    })
}

/// The reject-share gate (`validation.max_reject_share`) as a quality-gate error (exit 3).
pub fn reject_gate(stats: &ScanStats, read: &ReadOptions) -> Result<()> {
    stats
        .check_reject_share(read.max_reject_share)
        .map_err(|e| Error::QualityGate(format!("{e}; nothing published")))
}

/// One scan of `inputs` with accumulators for the tables `specs`; checked row accounting, a
/// clear error when no row is usable, the reject-share gate.
pub fn scan(inputs: &InputSet, read: &ReadOptions, specs: &[TableSpec]) -> Result<Scanned> {
    let started = Instant::now();
    let cutoffs = scan_cutoffs(specs);
    if cutoffs.last() != Some(&read.as_of_us) {
        return Err(Error::Internal(format!(
            "scan ends at {} µs but the last table date is {:?}",
            read.as_of_us,
            cutoffs.last()
        )));
    }
    let read = &with_duplicates(inputs, read)?;
    let parts = HistoryAcc::partitions(&cutoffs, scan_partitions());
    let scanned = scan_rows(inputs, read, parts, HistoryAcc::update_batch)?;
    let stats = scanned.stats;
    if stats.rows_read != inputs.rows() || stats.rows_read != stats.rows_used + stats.rows_rejected
    {
        return Err(Error::Internal(format!(
            "row accounting mismatch: footer rows {}, read {}, used {}, rejected {}",
            inputs.rows(),
            stats.rows_read,
            stats.rows_used,
            stats.rows_rejected
        )));
    }
    if stats.rows_used == 0 {
        return Err(InputError::NoUsableRows {
            path: inputs.spec.clone(),
            read: stats.rows_read,
            reasons: stats.reasons_line(),
        }
        .into());
    }
    reject_gate(&stats, read)?;
    let histories = Histories::from_parts(scanned.parts);
    tracing::info!(
        stage = "features",
        rows_read = stats.rows_read,
        rows_used = stats.rows_used,
        rows_rejected = stats.rows_rejected,
        customers = histories.len(),
        duration_ms = started.elapsed().as_millis() as u64,
        "rejected: {}",
        stats.reasons_line()
    );
    Ok(Scanned {
        histories,
        stats,
        rejects: scanned.rejects,
        specs: specs.to_vec(),
    })
}

impl Scanned {
    /// Index of a date among the scan's cutoffs.
    fn index(&self, date: NaiveDate) -> usize {
        let us = date_us(date);
        self.histories.cutoffs.partition_point(|&c| c < us)
    }

    /// Table `i` of the specs, whole.
    pub fn table(&self, i: usize) -> FeatureTable {
        self.table_of(i, 0..self.histories.len())
    }

    /// Table `i` of the specs for the customers `range` (in id order) with an event before
    /// its cutoff.
    pub fn table_of(&self, i: usize, range: Range<usize>) -> FeatureTable {
        self.build(i, range, false)
    }

    /// Table `i` of the specs for the customers who had bought before its cutoff (the models'
    /// population: what training reads), without the others' rows.
    pub fn buyers_table(&self, i: usize) -> FeatureTable {
        self.build(i, 0..self.histories.len(), true)
    }

    fn build(&self, i: usize, range: Range<usize>, buyers_only: bool) -> FeatureTable {
        let spec = self.specs[i];
        let k = self.index(spec.cutoff);
        let set = if buyers_only {
            self.histories.buyers_of(k, range)
        } else {
            self.histories.features_of(k, range)
        };
        let labels = spec.label_horizon_days.map(|h| {
            let days = Duration::days(i64::from(h));
            let prior_from = self.index(spec.cutoff - days);
            let until = self.index(spec.cutoff + days);
            WindowLabels {
                horizon_days: h,
                window: window_labels(&self.histories, &set, k, until),
                prior_net_spend: window_labels(&self.histories, &set, prior_from, k).spend,
            }
        });
        table(set, labels)
    }

    /// Writes table `i` to `path` (replaced atomically), computed and written one slice of
    /// customers at a time so only a slice or two of rows is in memory. The folder is created
    /// here, after the scan, so a run that fails before leaves nothing behind. Returns the
    /// rows written.
    pub fn write_table(&self, i: usize, flag: &'static str, path: &Path) -> Result<u64> {
        let spec = self.specs[i];
        let n = self.histories.len();
        let slices = (0..n).step_by(FEATURE_SLICE).map(|lo| {
            self.table_of(i, lo..(lo + FEATURE_SLICE).min(n))
                .to_record_batch()
        });
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            target::create_folder(flag, path, dir)?;
        }
        let schema = if spec.label_horizon_days.is_some() {
            crate::features::labelled_schema()
        } else {
            crate::features::features_schema()
        };
        Ok(write_parquet_stream(
            path,
            schema,
            slices,
            &FeatureTable::parquet_options(spec.cutoff, spec.label_horizon_days),
        )?)
    }
}

/// A scan's feature set as a self-contained table.
fn table(set: FeatureSet, labels: Option<WindowLabels>) -> FeatureTable {
    FeatureTable {
        cutoff: date_of_us(set.cutoff_us),
        customer_ids: set.customer_ids,
        rows: set.rows,
        labels,
    }
}
