//! `churnclv run`: the nightly job, end to end.
//!
//! Two stages, as in ripgrep: the arguments and config are first turned into a checked
//! [`Plan`] (inputs opened and their columns resolved, windows computed, output folder
//! creatable) before any row is read; then the pipeline runs stage by stage and publishes one
//! complete partition, or nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use churnclv::config::{parse_date, ClassWeight, Config, Horizon};
use churnclv::evaluate::{
    brier, calibration, decile_table, lift_capture, log_loss, mae, normalized_gini, pr_auc, rmse,
    roc_auc, spearman, CalibrationBin, Decile,
};
use churnclv::features::features_schema;
use churnclv::features::Histories;
use churnclv::io::output::{write_bytes, write_json, write_parquet_direct, ParquetOptions};
use churnclv::io::read::rejects_schema;
use churnclv::io::{target, InputSet, ReadOptions, RunLock, ScanStats};
use churnclv::labels::{labels, Cutoffs, AS_OF, T0, T1, TV};
use churnclv::models::churn::{raw_matrix, FEATURES};
use churnclv::models::spend::SpendModel;
use churnclv::models::value::ValueModel;
use churnclv::models::{ChurnModel, ChurnParams, SavedModel, TrainingWindow, FORMAT_VERSION};
use churnclv::report::{render, Ranking, ReportData};
use churnclv::score::{apply_models, model_version, scores_schema, Kpis, TierStats};

use super::features_parquet_options;
use super::progress::Progress;
use super::{
    horizon_days, input_entries, output_entries, output_schemas, read_options, resolve_as_of,
    scan_histories, ColumnDesc, InputArgs, InputEntry, OutputFile, QualityGate, Scanned,
    UsageError,
};

/// Read events, build features, train and evaluate the churn model out of time, score every
/// customer as of --as-of, and publish DIR/as_of=YYYY-MM-DD/ (scores.parquet,
/// features.parquet, rejects.parquet, metrics.json, model.json, manifest.json, _SUCCESS)
/// through a temporary folder renamed into place. A failed run leaves the previous output as
/// it was.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output root; the run writes DIR/as_of=YYYY-MM-DD/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Scoring date (YYYY-MM-DD): features use events before it, predictions cover
    /// [as_of, as_of + horizon). Default: the day after the last event.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Prediction horizon H: 90d, 13w or a number of days. Default 90d (config run.horizon).
    #[arg(long, value_name = "H")]
    pub horizon: Option<String>,
    /// Quality gate: if the out-of-time churn ROC-AUC is below this, exit 3 and publish
    /// nothing.
    #[arg(long, value_name = "X")]
    pub min_auc: Option<f64>,
    /// Also keep a copy of the fitted model as MODELS/<run_id>/model.json (e.g. --save-model
    /// models), for `churnclv score --model` later.
    #[arg(long, value_name = "MODELS")]
    pub save_model: Option<PathBuf>,
}

/// Everything checked before the heavy work.
struct Plan {
    inputs: InputSet,
    out: PathBuf,
    cutoffs: Cutoffs,
    config: Config,
    read: ReadOptions,
    min_auc: Option<f64>,
    run_id: String,
}

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let mut config = args.input.config()?;
    let horizon = horizon_days(args.horizon.as_deref(), &config)?;
    config.run.horizon = Horizon::from_days(horizon)?;
    let types = config.validate()?;
    target::check_folder("--out", &args.out)?;
    if let Some(models) = &args.save_model {
        target::check_folder("--save-model", models)?;
    }
    if let Some(x) = args.min_auc {
        if !(0.0..=1.0).contains(&x) {
            return Err(UsageError(format!("--min-auc must be between 0 and 1, got {x}")).into());
        }
    }
    if let Some(d) = &args.as_of {
        parse_date(d).context("--as-of")?; // a bad flag fails before any file is opened
    }
    let inputs = args.input.open(&config)?;
    let as_of = resolve_as_of(&inputs, args.as_of.as_deref(), &config)?;
    target::create_folder("--out", &args.out, &args.out)?;
    let cutoffs = Cutoffs::new(as_of, horizon);
    let read = read_options(&config, types, cutoffs.as_us()[AS_OF], args.as_of.is_some());
    let run_id = run_id(&inputs, &config, &cutoffs);
    Ok(Plan {
        inputs,
        out: args.out.clone(),
        cutoffs,
        config,
        read,
        min_auc: args.min_auc,
        run_id,
    })
}

