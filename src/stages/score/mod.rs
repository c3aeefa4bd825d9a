//! The score stage: fitted (or saved) models + the feature table at as-of → the score table
//! (columns in docs/schema.md): one row per customer with any event before as-of — the RFM summary, churn
//! probability and risk band, BTYD outputs and CLV decile, RFM segment, lifecycle stage,
//! engagement tier and next best action, and the churn reasons — with the tier summary and
//! KPIs.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;

use crate::cuts::Cuts;
use crate::features::{FeatureTable, Features};
use crate::models::buy_again::{self, BuyAgainChurn};
use crate::models::churn::{logged_matrix, FEATURES};
use crate::models::spend_champion::SpendChampion;
use crate::models::value::ValueInputs;
use crate::models::value::{ValueModel, ValueScores};
use crate::models::{ChurnModel, ModelError, SavedModel, SavedModelError};
mod slices;
mod summary;

pub use slices::{score_slices, summary_by_slices};
use summary::{summarise, Outcomes};
pub use summary::{Kpis, Summary, TierStats};

use crate::segment::{
    assign_tiers, assign_tiers_given, churn_reasons, churn_risk, deciles, lifecycle_stage,
    quintiles, rfm_segment, TierConfig, TierInput, TIERS,
};

/// Schema of `scores.parquet` (the warehouse contract, documented in docs/schema.md). `as_of`
/// is not a column: it lives in the partition's path (`scores/as_of=D/`), where Hive, Spark,
/// BigQuery, Snowflake, DuckDB and pyarrow read it; a file column of the same name is what
/// Spark refuses and pyarrow's hive discovery cannot merge.
pub fn scores_schema() -> SchemaRef {
    let f = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
    Arc::new(Schema::new(vec![
        f("customer_id", DataType::Utf8, false),
        f("recency_days", DataType::Float64, true),
        f("frequency", DataType::Int64, false),
        f("monetary_total", DataType::Float64, false),
        f("avg_order_value", DataType::Float64, true),
        f("tenure_days", DataType::Float64, false),
        f("r_score", DataType::Int64, true),
        f("f_score", DataType::Int64, true),
        f("m_score", DataType::Int64, true),
        f("rfm_segment", DataType::Utf8, true),
        f("lifecycle_stage", DataType::Utf8, false),
        f("churn_probability", DataType::Float64, true),
        f("churn_risk", DataType::Utf8, true),
        f("p_alive", DataType::Float64, true),
        f("expected_purchases", DataType::Float64, true),
        f("expected_order_value", DataType::Float64, true),
        f("clv", DataType::Float64, true),
        f("clv_decile", DataType::Int64, true),
        f("engagement_tier", DataType::Utf8, false),
        f("next_best_action", DataType::Utf8, false),
        f("churn_reason_1", DataType::Utf8, true),
        f("churn_reason_2", DataType::Utf8, true),
        f("churn_reason_3", DataType::Utf8, true),
        f("model_version", DataType::Utf8, false),
        f("run_id", DataType::Utf8, false),
    ]))
}

/// Errors while scoring.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("score table")]
    Arrow(#[from] ArrowError),
    /// A model output that is not a number in its range: nothing with it is published.
    #[error("customer {customer:?}: {column} = {value} (expected {expected})")]
    Unusable {
        customer: String,
        column: &'static str,
        value: f64,
        expected: &'static str,
    },
}

/// Checks one customer's model outputs: every value finite, probabilities in [0, 1]. Models
/// that passed their checks can still overflow (extreme but finite coefficients or BTYD
/// parameters); such a score must not reach the warehouse.
fn check_outputs(customer: &str, churn: f64, v: &ValueScores) -> Result<(), ScoreError> {
    let probability = |p: f64| (0.0..=1.0).contains(&p);
    for (column, value, ok, expected) in [
        (
            "churn_probability",
            churn,
            probability(churn),
            "a probability in [0, 1]",
        ),
        (
            "p_alive",
            v.p_alive,
            probability(v.p_alive),
            "a probability in [0, 1]",
        ),
        (
            "expected_purchases",
            v.expected_purchases,
            v.expected_purchases.is_finite(),
            "a finite number",
        ),
        (
            "expected_order_value",
            v.expected_order_value,
            v.expected_order_value.is_finite(),
            "a finite number",
        ),
        ("clv", v.clv, v.clv.is_finite(), "a finite number"),
    ] {
        if !ok {
            return Err(ScoreError::Unusable {
                customer: customer.to_string(),
                column,
                value,
                expected,
            });
        }
    }
    Ok(())
}

/// The scored table and what it sums up.
#[derive(Debug, Clone)]
pub struct Scored {
    pub table: RecordBatch,
    pub summary: Summary,
}

