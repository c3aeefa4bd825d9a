//! Command-line front end: one file per subcommand, each an adapter — its clap `Args` (whose
//! `///` docs are the manual), turned into a [`Request`], a [`churnclv::plan::Plan`], the
//! library's stage calls, and what it prints. No job logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use churnclv::plan::{Request, Source};

pub mod btyd;
pub mod cuts;
pub mod features;
pub mod finish;
pub mod generate;
pub mod history;
mod jsonlog;
pub mod progress;
pub mod publish;
pub mod run;
pub mod score;
pub mod sql;
pub mod train;
pub mod validate;

/// churnclv — churn and customer-lifetime-value scoring from Parquet event histories.
///
/// The nightly job is `churnclv run --events PATH --out DIR`: it reads events, builds RFM
/// features, trains and evaluates a churn model out of time, scores every customer as of
/// `--as-of` (churn probability, BTYD P(alive), expected purchases and CLV), and publishes
/// one partition per table (DIR/scores/as_of=YYYY-MM-DD/, DIR/features/…, DIR/rejects/…)
/// and the run's DIR/runs/as_of=YYYY-MM-DD/ (manifest, _SUCCESS), each in one step.
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
    /// Score customers with a saved model.json (no training): a feature table, or events as of
    /// a date.
    Score(score::Args),
    /// Check an event input and print rows, customers, time range, event types and rejects.
    Validate(validate::Args),
    /// Fit a BTYD model (BG/NBD, MBG/NBD, Pareto/NBD, Gamma-Gamma) and print its parameters.
    Btyd(btyd::Args),
    /// Write the per-customer feature table at one cutoff (as-of date) to a Parquet file, with
    /// the labels of the window after it on request.
    Features(features::Args),
    /// Fit and evaluate the models from labelled feature tables alone (no events); write
    /// model.json and metrics.json.
    Train(train::Args),
    /// Write synthetic event histories with a known ground truth.
    Generate(generate::Args),
    /// List the published runs of an output folder (and those the drift gates refused).
    History(history::Args),
    /// Scoring in shards: the whole table's cut points from every bucket's raw keys (`score
    /// --raw`), for `score --cuts`.
    Cuts(cuts::Args),
    /// Scoring in shards: publish every bucket's features and score part as one partition.
    Publish(publish::Args),
    /// Print the feature stage as Spark SQL (features, or rejects by reason) for a Spark
    /// engine: the scale-out path (docs/scale-out.md).
    Sql(sql::Args),
}

/// Input selection shared by the subcommands that read events.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Events: a Parquet file, a directory of *.parquet (searched recursively; hive-style
    /// key=value/ folders allowed), or a glob such as 'events/*.parquet'.
    #[arg(long, value_name = "PATH")]
    pub events: String,
    #[command(flatten)]
    pub reading: ReadingArgs,
}

/// How events are read: column names, the config, links.
#[derive(Debug, Args)]
pub struct ReadingArgs {
    /// Map a column name: --map customer_id=user_id (repeatable). Known names: customer_id,
    /// event_time, event_type, amount, order_id, event_id, quantity, channel, category.
    #[arg(long = "map", value_name = "OURS=THEIRS")]
    pub map: Vec<String>,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Follow links to folders met while searching --events (config input.follow_links). Off
    /// by default: a link such as latest -> 2025-12-30/ would read the same files twice. Each
    /// real file is read once either way.
    #[arg(long)]
    pub follow_links: bool,
}

/// The config file.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// TOML config file (columns, event type aliases, windows, model settings); see
    /// docs/config.md. Flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl InputArgs {
    /// The request of a subcommand that reads these events.
    pub fn request(&self) -> Request {
        Request {
            source: Source::Events(self.events.clone()),
            ..self.reading.request()
        }
    }
}

impl ReadingArgs {
    /// The request with these settings and nothing to read yet.
    pub fn request(&self) -> Request {
        Request {
            map: self.map.clone(),
            follow_links: self.follow_links,
            ..self.config.request()
        }
    }
}

impl ConfigArg {
    /// The request with this config and nothing to read yet.
    pub fn request(&self) -> Request {
        Request {
            config: self.config.clone(),
            ..Request::default()
        }
    }
}

/// Runs one subcommand.
pub fn dispatch(command: Command) -> churnclv::Result<()> {
    match command {
        Command::Run(a) => run::run(a),
        Command::Score(a) => score::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Btyd(a) => btyd::run(a),
        Command::Features(a) => features::run(a),
        Command::Train(a) => train::run(a),
        Command::Generate(a) => generate::run(a),
        Command::History(a) => history::run(a),
        Command::Cuts(a) => cuts::run(a),
        Command::Publish(a) => publish::run(a),
        Command::Sql(a) => sql::run(a),
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

/// Writes to standard output. A closed pipe (`churnclv sql features | head`) ends the output
/// quietly, with success: the work is done and the reader wanted no more of it.
pub fn print(text: std::fmt::Arguments<'_>) -> Result<(), churnclv::Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_fmt(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
