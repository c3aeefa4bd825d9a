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

use std::time::Instant;

use chrono::NaiveDate;
use ndarray::Array2;
use rayon::prelude::*;

use crate::config::{ClassWeight, Config};
use crate::error::{Context, Error, Result};
use crate::evaluate::{log_loss, mae};
use crate::features::FeatureTable;
use crate::labels::Cutoffs;
use crate::models::btyd::Customer;
use crate::models::buy_again::{self, BuyAgainChurn, Reference};
use crate::models::churn::Design;
use crate::models::sample::{Detail, Sample};
use crate::models::spend_champion::SpendChampion;
use crate::models::value::{ValueInputs, ValueModel};
use crate::models::FORMAT_VERSION;
use crate::models::{ChurnModel, ChurnParams, ModelError, SavedModel, TrainingWindow};
use crate::stages::challengers::{self, BoostSelection, Challenger, Champion};
use crate::stages::metrics::{
    auc_or_nan, AlphaSelection, BtydEvaluation, ChurnMetrics, ChurnScores, Counts, CustomerSample,
    Evaluation, KpiMetrics, Metrics, ValueMetrics, ValueScoresMetrics,
};
use crate::stages::score::Summary;
use crate::stages::value_select::{self, ValueSelection};

mod evaluate;
use evaluate::{buy_again_validation, evaluate, evaluate_btyd};

/// What training reads, by date: the samples (buyers reduced to model inputs and labels) at
/// `tv`, `t0` and `t1`, and the value inputs of the buyers at as-of. `run` builds them from its
/// scan in one pass ([`crate::stages::features::Scanned::model_inputs`]), `train` from feature
/// tables ([`TrainingData::from_tables`]).
#[derive(Debug)]
pub struct TrainingData<'a> {
    /// `tv = as_of − 3H`: fits the L2 candidates. Without it, `churn.alpha` is used.
    pub tune: Option<Sample>,
    /// `t0 = as_of − 2H`: fits the model evaluated out of time (and validates the L2
    /// candidates). Without it, the evaluation is a customer split of the `t1` window.
    pub train: Option<Sample>,
    /// `t1 = as_of − H`: the out-of-time evaluation, the BTYD holdout and the final churn fit.
    /// Must carry the prior window's spend.
    pub validate: Sample,
    /// The ids `validate`'s customers are positions in (the customer-split fallback hashes
    /// them).
    pub ids: &'a [Box<str>],
    /// As-of: the buyers' value inputs, which the final BTYD and Gamma-Gamma models are
    /// fitted on.
    pub latest: Vec<ValueInputs>,
    /// The samples hold a deterministic share of the customers (recorded in the metrics).
    pub customer_sample: Option<CustomerSample>,
}

impl<'a> TrainingData<'a> {
    /// From labelled feature tables at `tv` (optional), `t0` (optional) and `t1`, and the
    /// as-of table.
    pub fn from_tables(
        tune: Option<&FeatureTable>,
        train: Option<&FeatureTable>,
        validate: &'a FeatureTable,
        latest: &FeatureTable,
    ) -> Result<TrainingData<'a>> {
        let sample = |t: &FeatureTable, role: &str| {
            Sample::from_table(t).ok_or_else(|| {
                Error::Internal(format!(
                    "the {role} table at {} has no label columns",
                    t.cutoff
                ))
            })
        };
        Ok(TrainingData {
            tune: tune.map(|t| sample(t, "tune")).transpose()?,
            train: train.map(|t| sample(t, "train")).transpose()?,
            validate: sample(validate, "validate")?,
            ids: &validate.customer_ids,
            latest: latest.rows.iter().filter_map(ValueInputs::of).collect(),
            customer_sample: None,
        })
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
    /// How the value champion was chosen on the validation window.
    pub value_selection: ValueSelection,
    /// The supervised spend model that scores CLV, when it won (`None`: BTYD × Gamma-Gamma).
    pub spend: Option<SpendChampion>,
    /// The churn model that scores (logistic or boosted) and how it was chosen.
    pub champion: Champion,
    pub booster: BoostSelection,
}

fn boost_error(e: crate::models::boost::BoostError) -> Error {
    Error::Internal(format!("boosted churn model: {e}"))
}

