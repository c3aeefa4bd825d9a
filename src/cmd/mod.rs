//! Command-line front end: one file per subcommand, each with its `Args` and `run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use chrono::NaiveDate;
use churnclv::config::{parse_date, parse_horizon, Config, ConfigError};
use churnclv::events::EventTypeMap;
use churnclv::features::{Histories, HistoryAcc};
use churnclv::io::read::latest_event_time;
use churnclv::io::{scan, InputError, InputSet, ReadOptions, ScanStats};
use churnclv::labels::date_of_us;

pub mod btyd;
pub mod features;
pub mod finish;
pub mod generate;
mod jsonlog;
pub mod progress;
pub mod run;
pub mod score;
pub mod validate;

/// churnclv — churn and customer-lifetime-value scoring from Parquet event histories.
///
/// The nightly job is `churnclv run --events PATH --out DIR`: it reads events, builds RFM
/// features, trains and evaluates a churn model out of time, scores every customer as of
/// `--as-of` (churn probability, BTYD P(alive), expected purchases and CLV), and publishes
/// DIR/as_of=YYYY-MM-DD/ atomically.
///
/// Exit codes: 0 ok, 1 internal error, 2 bad input / config / usage (or another run holds the
/// output lock), 3 quality gate failed, 130 / 143 stopped by SIGINT / SIGTERM (cleaned up).
#[derive(Debug, Parser)]
#[command(name = "churnclv", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr: `text` for people, `json` (one object per line) for schedulers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Only warnings and errors on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole job: validate, features, train + evaluate out of time, score, publish.
    Run(run::Args),
    /// Score customers as of a date with a saved model.json (no training).
    Score(score::Args),
    /// Check an event input and print rows, customers, time range, event types and rejects.
    Validate(validate::Args),
    /// Fit a BTYD model (BG/NBD, MBG/NBD, Pareto/NBD, Gamma-Gamma) and print its parameters.
    Btyd(btyd::Args),
    /// Write the per-customer feature table at one cutoff (as-of date) to a Parquet file.
    Features(features::Args),
    /// Write synthetic event histories with a known ground truth.
    Generate(generate::Args),
}

/// Input selection shared by the subcommands that read events.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Events: a Parquet file, a directory of *.parquet (searched recursively; hive-style
    /// key=value/ folders allowed), or a glob such as 'events/*.parquet'.
    #[arg(long, value_name = "PATH")]
    pub events: String,
    /// Map a column name: --map customer_id=user_id (repeatable). Known names: customer_id,
    /// event_time, event_type, amount, order_id, event_id, quantity, channel, category.
    #[arg(long = "map", value_name = "OURS=THEIRS")]
    pub map: Vec<String>,
    /// TOML config file (columns, event type aliases, windows, model settings); see
    /// docs/config.md. Flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Follow links to folders met while searching --events (config input.follow_links). Off
    /// by default: a link such as latest -> 2025-12-30/ would read the same files twice. Each
    /// real file is read once either way.
    #[arg(long)]
    pub follow_links: bool,
}

impl InputArgs {
    /// Loads the config file (or the defaults) and applies `--map` flags.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut cfg = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        for m in &self.map {
            cfg.columns.apply_map(m)?;
        }
        cfg.input.follow_links |= self.follow_links;
        Ok(cfg)
    }

    /// Finds and opens the input files (`--events`) as the config says.
    pub fn open(&self, cfg: &Config) -> Result<InputSet, InputError> {
        let options = churnclv::io::input::DiscoverOptions {
            follow_links: cfg.input.follow_links,
        };
        churnclv::io::input::open_inputs_with(&self.events, &cfg.columns, options)
    }
}

/// Validation settings for a scan with the as-of cutoff `as_of_us` (`as_of_given`: from a
/// flag, rather than found in the data; see [`churnclv::io::read::future_limit`]).
pub fn read_options(
    cfg: &Config,
    types: EventTypeMap,
    as_of_us: i64,
    as_of_given: bool,
) -> ReadOptions {
    ReadOptions {
        as_of_us,
        future_us: future_limit_us(cfg, as_of_given.then_some(as_of_us)),
        max_abs_amount: cfg.validation.max_abs_amount,
        event_types: types,
        duplicates: None,
        deduplicate: cfg.validation.deduplicate,
        max_reject_share: cfg.validation.max_reject_share,
    }
}

/// The wall clock when the process started its work, read once (µs since the epoch): every
/// stage judges "future" rows against the same instant.
fn started_us() -> i64 {
    static STARTED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| chrono::Utc::now().timestamp_micros())
}

/// First `future_event` time for this run (config checked: the duration parses).
fn future_limit_us(cfg: &Config, as_of_given_us: Option<i64>) -> i64 {
    let max_future = cfg.validation.max_future.us();
    churnclv::io::read::future_limit(started_us(), as_of_given_us, max_future)
}

