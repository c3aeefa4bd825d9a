//! The deduplication pass: a first, parallel read of the key columns only (`event_type`,
//! `order_id`, `event_id`) that finds the rows repeating an earlier row's key, for the scan to
//! reject as `duplicate_key`.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::decode::Text;
use super::row_group::{open_row_group, read_error, row_groups};
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
        for (i, &kind_key) in kind_keys.iter().enumerate() {
            let key = match (get(&event, i), get(&order, i)) {
                (Some(e), _) => Some(key128(&["e", e])),
                (None, Some(o)) => {
                    let k = kinds.get(kind_key as usize).map_or("", String::as_str);
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
