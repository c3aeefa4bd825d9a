//! The deduplication pass: a first, parallel read of the key columns (`customer_id`,
//! `event_type`, `order_id`, `event_id`) that finds the rows sharing a key, then, for those rows
//! only, a read of their values to decide which one is kept; the others are for the scan to
//! reject as `duplicate_key`.
//!
//! The rule is order-free (it does not depend on the order of files, row groups or rows), so a
//! SQL engine can apply it too (`crate::sql`): within one customer, rows with the same key
//! keep the least by (event_time, event_type, amount, channel, category), nulls last; rows
//! equal in all of these are the same event for every feature, and the first in input order
//! is kept.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::decode::{text_field, time_us};
use super::row_group::{open_plain_row_group, open_row_group, read_error, row_groups};
use crate::io::input::{Field, InputError, InputFile, InputSet, Source};

/// Later occurrences of a key, per (file, row group): row numbers within the row group.
#[derive(Debug, Clone, Default)]
pub struct Duplicates {
    rows: FxHashMap<(usize, usize), Vec<u32>>,
    /// Total duplicate rows.
    pub count: u64,
}

impl Duplicates {
    pub(super) fn get(&self, file: usize, rg: usize) -> &[u32] {
        self.rows.get(&(file, rg)).map_or(&[], |v| v.as_slice())
    }
}

/// Finds duplicate rows: the key of a row is its customer with its `event_id` when the column
/// exists and is not null, else its customer, event type (trimmed, lower-cased) and `order_id`
/// (so a refund may carry the order id of its purchase); rows without a key or without a
/// customer are never duplicates. Of the rows sharing a key, the least by [`Rank`] is kept
/// (ties: the first in input order), the others are duplicates. Keys are compared by a 128-bit
/// hash and sorted (in parallel) to find the repeats; only the row groups holding repeats are
/// read a second time, for their ranks. Memory: 24 bytes per keyed row.
pub fn duplicate_rows(inputs: &InputSet) -> Result<Duplicates, InputError> {
    let keyed = |f: &InputFile| {
        matches!(f.sources.get(&Field::OrderId), Some(Source::Column(_)))
            || matches!(f.sources.get(&Field::EventId), Some(Source::Column(_)))
    };
    if !inputs.files.iter().any(keyed) {
        return Ok(Duplicates::default());
    }
    let tasks = row_groups(inputs, keyed);
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
    // The runs of equal keys (row positions in input order within a run).
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    for i in 1..=all.len() {
        if i == all.len() || all[i].0 != all[start].0 {
            if i - start > 1 {
                runs.push(start..i);
            }
            start = i;
        }
    }
    // The rank of every row in a run, read from the row groups that hold such rows.
    let mut wanted: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for r in &runs {
        for &(_, t, row) in &all[r.clone()] {
            wanted.entry(t).or_default().push(row);
        }
    }
    let mut wanted: Vec<(u32, Vec<u32>)> = wanted.into_iter().collect();
    wanted.sort_unstable_by_key(|(t, _)| *t);
    let ranked: Vec<FxHashMap<u32, Rank>> = wanted
        .par_iter()
        .map(|(t, rows)| {
            let (fi, rg) = tasks[*t as usize];
            row_group_ranks(&inputs.files[fi], rg, rows)
        })
        .collect::<Result<_, _>>()?;
    let ranks: FxHashMap<u32, FxHashMap<u32, Rank>> =
        wanted.iter().map(|(t, _)| *t).zip(ranked).collect();
    let rank_of = |t: u32, row: u32| ranks.get(&t).and_then(|m| m.get(&row));
    let mut out = Duplicates::default();
    for r in runs {
        let run = &all[r];
        // Least rank; `min_by` keeps the first of equal ones, and the run is in input order.
        let kept = run
            .iter()
            .min_by(|a, b| rank_of(a.1, a.2).cmp(&rank_of(b.1, b.2)))
            .map(|&(_, t, row)| (t, row));
        for &(_, t, row) in run {
            if Some((t, row)) != kept {
                out.rows.entry(tasks[t as usize]).or_default().push(row);
                out.count += 1;
            }
        }
    }
    for rows in out.rows.values_mut() {
        rows.sort_unstable();
    }
    Ok(out)
}

