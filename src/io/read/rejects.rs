//! The rejected rows: the schema of `rejects.parquet` and the builder that copies each
//! rejected row there with where it was, why, and its original values rendered as text.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef};

use super::decode::{time_us, Columns};
use super::validate::Reason;

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

/// Collects rejected rows of one task.
#[derive(Default)]
pub(super) struct RejectBuilder {
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
    pub(super) fn push(
        &mut self,
        file: &str,
        row: u64,
        reason: Reason,
        cols: &Columns<'_>,
        i: usize,
    ) {
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

    pub(super) fn finish(mut self) -> Option<RecordBatch> {
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
