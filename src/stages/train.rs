//! The train stage: labelled feature tables → fitted models and their out-of-time metrics. No
//! events are needed: everything comes from the tables (features/table/), which `run`
//! builds from its one scan and `churnclv train` reads from files.
//!
//! With scoring date `as_of` and horizon `H` (windows drawn in docs/design.md): the churn model's L2 strength is chosen
//! by fitting at `tv = as_of − 3H` and validating on `t0` (labels `[t0, t1)`); the model is
//! then fitted at `t0` and evaluated out of time at `t1` against the recency baseline, beside
//! the supervised spend model and the "next H = last H" baseline; BTYD is fitted before `t1`
//! and evaluated on the holdout `[t1, as_of)`. Finally the churn model is refitted at `t1`
//! (labels up to as-of) and BTYD / Gamma-Gamma on the history before as-of: those are the
//! models saved and scored. With fewer tables (history shorter than 3H or 2H, or `train`
//! given less) it degrades as documented: L2 from the config (recorded), or a seeded 80/20
//! customer split of the `t1` window (recorded with its reason).

use std::borrow::Cow;
use std::time::Instant;

use chrono::NaiveDate;
use rayon::prelude::*;

use crate::config::{ClassWeight, Config};
use crate::error::{Context, Error, Result};
use crate::evaluate::{log_loss, mae};
use crate::features::{FeatureTable, Features, WindowLabels};
use crate::labels::Cutoffs;
use crate::models::churn::{raw_matrix, Design};
use crate::models::spend::SpendModel;
use crate::models::value::ValueModel;
use crate::models::FORMAT_VERSION;
use crate::models::{ChurnModel, ChurnParams, ModelError, SavedModel, TrainingWindow};
use crate::stages::metrics::{
    auc_or_nan, AlphaSelection, BtydEvaluation, ChurnMetrics, ChurnScores, Counts, Evaluation,
    KpiMetrics, Metrics, ValueMetrics, ValueScoresMetrics,
};
use crate::stages::score::Scored;

/// The tables of a training, by their date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// `tv = as_of − 3H`: fits the L2 candidates. Without it, `churn.alpha` is used.
    Tune,
    /// `t0 = as_of − 2H`: fits the model evaluated out of time (and validates the L2
    /// candidates). Without it, the evaluation is a customer split of the `t1` window.
    Train,
    /// `t1 = as_of − H`: the out-of-time evaluation, the BTYD holdout and the final churn
    /// fit. Required.
    Validate,
    /// As-of, unlabelled: the history the final BTYD and Gamma-Gamma models are fitted on.
    /// Required.
    Latest,
}

/// Where training gets its tables (the labelled ones with the window after each), one when
/// it needs it, so that no more than two are held at a time: `run` builds them from its scan
/// on demand, `train` has read them from files, a test may hold them in memory ([`Tables`]).
/// Only the customers who had bought before a table's cutoff are used: a source may leave
/// the others out.
pub trait TrainingTables {
    fn get(&self, at: At) -> Result<Option<Cow<'_, FeatureTable>>>;
}

/// Training tables held in memory.
#[derive(Debug, Clone, Copy)]
pub struct Tables<'a> {
    pub tune: Option<&'a FeatureTable>,
    pub train: Option<&'a FeatureTable>,
    pub validate: &'a FeatureTable,
    pub latest: &'a FeatureTable,
}

impl TrainingTables for Tables<'_> {
    fn get(&self, at: At) -> Result<Option<Cow<'_, FeatureTable>>> {
        Ok(match at {
            At::Tune => self.tune,
            At::Train => self.train,
            At::Validate => Some(self.validate),
            At::Latest => Some(self.latest),
        }
        .map(Cow::Borrowed))
    }
}

/// What training gives: the fitted models (what is saved is what is scored) and the metrics.
#[derive(Debug)]
pub struct Trained {
    pub cutoffs: Cutoffs,
    pub evaluation: Evaluation,
    pub btyd: BtydEvaluation,
    pub churn: ChurnModel,
    pub value: ValueModel,
}

