//! [`super::generate`] in bounded memory, for data sets of any size: the customers are
//! simulated in chunks, each chunk's events sorted in the log's order and spilled as one run
//! into a scratch folder (its truth rows appended to a file there), then the runs are merged
//! into event batches one at a time while the caller writes them.
//!
//! The rows are those of [`super::generate`] for the same parameters, in the same order and
//! value for value, whatever the chunk size: the sort key [`Ev::key`] is unique, so the merge
//! of sorted runs is the global sort (and there are no ties for it to break differently).
//! Only the batch size is the caller's: a writer that gathers rows into fixed row groups
//! writes the same file from either. Resident: one chunk while it is simulated and sorted,
//! then a read buffer per run, the heap of run heads and two batches' worth of events.

use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use rayon::prelude::*;

use super::simulate::{simulate, Ev, Model, TruthRow};
use super::spill::{remove_run, Merge, RunWriter, TruthReader, TruthWriter};
use super::write::{event_batch, id_width, truth_batch};
use super::{GenerateError, GenerateParams};

/// Customers simulated, sorted and spilled together by default: ~0.95M events on 730 days
/// (~30 MB as `Ev`, about three times that while the per-customer vectors are collected and
/// copied into one), so 2M customers make 123 runs, each read through its own 256 KiB buffer
/// during the merge. Measured on 200k customers: peak RSS 112–119 MiB (199 MiB with chunks
/// of 32,768), the same wall time.
pub const CHUNK_CUSTOMERS: usize = 16_384;

/// Most runs merged at once: each holds an open file and a 256 KiB buffer (64 MiB in all, far
/// under the usual limit of 1,024 open files). More runs than this (over 4M customers at the
/// default chunk) are first merged in groups into longer runs: one more pass over the events.
const MAX_RUNS: usize = 256;

/// Events handed from the merge to a run's writer at a time when runs are merged in groups.
const MERGE_SLICE: usize = 1 << 16;

/// Simulates the customers of `range` (in parallel); returns their truth rows in index order
/// and their events sorted by [`Ev::key`].
pub(super) fn simulate_sorted(model: &Model, range: Range<usize>) -> (Vec<TruthRow>, Vec<Ev>) {
    let per_customer: Vec<(TruthRow, Vec<Ev>)> =
        range.into_par_iter().map(|i| simulate(model, i)).collect();
    // One flat copy then a parallel sort: each customer's vector is freed as soon as it is
    // copied.
    let n_events: usize = per_customer.iter().map(|(_, ev)| ev.len()).sum();
    let mut events = Vec::with_capacity(n_events);
    let mut truth = Vec::with_capacity(per_customer.len());
    for (row, ev) in per_customer {
        truth.push(row);
        events.extend_from_slice(&ev);
    }
    // Unique key, so the unstable sort is still deterministic.
    events.par_sort_unstable_by_key(Ev::key);
    (truth, events)
}

/// A simulated data set spilled into a scratch folder: sorted runs of events and the truth
/// rows. Reading it back ([`Spilled::events`], [`Spilled::truth`]) does not change it.
#[derive(Debug)]
pub struct Spilled {
    runs: Vec<PathBuf>,
    truth: PathBuf,
    width: usize,
    n_events: u64,
}

/// Simulates the data set of `params`, `chunk_customers` customers at a time (at least one),
/// into new files in the existing folder `scratch` (`truth.bin`, `run-00000.bin`, …), which
/// the caller owns and removes.
pub fn spill(
    params: &GenerateParams,
    scratch: &Path,
    chunk_customers: usize,
) -> Result<Spilled, GenerateError> {
    params.validate()?;
    let model = Model::new(params)?;
    let chunk = chunk_customers.max(1);
    let truth = scratch.join("truth.bin");
    let mut truth_file = TruthWriter::create(&truth)?;
    let mut runs = Vec::new();
    let mut n_events = 0u64;
    let mut named = 0;
    for first in (0..params.customers).step_by(chunk) {
        let (rows, events) = simulate_sorted(&model, first..(first + chunk).min(params.customers));
        truth_file.append(&rows)?;
        let mut run = RunWriter::create(&run_path(scratch, &mut named))?;
        run.append(&events)?;
        runs.push(run.finish()?);
        n_events += events.len() as u64;
    }
    truth_file.finish()?;
    while runs.len() > MAX_RUNS {
        runs = merge_groups(&runs, scratch, &mut named)?;
    }
    Ok(Spilled {
        runs,
        truth,
        width: id_width(params.customers),
        n_events,
    })
}

