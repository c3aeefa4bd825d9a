//! The score stage: fitted (or saved) models + the feature table at as-of → the score table
//! (columns in docs/schema.md): one row per customer with any event before as-of — the RFM summary, churn
//! probability and risk band, BTYD outputs and CLV decile, RFM segment, lifecycle stage,
//! engagement tier and next best action, and the churn reasons — with the tier summary and
//! KPIs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;
use serde::Serialize;

use crate::cuts::Cuts;
use crate::features::{FeatureTable, Features};
use crate::models::buy_again::{self, BuyAgainChurn};
use crate::models::churn::{logged_matrix, FEATURES};
use crate::models::spend_champion::SpendChampion;
use crate::models::value::ValueInputs;
use crate::models::value::{ValueModel, ValueScores};
use crate::models::{ChurnModel, ModelError, SavedModel, SavedModelError};
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

/// Size, mean CLV and mean churn probability of one engagement tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStats {
    pub customers: usize,
    pub share: f64,
    pub next_best_action: &'static str,
    pub mean_clv: Option<f64>,
    pub mean_churn_probability: Option<f64>,
}

/// The business KPIs of a group of customers (the whole run, or one tier).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpis {
    pub customers: usize,
    pub customers_by_lifecycle_stage: BTreeMap<&'static str, usize>,
    /// Buyers with at least two purchase days / buyers.
    pub repeat_purchase_rate: Option<f64>,
    /// Purchase amount / purchase events.
    pub average_order_value: Option<f64>,
    /// Abandoned cart adds / cart adds.
    pub cart_abandonment_rate: Option<f64>,
    /// Mean churn probability of the buyers: the expected churn rate of the next H days.
    pub predicted_churn_rate: Option<f64>,
    pub total_clv: f64,
    pub mean_clv: Option<f64>,
}