/// Fits and evaluates on `tables`. `min_auc`: the quality gate (exit 3 when the out-of-time
/// ROC-AUC is below it, checked before the final fits).
pub fn train(
    tables: &dyn TrainingTables,
    cutoffs: Cutoffs,
    config: &Config,
    min_auc: Option<f64>,
) -> Result<Trained> {
    let c = &cutoffs;
    let t = Instant::now();
    let params = ChurnParams {
        alpha: config.churn.alpha,
        max_iterations: config.churn.max_iterations,
        timeout_seconds: config.churn.timeout_seconds,
        balanced: config.churn.class_weight == ClassWeight::Balanced,
    };
    // The `t0` table serves the alpha selection (validation) and the out-of-time fit: built
    // once. The `tv` and `t0` tables are only read as raw feature matrices with labels, so
    // each is reduced to that [`Sample`] as soon as it is built (the table is dropped at the
    // end of its statement): 136 bytes a buyer instead of a `Features` row and an id.
    let train_sample = sample(tables.get(At::Train)?.as_deref(), "train")?;
    let selection = {
        let tune = sample(tables.get(At::Tune)?.as_deref(), "tune")?;
        choose_alpha(tune, train_sample.as_ref(), c, config, params)
    };
    let params = ChurnParams {
        alpha: selection.chosen,
        ..params
    };
    let validate = tables.get(At::Validate)?;
    let Some(eval) = population(validate.as_deref(), "validate")? else {
        return Err(Error::Internal(
            "training without a validation table".into(),
        ));
    };
    let mut evaluation = evaluate(train_sample.as_ref(), &eval, c, config, params)?;
    drop(train_sample);
    evaluation.alpha_selection = Some(selection);
    tracing::info!(
        stage = "evaluate",
        scheme = evaluation.scheme,
        roc_auc = evaluation.model.roc_auc,
        baseline_roc_auc = evaluation.baseline.roc_auc,
        duration_ms = t.elapsed().as_millis() as u64,
        "out-of-time churn ROC-AUC {:.4} (recency baseline {:.4})",
        evaluation.model.roc_auc,
        evaluation.baseline.roc_auc
    );
    let t = Instant::now();
    let btyd = evaluate_btyd(&eval, c, config)?;
    tracing::info!(
        stage = "evaluate",
        model = %btyd.model,
        holdout_purchases_mae = btyd.holdout_purchases_mae,
        buy_again_roc_auc = btyd.buy_again_roc_auc,
        duration_ms = t.elapsed().as_millis() as u64,
        "BTYD holdout: {:.0} purchases predicted, {} actual",
        btyd.predicted_total_purchases,
        btyd.actual_total_purchases
    );
    if let Some(min) = min_auc {
        if evaluation.model.roc_auc < min {
            return Err(Error::QualityGate(format!(
                "churn ROC-AUC {:.4} is below --min-auc {min}; nothing published",
                evaluation.model.roc_auc
            )));
        }
    }

    // Refit on the latest labelled window, and the value models on the history before as-of.
    let churn = ChurnModel::fit(
        params,
        &raw_matrix(&eval.rows),
        &eval.labels.window.churned,
        &window_name(c.t1, c.as_of),
    )
    .context("final churn model")?;
    drop(eval);
    drop(validate);
    let Some(latest) = tables.get(At::Latest)? else {
        return Err(Error::Internal("training without an as-of table".into()));
    };
    let buyers: Vec<&Features> = latest.rows.iter().filter(|f| f.has_purchase()).collect();
    let value =
        ValueModel::fit(&buyers, &config.btyd).context("BTYD model (history before as-of)")?;
    Ok(Trained {
        cutoffs,
        evaluation,
        btyd,
        churn,
        value,
    })
}

impl Trained {
    /// `metrics.json`: the training sections, and with `scored` (the as-of table scored with
    /// these models, and the counts) the tiers, KPIs and counts.
    pub fn metrics<'a>(
        &'a self,
        run_id: &str,
        scored: Option<(&'a Scored, Counts)>,
    ) -> Metrics<'a> {
        let e = &self.evaluation;
        Metrics {
            run_id: run_id.to_string(),
            crate_version: env!("CARGO_PKG_VERSION"),
            as_of: self.cutoffs.as_of,
            horizon_days: self.cutoffs.horizon_days,
            evaluation: e,
            churn: ChurnMetrics {
                model: &e.model,
                baseline: &e.baseline,
                btyd: Some(&self.btyd.churn),
            },
            value: ValueMetrics {
                model: &e.value_model,
                baseline: &e.value_baseline,
                btyd: &self.btyd,
                btyd_final_fit: &self.value.fit,
            },
            tiers: scored.map(|(s, _)| &s.tiers),
            kpis: scored.map(|(s, _)| KpiMetrics {
                observed_churn_rate_last_window: e.eval_churn_rate,
                run: &s.kpis,
                by_tier: &s.kpis_by_tier,
            }),
            counts: scored.map(|(_, counts)| counts),
            drift: None,
            profile: None,
        }
    }

    /// The model file: the fitted models, their windows and `metrics`.
    pub fn saved_model(&self, run_id: &str, metrics: &Metrics<'_>) -> Result<SavedModel> {
        let c = &self.cutoffs;
        Ok(SavedModel {
            format_version: FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: run_id.to_string(),
            horizon_days: c.horizon_days,
            trained_on: TrainingWindow {
                features_before: c.t1,
                labels_from: c.t1,
                labels_until: c.as_of,
            },
            scores_as_of: c.as_of,
            churn: self.churn.clone(),
            value: self.value.clone(),
            metrics: serde_json::to_value(metrics)?,
        })
    }
}

