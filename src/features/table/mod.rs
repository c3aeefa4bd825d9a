//! The feature table: the file contract between the stages (`features` writes it, `train`
//! and `score` read it), whoever wrote it — churnclv or a warehouse query.
//!
//! A [`FeatureTable`] is the customers with any event before one cutoff, sorted by id, with
//! their [`Features`]; a *labelled* table also carries the label window `[cutoff, cutoff + H)`
//! after the cutoff and the net spend of the `H` days before it (what `train` needs). One list,
//! [`COLUMNS`], drives the Arrow schema, the table written and the table read back, so a new
//! feature is one line there (and a field of [`Features`]). Columns and metadata are
//! documented in docs/features.md ("Label columns", "Feature tables from elsewhere").
//!
//! Reading checks the documented schema and names the file, column and row of the first
//! problem (a missing or mistyped column, a null where none is allowed, a negative count, a
//! customer twice): exit code 2. Columns it does not know are ignored. Rows come back sorted
//! by `customer_id`, as churnclv writes them, so a table in any order scores the same.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

mod read;
pub use read::{Expect, FeatureFile, FeatureTableError};

use super::Features;
use crate::io::ParquetOptions;
use crate::labels::Labels;

/// Key-value metadata: the cutoff date (`YYYY-MM-DD`, midnight UTC).
pub const META_CUTOFF: &str = "churnclv.cutoff";
/// Key-value metadata of a labelled table: the label window's length in days.
pub const META_LABEL_HORIZON: &str = "churnclv.label_horizon_days";
/// Key-value metadata: the crate version that wrote the table.
pub const META_VERSION: &str = "churnclv.version";

/// Customers per slice when a table is computed and written one slice at a time (and one row
/// group per slice).
pub const FEATURE_SLICE: usize = 32 * 1024;

/// The label columns, in order, after the feature columns.
pub const LABEL_COLUMNS: [&str; 4] = [
    "churned",
    "window_purchase_days",
    "window_net_spend",
    "prior_window_net_spend",
];

/// How a column reads its value off [`Features`] and writes it back.
#[derive(Clone, Copy)]
pub(crate) enum Column {
    Count(fn(&Features) -> u64, fn(&mut Features, u64)),
    Real(fn(&Features) -> f64, fn(&mut Features, f64)),
    Maybe(fn(&Features) -> Option<f64>, fn(&mut Features, Option<f64>)),
}

macro_rules! columns {
    ($($name:literal => $kind:ident $field:ident),* $(,)?) => {
        [$(($name, Column::$kind(|f| f.$field, |f, v| f.$field = v))),*]
    };
}

/// The columns of a feature table after `customer_id`, in order: one list drives the schema,
/// the table written and the table read.
pub(crate) const COLUMNS: [(&str, Column); 38] = columns![
    "n_events" => Count n_events,
    "n_purchases" => Count n_purchases,
    "purchase_days" => Count purchase_days,
    "frequency" => Count frequency,
    "recency_days" => Maybe recency_days,
    "t_x_days" => Real t_x_days,
    "T_days" => Real t_days,
    "monetary_total" => Real monetary_total,
    "avg_order_value" => Maybe avg_order_value,
    "max_order_value" => Maybe max_order_value,
    "repeat_spend_mean" => Maybe repeat_spend_mean,
    "tenure_days" => Real tenure_days,
    "active_days" => Count active_days,
    "n_page_views" => Count n_page_views,
    "n_sessions" => Count n_sessions,
    "n_add_to_cart" => Count n_add_to_cart,
    "cart_abandonments" => Count cart_abandonments,
    "days_since_cart_abandonment" => Maybe days_since_cart_abandonment,
    "n_checkout_starts" => Count n_checkout_starts,
    "n_support_tickets" => Count n_support_tickets,
    "n_email_opens" => Count n_email_opens,
    "n_email_clicks" => Count n_email_clicks,
    "n_sms_clicks" => Count n_sms_clicks,
    "n_reviews" => Count n_reviews,
    "n_referrals" => Count n_referrals,
    "n_community_posts" => Count n_community_posts,
    "n_refunds" => Count n_refunds,
    "refund_amount" => Real refund_amount,
    "refund_ratio" => Real refund_ratio,
    "n_categories" => Count n_categories,
    "n_channels" => Count n_channels,
    "days_since_last_event" => Real days_since_last_event,
    "ipt_mean_days" => Maybe ipt_mean_days,
    "ipt_std_days" => Maybe ipt_std_days,
    "events_7d" => Count events_7d,
    "events_30d" => Count events_30d,
    "events_90d" => Count events_90d,
    "trend_30d" => Real trend_30d,
];

/// Schema of an unlabelled feature table (`features.parquet` of a run).
pub fn features_schema() -> SchemaRef {
    Arc::new(Schema::new(fields(false)))
}

/// Schema of a labelled feature table: the features, then [`LABEL_COLUMNS`].
pub fn labelled_schema() -> SchemaRef {
    Arc::new(Schema::new(fields(true)))
}