/// Fits and evaluates on `data`, dropping each sample once read. `min_auc`: the quality gate
/// (exit 3 when the out-of-time ROC-AUC is below it, checked before the final fits).
pub fn train(
    data: TrainingData<'_>,
    cutoffs: Cutoffs,
    config: &Config,
    min_auc: Option<f64>,
) -> Result<Trained> {
    let c = &cutoffs;
    let params = ChurnParams {
        alpha: config.churn.alpha,
        max_iterations: config.churn.max_iterations,
        timeout_seconds: config.churn.timeout_seconds,
        balanced: config.churn.class_weight == ClassWeight::Balanced,
    };
    let TrainingData {
        tune,
        train: train_sample,
        validate: eval,
        ids,
        latest,
        customer_sample,
    } = data;
    // Three fits that share nothing run side by side: the value champion's selection and the
    // booster's rounds (both on the tv -> t0 validation design), and the final BTYD /
    // Gamma-Gamma fit on the history before as-of. Its warnings are held until the churn
    // evaluation has succeeded, so a run that fails there prints its one error line.
    let selecting = Instant::now();
    let ((mut value_selection, booster), final_value) = rayon::join(
        || {
            rayon::join(
                || value_select::select(tune.as_ref(), train_sample.as_ref(), c, config),
                || {
                    challengers::select_booster(
                        tune.as_ref(),
                        train_sample.as_ref(),
                        config.run.min_train_customers,
                    )
                },
            )
        },
        || {
            let t = Instant::now();
            let fitted = ValueModel::fit_with_warnings(&latest, &config.btyd)
                .context("BTYD model (history before as-of)");
            (fitted, t.elapsed())
        },
    );
    tracing::info!(
        stage = "evaluate",
        value_champion = value_selection.chosen,
        duration_ms = selecting.elapsed().as_millis() as u64,
        "value champion on the validation window: {}",
        value_selection.chosen
    );
    let booster = booster.map_err(boost_error)?;
    tracing::info!(
        stage = "evaluate",
        scheme = booster.scheme,
        rounds = booster.rounds,
        duration_ms = booster.duration_ms,
        "booster: {} rounds chosen on the validation window",
        booster.rounds
    );
    // The BTYD buy-again score on the validation window: the value selection's BTYD fit on
    // the validation customers' history before t0, their labels in [t0, t1).
    let buy_again_validation = buy_again_validation(&value_selection, train_sample.as_ref(), c);
    let t = Instant::now();
    let validation_customers = train_sample.as_ref().map_or(0, Sample::len);
    let selection = choose_alpha(tune, train_sample.as_ref(), c, config, params);
    let logistic_validation_loss = (selection.scheme == "time_ordered")
        .then(|| {
            selection
                .grid
                .iter()
                .find(|g| g.0 == selection.chosen)
                .map(|g| g.1)
        })
        .flatten();
    let params = ChurnParams {
        alpha: selection.chosen,
        ..params
    };
    let Some(detail) = &eval.detail else {
        return Err(Error::Internal(
            "the validation sample has no evaluation columns".into(),
        ));
    };
    let mut evaluation = evaluate(
        train_sample,
        &eval,
        ids,
        c,
        config,
        params,
        &value_selection,
        &booster,
    )?;
    if let Some(l) = evaluation.challengers.first_mut() {
        l.validation_log_loss = logistic_validation_loss;
    }
    evaluation.alpha_selection = Some(selection);
    evaluation.customer_sample = customer_sample;
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
    let mut warnings = Vec::new();
    let btyd = evaluate_btyd(
        &eval,
        detail,
        evaluation.eval_rows.as_deref(),
        c,
        config,
        &mut warnings,
    );
    // The held warnings, in the order the fits ran one after another before: the holdout fit's,
    // then the final fit's.
    let (final_value, value_took) = final_value;
    let final_value = final_value.map(|(m, w)| {
        warnings.extend(w);
        m
    });
    for w in warnings {
        tracing::warn!(stage = "evaluate", "{w}");
    }
    let btyd = btyd?;
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
    let mut buy_again = Challenger::new(
        "btyd_buy_again",
        btyd.churn_probability.clone(),
        &evaluation.resampled_logistic,
        &evaluation.eval_scores.2,
        buy_again_validation.ok(),
    );
    buy_again.not_eligible = buy_again_validation.err();
    evaluation.challengers.push(buy_again);
    let mut champion = challengers::choose(
        logistic_validation_loss,
        &booster,
        buy_again_validation.ok(),
        validation_customers,
    );
    // The buy-again champion scores with the final BTYD fit (before as-of), which may have
    // fallen back to Pareto/NBD, without a closed-form P(no purchase): then the logistic model
    // scores (decided before the quality gate, which checks the model that scores).
    if let (Ok(m), "btyd_buy_again") = (&final_value, champion.name) {
        let closed_form = m
            .transactions
            .p_no_purchase(&Customer::new(0.0, 0.0, 1.0), 1.0)
            .is_some();
        if !closed_form {
            tracing::warn!(
                stage = "evaluate",
                "the BTYD buy-again score won on the validation window, but the final BTYD fit is {}: the logistic model scores",
                m.fit.used
            );
            champion = Champion {
                name: "logistic",
                chosen_by: "logistic_final_btyd_fit_pnbd",
            };
        }
    }
    let champion_auc = evaluation
        .challengers
        .iter()
        .find(|ch| ch.scores.name == champion.name)
        .map_or(evaluation.model.roc_auc, |ch| ch.scores.roc_auc);
    if let Some(min) = min_auc {
        if champion_auc < min {
            return Err(Error::QualityGate(format!(
                "churn ROC-AUC {champion_auc:.4} is below --min-auc {min}; nothing published"
            )));
        }
    }

    // Refit on the latest labelled window (the value models were fitted above, beside the
    // selections, on the history before as-of).
    let t = Instant::now();
    let window = window_name(c.t1, c.as_of);
    if eval.is_empty() {
        return Err(ModelError::Empty { window }.into());
    }
    // The final booster (when it is the champion) beside the final linear fits, as above.
    let linear = |x: Array2<f64>, selection: &mut ValueSelection| -> Result<_> {
        let design = Design::from_logged(x).context("final churn model")?;
        let churn = ChurnModel::fit_design(params, &design, &eval.churned, &window, None)
            .context("final churn model")?;
        let spend = value_select::final_fit(selection, &design, &eval.spend);
        Ok((churn, spend))
    };
    let (boosted, linear) = match champion.name {
        "boosted" => {
            let (b, l) = rayon::join(
                || challengers::fit_boosted(&booster, &eval.x, &eval.churned),
                || linear(eval.x.clone(), &mut value_selection),
            );
            (Some(b.map_err(boost_error)?), l)
        }
        _ => (None, linear(eval.x, &mut value_selection)),
    };
    let (mut churn, spend) = linear?;
    churn.boosted = boosted;
    let value = final_value?;
    if champion.name == "btyd_buy_again" {
        // The final BTYD fit (before as-of) scores (its kind was checked before the gate).
        churn.btyd_buy_again = Some(BuyAgainChurn {
            reference: Reference::of(&latest),
        });
    }
    tracing::info!(
        stage = "final fits",
        duration_ms = (t.elapsed() + value_took).as_millis() as u64,
        "churn refitted at {}, {} on the history before {}",
        c.t1,
        value.fit.used,
        c.as_of
    );
    Ok(Trained {
        cutoffs,
        evaluation,
        btyd,
        churn,
        value,
        value_selection,
        spend,
        champion,
        booster,
    })
}