/// A run id that depends only on what determines the output (inputs, config, windows,
/// version), so a rerun of the same job has the same id and writes identical files.
fn run_id(inputs: &InputSet, config: &Config, cutoffs: &Cutoffs) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(serde_json::to_string(config).unwrap_or_default());
    h.update(cutoffs.as_of.to_string());
    h.update(cutoffs.horizon_days.to_le_bytes());
    // Canonical paths: `./x`, `x`, an absolute path or a link to it name the same run.
    for f in &inputs.files {
        h.update(f.canonical.display().to_string());
        h.update(f.bytes.to_le_bytes());
        h.update(f.rows.to_le_bytes());
    }
    let hex: String = h
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}-{hex}", cutoffs.as_of.format("%Y%m%d"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let plan = plan(&args)?;
    let lock = RunLock::acquire(&plan.out)?;
    lock.recover()?;
    let c = plan.cutoffs;
    tracing::info!(
        stage = "plan",
        run_id = %plan.run_id,
        files = plan.inputs.files.len(),
        rows = plan.inputs.rows(),
        as_of = %c.as_of,
        horizon_days = c.horizon_days,
        "t0 {} / t1 {} / as_of {}",
        c.t0,
        c.t1,
        c.as_of
    );

    // io + features: one scan, three cutoffs.
    let mut progress = Progress::stages(4);
    progress.stage("features: reading events");
    let cut_us = c.as_us();
    let Scanned {
        histories,
        stats,
        rejects,
    } = scan_histories(&plan.inputs, &plan.read, &cut_us)?;

    // labels + models + evaluate.
    progress.stage("evaluate: training and evaluating out of time");
    let t = Instant::now();
    let params = ChurnParams {
        alpha: plan.config.churn.alpha,
        max_iterations: plan.config.churn.max_iterations,
        timeout_seconds: plan.config.churn.timeout_seconds,
        balanced: plan.config.churn.class_weight == ClassWeight::Balanced,
    };
    let selection = choose_alpha(&histories, &c, &plan.config, params);
    let params = ChurnParams {
        alpha: selection.chosen,
        ..params
    };
    let mut evaluation = evaluate(&histories, &c, &plan.config, params)?;
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
    let btyd_eval = evaluate_btyd(&histories, &c, &plan.config)?;
    tracing::info!(
        stage = "evaluate",
        model = %btyd_eval.model,
        holdout_purchases_mae = btyd_eval.holdout_purchases_mae,
        buy_again_roc_auc = btyd_eval.buy_again_roc_auc,
        duration_ms = t.elapsed().as_millis() as u64,
        "BTYD holdout: {:.0} purchases predicted, {} actual",
        btyd_eval.predicted_total_purchases,
        btyd_eval.actual_total_purchases
    );
    if let Some(min) = plan.min_auc {
        if evaluation.model.roc_auc < min {
            return Err(QualityGate(format!(
                "churn ROC-AUC {:.4} is below --min-auc {min}; nothing published",
                evaluation.model.roc_auc
            ))
            .into());
        }
    }

    // Refit on the latest labelled window and score as of as_of.
    progress.stage("score: fitting the final models and scoring");
    let t = Instant::now();
    let fit_set = histories.features(T1).purchasers();
    let fit_labels = labels(&histories, &fit_set, T1);
    let model = ChurnModel::fit(
        params,
        &raw_matrix(&fit_set.rows.iter().collect::<Vec<_>>()),
        &fit_labels.churned,
        &window_name(c.t1, c.as_of),
    )
    .context("final churn model")?;
    let score_set = histories.features(AS_OF);
    let buyer_rows: Vec<&churnclv::features::Features> =
        score_set.rows.iter().filter(|f| f.has_purchase()).collect();
    let buyers = buyer_rows.len();
    let value_model = ValueModel::fit(&buyer_rows, &plan.config.btyd)
        .context("BTYD model (history before as-of)")?;
    let scoring = apply_models(
        &score_set,
        c.as_of,
        &model,
        &value_model,
        c.horizon_days,
        &plan.config.tiers,
        &model_version(&plan.run_id),
        &plan.run_id,
    )?;
    let scores = scoring.table;
    let features = score_set.to_record_batch()?;
    tracing::info!(
        stage = "score",
        customers = score_set.rows.len(),
        with_probability = buyers,
        duration_ms = t.elapsed().as_millis() as u64,
        "scored"
    );

    // Publish.
    progress.stage("publish: writing the partition");
    let t = Instant::now();
    let partition = format!("as_of={}", c.as_of);
    let staging = lock.stage(&partition, &plan.run_id)?;
    let mut outputs = Vec::new();
    let opts = ParquetOptions::default();
    let scored = write_parquet_direct(
        &staging.path("scores.parquet"),
        scores_schema(),
        &[scores],
        &opts,
    )?;
    outputs.push(("scores.parquet", scored));
    let fopts = features_parquet_options(c.as_of);
    let n = write_parquet_direct(
        &staging.path("features.parquet"),
        features_schema(),
        &[features],
        &fopts,
    )?;
    outputs.push(("features.parquet", n));
    let n = write_parquet_direct(
        &staging.path("rejects.parquet"),
        rejects_schema(),
        &rejects,
        &opts,
    )?;
    outputs.push(("rejects.parquet", n));
    let final_fit = value_model.fit.clone();
    let metrics = Metrics {
        run_id: plan.run_id.clone(),
        crate_version: env!("CARGO_PKG_VERSION"),
        as_of: c.as_of,
        horizon_days: c.horizon_days,
        evaluation: &evaluation,
        churn: ChurnMetrics {
            model: &evaluation.model,
            baseline: &evaluation.baseline,
            btyd: Some(&btyd_eval.churn),
        },
        tiers: &scoring.tiers,
        kpis: KpiMetrics {
            observed_churn_rate_last_window: evaluation.eval_churn_rate,
            run: &scoring.kpis,
            by_tier: &scoring.kpis_by_tier,
        },
        value: ValueMetrics {
            model: &evaluation.value_model,
            baseline: &evaluation.value_baseline,
            btyd: &btyd_eval,
            btyd_final_fit: &final_fit,
        },
        counts: Counts {
            customers_scored: score_set.rows.len(),
            customers_with_churn_probability: buyers,
            rows_read: stats.rows_read,
            rows_used: stats.rows_used,
            rows_rejected: stats.rows_rejected,
        },
    };
    write_json(&staging.path("metrics.json"), &metrics)?;
    let page = report(&metrics, &evaluation, &btyd_eval, &model)?;
    write_bytes(&staging.path("report.html"), page.as_bytes())?;
    let model_file = SavedModel {
        format_version: FORMAT_VERSION,
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        run_id: plan.run_id.clone(),
        horizon_days: c.horizon_days,
        trained_on: TrainingWindow {
            features_before: c.t1,
            labels_from: c.t1,
            labels_until: c.as_of,
        },
        scores_as_of: c.as_of,
        churn: model,
        value: value_model,
        metrics: serde_json::to_value(&metrics)?,
    };
    write_json(&staging.path("model.json"), &model_file)?;
    let files = output_entries(
        &staging,
        &[
            "scores.parquet",
            "features.parquet",
            "rejects.parquet",
            "metrics.json",
            "model.json",
            "report.html",
        ],
        &outputs,
    )?;
    let manifest = Manifest {
        run_id: &plan.run_id,
        crate_version: env!("CARGO_PKG_VERSION"),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        as_of: c.as_of,
        cutoffs: c,
        inputs: input_entries(&plan.inputs),
        inputs_skipped: &plan.inputs.skipped,
        rows: &stats,
        config: &plan.config,
        outputs: files,
        schema: output_schemas(),
    };
    write_json(&staging.path("manifest.json"), &manifest)?;
    let target = staging.publish()?;
    if let Some(dir) = &args.save_model {
        let copy_dir = dir.join(&plan.run_id);
        std::fs::create_dir_all(&copy_dir)
            .with_context(|| format!("--save-model {}", copy_dir.display()))?;
        let tmp = copy_dir.join(".model.json.tmp");
        churnclv::io::output::write_bytes(
            &tmp,
            &std::fs::read(target.join("model.json"))
                .with_context(|| format!("{}", target.display()))?,
        )?;
        std::fs::rename(&tmp, copy_dir.join("model.json"))
            .with_context(|| format!("--save-model {}", copy_dir.display()))?;
        tracing::info!(
            stage = "publish",
            "model saved to {}",
            copy_dir.join("model.json").display()
        );
    }
    tracing::info!(
        stage = "publish",
        duration_ms = t.elapsed().as_millis() as u64,
        "published {}",
        target.display()
    );
    progress.finish();

    print_summary(&target, &plan, &stats, &metrics, started);
    Ok(())
}

