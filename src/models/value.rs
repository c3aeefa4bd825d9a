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
    fallback_penalizer, fit_gamma_gamma, fit_transactions, BtydError, Customer, FitOptions,
    FittedTransactions, GammaGamma, ModelKind, Summary,
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

/// The order in which transaction models are tried after the requested one failed even with
/// a small penalty: the BG/NBD pair first (fast closed forms; MBG/NBD also lets customers drop
/// out right after their first purchase, which often fixes the BG/NBD ridge), Pareto/NBD last
/// (its hypergeometric likelihood is slow where the fit struggles).
const FALLBACK_ORDER: [ModelKind; 3] = [ModelKind::BgNbd, ModelKind::MbgNbd, ModelKind::ParetoNbd];

/// The (model, penalizer) fits tried in turn: the requested model as configured, then
/// refitted with `penalised(model)`, then the other models of [`FALLBACK_ORDER`], penalised.
/// Lazy: a fallback's penalty (a likelihood evaluation over every customer, the Pareto/NBD
/// one costly) is only computed when the fits before it failed.
fn fit_attempts(
    requested: ModelKind,
    configured: f64,
    penalised: impl Fn(ModelKind) -> f64,
) -> impl Iterator<Item = (ModelKind, f64)> {
    let fallbacks = FALLBACK_ORDER.into_iter().filter(move |k| *k != requested);
    std::iter::once((requested, Some(configured)))
        .chain(
            std::iter::once(requested)
                .chain(fallbacks)
                .map(|k| (k, None)),
        )
        .map(move |(kind, p)| (kind, p.unwrap_or_else(|| penalised(kind))))
}

/// How the value models were fitted: what config asked for, what was used, and why
/// (in metrics.json and model.json).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueFit {
    /// Transaction model asked for (`btyd.model`).
    pub requested: String,
    /// Transaction model used.
    pub used: String,
    /// Penalizer of the fit used (`btyd.penalizer`, or the fallback refit's).
    pub penalizer: f64,
    /// Fits that failed before the one used, in order: `model (penalizer p): error`.
    pub failed_attempts: Vec<String>,
    /// Set when the optimiser stopped flat to rounding above the strict gradient tolerance
    /// (accepted as converged, see `FitOptions::flat_tolerance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convergence_note: Option<String>,
    /// Spend model used: `gamma_gamma`, or `customer_mean` (each customer's own mean order
    /// value; `spend_note` of the value model says why).
    pub spend: String,
}

/// What the value models read of one customer who had bought before the cutoff: the BTYD
/// summary (repeat purchase days `x`, `t_x`, `T`, in days) and the spend inputs. Five numbers
/// instead of a feature row, so training holds them for every buyer of a window cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ValueInputs {
    pub frequency: f64,
    pub t_x_days: f64,
    pub t_days: f64,
    /// Mean total of the repeat purchase days (Gamma-Gamma's `zbar`).
    pub repeat_spend_mean: Option<f64>,
    pub avg_order_value: Option<f64>,
}

impl ValueInputs {
    /// The inputs of a buyer's feature row; `None` for a customer without a purchase (outside
    /// the value models' population).
    pub fn of(f: &Features) -> Option<ValueInputs> {
        f.has_purchase().then_some(ValueInputs {
            frequency: f.frequency as f64,
            t_x_days: f.t_x_days,
            t_days: f.t_days,
            repeat_spend_mean: f.repeat_spend_mean,
            avg_order_value: f.avg_order_value,
        })
    }

    /// The BTYD summary, in days (`T` floored at [`MIN_T_DAYS`]).
    pub fn summary(&self) -> Customer {
        Customer::new(self.frequency, self.t_x_days, self.t_days.max(MIN_T_DAYS))
    }
}

