//! The scan engine: every (file, row group) is a rayon task that decodes, validates and
//! groups its valid rows by customer partition, queueing them for the partition's
//! accumulator (applied in runs of [`FLUSH_ROWS`] rows under the partition's lock); the first
//! pass that finds the latest event time for the default as-of reads only the time column.

use std::sync::{Arc, Mutex};

use arrow_array::{Array, RecordBatch, StringArray};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::decode::{time_us, Columns};
use super::rejects::RejectBuilder;
use super::row_group::{open_row_group, read_error, row_groups};
use super::stats::{opt_max, opt_min, ScanStats};
use super::validate::{ReadOptions, Reason, Shard};
use crate::batch::{value_code, EventBatch, IdDictionary, Rows};
use crate::events::EventKind;
use crate::io::input::{Field, InputError, InputFile, InputSet, Source};
use crate::time::{MAX_TIME_US, MIN_TIME_US};

/// Result of a scan: the accumulators (one per customer partition), the counts, and the
/// rejected rows in input order.
#[derive(Debug)]
pub struct Scan<A> {
    pub parts: Vec<A>,
    pub stats: ScanStats,
    pub rejects: Vec<RecordBatch>,
}

/// Reads every row group of `inputs` in parallel and hands the valid rows, in batches, to
/// `update` with the accumulator of their customer's partition: `parts[p]` sees every row of
/// the customers of partition `p` (see [`crate::batch::partition_of`]) and no other, so the accumulators
/// never need merging. An accumulator may receive batches from several threads, one at a
/// time, in no fixed order: its result must not depend on that order.
pub fn scan<A, U>(
    inputs: &InputSet,
    opts: &ReadOptions,
    parts: Vec<A>,
    update: U,
) -> Result<Scan<A>, InputError>
where
    A: Send,
    U: Fn(&mut A, &EventBatch<'_>) + Sync + Send,
{
    let tasks = row_groups(inputs, |_| true);
    let parts: Vec<Mutex<Partition<A>>> = parts
        .into_iter()
        .map(|acc| {
            Mutex::new(Partition {
                acc,
                queue: Queue::default(),
            })
        })
        .collect();
    let (mut stats, rejects) = tasks
        .par_iter()
        .enumerate()
        .map(|(t, &(fi, rg))| {
            let dups = opts
                .duplicates
                .as_deref()
                .map_or(&[][..], |d| d.get(fi, rg));
            let mut task = Task {
                parts: &parts,
                update: &update,
                first_part: t,
                stats: ScanStats::default(),
                rejects: Vec::new(),
            };
            task.read_row_group(&inputs.files[fi], rg, opts, dups)?;
            let rows = inputs.files[fi]
                .metadata
                .metadata()
                .row_group(rg)
                .num_rows();
            crate::memory::release_after_rows(rows.max(0) as usize);
            Ok::<_, InputError>((task.stats, task.rejects))
        })
        .try_reduce(
            || (ScanStats::default(), Vec::new()),
            |(sa, mut ra), (sb, rb)| {
                ra.extend(rb);
                Ok((sa.merge(sb), ra))
            },
        )?;
    for f in &inputs.files {
        stats
            .rows_per_file
            .entry(f.path.display().to_string())
            .or_insert(0);
    }
    // What is still queued. A panic inside `update` has already propagated, so a lock cannot
    // be poisoned here.
    let parts = parts
        .into_par_iter()
        .enumerate()
        .map(|(p, m)| {
            let mut part = m.into_inner().unwrap_or_else(|e| e.into_inner());
            part.flush(p, &update);
            part.acc
        })
        .collect();
    Ok(Scan {
        parts,
        stats,
        rejects,
    })
}

/// One row group's worth of work of a scan.
struct Task<'s, A, U> {
    parts: &'s [Mutex<Partition<A>>],
    update: &'s U,
    /// Where this task starts its round of the partitions (tasks start apart, so two threads
    /// rarely want the same partition at once).
    first_part: usize,
    stats: ScanStats,
    rejects: Vec<RecordBatch>,
}