/// Identifies what scored a row: crate version and the run that fitted the models.
pub fn model_version(model_run_id: &str) -> String {
    format!("churnclv-{}+{model_run_id}", env!("CARGO_PKG_VERSION"))
}

/// The models [`score_with`] applies.
pub struct Models<'a> {
    pub churn: &'a ChurnModel,
    pub value: &'a ValueModel,
    /// The value champion when a supervised spend model won (its horizon spend makes the CLV).
    pub spend: Option<&'a SpendChampion>,
    pub horizon_days: u32,
    pub model_version: &'a str,
}

/// One row's rank keys (−recency, purchase days and monetary total of buyers), as the score
/// table's r/f/m quintiles rank them.
pub fn rank_key_of(row: &Features) -> [Option<f64>; 3] {
    let buyer = |v: f64| row.has_purchase().then_some(v);
    [
        row.recency_days.map(|d| -d),
        buyer(row.purchase_days as f64),
        buyer(row.monetary_total),
    ]
}

/// The rank keys ([`rank_key_of`]) of a feature table's rows, by column.
pub fn rank_keys(set: &FeatureTable) -> [Vec<Option<f64>>; 3] {
    let column = |k: usize| set.rows.iter().map(|r| rank_key_of(r)[k]).collect();
    [column(0), column(1), column(2)]
}

/// What the tiers and the lifecycle stage read of a scored row.
fn tier_input(row: &Features, churn_probability: Option<f64>, clv: Option<f64>) -> TierInput {
    TierInput {
        purchase_days: row.purchase_days,
        recency_days: row.recency_days,
        tenure_days: row.tenure_days,
        days_since_cart_abandonment: row.days_since_cart_abandonment,
        churn_probability,
        clv,
    }
}

/// Each row's engagement tier (an index of [`TIERS`]) and lifecycle stage: the VIPs and the
/// median CLV from the whole table's `cuts`, else ranked within the rows.
fn tiers_and_stages(
    ids: &[Box<str>],
    rows: &[Features],
    churn_probability: &[Option<f64>],
    clv: &[Option<f64>],
    cuts: Option<&Cuts>,
    horizon_days: f64,
    cfg: &TierConfig,
) -> (Vec<u8>, Vec<&'static str>) {
    let inputs: Vec<TierInput> = (0..rows.len())
        .map(|i| tier_input(&rows[i], churn_probability[i], clv[i]))
        .collect();
    let tier = match cuts {
        None => assign_tiers(&inputs, horizon_days, cfg),
        Some(c) => {
            let vip: Vec<bool> = (0..rows.len()).map(|i| c.is_vip(clv[i], &ids[i])).collect();
            assign_tiers_given(&inputs, &vip, c.clv_median, horizon_days, cfg)
        }
    };
    let stages = inputs
        .iter()
        .map(|c| lifecycle_stage(c, horizon_days, cfg))
        .collect();
    // Seven tiers: an index fits a byte.
    (tier.into_iter().map(|t| t as u8).collect(), stages)
}

/// The names the churn reasons are taken from: the champion's inputs.
fn reason_names(churn: &ChurnModel) -> Vec<String> {
    if churn.boosted.is_some() {
        FEATURES.iter().map(|f| f.to_string()).collect()
    } else if churn.btyd_buy_again.is_some() {
        buy_again::INPUTS.iter().map(|f| f.to_string()).collect()
    } else {
        churn.features.iter().map(|f| f.name.clone()).collect()
    }
}

/// The models' outputs for some rows (`None` for the rows that are not buyers), checked.
struct ModelOutputs<'n> {
    with_probability: usize,
    churn_probability: Vec<Option<f64>>,
    values: Vec<Option<ValueScores>>,
    /// Borrowed from [`reason_names`]: no string per customer until the column.
    reasons: Vec<[Option<&'n str>; 3]>,
}

