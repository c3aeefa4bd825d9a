//! Streaming the events: every row group of every file is read in parallel (rayon), each row is
//! validated and either handed to the caller's accumulator (in an [`EventBatch`]) or rejected
//! with a [`Reason`]. Partial accumulators are merged, so memory follows the accumulator (customers),
//! not the number of events.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float64Type, Int32Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, Float64Array, PrimitiveArray, RecordBatch, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::Serialize;

use super::input::{Field, InputError, InputFile, InputSet, Source};
use crate::events::{EventKind, EventTypeMap};

/// Microseconds per day.
pub const DAY_US: i64 = 86_400_000_000;
/// Earliest accepted event time: 1900-01-01T00:00:00Z.
pub const MIN_TIME_US: i64 = -25_567 * DAY_US;
/// First rejected event time: 2200-01-01T00:00:00Z.
pub const MAX_TIME_US: i64 = 84_006 * DAY_US;

const BATCH_ROWS: usize = 64 * 1024;

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
    pub max_abs_amount: f64,
    pub event_types: EventTypeMap,
    /// Rows to reject as `duplicate_key` (from [`duplicate_rows`]); `None`: none.
    pub duplicates: Option<Arc<Duplicates>>,
    /// Whether the caller should look for duplicates (config `validation.deduplicate`).
    pub deduplicate: bool,
}

impl Default for ReadOptions {
    /// No as-of cutoff, amounts up to 1e9, the standard event vocabulary, no deduplication.
    fn default() -> Self {
        ReadOptions {
            as_of_us: i64::MAX,
            max_abs_amount: 1e9,
            event_types: EventTypeMap::default(),
            duplicates: None,
            deduplicate: false,
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
/// Keys are compared by a 128-bit hash. Memory: one hash per keyed row.
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
    let keys: Vec<Vec<Option<u128>>> = tasks
        .par_iter()
        .map(|&(fi, rg)| row_group_keys(&inputs.files[fi], rg))
        .collect::<Result<_, _>>()?;
    let mut seen: rustc_hash::FxHashSet<u128> = rustc_hash::FxHashSet::default();
    let mut out = Duplicates::default();
    for (&(fi, rg), ks) in tasks.iter().zip(&keys) {
        for (i, k) in ks.iter().enumerate() {
            if let Some(k) = k {
                if !seen.insert(*k) {
                    out.rows.entry((fi, rg)).or_default().push(i as u32);
                    out.count += 1;
                }
            }
        }
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

/// A batch reader over one row group of `file`, projected to `only` (all needed columns when
/// `None`), reusing the footer read when the file was opened.
fn open_row_group(
    file: &InputFile,
    rg: usize,
    only: Option<&[Field]>,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, InputError> {
    let handle = File::open(&file.path).map_err(|source| InputError::Io {
        path: file.path.clone(),
        source,
    })?;
    ParquetRecordBatchReaderBuilder::new_with_metadata(handle, file.metadata.clone())
        .with_projection(file.projection(only))
        .with_row_groups(vec![rg])
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| read_error(file, rg, e.to_string()))
}

fn row_group_keys(file: &InputFile, rg: usize) -> Result<Vec<Option<u128>>, InputError> {
    let rerr = |message: String| read_error(file, rg, message);
    let reader = open_row_group(
        file,
        rg,
        Some(&[Field::EventType, Field::OrderId, Field::EventId]),
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
    let mut keys = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| rerr(e.to_string()))?;
        let (kind, order, event) = (
            text(&batch, Field::EventType)?,
            text(&batch, Field::OrderId)?,
            text(&batch, Field::EventId)?,
        );
        for i in 0..batch.num_rows() {
            keys.push(match (get(&event, i), get(&order, i)) {
                (Some(e), _) => Some(key128(&["e", e])),
                (None, Some(o)) => {
                    let k = get(&kind, i).unwrap_or("").trim().to_ascii_lowercase();
                    Some(key128(&["o", &k, o]))
                }
                _ => None,
            });
        }
    }
    Ok(keys)
}

fn get(a: &Option<StringArray>, i: usize) -> Option<&str> {
    a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i))
}

/// A 128-bit key from two independent 64-bit hashes of the parts.
fn key128(parts: &[&str]) -> u128 {
    use std::hash::Hasher;
    let mut a = rustc_hash::FxHasher::default();
    let mut b = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        a.write(p.as_bytes());
        a.write_u8(0xff);
        b.write(p.as_bytes());
        b.write_u8(0xff);
    }
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
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

/// Result of a scan: the merged accumulator, the counts, and the rejected rows in input order.
#[derive(Debug)]
pub struct Scan<A> {
    pub acc: A,
    pub stats: ScanStats,
    pub rejects: Vec<RecordBatch>,
}

/// The valid rows of one record batch, column by column: what a scan hands its accumulator.
///
/// Customer ids, channels and categories come as keys into the batch's distinct values (the
/// Parquet dictionary when the column has one), so an accumulator can resolve each distinct
/// value once instead of once per row.
#[derive(Debug)]
pub struct EventBatch<'a> {
    /// Distinct customer ids (the batch's dictionary; some may belong to rejected rows only).
    pub ids: &'a StringArray,
    /// Per row: index into `ids`.
    pub customer: Vec<u32>,
    /// Per row: microseconds since the Unix epoch, UTC.
    pub time_us: Vec<i64>,
    pub kind: Vec<EventKind>,
    /// Per row: finite, non-negative and within range; NaN when absent.
    pub amount: Vec<f64>,
    pub channel: Codes<'a>,
    pub category: Codes<'a>,
}

