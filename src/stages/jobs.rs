//! The subcommands that chain stages, on a checked [`Plan`]: [`run`], the nightly job —
//! exactly features → train → score → publish in one process (one scan gives the tables at
//! `tv`, `t0`, `t1`, labelled, and as-of; `tests/chain.rs` shows that the same stages run
//! apart, from files, give the same scores) — [`score`] (a saved model on a feature table or
//! on events, published) and [`train`] (from feature-table files).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::features::{CompactRows, FeatureTable};
use crate::io::RunLock;
use crate::labels::Cutoffs;
use crate::plan::{Inputs, Plan};
use arrow_array::RecordBatch;

use crate::cuts::Cuts;
use crate::io::ScanStats;
use crate::models::value::ValueInputs;
use crate::stages::console::{console_summary, training_summary};
use crate::stages::drift;
use crate::stages::features::{self, ModelInputs, TableSpec};
use crate::stages::metrics::{Counts, CustomerSample};
use crate::stages::publish::{self, Partition, Provenance, Table};
use crate::stages::report_page::report_page;
use crate::stages::score::{
    model_version, score_saved, score_slices, score_with, summary_by_slices, Models, Scored,
    Summary,
};
use crate::stages::shards;
use crate::stages::train::{self, Trained, TrainingData};
use crate::time::date_us;

/// Where `run` publishes.
#[derive(Debug, Clone)]
pub struct Destination<'a> {
    /// `--out DIR`: the output root (created by the plan).
    pub out: &'a Path,
    /// `--save-model MODELS`: a copy of model.json as `MODELS/<run_id>/model.json`.
    pub save_model: Option<&'a Path>,
    /// `--accept-drift`: publish even when a drift gate trips (recorded in metrics.json).
    pub accept_drift: bool,
}

/// What a published run reports.
#[derive(Debug)]
pub struct Outcome {
    /// The published partition.
    pub target: PathBuf,
    pub run_id: String,
    /// The console summary, ready to print.
    pub summary: String,
}

/// The tables `run` builds from its scan: `tv`, `t0`, `t1` labelled with the window after
/// each (the prior window's spend, and the detail columns of the sample, at `t0` — the value
/// models' validation window, where BTYD competes — and at `t1`), and as-of.
pub fn tables(c: &Cutoffs) -> [TableSpec; 4] {
    let labelled = |cutoff, prior_window| TableSpec {
        prior_window,
        ..TableSpec::labelled(cutoff, c.horizon_days)
    };
    [
        labelled(c.tv, false),
        labelled(c.t0, true),
        labelled(c.t1, true),
        TableSpec::unlabelled(c.as_of),
    ]
}

/// What `run`'s model stages give, before publishing.
pub struct Modelled {
    pub trained: Trained,
    /// The as-of table (every customer): scored and published.
    pub latest: FeatureTable,
    pub scored: Scores,
    pub stats: ScanStats,
    pub rejects: Vec<RecordBatch>,
}

/// The as-of table's scores as `run` holds them before publishing.
pub enum Scores {
    /// The whole score table (no memory budget).
    Whole(Scored),
    /// Scored by slices ([`Plan::score_slice`]): the summary and the whole table's cut
    /// points; the rows are built slice by slice as they are published, with the cuts.
    Slices {
        summary: Summary,
        cuts: Cuts,
        slice: usize,
    },
}

impl Scores {
    /// What metrics.json, the report and the drift check read.
    pub fn summary(&self) -> &Summary {
        match self {
            Scores::Whole(s) => &s.summary,
            Scores::Slices { summary, .. } => summary,
        }
    }
}

/// The fitted models as scoring applies them.
fn models<'a>(trained: &'a Trained, version: &'a str) -> Models<'a> {
    Models {
        churn: &trained.churn,
        value: &trained.value,
        spend: trained.spend.as_ref(),
        horizon_days: trained.cutoffs.horizon_days,
        model_version: version,
    }
}