/// Applies the fitted models to `rows` (ids `ids`): churn probability, reasons and BTYD / CLV
/// outputs of each buyer. Row by row: the outputs of a row do not depend on the others.
fn model_outputs<'n>(
    ids: &[Box<str>],
    rows: &[Features],
    models: &Models<'_>,
    names: &'n [String],
) -> Result<ModelOutputs<'n>, ScoreError> {
    let Models {
        churn,
        value,
        spend,
        horizon_days,
        ..
    } = *models;
    let n = rows.len();
    // The buyers (the models' population) and their value inputs.
    let (buyers, value_inputs): (Vec<usize>, Vec<ValueInputs>) = (0..n)
        .filter_map(|i| ValueInputs::of(&rows[i]).map(|v| (i, v)))
        .unzip();
    let buyer_rows: Vec<&Features> = buyers.iter().map(|&i| &rows[i]).collect();
    // Logged once (in parallel): every model reads these rows.
    let logged = logged_matrix(&buyer_rows);
    drop(buyer_rows);
    // The value champion, when a supervised spend model won the run's value selection: its
    // expected spend over the horizon, discounted with the BTYD timing, is the CLV.
    let spend_h = spend.map(|s| s.predict_logged(&logged)).transpose()?;
    // The boosted champion, when it won: its probabilities and its reasons from its path
    // contributions (stages::challengers).
    let boosted = churn
        .boosted
        .as_ref()
        .map(|b| crate::stages::challengers::score_boosted(b, &logged));
    // The BTYD buy-again champion, when it won: P(no purchase in H) from the value model's
    // transaction fit, reasons against the saved medians (models::buy_again).
    let buy_again = churn
        .btyd_buy_again
        .as_ref()
        .map(|b| buy_again_scores(b, value, &value_inputs, f64::from(horizon_days)))
        .transpose()?;
    // The logistic model's standardised rows, only when it is the champion.
    let z = match (&boosted, &buy_again) {
        (None, None) => Some(churn.standardise_logged(&logged)?),
        _ => None,
    };
    drop(logged);
    let probs = match (&boosted, &buy_again, &z) {
        (Some((p, _)), _, _) | (None, Some((p, _)), _) => p.clone(),
        (None, None, Some(z)) => churn.predict_standardised(z),
        (None, None, None) => Vec::new(),
    };
    let mut churn_probability = vec![None; n];
    let mut values: Vec<Option<ValueScores>> = vec![None; n];
    let mut reasons: Vec<[Option<&str>; 3]> = vec![[None, None, None]; n];
    // Per customer, independent: BTYD / CLV evaluation and churn reasons in parallel, then
    // checked and placed in row order (the first bad customer in row order is reported).
    let per_customer: Vec<(ValueScores, [Option<&str>; 3])> = (0..buyers.len())
        .into_par_iter()
        .map(|k| {
            let mut v = value.score(&value_inputs[k], f64::from(horizon_days));
            if let Some(s) = &spend_h {
                v.clv = SpendChampion::clv(s[k], v.expected_purchases, v.discounted_purchases);
            }
            let contributions: Vec<f64> = match (&boosted, &buy_again, &z) {
                (Some((_, c)), _, _) => c[k].clone(),
                (None, Some((_, c)), _) => c[k].to_vec(),
                (None, None, Some(z)) => z
                    .row(k)
                    .iter()
                    .zip(&churn.coefficients)
                    .map(|(a, b)| a * b)
                    .collect(),
                (None, None, None) => Vec::new(),
            };
            (v, churn_reasons(names, &contributions))
        })
        .collect();
    for ((&i, p), (v, why)) in buyers.iter().zip(probs).zip(per_customer) {
        check_outputs(ids[i].as_ref(), p, &v)?;
        churn_probability[i] = Some(p);
        values[i] = Some(v);
        reasons[i] = why;
    }
    Ok(ModelOutputs {
        with_probability: buyers.len(),
        churn_probability,
        values,
        reasons,
    })
}

/// Applies the fitted models to the feature table at as-of (churn probability, reasons and
/// BTYD outputs for customers who have bought — the models' population — `None` for the
/// others), then the segments and tiers (the table's cutoff is the partition's as-of): the
/// rank columns, VIPs and median CLV from the whole table's cut points when `cuts` is given
/// (a bucket or a slice of it scored alone: `stages::sharded`, [`score_slices`]), else ranked
/// within `set`.
pub fn score_with(
    set: &FeatureTable,
    models: &Models<'_>,
    tiers: &TierConfig,
    run_id: &str,
    cuts: Option<&Cuts>,
) -> Result<Scored, ScoreError> {
    let (table, outcomes) = score_rows(&set.customer_ids, &set.rows, models, tiers, run_id, cuts)?;
    Ok(Scored {
        table,
        summary: summarise(&set.rows, outcomes),
    })
}

