//! The config values that are choices, parsed once when the config is read and typed from
//! then on: the horizon ([`Horizon`]), the future tolerance ([`MaxFuture`]), the churn class
//! weighting ([`ClassWeight`]) and the BTYD transaction model ([`ModelKind`], by its
//! [`ModelKind::key`]). Each writes back the text it was read from, so the manifest's config
//! shows what the operator wrote; a refused value is an error naming its key and value.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConfigError;
use crate::models::btyd::ModelKind;
use crate::time::{self, DAY_US, HOUR_US, WEEK_DAYS};

/// The keys whose values are choices, parsed once when the config is read (into
/// [`Horizon`], [`MaxFuture`], [`ClassWeight`], [`ModelKind`]): the error of the parser of
/// `key` for the text `value`, if it refuses it.
pub(super) fn refused_choice(key: &str, value: &str) -> Option<ConfigError> {
    match key {
        "run.horizon" => value.parse::<Horizon>().err().map(|e| ConfigError::Key {
            key: "run.horizon",
            source: Box::new(e),
        }),
        "validation.max_future" => value.parse::<MaxFuture>().err(),
        "run.memory_limit" => value.parse::<MemoryLimit>().err(),
        "churn.class_weight" => value.parse::<ClassWeight>().err(),
        "btyd.model" => model_key::parse(value).err(),
        _ => None,
    }
}

/// The horizons accepted, in days: by `--horizon` / `run.horizon` and in a model file's
/// `horizon_days`.
pub const HORIZON_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

/// The longest `validation.max_future`, in days.
const MAX_FUTURE_DAYS: i64 = 3650;

/// The prediction horizon H (`run.horizon`, `--horizon`): `90d`, `13w`, or a plain number of
/// days, parsed once. It serialises back to the text it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Horizon {
    text: String,
    days: u32,
}

impl Horizon {
    /// The text it was read from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// H in days.
    pub fn days(&self) -> u32 {
        self.days
    }

    /// A horizon of `days` days, written `{days}d`.
    pub fn from_days(days: u32) -> Result<Horizon, ConfigError> {
        format!("{days}d").parse()
    }
}

impl Default for Horizon {
    fn default() -> Self {
        Horizon {
            text: "90d".into(),
            days: 90,
        }
    }
}

impl FromStr for Horizon {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Horizon, ConfigError> {
        time::parse_span(text, &[('d', 1), ('w', WEEK_DAYS)], 1)
            .and_then(|d| u32::try_from(d).ok())
            .filter(|d| HORIZON_DAYS.contains(d))
            .map(|days| Horizon {
                text: text.to_string(),
                days,
            })
            .ok_or_else(|| ConfigError::Horizon(text.to_string()))
    }
}

/// How far past the wall clock (or a later `--as-of`) an event may be dated
/// (`validation.max_future`): `12h`, `1d`, `1w` or a plain number of days, 0 to 3650 days,
/// parsed once. It serialises back to the text it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MaxFuture {
    text: String,
    us: i64,
}

impl MaxFuture {
    /// The text it was read from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The tolerance in µs.
    pub fn us(&self) -> i64 {
        self.us
    }
}

impl Default for MaxFuture {
    fn default() -> Self {
        MaxFuture {
            text: "1d".into(),
            us: DAY_US,
        }
    }
}

impl FromStr for MaxFuture {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<MaxFuture, ConfigError> {
        let units = [('h', HOUR_US), ('d', DAY_US), ('w', WEEK_DAYS * DAY_US)];
        time::parse_span(text, &units, DAY_US)
            .filter(|us| (0..=MAX_FUTURE_DAYS * DAY_US).contains(us))
            .map(|us| MaxFuture {
                text: text.to_string(),
                us,
            })
            .ok_or_else(|| ConfigError::MaxFuture(text.to_string()))
    }
}

/// `churn.class_weight`: how the churn fit weighs the two classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ClassWeight {
    /// Every customer counts once.
    #[default]
    None,
    /// The minority class replicated to balance the classes, the intercept corrected.
    Balanced,
}

impl ClassWeight {
    /// Its name in config.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassWeight::None => "none",
            ClassWeight::Balanced => "balanced",
        }
    }
}

impl FromStr for ClassWeight {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<ClassWeight, ConfigError> {
        [ClassWeight::None, ClassWeight::Balanced]
            .into_iter()
            .find(|w| w.as_str() == text)
            .ok_or_else(|| ConfigError::Range {
                key: "churn.class_weight",
                expected: "none or balanced",
                value: text.to_string(),
            })
    }
}

/// A choice as text: read with its `FromStr` (serde's `try_from = "String"`), written and
/// displayed as its `as_str`.
macro_rules! choice_text {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = ConfigError;

            fn try_from(text: String) -> Result<$t, ConfigError> {
                text.parse()
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

choice_text!(Horizon, MaxFuture, ClassWeight, MemoryLimit);

/// The memory budget of a run (`run.memory_limit`, `--memory-limit`): a number of bytes with
/// an optional unit — `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB`
/// (powers of 1024), case-insensitive, e.g. `4GB`, `2GiB`, `512 MB`. At least 64 MiB.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MemoryLimit {
    text: String,
    bytes: u64,
}

/// The smallest budget accepted: below it not even the reader's buffers fit.
pub const MIN_MEMORY_LIMIT: u64 = 64 << 20;

impl MemoryLimit {
    /// The text it was read from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl FromStr for MemoryLimit {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<MemoryLimit, ConfigError> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (&t[..split], t[split..].trim());
        let scale: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(ConfigError::MemoryLimit(text.to_string())),
        };
        number
            .parse::<f64>()
            .ok()
            .map(|n| n * scale as f64)
            .filter(|b| b.is_finite() && *b >= MIN_MEMORY_LIMIT as f64 && *b < u64::MAX as f64)
            .map(|b| MemoryLimit {
                text: text.to_string(),
                bytes: b as u64,
            })
            .ok_or_else(|| ConfigError::MemoryLimit(text.to_string()))
    }
}

