//! The BTYD value stage: customer summaries from the feature set, the transaction model
//! (BG/NBD, MBG/NBD or Pareto/NBD) and the Gamma-Gamma spend model fitted on them, and the
//! per-customer outputs of the score table — P(alive), expected purchases and order value, and
//! discounted CLV over the horizon. Time is in days throughout.

use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::BtydConfig;
use crate::features::Features;
use crate::models::btyd::{
    fit_gamma_gamma, fit_transactions, BtydError, Customer, FitOptions, FittedTransactions,
    GammaGamma, ModelKind, Summary,
};
use crate::models::saved::InvalidField;

/// A customer first seen on the day before the cutoff has `T = 0`; the models need `T > 0`,
/// so such rows are scored with this tiny age (they then behave as brand-new customers) and
/// left out of the fit (their likelihood contribution is exactly 1 anyway).
const MIN_T_DAYS: f64 = 1e-6;

/// Fewer repeat buyers than this and the Gamma-Gamma model is not fitted: expected order
/// values fall back to each customer's own mean.
const MIN_SPEND_CUSTOMERS: usize = 20;

/// Monthly discount rates accepted (config `btyd.monthly_discount` and model files): [0, 1).
/// A negative rate inflates CLV without bound; 100% a month and more is not a discount rate.
pub const MONTHLY_DISCOUNT_RANGE: Range<f64> = 0.0..1.0;

/// Days per month accepted (config `btyd.days_per_month` and model files): [1, 366]. CLV sums
/// the horizon month by month, so the floor also bounds that loop (a "month" of 1e-300 days
/// would never end); 366 is the longest value that still reads as a period of the calendar.
pub const DAYS_PER_MONTH_RANGE: RangeInclusive<f64> = 1.0..=366.0;

/// The model kind named in config (`bgnbd`, `mbgnbd`, `pnbd`).
pub fn model_kind(name: &str) -> Option<ModelKind> {
    match name {
        "bgnbd" => Some(ModelKind::BgNbd),
        "mbgnbd" => Some(ModelKind::MbgNbd),
        "pnbd" => Some(ModelKind::ParetoNbd),
        _ => None,
    }
}

/// The BTYD summary of one buyer, in days.
pub fn summary_row(f: &Features) -> Customer {
    Customer::new(f.frequency as f64, f.t_x_days, f.t_days.max(MIN_T_DAYS))
}

/// The Gamma-Gamma inputs: `(x, mean repeat spend)` of the buyers with a repeat purchase day.
pub fn spend_inputs(rows: &[&Features]) -> (Vec<f64>, Vec<f64>) {
    rows.iter()
        .filter_map(|f| {
            f.repeat_spend_mean
                .filter(|m| *m > 0.0)
                .map(|m| (f.frequency as f64, m))
        })
        .unzip()
}

/// Fit options from config.
pub fn fit_options(cfg: &BtydConfig) -> FitOptions {
    FitOptions {
        penalizer: cfg.penalizer,
        max_iterations: cfg.max_iterations,
        timeout: Duration::from_secs(cfg.timeout_seconds),
        ..FitOptions::default()
    }
}

/// The fitted value models. Saved as they are in `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueModel {
    pub transactions: FittedTransactions,
    /// `None` when there were too few repeat buyers or the fit was unusable (see
    /// `spend_note`). Required in a model file (`null` when absent): serde would read a missing
    /// (or misspelt) key as `None` and silently score with customers' own order values.
    #[serde(deserialize_with = "Option::deserialize")]
    pub spend: Option<GammaGamma>,
    pub spend_note: Option<String>,
    pub monthly_discount: f64,
    pub days_per_month: f64,
}

/// Per-customer outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueScores {
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub expected_order_value: f64,
    pub clv: f64,
}