/// The next new run file's path in `scratch`.
fn run_path(scratch: &Path, named: &mut usize) -> PathBuf {
    *named += 1;
    scratch.join(format!("run-{:05}.bin", *named - 1))
}

/// Merges consecutive groups of at most [`MAX_RUNS`] runs into one run each (removing the
/// merged ones); returns the new runs, in the same order.
fn merge_groups(
    runs: &[PathBuf],
    scratch: &Path,
    named: &mut usize,
) -> Result<Vec<PathBuf>, GenerateError> {
    let mut merged = Vec::with_capacity(runs.len().div_ceil(MAX_RUNS));
    let mut buf = Vec::with_capacity(MERGE_SLICE);
    for group in runs.chunks(MAX_RUNS) {
        let mut merge = Merge::open(group)?;
        let mut run = RunWriter::create(&run_path(scratch, named))?;
        loop {
            merge.fill(&mut buf, MERGE_SLICE)?;
            if buf.is_empty() {
                break;
            }
            run.append(&buf)?;
        }
        merged.push(run.finish()?);
        drop(merge);
        for path in group {
            remove_run(path)?;
        }
    }
    Ok(merged)
}

impl Spilled {
    /// Total number of events.
    pub fn n_events(&self) -> u64 {
        self.n_events
    }

    /// Number of sorted runs (one per chunk of customers).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The event log in order, in batches of `rows` rows (the last one smaller).
    pub fn events(&self, rows: usize) -> Result<EventBatches, GenerateError> {
        let rows = rows.max(1);
        let mut merge = Merge::open(&self.runs)?;
        let mut next = Vec::with_capacity(rows);
        merge.fill(&mut next, rows)?;
        Ok(EventBatches {
            merge,
            next,
            spare: Vec::with_capacity(rows),
            rows,
            width: self.width,
            done: false,
        })
    }

    /// The truth table in customer order, in batches of `rows` rows (the last one smaller).
    pub fn truth(&self, rows: usize) -> Result<TruthBatches, GenerateError> {
        Ok(TruthBatches {
            reader: TruthReader::open(&self.truth)?,
            buf: Vec::new(),
            rows: rows.max(1),
            first: 0,
            width: self.width,
            done: false,
        })
    }
}

/// Iterator over the merged event batches; ends after the first error.
///
/// Double-buffered: the Arrow batch of the events merged last is built while the merge fills
/// the other buffer (the merge is sequential; building the strings of a batch costs as much).
pub struct EventBatches {
    merge: Merge,
    /// The events of the next batch, in order (empty at the end).
    next: Vec<Ev>,
    spare: Vec<Ev>,
    rows: usize,
    width: usize,
    done: bool,
}

impl Iterator for EventBatches {
    type Item = Result<RecordBatch, GenerateError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next.is_empty() {
            return None;
        }
        let (next, spare, merge) = (&self.next, &mut self.spare, &mut self.merge);
        let (width, rows) = (self.width, self.rows);
        let (batch, filled) = rayon::join(|| event_batch(next, width), || merge.fill(spare, rows));
        std::mem::swap(&mut self.next, &mut self.spare);
        let made = filled.and(batch.map_err(GenerateError::from));
        self.done = made.is_err();
        Some(made)
    }
}

/// Iterator over the truth batches; ends after the first error.
pub struct TruthBatches {
    reader: TruthReader,
    buf: Vec<TruthRow>,
    rows: usize,
    first: usize,
    width: usize,
    done: bool,
}

impl Iterator for TruthBatches {
    type Item = Result<RecordBatch, GenerateError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let made = self
            .reader
            .fill(&mut self.buf, self.rows)
            .and_then(|()| {
                (!self.buf.is_empty())
                    .then(|| truth_batch(&self.buf, self.first, self.width).map_err(Into::into))
                    .transpose()
            })
            .transpose();
        self.first += self.buf.len();
        self.done = !matches!(made, Some(Ok(_)));
        made
    }
}
