//! The plan stage: what the user typed ([`Request`], filled by the command-line adapters from
//! clap) → a checked [`Plan`] that owns the real objects, before any heavy work (ripgrep's
//! two stages). **One set-up sequence** for every subcommand, in this order, each step only
//! when the request asks for it:
//!
//! 1. the model file (`score --model`), read and checked;
//! 2. the config file (or the defaults), `--map`, `--follow-links`, `--penalizer`, the
//!    horizon (`--horizon`, else `run.horizon`), then the whole config validated;
//! 3. output paths checked without creating anything (`io::target`), `--min-auc`'s range,
//!    `--label-horizon`, and the `--as-of` date parsed — so a bad flag fails before any file
//!    is opened;
//! 4. the inputs opened: event files found and their footers and columns checked, or feature
//!    tables read and checked (`score --features`, `train`);
//! 5. as-of resolved: the flag, the table's cutoff, or the day after the latest valid event;
//! 6. output folders created (the lock lives in them).
//!
//! The plan then gives the windows ([`Plan::cutoffs`]), the read options of a scan and the
//! run id: a hash of what determines the output, so a rerun of the same job has the same id
//! and writes identical files.

use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};
use sha2::{Digest, Sha256};

use crate::config::{parse_date, Config, Horizon};
use crate::error::{Context, Error, Result};
use crate::events::EventTypeMap;
use crate::features::table::{Expect, FeatureFile, FeatureTable};
use crate::io::discover::DiscoverOptions;
use crate::io::input::open_inputs_with;
use crate::io::read::{future_limit, latest_event_time};
use crate::io::{target, InputError, InputSet, ReadOptions};
use crate::labels::Cutoffs;
use crate::models::SavedModel;
use crate::stages::publish::InputEntry;
use crate::time::date_of_us;

/// What the user typed; nothing checked yet.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `--config FILE`: TOML config; the defaults without it.
    pub config: Option<PathBuf>,
    /// `--map OURS=THEIRS`, repeatable.
    pub map: Vec<String>,
    /// `--follow-links`.
    pub follow_links: bool,
    /// What to read.
    pub source: Source,
    /// `--as-of DATE` (or `btyd --cutoff`), and the flag's name for messages.
    pub as_of: Option<(String, &'static str)>,
    /// Whether a missing as-of is found in the data (the day after the latest valid event);
    /// without it, no as-of means none (`validate`).
    pub as_of_from_data: bool,
    /// `--horizon H`: overrides `run.horizon`.
    pub horizon: Option<String>,
    /// `features --label-horizon H`.
    pub label_horizon: Option<String>,
    /// `btyd --penalizer X`: overrides `btyd.penalizer`.
    pub penalizer: Option<f64>,
    /// `--min-auc X`: the quality gate.
    pub min_auc: Option<f64>,
    /// `run --memory-limit M`: overrides `run.memory_limit`.
    pub memory_limit: Option<String>,
    /// `run --score-slice N` (hidden, for tests): score and publish by slices of N customers
    /// even without a memory budget.
    pub score_slice: Option<usize>,
    /// `score --model FILE`.
    pub model: Option<PathBuf>,
    /// Output paths, checked first; folders of kind [`OutputKind::Folder`] are created at
    /// step 6.
    pub outputs: Vec<Output>,
}

/// What a subcommand reads.
#[derive(Debug, Clone, Default)]
pub enum Source {
    #[default]
    Nothing,
    /// `--events PATH`: a Parquet file, a folder or a glob.
    Events(String),
    /// `score --features FILE`: one feature table.
    Table(PathBuf),
    /// `train`: the labelled tables and the latest one.
    Training(TrainingFiles),
}

/// `train`'s tables (see [`crate::stages::train::Tables`]).
#[derive(Debug, Clone, Default)]
pub struct TrainingFiles {
    pub tune: Option<PathBuf>,
    pub train: Option<PathBuf>,
    pub validate: PathBuf,
    pub latest: PathBuf,
}