impl Trained {
    /// `metrics.json`: the training sections, and with `scored` (the as-of table scored with
    /// these models, and the counts) the tiers, KPIs and counts.
    pub fn metrics<'a>(
        &'a self,
        run_id: &str,
        scored: Option<(&'a Summary, Counts)>,
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
                champion: &self.champion,
                booster: &self.booster,
                challengers: &e.challengers,
            },
            value: ValueMetrics {
                model: &e.value_model,
                baseline: &e.value_baseline,
                btyd: &self.btyd,
                btyd_final_fit: &self.value.fit,
                selection: &self.value_selection,
                challengers: &e.value_challengers,
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
            value_spend: self.spend.clone(),
            metrics: serde_json::to_value(metrics)?,
        })
    }
}

fn window_name(from: NaiveDate, until: NaiveDate) -> String {
    format!("window [{from}, {until})")
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
    let (Some(tune), Some(val)) = (tune, train) else {
        return fixed(format!(
            "no labelled tables at {} and {} to choose it on",
            c.tv, c.t0
        ));
    };
    if tune.len() < config.run.min_train_customers || val.is_empty() {
        return fixed(format!(
            "{} customers bought before {} (min_train_customers {})",
            tune.len(),
            c.tv,
            config.run.min_train_customers
        ));
    }
    // One design for every candidate (same customers, same scaling; the sample's rows are
    // standardised in place), and the validation rows standardised once with that scaling.
    // Candidates are fitted one after another in grid order, each from the previous optimum
    // (a warm start: fewer Newton passes; each pass is parallel over rows, and the optimum
    // does not depend on the start).
    let Sample {
        x: fit,
        churned: fit_labels,
        ..
    } = tune;
    let scaled = Design::from_logged(fit).and_then(|design| {
        let zv = design.standardise_logged(&val.x)?;
        Ok((design, zv))
    });
    let (design, zv) = match scaled {
        Ok(d) => d,
        Err(e) => return fixed(format!("validation fit failed: {e}")),
    };
    let mut grid = Vec::new();
    let mut previous: Option<ChurnModel> = None;
    for &alpha in &config.churn.alpha_grid {
        let p = ChurnParams { alpha, ..params };
        let window = window_name(c.tv, c.t0);
        match ChurnModel::fit_design(p, &design, &fit_labels, &window, previous.as_ref()) {
            Ok(m) => {
                let pred = m.predict_standardised(&zv);
                grid.push((alpha, log_loss(&pred, &val.churned)));
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
