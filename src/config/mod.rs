//! The one configuration struct: TOML (`churnclv.toml`) merged with command-line flags, then
//! validated before any heavy work starts. Every key has a documented default
//! (see `docs/config.md`), so the embedded default needs nothing but an events path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::{EventKind, EventTypeMap};
use crate::models::btyd::ModelKind;
use crate::models::value::{DAYS_PER_MONTH_RANGE, MONTHLY_DISCOUNT_RANGE};
use crate::time;

mod choice;
mod gates;
mod spark;

use choice::{model_key, refused_choice};
pub use choice::{parse_date, ClassWeight, Horizon, MaxFuture, MemoryLimit, HORIZON_DAYS};
pub use gates::GatesConfig;
pub use spark::SparkConfig;

/// Errors in configuration files, flags or their combination (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid config: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid --map '{0}': expected our_name=their_name, e.g. customer_id=user_id")]
    MapSyntax(String),
    #[error("unknown column '{0}' in column mapping; known: customer_id, event_time, event_type, amount, order_id, event_id, quantity, channel, category")]
    UnknownColumn(String),
    #[error("[event_types] '{raw}' maps to unknown event type '{target}'")]
    UnknownEventType { raw: String, target: String },
    #[error("invalid horizon '{0}': expected days like 90d, weeks like 13w, or a plain number of days ({min} to {max})", min = HORIZON_DAYS.start(), max = HORIZON_DAYS.end())]
    Horizon(String),
    #[error("invalid validation.max_future '{0}': expected hours like 12h, days like 1d, weeks like 1w, or a plain number of days (0 to 3650 days)")]
    MaxFuture(String),
    #[error("invalid memory limit '{0}': expected bytes with a unit like 4GB, 512MB or 2GiB (at least 64MiB)")]
    MemoryLimit(String),
    #[error("invalid date '{0}': expected YYYY-MM-DD")]
    Date(String),
    #[error("column mapping gives input column '{column}' two roles, {first} and {second}; map one of them to another column (an optional role is switched off with --map {second}= or {second} = \"\" under [columns])")]
    MapCollision {
        column: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("column mapping: the required column {0} cannot be switched off (mapped to '')")]
    RequiredUnmapped(&'static str),
    /// A value of a config key that its own parser refused (the cause says why).
    #[error("{key}")]
    Key {
        key: &'static str,
        #[source]
        source: Box<ConfigError>,
    },
    #[error("{key} must be {expected}, got {value}")]
    Range {
        key: &'static str,
        expected: &'static str,
        value: String,
    },
}

/// Input column names: ours → theirs. Unset optional columns are used when a column of that
/// name exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    pub customer_id: String,
    pub event_time: String,
    pub event_type: String,
    pub amount: String,
    pub order_id: String,
    pub event_id: String,
    pub quantity: String,
    pub channel: String,
    pub category: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            customer_id: "customer_id".into(),
            event_time: "event_time".into(),
            event_type: "event_type".into(),
            amount: "amount".into(),
            order_id: "order_id".into(),
            event_id: "event_id".into(),
            quantity: "quantity".into(),
            channel: "channel".into(),
            category: "category".into(),
        }
    }
}

impl Columns {
    /// Sets one mapping from a `--map our=their` flag. An empty `their` (`--map order_id=`)
    /// switches an optional column off; [`Columns::validate`] refuses it for a required one.
    pub fn apply_map(&mut self, spec: &str) -> Result<(), ConfigError> {
        let (ours, theirs) = spec
            .split_once('=')
            .map(|(a, b)| (a.trim(), b.trim()))
            .filter(|(a, _)| !a.is_empty())
            .ok_or_else(|| ConfigError::MapSyntax(spec.to_string()))?;
        let slot = match ours {
            "customer_id" => &mut self.customer_id,
            "event_time" => &mut self.event_time,
            "event_type" => &mut self.event_type,
            "amount" => &mut self.amount,
            "order_id" => &mut self.order_id,
            "event_id" => &mut self.event_id,
            "quantity" => &mut self.quantity,
            "channel" => &mut self.channel,
            "category" => &mut self.category,
            other => return Err(ConfigError::UnknownColumn(other.to_string())),
        };
        *slot = theirs.to_string();
        Ok(())
    }

