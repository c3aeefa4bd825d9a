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
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::features::table::FEATURE_SLICE;
use crate::features::{
    CompactRow, CompactRows, FeatureSet, FeatureTable, Histories, HistoryAcc, HistoryPart,
    WindowLabels,
};
use crate::io::output::write_parquet_stream;
use crate::io::{scan as scan_rows, target, InputError, InputSet, ReadOptions, ScanStats};
use crate::labels::{window_label, window_labels};
use crate::models::sample::{Sample, SampleBuilder, SampleRow};
use crate::time::{date_of_us, date_us};

/// One table to build: its cutoff, and the label horizon when it is labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    pub cutoff: NaiveDate,
    pub label_horizon_days: Option<u32>,
    /// A labelled table's `prior_window_net_spend` (the window of `H` before the cutoff): the
    /// scan splits at `cutoff − H` for it. `run` asks for it where it is read (the evaluation
    /// window) and not at `tv`, which saves the accumulators a segment per customer.
    pub prior_window: bool,
}

impl TableSpec {
    /// An unlabelled table at `cutoff`.
    pub fn unlabelled(cutoff: NaiveDate) -> TableSpec {
        TableSpec {
            cutoff,
            label_horizon_days: None,
            prior_window: false,
        }
    }

    /// A table at `cutoff` labelled with the `h` days after it (and the prior window).
    pub fn labelled(cutoff: NaiveDate, h: u32) -> TableSpec {
        TableSpec {
            cutoff,
            label_horizon_days: Some(h),
            prior_window: true,
        }
    }

