//! `churnclv run`: the nightly job, end to end — the plan, then the library's
//! features → train → score → publish (`churnclv::stages::jobs::run`), then its summary.

use std::path::PathBuf;
use std::time::Instant;

use churnclv::plan::{Output, OutputKind, Plan};
use churnclv::stages::jobs::{self, Destination};

use super::progress::Progress;
use super::InputArgs;

/// Read events, build features, train and evaluate the churn model out of time, score every
/// customer as of --as-of, and publish each table in its own folder, hive-partitioned by
/// as-of (DIR/scores/as_of=YYYY-MM-DD/scores.parquet, DIR/features/…/features.parquet,
/// DIR/rejects/…/rejects.parquet), then DIR/runs/as_of=YYYY-MM-DD/ (metrics.json, model.json,
/// report.html, manifest.json, _SUCCESS) last, each partition through a temporary folder
/// swapped into place. A failed run leaves the previous output as it was.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output root; the run writes DIR/{scores,features,rejects,runs}/as_of=YYYY-MM-DD/.
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
    /// Memory budget, e.g. 4GB or 2GiB (config run.memory_limit): when the customers'
    /// histories would not fit, they are processed in hash shards, one pass over the input
    /// each, with the same scores as one pass.
    #[arg(long, value_name = "BYTES")]
    pub memory_limit: Option<String>,
    /// Also keep a copy of the fitted model as MODELS/<run_id>/model.json (e.g. --save-model
    /// models), for `churnclv score --model` later.
    #[arg(long, value_name = "MODELS")]
    pub save_model: Option<PathBuf>,
    /// Publish even if a drift gate ([gates] in the config: this run against the latest
    /// published run before its as-of) trips; metrics.json records drift.status "accepted".
    /// Without it a tripped gate exits 3, publishes nothing, and writes the comparison to
    /// DIR/_drift/as_of=YYYY-MM-DD/<run_id>.json.
    #[arg(long)]
    pub accept_drift: bool,
    /// Testing knob: score and publish by slices of N customers, rounded up to a multiple
    /// of 1,024 (as under --memory-limit, whose slices are 65,536 customers), even without a
    /// memory budget. Same outputs.
    #[arg(long, value_name = "N", hide = true)]
    pub score_slice: Option<usize>,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    let started = Instant::now();
    let mut outputs = vec![Output {
        flag: "--out",
        path: args.out.clone(),
        kind: OutputKind::Folder,
    }];
    if let Some(models) = &args.save_model {
        outputs.push(Output {
            flag: "--save-model",
            path: models.clone(),
            kind: OutputKind::FolderLater,
        });
    }
    let plan = Plan::build(&churnclv::plan::Request {
        as_of: args.as_of.map(|d| (d, "--as-of")),
        as_of_from_data: true,
        horizon: args.horizon,
        min_auc: args.min_auc,
        memory_limit: args.memory_limit,
        score_slice: args.score_slice,
        outputs,
        ..args.input.request()
    })?;
    let mut progress = Progress::stages(4);
    let to = Destination {
        out: &args.out,
        save_model: args.save_model.as_deref(),
        accept_drift: args.accept_drift,
    };
    let outcome = jobs::run(&plan, &to, &mut |stage| progress.stage(stage), started)?;
    progress.finish();
    super::print(format_args!("{}", outcome.summary))?;
    Ok(())
}
