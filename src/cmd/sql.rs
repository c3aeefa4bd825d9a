//! `churnclv sql`: the feature stage as Spark SQL (`churnclv::sql`), printed for an engine to
//! run — the features at a cutoff, or the rejected rows by reason.

use churnclv::plan::{Plan, Request};
use churnclv::sql::{features_query, rejects_query, QuerySpec};

use super::ReadingArgs;

/// Print the feature stage as one Spark SQL query over a view named `events` (the input
/// contract's columns, named as `[columns]` and --map say), for Apache Spark or a Spark
/// Connect engine such as Sail (docs/scale-out.md). Run it with
/// spark.sql.session.timeZone=UTC. The same validation rules as `churnclv features` apply:
/// rows it rejects are not used; `churnclv sql rejects` counts them by reason.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub query: Query,
}

#[derive(Debug, clap::Subcommand)]
pub enum Query {
    /// The feature table at --as-of (and its labels with --label-horizon): the columns and
    /// types of `churnclv features`' output, one row per customer, not sorted.
    Features(QueryArgs),
    /// The rows `churnclv features` would not use at --as-of, counted by reason (`reason`,
    /// `rows`).
    Rejects(QueryArgs),
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub reading: ReadingArgs,
    /// Cutoff date (YYYY-MM-DD): features use events before its midnight UTC.
    #[arg(long, value_name = "DATE")]
    pub as_of: String,
    /// Add the label columns of the window [as_of, as_of + H) (90d, 13w or a number of days).
    #[arg(long, value_name = "H")]
    pub label_horizon: Option<String>,
    /// An optional column the view does not have (amount, channel, category, order_id,
    /// event_id; repeatable or comma-separated): read as null, as churnclv reads a file
    /// without it.
    #[arg(long, value_name = "COLUMN", value_delimiter = ',')]
    pub absent: Vec<String>,
}

pub fn run(args: Args) -> churnclv::Result<()> {
    let (a, features) = match args.query {
        Query::Features(a) => (a, true),
        Query::Rejects(a) => (a, false),
    };
    let plan = Plan::build(&Request {
        as_of: Some((a.as_of.clone(), "--as-of")),
        label_horizon: a.label_horizon.clone(),
        ..a.reading.request()
    })?;
    let spec = QuerySpec::new(
        &plan.config,
        &a.absent,
        plan.as_of()?,
        plan.label_horizon_days,
    )?;
    let text = if features {
        features_query(&spec)?
    } else {
        rejects_query(&spec)
    };
    super::print(format_args!("{text}"))?;
    Ok(())
}