/// `btyd.model` as config writes it: [`ModelKind::key`] (`bgnbd`, `mbgnbd`, `pnbd`). The
/// model files keep the kind's own serde names, so the config's are kept apart here.
pub(super) mod model_key {
    use super::*;

    pub fn parse(text: &str) -> Result<ModelKind, ConfigError> {
        ModelKind::from_key(text).ok_or_else(|| ConfigError::Range {
            key: "btyd.model",
            expected: "one of bgnbd, mbgnbd, pnbd",
            value: text.to_string(),
        })
    }

    pub fn serialize<S: Serializer>(kind: &ModelKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.key())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ModelKind, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Parses `YYYY-MM-DD` (a flag's date; the caller names the flag).
pub fn parse_date(text: &str) -> Result<NaiveDate, ConfigError> {
    time::parse_date(text).ok_or_else(|| ConfigError::Date(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_horizon(text: &str) -> Result<u32, ConfigError> {
        text.parse::<Horizon>().map(|h| h.days())
    }

    fn parse_max_future(text: &str) -> Result<i64, ConfigError> {
        text.parse::<MaxFuture>().map(|m| m.us())
    }
    use crate::config::Config;

    #[test]
    fn horizons() {
        assert_eq!(parse_horizon("90d").ok(), Some(90));
        assert_eq!(parse_horizon("13w").ok(), Some(91));
        assert_eq!(parse_horizon("273").ok(), Some(273));
        assert_eq!(
            parse_horizon("3m").map_err(|e| e.to_string()).err().as_deref(),
            Some("invalid horizon '3m': expected days like 90d, weeks like 13w, or a plain number of days (1 to 3650)")
        );
        assert!(parse_horizon("0d").is_err());
    }

    #[test]
    fn max_future_durations() {
        let h = 3_600_000_000;
        assert_eq!(parse_max_future("1d").ok(), Some(24 * h));
        assert_eq!(parse_max_future("12h").ok(), Some(12 * h));
        assert_eq!(parse_max_future("2w").ok(), Some(14 * 24 * h));
        assert_eq!(parse_max_future("0").ok(), Some(0));
        assert_eq!(
            parse_max_future("1 day").map_err(|e| e.to_string()).err().as_deref(),
            Some("invalid validation.max_future '1 day': expected hours like 12h, days like 1d, weeks like 1w, or a plain number of days (0 to 3650 days)")
        );
        assert!(parse_max_future("-1d").is_err());
        assert!(parse_max_future("3651d").is_err());
    }

    #[test]
    fn choices_are_typed_once_and_written_back_as_read() {
        let cfg = Config::from_toml(
            "[run]\nhorizon = \"13w\"\n[validation]\nmax_future = \"12h\"\n\
             [churn]\nclass_weight = \"balanced\"\n[btyd]\nmodel = \"pnbd\"\n",
        )
        .expect("toml");
        assert_eq!(cfg.run.horizon.days(), 91);
        assert_eq!(cfg.validation.max_future.us(), 12 * HOUR_US);
        assert_eq!(cfg.churn.class_weight, ClassWeight::Balanced);
        assert_eq!(cfg.btyd.model, ModelKind::ParetoNbd);
        // The manifest's config (and the run id) show the values as written.
        let json = serde_json::to_value(&cfg).expect("json");
        assert_eq!(json["run"]["horizon"], "13w");
        assert_eq!(json["validation"]["max_future"], "12h");
        assert_eq!(json["churn"]["class_weight"], "balanced");
        assert_eq!(json["btyd"]["model"], "pnbd");
        let defaults = serde_json::to_value(Config::default()).expect("json");
        assert_eq!(defaults["run"]["horizon"], "90d");
        assert_eq!(defaults["validation"]["max_future"], "1d");
        assert_eq!(defaults["churn"]["class_weight"], "none");
        assert_eq!(defaults["btyd"]["model"], "bgnbd");
        assert_eq!(
            Horizon::from_days(91)
                .map(|h| h.to_string())
                .ok()
                .as_deref(),
            Some("91d")
        );
        // A refused choice names its key and value; a value of the wrong type stays a TOML
        // message; the first problem in the file is the one reported.
        for (text, message) in [
            (
                "[btyd]\nmodel = \"bgnbdd\"\n",
                "btyd.model must be one of bgnbd, mbgnbd, pnbd, got bgnbdd",
            ),
            (
                "[run]\nhorizon = \"3m\"\n",
                "run.horizon: invalid horizon '3m': expected days like 90d, weeks like 13w, or a plain number of days (1 to 3650)",
            ),
            (
                "[run]\nhorizon = 90\n",
                "invalid type: integer `90`, expected a string",
            ),
            (
                "[churn]\nclass_weight = \"heavy\"\n[runn]\nseed = 1\n",
                "churn.class_weight must be none or balanced, got heavy",
            ),
        ] {
            assert_eq!(Config::from_toml(text).err().as_deref(), Some(message));
        }
        let file =
            std::env::temp_dir().join(format!("churnclv-config-{}.toml", std::process::id()));
        std::fs::write(&file, "[validation]\nmax_future = \"soon\"\n").expect("write");
        let err = Config::from_file(&file)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&file);
        assert_eq!(
            err.err().as_deref(),
            Some("invalid validation.max_future 'soon': expected hours like 12h, days like 1d, weeks like 1w, or a plain number of days (0 to 3650 days)")
        );
    }
}