/// A coded text column of an [`EventBatch`].
#[derive(Debug)]
pub struct Codes<'a> {
    /// Code ([`value_code`]) of each distinct value.
    pub values: &'a [u64],
    /// Per row: index into `values`, or [`Codes::NONE`] when the value is absent.
    pub keys: Vec<u32>,
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
    fn new(cols: &'a Columns<'_>, capacity: usize) -> EventBatch<'a> {
        EventBatch {
            ids: &cols.customer.values,
            customer: Vec::with_capacity(capacity),
            time_us: Vec::with_capacity(capacity),
            kind: Vec::with_capacity(capacity),
            amount: Vec::with_capacity(capacity),
            channel: Codes {
                values: &cols.channel.codes,
                keys: Vec::with_capacity(capacity),
            },
            category: Codes {
                values: &cols.category.codes,
                keys: Vec::with_capacity(capacity),
            },
        }
    }

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
            customer_id: self.ids.value(self.customer[i] as usize),
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

/// Reads every row group of `inputs` in parallel. `init` makes an empty accumulator, `update`
/// adds one batch of valid events to it, `merge` combines two partials (it must not depend on
/// order for the result to be deterministic).
pub fn scan<A, I, U, M>(
    inputs: &InputSet,
    opts: &ReadOptions,
    init: I,
    update: U,
    merge: M,
) -> Result<Scan<A>, InputError>
where
    A: Send,
    I: Fn() -> A + Sync + Send,
    U: Fn(&mut A, &EventBatch<'_>) + Sync + Send,
    M: Fn(A, A) -> A + Sync + Send,
{
    let tasks: Vec<(usize, usize)> = inputs
        .files
        .iter()
        .enumerate()
        .flat_map(|(fi, f)| (0..f.row_groups).map(move |rg| (fi, rg)))
        .collect();
    let empty = || Scan {
        acc: init(),
        stats: ScanStats::default(),
        rejects: Vec::new(),
    };
    let combine = |mut a: Scan<A>, b: Scan<A>| {
        a.rejects.extend(b.rejects);
        Scan {
            acc: merge(a.acc, b.acc),
            stats: a.stats.merge(b.stats),
            rejects: a.rejects,
        }
    };
    // One contiguous run of row groups per thread: as many partial accumulators as threads
    // (each holds every customer it has seen, so more partials would cost memory and merges).
    let per_thread = tasks
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    let mut result = tasks
        .par_chunks(per_thread)
        .map(|chunk| {
            let mut part = empty();
            for &(fi, rg) in chunk {
                let dups = opts
                    .duplicates
                    .as_deref()
                    .map_or(&[][..], |d| d.get(fi, rg));
                read_row_group(&inputs.files[fi], rg, opts, dups, &mut part, &update)?;
            }
            Ok::<_, InputError>(part)
        })
        .try_reduce(empty, |a, b| Ok(combine(a, b)))?;
    for f in &inputs.files {
        result
            .stats
            .rows_per_file
            .entry(f.path.display().to_string())
            .or_insert(0);
    }
    Ok(result)
}

fn read_row_group<A, U>(
    file: &InputFile,
    rg: usize,
    opts: &ReadOptions,
    dups: &[u32],
    part: &mut Scan<A>,
    update: &U,
) -> Result<(), InputError>
where
    U: Fn(&mut A, &EventBatch<'_>),
{
    let rerr = |message: String| read_error(file, rg, message);
    let reader = open_row_group(file, rg, None)?;
    let first_row = file.row_group_offsets.get(rg).copied().unwrap_or(0);
    let mut row = first_row;
    let name = file.path.display().to_string();
    let mut rejects = RejectBuilder::default();
    let mut kinds: FxHashMap<String, (EventKind, bool)> = FxHashMap::default();
    let mut kind_counts = [0u64; EventKind::ALL.len()];
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    // `dups` is sorted: one cursor walks it alongside the rows.
    let mut next_dup = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| rerr(e.to_string()))?;
        let n = batch.num_rows();
        let cols = Columns::from_batch(file, &batch, opts).map_err(|e| rerr(e.to_string()))?;
        let mut events = EventBatch::new(&cols, n);
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
                Ok(Valid {
                    customer,
                    time_us,
                    kind,
                    known,
                    amount,
                }) => {
                    kind_counts[kind as usize] += 1;
                    if !known {
                        let raw = cols.raw_event_type(i).unwrap_or_default();
                        *part.stats.unknown_event_types.entry(raw).or_insert(0) += 1;
                    }
                    min_t = min_t.min(time_us);
                    max_t = max_t.max(time_us);
                    events.customer.push(customer);
                    events.time_us.push(time_us);
                    events.kind.push(kind);
                    events.amount.push(amount);
                    events.channel.keys.push(cols.channel.keys[i]);
                    events.category.keys.push(cols.category.keys[i]);
                }
                Err(reason) => {
                    part.stats.reject(reason);
                    if reason.copied() {
                        rejects.push(&name, row + i as u64, reason, &cols, i);
                    }
                }
            }
        }
        if !events.is_empty() {
            update(&mut part.acc, &events);
        }
        row += n as u64;
        part.stats.rows_read += n as u64;
        *part.stats.rows_per_file.entry(name.clone()).or_insert(0) += n as u64;
    }
    let used: u64 = kind_counts.iter().sum();
    part.stats.rows_used += used;
    for (kind, n) in EventKind::ALL.iter().zip(kind_counts) {
        if n > 0 {
            *part.stats.event_types.entry(*kind).or_insert(0) += n;
        }
    }
    if used > 0 {
        part.stats.min_time_us = opt_min(part.stats.min_time_us, Some(min_t));
        part.stats.max_time_us = opt_max(part.stats.max_time_us, Some(max_t));
    }
    if let Some(b) = rejects.finish() {
        part.rejects.push(b);
    }
    Ok(())
}

