//! The score table: one row per customer with any event before as-of (SPEC §6; for now the
//! walking-skeleton subset of its columns).

use std::sync::Arc;

use arrow_array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use crate::features::{FeatureSet, Features};
use crate::labels::days_since_epoch;
use crate::models::churn::raw_matrix;
use crate::models::value::ValueModel;
use crate::models::value::ValueScores;
use crate::models::{ChurnModel, ModelError};

/// Schema of `scores.parquet`.
pub fn scores_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("as_of", DataType::Date32, false),
        Field::new("recency_days", DataType::Float64, true),
        Field::new("frequency", DataType::Int64, false),
        Field::new("monetary_total", DataType::Float64, false),
        Field::new("churn_probability", DataType::Float64, true),
        Field::new("p_alive", DataType::Float64, true),
        Field::new("expected_purchases", DataType::Float64, true),
        Field::new("expected_order_value", DataType::Float64, true),
        Field::new("clv", DataType::Float64, true),
    ]))
}

/// Applies the fitted models to a feature set: churn probability and BTYD outputs for every
/// customer who has bought (the models' population), `None` for the others; then the table.
pub fn apply_models(
    set: &FeatureSet,
    as_of: NaiveDate,
    churn: &ChurnModel,
    value: &ValueModel,
    horizon_days: u32,
) -> Result<RecordBatch, ScoreError> {
    let buyers: Vec<usize> = (0..set.rows.len())
        .filter(|&i| set.rows[i].has_purchase())
        .collect();
    let rows: Vec<&Features> = buyers.iter().map(|&i| &set.rows[i]).collect();
    let probs = churn.predict(&raw_matrix(&rows))?;
    let mut churn_probability = vec![None; set.rows.len()];
    let mut values = vec![None; set.rows.len()];
    for ((&i, p), f) in buyers.iter().zip(probs).zip(&rows) {
        churn_probability[i] = Some(p);
        values[i] = Some(value.score(f, f64::from(horizon_days)));
    }
    Ok(score_table(set, as_of, &churn_probability, &values)?)
}

/// Errors while scoring.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("score table: {0}")]
    Arrow(#[from] ArrowError),
}

/// Builds the score table. `churn_probability[i]` and `value[i]` are `None` for customers
/// outside the models' population (no purchase before as-of).
pub fn score_table(
    set: &FeatureSet,
    as_of: NaiveDate,
    churn_probability: &[Option<f64>],
    value: &[Option<ValueScores>],
) -> Result<RecordBatch, ArrowError> {
    let v = |f: fn(&ValueScores) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter(
            value.iter().map(|s| s.as_ref().map(f)),
        ))
    };
    let n = set.rows.len();
    let day = days_since_epoch(as_of);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            set.customer_ids.iter().map(|s| s.as_ref()),
        )),
        Arc::new(Date32Array::from(vec![day; n])),
        Arc::new(Float64Array::from_iter(
            set.rows.iter().map(|r| r.recency_days),
        )),
        Arc::new(Int64Array::from_iter_values(
            set.rows.iter().map(|r| r.frequency as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            set.rows.iter().map(|r| r.monetary_total),
        )),
        Arc::new(Float64Array::from_iter(churn_probability.iter().copied())),
        v(|s| s.p_alive),
        v(|s| s.expected_purchases),
        v(|s| s.expected_order_value),
        v(|s| s.clv),
    ];
    RecordBatch::try_new(scores_schema(), columns)
}