    /// Every role with the input column it reads, in the documented order; the first three
    /// are required.
    pub fn roles(&self) -> [(&'static str, &str); 9] {
        [
            ("customer_id", &self.customer_id),
            ("event_time", &self.event_time),
            ("event_type", &self.event_type),
            ("amount", &self.amount),
            ("order_id", &self.order_id),
            ("event_id", &self.event_id),
            ("quantity", &self.quantity),
            ("channel", &self.channel),
            ("category", &self.category),
        ]
    }

    /// One input column has at most one role, whether the roles were mapped explicitly or one
    /// keeps its default name (`--map order_id=event_id` while `event_id` reads `event_id` too):
    /// otherwise an id would silently double as a deduplication key, or an amount column as a
    /// quantity. Checked without the files, so a contradictory mapping fails before any is
    /// opened; a switched-off optional role (empty name) collides with nothing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let roles = self.roles();
        for (i, (role, column)) in roles.iter().enumerate() {
            if column.is_empty() {
                if i < 3 {
                    return Err(ConfigError::RequiredUnmapped(role));
                }
                continue;
            }
            if let Some((first, _)) = roles[..i].iter().find(|(_, c)| c == column) {
                return Err(ConfigError::MapCollision {
                    column: column.to_string(),
                    first,
                    second: role,
                });
            }
        }
        Ok(())
    }
}

/// `[input]`: how input files are found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Follow links to folders met while searching the input (`--follow-links`); each real
    /// folder and file is still read once.
    pub follow_links: bool,
}

/// `[run]`: time windows and reproducibility.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Prediction horizon H, e.g. "90d" or "13w".
    pub horizon: Horizon,
    /// Seed for everything random (customer splits).
    pub seed: u64,
    /// Minimum customers in the out-of-time training window before falling back to a
    /// customer split inside the latest window.
    pub min_train_customers: usize,
    /// Memory budget (`--memory-limit` overrides): when the customers' histories would not
    /// fit, `run` processes them in hash shards, one pass over the input each. Unset: one
    /// pass, no budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<MemoryLimit>,
    /// Shards to split the customers into, whatever the budget says (0: from the budget).
    pub shards: u32,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            horizon: Horizon::default(),
            seed: 42,
            min_train_customers: 50,
            memory_limit: None,
            shards: 0,
        }
    }
}

/// The largest `validation.max_abs_amount` accepted: amounts are summed as i64 micro-units.
pub const MAX_ABS_AMOUNT_LIMIT: f64 = 1e12;

/// `[validation]`: what counts as a usable row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Amounts with a larger absolute value are rejected (`amount_out_of_range`).
    pub max_abs_amount: f64,
    /// Reject later rows with the key of an earlier one (`duplicate_key`); costs a first pass
    /// over the key columns when the input has `order_id` or `event_id`.
    pub deduplicate: bool,
    /// Rows later than the wall clock at the run's start (or a later `--as-of`) plus this are
    /// rejected as `future_event`: "1d", "12h", "2w" or a number of days (0 to 3650 days).
    pub max_future: MaxFuture,
    /// A run whose share of unusable rows (every reject reason except `after_as_of`, over the
    /// rows not merely after as-of) exceeds this stops with exit 3 and publishes nothing
    /// (0 to 1; 1 = never).
    pub max_reject_share: f64,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            max_abs_amount: 1e9,
            deduplicate: true,
            max_future: MaxFuture::default(),
            // Healthy feeds measured 0% (docs/config.md); a broken column or unit rejects
            // most rows, one bad source of several a third or more.
            max_reject_share: 0.2,
        }
    }
}