/// Reads only the time column and returns the latest in-range event time (µs), if any:
/// the default as-of is the day after it.
pub fn latest_event_time(inputs: &InputSet) -> Result<Option<i64>, InputError> {
    let tasks: Vec<(usize, usize)> = inputs
        .files
        .iter()
        .enumerate()
        .flat_map(|(fi, f)| (0..f.row_groups).map(move |rg| (fi, rg)))
        .collect();
    tasks
        .par_iter()
        .map(|&(fi, rg)| {
            let file = &inputs.files[fi];
            let rerr = |message: String| read_error(file, rg, message);
            let reader = open_row_group(file, rg, Some(&[Field::EventTime]))?;
            let mut best: Option<i64> = None;
            for batch in reader {
                let batch = batch.map_err(|e| rerr(e.to_string()))?;
                let col = batch.column(0);
                for i in 0..col.len() {
                    if let Some(t) =
                        time_us(col, i).filter(|t| (MIN_TIME_US..MAX_TIME_US).contains(t))
                    {
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
    fn keyed<T>(&self, n: usize, mut value: impl FnMut(&str) -> T) -> (Vec<T>, Vec<u32>)
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
            Text::Dict(_, values) => {
                let (_, keys) = text.keyed(n, |_| ());
                (values.clone(), keys)
            }
            // Plain text is interned by position of first sighting; the values are rebuilt.
            Text::Plain(a) => {
                let mut seen: FxHashMap<&str, u32> = FxHashMap::default();
                let mut distinct: Vec<&str> = Vec::new();
                let keys = (0..n)
                    .map(|i| {
                        if a.is_null(i) {
                            return Codes::NONE;
                        }
                        *seen.entry(a.value(i)).or_insert_with(|| {
                            distinct.push(a.value(i));
                            (distinct.len() - 1) as u32
                        })
                    })
                    .collect();
                (StringArray::from_iter_values(distinct), keys)
            }
            Text::Constant(s) => (StringArray::from_iter_values([s]), vec![0; n]),
            Text::Absent => (StringArray::from_iter_values([""; 0]), vec![Codes::NONE; n]),
        };
        let blank = (0..values.len())
            .map(|j| values.value(j).trim().is_empty())
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
    codes: Vec<u64>,
    keys: Vec<u32>,
}

impl Coded {
    fn new(text: &Text, n: usize) -> Coded {
        let (codes, keys) = text.keyed(n, value_code);
        Coded { codes, keys }
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
            Some(col) => (0..col.len())
                .map(|i| {
                    if col.is_null(i) {
                        NULL_TIME
                    } else {
                        time_us(col, i).unwrap_or(BAD_TIME)
                    }
                })
                .collect(),
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
        self.event_time
            .append_option(cols.time.and_then(|a| render(a, i)));
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