impl<A, U> Task<'_, A, U>
where
    U: Fn(&mut A, &EventBatch<'_>),
{
    fn read_row_group(
        &mut self,
        file: &InputFile,
        rg: usize,
        opts: &ReadOptions,
        dups: &[u32],
    ) -> Result<(), InputError> {
        let rerr = |message: String| read_error(file, rg, message);
        // Every column but the key columns, which only the duplicate pass reads.
        let scanned: Vec<Field> = Field::ALL.into_iter().filter(|f| !f.is_key()).collect();
        let reader = open_row_group(file, rg, &scanned)?;
        let first_row = file.row_group_offsets.get(rg).copied().unwrap_or(0);
        let mut row = first_row;
        let name = file.path.display().to_string();
        let mut rejects = RejectBuilder::default();
        let mut kinds: FxHashMap<String, (EventKind, bool)> = FxHashMap::default();
        let mut kind_counts = [0u64; EventKind::ALL.len()];
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        let nparts = self.parts.len().max(1);
        let mut dict: Option<Arc<IdDictionary>> = None;
        let mut valid = Rows::default();
        let mut order: Vec<u32> = Vec::new();
        // `dups` is sorted: one cursor walks it alongside the rows.
        let mut next_dup = 0usize;
        for batch in reader {
            let batch = batch?;
            let n = batch.num_rows();
            let cols = Columns::from_batch(file, &batch, opts).map_err(|e| rerr(e.to_string()))?;
            let ids = match dict.take() {
                Some(d) if same_array(&d.values, &cols.customer.values) => d,
                _ => Arc::new(IdDictionary::new(cols.customer.values.clone(), nparts)),
            };
            // Each id's shard, once per dictionary (`None`: every row is this scan's).
            let shards: Option<(Shard, Vec<u32>)> = opts.shard.map(|sh| {
                let v = &ids.values;
                let of = (0..v.len()).map(|j| Shard::of_hash(value_code(v.value(j)), sh.count));
                (sh, of.collect())
            });
            valid.clear();
            let mut skipped = 0u64;
            for i in 0..n {
                let in_rg = (row - first_row + i as u64) as u32;
                while dups.get(next_dup).is_some_and(|&d| d < in_rg) {
                    next_dup += 1;
                }
                if let Some((sh, of)) = &shards {
                    let key = cols.customer.keys[i];
                    let shard = match of.get(key as usize) {
                        Some(&s) if !cols.customer.blank[key as usize] => s,
                        _ => 0,
                    };
                    if shard != sh.index {
                        skipped += 1;
                        continue;
                    }
                }
                let outcome = cols.check(i, opts, &mut kinds).and_then(|ok| {
                    if dups.get(next_dup) == Some(&in_rg) {
                        Err(Reason::DuplicateKey)
                    } else {
                        Ok(ok)
                    }
                });
                match outcome {
                    Ok(v) => {
                        kind_counts[v.kind as usize] += 1;
                        if !v.known {
                            let raw = cols.raw_event_type(i).unwrap_or_default();
                            *self.stats.unknown_event_types.entry(raw).or_insert(0) += 1;
                        }
                        min_t = min_t.min(v.time_us);
                        max_t = max_t.max(v.time_us);
                        let (part, local) = ids.place[v.customer as usize];
                        valid.part.push(part);
                        valid.customer.push(local);
                        valid.time_us.push(v.time_us);
                        valid.kind.push(v.kind);
                        valid.amount.push(v.amount);
                        valid.channel.push(cols.channel.keys[i]);
                        valid.category.push(cols.category.keys[i]);
                    }
                    Err(reason) => {
                        self.stats.reject(reason);
                        if reason.copied() {
                            rejects.push(&name, row + i as u64, reason, &cols, i);
                        }
                    }
                }
            }
            let start = valid.order_by_part(nparts, &mut order);
            self.hand_over(&ids, &valid, &order, &start, &cols);
            dict = Some(ids);
            row += n as u64;
            self.stats.rows_read += n as u64 - skipped;
            *self.stats.rows_per_file.entry(name.clone()).or_insert(0) += n as u64 - skipped;
        }
        let used: u64 = kind_counts.iter().sum();
        self.stats.rows_used += used;
        for (kind, n) in EventKind::ALL.iter().zip(kind_counts) {
            if n > 0 {
                *self.stats.event_types.entry(*kind).or_insert(0) += n;
            }
        }
        if used > 0 {
            self.stats.min_time_us = opt_min(self.stats.min_time_us, Some(min_t));
            self.stats.max_time_us = opt_max(self.stats.max_time_us, Some(max_t));
        }
        if let Some(b) = rejects.finish() {
            self.rejects.push(b);
        }
        Ok(())
    }

    /// Queues each partition's rows for its accumulator: first at the free partitions, then
    /// waiting for the busy ones. A partition applies its queue once it holds
    /// [`FLUSH_ROWS`] rows.
    fn hand_over(
        &self,
        dict: &Arc<IdDictionary>,
        rows: &Rows,
        order: &[u32],
        start: &[usize],
        cols: &Columns,
    ) {
        let nparts = start.len() - 1;
        let mut todo: Vec<usize> = (0..nparts)
            .map(|k| (self.first_part + k) % nparts)
            .filter(|&p| start[p + 1] > start[p])
            .collect();
        let mut wait = false;
        while !todo.is_empty() {
            todo.retain(|&p| {
                let mut part = if wait {
                    self.parts[p].lock().unwrap_or_else(|e| e.into_inner())
                } else {
                    match self.parts[p].try_lock() {
                        Ok(part) => part,
                        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                        Err(std::sync::TryLockError::WouldBlock) => return true,
                    }
                };
                let dicts = Dicts {
                    ids: Arc::clone(dict),
                    channel: Arc::clone(&cols.channel.codes),
                    category: Arc::clone(&cols.category.codes),
                };
                part.queue.push(rows, &order[start[p]..start[p + 1]], dicts);
                if part.queue.rows.time_us.len() >= FLUSH_ROWS {
                    part.flush(p, self.update);
                }
                false
            });
            wait = true;
        }
    }
}

/// Rows queued per partition before they are applied: enough that the partition's
/// accumulator is touched by several rows per customer while it is in cache, few enough to
/// bound memory (partitions × this × 29 bytes, plus the batch dictionaries the rows refer
/// to). On the 11M-event bench (200k customers, 64 partitions, one run each, same load):
/// 24k rows 1.50 s / 281 MB, 32k 1.49 s / 320 MB; 16k rows was ~6% slower than 32k.
const FLUSH_ROWS: usize = 24 * 1024;

/// The dictionaries a run of queued rows refers to.
#[derive(Debug, Clone)]
struct Dicts {
    ids: Arc<IdDictionary>,
    channel: Arc<[u64]>,
    category: Arc<[u64]>,
}

impl Dicts {
    fn same_as(&self, other: &Dicts) -> bool {
        let same = |a: &Arc<[u64]>, b: &Arc<[u64]>| Arc::ptr_eq(a, b) || a[..] == b[..];
        Arc::ptr_eq(&self.ids, &other.ids)
            && same(&self.channel, &other.channel)
            && same(&self.category, &other.category)
    }
}

/// Rows of one partition waiting for its accumulator, in runs that share dictionaries.
#[derive(Debug, Default)]
struct Queue {
    rows: Rows,
    /// Each run's dictionaries and the end of its rows.
    runs: Vec<(Dicts, usize)>,
}

impl Queue {
    fn push(&mut self, from: &Rows, picked: &[u32], dicts: Dicts) {
        if self.rows.time_us.is_empty() {
            // Sized once for a full queue, so it does not grow by doubling.
            self.rows.reserve(FLUSH_ROWS + picked.len());
        }
        self.rows.extend_from(from, picked);
        let end = self.rows.time_us.len();
        match self.runs.last_mut() {
            Some((last, last_end)) if last.same_as(&dicts) => *last_end = end,
            _ => self.runs.push((dicts, end)),
        }
    }
}

/// One customer partition of a scan: its accumulator and its queue.
#[derive(Debug)]
struct Partition<A> {
    acc: A,
    queue: Queue,
}

impl<A> Partition<A> {
    /// Applies the queued rows of partition number `p`.
    fn flush<U: Fn(&mut A, &EventBatch<'_>)>(&mut self, p: usize, update: &U) {
        let Queue { rows, runs } = &mut self.queue;
        let mut start = 0;
        for (dicts, end) in runs.iter() {
            let batch = rows.batch(start..*end, p, &dicts.ids, &dicts.channel, &dicts.category);
            update(&mut self.acc, &batch);
            start = *end;
        }
        rows.clear();
        runs.clear();
    }
}

fn same_array(a: &StringArray, b: &StringArray) -> bool {
    a.len() == b.len()
        && a.value_offsets().as_ptr() == b.value_offsets().as_ptr()
        && a.values().as_ptr() == b.values().as_ptr()
}

/// Reads only the time column and returns the latest event time (µs) that is in range and
/// before `before_us` (rows at or after it are `future_event`), if any: the default as-of is
/// the day after it, so one row dated years ahead cannot move it.
pub fn latest_event_time(inputs: &InputSet, before_us: i64) -> Result<Option<i64>, InputError> {
    let tasks = row_groups(inputs, |_| true);
    let end = before_us.min(MAX_TIME_US);
    tasks
        .par_iter()
        .map(|&(fi, rg)| {
            let file = &inputs.files[fi];
            // The row group's exact maximum from its statistics when it is in range (then it
            // is the answer for the row group), else a read of the column.
            if let Some(t) = time_max_statistic(file, rg).filter(|t| (MIN_TIME_US..end).contains(t))
            {
                return Ok(Some(t));
            }
            let reader = open_row_group(file, rg, &[Field::EventTime])?;
            let mut best: Option<i64> = None;
            for batch in reader {
                let batch = batch?;
                let col = batch.column(0);
                for i in 0..col.len() {
                    if let Some(t) = time_us(col, i).filter(|t| (MIN_TIME_US..end).contains(t)) {
                        best = opt_max(best, Some(t));
                    }
                }
            }
            Ok(best)
        })
        .try_reduce(|| None, |a, b| Ok(opt_max(a, b)))
}

/// The exact maximum event time (µs) of row group `rg` from the Parquet statistics, when the
/// column is a timestamp stored as a 64-bit integer and its writer recorded an exact maximum:
/// what [`latest_event_time`] would find by reading the column (it converts the same way).
fn time_max_statistic(file: &InputFile, rg: usize) -> Option<i64> {
    use arrow_schema::{DataType, TimeUnit};
    use parquet::file::statistics::Statistics;
    let Some(Source::Column(name)) = file.sources.get(&Field::EventTime) else {
        return None;
    };
    let to_us: fn(i64) -> Option<i64> = match file
        .metadata
        .schema()
        .field_with_name(name)
        .ok()?
        .data_type()
    {
        DataType::Timestamp(TimeUnit::Second, _) => |v| v.checked_mul(1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => |v| v.checked_mul(1_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Some,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => |v| Some(v.div_euclid(1_000)),
        _ => return None,
    };
    let pq = file.metadata.metadata();
    let column = pq
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().parts() == [name.clone()])?;
    match pq.row_groups().get(rg)?.column(column).statistics()? {
        Statistics::Int64(s) if s.max_is_exact() => s.max_opt().copied().and_then(to_us),
        _ => None,
    }
}