/// An output path and how it is written.
#[derive(Debug, Clone)]
pub struct Output {
    pub flag: &'static str,
    pub path: PathBuf,
    pub kind: OutputKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// One file (its folder is created when it is written).
    File,
    /// A folder created once the inputs are open (an output root: its lock lives there).
    Folder,
    /// A folder created when something is written into it.
    FolderLater,
}

/// What was read, opened and checked.
#[derive(Debug)]
pub enum Inputs {
    Nothing,
    Events(InputSet),
    Table(FeatureTable, InputEntry),
    Training(Training),
}

/// `train`'s tables, read and checked against one another: cutoffs `H` apart.
#[derive(Debug)]
pub struct Training {
    pub tune: Option<FeatureTable>,
    pub train: Option<FeatureTable>,
    pub validate: FeatureTable,
    pub latest: FeatureTable,
    pub files: Vec<InputEntry>,
}

/// Everything checked before the heavy work.
#[derive(Debug)]
pub struct Plan {
    pub config: Config,
    types: EventTypeMap,
    pub model: Option<SavedModel>,
    pub inputs: Inputs,
    /// The as-of date (cutoff), when the subcommand has one.
    pub as_of: Option<NaiveDate>,
    /// Whether it came from a flag (rather than the data).
    pub as_of_given: bool,
    /// `H`, days: `--horizon`, else `run.horizon` (which the config then holds as `Hd`).
    pub horizon_days: u32,
    pub label_horizon_days: Option<u32>,
    pub min_auc: Option<f64>,
    /// The memory budget in bytes: `--memory-limit`, else `run.memory_limit`.
    pub memory_limit: Option<u64>,
    /// `run` scores and publishes by slices of this many customers, never holding the whole
    /// score table: under a memory budget ([`crate::stages::shards::SCORE_SLICE`]), or as
    /// `--score-slice` says; `None`: the score table is built whole.
    pub score_slice: Option<usize>,
}

impl Plan {
    /// The set-up sequence (see the module notes).
    pub fn build(req: &Request) -> Result<Plan> {
        // 1. The model file.
        let model = match &req.model {
            Some(path) => Some(SavedModel::load(path)?),
            None => None,
        };
        // 2. The config.
        let mut config = match &req.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        for m in &req.map {
            config.columns.apply_map(m)?;
        }
        config.input.follow_links |= req.follow_links;
        if let Some(p) = req.penalizer {
            config.btyd.penalizer = p;
        }
        // The error names where the value came from: the flag, or the config key.
        let horizon_days = match &req.horizon {
            Some(text) => text.parse::<Horizon>().context("--horizon")?.days(),
            // The config's horizon was checked when the config was read.
            None => config.run.horizon.days(),
        };
        config.run.horizon = Horizon::from_days(horizon_days)?;
        let types = config.validate()?;
        // 3. Flags and output paths.
        for out in &req.outputs {
            match out.kind {
                OutputKind::File => target::check_file(out.flag, &out.path)?,
                OutputKind::Folder | OutputKind::FolderLater => {
                    target::check_folder(out.flag, &out.path)?
                }
            }
        }
        let memory_limit = match &req.memory_limit {
            Some(text) => Some(
                text.parse::<crate::config::MemoryLimit>()
                    .context("--memory-limit")?
                    .bytes(),
            ),
            None => config.run.memory_limit.as_ref().map(|m| m.bytes()),
        };
        if req.score_slice == Some(0) {
            return Err(Error::Usage("--score-slice: at least 1 customer".into()));
        }
        let score_slice = {
            use crate::stages::shards::{SCORE_SLICE, SLICE_MULTIPLE};
            req.score_slice
                .map(|n| n.div_ceil(SLICE_MULTIPLE) * SLICE_MULTIPLE)
                .or(memory_limit.map(|_| SCORE_SLICE))
        };
        if let Some(x) = req.min_auc {
            if !(0.0..=1.0).contains(&x) {
                return Err(Error::Usage(format!(
                    "--min-auc must be between 0 and 1, got {x}"
                )));
            }
        }
        let label_horizon_days = match &req.label_horizon {
            Some(text) => Some(text.parse::<Horizon>().context("--label-horizon")?.days()),
            None => None,
        };
        let as_of_flag = match &req.as_of {
            Some((text, flag)) => Some((parse_date(text).context(*flag)?, *flag)),
            None => None,
        };
        // 4. The inputs.
        let inputs = match &req.source {
            Source::Nothing => Inputs::Nothing,
            Source::Events(spec) => {
                let options = DiscoverOptions {
                    follow_links: config.input.follow_links,
                };
                Inputs::Events(open_inputs_with(spec, &config.columns, options)?)
            }
            Source::Table(path) => {
                let expect = Expect {
                    flag: "--features",
                    cutoff: as_of_flag.map(|(d, flag)| (d, flag.to_string())),
                    labels: None,
                };
                let (table, entry) = read_table(path, &expect)?;
                Inputs::Table(table, entry)
            }
            Source::Training(files) => Inputs::Training(read_training(
                files,
                as_of_flag.map(|(d, _)| d),
                req.horizon.as_ref().map(|_| horizon_days),
            )?),
        };
        // A training's horizon is its tables' label horizon.
        let mut horizon_days = horizon_days;
        if let Inputs::Training(t) = &inputs {
            horizon_days = t.validate.label_horizon_days().unwrap_or(horizon_days);
            config.run.horizon = Horizon::from_days(horizon_days)?;
        }
        // 5. As-of.
        let as_of = match (&inputs, as_of_flag) {
            (Inputs::Table(t, _), _) => Some(t.cutoff),
            (Inputs::Training(t), _) => Some(t.latest.cutoff),
            (_, Some((d, _))) => Some(d),
            (Inputs::Events(set), None) if req.as_of_from_data => Some(latest_as_of(set, &config)?),
            _ => None,
        };
        // 6. Output folders.
        for out in req.outputs.iter().filter(|o| o.kind == OutputKind::Folder) {
            target::create_folder(out.flag, &out.path, &out.path)?;
        }
        Ok(Plan {
            config,
            types,
            model,
            inputs,
            as_of,
            as_of_given: as_of_flag.is_some(),
            horizon_days,
            label_horizon_days,
            min_auc: req.min_auc,
            memory_limit,
            score_slice,
        })
    }