/// `[churn]`: the logistic churn model's hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnConfig {
    /// L2 strength on the summed log loss (linfa-logistic's `alpha`; the intercept is free).
    pub alpha: f64,
    /// Newton iteration cap (a fit needs 2–10): reaching it is an error.
    pub max_iterations: u64,
    /// Wall-clock limit for one fit, seconds.
    pub timeout_seconds: u64,
    /// Candidate L2 strengths tried by time-ordered validation (fit at as_of − 3H, validated
    /// on [as_of − 2H, as_of − H) by log loss); empty = always use `alpha`.
    pub alpha_grid: Vec<f64>,
    /// `none` or `balanced` (minority class replicated, intercept corrected).
    pub class_weight: ClassWeight,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            alpha: 1.0,
            max_iterations: 200,
            timeout_seconds: 300,
            alpha_grid: vec![0.1, 1.0, 10.0, 100.0, 1000.0],
            class_weight: ClassWeight::None,
        }
    }
}

/// `[btyd]`: the probabilistic value models (BG/NBD family + Gamma-Gamma).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BtydConfig {
    /// Transaction model: `bgnbd`, `mbgnbd` or `pnbd` (Pareto/NBD), as [`ModelKind::key`]
    /// names them.
    #[serde(with = "model_key")]
    pub model: ModelKind,
    /// L2 penalty on the parameters (lifetimes' convention; 0 = plain maximum likelihood).
    pub penalizer: f64,
    /// Monthly discount rate of the CLV.
    pub monthly_discount: f64,
    /// Days per month for discounting (365.25 / 12).
    pub days_per_month: f64,
    /// Optimiser iteration cap of one fit.
    pub max_iterations: u64,
    /// Wall-clock limit of one fit, seconds.
    pub timeout_seconds: u64,
}

impl Default for BtydConfig {
    fn default() -> Self {
        BtydConfig {
            model: ModelKind::BgNbd,
            penalizer: 0.0,
            monthly_discount: 0.01,
            days_per_month: time::DAYS_PER_MONTH,
            max_iterations: 500,
            timeout_seconds: 120,
        }
    }
}