fn kpis(
    set: &FeatureTable,
    members: &[usize],
    stages: &[&'static str],
    churn: &[Option<f64>],
    clv: &[Option<f64>],
) -> Kpis {
    let rows = || members.iter().map(|&i| &set.rows[i]);
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let buyers = rows().filter(|r| r.has_purchase()).count() as f64;
    let purchases: f64 = rows().map(|r| r.n_purchases as f64).sum();
    let spend: f64 = rows()
        .map(|r| r.avg_order_value.unwrap_or(0.0) * r.n_purchases as f64)
        .sum();
    let mut by_stage = BTreeMap::new();
    for &i in members {
        *by_stage.entry(stages[i]).or_insert(0) += 1;
    }
    let probs: Vec<f64> = members.iter().filter_map(|&i| churn[i]).collect();
    let clvs: Vec<f64> = members.iter().filter_map(|&i| clv[i]).collect();
    Kpis {
        customers: members.len(),
        customers_by_lifecycle_stage: by_stage,
        repeat_purchase_rate: ratio(
            rows().filter(|r| r.purchase_days >= 2).count() as f64,
            buyers,
        ),
        average_order_value: ratio(spend, purchases),
        cart_abandonment_rate: ratio(
            rows().map(|r| r.cart_abandonments as f64).sum(),
            rows().map(|r| r.n_add_to_cart as f64).sum(),
        ),
        predicted_churn_rate: ratio(probs.iter().sum(), probs.len() as f64),
        total_clv: clvs.iter().sum(),
        mean_clv: ratio(clvs.iter().sum(), clvs.len() as f64),
    }
}

/// The scored table, its tier summary and KPIs.
#[derive(Debug, Clone)]
pub struct Scored {
    pub table: RecordBatch,
    /// Every tier, in priority order (empty tiers included).
    pub tiers: BTreeMap<&'static str, TierStats>,
    /// KPIs of all scored customers and of each tier.
    pub kpis: Kpis,
    pub kpis_by_tier: BTreeMap<&'static str, Kpis>,
    pub with_probability: usize,
}

/// Identifies what scored a row: crate version and the run that fitted the models.
pub fn model_version(model_run_id: &str) -> String {
    format!("churnclv-{}+{model_run_id}", env!("CARGO_PKG_VERSION"))
}

/// Applies the fitted models to the feature table at as-of (churn probability, reasons and
/// BTYD outputs for customers who have bought — the models' population — `None` for the
/// others), then the segments and tiers (the table's cutoff is the partition's as-of).
pub fn score(
    set: &FeatureTable,
    churn: &ChurnModel,
    value: &ValueModel,
    spend: Option<&SpendChampion>,
    horizon_days: u32,
    tiers: &TierConfig,
    model_version: &str,
    run_id: &str,
) -> Result<Scored, ScoreError> {
    let models = Models {
        churn,
        value,
        spend,
        horizon_days,
        model_version,
    };
    score_with(set, &models, tiers, run_id, None)
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

/// The rank keys of a feature table's rows (−recency, purchase days and monetary total of
/// buyers), as the score table's r/f/m quintiles rank them.
pub fn rank_keys(set: &FeatureTable) -> [Vec<Option<f64>>; 3] {
    let buyer = |v: f64, i: usize| set.rows[i].has_purchase().then_some(v);
    let n = set.rows.len();
    [
        (0..n)
            .map(|i| set.rows[i].recency_days.map(|d| -d))
            .collect(),
        (0..n)
            .map(|i| buyer(set.rows[i].purchase_days as f64, i))
            .collect(),
        (0..n)
            .map(|i| buyer(set.rows[i].monetary_total, i))
            .collect(),
    ]
}

/// [`score`], with the rank columns, VIPs and median CLV from the whole table's cut points
/// when `cuts` is given (a bucket of it scored alone: `stages::sharded`), else ranked within
/// `set`.
pub fn score_with(
    set: &FeatureTable,
    models: &Models<'_>,
    tiers: &TierConfig,
    run_id: &str,
    cuts: Option<&Cuts>,
) -> Result<Scored, ScoreError> {
    let Models {
        churn,
        value,
        spend,
        horizon_days,
        model_version,
    } = *models;
    let n = set.rows.len();
    // The buyers (the models' population) and their value inputs.
    let (buyers, value_inputs): (Vec<usize>, Vec<ValueInputs>) = (0..n)
        .filter_map(|i| ValueInputs::of(&set.rows[i]).map(|v| (i, v)))
        .unzip();
    let rows: Vec<&Features> = buyers.iter().map(|&i| &set.rows[i]).collect();
    // Logged once (in parallel): every model reads these rows.
    let logged = logged_matrix(&rows);
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
    let names: Vec<String> = match (&boosted, &buy_again) {
        (Some(_), _) => FEATURES.iter().map(|f| f.to_string()).collect(),
        (None, Some(_)) => buy_again::INPUTS.iter().map(|f| f.to_string()).collect(),
        (None, None) => churn.features.iter().map(|f| f.name.clone()).collect(),
    };
    let mut churn_probability = vec![None; n];
    let mut values: Vec<Option<ValueScores>> = vec![None; n];
    // Reasons borrow the model's feature names: no string per customer until the column.
    let mut reasons: Vec<[Option<&str>; 3]> = vec![[None, None, None]; n];
    // Per customer, independent: BTYD / CLV evaluation and churn reasons in parallel, then
    // checked and placed in row order (the first bad customer in row order is reported).
    let per_customer: Vec<(ValueScores, [Option<&str>; 3])> = (0..rows.len())
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
            (v, churn_reasons(&names, &contributions))
        })
        .collect();
    for ((&i, p), (v, why)) in buyers.iter().zip(probs).zip(per_customer) {
        check_outputs(set.customer_ids[i].as_ref(), p, &v)?;
        churn_probability[i] = Some(p);
        values[i] = Some(v);
        reasons[i] = why;
    }
    let [r_key, f_key, m_key] = rank_keys(set);
    let clv: Vec<Option<f64>> = values.iter().map(|v| v.map(|s| s.clv)).collect();
    let ids = &set.customer_ids;
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
    let inputs: Vec<TierInput> = (0..n)
        .map(|i| TierInput {
            purchase_days: set.rows[i].purchase_days,
            recency_days: set.rows[i].recency_days,
            tenure_days: set.rows[i].tenure_days,
            days_since_cart_abandonment: set.rows[i].days_since_cart_abandonment,
            churn_probability: churn_probability[i],
            clv: clv[i],
        })
        .collect();
    let h = f64::from(horizon_days);
    let tier = match cuts {
        None => assign_tiers(&inputs, h, tiers),
        Some(c) => {
            let vip: Vec<bool> = (0..n).map(|i| c.is_vip(clv[i], &ids[i])).collect();
            assign_tiers_given(&inputs, &vip, c.clv_median, h, tiers)
        }
    };

    let stages: Vec<&'static str> = inputs
        .iter()
        .map(|c| lifecycle_stage(c, h, tiers))
        .collect();
    let all: Vec<usize> = (0..n).collect();
    let run_kpis = kpis(set, &all, &stages, &churn_probability, &clv);
    let mut kpis_by_tier = BTreeMap::new();
    let mut summary: BTreeMap<&'static str, TierStats> = BTreeMap::new();
    for (t, (name, action)) in TIERS.iter().enumerate() {
        let members: Vec<usize> = (0..n).filter(|&i| tier[i] == t).collect();
        kpis_by_tier.insert(
            *name,
            kpis(set, &members, &stages, &churn_probability, &clv),
        );
        let mean = |v: &dyn Fn(usize) -> Option<f64>| {
            let xs: Vec<f64> = members.iter().filter_map(|&i| v(i)).collect();
            (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
        };
        summary.insert(
            name,
            TierStats {
                customers: members.len(),
                share: if n == 0 {
                    0.0
                } else {
                    members.len() as f64 / n as f64
                },
                next_best_action: action,
                mean_clv: mean(&|i| clv[i]),
                mean_churn_probability: mean(&|i| churn_probability[i]),
            },
        );
    }

    let text = |v: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let int = |v: &[Option<u8>]| -> ArrayRef {
        Arc::new(Int64Array::from_iter(v.iter().map(|s| s.map(i64::from))))
    };
    let real = |f: &dyn Fn(&ValueScores) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter(
            values.iter().map(|s| s.as_ref().map(f)),
        ))
    };
    let rows_ = &set.rows;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            set.customer_ids.iter().map(|s| s.as_ref()),
        )),
        Arc::new(Float64Array::from_iter(
            rows_.iter().map(|r| r.recency_days),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows_.iter().map(|r| r.frequency as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows_.iter().map(|r| r.monetary_total),
        )),
        Arc::new(Float64Array::from_iter(
            rows_.iter().map(|r| r.avg_order_value),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows_.iter().map(|r| r.tenure_days),
        )),
        int(&r),
        int(&fq),
        int(&m),
        text(
            (0..n)
                .map(|i| r[i].zip(fq[i]).map(|(a, b)| rfm_segment(a, b)))
                .collect(),
        ),
        text(
            inputs
                .iter()
                .map(|c| Some(lifecycle_stage(c, h, tiers)))
                .collect(),
        ),
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
        text(tier.iter().map(|&t| Some(TIERS[t].0)).collect()),
        text(tier.iter().map(|&t| Some(TIERS[t].1)).collect()),
        text(reasons.iter().map(|r| r[0]).collect()),
        text(reasons.iter().map(|r| r[1]).collect()),
        text(reasons.iter().map(|r| r[2]).collect()),
        Arc::new(StringArray::from(vec![model_version; n])),
        Arc::new(StringArray::from(vec![run_id; n])),
    ];
    Ok(Scored {
        table: RecordBatch::try_new(scores_schema(), columns)?,
        tiers: summary,
        kpis: run_kpis,
        kpis_by_tier,
        with_probability: buyers.len(),
    })
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