fn window_name(from: NaiveDate, until: NaiveDate) -> String {
    format!("window [{from}, {until})")
}

/// Out-of-time evaluation (or the customer-split fallback).
#[derive(Debug, Serialize)]
struct Evaluation {
    scheme: &'static str,
    train_cutoff: NaiveDate,
    train_labels_until: NaiveDate,
    eval_cutoff: NaiveDate,
    eval_labels_until: NaiveDate,
    train_customers: usize,
    eval_customers: usize,
    train_churn_rate: f64,
    eval_churn_rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback_reason: Option<String>,
    /// How the churn model's L2 strength was chosen.
    alpha_selection: Option<AlphaSelection>,
    /// Reported under `churn` in metrics.json.
    #[serde(skip)]
    model: ChurnScores,
    #[serde(skip)]
    baseline: ChurnScores,
    /// Reported under `value` in metrics.json.
    #[serde(skip)]
    value_model: ValueScoresMetrics,
    #[serde(skip)]
    value_baseline: ValueScoresMetrics,
    /// Churn model and recency scores with the labels of the evaluation customers (plots).
    #[serde(skip)]
    eval_scores: (Vec<f64>, Vec<f64>, Vec<bool>),
}

/// The L2 strength chosen by time-ordered validation.
#[derive(Debug, Serialize)]
struct AlphaSelection {
    chosen: f64,
    /// `time_ordered`: fitted on features before tv with labels [tv, t0), validated on
    /// features before t0 with labels [t0, t1); `config`: churn.alpha as configured.
    scheme: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// (alpha, validation log loss) for every candidate tried.
    grid: Vec<(f64, f64)>,
}