fn window_name(from: NaiveDate, until: NaiveDate) -> String {
    format!("window [{from}, {until})")
}

/// The customers of a labelled table who had bought before its cutoff (the models'
/// population), with their labels: borrowed rows, no copy of the features.
struct Population<'a> {
    rows: Vec<&'a Features>,
    ids: Vec<&'a str>,
    labels: WindowLabels,
}

fn population<'a>(table: Option<&'a FeatureTable>, role: &str) -> Result<Option<Population<'a>>> {
    let Some(table) = table else {
        return Ok(None);
    };
    let Some(labels) = &table.labels else {
        return Err(Error::Internal(format!(
            "the {role} table at {} has no label columns",
            table.cutoff
        )));
    };
    let keep: Vec<usize> = (0..table.rows.len())
        .filter(|&i| table.rows[i].has_purchase())
        .collect();
    Ok(Some(Population {
        rows: keep.iter().map(|&i| &table.rows[i]).collect(),
        ids: keep
            .iter()
            .map(|&i| table.customer_ids[i].as_ref())
            .collect(),
        labels: labels.select(&keep),
    }))
}

/// A labelled table reduced to what the churn and spend fits read: the raw feature matrix
/// ([`raw_matrix`]) of its buyers, in table order, and their labels.
struct Sample {
    raw: ndarray::Array2<f64>,
    labels: WindowLabels,
}

impl Sample {
    fn len(&self) -> usize {
        self.raw.nrows()
    }
}

fn sample(table: Option<&FeatureTable>, role: &str) -> Result<Option<Sample>> {
    Ok(population(table, role)?.map(|p| Sample {
        raw: raw_matrix(&p.rows),
        labels: p.labels,
    }))
}

fn choose_alpha(
    tune: Option<Sample>,
    train: Option<&Sample>,
    c: &Cutoffs,
    config: &Config,
    params: ChurnParams,
) -> AlphaSelection {
    let fixed = |reason: String| AlphaSelection {
        chosen: params.alpha,
        scheme: "config",
        reason: Some(reason),
        grid: Vec::new(),
    };
    if config.churn.alpha_grid.is_empty() {
        return fixed("churn.alpha_grid is empty".into());
    }
    let (Some(tune), Some(train)) = (tune, train) else {
        return fixed(format!(
            "no labelled tables at {} and {} to choose it on",
            c.tv, c.t0
        ));
    };
    let Sample {
        raw: fit,
        labels: fit_labels,
    } = tune;
    let fit_labels = &fit_labels.window;
    let (val, val_labels) = (train, &train.labels.window);
    if fit.nrows() < config.run.min_train_customers || val.len() == 0 {
        return fixed(format!(
            "{} customers bought before {} (min_train_customers {})",
            fit.nrows(),
            c.tv,
            config.run.min_train_customers
        ));
    }
    // One design for every candidate (same customers, same scaling), and the validation rows
    // standardised once with that scaling. Candidates are fitted one after another in grid
    // order, each from the previous optimum (a warm start: fewer Newton passes; each pass is
    // parallel over rows, and the optimum does not depend on the start).
    let scaled = Design::new(&fit).and_then(|design| {
        let zv = design.standardise(&val.raw)?;
        Ok((design, zv))
    });
    // The design holds the scaled rows: the raw ones are not read again.
    drop(fit);
    let (design, zv) = match scaled {
        Ok(d) => d,
        Err(e) => return fixed(format!("validation fit failed: {e}")),
    };
    let mut grid = Vec::new();
    let mut previous: Option<ChurnModel> = None;
    for &alpha in &config.churn.alpha_grid {
        let p = ChurnParams { alpha, ..params };
        let window = window_name(c.tv, c.t0);
        match ChurnModel::fit_design(p, &design, &fit_labels.churned, &window, previous.as_ref()) {
            Ok(m) => {
                let pred = m.predict_standardised(&zv);
                grid.push((alpha, log_loss(&pred, &val_labels.churned)));
                previous = Some(m);
            }
            Err(e) => return fixed(format!("validation fit failed: {e}")),
        }
    }
    let best = grid
        .iter()
        .copied()
        .filter(|g| g.1.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        Some((alpha, _)) => AlphaSelection {
            chosen: alpha,
            scheme: "time_ordered",
            reason: None,
            grid,
        },
        None => fixed("no finite validation log loss".into()),
    }
}