    /// The event files (subcommands that read events).
    pub fn events(&self) -> Result<&InputSet> {
        match &self.inputs {
            Inputs::Events(set) => Ok(set),
            _ => Err(Error::Internal("this subcommand reads no events".into())),
        }
    }

    /// The as-of date (subcommands that have one).
    pub fn as_of(&self) -> Result<NaiveDate> {
        self.as_of
            .ok_or_else(|| Error::Internal("this subcommand has no as-of date".into()))
    }

    /// `run`'s windows: `tv, t0, t1` at `H` steps before as-of.
    pub fn cutoffs(&self) -> Result<Cutoffs> {
        Ok(Cutoffs::new(self.as_of()?, self.horizon_days))
    }

    /// Validation settings of a scan that uses rows before `end` (µs; rows at or after it are
    /// `after_as_of`). The future limit takes `end` as the as-of when the as-of was given.
    pub fn read_options(&self, end_us: i64) -> ReadOptions {
        let cfg = &self.config;
        ReadOptions {
            as_of_us: end_us,
            future_us: future_limit_us(cfg, self.as_of_given.then_some(end_us)),
            max_abs_amount: cfg.validation.max_abs_amount,
            event_types: self.types.clone(),
            duplicates: None,
            deduplicate: cfg.validation.deduplicate,
            max_reject_share: cfg.validation.max_reject_share,
            shard: None,
        }
    }

    /// The manifest entries of what was read.
    pub fn input_entries(&self) -> Vec<InputEntry> {
        match &self.inputs {
            Inputs::Nothing => Vec::new(),
            Inputs::Events(set) => InputEntry::of_events(set),
            Inputs::Table(_, entry) => vec![entry.clone()],
            Inputs::Training(t) => t.files.clone(),
        }
    }

