//! Streaming the events: every row group of every file is read in parallel (rayon), each row is
//! validated and either handed to the caller's accumulator (in an [`EventBatch`]) or rejected
//! with a [`Reason`]. Partial accumulators are merged, so memory follows the accumulator (customers),
//! not the number of events.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Mutex};

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float64Type, Int32Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, Float64Array, PrimitiveArray, RecordBatch, StringArray,
};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::guard;
use super::input::{Field, InputError, InputFile, InputSet, Source};
use crate::events::{EventKind, EventTypeMap};

pub use crate::time::DAY_US;
use crate::time::{MAX_TIME_US, MIN_TIME_US};

const BATCH_ROWS: usize = 64 * 1024;

/// The columns the main scan validates and hands on (the key columns order_id / event_id are
/// read only by the duplicate pass).
const SCANNED: [Field; 6] = [
    Field::CustomerId,
    Field::EventTime,
    Field::EventType,
    Field::Amount,
    Field::Channel,
    Field::Category,
];

/// Converted-time sentinels: null, and not representable in µs (both outside the valid range).
const NULL_TIME: i64 = i64::MIN;
const BAD_TIME: i64 = i64::MIN + 1;

/// Why a row was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NullCustomerId,
    EmptyCustomerId,
    NullEventTime,
    TimeOutOfRange,
    /// Later than the wall clock (or a later `--as-of`) plus `validation.max_future`: a
    /// clock or unit error upstream, not data to score.
    FutureEvent,
    NullEventType,
    NonFiniteAmount,
    AmountOutOfRange,
    NegativeAmount,
    /// A later row with the event_id (or event type + order_id) of an earlier one.
    DuplicateKey,
    /// Valid, but at or after the as-of cutoff (a backfill): counted, not copied.
    AfterAsOf,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NullCustomerId => "null_customer_id",
            Reason::EmptyCustomerId => "empty_customer_id",
            Reason::NullEventTime => "null_event_time",
            Reason::TimeOutOfRange => "time_out_of_range",
            Reason::FutureEvent => "future_event",
            Reason::NullEventType => "null_event_type",
            Reason::NonFiniteAmount => "non_finite_amount",
            Reason::AmountOutOfRange => "amount_out_of_range",
            Reason::NegativeAmount => "negative_amount",
            Reason::DuplicateKey => "duplicate_key",
            Reason::AfterAsOf => "after_as_of",
        }
    }

    /// Whether rows rejected for this reason are copied to `rejects.parquet`.
    pub fn copied(self) -> bool {
        self != Reason::AfterAsOf
    }
}

/// A validated row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    pub customer_id: &'a str,
    /// Microseconds since the Unix epoch, UTC.
    pub time_us: i64,
    pub kind: EventKind,
    /// Finite, non-negative, within the configured range; `None` when absent.
    pub amount: Option<f64>,
    /// Code of the channel / category text ([`value_code`]); `None` when absent.
    pub channel: Option<u64>,
    pub category: Option<u64>,
}

/// What a scan needs to know to validate rows.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Rows at or after this time are counted as `after_as_of` (`i64::MAX`: none).
    pub as_of_us: i64,
    /// Rows at or after this time are rejected as `future_event` (`i64::MAX`: none); see
    /// [`future_limit`].
    pub future_us: i64,
    pub max_abs_amount: f64,
    pub event_types: EventTypeMap,
    /// Rows to reject as `duplicate_key` (from [`duplicate_rows`]); `None`: none.
    pub duplicates: Option<Arc<Duplicates>>,
    /// Whether the caller should look for duplicates (config `validation.deduplicate`).
    pub deduplicate: bool,
    /// The reject-share gate the caller applies ([`ScanStats::check_reject_share`]; config
    /// `validation.max_reject_share`).
    pub max_reject_share: f64,
}

impl Default for ReadOptions {
    /// No as-of cutoff, no future limit, amounts up to 1e9, the standard event vocabulary, no deduplication.
    fn default() -> Self {
        ReadOptions {
            as_of_us: i64::MAX,
            future_us: i64::MAX,
            max_abs_amount: 1e9,
            event_types: EventTypeMap::default(),
            duplicates: None,
            deduplicate: false,
            max_reject_share: 1.0,
        }
    }
}

/// Later occurrences of a key, per (file, row group): row numbers within the row group.
#[derive(Debug, Clone, Default)]
pub struct Duplicates {
    rows: FxHashMap<(usize, usize), Vec<u32>>,
    /// Total duplicate rows.
    pub count: u64,
}

impl Duplicates {
    fn get(&self, file: usize, rg: usize) -> &[u32] {
        self.rows.get(&(file, rg)).map_or(&[], |v| v.as_slice())
    }
}

