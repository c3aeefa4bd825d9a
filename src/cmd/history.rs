//! `churnclv history`: the runs of an output folder, one row each
//! (`churnclv::stages::history`), as a text table or JSON.

use std::path::PathBuf;

use churnclv::stages::history::{history, table};
use churnclv::Error;

/// List the runs of an output folder, oldest as-of first: one row per published partition
/// (DIR/runs/as_of=YYYY-MM-DD with _SUCCESS) — as-of, run id, command, customers scored,
/// predicted churn rate, out-of-time ROC-AUC, CLV total, customers per engagement tier, the
/// BTYD and Gamma-Gamma parameters of the scoring fit, the drift status and tripped gates —
/// and one per run the drift gates refused (command `refused`, from DIR/_drift/). Reads only
/// the small files each run left; changes nothing. Exits 2 when DIR is not a folder.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The output root a `run` published to (the folder holding runs/).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print the rows as a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    if !args.out.is_dir() {
        return Err(Error::Usage(format!(
            "--out {}: not a folder (expected the output root of `churnclv run`)",
            args.out.display()
        )));
    }
    let rows = history(&args.out);
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&rows)?)
    } else if rows.is_empty() {
        format!("no runs in {}\n", args.out.display())
    } else {
        table(&rows)
    };
    // `history | head` is how it is read: a closed pipe ends the listing, not an error.
    super::print(format_args!("{text}"))
}