/// The whole configuration. Unknown keys are errors, so a typo never silently falls back to
/// a default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub columns: Columns,
    pub input: InputConfig,
    /// Raw event_type value → canonical event type (e.g. `"order" = "purchase"`).
    pub event_types: BTreeMap<String, String>,
    pub run: RunConfig,
    pub validation: ValidationConfig,
    pub churn: ChurnConfig,
    pub btyd: BtydConfig,
    pub tiers: crate::segment::TierConfig,
    pub gates: GatesConfig,
    /// `[spark]`: read by the Spark driver only (docs/scale-out.md).
    pub spark: SparkConfig,
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|refusal| match refusal {
            Refusal::Value(e) => e,
            Refusal::Toml(message) => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
        })
    }

    /// Parses TOML text; the error is a one-line message.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        Config::parse(text).map_err(|refusal| match refusal {
            Refusal::Value(e) => crate::diag::error_chain(&e),
            Refusal::Toml(message) => message,
        })
    }

    /// Parses TOML text. The choice values ([`refused_choice`]) are parsed here, once; one that its
    /// parser refuses comes back as that parser's error, which names the key and the value
    /// like any out-of-range setting (`churn.class_weight must be none or balanced, got
    /// heavy`) rather than as a TOML message about the file.
    fn parse(text: &str) -> Result<Config, Refusal> {
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            // Serde carries only the text of an error: the typed one is found again by
            // running the key's parser on the value the file holds (a string, or the error
            // is about the type and stays a TOML message).
            let key = e.path().to_string();
            let refused = text.parse::<toml::Table>().ok().and_then(|table| {
                let (section, name) = key.split_once('.')?;
                let value = table.get(section)?.get(name)?.as_str()?;
                refused_choice(&key, value)
            });
            match refused {
                Some(err) => Refusal::Value(err),
                None => Refusal::Toml(e.inner().message().replace('\n', " ").trim().to_string()),
            }
        })
    }

    /// Checks every value; returns the event-type map on success.
    pub fn validate(&self) -> Result<EventTypeMap, ConfigError> {
        self.columns.validate()?;
        let v = self.validation.max_abs_amount;
        // Money is summed in integer micro-units (i64): one amount above ~9.2e12 would be
        // clamped silently. 1e12 keeps every accepted amount exact, with room for sums.
        if !(v.is_finite() && v > 0.0 && v <= MAX_ABS_AMOUNT_LIMIT) {
            return Err(ConfigError::Range {
                key: "validation.max_abs_amount",
                expected: "a positive number up to 1e12 (money is summed in integer micro-units)",
                value: v.to_string(),
            });
        }
        let share = self.validation.max_reject_share;
        if !(0.0..=1.0).contains(&share) {
            return Err(ConfigError::Range {
                key: "validation.max_reject_share",
                expected: "a share between 0 and 1",
                value: share.to_string(),
            });
        }
        let a = self.churn.alpha;
        if !(a.is_finite() && a >= 0.0) {
            return Err(ConfigError::Range {
                key: "churn.alpha",
                expected: "a finite number >= 0",
                value: a.to_string(),
            });
        }
        if let Some(a) = self
            .churn
            .alpha_grid
            .iter()
            .find(|a| !(a.is_finite() && **a >= 0.0))
        {
            return Err(ConfigError::Range {
                key: "churn.alpha_grid",
                expected: "finite numbers >= 0",
                value: a.to_string(),
            });
        }
        if self.churn.max_iterations == 0 {
            return Err(ConfigError::Range {
                key: "churn.max_iterations",
                expected: "at least 1",
                value: "0".into(),
            });
        }
        if self.churn.timeout_seconds == 0 {
            return Err(ConfigError::Range {
                key: "churn.timeout_seconds",
                expected: "at least 1",
                value: "0".into(),
            });
        }
        self.tiers
            .validate()
            .map_err(|(key, expected, value)| ConfigError::Range {
                key,
                expected,
                value: value.to_string(),
            })?;
        self.gates.validate()?;
        self.spark.validate()?;
        let b = &self.btyd;
        for (key, v, ok) in [
            ("btyd.penalizer", b.penalizer, b.penalizer >= 0.0),
            (
                "btyd.monthly_discount",
                b.monthly_discount,
                MONTHLY_DISCOUNT_RANGE.contains(&b.monthly_discount),
            ),
            (
                "btyd.days_per_month",
                b.days_per_month,
                DAYS_PER_MONTH_RANGE.contains(&b.days_per_month),
            ),
        ] {
            if !(v.is_finite() && ok) {
                return Err(ConfigError::Range {
                    key,
                    expected: "a finite number in its documented range",
                    value: v.to_string(),
                });
            }
        }
        for (key, v) in [
            ("btyd.max_iterations", b.max_iterations),
            ("btyd.timeout_seconds", b.timeout_seconds),
        ] {
            if v == 0 {
                return Err(ConfigError::Range {
                    key,
                    expected: "at least 1",
                    value: "0".into(),
                });
            }
        }
        let mut aliases = BTreeMap::new();
        for (raw, target) in &self.event_types {
            let kind =
                EventKind::from_name(target).ok_or_else(|| ConfigError::UnknownEventType {
                    raw: raw.clone(),
                    target: target.clone(),
                })?;
            aliases.insert(raw.clone(), kind);
        }
        Ok(EventTypeMap::new(&aliases))
    }
}