fn choose_alpha(
    histories: &Histories,
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
    let fit = histories.features(TV).purchasers();
    let fit_labels = labels(histories, &fit, TV);
    let val = histories.features(T0).purchasers();
    let val_labels = labels(histories, &val, T0);
    if fit.rows.len() < config.run.min_train_customers || val.rows.is_empty() {
        return fixed(format!(
            "{} customers bought before {} (min_train_customers {})",
            fit.rows.len(),
            c.tv,
            config.run.min_train_customers
        ));
    }
    let x = raw_matrix(&fit.rows.iter().collect::<Vec<_>>());
    let xv = raw_matrix(&val.rows.iter().collect::<Vec<_>>());
    // Candidates are independent: fitted in parallel, collected in grid order.
    let fits: Vec<Result<(f64, f64), String>> = config
        .churn
        .alpha_grid
        .par_iter()
        .map(|&alpha| {
            let p = ChurnParams { alpha, ..params };
            ChurnModel::fit(p, &x, &fit_labels.churned, &window_name(c.tv, c.t0))
                .and_then(|m| m.predict(&xv))
                .map(|pred| (alpha, log_loss(&pred, &val_labels.churned)))
                .map_err(|e| e.to_string())
        })
        .collect();
    let mut grid = Vec::new();
    for f in fits {
        match f {
            Ok(g) => grid.push(g),
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
    train: &[&churnclv::features::Features],
    train_spend: &[f64],
    eval: &[&churnclv::features::Features],
    eval_spend: &[f64],
    eval_last_spend: &[f64],
) -> anyhow::Result<(ValueScoresMetrics, ValueScoresMetrics)> {
    let model = SpendModel::fit(&raw_matrix(train), train_spend).context("spend model")?;
    let predicted = model.predict(&raw_matrix(eval))?;
    Ok((
        ValueScoresMetrics::new("log1p_ols", &predicted, eval_spend),
        ValueScoresMetrics::new("last_window_spend", eval_last_spend, eval_spend),
    ))
}

#[derive(Debug, Serialize)]
struct ChurnScores {
    name: &'static str,
    roc_auc: f64,
    pr_auc: f64,
    lift_top_decile: f64,
    capture_top_decile: f64,
    /// Probability metrics: only for scores that are probabilities (not the recency rank).
    #[serde(skip_serializing_if = "Option::is_none")]
    log_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    brier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calibration: Option<Vec<CalibrationBin>>,
}

impl ChurnScores {
    /// Metrics of `scores` (higher = more likely to churn) against `churned`.
    fn new(
        name: &'static str,
        scores: &[f64],
        churned: &[bool],
        probabilities: bool,
    ) -> ChurnScores {
        let (lift, capture) = lift_capture(scores, churned, 0.1).unwrap_or((f64::NAN, f64::NAN));
        ChurnScores {
            name,
            roc_auc: auc_or_nan(scores, churned),
            pr_auc: pr_auc(scores, churned).unwrap_or(f64::NAN),
            lift_top_decile: lift,
            capture_top_decile: capture,
            log_loss: probabilities.then(|| log_loss(scores, churned)),
            brier: probabilities.then(|| brier(scores, churned)),
            calibration: probabilities.then(|| calibration(scores, churned, 10)),
        }
    }
}

fn evaluate(
    histories: &Histories,
    c: &Cutoffs,
    config: &Config,
    params: ChurnParams,
) -> anyhow::Result<Evaluation> {
    let train = histories.features(T0).purchasers();
    let train_labels = labels(histories, &train, T0);
    let eval = histories.features(T1).purchasers();
    let eval_labels = labels(histories, &eval, T1);
    let rate = |l: &[bool]| {
        if l.is_empty() {
            0.0
        } else {
            l.iter().filter(|&&x| x).count() as f64 / l.len() as f64
        }
    };
    let one_class = |l: &[bool]| l.iter().all(|&x| x) || l.iter().all(|&x| !x);
    if eval.rows.is_empty() {
        return Err(churnclv::models::ModelError::Empty {
            window: window_name(c.t1, c.as_of),
        }
        .into());
    }
    let eval_rows: Vec<_> = eval.rows.iter().collect();
    let fallback = if train.rows.len() < config.run.min_train_customers {
        Some(format!(
            "{} customers bought before {} (min_train_customers {})",
            train.rows.len(),
            c.t0,
            config.run.min_train_customers
        ))
    } else if one_class(&train_labels.churned) {
        Some(format!("one churn class in [{}, {})", c.t0, c.t1))
    } else {
        None
    };
    if let Some(reason) = fallback {
        // History shorter than two horizons: a seeded 80/20 customer split in the t1 window.
        let is_eval: Vec<bool> = eval
            .customer_ids
            .iter()
            .map(|id| split_hash(id, config.run.seed) % 5 == 0)
            .collect();
        let pick = |want: bool| -> (Vec<&churnclv::features::Features>, Vec<bool>) {
            is_eval
                .iter()
                .enumerate()
                .filter(|(_, &e)| e == want)
                .map(|(i, _)| (eval_rows[i], eval_labels.churned[i]))
                .unzip()
        };
        let (tr_rows, tr_y) = pick(false);
        let (ev_rows, ev_y) = pick(true);
        let model = ChurnModel::fit(
            params,
            &raw_matrix(&tr_rows),
            &tr_y,
            &window_name(c.t1, c.as_of),
        )
        .context("churn model (customer split)")?;
        let select = |want: bool, v: &[f64]| -> Vec<f64> {
            (0..v.len())
                .filter(|&i| is_eval[i] == want)
                .map(|i| v[i])
                .collect()
        };
        let last_spend: Vec<f64> = eval
            .index
            .iter()
            .map(|&i| histories.customer(i).segment(T1).net_spend())
            .collect();
        let (value_model, value_baseline) = value_metrics(
            &tr_rows,
            &select(false, &eval_labels.spend),
            &ev_rows,
            &select(true, &eval_labels.spend),
            &select(true, &last_spend),
        )?;

        let p = model.predict(&raw_matrix(&ev_rows))?;
        let recency: Vec<f64> = ev_rows
            .iter()
            .map(|r| r.recency_days.unwrap_or(0.0))
            .collect();
        return Ok(Evaluation {
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
        });
    }
    let model = ChurnModel::fit(
        params,
        &raw_matrix(&train.rows.iter().collect::<Vec<_>>()),
        &train_labels.churned,
        &window_name(c.t0, c.t1),
    )
    .context("churn model (out of time)")?;
    let p = model.predict(&raw_matrix(&eval_rows))?;
    let last_spend: Vec<f64> = eval
        .index
        .iter()
        .map(|&i| histories.customer(i).segment(T1).net_spend())
        .collect();
    let (value_model, value_baseline) = value_metrics(
        &train.rows.iter().collect::<Vec<_>>(),
        &train_labels.spend,
        &eval_rows,
        &eval_labels.spend,
        &last_spend,
    )?;
    let recency: Vec<f64> = eval
        .rows
        .iter()
        .map(|r| r.recency_days.unwrap_or(0.0))
        .collect();
    Ok(Evaluation {
        scheme: "out_of_time",
        train_cutoff: c.t0,
        train_labels_until: c.t1,
        eval_cutoff: c.t1,
        eval_labels_until: c.as_of,
        train_customers: train.rows.len(),
        eval_customers: eval.rows.len(),
        train_churn_rate: rate(&train_labels.churned),
        eval_churn_rate: rate(&eval_labels.churned),
        fallback_reason: None,
        alpha_selection: None,
        model: ChurnScores::new("logistic", &p, &eval_labels.churned, true),
        baseline: ChurnScores::new("recency", &recency, &eval_labels.churned, false),
        value_model,
        value_baseline,
        eval_scores: (p, recency, eval_labels.churned),
    })
}

/// Out-of-time evaluation of the BTYD models: fitted on history before t1, predicting the
/// holdout [t1, as_of) of the customers who had bought before t1 (the literature's
/// calibration/holdout design).
#[derive(Debug, Serialize)]
struct BtydEvaluation {
    /// The transaction model used (`fit.requested` unless a fallback was needed).
    model: String,
    /// How the calibration models were fitted: requested / used model, failed attempts.
    fit: churnclv::models::value::ValueFit,
    calibration_end: NaiveDate,
    holdout_until: NaiveDate,
    customers: usize,
    params: serde_json::Value,
    log_likelihood: f64,
    holdout_purchases_mae: f64,
    predicted_total_purchases: f64,
    actual_total_purchases: u64,
    buy_again_roc_auc: f64,
    /// Holdout net spend predicted as expected purchases × expected order value.
    spend: ValueScoresMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    spend_note: Option<String>,
    /// Churn as "no purchase in the holdout", ranked by −expected purchases.
    #[serde(skip)]
    churn: ChurnScores,
}

/// Metrics of a predicted H-window spend against the actual net spend.
#[derive(Debug, Serialize)]
struct ValueScoresMetrics {
    name: &'static str,
    mae: f64,
    rmse: f64,
    spearman: f64,
    gini: f64,
    predicted_total: f64,
    actual_total: f64,
    deciles: Vec<Decile>,
}

impl ValueScoresMetrics {
    fn new(name: &'static str, predicted: &[f64], actual: &[f64]) -> ValueScoresMetrics {
        ValueScoresMetrics {
            name,
            mae: mae(predicted, actual),
            rmse: rmse(predicted, actual),
            spearman: spearman(predicted, actual),
            gini: normalized_gini(predicted, actual),
            predicted_total: predicted.iter().sum(),
            actual_total: actual.iter().sum(),
            deciles: decile_table(predicted, actual),
        }
    }
}

fn evaluate_btyd(
    histories: &Histories,
    c: &Cutoffs,
    config: &Config,
) -> anyhow::Result<BtydEvaluation> {
    let set = histories.features(T1).purchasers();
    let l = labels(histories, &set, T1);
    let rows: Vec<&churnclv::features::Features> = set.rows.iter().collect();
    let model =
        ValueModel::fit(&rows, &config.btyd).context("BTYD model (calibration before t1)")?;
    let h = f64::from(c.horizon_days);
    let scores: Vec<_> = rows.iter().map(|f| model.score(f, h)).collect();
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

/// The run's report page.
fn report(
    m: &Metrics<'_>,
    e: &Evaluation,
    b: &BtydEvaluation,
    churn: &ChurnModel,
) -> anyhow::Result<String> {
    let (p, recency, churned) = &e.eval_scores;
    let f = |v: f64| format!("{v:.4}");
    let summary = vec![
        ("as of".to_string(), m.as_of.to_string()),
        ("horizon".to_string(), format!("{} days", m.horizon_days)),
        ("run id".to_string(), m.run_id.clone()),
        (
            "evaluation".to_string(),
            format!(
                "{} (train cutoff {}, evaluated on {} customers, labels [{}, {}))",
                e.scheme, e.train_cutoff, e.eval_customers, e.eval_cutoff, e.eval_labels_until
            ),
        ),
        (
            "churn ROC-AUC: model / recency baseline / BTYD".to_string(),
            format!(
                "{} / {} / {}",
                f(e.model.roc_auc),
                f(e.baseline.roc_auc),
                f(b.churn.roc_auc)
            ),
        ),
        (
            "churn PR-AUC: model / recency baseline".to_string(),
            format!("{} / {}", f(e.model.pr_auc), f(e.baseline.pr_auc)),
        ),
        (
            "lift at top decile: model / recency baseline".to_string(),
            format!(
                "{:.2} / {:.2}",
                e.model.lift_top_decile, e.baseline.lift_top_decile
            ),
        ),
        (
            "log loss / Brier".to_string(),
            format!(
                "{} / {}",
                e.model.log_loss.map_or("-".into(), f),
                e.model.brier.map_or("-".into(), f)
            ),
        ),
        (
            "BTYD holdout purchases: predicted / actual (MAE)".to_string(),
            format!(
                "{:.0} / {} ({:.3})",
                b.predicted_total_purchases, b.actual_total_purchases, b.holdout_purchases_mae
            ),
        ),
        (
            "value Gini: spend model / last-window baseline / BTYD".to_string(),
            format!(
                "{} / {} / {}",
                f(e.value_model.gini),
                f(e.value_baseline.gini),
                f(b.spend.gini)
            ),
        ),
        (
            "customers scored".to_string(),
            m.counts.customers_scored.to_string(),
        ),
        (
            "rows read / used / rejected".to_string(),
            format!(
                "{} / {} / {}",
                m.counts.rows_read, m.counts.rows_used, m.counts.rows_rejected
            ),
        ),
    ];
    let tiers: Vec<(&str, &TierStats)> = churnclv::segment::TIERS
        .iter()
        .filter_map(|(name, _)| m.tiers.get(name).map(|t| (*name, t)))
        .collect();
    let k = m.kpis.run;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let mut kpis = vec![
        ("customers".to_string(), k.customers.to_string()),
        (
            "repeat purchase rate".to_string(),
            pct(k.repeat_purchase_rate),
        ),
        (
            "average order value".to_string(),
            k.average_order_value
                .map_or("-".into(), |v| format!("{v:.2}")),
        ),
        (
            "cart abandonment rate".to_string(),
            pct(k.cart_abandonment_rate),
        ),
        (
            "observed churn rate, last window".to_string(),
            pct(Some(m.kpis.observed_churn_rate_last_window)),
        ),
        (
            "predicted churn rate, next window".to_string(),
            pct(k.predicted_churn_rate),
        ),
        (
            "total / mean predicted CLV".to_string(),
            format!(
                "{:.0} / {}",
                k.total_clv,
                k.mean_clv.map_or("-".into(), |v| format!("{v:.2}"))
            ),
        ),
    ];
    for (stage, n) in &k.customers_by_lifecycle_stage {
        kpis.push((format!("customers: {stage}"), n.to_string()));
    }
    let data = ReportData {
        kpis,
        title: format!("churnclv run as of {}", m.as_of),
        summary,
        rankings: vec![
            Ranking {
                name: "logistic model",
                scores: p,
                churned,
            },
            Ranking {
                name: "recency baseline",
                scores: recency,
                churned,
            },
        ],
        calibration: e.model.calibration.as_deref().unwrap_or(&[]),
        value_deciles: vec![
            ("spend model", &e.value_model.deciles),
            ("BTYD", &b.spend.deciles),
        ],
        coefficients: churn
            .features
            .iter()
            .zip(&churn.coefficients)
            .map(|(f, c)| (f.name.clone(), *c))
            .collect(),
        tiers,
    };
    Ok(render(&data)?)
}

fn auc_or_nan(scores: &[f64], labels: &[bool]) -> f64 {
    roc_auc(scores, labels).unwrap_or(f64::NAN)
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

#[derive(Serialize)]
struct Metrics<'a> {
    run_id: String,
    crate_version: &'static str,
    as_of: NaiveDate,
    horizon_days: u32,
    evaluation: &'a Evaluation,
    churn: ChurnMetrics<'a>,
    value: ValueMetrics<'a>,
    /// Engagement tiers of the scored customers: size, share, mean CLV and churn probability.
    tiers: &'a BTreeMap<&'static str, TierStats>,
    /// What the engagement teams track, for the run and per tier.
    kpis: KpiMetrics<'a>,
    counts: Counts,
}

#[derive(Serialize)]
struct KpiMetrics<'a> {
    /// Share of the evaluation customers who did not buy in the last window `[t1, as_of)`.
    observed_churn_rate_last_window: f64,
    run: &'a Kpis,
    by_tier: &'a BTreeMap<&'static str, Kpis>,
}

#[derive(Serialize)]
struct ChurnMetrics<'a> {
    model: &'a ChurnScores,
    baseline: &'a ChurnScores,
    /// Ranking customers by BTYD expected purchases ("buys again"): the same AUC as ranking
    /// churn by their negation.
    #[serde(skip_serializing_if = "Option::is_none")]
    btyd: Option<&'a ChurnScores>,
}

#[derive(Serialize)]
struct ValueMetrics<'a> {
    model: &'a ValueScoresMetrics,
    baseline: &'a ValueScoresMetrics,
    btyd: &'a BtydEvaluation,
    /// How the BTYD models used for scoring (history before as-of) were fitted.
    btyd_final_fit: &'a churnclv::models::value::ValueFit,
}