/// The Gamma-Gamma inputs: `(x, mean repeat spend)` of the buyers with a repeat purchase day.
pub fn spend_inputs(rows: &[ValueInputs]) -> (Vec<f64>, Vec<f64>) {
    rows.iter()
        .filter_map(|v| {
            v.repeat_spend_mean
                .filter(|m| *m > 0.0)
                .map(|m| (v.frequency, m))
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
    /// How the models were fitted (fallbacks): diagnostic, not used to score.
    pub fit: ValueFit,
}

/// Per-customer outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueScores {
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub expected_order_value: f64,
    pub clv: f64,
    /// Expected purchases over the horizon, month by month discounted (`clv` over
    /// `expected_order_value`): the timing a supervised spend champion's CLV is discounted by.
    pub discounted_purchases: f64,
}

impl ValueModel {
    /// Fits both models on buyers' inputs `rows`.
    ///
    /// One bad model never stops the run: when the requested transaction model does not fit
    /// (no convergence, time limit, non-finite likelihood), it is refitted with a small
    /// penalty ([`fallback_penalizer`]), then the other models are tried in
    /// [`FALLBACK_ORDER`] with that penalty; each failure is logged at warn and recorded in
    /// [`ValueFit`]. Input errors (no customers, invalid rows or options) are returned as they
    /// are. The Gamma-Gamma spend model falls back to each customer's mean order value.
    pub fn fit(rows: &[ValueInputs], cfg: &BtydConfig) -> Result<ValueModel, BtydError> {
        let (model, warnings) = ValueModel::fit_with_warnings(rows, cfg)?;
        for w in warnings {
            tracing::warn!(stage = "evaluate", "{w}");
        }
        Ok(model)
    }

    /// [`ValueModel::fit`] with its warnings returned instead of logged, in the order they
    /// arose: for a caller that fits beside other work and logs them only if that work
    /// succeeded (a run that fails elsewhere prints its one error line, not these).
    pub fn fit_with_warnings(
        rows: &[ValueInputs],
        cfg: &BtydConfig,
    ) -> Result<(ValueModel, Vec<String>), BtydError> {
        let mut warnings = Vec::new();
        let requested = cfg.model;
        let options = fit_options(cfg);
        let customers: Vec<Customer> = rows
            .iter()
            .filter(|v| v.t_days > 0.0)
            .map(ValueInputs::summary)
            .collect();
        let summary = Summary::from_rows(&customers)?;
        // The requested model as configured, then refitted with a small penalty (ten times
        // the configured one if that was not small already), then the others, penalised.
        let penalised = |kind| {
            let small = fallback_penalizer(kind, &summary);
            if cfg.penalizer > 0.0 {
                (10.0 * cfg.penalizer).max(small)
            } else {
                small
            }
        };
        let attempts = fit_attempts(requested, cfg.penalizer, penalised);
        let mut failed: Vec<String> = Vec::new();
        let mut fitted = None;
        for (kind, penalizer) in attempts {
            let options = FitOptions {
                penalizer,
                ..options
            };
            match fit_transactions(kind, &summary, &options) {
                Ok(t) => {
                    fitted = Some((kind, penalizer, t));
                    break;
                }
                Err(e) if e.is_input_error() => return Err(e),
                Err(e) => {
                    let what = format!("{} (penalizer {penalizer:.3e}): {e}", kind.key());
                    warnings.push(format!("BTYD fit failed, trying the next: {what}"));
                    failed.push(what);
                }
            }
        }
        let Some((kind, penalizer, transactions)) = fitted else {
            return Err(BtydError::AllFailed {
                attempts: failed.join("; "),
            });
        };
        if !failed.is_empty() {
            warnings.push(format!(
                "BTYD: using {} with penalizer {penalizer:.3e} (requested {} with penalizer {}) after {} failed fit(s)",
                kind.key(),
                cfg.model.key(),
                cfg.penalizer,
                failed.len()
            ));
        }
        let convergence_note = (transactions.grad_norm > options.grad_tolerance).then(|| {
            format!(
                "{} stopped flat to rounding at gradient norm {:.3e} after {} iterations (accepted: at most {:e})",
                kind.key(),
                transactions.grad_norm,
                transactions.iterations,
                options.flat_tolerance
            )
        });
        let (x, spend) = spend_inputs(rows);
        let (spend, spend_note) = if x.len() < MIN_SPEND_CUSTOMERS {
            (None, Some(format!("{} repeat buyers with spend (< {MIN_SPEND_CUSTOMERS}): customer mean order value used", x.len())))
        } else {
            match fit_gamma_gamma(&x, &spend, &options) {
                Ok(gg) if gg.has_finite_mean() => (Some(gg), None),
                Ok(gg) => (None, Some(format!("Gamma-Gamma q = {:.4} <= 1 (infinite mean spend): customer mean order value used", gg.q))),
                Err(e) if e.is_input_error() => return Err(e),
                Err(e) => {
                    warnings.push(format!(
                        "Gamma-Gamma fit failed, customer mean order value used: {e}"
                    ));
                    (None, Some(format!("Gamma-Gamma not used: {e}")))
                }
            }
        };
        let fit = ValueFit {
            requested: cfg.model.key().to_string(),
            used: kind.key().to_string(),
            penalizer,
            failed_attempts: failed,
            convergence_note,
            spend: if spend.is_some() {
                "gamma_gamma"
            } else {
                "customer_mean"
            }
            .to_string(),
        };
        let model = ValueModel {
            transactions,
            spend,
            spend_note,
            monthly_discount: cfg.monthly_discount,
            days_per_month: cfg.days_per_month,
            fit,
        };
        Ok((model, warnings))
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
    pub fn expected_order_value(&self, v: &ValueInputs) -> f64 {
        match &self.spend {
            Some(gg) => gg.expected_spend(v.frequency, v.repeat_spend_mean.unwrap_or(0.0)),
            None => v.avg_order_value.unwrap_or(0.0),
        }
    }

    /// Outputs for one buyer over `horizon_days`: the CLV is the expected order value times
    /// the discounted expected purchases ([`FittedTransactions::discounted_purchases`], months
    /// of `days_per_month` days, the last cut at the horizon).
    pub fn score(&self, v: &ValueInputs, horizon_days: f64) -> ValueScores {
        let c = v.summary();
        let t = &self.transactions;
        let value = self.expected_order_value(v);
        let purchases =
            t.discounted_purchases(&c, horizon_days, self.days_per_month, self.monthly_discount);
        ValueScores {
            p_alive: t.p_alive(&c),
            expected_purchases: purchases.expected,
            expected_order_value: value,
            clv: purchases.discounted * value,
            discounted_purchases: purchases.discounted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallbacks_refit_penalised_then_try_the_other_models() {
        let small = |k: ModelKind| match k {
            ModelKind::BgNbd => 1e-8,
            ModelKind::MbgNbd => 2e-8,
            ModelKind::ParetoNbd => 3e-8,
        };
        assert_eq!(
            fit_attempts(ModelKind::BgNbd, 0.0, small).collect::<Vec<_>>(),
            [
                (ModelKind::BgNbd, 0.0),
                (ModelKind::BgNbd, 1e-8),
                (ModelKind::MbgNbd, 2e-8),
                (ModelKind::ParetoNbd, 3e-8)
            ]
        );
        assert_eq!(
            fit_attempts(ModelKind::ParetoNbd, 0.001, small).collect::<Vec<_>>(),
            [
                (ModelKind::ParetoNbd, 0.001),
                (ModelKind::ParetoNbd, 3e-8),
                (ModelKind::BgNbd, 1e-8),
                (ModelKind::MbgNbd, 2e-8)
            ]
        );
        // The first attempt computes no penalty: a fit that succeeds costs no fallback's.
        let asked = std::cell::Cell::new(0);
        let counted = |k: ModelKind| {
            asked.set(asked.get() + 1);
            small(k)
        };
        let first: Vec<_> = fit_attempts(ModelKind::BgNbd, 0.0, counted)
            .take(1)
            .collect();
        assert_eq!((first, asked.get()), (vec![(ModelKind::BgNbd, 0.0)], 0));
    }
}