/// The keyed rows of one row group: (row within the row group, key), in row order.
fn row_group_keys(file: &InputFile, rg: usize) -> Result<Vec<(Key, u32)>, InputError> {
    let rerr = |message: String| read_error(file, rg, message);
    let reader = open_plain_row_group(
        file,
        rg,
        &[
            Field::CustomerId,
            Field::EventType,
            Field::OrderId,
            Field::EventId,
        ],
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
    // Most rows carry neither key column (page views, emails …): two null checks skip them.
    // The event type is lower-cased once per distinct value, and only when a batch has a row
    // keyed by its order id.
    let mut keys = Vec::new();
    let mut row = 0u32;
    for batch in reader {
        let batch = batch?;
        let n = batch.num_rows() as u32;
        let (order, event) = (text(&batch, Field::OrderId)?, text(&batch, Field::EventId)?);
        let keyed = |i: usize| {
            order.as_ref().is_some_and(|a| !a.is_null(i))
                || event.as_ref().is_some_and(|a| !a.is_null(i))
        };
        if !(0..n as usize).any(keyed) {
            row += n;
            continue;
        }
        let customer = text_field(file, &batch, Field::CustomerId).map_err(rerr)?;
        let kind = text_field(file, &batch, Field::EventType).map_err(rerr)?;
        let mut lowered: FxHashMap<&str, String> = FxHashMap::default();
        for i in (0..n as usize).filter(|&i| keyed(i)) {
            let key = match (customer.get(i), get(&event, i), get(&order, i)) {
                (None, _, _) => None,
                (Some(c), Some(e), _) => Some(key128(&["e", c, e])),
                (Some(c), None, Some(o)) => {
                    let k = kind.get(i).unwrap_or("");
                    let k = lowered
                        .entry(k)
                        .or_insert_with(|| k.trim().to_ascii_lowercase());
                    Some(key128(&["o", c, k, o]))
                }
                _ => None,
            };
            if let Some(k) = key {
                keys.push((k, row + i as u32));
            }
        }
        row += n;
    }
    Ok(keys)
}

/// What decides which of the rows sharing a key is kept: the least by event time, event type
/// (as written), amount, channel, category, each with nulls last — the order a SQL
/// `ORDER BY … ASC NULLS LAST` gives (strings by bytes; amounts with -0 = 0 and NaN after
/// every number). A time that is null or not representable sorts last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    time_us: i64,
    event_type: (bool, String),
    /// (0 number, 1 NaN, 2 null), then the number's bits in an order-preserving form.
    amount: (u8, i64),
    channel: (bool, String),
    category: (bool, String),
}

fn last_if_null(v: Option<&str>) -> (bool, String) {
    match v {
        Some(s) => (false, s.to_string()),
        None => (true, String::new()),
    }
}

fn amount_key(v: Option<f64>) -> (u8, i64) {
    match v {
        None => (2, 0),
        Some(x) if x.is_nan() => (1, 0),
        Some(x) => {
            // IEEE total order as an integer, with -0 taken as 0.
            let x = if x == 0.0 { 0.0 } else { x };
            let b = x.to_bits() as i64;
            (0, b ^ (((b >> 63) as u64) >> 1) as i64)
        }
    }
}

/// The [`Rank`] of the rows `rows` (sorted, within the row group) of one row group.
fn row_group_ranks(
    file: &InputFile,
    rg: usize,
    rows: &[u32],
) -> Result<FxHashMap<u32, Rank>, InputError> {
    let rerr = |message: String| read_error(file, rg, message);
    let mut rows = rows.to_vec();
    rows.sort_unstable();
    let reader = open_row_group(
        file,
        rg,
        &[
            Field::EventTime,
            Field::EventType,
            Field::Amount,
            Field::Channel,
            Field::Category,
        ],
    )?;
    let mut out = FxHashMap::default();
    let mut first = 0u32;
    let mut next = 0usize;
    for batch in reader {
        let batch = batch?;
        let n = batch.num_rows() as u32;
        let column = |f: Field| match file.sources.get(&f) {
            Some(Source::Column(name)) => batch.column_by_name(name),
            _ => None,
        };
        let time = column(Field::EventTime);
        let amount = match column(Field::Amount) {
            Some(a) => Some(
                arrow_cast::cast(a, &DataType::Float64)
                    .map_err(|e| rerr(format!("column 'amount': {e}")))?,
            ),
            None => None,
        };
        let kind = text_field(file, &batch, Field::EventType).map_err(rerr)?;
        let channel = text_field(file, &batch, Field::Channel).map_err(rerr)?;
        let category = text_field(file, &batch, Field::Category).map_err(rerr)?;
        while let Some(&row) = rows.get(next).filter(|&&r| r < first + n) {
            let i = (row - first) as usize;
            let amount = amount
                .as_ref()
                .filter(|a| !a.is_null(i))
                .map(|a| a.as_primitive::<arrow_array::types::Float64Type>().value(i));
            let rank = Rank {
                time_us: time.and_then(|c| time_us(c, i)).unwrap_or(i64::MAX),
                event_type: last_if_null(kind.get(i)),
                amount: amount_key(amount),
                channel: last_if_null(channel.get(i)),
                category: last_if_null(category.get(i)),
            };
            out.insert(row, rank);
            next += 1;
        }
        first += n;
    }
    Ok(out)
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
