//! `[spark]`: settings of the Spark driver (`spark/churnclv_spark.py`, docs/scale-out.md) that
//! belong with the job's other settings. The binary reads no key of it; it validates them with
//! the rest of the file, so a bad value is exit 2 before any query runs on the engine.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// What the Spark driver reads from the config (its flags override it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SparkConfig {
    /// Share of the customers the models train on (0 < share ≤ 1): the customers with
    /// `pmod(hash(customer_id), 10^6) < share × 10^6`, the same at every cutoff and on every
    /// run. `--train-sample` overrides it.
    pub train_sample: f64,
}

impl Default for SparkConfig {
    fn default() -> Self {
        // All customers: the driver's scores then equal a single-node run's.
        SparkConfig { train_sample: 1.0 }
    }
}

impl SparkConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let v = self.train_sample;
        if !(v > 0.0 && v <= 1.0) {
            return Err(ConfigError::Range {
                key: "spark.train_sample",
                expected: "a share of the customers in (0, 1]",
                value: v.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn train_sample_defaults_to_all_customers_and_must_be_a_share() {
        let c = Config::from_toml("").expect("empty");
        assert_eq!(c.spark.train_sample, 1.0);
        assert!(c.validate().is_ok());
        let c = Config::from_toml("[spark]\ntrain_sample = 0.01\n").expect("share");
        assert_eq!(c.spark.train_sample, 0.01);
        assert!(c.validate().is_ok());
        for bad in ["0", "0.0", "-0.1", "1.5", "nan"] {
            let c = Config::from_toml(&format!("[spark]\ntrain_sample = {bad}\n")).expect("toml");
            let err = c.validate().expect_err(bad).to_string();
            assert!(
                err.starts_with(
                    "spark.train_sample must be a share of the customers in (0, 1], got "
                ),
                "{bad}: {err}"
            );
        }
        let err = Config::from_toml("[spark]\nsample = 0.1\n").expect_err("unknown key");
        assert!(err.contains("unknown field `sample`"), "{err}");
    }
}
