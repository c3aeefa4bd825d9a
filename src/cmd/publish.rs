//! `churnclv publish`: the last step of scoring in shards — every bucket's feature table and
//! score part checked and merged, in bounded memory, into the one publisher
//! (`churnclv::stages::sharded_publish`).

use std::path::PathBuf;

use churnclv::plan::{Output, OutputKind, Plan, Request};
use churnclv::stages::{sharded, sharded_publish};

use super::ConfigArg;

/// Publish a table scored in shards: the feature buckets (--features) and the score parts
/// (`churnclv score --cuts … --part`, --scores) as one partition with the layout of
/// `churnclv score` (DIR/scores/as_of=D/scores.parquet, DIR/features/…, DIR/runs/as_of=D/ with
/// model.json, manifest.json, _SUCCESS last), rows in customer_id order. Refused (exit 2,
/// nothing published) unless every customer of the features is scored exactly once and every
/// part was scored with --model for this as-of and with one cuts.json.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The feature buckets: a file, a folder of *.parquet (searched recursively) or a glob;
    /// repeatable.
    #[arg(long, value_name = "PATH", required = true)]
    pub features: Vec<String>,
    /// The score parts, as --features.
    #[arg(long, value_name = "PATH", required = true)]
    pub scores: Vec<String>,
    /// The model the parts were scored with.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// The as-of date; default: the feature tables' cutoff (which they must all have).
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Output root; writes DIR/{scores,features,runs}/as_of=YYYY-MM-DD/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    let plan = Plan::build(&Request {
        model: Some(args.model.clone()),
        as_of: args.as_of.map(|d| (d, "--as-of")),
        outputs: vec![Output {
            flag: "--out",
            path: args.out.clone(),
            kind: OutputKind::Folder,
        }],
        ..args.config.request()
    })?;
    let saved = plan
        .model
        .as_ref()
        .ok_or_else(|| churnclv::Error::Internal("publish without a model".into()))?;
    let features = sharded::files_of("--features", &args.features)?;
    let scores = sharded::files_of("--scores", &args.scores)?;
    let (target, customers) = sharded_publish::publish_sharded(
        &args.out,
        &features,
        &scores,
        plan.as_of,
        saved,
        &args.model,
    )?;
    super::print(format_args!(
        "published {} ({} customers from {} buckets, model {} of run {})\n",
        target.display(),
        customers,
        features.len(),
        args.model.display(),
        saved.run_id
    ))?;
    Ok(())
}