#[derive(Serialize)]
struct Counts {
    customers_scored: usize,
    customers_with_churn_probability: usize,
    rows_read: u64,
    rows_used: u64,
    rows_rejected: u64,
}

#[derive(Serialize)]
struct Manifest<'a> {
    run_id: &'a str,
    crate_version: &'static str,
    created_at: String,
    as_of: NaiveDate,
    cutoffs: Cutoffs,
    inputs: Vec<InputEntry>,
    /// Folder links not followed and second paths to a file already read.
    inputs_skipped: &'a [churnclv::io::input::Skipped],
    rows: &'a ScanStats,
    config: &'a Config,
    outputs: Vec<OutputFile>,
    schema: BTreeMap<&'static str, Vec<ColumnDesc>>,
}

fn print_summary(target: &Path, plan: &Plan, stats: &ScanStats, m: &Metrics<'_>, started: Instant) {
    println!("published {}", target.display());
    println!("  run id            {}", plan.run_id);
    println!(
        "  windows           train features < {}, labels [{}, {}); scored as of {} for {} days",
        m.evaluation.train_cutoff,
        m.evaluation.train_cutoff,
        m.evaluation.train_labels_until,
        m.as_of,
        m.horizon_days
    );
    println!(
        "  rows              {} read, {} used, {} rejected ({})",
        stats.rows_read,
        stats.rows_used,
        stats.rows_rejected,
        stats.reasons_line()
    );
    println!(
        "  customers scored  {} ({} with a churn probability)",
        m.counts.customers_scored, m.counts.customers_with_churn_probability
    );
    println!(
        "  churn ROC-AUC     {:.4} {} (recency baseline {:.4}) on {} customers",
        m.evaluation.model.roc_auc,
        m.evaluation.scheme.replace('_', "-"),
        m.evaluation.baseline.roc_auc,
        m.evaluation.eval_customers
    );
    let b = m.value.btyd;
    println!(
        "  BTYD ({}) holdout {:.0} purchases predicted vs {} actual, MAE {:.3}, buy-again AUC {:.4}",
        b.model, b.predicted_total_purchases, b.actual_total_purchases, b.holdout_purchases_mae, b.buy_again_roc_auc
    );
    let k = m.kpis.run;
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    println!(
        "  KPIs              repeat rate {}, AOV {}, cart abandonment {}, churn last window {:.1}% / predicted next {}, CLV total {:.0}",
        pct(k.repeat_purchase_rate),
        k.average_order_value.map_or("-".into(), |v| format!("{v:.2}")),
        pct(k.cart_abandonment_rate),
        100.0 * m.kpis.observed_churn_rate_last_window,
        pct(k.predicted_churn_rate),
        k.total_clv
    );
    println!("  engagement tiers  (customers, mean CLV, mean churn probability)");
    for (name, _) in churnclv::segment::TIERS {
        let Some(t) = m.tiers.get(name) else { continue };
        println!(
            "    {name:<20} {:>8}  {:>10}  {:>6}",
            t.customers,
            t.mean_clv.map_or("-".into(), |v| format!("{v:.2}")),
            t.mean_churn_probability
                .map_or("-".into(), |v| format!("{v:.3}"))
        );
    }
    println!("  model features    {}", FEATURES.join(", "));
    println!(
        "  took              {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