    /// A run id that depends only on what determines the output (version, config, windows,
    /// the inputs' canonical paths, sizes and rows): `YYYYMMDD-<12 hex>`. `./x`, `x`, an
    /// absolute path or a link to it name the same run.
    pub fn run_id(&self) -> Result<String> {
        let cutoffs = self.cutoffs()?;
        let mut h = Sha256::new();
        h.update(env!("CARGO_PKG_VERSION"));
        h.update(serde_json::to_string(&self.config).unwrap_or_default());
        h.update(cutoffs.as_of.to_string());
        h.update(cutoffs.horizon_days.to_le_bytes());
        for f in self.input_entries() {
            h.update(f.canonical);
            h.update(f.bytes.to_le_bytes());
            h.update(f.rows.to_le_bytes());
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(format!("{}-{hex}", cutoffs.as_of.format("%Y%m%d")))
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
    future_limit(started_us(), as_of_given_us, cfg.validation.max_future.us())
}

/// The default as-of: the day after the latest valid event time in the input (rows too far
/// in the future to be plausible, `future_event`, are ignored).
fn latest_as_of(inputs: &InputSet, cfg: &Config) -> Result<NaiveDate> {
    match latest_event_time(inputs, future_limit_us(cfg, None))? {
        Some(us) => Ok(date_of_us(us) + Duration::days(1)),
        None => Err(InputError::NoUsableRows {
            path: inputs.spec.clone(),
            read: inputs.rows(),
            reasons: "no valid event_time".into(),
        }
        .into()),
    }
}

/// Reads and checks a feature table, with its manifest entry.
fn read_table(path: &Path, expect: &Expect) -> Result<(FeatureTable, InputEntry)> {
    let file = FeatureFile::open(path, expect.flag)?;
    let row_groups = file.row_groups();
    let table = file.read(expect)?;
    let named = || format!("{} {}", expect.flag, path.display());
    let bytes = std::fs::metadata(path).with_context(named)?.len();
    let canonical = std::fs::canonicalize(path).with_context(named)?;
    let entry = InputEntry {
        path: path.display().to_string(),
        canonical: canonical.display().to_string(),
        bytes,
        rows: table.len() as u64,
        row_groups,
    };
    Ok((table, entry))
}

/// Reads `train`'s tables. As-of is the latest table's cutoff (or `--as-of` for a table
/// without metadata), `H` the label horizon (`--horizon`, or the validation table's
/// metadata); each labelled table must then sit at its place: `as_of − H`, `− 2H`, `− 3H`.
fn read_training(
    files: &TrainingFiles,
    as_of_flag: Option<NaiveDate>,
    horizon_flag: Option<u32>,
) -> Result<Training> {
    let latest = read_table(
        &files.latest,
        &Expect {
            flag: "--latest",
            cutoff: as_of_flag.map(|d| (d, "--as-of".to_string())),
            labels: None,
        },
    )?;
    let as_of = latest.0.cutoff;
    let horizon = match horizon_flag {
        Some(h) => Some(h),
        None => FeatureFile::open(&files.validate, "--validate")?.label_horizon()?,
    };
    let horizon_from = if horizon_flag.is_some() {
        "--horizon"
    } else {
        "--validate's metadata"
    };
    let read = |flag: &'static str, path: &Path, steps: i64| {
        let expect = Expect {
            flag,
            cutoff: horizon.map(|h| {
                let date = as_of - Duration::days(steps * i64::from(h));
                let why = format!("--latest's cutoff {as_of} − {steps} × {h} days");
                (date, why)
            }),
            labels: Some(horizon.map(|h| (h, horizon_from.to_string()))),
        };
        read_table(path, &expect)
    };
    let validate = read("--validate", &files.validate, 1)?;
    let train = files
        .train
        .as_deref()
        .map(|p| read("--train", p, 2))
        .transpose()?;
    let tune = files
        .tune
        .as_deref()
        .map(|p| read("--tune", p, 3))
        .transpose()?;
    // In the order of the tables' dates.
    let files = [
        tune.as_ref(),
        train.as_ref(),
        Some(&validate),
        Some(&latest),
    ]
    .into_iter()
    .flatten()
    .map(|(_, entry)| entry.clone())
    .collect();
    Ok(Training {
        tune: tune.map(|t| t.0),
        train: train.map(|t| t.0),
        validate: validate.0,
        latest: latest.0,
        files,
    })
}
