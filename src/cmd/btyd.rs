//! `churnclv btyd`: fit one BTYD model on the customers' history before a cutoff and print it.

use std::time::Instant;

use anyhow::Context;
use clap::ValueEnum;
use serde_json::json;

use churnclv::config::parse_date;
use churnclv::labels::date_us;
use churnclv::models::btyd::{fit_gamma_gamma, fit_transactions, FitOptions, ModelKind, Summary};
use churnclv::models::value::{fit_options, spend_inputs, summary_row};

use super::{read_options, scan_histories, InputArgs, UsageError};

/// Fit a "buy till you die" model on the purchase history before --cutoff and print JSON:
/// `model`, `params` (named as in the papers: r, alpha, a, b / r, alpha, s, beta / p, q, gamma),
/// `std_errors`, `log_likelihood`, `customers`, `iterations`, `fit_seconds`, `time_unit`.
///
/// The summary of each buyer is lifetimes' `(frequency, recency, T)` with daily resolution:
/// x = repeat purchase days, t_x = days from the first to the last purchase day, T = days from
/// the first purchase day to the day before the cutoff (divided by 7 with --time-unit week).
/// Gamma-Gamma (`gg`) is fitted on buyers with x > 0 and their mean repeat-day spend.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: InputArgs,
    /// Calibration end: only events before this date (YYYY-MM-DD) are used.
    #[arg(long, value_name = "DATE")]
    pub cutoff: String,
    /// Which model to fit.
    #[arg(long, value_enum, default_value_t = Model::Bgnbd)]
    pub model: Model,
    /// Time unit of t_x, T and the scale parameters (alpha, beta).
    #[arg(long, value_enum, default_value_t = Unit::Day)]
    pub time_unit: Unit,
    /// L2 penalty on the parameters (lifetimes' convention). Default: config btyd.penalizer (0).
    #[arg(long, value_name = "X")]
    pub penalizer: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Model {
    /// BG/NBD (Fader, Hardie & Lee 2005).
    Bgnbd,
    /// MBG/NBD (Batislam et al. 2007).
    Mbgnbd,
    /// Pareto/NBD (Schmittlein et al. 1987).
    Pnbd,
    /// Gamma-Gamma spend model.
    Gg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Unit {
    Day,
    Week,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = args.input.config()?;
    if let Some(p) = args.penalizer {
        cfg.btyd.penalizer = p;
    }
    let types = cfg.validate()?;
    let cutoff_date = parse_date(&args.cutoff).context("--cutoff")?;
    let cutoff = date_us(cutoff_date);
    let inputs = args.input.open(&cfg)?;
    let scanned = scan_histories(&inputs, &read_options(&cfg, types, cutoff, true), &[cutoff])?;
    let set = scanned.histories.features(0);
    let buyers: Vec<_> = set.rows.iter().filter(|f| f.has_purchase()).collect();
    if buyers.is_empty() {
        return Err(UsageError(format!(
            "{}: no customer bought before {cutoff_date}",
            inputs.spec
        ))
        .into());
    }
    let scale = match args.time_unit {
        Unit::Day => 1.0,
        Unit::Week => 7.0,
    };
    let options: FitOptions = fit_options(&cfg.btyd);
    let started = Instant::now();
    let out = match args.model {
        Model::Gg => {
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
        model => {
            let kind = match model {
                Model::Bgnbd => ModelKind::BgNbd,
                Model::Mbgnbd => ModelKind::MbgNbd,
                _ => ModelKind::ParetoNbd,
            };
            let name = kind.key();
            let rows: Vec<_> = buyers
                .iter()
                .filter(|f| f.t_days > 0.0)
                .map(|f| {
                    let c = summary_row(f);
                    churnclv::models::btyd::Customer::new(c.x, c.t_x / scale, c.t / scale)
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
    let mut out = out;
    out["time_unit"] = json!(match args.time_unit {
        Unit::Day => "day",
        Unit::Week => "week",
    });
    out["cutoff"] = json!(cutoff_date.to_string());
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