/// The supervised spend model and the "next H = last H" baseline on the same customers.
fn value_metrics(
    train: &ndarray::Array2<f64>,
    train_spend: &[f64],
    eval: &ndarray::Array2<f64>,
    eval_spend: &[f64],
    eval_last_spend: &[f64],
) -> Result<(ValueScoresMetrics, ValueScoresMetrics)> {
    let model = SpendModel::fit(train, train_spend).context("spend model")?;
    let predicted = model.predict(eval)?;
    Ok((
        ValueScoresMetrics::new("log1p_ols", &predicted, eval_spend),
        ValueScoresMetrics::new("last_window_spend", eval_last_spend, eval_spend),
    ))
}

fn rate(l: &[bool]) -> f64 {
    if l.is_empty() {
        0.0
    } else {
        l.iter().filter(|&&x| x).count() as f64 / l.len() as f64
    }
}

/// The out-of-time evaluation: fitted at `t0`, evaluated at `t1`; or, when the `t0` table is
/// missing, too small or has one class, the customer-split fallback inside the `t1` window.
fn evaluate(
    train: Option<&Sample>,
    eval: &Population<'_>,
    c: &Cutoffs,
    config: &Config,
    params: ChurnParams,
) -> Result<Evaluation> {
    let one_class = |l: &[bool]| l.iter().all(|&x| x) || l.iter().all(|&x| !x);
    if eval.rows.is_empty() {
        return Err(ModelError::Empty {
            window: window_name(c.t1, c.as_of),
        }
        .into());
    }
    let train = match train {
        None => Err(format!("no labelled table at {}", c.t0)),
        Some(t) if t.len() < config.run.min_train_customers => Err(format!(
            "{} customers bought before {} (min_train_customers {})",
            t.len(),
            c.t0,
            config.run.min_train_customers
        )),
        Some(t) if one_class(&t.labels.window.churned) => {
            Err(format!("one churn class in [{}, {})", c.t0, c.t1))
        }
        Some(t) => Ok(t),
    };
    let train = match train {
        Ok(t) => t,
        Err(reason) => return customer_split(eval, c, config, params, reason),
    };
    let eval_rows = &eval.rows;
    let model = ChurnModel::fit(
        params,
        &train.raw,
        &train.labels.window.churned,
        &window_name(c.t0, c.t1),
    )
    .context("churn model (out of time)")?;
    let eval_raw = raw_matrix(eval_rows);
    let p = model.predict(&eval_raw)?;
    let (value_model, value_baseline) = value_metrics(
        &train.raw,
        &train.labels.window.spend,
        &eval_raw,
        &eval.labels.window.spend,
        &eval.labels.prior_net_spend,
    )?;
    let recency: Vec<f64> = eval_rows
        .iter()
        .map(|r| r.recency_days.unwrap_or(0.0))
        .collect();
    let churned = &eval.labels.window.churned;
    Ok(Evaluation {
        scheme: "out_of_time",
        train_cutoff: c.t0,
        train_labels_until: c.t1,
        eval_cutoff: c.t1,
        eval_labels_until: c.as_of,
        train_customers: train.len(),
        eval_customers: eval_rows.len(),
        train_churn_rate: rate(&train.labels.window.churned),
        eval_churn_rate: rate(churned),
        fallback_reason: None,
        alpha_selection: None,
        model: ChurnScores::new("logistic", &p, churned, true),
        baseline: ChurnScores::new("recency", &recency, churned, false),
        value_model,
        value_baseline,
        eval_scores: (p, recency, churned.clone()),
    })
}