/// The features stage of `run`: the scan of [`tables`] reduced to the models' inputs, its
/// histories dropped — in hash shards of the customers when the plan's memory budget asks
/// for them (`stages::shards`).
pub fn model_inputs(plan: &Plan, c: &Cutoffs) -> Result<ModelInputs> {
    let inputs = plan.events()?;
    let how = shards::shards_for(inputs.rows(), plan.memory_limit, plan.config.run.shards)?;
    if let Some(f) = how.train_fraction {
        tracing::warn!(
            stage = "model inputs",
            "the memory budget cannot hold every customer's model inputs: training on a {:.1}% customer sample (every customer is scored)",
            100.0 * f
        );
    }
    let m = shards::model_inputs(
        inputs,
        &plan.read_options(date_us(c.as_of)),
        &tables(c),
        how,
    )?;
    crate::memory::release_everywhere("the scan's histories");
    tracing::info!(
        stage = "model inputs",
        shards = how.shards,
        train_fraction = how.train_fraction,
        samples = ?m.samples.iter().map(|s| s.len()).collect::<Vec<_>>(),
        "training reads {} customers' samples, scoring {} customers",
        m.samples.last().map_or(0, |s| s.len()),
        m.customers()
    );
    Ok(m)
}

/// train → score on the models' inputs ([`model_inputs`]). `stage` is told when scoring
/// starts.
pub fn model_stages(
    inputs: ModelInputs,
    plan: &Plan,
    c: Cutoffs,
    run_id: &str,
    stage: &mut dyn FnMut(&'static str),
) -> Result<Modelled> {
    let ModelInputs {
        samples,
        mut latest,
        held,
        stats,
        rejects,
        train_fraction,
    } = inputs;
    // The as-of rows wait compact while the models train (216 instead of 368 bytes a row: the
    // largest single owner at the run's memory peak, docs/benchmarks.md); scoring and
    // publishing read them whole again.
    let held = held.unwrap_or_else(|| CompactRows::new(std::mem::take(&mut latest.rows)));
    let Ok([tune, train_sample, validate]) = <[_; 3]>::try_from(samples) else {
        return Err(Error::Internal(
            "run's scan has three labelled tables".into(),
        ));
    };
    let data = TrainingData {
        tune: Some(tune),
        train: Some(train_sample),
        validate,
        ids: &latest.customer_ids,
        latest: held.iter().filter_map(|f| ValueInputs::of(&f)).collect(),
        customer_sample: train_fraction.map(|fraction| CustomerSample {
            fraction,
            reason: "the memory budget cannot hold every customer's model inputs".into(),
        }),
    };
    let trained = train::train(data, c, &plan.config, plan.min_auc)?;
    latest.rows = held.into_rows();

    stage("score: scoring as of the cutoff");
    let t = Instant::now();
    let version = model_version(run_id);
    let m = models(&trained, &version);
    let tiers = &plan.config.tiers;
    let scored = match plan.score_slice {
        None => Scores::Whole(score_with(&latest, &m, tiers, run_id, None)?),
        Some(slice) => {
            let (summary, cuts) = summary_by_slices(&latest, &m, tiers, slice)?;
            Scores::Slices {
                summary,
                cuts,
                slice,
            }
        }
    };
    tracing::info!(
        stage = "score",
        customers = latest.len(),
        with_probability = scored.summary().with_probability,
        slice = plan.score_slice,
        duration_ms = t.elapsed().as_millis() as u64,
        "scored"
    );
    Ok(Modelled {
        trained,
        latest,
        scored,
        stats,
        rejects,
    })
}

/// Runs the job. `stage` is told when each stage starts (a progress bar); `started` is when
/// the process started its work (the summary's "took").
pub fn run(
    plan: &Plan,
    to: &Destination<'_>,
    stage: &mut dyn FnMut(&'static str),
    started: Instant,
) -> Result<Outcome> {
    let c = plan.cutoffs()?;
    let run_id = plan.run_id()?;
    let inputs = plan.events()?;
    let lock = RunLock::acquire(to.out)?;
    lock.recover()?;
    tracing::info!(
        stage = "plan",
        run_id = %run_id,
        files = inputs.files.len(),
        rows = inputs.rows(),
        as_of = %c.as_of,
        horizon_days = c.horizon_days,
        "t0 {} / t1 {} / as_of {}",
        c.t0,
        c.t1,
        c.as_of
    );

    stage("features: reading events");
    let model_inputs = model_inputs(plan, &c)?;
    stage("train: fitting and evaluating out of time");
    // A fault point, so tests can hold a run in training however fast the machine is.
    crate::io::publish::fault("train-start")
        .map_err(|e| Error::Internal(format!("train-start: {e}")))?;
    let Modelled {
        trained,
        latest,
        scored,
        stats,
        rejects,
    } = model_stages(model_inputs, plan, c, &run_id, stage)?;

    stage("publish: writing the partition");
    let t = Instant::now();
    let summary = scored.summary();
    let counts = Counts {
        customers_scored: latest.len(),
        customers_with_churn_probability: summary.with_probability,
        rows_read: stats.rows_read,
        rows_used: stats.rows_used,
        rows_rejected: stats.rows_rejected,
    };
    let mut metrics = trained.metrics(&run_id, Some((summary, counts)));
    // Drift against the runs published before this as-of: exit 3 here publishes nothing.
    let governance = drift::govern(
        &drift::Check {
            out: lock.dir(),
            as_of: c.as_of,
            run_id: &run_id,
            gates: &plan.config.gates,
            accept: to.accept_drift,
        },
        drift::RunData {
            stats: &stats,
            latest: &latest,
            trained: &trained,
            scored: summary,
        },
    )?;
    metrics.drift = Some(&governance.drift);
    metrics.profile = Some(&governance.profile);
    let page = report_page(&trained, summary, &counts, &run_id)?;
    let page = governance.add_to_report(page, lock.dir(), c.as_of, &run_id)?;
    let model = trained.saved_model(&run_id, &metrics)?;
    let version = model_version(&run_id);
    let m = models(&trained, &version);
    let scores = match &scored {
        Scores::Whole(s) => Table::Whole(&s.table),
        Scores::Slices { cuts, slice, .. } => {
            let tiers = &plan.config.tiers;
            // Each slice's outputs were checked when the summary was made: an error here
            // is the writer's (the score table's Arrow columns).
            Table::Stream(Box::new(
                score_slices(&latest, &m, tiers, &run_id, cuts, *slice)
                    .map(|b| b.map_err(|e| arrow_schema::ArrowError::ExternalError(Box::new(e)))),
            ))
        }
    };
    let target = publish::publish(
        &lock,
        c.as_of,
        Provenance {
            command: "run",
            run_id: &run_id,
            cutoffs: Some(c),
            model: None,
            inputs: plan.input_entries(),
            inputs_skipped: &inputs.skipped,
            rows: Some(&stats),
            config: Some(&plan.config),
        },
        Partition {
            scores,
            features: &latest,
            rejects: Some(&rejects),
            metrics: Some(&metrics),
            report: Some(&page),
            model: &model,
        },
    )?;
    if let Some(dir) = to.save_model {
        publish::save_model_copy(&target, dir, &run_id)?;
    }
    tracing::info!(
        stage = "publish",
        duration_ms = t.elapsed().as_millis() as u64,
        "published {}",
        target.display()
    );
    let mut summary = console_summary(
        &target,
        &run_id,
        &stats,
        &trained,
        summary,
        &counts,
        started.elapsed(),
    );
    summary.push_str(&governance.summary_line());
    Ok(Outcome {
        target,
        run_id,
        summary,
    })
}

/// `score`: the saved model of the plan on its feature table, or on the events as of the
/// plan's date, published as the run's layout (`DIR/<table>/as_of=D/`, `DIR/runs/as_of=D/`)
/// beside the model it used.
pub fn score(
    plan: &Plan,
    out: &Path,
    model_path: &Path,
    stage: &mut dyn FnMut(&'static str),
) -> Result<Outcome> {
    let started = Instant::now();
    let saved = plan
        .model
        .as_ref()
        .ok_or_else(|| Error::Internal("score without a model".into()))?;
    let as_of = plan.as_of()?;
    let labels_until = saved.trained_on.labels_until;
    if labels_until > as_of {
        // Allowed (re-scoring a past date with tonight's model), but a backtest would leak.
        tracing::warn!(
            stage = "score",
            "scoring as of {as_of} with a model trained on labels until {labels_until}: these scores are not out of time (a backtest needs a model whose labels end on or before {as_of})"
        );
    }
    let run_id = format!("{}-score-{}", as_of.format("%Y%m%d"), saved.run_id);
    let lock = RunLock::acquire(out)?;
    lock.recover()?;
    let scanned = match &plan.inputs {
        Inputs::Events(inputs) => {
            stage("features: reading events");
            let spec = TableSpec::unlabelled(as_of);
            let read = plan.read_options(date_us(as_of));
            Some((inputs, features::scan(inputs, &read, &[spec])?))
        }
        _ => None,
    };
    let built;
    let table = match (&plan.inputs, &scanned) {
        (Inputs::Table(table, _), _) => table,
        (_, Some((_, s))) => {
            built = s.table(0);
            &built
        }
        _ => return Err(Error::Internal("score without a table or events".into())),
    };
    let from_events = scanned.as_ref().map(|(inputs, s)| (*inputs, s));
    stage("score: applying the saved model");
    let scored = score_saved(table, saved, model_path, &plan.config.tiers, &run_id)?;
    stage("publish: writing the partition");
    let target = publish::publish(
        &lock,
        as_of,
        Provenance {
            command: "score",
            run_id: &run_id,
            cutoffs: None,
            model: Some((model_path.display().to_string(), &saved.run_id)),
            inputs: plan.input_entries(),
            inputs_skipped: from_events.map_or(&[], |(i, _)| &i.skipped),
            rows: from_events.map(|(_, s)| &s.stats),
            config: None,
        },
        Partition {
            scores: Table::Whole(&scored.table),
            features: table,
            rejects: from_events.map(|(_, s)| s.rejects.as_slice()),
            metrics: None,
            report: None,
            model: saved,
        },
    )?;
    tracing::info!(
        stage = "publish",
        duration_ms = started.elapsed().as_millis() as u64,
        "published {}",
        target.display()
    );
    let summary = format!(
        "published {} ({} customers scored with model {} of run {})\n",
        target.display(),
        table.len(),
        model_path.display(),
        saved.run_id
    );
    Ok(Outcome {
        target,
        run_id,
        summary,
    })
}

/// `train`: the plan's feature tables → `MODEL_DIR/model.json` and `metrics.json` (the
/// training sections: no tiers, KPIs or counts, which come from scoring and a scan).
pub fn train(plan: &Plan, out: &Path) -> Result<Outcome> {
    let Inputs::Training(t) = &plan.inputs else {
        return Err(Error::Internal("train without training tables".into()));
    };
    let run_id = plan.run_id()?;
    let data =
        TrainingData::from_tables(t.tune.as_ref(), t.train.as_ref(), &t.validate, &t.latest)?;
    let trained = train::train(data, plan.cutoffs()?, &plan.config, plan.min_auc)?;
    let metrics = trained.metrics(&run_id, None);
    let model = trained.saved_model(&run_id, &metrics)?;
    let target = publish::write_model_dir(out, &metrics, &model)?;
    tracing::info!(stage = "publish", "wrote {}", target.display());
    let summary = training_summary(&target, &run_id, &trained);
    Ok(Outcome {
        target,
        run_id,
        summary,
    })
}