    /// The dates the scan must split at for this table.
    fn dates(&self) -> Vec<NaiveDate> {
        match self.label_horizon_days {
            None => vec![self.cutoff],
            Some(h) => {
                let h = Duration::days(i64::from(h));
                let mut d = vec![self.cutoff, self.cutoff + h];
                if self.prior_window {
                    d.push(self.cutoff - h);
                }
                d
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
    let started = Instant::now();
    let dups = crate::io::read::duplicate_rows(inputs)?;
    crate::memory::release_everywhere("the duplicate pass");
    tracing::info!(
        stage = "features",
        duplicates = dups.count,
        duration_ms = started.elapsed().as_millis() as u64,
        "duplicate pass: {} rows share a key with a row kept",
        dups.count
    );
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
    let read = &with_duplicates(inputs, read)?;
    let scanned = scan_shard(inputs, read, specs)?;
    check_totals(inputs, &scanned.stats, read)?;
    Ok(scanned)
}

/// The scan of the rows `read` selects (all, or one shard's, [`ReadOptions::shard`]), with
/// its duplicates already found; its own rows accounted for (read = used + rejected).
pub fn scan_shard(inputs: &InputSet, read: &ReadOptions, specs: &[TableSpec]) -> Result<Scanned> {
    let started = Instant::now();
    let cutoffs = scan_cutoffs(specs);
    if cutoffs.last() != Some(&read.as_of_us) {
        return Err(Error::Internal(format!(
            "scan ends at {} µs but the last table date is {:?}",
            read.as_of_us,
            cutoffs.last()
        )));
    }
    let parts = HistoryAcc::partitions(&cutoffs, scan_partitions());
    let scanned = scan_rows(inputs, read, parts, HistoryAcc::update_batch)?;
    let stats = scanned.stats;
    if stats.rows_read != stats.rows_used + stats.rows_rejected {
        return Err(Error::Internal(format!(
            "row accounting mismatch: read {}, used {}, rejected {}",
            stats.rows_read, stats.rows_used, stats.rows_rejected
        )));
    }
    let histories = Histories::from_parts(scanned.parts);
    tracing::info!(
        stage = "features",
        shard = read.shard.map(|s| s.index),
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

/// The checks on a whole input's counts (of one scan, or summed over the shards): every
/// footer row read once, some row usable, the reject-share gate.
pub fn check_totals(inputs: &InputSet, stats: &ScanStats, read: &ReadOptions) -> Result<()> {
    if stats.rows_read != inputs.rows() {
        return Err(Error::Internal(format!(
            "row accounting mismatch: footer rows {}, read {}",
            inputs.rows(),
            stats.rows_read
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
    reject_gate(stats, read)
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
        self.build(i, range)
    }

    fn build(&self, i: usize, range: Range<usize>) -> FeatureTable {
        let spec = self.specs[i];
        let k = self.index(spec.cutoff);
        let set = self.histories.features_of(k, range);
        let labels = spec.label_horizon_days.map(|h| {
            let days = Duration::days(i64::from(h));
            let until = self.index(spec.cutoff + days);
            let prior_net_spend = if spec.prior_window {
                let prior_from = self.index(spec.cutoff - days);
                window_labels(&self.histories, &set, prior_from, k).spend
            } else {
                // Not split for (`run`'s tuning window, which is never written): not a number.
                vec![f64::NAN; set.rows.len()]
            };
            WindowLabels {
                horizon_days: h,
                window: window_labels(&self.histories, &set, k, until),
                prior_net_spend,
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

/// What the model stages read of a scan ([`Scanned::model_inputs`]).
pub struct ModelInputs {
    /// One per labelled spec, in spec order: the buyers at its cutoff, each row's customer
    /// a row of `latest`.
    pub samples: Vec<Sample>,
    /// The unlabelled spec's table: every customer, scored and published. Its rows are in
    /// `held` instead when that is set.
    pub latest: FeatureTable,
    /// `latest`'s rows, compact ([`Scanned::model_inputs`]: they wait through the whole
    /// training, and were the largest single owner at the run's memory peak).
    pub held: Option<CompactRows>,
    pub stats: ScanStats,
    pub rejects: Vec<RecordBatch>,
    /// The share of the customers the samples keep (`None`: all).
    pub train_fraction: Option<f64>,
}

impl ModelInputs {
    /// Customers of the as-of table.
    pub fn customers(&self) -> usize {
        self.held
            .as_ref()
            .map_or(self.latest.len(), CompactRows::len)
    }
}

/// Whether a customer is in the training sample that keeps `fraction` of the customers (all
/// without one): a hash of the id, so the same customers are kept whatever the shard, the
/// thread count or the night.
pub fn in_training_sample(id: &str, fraction: Option<f64>) -> bool {
    fraction.is_none_or(|f| {
        let h = crate::batch::value_code(id).wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 11;
        (h as f64) / ((1u64 << 53) as f64) < f
    })
}

/// Moves every item to the index `rank(item)` says, in place: `rank` must be a permutation of
/// `0..v.len()` (an internal error otherwise, rather than a loop that never ends).
fn permute_to_rank<T>(v: &mut [T], rank: impl Fn(&T) -> u32) -> Result<()> {
    for p in 0..v.len() {
        let mut moves = 0;
        loop {
            let r = rank(&v[p]) as usize;
            if r == p {
                break;
            }
            if r >= v.len() || rank(&v[r]) as usize == r || moves > v.len() {
                return Err(Error::Internal("as-of ranks are not a permutation".into()));
            }
            v.swap(p, r);
            moves += 1;
        }
    }
    Ok(())
}

/// Customers per slice of the one pass of [`Scanned::model_inputs`].
const MODEL_SLICE: usize = 4096;

impl Scanned {
    /// One parallel pass over the customers gives every labelled spec's [`Sample`] and the
    /// unlabelled spec's table (which must be the last cutoff: every customer of the scan has
    /// a row there, so a sample row's customer is a row of it); the histories are dropped
    /// before this returns, so no fit runs beside them.
    ///
    /// `train_fraction`: keep only that deterministic share of the customers in the samples
    /// ([`in_training_sample`]); the as-of table keeps everyone.
    pub fn model_inputs(self, train_fraction: Option<f64>) -> Result<ModelInputs> {
        let started = Instant::now();
        let last = self.histories.cutoffs.last().copied().unwrap_or(i64::MIN);
        let latest_spec = match self
            .specs
            .iter()
            .filter(|s| s.label_horizon_days.is_none())
            .collect::<Vec<_>>()[..]
        {
            [s] if date_us(s.cutoff) == last => *s,
            _ => {
                return Err(Error::Internal(
                    "model inputs need one unlabelled table at the scan's last cutoff".into(),
                ))
            }
        };
        struct Window {
            k: usize,
            until: usize,
            /// The prior window's start: the window is an evaluation window (detail columns).
            prior_from: Option<usize>,
        }
        let windows: Vec<Window> = self
            .specs
            .iter()
            .filter_map(|s| {
                let h = Duration::days(i64::from(s.label_horizon_days?));
                Some(Window {
                    k: self.index(s.cutoff),
                    until: self.index(s.cutoff + h),
                    prior_from: s.prior_window.then(|| self.index(s.cutoff - h)),
                })
            })
            .collect();
        let hist = &self.histories;
        let n = hist.len();
        let nw = windows.len();
        let slices: Vec<usize> = (0..n).step_by(MODEL_SLICE).collect();
        let range = |lo: usize| lo..(lo + MODEL_SLICE).min(n);
        // Each buyer's row in each window's sample (customer-id order), from a cheap look at
        // the cells: buyers per slice, then their positions. `NONE` for a non-buyer.
        const NONE: u32 = u32::MAX;
        let counts: Vec<Vec<u32>> = slices
            .par_iter()
            .map(|&lo| {
                let mut c = vec![0u32; nw];
                for i in range(lo) {
                    if !in_training_sample(hist.id(i), train_fraction) {
                        continue;
                    }
                    let h = hist.customer(i);
                    for (c, w) in c.iter_mut().zip(&windows) {
                        *c += u32::from(h.bought_before(w.k));
                    }
                }
                c
            })
            .collect();
        let mut offsets = Vec::with_capacity(slices.len());
        let mut totals = vec![0u32; nw];
        for c in &counts {
            offsets.push(totals.clone());
            for (t, c) in totals.iter_mut().zip(c) {
                *t += c;
            }
        }
        let mut position = vec![NONE; n * nw];
        position
            .par_chunks_mut(MODEL_SLICE * nw)
            .zip(slices.par_iter().zip(offsets))
            .for_each(|(chunk, (&lo, mut next))| {
                for (j, i) in range(lo).enumerate() {
                    if !in_training_sample(hist.id(i), train_fraction) {
                        continue;
                    }
                    let h = hist.customer(i);
                    for (w, window) in windows.iter().enumerate() {
                        if h.bought_before(window.k) {
                            chunk[j * nw + w] = next[w];
                            next[w] += 1;
                        }
                    }
                }
            });
        let mut builders: Vec<SampleBuilder> = windows
            .iter()
            .zip(&totals)
            .map(|(w, &t)| SampleBuilder::with_capacity(t as usize, w.prior_from.is_some()))
            .collect();
        // Rows arrive a hash partition of customers at a time and are appended (the samples'
        // memory grows as the histories' shrinks), each with its place in id order; they are
        // put in place at the end.
        let mut places: Vec<Vec<u32>> = totals
            .iter()
            .map(|&t| Vec::with_capacity(t as usize))
            .collect();
        let cutoffs = hist.cutoffs.clone();
        let latest_k = self.index(latest_spec.cutoff);
        let latest_us = cutoffs[latest_k];
        // Then the rows, a partition of customers at a time (a few in parallel): each
        // partition's histories are freed as soon as its rows are placed, so the samples grow
        // while the histories shrink. The as-of rows are sorted into id order at the end.
        let mut latest_rows: Vec<(u32, CompactRow)> = Vec::with_capacity(n);
        let mut latest_ids: Vec<(u32, Box<str>)> = Vec::with_capacity(n);
        type Rows = (Vec<Vec<(u32, SampleRow)>>, Vec<(u32, CompactRow, Box<str>)>);
        let one_part = |part: HistoryPart| -> Result<Rows> {
            let mut rows: Vec<Vec<(u32, SampleRow)>> = windows.iter().map(|_| Vec::new()).collect();
            let mut as_of = Vec::with_capacity(part.len());
            for s in 0..part.len() {
                let i = part.rank(s);
                let h = part.customer(s);
                for (w, window) in windows.iter().enumerate() {
                    let at = position[i * nw + w];
                    if at == NONE {
                        continue;
                    }
                    let row = h.features(window.k, cutoffs[window.k]).and_then(|f| {
                        SampleRow::of(
                            i as u32,
                            &f,
                            || window_label(&cutoffs, &h, window.k, window.until),
                            || {
                                window
                                    .prior_from
                                    .map_or(0.0, |p| h.between(p, window.k).net_spend())
                            },
                            window.prior_from.is_some(),
                        )
                    });
                    match row {
                        Some(row) => rows[w].push((at, row)),
                        None => {
                            return Err(Error::Internal(format!(
                                "customer {} counted as a buyer has no purchase",
                                part.id(s)
                            )))
                        }
                    }
                }
                let f = h.features(latest_k, latest_us).ok_or_else(|| {
                    Error::Internal(format!("customer {} has no event before as-of", part.id(s)))
                })?;
                as_of.push((i as u32, CompactRow::new(f), part.id(s).into()));
            }
            Ok((rows, as_of))
        };
        let mut parts = self.histories.into_parts();
        let group = 2 * rayon::current_num_threads().max(1);
        while !parts.is_empty() {
            let these: Vec<HistoryPart> = parts.drain(..group.min(parts.len())).collect();
            let done: Vec<Result<Rows>> = these.into_par_iter().map(one_part).collect();
            for d in done {
                let (rows, as_of) = d?;
                for ((b, places), rows) in builders.iter_mut().zip(&mut places).zip(rows) {
                    for (at, row) in rows {
                        b.push(row);
                        places.push(at);
                    }
                }
                for (i, f, id) in as_of {
                    latest_rows.push((i, f));
                    latest_ids.push((i, id));
                }
            }
            // The freed histories' pages back to the system before the samples grow into
            // new ones (crate::memory).
            crate::memory::release_everywhere("a group of histories");
        }
        // Put in id order in place (each row's rank is its final index: one swap per row
        // out of place, no comparison sort of 370-byte rows) and mapped in place (a `Vec`
        // collected from its own `into_iter` reuses the allocation): held once.
        for (b, places) in builders.iter_mut().zip(&mut places) {
            b.permute(places)
                .map_err(|e| Error::Internal(format!("sample rows: {e}")))?;
        }
        permute_to_rank(&mut latest_rows, |r| r.0)?;
        permute_to_rank(&mut latest_ids, |r| r.0)?;
        let rows = CompactRows::from_rows(latest_rows.into_iter().map(|(_, f)| f).collect());
        let customer_ids: Vec<Box<str>> = latest_ids.into_iter().map(|(_, id)| id).collect();
        tracing::info!(
            stage = "model inputs",
            customers = rows.len(),
            samples = ?builders.iter().map(SampleBuilder::len).collect::<Vec<_>>(),
            duration_ms = started.elapsed().as_millis() as u64,
            "the scan reduced to the models' inputs, its histories dropped"
        );
        Ok(ModelInputs {
            samples: builders.into_iter().map(SampleBuilder::finish).collect(),
            latest: FeatureTable {
                cutoff: latest_spec.cutoff,
                customer_ids,
                rows: Vec::new(),
                labels: None,
            },
            held: Some(rows),
            stats: self.stats,
            rejects: self.rejects,
            train_fraction,
        })
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