/// The score rows of some rows of a feature table (ids `ids`, in customer_id order), and
/// what a [`Summary`] of them is made of ([`score_with`] summarises; the slices of
/// [`score_slices`], summarised before, do not).
fn score_rows(
    ids: &[Box<str>],
    rows: &[Features],
    models: &Models<'_>,
    tiers: &TierConfig,
    run_id: &str,
    cuts: Option<&Cuts>,
) -> Result<(RecordBatch, Outcomes), ScoreError> {
    let n = rows.len();
    let names = reason_names(models.churn);
    let ModelOutputs {
        with_probability,
        churn_probability,
        values,
        reasons,
    } = model_outputs(ids, rows, models, &names)?;
    let key = |k: usize| -> Vec<Option<f64>> { rows.iter().map(|r| rank_key_of(r)[k]).collect() };
    let (r_key, f_key, m_key) = (key(0), key(1), key(2));
    let clv: Vec<Option<f64>> = values.iter().map(|v| v.map(|s| s.clv)).collect();
    let (r, fq, m, clv_decile) = match cuts {
        None => (
            quintiles(&r_key),
            quintiles(&f_key),
            quintiles(&m_key),
            deciles(&clv),
        ),
        Some(c) => (
            c.recency.bins_of(&r_key, ids),
            c.frequency.bins_of(&f_key, ids),
            c.monetary.bins_of(&m_key, ids),
            c.clv.bins_of(&clv, ids),
        ),
    };
    let h = f64::from(models.horizon_days);
    let (tier, stages) = tiers_and_stages(ids, rows, &churn_probability, &clv, cuts, h, tiers);

    let text = |v: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let int = |v: &[Option<u8>]| -> ArrayRef {
        Arc::new(Int64Array::from_iter(v.iter().map(|s| s.map(i64::from))))
    };
    let real = |f: &dyn Fn(&ValueScores) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter(
            values.iter().map(|s| s.as_ref().map(f)),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|s| s.as_ref()),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.recency_days))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.frequency as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.monetary_total),
        )),
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| r.avg_order_value),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.tenure_days),
        )),
        int(&r),
        int(&fq),
        int(&m),
        text(
            (0..n)
                .map(|i| r[i].zip(fq[i]).map(|(a, b)| rfm_segment(a, b)))
                .collect(),
        ),
        text(stages.iter().map(|&s| Some(s)).collect()),
        Arc::new(Float64Array::from_iter(churn_probability.iter().copied())),
        text(
            churn_probability
                .iter()
                .map(|p| churn_risk(*p, tiers))
                .collect(),
        ),
        real(&|s| s.p_alive),
        real(&|s| s.expected_purchases),
        real(&|s| s.expected_order_value),
        real(&|s| s.clv),
        int(&clv_decile),
        text(
            tier.iter()
                .map(|&t| Some(TIERS[usize::from(t)].0))
                .collect(),
        ),
        text(
            tier.iter()
                .map(|&t| Some(TIERS[usize::from(t)].1))
                .collect(),
        ),
        text(reasons.iter().map(|r| r[0]).collect()),
        text(reasons.iter().map(|r| r[1]).collect()),
        text(reasons.iter().map(|r| r[2]).collect()),
        Arc::new(StringArray::from(vec![models.model_version; n])),
        Arc::new(StringArray::from(vec![run_id; n])),
    ];
    let table = RecordBatch::try_new(scores_schema(), columns)?;
    Ok((
        table,
        Outcomes {
            churn_probability,
            clv,
            tier,
            stages,
            with_probability,
        },
    ))
}

/// Probabilities and reason contributions of the BTYD buy-again champion for the buyers'
/// value inputs, in parallel (what `score` writes).
fn buy_again_scores(
    b: &BuyAgainChurn,
    value: &ValueModel,
    inputs: &[ValueInputs],
    horizon_days: f64,
) -> Result<(Vec<f64>, Vec<[f64; 3]>), ModelError> {
    let t = &value.transactions;
    let scored: Option<Vec<(f64, [f64; 3])>> = inputs
        .par_iter()
        .map(|v| {
            Some((
                buy_again::probability(t, v, horizon_days)?,
                b.contributions(t, v, horizon_days)?,
            ))
        })
        .collect();
    scored.map(|s| s.into_iter().unzip()).ok_or_else(|| {
        ModelError::Invalid(format!(
            "the BTYD buy-again champion needs a bgnbd or mbgnbd value model, not {}",
            t.kind.key()
        ))
    })
}

/// Scores with a model read from `path` (`churnclv score`): numbers the file gave that make
/// unusable scores are the file's fault (exit 2), like any other bad field of it.
pub fn score_saved(
    set: &FeatureTable,
    saved: &SavedModel,
    path: &Path,
    tiers: &TierConfig,
    run_id: &str,
) -> Result<Scored, crate::Error> {
    score_saved_with(set, saved, path, tiers, run_id, None)
}

/// [`score_saved`] with the whole table's cut points (see [`score_with`]).
pub fn score_saved_with(
    set: &FeatureTable,
    saved: &SavedModel,
    path: &Path,
    tiers: &TierConfig,
    run_id: &str,
    cuts: Option<&Cuts>,
) -> Result<Scored, crate::Error> {
    let version = model_version(&saved.run_id);
    let models = Models {
        churn: &saved.churn,
        value: &saved.value,
        spend: saved.value_spend.as_ref(),
        horizon_days: saved.horizon_days,
        model_version: &version,
    };
    score_with(set, &models, tiers, run_id, cuts).map_err(|e| match e {
        ScoreError::Unusable { .. } => SavedModelError::Unusable {
            path: path.display().to_string(),
            message: e.to_string(),
        }
        .into(),
        e => e.into(),
    })
}
