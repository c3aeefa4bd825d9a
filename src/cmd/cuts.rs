//! `churnclv cuts`: the global cut points of scoring in shards — every bucket's raw keys
//! (`score --raw`) → `cuts.json` (`churnclv::stages::sharded::cuts_of_raw`).

use std::path::PathBuf;

use churnclv::plan::{Output, OutputKind, Plan};
use churnclv::stages::sharded;

use super::ConfigArg;

/// Compute the whole as-of table's cut points from every bucket's raw keys (the files
/// `churnclv score --raw` wrote): the boundaries of the r/f/m quintiles and CLV deciles, the
/// last VIP and the buyers' median CLV, as (value, customer_id) pairs — ties at a cut point
/// fall by customer_id, as in a single-node run. Each customer must be in exactly one file,
/// each file in customer_id order (as `score --raw` writes it). Found in a few passes over the
/// files in bounded memory, whatever the number of customers. `churnclv score --cuts` applies
/// them to each bucket (docs/scale-out.md).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Raw-keys files: a file, a folder of *.parquet (searched recursively) or a glob;
    /// repeatable.
    #[arg(long, value_name = "PATH", required = true)]
    pub raw: Vec<String>,
    #[command(flatten)]
    pub config: ConfigArg,
    /// The cut-point file to write (JSON).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    let plan = Plan::build(&churnclv::plan::Request {
        outputs: vec![Output {
            flag: "--out",
            path: args.out.clone(),
            kind: OutputKind::File,
        }],
        ..args.config.request()
    })?;
    let files = sharded::files_of("--raw", &args.raw)?;
    let cuts = sharded::cuts_of_raw(&files, plan.config.tiers.vip_top_share)?;
    sharded::write_cuts(&args.out, &cuts)?;
    super::print(format_args!(
        "wrote {} ({} customers from {} raw files)\n",
        args.out.display(),
        cuts.customers,
        files.len()
    ))?;
    Ok(())
}