/// Finds duplicate rows: the key of a row is its `event_id` when the column exists and is not
/// null, else its event type (lower-cased) with its `order_id` (so a refund may carry the
/// order id of its purchase); rows without a key are never duplicates. The first occurrence in
/// input order (files sorted, row groups and rows in order) is kept; later ones are duplicates.
/// Keys are compared by a 128-bit hash and sorted (in parallel) to find the repeats. Memory:
/// 24 bytes per keyed row.
pub fn duplicate_rows(inputs: &InputSet) -> Result<Duplicates, InputError> {
    let keyed = |f: &InputFile| {
        matches!(f.sources.get(&Field::OrderId), Some(Source::Column(_)))
            || matches!(f.sources.get(&Field::EventId), Some(Source::Column(_)))
    };
    if !inputs.files.iter().any(keyed) {
        return Ok(Duplicates::default());
    }
    let tasks: Vec<(usize, usize)> = inputs
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| keyed(f))
        .flat_map(|(fi, f)| (0..f.row_groups).map(move |rg| (fi, rg)))
        .collect();
    let keys: Vec<Vec<(Key, u32)>> = tasks
        .par_iter()
        .map(|&(fi, rg)| row_group_keys(&inputs.files[fi], rg))
        .collect::<Result<_, _>>()?;
    // (key, task, row): sorted, equal keys come together in input order, and every one after
    // the first of its run is a duplicate.
    let mut all: Vec<(Key, u32, u32)> = Vec::with_capacity(keys.iter().map(Vec::len).sum());
    for (t, ks) in keys.into_iter().enumerate() {
        all.extend(ks.into_iter().map(|(k, row)| (k, t as u32, row)));
    }
    all.par_sort_unstable();
    let mut out = Duplicates::default();
    for pair in all.windows(2) {
        if pair[0].0 == pair[1].0 {
            let (_, t, row) = pair[1];
            out.rows.entry(tasks[t as usize]).or_default().push(row);
            out.count += 1;
        }
    }
    for rows in out.rows.values_mut() {
        rows.sort_unstable();
    }
    Ok(out)
}

fn read_error(file: &InputFile, rg: usize, message: String) -> InputError {
    InputError::Read {
        path: file.path.clone(),
        row_group: rg,
        message,
    }
}

/// A batch reader over one row group of `file`, projected to `only`, reusing the footer read
/// when the file was opened. Every call into the decoders runs under [`guard::decode`], so
/// damaged pages that make parquet-rs panic become an [`InputError::Read`] naming the file and
/// row group.
fn open_row_group<'f>(
    file: &'f InputFile,
    rg: usize,
    only: &[Field],
) -> Result<RowGroup<'f>, InputError> {
    let handle = File::open(&file.path).map_err(|source| InputError::Io {
        path: file.path.clone(),
        source,
    })?;
    let reader = guard::decode(|| {
        ParquetRecordBatchReaderBuilder::new_with_metadata(handle, file.metadata.clone())
            .with_projection(file.projection(only))
            .with_row_groups(vec![rg])
            .with_batch_size(BATCH_ROWS)
            .build()
    })
    .map_err(|p| read_error(file, rg, p.to_string()))?
    .map_err(|e| read_error(file, rg, e.to_string()))?;
    Ok(RowGroup {
        reader: Some(reader),
        path: &file.path,
        rg,
    })
}

/// The record batches of one row group; stops after the first error.
struct RowGroup<'f> {
    /// `None` once an error was returned: a decoder that panicked is not called again.
    reader: Option<ParquetRecordBatchReader>,
    path: &'f std::path::Path,
    rg: usize,
}

impl Iterator for RowGroup<'_> {
    type Item = Result<RecordBatch, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = self.reader.as_mut()?;
        let err = |message: String| InputError::Read {
            path: self.path.to_path_buf(),
            row_group: self.rg,
            message,
        };
        let item = match guard::decode(|| reader.next()) {
            Ok(None) => None,
            Ok(Some(Ok(batch))) => return Some(Ok(batch)),
            Ok(Some(Err(e))) => Some(Err(err(e.to_string()))),
            Err(panic) => Some(Err(err(panic.to_string()))),
        };
        self.reader = None;
        item
    }
}

/// The keyed rows of one row group: (row within the row group, key), in row order.
fn row_group_keys(file: &InputFile, rg: usize) -> Result<Vec<(Key, u32)>, InputError> {
    let rerr = |message: String| read_error(file, rg, message);
    let reader = open_row_group(
        file,
        rg,
        &[Field::EventType, Field::OrderId, Field::EventId],
    )?;
    let text = |batch: &RecordBatch, f: Field| -> Result<Option<StringArray>, InputError> {
        match file.sources.get(&f) {
            Some(Source::Column(name)) => match batch.column_by_name(name) {
                Some(a) => arrow_cast::cast(a, &DataType::Utf8)
                    .map(|c| Some(c.as_string::<i32>().clone()))
                    .map_err(|e| rerr(format!("column '{name}': {e}"))),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    };
    // The event type as its distinct values (lower-cased once each) and a key per row.
    let kind_text = |batch: &RecordBatch| -> Result<Text, InputError> {
        match file.sources.get(&Field::EventType) {
            Some(Source::Partition(v)) => Ok(Text::Constant(v.clone())),
            Some(Source::Column(name)) => match batch.column_by_name(name) {
                Some(a) => Text::from_array(a, name).map_err(rerr),
                None => Ok(Text::Absent),
            },
            None => Ok(Text::Absent),
        }
    };
    let mut keys = Vec::new();
    let mut row = 0u32;
    for batch in reader {
        let batch = batch?;
        let (order, event) = (text(&batch, Field::OrderId)?, text(&batch, Field::EventId)?);
        let kind = kind_text(&batch)?;
        let (kinds, kind_keys) = kind.keyed(batch.num_rows(), |k| k);
        let kinds: Vec<String> = kinds
            .iter()
            .map(|k| k.trim().to_ascii_lowercase())
            .collect();
        for i in 0..batch.num_rows() {
            let key = match (get(&event, i), get(&order, i)) {
                (Some(e), _) => Some(key128(&["e", e])),
                (None, Some(o)) => {
                    let k = kinds.get(kind_keys[i] as usize).map_or("", String::as_str);
                    Some(key128(&["o", k, o]))
                }
                _ => None,
            };
            if let Some(k) = key {
                keys.push((k, row));
            }
            row += 1;
        }
    }
    Ok(keys)
}

fn get(a: &Option<StringArray>, i: usize) -> Option<&str> {
    a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i))
}

