//! `btyd`'s work: fit one BTYD model on the buyers of a feature table and describe the fit as
//! JSON (`model`, `params` named as in the papers, `std_errors`, `log_likelihood`,
//! `customers`, `iterations`, `fit_seconds`, `time_unit`, `cutoff`).

use std::time::Instant;

use serde_json::{json, Value};

use crate::config::BtydConfig;
use crate::error::{Context, Error, Result};
use crate::features::FeatureTable;
use crate::models::btyd::{fit_gamma_gamma, fit_transactions, Customer, ModelKind, Summary};
use crate::models::value::{fit_options, spend_inputs, ValueInputs};

/// Which model to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// A transaction model (BG/NBD, MBG/NBD, Pareto/NBD), named by its config key in the output.
    Transactions(ModelKind),
    /// The Gamma-Gamma spend model (buyers with a repeat purchase day), named `gg`.
    GammaGamma,
}

/// Time unit of `t_x`, `T` and the scale parameters: its name and length in days.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeUnit {
    pub name: &'static str,
    pub days: f64,
}

/// Fits `fit` on the buyers of `table` (at its cutoff) with the `[btyd]` settings; `source`
/// names the input in messages.
pub fn fit(
    table: &FeatureTable,
    source: &str,
    fit: Fit,
    unit: TimeUnit,
    cfg: &BtydConfig,
) -> Result<Value> {
    let buyers: Vec<ValueInputs> = table.rows.iter().filter_map(ValueInputs::of).collect();
    if buyers.is_empty() {
        return Err(Error::Usage(format!(
            "{source}: no customer bought before {}",
            table.cutoff
        )));
    }
    let options = fit_options(cfg);
    let started = Instant::now();
    let mut out = match fit {
        Fit::GammaGamma => {
            let (x, m) = spend_inputs(&buyers);
            let gg = fit_gamma_gamma(&x, &m, &options).context("Gamma-Gamma fit")?;
            json!({
                "model": "gg",
                "params": {"p": gg.p, "q": gg.q, "gamma": gg.gamma},
                "std_errors": gg.std_errors,
                "log_likelihood": gg.log_likelihood,
                "customers": gg.customers,
                "iterations": gg.iterations,
                "fit_seconds": started.elapsed().as_secs_f64(),
            })
        }
        Fit::Transactions(kind) => {
            let name = kind.key();
            let rows: Vec<_> = buyers
                .iter()
                .filter(|v| v.t_days > 0.0)
                .map(|v| {
                    let c = v.summary();
                    Customer::new(c.x, c.t_x / unit.days, c.t / unit.days)
                })
                .collect();
            let summary = Summary::from_rows(&rows).context("customer summaries")?;
            let fit = fit_transactions(kind, &summary, &options)
                .with_context(|| format!("{kind} fit"))?;
            json!({
                "model": name,
                "params": fit.params,
                "std_errors": fit.std_errors,
                "log_likelihood": fit.log_likelihood,
                "customers": fit.customers,
                "iterations": fit.iterations,
                "fit_seconds": started.elapsed().as_secs_f64(),
            })
        }
    };
    out["time_unit"] = json!(unit.name);
    out["cutoff"] = json!(table.cutoff.to_string());
    Ok(out)
}
