//! `churnclv validate`: check an event input without training anything — the plan, then
//! `churnclv::stages::validate`, then its summary as text or JSON.

use churnclv::plan::Plan;
use churnclv::stages::validate::validate;
use churnclv::time::date_us;

use super::InputArgs;

/// Read every row of the input, validate it, and print what was found: files, rows read, used
/// and rejected by reason, customers, time range, event-type counts (unknown types listed).
/// Exits 2 when the input cannot be read or has no usable row, 3 when the share of unusable
/// rows is above validation.max_reject_share.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Count rows on or after this date (YYYY-MM-DD) as `after_as_of` instead of used.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    let plan = Plan::build(&churnclv::plan::Request {
        as_of: args.as_of.map(|d| (d, "--as-of")),
        ..args.input.request()
    })?;
    let end = plan.as_of.map_or(i64::MAX, date_us);
    let (summary, verdict) = validate(plan.events()?, &plan.read_options(end))?;
    if args.json {
        super::print(format_args!(
            "{}\n",
            serde_json::to_string_pretty(&summary)?
        ))?;
    } else {
        super::print(format_args!("{}\n", summary.text()))?;
    }
    verdict
}
