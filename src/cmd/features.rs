//! `churnclv features`: the feature table at one cutoff, on its own — the plan, one scan
//! (`churnclv::stages::features`), the table written.

use std::path::PathBuf;

use chrono::Duration;
use churnclv::plan::{Output, OutputKind, Plan};
use churnclv::stages::features::{scan, TableSpec};
use churnclv::time::date_us;

use super::InputArgs;

/// Build the per-customer feature table (RFM, BTYD summary, behaviour; see docs/features.md)
/// from events strictly before --as-of and write it as one Parquet file, with the cutoff in
/// its key-value metadata (`churnclv.cutoff`). One row per customer with any event before the
/// cutoff, sorted by customer_id. Events on or after the cutoff are counted, not used — except,
/// with --label-horizon H, those of the label window [as_of, as_of + H), which give the label
/// columns (`churned`, `window_purchase_days`, `window_net_spend`, and
/// `prior_window_net_spend` of [as_of − H, as_of)) that `churnclv train` needs.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Cutoff date (YYYY-MM-DD): features use events before its midnight UTC. Default: the
    /// day after the last event.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Add the label columns of the window [as_of, as_of + H) after the cutoff (90d, 13w or a
    /// number of days; metadata churnclv.label_horizon_days). Needs --as-of.
    #[arg(long, value_name = "H", requires = "as_of")]
    pub label_horizon: Option<String>,
    /// Parquet file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    let plan = Plan::build(&churnclv::plan::Request {
        as_of: args.as_of.map(|d| (d, "--as-of")),
        as_of_from_data: true,
        label_horizon: args.label_horizon,
        outputs: vec![Output {
            flag: "--out",
            path: args.out.clone(),
            kind: OutputKind::File,
        }],
        ..args.input.request()
    })?;
    let spec = match plan.label_horizon_days {
        Some(h) => TableSpec::labelled(plan.as_of()?, h),
        None => TableSpec::unlabelled(plan.as_of()?),
    };
    let end = spec.cutoff + Duration::days(i64::from(spec.label_horizon_days.unwrap_or(0)));
    let scanned = scan(plan.events()?, &plan.read_options(date_us(end)), &[spec])?;
    let rows = scanned.write_table(0, "--out", &args.out)?;
    let stats = &scanned.stats;
    let labels = match spec.label_horizon_days {
        Some(_) => format!(", labels [{}, {end})", spec.cutoff),
        None => String::new(),
    };
    super::print(format_args!(
        "{} customers, features before {}{labels} -> {} ({} rows read, {} used, {} rejected: {})\n",
        rows,
        spec.cutoff,
        args.out.display(),
        stats.rows_read,
        stats.rows_used,
        stats.rows_rejected,
        stats.reasons_line()
    ))?;
    Ok(())
}
