//! `churnclv score`: a saved model on a feature table (or on events as of a date), published —
//! the plan, then `churnclv::stages::jobs::score`, then its one line.

use std::path::PathBuf;

use churnclv::plan::{Output, OutputKind, Plan, Request, Source};
use churnclv::stages::{jobs, sharded};

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
    #[arg(long, value_name = "DIR", required_unless_present_any = ["raw", "part"])]
    pub out: Option<PathBuf>,
    /// Scoring in shards, pass 1: score this bucket of the as-of table (--features) on its
    /// own and write each customer's rank keys (customer_id, recency_key, frequency_key,
    /// monetary_key, clv) to FILE instead of publishing; `churnclv cuts` reads every bucket's.
    #[arg(long, value_name = "FILE", requires = "features", conflicts_with_all = ["out", "cuts"])]
    pub raw: Option<PathBuf>,
    /// Scoring in shards, pass 2: the whole table's cut points (`churnclv cuts --out`): the
    /// bucket's r/f/m scores, CLV deciles, VIPs and median CLV are those of the whole table.
    #[arg(long, value_name = "FILE", requires = "part")]
    pub cuts: Option<PathBuf>,
    /// Scoring in shards, pass 2: write the bucket's score rows (the columns of scores.parquet)
    /// to FILE instead of publishing; `churnclv publish` publishes every bucket's.
    #[arg(long, value_name = "FILE", requires_all = ["features", "cuts"], conflicts_with = "out")]
    pub part: Option<PathBuf>,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    let source = match (args.events, &args.features) {
        (Some(events), _) => Source::Events(events),
        (None, Some(table)) => Source::Table(table.clone()),
        // clap requires one of them.
        (None, None) => Source::Nothing,
    };
    let (out, kind, flag) = match (&args.raw, &args.part, &args.out) {
        (Some(f), _, _) => (f.clone(), OutputKind::File, "--raw"),
        (_, Some(f), _) => (f.clone(), OutputKind::File, "--part"),
        (_, _, Some(d)) => (d.clone(), OutputKind::Folder, "--out"),
        // clap requires one of them.
        (None, None, None) => return Err(churnclv::Error::Usage("--out is required".into())),
    };
    let plan = Plan::build(&Request {
        source,
        model: Some(args.model.clone()),
        as_of: args.as_of.map(|d| (d, "--as-of")),
        as_of_from_data: true,
        outputs: vec![Output {
            flag,
            path: out.clone(),
            kind,
        }],
        ..args.reading.request()
    })?;
    if let Some(raw) = &args.raw {
        let n = sharded::score_raw(&plan, &args.model, raw)?;
        super::print(format_args!(
            "wrote {} ({n} customers' rank keys)\n",
            raw.display()
        ))?;
        return Ok(());
    }
    if let (Some(part), Some(cuts)) = (&args.part, &args.cuts) {
        let n = sharded::score_part(&plan, &args.model, cuts, part)?;
        super::print(format_args!(
            "wrote {} ({n} customers scored with {})\n",
            part.display(),
            cuts.display()
        ))?;
        return Ok(());
    }
    let mut progress = Progress::stages(3);
    let outcome = jobs::score(&plan, &out, &args.model, &mut |s| progress.stage(s))?;
    progress.finish();
    super::print(format_args!("{}", outcome.summary))?;
    Ok(())
}
