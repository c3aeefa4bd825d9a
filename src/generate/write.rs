//! The generated data as Arrow: the event log's schema and batches (customer ids `C0000001`,
//! order ids `O0000001-0001` shared by a purchase and its refund, channel and category names
//! from their codes) and the one-row-per-customer truth table.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::StringBuilder;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use rayon::prelude::*;

use super::simulate::{Ev, TruthRow, CATEGORIES, CHANNELS};
use crate::events::EventKind;

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

/// Schema of the event batches.
pub fn event_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("customer_id", DataType::Utf8, false),
                Field::new("event_time", utc_micros(), false),
                Field::new("event_type", DataType::Utf8, false),
                Field::new("amount", DataType::Float64, true),
                Field::new("order_id", DataType::Utf8, true),
                Field::new("quantity", DataType::Int64, true),
                Field::new("channel", DataType::Utf8, false),
                Field::new("category", DataType::Utf8, true),
            ]))
        })
        .clone()
}

/// Schema of the ground-truth batch.
pub fn truth_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("customer_id", DataType::Utf8, false),
                Field::new("birth_time", utc_micros(), false),
                Field::new("purchase_rate_per_day", DataType::Float64, false),
                Field::new("dropout_rate_per_day", DataType::Float64, false),
                Field::new("death_time", utc_micros(), false),
                Field::new("alive_at_end", DataType::Boolean, false),
                Field::new("mean_order_value", DataType::Float64, false),
                Field::new("n_purchases", DataType::Int64, false),
                Field::new("true_expected_purchases_90d", DataType::Float64, false),
                Field::new("true_expected_spend_90d", DataType::Float64, false),
            ]))
        })
        .clone()
}

/// Purchases and refunds carry amount and order_id.
fn is_order(kind: EventKind) -> bool {
    matches!(kind, EventKind::Purchase | EventKind::Refund)
}

/// Width of the zero-padded customer number: max(7, digits of N).
pub(super) fn id_width(customers: usize) -> usize {
    customers.to_string().len().max(7)
}

/// Appends `n` zero-padded to `width` digits (no allocation).
fn push_padded(s: &mut String, n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut v = n;
    loop {
        digits[len] = (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for _ in len..width {
        s.push('0');
    }
    for &d in digits[..len].iter().rev() {
        s.push(char::from(b'0' + d));
    }
}

/// Customer id column: "C" + 1-based index padded to `width`.
fn customer_id_array(customers: impl ExactSizeIterator<Item = u32>, width: usize) -> StringArray {
    let n = customers.len();
    let mut b = StringBuilder::with_capacity(n, n * (width + 1));
    let mut buf = String::with_capacity(width + 1);
    for c in customers {
        buf.clear();
        buf.push('C');
        push_padded(&mut buf, u64::from(c) + 1, width);
        b.append_value(&buf);
    }
    b.finish()
}

/// Builds one event batch from a sorted slice.
pub(super) fn event_batch(chunk: &[Ev], width: usize) -> Result<RecordBatch, ArrowError> {
    let n = chunk.len();
    let customer_id = customer_id_array(chunk.iter().map(|e| e.cust), width);
    let event_time =
        TimestampMicrosecondArray::from_iter_values(chunk.iter().map(|e| e.t)).with_timezone("UTC");
    let event_type = StringArray::from_iter_values(chunk.iter().map(|e| e.kind.as_str()));
    let amount: Float64Array = chunk
        .iter()
        .map(|e| is_order(e.kind).then(|| f64::from(e.cents) / 100.0))
        .collect();
    // Order ids: "O" + customer number + "-" + 1-based order number, unique
    // across the data set; refunds reuse the purchase's id.
    let n_orders = chunk.iter().filter(|e| is_order(e.kind)).count();
    let mut order_id = StringBuilder::with_capacity(n, n_orders * (width + 7));
    let mut buf = String::with_capacity(width + 16);
    for e in chunk {
        if is_order(e.kind) {
            buf.clear();
            buf.push('O');
            push_padded(&mut buf, u64::from(e.cust) + 1, width);
            buf.push('-');
            push_padded(&mut buf, u64::from(e.order) + 1, 4);
            order_id.append_value(&buf);
        } else {
            order_id.append_null();
        }
    }
    let quantity: Int64Array = chunk
        .iter()
        .map(|e| (e.kind == EventKind::Purchase).then_some(i64::from(e.qty)))
        .collect();
    let channel =
        StringArray::from_iter_values(chunk.iter().map(|e| CHANNELS[usize::from(e.channel)]));
    let category: StringArray = chunk
        .iter()
        .map(|e| e.category.map(|c| CATEGORIES[usize::from(c)]))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(customer_id),
        Arc::new(event_time),
        Arc::new(event_type),
        Arc::new(amount),
        Arc::new(order_id.finish()),
        Arc::new(quantity),
        Arc::new(channel),
        Arc::new(category),
    ];
    RecordBatch::try_new(event_schema(), columns)
}

/// Splits sorted events into batches of at most `rows` rows, built in parallel.
pub(super) fn event_batches(
    events: &[Ev],
    width: usize,
    rows: usize,
) -> Result<Vec<RecordBatch>, ArrowError> {
    events
        .par_chunks(rows.max(1))
        .map(|chunk| event_batch(chunk, width))
        .collect()
}

/// The truth rows of the customers `first..first + rows.len()` as one batch.
pub(super) fn truth_batch(
    rows: &[TruthRow],
    first: usize,
    width: usize,
) -> Result<RecordBatch, ArrowError> {
    // Validated: customers <= MAX_CUSTOMERS < u32::MAX.
    let customer_id = customer_id_array(first as u32..(first + rows.len()) as u32, width);
    let ts = |f: fn(&TruthRow) -> i64| {
        TimestampMicrosecondArray::from_iter_values(rows.iter().map(f)).with_timezone("UTC")
    };
    let f64s = |f: fn(&TruthRow) -> f64| Float64Array::from_iter_values(rows.iter().map(f));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(customer_id),
        Arc::new(ts(|r| r.birth_us)),
        Arc::new(f64s(|r| r.lambda)),
        Arc::new(f64s(|r| r.mu)),
        Arc::new(ts(|r| r.death_us)),
        Arc::new(rows.iter().map(|r| Some(r.alive)).collect::<BooleanArray>()),
        Arc::new(f64s(|r| r.mean_order_value)),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.n_purchases),
        )),
        Arc::new(f64s(|r| r.exp_purchases)),
        Arc::new(f64s(|r| r.exp_spend)),
    ];
    RecordBatch::try_new(truth_schema(), columns)
}