/// A duplicate key: two independent 64-bit hashes of its parts.
type Key = [u64; 2];

/// The [`Key`] of some text parts.
fn key128(parts: &[&str]) -> Key {
    use std::hash::Hasher;
    let mut a = rustc_hash::FxHasher::default();
    let mut b = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        a.write(p.as_bytes());
        a.write_u8(0xff);
        b.write(p.as_bytes());
        b.write_u8(0xff);
    }
    [a.finish(), b.finish()]
}

/// Too large a share of the input was unusable (a quality gate: nothing is published).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{:.1}% of rows rejected ({rejected} of {considered} not after as-of) exceeds validation.max_reject_share {limit}; top reasons: {top}",
    100.0 * share
)]
pub struct TooManyRejects {
    pub share: f64,
    pub limit: f64,
    pub rejected: u64,
    pub considered: u64,
    /// The commonest reasons with counts, e.g. `null_customer_id 900, future_event 12`.
    pub top: String,
}

/// Row accounting of a scan: every row read is used or rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanStats {
    pub rows_read: u64,
    pub rows_used: u64,
    pub rows_rejected: u64,
    pub rejected_by_reason: BTreeMap<Reason, u64>,
    pub event_types: BTreeMap<EventKind, u64>,
    /// Raw event_type values that mapped to `other`, with counts.
    pub unknown_event_types: BTreeMap<String, u64>,
    /// Earliest and latest used event time (µs).
    pub min_time_us: Option<i64>,
    pub max_time_us: Option<i64>,
    /// Rows per input file, in input order.
    pub rows_per_file: BTreeMap<String, u64>,
}

impl ScanStats {
    fn reject(&mut self, reason: Reason) {
        self.rows_rejected += 1;
        *self.rejected_by_reason.entry(reason).or_insert(0) += 1;
    }