/// Why a config text was refused.
enum Refusal {
    /// A choice value its own parser refused: the error names the key and the value.
    Value(ConfigError),
    /// Anything else: the TOML message, on one line.
    Toml(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discounting_ranges_are_the_model_files() {
        for (toml, ok) in [
            ("days_per_month = 30.4375", true),
            ("days_per_month = 1.0", true),
            ("days_per_month = 0.5", false),
            ("days_per_month = 367.0", false),
            ("monthly_discount = 0.0", true),
            ("monthly_discount = -0.01", false),
            ("monthly_discount = 1.0", false),
        ] {
            let cfg = Config::from_toml(&format!("[btyd]\n{toml}\n")).expect("toml");
            assert_eq!(cfg.validate().is_ok(), ok, "{toml}");
        }
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let cfg =
            Config::from_toml("[columns]\ncustomer_id = \"user_id\"\n[run]\nhorizon = \"30d\"\n")
                .map_err(|e| e.to_string());
        let cfg = cfg.unwrap_or_default();
        assert_eq!(cfg.columns.customer_id, "user_id");
        assert_eq!(cfg.run.horizon.to_string(), "30d");
        assert_eq!(cfg.columns.event_time, "event_time");
        let err = Config::from_toml("[run]\nhorizn = \"30d\"\n")
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("unknown field `horizn`"), "{err}");
    }

    #[test]
    fn map_flags() {
        let mut c = Columns::default();
        assert!(c.apply_map("customer_id=user_id").is_ok());
        assert_eq!(c.customer_id, "user_id");
        assert_eq!(
            c.apply_map("customer_id").map_err(|e| e.to_string()).err().as_deref(),
            Some("invalid --map 'customer_id': expected our_name=their_name, e.g. customer_id=user_id")
        );
        assert!(matches!(
            c.apply_map("colour=x"),
            Err(ConfigError::UnknownColumn(_))
        ));
        assert!(matches!(c.apply_map("=x"), Err(ConfigError::MapSyntax(_))));
    }

    #[test]
    fn one_column_one_role() {
        let msg = |c: &Columns| c.validate().map_err(|e| e.to_string()).err();
        let mut c = Columns::default();
        assert_eq!(msg(&c), None);
        // Two explicit mappings to one column.
        c.customer_id = "x".into();
        c.order_id = "x".into();
        assert_eq!(
            msg(&c).as_deref(),
            Some("column mapping gives input column 'x' two roles, customer_id and order_id; map one of them to another column (an optional role is switched off with --map order_id= or order_id = \"\" under [columns])")
        );
        // A mapping onto another role's default name.
        let mut c = Columns::default();
        assert!(c.apply_map("order_id=event_id").is_ok());
        assert!(msg(&c).is_some_and(|m| m.starts_with(
            "column mapping gives input column 'event_id' two roles, order_id and event_id;"
        )));
        // ... resolved by switching the other role off.
        assert!(c.apply_map("event_id=").is_ok());
        assert_eq!(msg(&c), None);
        // A required role cannot be switched off.
        assert!(c.apply_map("customer_id=").is_ok());
        assert_eq!(
            msg(&c).as_deref(),
            Some("column mapping: the required column customer_id cannot be switched off (mapped to '')")
        );
    }

    /// Why `validate` refuses `cfg`, if it does.
    fn refusal(cfg: &Config) -> Option<String> {
        cfg.validate().err().map(|e| e.to_string())
    }

    #[test]
    fn validation_rejects_bad_values() {
        let mut cfg = Config::default();
        assert!(cfg.validate().is_ok());
        cfg.event_types.insert("order".into(), "buy".into());
        assert_eq!(
            refusal(&cfg).as_deref(),
            Some("[event_types] 'order' maps to unknown event type 'buy'")
        );
        let mut cfg = Config::default();
        cfg.validation.max_reject_share = 1.5;
        assert_eq!(
            refusal(&cfg).as_deref(),
            Some("validation.max_reject_share must be a share between 0 and 1, got 1.5")
        );
        let mut cfg = Config::default();
        cfg.validation.max_abs_amount = f64::NAN;
        assert!(cfg.validate().is_err());
        cfg.validation.max_abs_amount = 1e12;
        assert!(cfg.validate().is_ok());
        cfg.validation.max_abs_amount = 1.0000001e12;
        assert!(cfg.validate().is_err());
    }
}