/// A usage error found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A quality gate failed: nothing was published (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("quality gate failed: {0}")]
pub struct QualityGate(pub String);

/// Exit code of an error: 2 for bad input/config/usage, 3 for a failed quality gate, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<InputError>()
            || cause.is::<ConfigError>()
            || cause.is::<UsageError>()
            || cause.is::<churnclv::io::LockError>()
            || matches!(
                cause.downcast_ref::<churnclv::io::PublishError>(),
                Some(churnclv::io::PublishError::NotOurs { .. })
            )
            || cause.is::<churnclv::io::target::TargetError>()
            || cause.is::<churnclv::models::SavedModelError>()
            || cause.is::<churnclv::generate::GenerateError>()
            || matches!(
                cause.downcast_ref::<churnclv::models::btyd::BtydError>(),
                Some(churnclv::models::btyd::BtydError::Empty)
                    | Some(churnclv::models::btyd::BtydError::InvalidCustomer { .. })
                    | Some(churnclv::models::btyd::BtydError::InvalidOptions(_))
            )
            || matches!(
                cause.downcast_ref::<churnclv::models::ModelError>(),
                Some(churnclv::models::ModelError::OneClass { .. })
                    | Some(churnclv::models::ModelError::Empty { .. })
            )
        {
            return 2;
        }
        if cause.is::<QualityGate>() {
            return 3;
        }
    }
    1
}

/// Runs one subcommand.
pub fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(a) => run::run(a),
        Command::Score(a) => score::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Btyd(a) => btyd::run(a),
        Command::Features(a) => features::run(a),
        Command::Generate(a) => generate::run(a),
    }
}

/// Logs go to stderr (stdout carries results): text or JSON lines, INFO unless `--quiet`.
/// Also decides whether progress bars are shown (text logs on a terminal, not `--quiet`).
pub fn init_logging(g: &GlobalArgs) {
    use std::io::IsTerminal;
    let level = if g.quiet {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    progress::init(progress::enabled(
        std::io::stderr().is_terminal(),
        g.quiet,
        g.log_format,
    ));
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    let _ = match g.log_format {
        // One flat object per line: ts, level, stage, message and the stage's counts and
        // duration_ms as top-level keys (see jsonlog.rs).
        LogFormat::Json => builder
            .with_writer(std::io::stderr)
            .event_format(jsonlog::JsonLines)
            .try_init(),
        // Control characters in a message (a path with a newline) are escaped: one line each.
        LogFormat::Text => builder
            .with_writer(progress::stderr)
            .with_ansi(false)
            .event_format(finish::OneLine(
                tracing_subscriber::fmt::format()
                    .with_ansi(false)
                    .with_target(false)
                    .compact(),
            ))
            .try_init(),
    };
}

/// The as-of date: the flag, or the day after the latest valid event time in the input
/// (rows too far in the future to be plausible, `future_event`, are ignored).
pub fn resolve_as_of(
    inputs: &InputSet,
    flag: Option<&str>,
    cfg: &Config,
) -> anyhow::Result<NaiveDate> {
    if let Some(d) = flag {
        return Ok(parse_date(d).context("--as-of")?);
    }
    match latest_event_time(inputs, future_limit_us(cfg, None))? {
        Some(us) => Ok(date_of_us(us) + chrono::Duration::days(1)),
        None => Err(InputError::NoUsableRows {
            path: inputs.spec.clone(),
            read: inputs.rows(),
            reasons: "no valid event_time".into(),
        }
        .into()),
    }
}

/// Customer partitions of a scan: enough that one partition's state stays in cache while a
/// batch is applied to it, and that threads rarely wait for one another.
pub fn scan_partitions() -> usize {
    32 * rayon::current_num_threads().max(1)
}

/// The features stage of every subcommand: one scan of the input with accumulators for the
/// given cutoffs (µs, ascending; rows at or after the last are counted as `after_as_of`),
/// checked row accounting, and a clear error when no row is usable.
pub fn scan_histories(
    inputs: &InputSet,
    read: &ReadOptions,
    cutoffs: &[i64],
) -> anyhow::Result<Scanned> {
    let started = std::time::Instant::now();
    let read = &with_duplicates(inputs, read)?;
    let parts = HistoryAcc::partitions(cutoffs, scan_partitions());
    let scanned = scan(inputs, read, parts, HistoryAcc::update_batch)?;
    let stats = scanned.stats;
    if stats.rows_read != inputs.rows() || stats.rows_read != stats.rows_used + stats.rows_rejected
    {
        anyhow::bail!(
            "row accounting mismatch: footer rows {}, read {}, used {}, rejected {}",
            inputs.rows(),
            stats.rows_read,
            stats.rows_used,
            stats.rows_rejected
        );
    }
    if stats.rows_used == 0 {
        return Err(InputError::NoUsableRows {
            path: inputs.spec.clone(),
            read: stats.rows_read,
            reasons: stats.reasons_line(),
        }
        .into());
    }
    reject_gate(&stats, read)?;
    let histories = Histories::from_parts(scanned.parts);
    tracing::info!(
        stage = "features",
        rows_read = stats.rows_read,
        rows_used = stats.rows_used,
        rows_rejected = stats.rows_rejected,
        customers = histories.len(),
        duration_ms = started.elapsed().as_millis() as u64,
        "rejected: {}",
        stats.reasons_line()
    );
    Ok(Scanned {
        histories,
        stats,
        rejects: scanned.rejects,
    })
}

/// The reject-share gate (`validation.max_reject_share`) as a quality-gate error (exit 3).
pub fn reject_gate(stats: &ScanStats, read: &ReadOptions) -> Result<(), QualityGate> {
    stats
        .check_reject_share(read.max_reject_share)
        .map_err(|e| QualityGate(format!("{e}; nothing published")))
}

/// The read options with the input's duplicate rows found (a first, key-columns-only pass;
/// nothing to do when the files have neither `order_id` nor `event_id`).
pub fn with_duplicates(inputs: &InputSet, read: &ReadOptions) -> anyhow::Result<ReadOptions> {
    if !read.deduplicate {
        return Ok(read.clone());
    }
    let dups = churnclv::io::read::duplicate_rows(inputs)?;
    Ok(ReadOptions {
        duplicates: Some(std::sync::Arc::new(dups)),
        ..read.clone()
    })
}

/// What [`scan_histories`] returns.
pub struct Scanned {
    pub histories: Histories,
    pub stats: ScanStats,
    pub rejects: Vec<arrow_array::RecordBatch>,
}

/// Writer settings of `features.parquet`: the cutoff and the crate version in its metadata.
/// Customers per slice of the feature table, computed and written one slice at a time (and one
/// row group of features.parquet per slice).
pub const FEATURE_SLICE: usize = 32 * 1024;

pub fn features_parquet_options(cutoff: chrono::NaiveDate) -> churnclv::io::ParquetOptions {
    churnclv::io::ParquetOptions::default()
        .row_group_rows(FEATURE_SLICE)
        .metadata("churnclv.cutoff", cutoff.to_string())
        .metadata("churnclv.version", env!("CARGO_PKG_VERSION"))
}

/// Schemas of the Parquet outputs, for manifests.
pub fn output_schemas() -> std::collections::BTreeMap<&'static str, Vec<ColumnDesc>> {
    [
        (
            "scores.parquet",
            describe(&churnclv::score::scores_schema()),
        ),
        (
            "features.parquet",
            describe(&churnclv::features::features_schema()),
        ),
        (
            "rejects.parquet",
            describe(&churnclv::io::read::rejects_schema()),
        ),
    ]
    .into_iter()
    .collect()
}