    /// Adds another partial's counts to this one.
    pub fn merge(mut self, other: ScanStats) -> ScanStats {
        self.rows_read += other.rows_read;
        self.rows_used += other.rows_used;
        self.rows_rejected += other.rows_rejected;
        for (k, v) in other.rejected_by_reason {
            *self.rejected_by_reason.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.event_types {
            *self.event_types.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.unknown_event_types {
            *self.unknown_event_types.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.rows_per_file {
            *self.rows_per_file.entry(k).or_insert(0) += v;
        }
        self.min_time_us = opt_min(self.min_time_us, other.min_time_us);
        self.max_time_us = opt_max(self.max_time_us, other.max_time_us);
        self
    }

    /// Rows rejected as unusable: every reason except `after_as_of` (valid rows merely
    /// outside the window).
    pub fn unusable(&self) -> u64 {
        self.rows_rejected
            - self
                .rejected_by_reason
                .get(&Reason::AfterAsOf)
                .copied()
                .unwrap_or(0)
    }

    /// Share of the rows not merely after as-of that were unusable:
    /// `unusable / (used + unusable)`; 0 when there are none.
    pub fn reject_share(&self) -> f64 {
        let bad = self.unusable();
        let considered = self.rows_used + bad;
        if considered == 0 {
            0.0
        } else {
            bad as f64 / considered as f64
        }
    }

    /// The reject-share gate: `Err` when [`ScanStats::reject_share`] exceeds `limit`, naming
    /// the share, the limit and the three commonest reasons.
    pub fn check_reject_share(&self, limit: f64) -> Result<(), TooManyRejects> {
        let share = self.reject_share();
        if share <= limit {
            return Ok(());
        }
        let mut reasons: Vec<(Reason, u64)> = self
            .rejected_by_reason
            .iter()
            .filter(|(r, _)| **r != Reason::AfterAsOf)
            .map(|(r, n)| (*r, *n))
            .collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top = reasons
            .iter()
            .take(3)
            .map(|(r, n)| format!("{} {n}", r.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        Err(TooManyRejects {
            share,
            limit,
            rejected: self.unusable(),
            considered: self.rows_used + self.unusable(),
            top,
        })
    }

    /// The rejected counts as one line, e.g. `null_customer_id 3, after_as_of 10`.
    pub fn reasons_line(&self) -> String {
        if self.rejected_by_reason.is_empty() {
            return "none".into();
        }
        self.rejected_by_reason
            .iter()
            .map(|(r, n)| format!("{} {n}", r.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn opt_min(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn opt_max(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Schema of `rejects.parquet`: where the row was, why it was rejected, and its original
/// values rendered as text (so rows of differently typed files fit one table).
pub fn rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        ArrowField::new("file", DataType::Utf8, false),
        ArrowField::new("row", DataType::Int64, false),
        ArrowField::new("reason", DataType::Utf8, false),
        ArrowField::new("customer_id", DataType::Utf8, true),
        ArrowField::new("event_time", DataType::Utf8, true),
        ArrowField::new("event_type", DataType::Utf8, true),
        ArrowField::new("amount", DataType::Utf8, true),
    ]))
}

/// Result of a scan: the accumulators (one per customer partition), the counts, and the
/// rejected rows in input order.
#[derive(Debug)]
pub struct Scan<A> {
    pub parts: Vec<A>,
    pub stats: ScanStats,
    pub rejects: Vec<RecordBatch>,
}

/// The customer ids of one batch (its dictionary), split into partitions by a hash of the id:
/// every row of a customer lands in the same partition, whichever batch or file it is in.
#[derive(Debug)]
pub struct IdDictionary {
    values: StringArray,
    /// Per partition: (index into `values`, [`value_code`]) of the ids that belong to it,
    /// side by side so that a partition's ids are read front to back.
    picks: Vec<Vec<(u32, u64)>>,
    /// Per value: its partition and its position in that partition's `picks`.
    place: Vec<(u32, u32)>,
}

impl IdDictionary {
    fn new(values: StringArray, parts: usize) -> IdDictionary {
        let mut picks = vec![Vec::new(); parts];
        let place = (0..values.len())
            .map(|j| {
                let h = value_code(values.value(j));
                let p = partition_of_hash(h, parts);
                picks[p].push((j as u32, h));
                (p as u32, (picks[p].len() - 1) as u32)
            })
            .collect();
        IdDictionary {
            values,
            picks,
            place,
        }
    }
}

/// The partition (of `parts`) a customer id belongs to.
pub fn partition_of(id: &str, parts: usize) -> usize {
    partition_of_hash(value_code(id), parts)
}

fn partition_of_hash(hash: u64, parts: usize) -> usize {
    // The high half of the hash: the low bits pick hash-table buckets downstream.
    ((hash >> 32) % parts.max(1) as u64) as usize
}

/// The distinct customer ids an [`EventBatch`] refers to: one partition of a batch dictionary.
#[derive(Debug, Clone, Copy)]
pub struct Ids<'a> {
    dict: &'a Arc<IdDictionary>,
    part: usize,
}

impl<'a> Ids<'a> {
    /// Distinct ids.
    pub fn len(&self) -> usize {
        self.dict.picks[self.part].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Id number `k`.
    pub fn get(&self, k: u32) -> &'a str {
        let dict: &'a IdDictionary = self.dict;
        dict.values
            .value(dict.picks[self.part][k as usize].0 as usize)
    }

    /// [`value_code`] of id number `k`.
    pub fn hash(&self, k: u32) -> u64 {
        self.dict.picks[self.part][k as usize].1
    }

    /// Whether `self` and `other` are the same ids, numbered the same way (so a mapping from
    /// id numbers computed for one holds for the other).
    pub fn same_as(&self, other: &IdsKey) -> bool {
        Arc::ptr_eq(self.dict, &other.0) && self.part == other.1
    }

    /// A key that keeps these ids alive and identifies them (see [`Ids::same_as`]).
    pub fn key(&self) -> IdsKey {
        IdsKey(Arc::clone(self.dict), self.part)
    }
}

/// Identity of an [`Ids`], for caches.
#[derive(Debug, Clone)]
pub struct IdsKey(Arc<IdDictionary>, usize);

/// Valid rows of one record batch for one customer partition, column by column: what a scan
/// hands an accumulator.
///
/// Customer ids, channels and categories come as numbers into the batch's distinct values (the
/// Parquet dictionary when the column has one), so an accumulator can resolve each distinct
/// value once instead of once per row.
#[derive(Debug, Clone, Copy)]
pub struct EventBatch<'a> {
    /// Distinct customer ids; `customer[i]` numbers them.
    pub ids: Ids<'a>,
    pub customer: &'a [u32],
    /// Microseconds since the Unix epoch, UTC.
    pub time_us: &'a [i64],
    pub kind: &'a [EventKind],
    /// Finite, non-negative and within range; NaN when absent.
    pub amount: &'a [f64],
    pub channel: Codes<'a>,
    pub category: Codes<'a>,
}

/// A coded text column of an [`EventBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Codes<'a> {
    /// Code ([`value_code`]) of each distinct value.
    pub values: &'a [u64],
    /// Per row: index into `values`, or [`Codes::NONE`] when the value is absent.
    pub keys: &'a [u32],
}

impl Codes<'_> {
    /// Key of an absent value.
    pub const NONE: u32 = u32::MAX;

    /// The code of row `i`.
    pub fn get(&self, i: usize) -> Option<u64> {
        self.values.get(self.keys[i] as usize).copied()
    }
}

impl<'a> EventBatch<'a> {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.time_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time_us.is_empty()
    }

    /// Row `i` as one [`Event`].
    pub fn event(&self, i: usize) -> Event<'a> {
        let amount = self.amount[i];
        Event {
            customer_id: self.ids.get(self.customer[i]),
            time_us: self.time_us[i],
            kind: self.kind[i],
            amount: (!amount.is_nan()).then_some(amount),
            channel: self.channel.get(i),
            category: self.category.get(i),
        }
    }

    /// The rows as [`Event`]s, in order.
    pub fn events(&self) -> impl Iterator<Item = Event<'a>> + '_ {
        (0..self.len()).map(|i| self.event(i))
    }
}

/// Valid rows of a batch, column by column (buffers reused from batch to batch).
#[derive(Debug, Default)]
struct Rows {
    part: Vec<u32>,
    customer: Vec<u32>,
    time_us: Vec<i64>,
    kind: Vec<EventKind>,
    amount: Vec<f64>,
    channel: Vec<u32>,
    category: Vec<u32>,
}

impl Rows {
    fn reserve(&mut self, n: usize) {
        self.customer.reserve(n);
        self.time_us.reserve(n);
        self.kind.reserve(n);
        self.amount.reserve(n);
        self.channel.reserve(n);
        self.category.reserve(n);
    }

    fn clear(&mut self) {
        self.part.clear();
        self.customer.clear();
        self.time_us.clear();
        self.kind.clear();
        self.amount.clear();
        self.channel.clear();
        self.category.clear();
    }

