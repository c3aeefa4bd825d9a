//! `churnclv score`: a saved model on a feature table (or on events as of a date), published —
//! the plan, then `churnclv::stages::jobs::score`, then its one line.

use std::path::PathBuf;

use churnclv::plan::{Output, OutputKind, Plan, Request, Source};
use churnclv::stages::jobs;

use super::progress::Progress;
use super::ReadingArgs;

/// Score every customer of a feature table (--features, e.g. from `churnclv features`) or
/// with any event before --as-of (--events) using a model.json written by `run` or `train`
/// (churn coefficients and scaling, BTYD and Gamma-Gamma parameters, horizon), and publish
/// the run's layout (DIR/scores/as_of=YYYY-MM-DD/, DIR/features/…, DIR/rejects/… when events
/// were read, DIR/runs/as_of=YYYY-MM-DD/ with model.json, manifest.json, _SUCCESS last). With the same features as the run
/// that wrote the model, the scores are identical to that run's.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events: a Parquet file, a directory of *.parquet (searched recursively; hive-style
    /// key=value/ folders allowed), or a glob such as 'events/*.parquet'.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "features",
        conflicts_with = "features"
    )]
    pub events: Option<String>,
    /// A feature table to score instead of events (the columns of docs/features.md; label
    /// columns, if any, are ignored). Its cutoff is the as-of date: from its
    /// churnclv.cutoff metadata, or --as-of for a table written without it.
    #[arg(long, value_name = "FILE")]
    pub features: Option<PathBuf>,
    #[command(flatten)]
    pub reading: ReadingArgs,
    /// The saved model (DIR/runs/as_of=…/model.json of a run, or MODEL_DIR/model.json of train).
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Scoring date (YYYY-MM-DD). Default: the day after the last event, or the feature
    /// table's cutoff (which it must equal when both are known).
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Output root; writes DIR/{scores,features,rejects,runs}/as_of=YYYY-MM-DD/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    let source = match (args.events, &args.features) {
        (Some(events), _) => Source::Events(events),
        (None, Some(table)) => Source::Table(table.clone()),
        // clap requires one of them.
        (None, None) => Source::Nothing,
    };
    let plan = Plan::build(&Request {
        source,
        model: Some(args.model.clone()),
        as_of: args.as_of.map(|d| (d, "--as-of")),
        as_of_from_data: true,
        outputs: vec![Output {
            flag: "--out",
            path: args.out.clone(),
            kind: OutputKind::Folder,
        }],
        ..args.reading.request()
    })?;
    let mut progress = Progress::stages(3);
    let outcome = jobs::score(&plan, &args.out, &args.model, &mut |s| progress.stage(s))?;
    progress.finish();
    print!("{}", outcome.summary);
    Ok(())
}
