//! `churnclv btyd`: fit one BTYD model on the customers' history before a cutoff and print it
//! — the plan, one scan (`churnclv::stages::features`), `churnclv::stages::btyd::fit`.

use clap::ValueEnum;

use churnclv::models::btyd::ModelKind;
use churnclv::plan::Plan;
use churnclv::stages::btyd::{fit, Fit, TimeUnit};
use churnclv::stages::features::{scan, TableSpec};
use churnclv::time::date_us;

use super::InputArgs;

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

pub fn run(args: Args) -> churnclv::Result<()> {
    let plan = Plan::build(&churnclv::plan::Request {
        as_of: Some((args.cutoff, "--cutoff")),
        penalizer: args.penalizer,
        ..args.input.request()
    })?;
    let cutoff = plan.as_of()?;
    let spec = TableSpec::unlabelled(cutoff);
    let scanned = scan(plan.events()?, &plan.read_options(date_us(cutoff)), &[spec])?;
    let model = match args.model {
        Model::Bgnbd => Fit::Transactions(ModelKind::BgNbd),
        Model::Mbgnbd => Fit::Transactions(ModelKind::MbgNbd),
        Model::Pnbd => Fit::Transactions(ModelKind::ParetoNbd),
        Model::Gg => Fit::GammaGamma,
    };
    let unit = match args.time_unit {
        Unit::Day => TimeUnit {
            name: "day",
            days: 1.0,
        },
        Unit::Week => TimeUnit {
            name: "week",
            days: 7.0,
        },
    };
    let table = scanned.table(0);
    let out = fit(&table, &args.input.events, model, unit, &plan.config.btyd)?;
    super::print(format_args!("{}\n", serde_json::to_string_pretty(&out)?))?;
    Ok(())
}