impl ValueModel {
    /// Fits both models on the buyers among `rows` (customers with a purchase).
    pub fn fit(rows: &[&Features], cfg: &BtydConfig) -> Result<ValueModel, BtydError> {
        let kind = model_kind(&cfg.model)
            .ok_or_else(|| BtydError::InvalidOptions(format!("unknown model {}", cfg.model)))?;
        let options = fit_options(cfg);
        let customers: Vec<Customer> = rows
            .iter()
            .filter(|f| f.has_purchase() && f.t_days > 0.0)
            .map(|f| summary_row(f))
            .collect();
        let summary = Summary::from_rows(&customers)?;
        let transactions = fit_transactions(kind, &summary, &options)?;
        let (x, spend) = spend_inputs(rows);
        let (spend, spend_note) = if x.len() < MIN_SPEND_CUSTOMERS {
            (None, Some(format!("{} repeat buyers with spend (< {MIN_SPEND_CUSTOMERS}): customer mean order value used", x.len())))
        } else {
            match fit_gamma_gamma(&x, &spend, &options) {
                Ok(gg) if gg.has_finite_mean() => (Some(gg), None),
                Ok(gg) => (None, Some(format!("Gamma-Gamma q = {:.4} <= 1 (infinite mean spend): customer mean order value used", gg.q))),
                Err(e) => (None, Some(format!("Gamma-Gamma not used: {e}"))),
            }
        };
        Ok(ValueModel {
            transactions,
            spend,
            spend_note,
            monthly_discount: cfg.monthly_discount,
            days_per_month: cfg.days_per_month,
        })
    }

    /// Checks every field used to score; the first bad one comes back with its JSON path
    /// relative to the value model (`transactions.params.r`).
    pub fn validate(&self) -> Result<(), InvalidField> {
        let t = &self.transactions;
        if let Some((name, v)) = t.params.out_of_domain() {
            return Err(InvalidField::new(
                format!("transactions.params.{name}"),
                "must be finite and > 0",
                v,
            ));
        }
        // The remaining check: parameters named as the model kind expects.
        t.validate().map_err(|e| {
            InvalidField::new(
                "transactions.params",
                e,
                format_args!("{}", t.params.names().join(", ")),
            )
        })?;
        if let Some(gg) = &self.spend {
            if let Some((name, v)) = gg.out_of_domain() {
                return Err(InvalidField::new(
                    format!("spend.{name}"),
                    "must be finite and > 0",
                    v,
                ));
            }
            if !gg.has_finite_mean() {
                return Err(InvalidField::new(
                    "spend.q",
                    "must be > 1 (with q <= 1 the mean order value is infinite)",
                    gg.q,
                ));
            }
        }
        if !MONTHLY_DISCOUNT_RANGE.contains(&self.monthly_discount) {
            return Err(InvalidField::new(
                "monthly_discount",
                format!(
                    "must be in [{}, {}) like btyd.monthly_discount",
                    MONTHLY_DISCOUNT_RANGE.start, MONTHLY_DISCOUNT_RANGE.end
                ),
                self.monthly_discount,
            ));
        }
        if !DAYS_PER_MONTH_RANGE.contains(&self.days_per_month) {
            return Err(InvalidField::new(
                "days_per_month",
                format!(
                    "must be in [{}, {}] like btyd.days_per_month",
                    DAYS_PER_MONTH_RANGE.start(),
                    DAYS_PER_MONTH_RANGE.end()
                ),
                self.days_per_month,
            ));
        }
        Ok(())
    }

    /// Expected order value of a buyer.
    pub fn expected_order_value(&self, f: &Features) -> f64 {
        match &self.spend {
            Some(gg) => {
                gg.expected_order_value(f.frequency as f64, f.repeat_spend_mean.unwrap_or(0.0))
            }
            None => f.avg_order_value.unwrap_or(0.0),
        }
    }

    /// Outputs for one buyer over `horizon_days`. CLV discounts each month's expected purchases
    /// at the month's end, the last month cut at the horizon:
    /// `Σ_m (E[X(min(m·M, H))] − E[X((m−1)·M)]) · value / (1 + d)^m`, `M` = days per month.
    pub fn score(&self, f: &Features, horizon_days: f64) -> ValueScores {
        let c = summary_row(f);
        let t = &self.transactions;
        let value = self.expected_order_value(f);
        let mut clv = 0.0;
        let mut previous = 0.0;
        let mut discount = 1.0;
        let mut m = 1u32;
        loop {
            let end = (f64::from(m) * self.days_per_month).min(horizon_days);
            let cumulative = t.expected_purchases(&c, end);
            discount /= 1.0 + self.monthly_discount;
            clv += (cumulative - previous) * discount;
            previous = cumulative;
            if end >= horizon_days {
                break;
            }
            m += 1;
        }
        ValueScores {
            p_alive: t.p_alive(&c),
            expected_purchases: previous,
            expected_order_value: value,
            clv: clv * value,
        }
    }
}
