//! `churnclv train`: fit and evaluate from feature tables alone — the plan (tables read and
//! checked against one another), then `churnclv::stages::jobs::train`, then its summary.

use std::path::PathBuf;

use churnclv::plan::{Output, OutputKind, Plan, Request, Source, TrainingFiles};
use churnclv::stages::jobs;

use super::ConfigArg;

/// Fit the churn and value models and evaluate them out of time from feature tables written
/// by `churnclv features --as-of D --label-horizon H` (or by anything that writes the columns
/// of docs/features.md): no events needed. With as-of A and horizon H, the tables are at
/// A − 3H (--tune), A − 2H (--train), A − H (--validate), all labelled, and A (--latest).
/// Writes MODEL_DIR/metrics.json and MODEL_DIR/model.json (for `churnclv score --model`),
/// exactly what `run` computes from the same tables (metrics.json without the tiers, KPIs and
/// counts, which come from scoring). Fewer tables degrade as `run` does on a short history:
/// without --tune the L2 strength is churn.alpha; without --train the evaluation is a seeded
/// 80/20 customer split of the --validate window (both recorded in metrics.json).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Labelled table at A − 3H: fits the L2 candidates, validated on --train.
    #[arg(long, value_name = "FILE", requires = "train")]
    pub tune: Option<PathBuf>,
    /// Labelled table at A − 2H: fits the model evaluated out of time on --validate.
    #[arg(long, value_name = "FILE")]
    pub train: Option<PathBuf>,
    /// Labelled table at A − H: the out-of-time evaluation, the BTYD holdout and the final
    /// churn fit.
    #[arg(long, value_name = "FILE")]
    pub validate: PathBuf,
    /// Table at A (as-of): the history the final BTYD and Gamma-Gamma models are fitted on.
    #[arg(long, value_name = "FILE")]
    pub latest: PathBuf,
    /// Folder to write model.json and metrics.json into (created if missing).
    #[arg(long, value_name = "MODEL_DIR")]
    pub out: PathBuf,
    /// As-of date A (YYYY-MM-DD), for a --latest table written without churnclv.cutoff
    /// metadata; must agree with the metadata otherwise.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Horizon H (90d, 13w or a number of days), for tables written without
    /// churnclv.label_horizon_days metadata; must agree with the metadata otherwise.
    #[arg(long, value_name = "H")]
    pub horizon: Option<String>,
    /// Quality gate: if the out-of-time churn ROC-AUC is below this, exit 3 and write nothing.
    #[arg(long, value_name = "X")]
    pub min_auc: Option<f64>,
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    let plan = Plan::build(&Request {
        source: Source::Training(TrainingFiles {
            tune: args.tune,
            train: args.train,
            validate: args.validate,
            latest: args.latest,
        }),
        as_of: args.as_of.map(|d| (d, "--as-of")),
        horizon: args.horizon,
        min_auc: args.min_auc,
        outputs: vec![Output {
            flag: "--out",
            path: args.out.clone(),
            kind: OutputKind::FolderLater,
        }],
        ..args.config.request()
    })?;
    let outcome = jobs::train(&plan, &args.out)?;
    super::print(format_args!("{}", outcome.summary))?;
    Ok(())
}
