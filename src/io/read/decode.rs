//! Decoding a record batch into the shapes the validator reads ([`Columns`]): text columns as
//! distinct values with one key per row (the Parquet dictionary when there is one), channels
//! and categories as value codes, amounts as floats, and event times of every Arrow time type
//! converted to µs since the epoch, once per batch.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float64Type, Int32Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, Float64Array, PrimitiveArray, RecordBatch, StringArray,
};
use arrow_schema::{DataType, TimeUnit};
use rustc_hash::FxHashMap;

use super::validate::ReadOptions;
use crate::batch::{value_code, Codes};
use crate::events::EventKind;
use crate::io::input::{Field, InputFile, Source};
use crate::time::DAY_US;

/// Converted-time sentinels: null, and not representable in µs (both outside the valid range).
pub(super) const NULL_TIME: i64 = i64::MIN;
const BAD_TIME: i64 = i64::MIN + 1;

/// The columns of one batch, in the shapes the validator reads.
pub(super) struct Columns<'a> {
    pub(super) customer: Distinct,
    pub(super) customer_raw: Option<&'a ArrayRef>,
    pub(super) time: Option<&'a ArrayRef>,
    /// `time` in µs, converted once per batch ([`NULL_TIME`] / [`BAD_TIME`] sentinels).
    pub(super) times: Vec<i64>,
    pub(super) kind: Text,
    /// Event kind of each dictionary value of `kind` (dictionary-encoded columns only).
    pub(super) kind_by_key: Vec<(EventKind, bool)>,
    pub(super) amount: Option<Float64Array>,
    pub(super) amount_raw: Option<&'a ArrayRef>,
    pub(super) channel: Coded,
    pub(super) category: Coded,
}

/// A text column: plain values, dictionary keys into values, or one constant from a partition
/// folder. Low-cardinality columns are read dictionary-encoded (see `InputFile`), so per-row
/// work is a key lookup, not a string comparison.
pub(super) enum Text {
    Plain(StringArray),
    Dict(PrimitiveArray<Int32Type>, StringArray),
    Constant(String),
    Absent,
}

impl Text {
    pub(super) fn from_array(a: &ArrayRef, name: &str) -> Result<Text, String> {
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

    pub(super) fn get(&self, i: usize) -> Option<&str> {
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
    pub(super) fn keyed<'s, T>(
        &'s self,
        n: usize,
        mut value: impl FnMut(&'s str) -> T,
    ) -> (Vec<T>, Vec<u32>)
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
pub(super) struct Distinct {
    pub(super) values: StringArray,
    /// Per row: index into `values`, or `Codes::NONE` when null.
    pub(super) keys: Vec<u32>,
    /// Per value: empty or only whitespace.
    pub(super) blank: Vec<bool>,
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

    pub(super) fn get(&self, i: usize) -> Option<&str> {
        let k = self.keys[i];
        (k != Codes::NONE).then(|| self.values.value(k as usize))
    }
}

/// A text column turned into stable 64-bit value codes (hash of the text), computed once per
/// distinct value.
pub(super) struct Coded {
    pub(super) codes: Arc<[u64]>,
    pub(super) keys: Vec<u32>,
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

/// A text field of a batch: its column, the constant of its partition folder, or absent.
pub(super) fn text_field(file: &InputFile, batch: &RecordBatch, f: Field) -> Result<Text, String> {
    match file.sources.get(&f) {
        Some(Source::Partition(v)) => Ok(Text::Constant(v.clone())),
        Some(Source::Column(name)) => match batch.column_by_name(name) {
            Some(a) => Text::from_array(a, name),
            None => Ok(Text::Absent),
        },
        None => Ok(Text::Absent),
    }
}

impl<'a> Columns<'a> {
    pub(super) fn from_batch(
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
        let text = |f: Field| text_field(file, batch, f);
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

    pub(super) fn raw_event_type(&self, i: usize) -> Option<String> {
        self.kind.get(i).map(str::to_string)
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
pub(super) fn time_us(col: &ArrayRef, i: usize) -> Option<i64> {
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