/// Parses `--horizon`, falling back to the config's.
pub fn horizon_days(flag: Option<&str>, cfg: &Config) -> anyhow::Result<u32> {
    // A bad flag is named; the config's horizon was checked when the config was read.
    match flag {
        Some(text) => parse_horizon(text).context("--horizon"),
        None => Ok(cfg.run.horizon.days()),
    }
}

// ---- output bookkeeping shared by the subcommands that publish a partition ----

#[derive(Debug, serde::Serialize)]
pub struct InputEntry {
    /// As found from --events.
    path: String,
    /// Absolute, links resolved: what was read.
    canonical: String,
    bytes: u64,
    rows: u64,
    row_groups: usize,
}

#[derive(serde::Serialize)]
pub struct OutputFile {
    file: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    bytes: u64,
    sha256: String,
}

#[derive(serde::Serialize)]
pub struct ColumnDesc {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
}

pub fn describe(schema: &arrow_schema::Schema) -> Vec<ColumnDesc> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnDesc {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// The manifest entries of the input files.
pub fn input_entries(inputs: &InputSet) -> Vec<InputEntry> {
    inputs
        .files
        .iter()
        .map(|f| InputEntry {
            path: f.path.display().to_string(),
            canonical: f.canonical.display().to_string(),
            bytes: f.bytes,
            rows: f.rows,
            row_groups: f.row_groups,
        })
        .collect()
}

/// Size, SHA-256 and (for tables) row count of each named file of a staging folder.
pub fn output_entries(
    staging: &churnclv::io::Staging,
    names: &[&'static str],
    rows: &[(&'static str, u64)],
) -> anyhow::Result<Vec<OutputFile>> {
    names
        .iter()
        .map(|&name| {
            let (sha256, bytes) = churnclv::io::output::file_digest(&staging.path(name))?;
            Ok(OutputFile {
                file: name,
                rows: rows.iter().find(|(n, _)| *n == name).map(|(_, r)| *r),
                bytes,
                sha256,
            })
        })
        .collect()
}