    /// Rows `r` as the [`EventBatch`] of partition `part`, with the dictionaries they refer to.
    fn batch<'a>(
        &'a self,
        r: std::ops::Range<usize>,
        part: usize,
        dict: &'a Arc<IdDictionary>,
        channel: &'a [u64],
        category: &'a [u64],
    ) -> EventBatch<'a> {
        EventBatch {
            ids: Ids { dict, part },
            customer: &self.customer[r.clone()],
            time_us: &self.time_us[r.clone()],
            kind: &self.kind[r.clone()],
            amount: &self.amount[r.clone()],
            channel: Codes {
                values: channel,
                keys: &self.channel[r.clone()],
            },
            category: Codes {
                values: category,
                keys: &self.category[r],
            },
        }
    }

    /// Row numbers grouped by partition (stable) into `order`; returns where each
    /// partition's rows start in it.
    fn order_by_part(&self, parts: usize, order: &mut Vec<u32>) -> Vec<usize> {
        let mut start = vec![0usize; parts + 1];
        for &p in &self.part {
            start[p as usize + 1] += 1;
        }
        for p in 0..parts {
            start[p + 1] += start[p];
        }
        order.clear();
        order.resize(self.part.len(), 0);
        let mut next = start.clone();
        for (i, &p) in self.part.iter().enumerate() {
            order[next[p as usize]] = i as u32;
            next[p as usize] += 1;
        }
        start
    }

    /// Appends rows `picked` of `from`.
    fn extend_from(&mut self, from: &Rows, picked: &[u32]) {
        fn gather<T: Copy>(to: &mut Vec<T>, from: &[T], picked: &[u32]) {
            to.extend(picked.iter().map(|&i| from[i as usize]));
        }
        gather(&mut self.customer, &from.customer, picked);
        gather(&mut self.time_us, &from.time_us, picked);
        gather(&mut self.kind, &from.kind, picked);
        gather(&mut self.amount, &from.amount, picked);
        gather(&mut self.channel, &from.channel, picked);
        gather(&mut self.category, &from.category, picked);
    }
}

/// Events held in memory, split into customer partitions the way a scan splits them: for
/// tests, benchmarks and small inputs.
#[derive(Debug)]
pub struct EventBatches {
    ids: Arc<IdDictionary>,
    channel: Arc<[u64]>,
    category: Arc<[u64]>,
    rows: Rows,
    /// Where each partition's rows start in `rows` (and where the last ends).
    start: Vec<usize>,
}

impl EventBatches {
    /// `events` (already valid) into `parts` partitions.
    pub fn new(events: &[Event<'_>], parts: usize) -> EventBatches {
        let parts = parts.max(1);
        let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
        let mut names: Vec<&str> = Vec::new();
        let mut codes = [FxHashMap::<u64, u32>::default(), FxHashMap::default()];
        let mut values: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        let mut key = |f: usize, code: Option<u64>| match code {
            Some(c) => *codes[f].entry(c).or_insert_with(|| {
                values[f].push(c);
                (values[f].len() - 1) as u32
            }),
            None => Codes::NONE,
        };
        let mut all = Rows::default();
        let mut customers = Vec::with_capacity(events.len());
        for e in events {
            customers.push(*ids.entry(e.customer_id).or_insert_with(|| {
                names.push(e.customer_id);
                (names.len() - 1) as u32
            }));
            all.time_us.push(e.time_us);
            all.kind.push(e.kind);
            all.amount.push(e.amount.unwrap_or(f64::NAN));
            all.channel.push(key(0, e.channel));
            all.category.push(key(1, e.category));
        }
        let dict = IdDictionary::new(StringArray::from_iter_values(names), parts);
        for c in customers {
            let (part, local) = dict.place[c as usize];
            all.part.push(part);
            all.customer.push(local);
        }
        let mut order = Vec::new();
        let start = all.order_by_part(parts, &mut order);
        let mut rows = Rows::default();
        rows.extend_from(&all, &order);
        let [channel, category] = values;
        EventBatches {
            ids: Arc::new(dict),
            channel: channel.into(),
            category: category.into(),
            rows,
            start,
        }
    }

    /// Partitions.
    pub fn parts(&self) -> usize {
        self.start.len() - 1
    }

    /// The events of partition `p`.
    pub fn batch(&self, p: usize) -> EventBatch<'_> {
        self.rows.batch(
            self.start[p]..self.start[p + 1],
            p,
            &self.ids,
            &self.channel,
            &self.category,
        )
    }
}