fn fields(labelled: bool) -> Vec<Field> {
    let mut fields = vec![Field::new("customer_id", DataType::Utf8, false)];
    for (name, c) in COLUMNS {
        fields.push(match c {
            Column::Count(..) => Field::new(name, DataType::Int64, false),
            Column::Real(..) => Field::new(name, DataType::Float64, false),
            Column::Maybe(..) => Field::new(name, DataType::Float64, true),
        });
    }
    if labelled {
        let [churned, days, spend, prior] = LABEL_COLUMNS;
        fields.extend([
            Field::new(churned, DataType::Boolean, false),
            Field::new(days, DataType::Int64, false),
            Field::new(spend, DataType::Float64, false),
            Field::new(prior, DataType::Float64, false),
        ]);
    }
    fields
}

/// The labels of a table's customers: the window `[cutoff, cutoff + H)` after the cutoff and
/// the net spend of `[cutoff − H, cutoff)` before it.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowLabels {
    /// `H`, days.
    pub horizon_days: u32,
    /// `churned` (no purchase in the window), `window_net_spend`, `window_purchase_days`.
    pub window: Labels,
    /// `prior_window_net_spend`: what the "next H = last H" value baseline predicts.
    pub prior_net_spend: Vec<f64>,
}

impl WindowLabels {
    /// The labels of rows `keep`.
    pub fn select(&self, keep: &[usize]) -> WindowLabels {
        let w = &self.window;
        WindowLabels {
            horizon_days: self.horizon_days,
            window: Labels {
                churned: keep.iter().map(|&i| w.churned[i]).collect(),
                spend: keep.iter().map(|&i| w.spend[i]).collect(),
                purchase_days: keep.iter().map(|&i| w.purchase_days[i]).collect(),
            },
            prior_net_spend: keep.iter().map(|&i| self.prior_net_spend[i]).collect(),
        }
    }
}

/// The customers with any event before `cutoff`, sorted by id, with their features (and, for
/// a labelled table, their labels; every vector has one entry per row).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    pub cutoff: NaiveDate,
    pub customer_ids: Vec<Box<str>>,
    pub rows: Vec<Features>,
    pub labels: Option<WindowLabels>,
}

impl FeatureTable {
    /// Customers.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The label horizon of a labelled table.
    pub fn label_horizon_days(&self) -> Option<u32> {
        self.labels.as_ref().map(|l| l.horizon_days)
    }

    /// The schema of this table ([`features_schema`] or [`labelled_schema`]).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(fields(self.labels.is_some())))
    }

    /// The table as one Arrow batch of [`Self::schema`].
    pub fn to_record_batch(&self) -> Result<RecordBatch, ArrowError> {
        self.batch(self.labels.as_ref())
    }

    /// The features alone, as batches of [`FEATURE_SLICE`] customers (one row group each when
    /// written with [`Self::parquet_options`]): only one slice's Arrow columns at a time.
    pub fn features_batches(&self) -> impl Iterator<Item = Result<RecordBatch, ArrowError>> + '_ {
        (0..self.len())
            .step_by(FEATURE_SLICE)
            .map(|lo| self.batch_of(lo..(lo + FEATURE_SLICE).min(self.len()), None))
    }

    fn batch(&self, labels: Option<&WindowLabels>) -> Result<RecordBatch, ArrowError> {
        self.batch_of(0..self.len(), labels)
    }

    fn batch_of(
        &self,
        range: std::ops::Range<usize>,
        labels: Option<&WindowLabels>,
    ) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
            self.customer_ids[range.clone()].iter().map(|s| s.as_ref()),
        ))];
        for (_, c) in COLUMNS {
            let rows = self.rows[range.clone()].iter();
            columns.push(match c {
                Column::Count(get, _) => {
                    Arc::new(Int64Array::from_iter_values(rows.map(|r| get(r) as i64)))
                }
                Column::Real(get, _) => Arc::new(Float64Array::from_iter_values(rows.map(get))),
                Column::Maybe(get, _) => Arc::new(Float64Array::from_iter(rows.map(get))),
            });
        }
        if let Some(l) = labels {
            let r = range;
            columns.push(Arc::new(BooleanArray::from(
                l.window.churned[r.clone()].to_vec(),
            )));
            columns.push(Arc::new(Int64Array::from_iter_values(
                l.window.purchase_days[r.clone()].iter().map(|&d| d as i64),
            )));
            columns.push(Arc::new(Float64Array::from(
                l.window.spend[r.clone()].to_vec(),
            )));
            columns.push(Arc::new(Float64Array::from(l.prior_net_spend[r].to_vec())));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields(labels.is_some()))), columns)
    }

    /// Writer settings: row groups of [`FEATURE_SLICE`] customers, the cutoff, the label
    /// horizon of a labelled table and the crate version in the key-value metadata.
    pub fn parquet_options(cutoff: NaiveDate, label_horizon_days: Option<u32>) -> ParquetOptions {
        let options = ParquetOptions::default()
            .row_group_rows(FEATURE_SLICE)
            .metadata(META_CUTOFF, cutoff.to_string());
        let options = match label_horizon_days {
            Some(h) => options.metadata(META_LABEL_HORIZON, h.to_string()),
            None => options,
        };
        options.metadata(META_VERSION, env!("CARGO_PKG_VERSION"))
    }

    /// Reads a feature table written by `churnclv features` or by anything else that follows
    /// the documented schema. `expect` says what the caller knows (the flags): a table without
    /// metadata takes its cutoff (and label horizon) from there, a table whose metadata
    /// disagrees with it is refused.
    pub fn read(path: &Path, expect: &Expect) -> Result<FeatureTable, FeatureTableError> {
        FeatureFile::open(path, expect.flag)?.read(expect)
    }
}