/// History shorter than two horizons: a seeded 80/20 customer split in the `t1` window.
fn customer_split(
    eval: &Population<'_>,
    c: &Cutoffs,
    config: &Config,
    params: ChurnParams,
    reason: String,
) -> Result<Evaluation> {
    let eval_labels = &eval.labels;
    let eval_rows = &eval.rows;
    let is_eval: Vec<bool> = eval
        .ids
        .iter()
        .map(|id| split_hash(id, config.run.seed) % 5 == 0)
        .collect();
    let pick = |want: bool| -> (Vec<&Features>, Vec<bool>) {
        is_eval
            .iter()
            .enumerate()
            .filter(|(_, &e)| e == want)
            .map(|(i, _)| (eval_rows[i], eval_labels.window.churned[i]))
            .unzip()
    };
    let (tr_rows, tr_y) = pick(false);
    let (ev_rows, ev_y) = pick(true);
    let (tr_raw, ev_raw) = (raw_matrix(&tr_rows), raw_matrix(&ev_rows));
    let model = ChurnModel::fit(params, &tr_raw, &tr_y, &window_name(c.t1, c.as_of))
        .context("churn model (customer split)")?;
    let select = |want: bool, v: &[f64]| -> Vec<f64> {
        (0..v.len())
            .filter(|&i| is_eval[i] == want)
            .map(|i| v[i])
            .collect()
    };
    let (value_model, value_baseline) = value_metrics(
        &tr_raw,
        &select(false, &eval_labels.window.spend),
        &ev_raw,
        &select(true, &eval_labels.window.spend),
        &select(true, &eval_labels.prior_net_spend),
    )?;
    let p = model.predict(&ev_raw)?;
    let recency: Vec<f64> = ev_rows
        .iter()
        .map(|r| r.recency_days.unwrap_or(0.0))
        .collect();
    Ok(Evaluation {
        scheme: "customer_split",
        train_cutoff: c.t1,
        train_labels_until: c.as_of,
        eval_cutoff: c.t1,
        eval_labels_until: c.as_of,
        train_customers: tr_rows.len(),
        eval_customers: ev_rows.len(),
        train_churn_rate: rate(&tr_y),
        eval_churn_rate: rate(&ev_y),
        fallback_reason: Some(reason),
        alpha_selection: None,
        model: ChurnScores::new("logistic", &p, &ev_y, true),
        baseline: ChurnScores::new("recency", &recency, &ev_y, false),
        value_model,
        value_baseline,
        eval_scores: (p, recency, ev_y),
    })
}

/// Out-of-time evaluation of the BTYD models: fitted on the history before `t1`, predicting
/// the holdout `[t1, as_of)` of the customers who had bought before `t1`.
fn evaluate_btyd(eval: &Population<'_>, c: &Cutoffs, config: &Config) -> Result<BtydEvaluation> {
    let l = &eval.labels.window;
    let rows = &eval.rows;
    let model =
        ValueModel::fit(&rows, &config.btyd).context("BTYD model (calibration before t1)")?;
    let h = f64::from(c.horizon_days);
    // Per customer, independent: in parallel, collected in row order.
    let scores: Vec<_> = rows.par_iter().map(|f| model.score(f, h)).collect();
    let expected: Vec<f64> = scores.iter().map(|s| s.expected_purchases).collect();
    let actual: Vec<f64> = l.purchase_days.iter().map(|&d| d as f64).collect();
    let spend: Vec<f64> = scores
        .iter()
        .map(|s| s.expected_purchases * s.expected_order_value)
        .collect();
    let buys_again: Vec<bool> = l.churned.iter().map(|c| !c).collect();
    Ok(BtydEvaluation {
        model: model.fit.used.clone(),
        fit: model.fit.clone(),
        calibration_end: c.t1,
        holdout_until: c.as_of,
        customers: rows.len(),
        params: serde_json::to_value(model.transactions.params)?,
        log_likelihood: model.transactions.log_likelihood,
        holdout_purchases_mae: mae(&expected, &actual),
        predicted_total_purchases: expected.iter().sum(),
        actual_total_purchases: l.purchase_days.iter().sum(),
        buy_again_roc_auc: auc_or_nan(&expected, &buys_again),
        spend: ValueScoresMetrics::new("btyd_clv_undiscounted", &spend, &l.spend),
        spend_note: model.spend_note.clone(),
        churn: ChurnScores::new(
            "btyd_expected_purchases",
            &expected.iter().map(|e| -e).collect::<Vec<_>>(),
            &l.churned,
            false,
        ),
    })
}

/// FNV-1a of the customer id mixed with the seed: a platform-independent split.
fn split_hash(id: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