/// Reads every row group of `inputs` in parallel and hands the valid rows, in batches, to
/// `update` with the accumulator of their customer's partition: `parts[p]` sees every row of
/// the customers of partition `p` (see [`partition_of`]) and no other, so the accumulators
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
    let tasks: Vec<(usize, usize)> = inputs
        .files
        .iter()
        .enumerate()
        .flat_map(|(fi, f)| (0..f.row_groups).map(move |rg| (fi, rg)))
        .collect();
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
        let reader = open_row_group(file, rg, &SCANNED)?;
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
            valid.clear();
            for i in 0..n {
                let in_rg = (row - first_row + i as u64) as u32;
                while dups.get(next_dup).is_some_and(|&d| d < in_rg) {
                    next_dup += 1;
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
            self.stats.rows_read += n as u64;
            *self.stats.rows_per_file.entry(name.clone()).or_insert(0) += n as u64;
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

/// The first implausible event time: rows at or after `max(now, as_of) + max_future` are
/// rejected as `future_event` (all times in µs; `as_of` only when the user gave it).
///
/// The reference is the wall clock when the run started, or a later `--as-of` (scoring as of
/// a future date is allowed; rows up to it are then plausible). A backfill (`--as-of` in the
/// past) keeps the wall clock as reference, so its rows after as-of stay valid data, counted
/// as `after_as_of` and not copied, and never become `future_event`. When the as-of comes
/// from the data, it is computed with this same limit ([`latest_event_time`]), so a row the
/// default as-of ignored is never used either.
pub fn future_limit(now_us: i64, as_of_given_us: Option<i64>, max_future_us: i64) -> i64 {
    now_us
        .max(as_of_given_us.unwrap_or(i64::MIN))
        .saturating_add(max_future_us.max(0))
}

/// Reads only the time column and returns the latest event time (µs) that is in range and
/// before `before_us` (rows at or after it are `future_event`), if any: the default as-of is
/// the day after it, so one row dated years ahead cannot move it.
pub fn latest_event_time(inputs: &InputSet, before_us: i64) -> Result<Option<i64>, InputError> {
    let tasks: Vec<(usize, usize)> = inputs
        .files
        .iter()
        .enumerate()
        .flat_map(|(fi, f)| (0..f.row_groups).map(move |rg| (fi, rg)))
        .collect();
    let end = before_us.min(MAX_TIME_US);
    tasks
        .par_iter()
        .map(|&(fi, rg)| {
            let file = &inputs.files[fi];
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

/// The columns of one batch, in the shapes the validator reads.
struct Columns<'a> {
    customer: Distinct,
    customer_raw: Option<&'a ArrayRef>,
    time: Option<&'a ArrayRef>,
    /// `time` in µs, converted once per batch ([`NULL_TIME`] / [`BAD_TIME`] sentinels).
    times: Vec<i64>,
    kind: Text,
    /// Event kind of each dictionary value of `kind` (dictionary-encoded columns only).
    kind_by_key: Vec<(EventKind, bool)>,
    amount: Option<Float64Array>,
    amount_raw: Option<&'a ArrayRef>,
    channel: Coded,
    category: Coded,
}

/// A text column: plain values, dictionary keys into values, or one constant from a partition
/// folder. Low-cardinality columns are read dictionary-encoded (see `InputFile`), so per-row
/// work is a key lookup, not a string comparison.
enum Text {
    Plain(StringArray),
    Dict(PrimitiveArray<Int32Type>, StringArray),
    Constant(String),
    Absent,
}

impl Text {
    fn from_array(a: &ArrayRef, name: &str) -> Result<Text, String> {
        if let DataType::Dictionary(k, v) = a.data_type() {
            let want = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
            let dict = if **k == DataType::Int32 && **v == DataType::Utf8 {
                a.clone()
            } else {
                arrow_cast::cast(a, &want).map_err(|e| format!("column '{name}': {e}"))?
            };
            let d = dict.as_dictionary::<Int32Type>();
            return Ok(Text::Dict(
                d.keys().clone(),
                d.values().as_string::<i32>().clone(),
            ));
        }
        let cast =
            arrow_cast::cast(a, &DataType::Utf8).map_err(|e| format!("column '{name}': {e}"))?;
        Ok(Text::Plain(cast.as_string::<i32>().clone()))
    }

    fn get(&self, i: usize) -> Option<&str> {
        match self {
            Text::Plain(a) => (!a.is_null(i)).then(|| a.value(i)),
            Text::Dict(keys, values) => {
                (!keys.is_null(i)).then(|| values.value(keys.value(i) as usize))
            }
            Text::Constant(s) => Some(s.as_str()),
            Text::Absent => None,
        }
    }

    /// Distinct values and one key per row (`Codes::NONE` for null): the dictionary itself
    /// when there is one, else the values interned in row order.
    fn keyed<'s, T>(&'s self, n: usize, mut value: impl FnMut(&'s str) -> T) -> (Vec<T>, Vec<u32>)
    where
        T: Copy + Eq + std::hash::Hash,
    {
        match self {
            Text::Dict(keys, values) => {
                let distinct = (0..values.len()).map(|j| value(values.value(j))).collect();
                let keyed = (0..n)
                    .map(|i| {
                        if keys.is_null(i) {
                            return Codes::NONE;
                        }
                        let k = keys.value(i) as usize;
                        if values.is_null(k) {
                            Codes::NONE
                        } else {
                            k as u32
                        }
                    })
                    .collect();
                (distinct, keyed)
            }
            Text::Plain(a) => {
                let mut seen: FxHashMap<T, u32> = FxHashMap::default();
                let mut distinct = Vec::new();
                let keyed = (0..n)
                    .map(|i| {
                        if a.is_null(i) {
                            return Codes::NONE;
                        }
                        let v = value(a.value(i));
                        *seen.entry(v).or_insert_with(|| {
                            distinct.push(v);
                            (distinct.len() - 1) as u32
                        })
                    })
                    .collect();
                (distinct, keyed)
            }
            Text::Constant(s) => (vec![value(s)], vec![0; n]),
            Text::Absent => (Vec::new(), vec![Codes::NONE; n]),
        }
    }
}

/// The customer ids of one batch: distinct values and one key per row.
struct Distinct {
    values: StringArray,
    /// Per row: index into `values`, or `Codes::NONE` when null.
    keys: Vec<u32>,
    /// Per value: empty or only whitespace.
    blank: Vec<bool>,
}

impl Distinct {
    fn new(text: &Text, n: usize) -> Distinct {
        let (values, keys) = match text {
            // The dictionary itself, so that batches sharing it are recognised.
            Text::Dict(_, values) => (values.clone(), text.keyed(n, |_| ()).1),
            _ => {
                let (distinct, keys) = text.keyed(n, |v| v);
                (StringArray::from_iter_values(distinct), keys)
            }
        };
        let blank = (0..values.len())
            .map(|j| {
                let v = values.value(j);
                // Most ids start with a visible ASCII character: no need to trim those.
                !v.as_bytes().first().is_some_and(u8::is_ascii_graphic) && v.trim().is_empty()
            })
            .collect();
        Distinct {
            values,
            keys,
            blank,
        }
    }

    fn get(&self, i: usize) -> Option<&str> {
        let k = self.keys[i];
        (k != Codes::NONE).then(|| self.values.value(k as usize))
    }
}

/// A text column turned into stable 64-bit value codes (hash of the text), computed once per
/// distinct value.
struct Coded {
    codes: Arc<[u64]>,
    keys: Vec<u32>,
}

impl Coded {
    fn new(text: &Text, n: usize) -> Coded {
        let (codes, keys) = text.keyed(n, value_code);
        Coded {
            codes: codes.into(),
            keys,
        }
    }
}

/// A stable code for a text value (FxHash is deterministic across runs and platforms).
pub fn value_code(s: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

/// What the validator keeps of a valid row.
struct Valid {
    customer: u32,
    time_us: i64,
    kind: EventKind,
    known: bool,
    /// NaN when absent.
    amount: f64,
}

impl<'a> Columns<'a> {
    fn from_batch(
        file: &InputFile,
        batch: &'a RecordBatch,
        opts: &ReadOptions,
    ) -> Result<Columns<'a>, String> {
        let n = batch.num_rows();
        let column = |f: Field| -> Option<&'a ArrayRef> {
            match file.sources.get(&f) {
                Some(Source::Column(name)) => batch.column_by_name(name),
                _ => None,
            }
        };
        let text = |f: Field| -> Result<Text, String> {
            match file.sources.get(&f) {
                Some(Source::Partition(v)) => Ok(Text::Constant(v.clone())),
                Some(Source::Column(name)) => match batch.column_by_name(name) {
                    Some(a) => Text::from_array(a, name),
                    None => Ok(Text::Absent),
                },
                None => Ok(Text::Absent),
            }
        };
        let amount_raw = column(Field::Amount);
        let amount = match amount_raw {
            Some(a) => Some(
                arrow_cast::cast(a, &DataType::Float64)
                    .map_err(|e| format!("column 'amount': {e}"))?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            None => None,
        };
        let kind = text(Field::EventType)?;
        let kind_by_key = match &kind {
            Text::Dict(_, values) => (0..values.len())
                .map(|j| opts.event_types.classify(values.value(j)))
                .collect(),
            _ => Vec::new(),
        };
        let time = column(Field::EventTime);
        let times = match time {
            Some(col) => times_us(col),
            None => vec![NULL_TIME; n],
        };
        Ok(Columns {
            customer: Distinct::new(&text(Field::CustomerId)?, n),
            customer_raw: column(Field::CustomerId),
            time,
            times,
            kind,
            kind_by_key,
            amount,
            amount_raw,
            channel: Coded::new(&text(Field::Channel)?, n),
            category: Coded::new(&text(Field::Category)?, n),
        })
    }

    fn raw_event_type(&self, i: usize) -> Option<String> {
        self.kind.get(i).map(str::to_string)
    }

    /// Validates row `i`.
    fn check(
        &self,
        i: usize,
        opts: &ReadOptions,
        kinds: &mut FxHashMap<String, (EventKind, bool)>,
    ) -> Result<Valid, Reason> {
        let customer = self.customer.keys[i];
        if customer == Codes::NONE {
            return Err(Reason::NullCustomerId);
        }
        if self.customer.blank[customer as usize] {
            return Err(Reason::EmptyCustomerId);
        }
        let time_us = self.times[i];
        if time_us == NULL_TIME {
            return Err(Reason::NullEventTime);
        }
        if !(MIN_TIME_US..MAX_TIME_US).contains(&time_us) {
            return Err(Reason::TimeOutOfRange);
        }
        if time_us >= opts.future_us {
            return Err(Reason::FutureEvent);
        }
        let (kind, known) = match &self.kind {
            Text::Dict(keys, _) => {
                if keys.is_null(i) {
                    return Err(Reason::NullEventType);
                }
                self.kind_by_key[keys.value(i) as usize]
            }
            other => {
                let raw = other.get(i).ok_or(Reason::NullEventType)?;
                match kinds.get(raw) {
                    Some(k) => *k,
                    None => {
                        let k = opts.event_types.classify(raw);
                        kinds.insert(raw.to_string(), k);
                        k
                    }
                }
            }
        };
        let amount = match &self.amount {
            Some(a) if !a.is_null(i) => {
                let v = a.value(i);
                if !v.is_finite() {
                    return Err(Reason::NonFiniteAmount);
                }
                if v.abs() > opts.max_abs_amount {
                    return Err(Reason::AmountOutOfRange);
                }
                if v < 0.0 {
                    return Err(Reason::NegativeAmount);
                }
                v
            }
            _ => f64::NAN,
        };
        if time_us >= opts.as_of_us {
            return Err(Reason::AfterAsOf);
        }
        Ok(Valid {
            customer,
            time_us,
            kind,
            known,
            amount,
        })
    }
}

/// [`time_us`] of a whole column, with the [`NULL_TIME`] / [`BAD_TIME`] sentinels.
fn times_us(col: &ArrayRef) -> Vec<i64> {
    fn convert<T: ArrowPrimitiveType>(
        col: &ArrayRef,
        f: impl Fn(T::Native) -> Option<i64>,
    ) -> Vec<i64> {
        let a = col.as_primitive::<T>();
        // A real time that converts to the null sentinel (i64::MIN µs, far before 1900) is out
        // of range, not null.
        let values = a
            .values()
            .iter()
            .map(|&v| f(v).filter(|&t| t != NULL_TIME).unwrap_or(BAD_TIME));
        match a.nulls() {
            None => values.collect(),
            Some(nulls) => values
                .zip(nulls.iter())
                .map(|(t, valid)| if valid { t } else { NULL_TIME })
                .collect(),
        }
    }
    match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            convert::<TimestampSecondType>(col, |v| v.checked_mul(1_000_000))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            convert::<TimestampMillisecondType>(col, |v| v.checked_mul(1_000))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            convert::<TimestampMicrosecondType>(col, Some)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            convert::<TimestampNanosecondType>(col, |v| Some(v.div_euclid(1_000)))
        }
        DataType::Date32 => convert::<Date32Type>(col, |v| Some(i64::from(v) * DAY_US)),
        DataType::Date64 => convert::<Date64Type>(col, |v| v.checked_mul(1_000)),
        _ => (0..col.len())
            .map(|i| if col.is_null(i) { NULL_TIME } else { BAD_TIME })
            .collect(),
    }
}

/// Event time of row `i` in µs since the epoch (UTC), `None` if null or not representable.
/// Time-zone-aware timestamps already store UTC instants; naive ones are taken as UTC.
fn time_us(col: &ArrayRef, i: usize) -> Option<i64> {
    if col.is_null(i) {
        return None;
    }
    match col.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => col
            .as_primitive::<TimestampSecondType>()
            .value(i)
            .checked_mul(1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => col
            .as_primitive::<TimestampMillisecondType>()
            .value(i)
            .checked_mul(1_000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Some(col.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(
            col.as_primitive::<TimestampNanosecondType>()
                .value(i)
                .div_euclid(1_000),
        ),
        DataType::Date32 => Some(i64::from(col.as_primitive::<Date32Type>().value(i)) * DAY_US),
        DataType::Date64 => col.as_primitive::<Date64Type>().value(i).checked_mul(1_000),
        _ => None,
    }
}

/// Collects rejected rows of one task.
#[derive(Default)]
struct RejectBuilder {
    file: StringBuilder,
    row: Int64Builder,
    reason: StringBuilder,
    customer_id: StringBuilder,
    event_time: StringBuilder,
    event_type: StringBuilder,
    amount: StringBuilder,
    len: usize,
}

impl RejectBuilder {
    fn push(&mut self, file: &str, row: u64, reason: Reason, cols: &Columns<'_>, i: usize) {
        self.file.append_value(file);
        self.row
            .append_value(i64::try_from(row).unwrap_or(i64::MAX));
        self.reason.append_value(reason.as_str());
        match cols.customer_raw {
            Some(a) => self.customer_id.append_option(render(a, i)),
            None => self.customer_id.append_option(cols.customer.get(i)),
        }
        // A time zone given by name ("UTC", "Europe/Paris") cannot be rendered without the
        // time-zone database arrow leaves out: such values are written as the UTC instant.
        self.event_time.append_option(cols.time.and_then(|a| {
            render(a, i).or_else(|| {
                time_us(a, i)
                    .and_then(chrono::DateTime::from_timestamp_micros)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string())
            })
        }));
        self.event_type.append_option(cols.kind.get(i));
        self.amount
            .append_option(cols.amount_raw.and_then(|a| render(a, i)));
        self.len += 1;
    }

    fn finish(mut self) -> Option<RecordBatch> {
        if self.len == 0 {
            return None;
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.file.finish()),
            Arc::new(self.row.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.customer_id.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.amount.finish()),
        ];
        RecordBatch::try_new(rejects_schema(), columns).ok()
    }
}

/// The original value of row `i` as text, `None` when null.
fn render(array: &ArrayRef, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    let opts = FormatOptions::default();
    ArrayFormatter::try_new(array.as_ref(), &opts)
        .ok()
        .map(|f| f.value(i).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_future_limit_follows_the_later_of_clock_and_given_as_of() {
        let (now, day) = (100 * DAY_US, DAY_US);
        // Wall clock only (default as-of, or a backfill).
        assert_eq!(future_limit(now, None, day), 101 * DAY_US);
        assert_eq!(future_limit(now, Some(40 * DAY_US), day), 101 * DAY_US);
        // A later --as-of moves the limit with it.
        assert_eq!(future_limit(now, Some(200 * DAY_US), day), 201 * DAY_US);
        // No overflow at the ends; a negative tolerance counts as none.
        assert_eq!(future_limit(i64::MAX - 1, None, day), i64::MAX);
        assert_eq!(future_limit(now, None, -day), now);
    }

    #[test]
    fn the_reject_share_leaves_out_rows_after_as_of() {
        let mut s = ScanStats {
            rows_read: 1000,
            rows_used: 600,
            rows_rejected: 400,
            ..ScanStats::default()
        };
        s.rejected_by_reason.insert(Reason::AfterAsOf, 300);
        s.rejected_by_reason.insert(Reason::NullCustomerId, 60);
        s.rejected_by_reason.insert(Reason::FutureEvent, 30);
        s.rejected_by_reason.insert(Reason::DuplicateKey, 10);
        assert_eq!(s.unusable(), 100);
        assert_eq!(s.reject_share(), 100.0 / 700.0);
        assert_eq!(s.check_reject_share(0.15), Ok(()));
        let e = s.check_reject_share(0.1).expect_err("over the limit");
        assert_eq!(
            e.to_string(),
            "14.3% of rows rejected (100 of 700 not after as-of) exceeds validation.max_reject_share 0.1; top reasons: null_customer_id 60, future_event 30, duplicate_key 10"
        );
        assert_eq!(ScanStats::default().reject_share(), 0.0);
    }
}
