//! Fitting the transaction models (BG/NBD, MBG/NBD, Pareto/NBD) and the fitted, serialisable
//! model with its per-customer predictions.

use serde::{Deserialize, Serialize};

use super::optim::{self, Budget, Minimum, OptFailure};
use super::{
    beta_geo, param_in_domain, pareto, BtydError, Customer, FitOptions, ModelKind, Solver, Summary,
};

/// BG/NBD and MBG/NBD parameters: purchase rate λ ~ Gamma(r, α) (α in the data's time unit),
/// drop-out probability p ~ Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BetaGeoParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Pareto/NBD parameters: purchase rate λ ~ Gamma(r, α), drop-out rate μ ~ Gamma(s, β)
/// (α, β in the data's time unit).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParetoParams {
    pub r: f64,
    pub alpha: f64,
    pub s: f64,
    pub beta: f64,
}

/// Named parameters of a transaction model; serialised as a plain object with fields
/// `r, alpha, a, b` or `r, alpha, s, beta`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TransactionParams {
    BetaGeo(BetaGeoParams),
    Pareto(ParetoParams),
}

impl TransactionParams {
    /// The four numbers in model order: `[r, α, a, b]` or `[r, α, s, β]`.
    pub fn values(&self) -> [f64; 4] {
        match *self {
            TransactionParams::BetaGeo(p) => [p.r, p.alpha, p.a, p.b],
            TransactionParams::Pareto(p) => [p.r, p.alpha, p.s, p.beta],
        }
    }

    /// The field names of [`TransactionParams::values`]: `r, alpha, a, b` or `r, alpha, s, beta`.
    pub fn names(&self) -> [&'static str; 4] {
        match self {
            TransactionParams::BetaGeo(_) => ["r", "alpha", "a", "b"],
            TransactionParams::Pareto(_) => ["r", "alpha", "s", "beta"],
        }
    }

    /// The first parameter outside its domain ([`param_in_domain`]): its name and value.
    pub fn out_of_domain(&self) -> Option<(&'static str, f64)> {
        self.names()
            .into_iter()
            .zip(self.values())
            .find(|(_, v)| !param_in_domain(*v))
    }

    /// Names the four numbers for `kind`.
    pub fn from_values(kind: ModelKind, v: [f64; 4]) -> Self {
        let [r, alpha, c, d] = v;
        match kind {
            ModelKind::BgNbd | ModelKind::MbgNbd => TransactionParams::BetaGeo(BetaGeoParams {
                r,
                alpha,
                a: c,
                b: d,
            }),
            ModelKind::ParetoNbd => TransactionParams::Pareto(ParetoParams {
                r,
                alpha,
                s: c,
                beta: d,
            }),
        }
    }
}

/// A fitted transaction model. Predictions take a [`Customer`] in the time unit of the data the
/// model was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FittedTransactions {
    pub kind: ModelKind,
    pub params: TransactionParams,
    /// Asymptotic standard errors on the natural scale; `None` when the Hessian at the optimum
    /// is not positive definite (a parameter is not identified by the data).
    pub std_errors: Option<TransactionParams>,
    /// Total (unpenalised) log-likelihood at the fitted parameters.
    pub log_likelihood: f64,
    /// Optimiser iterations used.
    pub iterations: u64,
    /// Gradient norm at the optimum (see [`FitOptions::grad_tolerance`]).
    pub grad_norm: f64,
    /// Number of customers fitted on.
    pub customers: u64,
    pub penalizer: f64,
}

impl FittedTransactions {
    /// Builds a model from known parameters (e.g. published ones) for prediction.
    pub fn from_params(kind: ModelKind, params: [f64; 4]) -> Result<Self, BtydError> {
        check_params(&params)?;
        Ok(FittedTransactions {
            kind,
            params: TransactionParams::from_values(kind, params),
            std_errors: None,
            log_likelihood: f64::NAN,
            iterations: 0,
            grad_norm: f64::NAN,
            customers: 0,
            penalizer: 0.0,
        })
    }

    /// Checks that the parameters are finite and positive and named as `kind` expects (e.g.
    /// after deserialising).
    pub fn validate(&self) -> Result<(), BtydError> {
        check_params(&self.params.values())?;
        let named_right = matches!(
            (self.kind, self.params),
            (ModelKind::ParetoNbd, TransactionParams::Pareto(_))
                | (
                    ModelKind::BgNbd | ModelKind::MbgNbd,
                    TransactionParams::BetaGeo(_)
                )
        );
        if named_right {
            Ok(())
        } else {
            Err(BtydError::InvalidParams(format!(
                "{} needs parameters named {}",
                self.kind,
                match self.kind {
                    ModelKind::ParetoNbd => "r, alpha, s, beta",
                    _ => "r, alpha, a, b",
                }
            )))
        }
    }

    /// P(the customer is still active at T | x, t_x, T), in [0, 1]. BG/NBD gives 1 for `x = 0`
    /// (its customers can only drop out after a repeat purchase).
    pub fn p_alive(&self, c: &Customer) -> f64 {
        let p = self.params.values();
        match self.kind {
            ModelKind::BgNbd => beta_geo::p_alive(&p, c, false),
            ModelKind::MbgNbd => beta_geo::p_alive(&p, c, true),
            ModelKind::ParetoNbd => pareto::p_alive(&p, c),
        }
    }

    /// Expected number of purchases in `(T, T + horizon]` given the customer's history
    /// (`horizon` in the data's time unit).
    pub fn expected_purchases(&self, c: &Customer, horizon: f64) -> f64 {
        let p = self.params.values();
        match self.kind {
            ModelKind::BgNbd => beta_geo::expected_purchases(&p, c, horizon, false),
            ModelKind::MbgNbd => beta_geo::expected_purchases(&p, c, horizon, true),
            ModelKind::ParetoNbd => pareto::expected_purchases(&p, c, horizon),
        }
    }

    /// P(no purchase in `(T, T + horizon]` | the customer's history): the BTYD buy-again
    /// score's churn probability. BG/NBD and MBG/NBD in closed form
    /// ([`beta_geo::p_no_purchase`]); `None` for Pareto/NBD, whose posterior needs a
    /// hypergeometric integral this build does not compute.
    pub fn p_no_purchase(&self, c: &Customer, horizon: f64) -> Option<f64> {
        let p = self.params.values();
        match self.kind {
            ModelKind::BgNbd => Some(beta_geo::p_no_purchase(&p, c, horizon, false)),
            ModelKind::MbgNbd => Some(beta_geo::p_no_purchase(&p, c, horizon, true)),
            ModelKind::ParetoNbd => None,
        }
    }

    /// Expected purchases in `(T, T + horizon]`, and the same purchases discounted month by
    /// month: month `m` is `((m−1)·M, m·M]` after `T` (`M` = `periods_per_month`, in the data's
    /// time unit), the last one cut at the horizon, and its expected purchases are discounted at
    /// its end by `(1 + d)^m`:
    /// `Σ_m (E[X(min(m·M, H))] − E[X((m−1)·M)]) / (1 + d)^m`.
    /// Times an expected order value this is the CLV, by the convention of
    /// `lifetimes.GammaGammaFitter.customer_lifetime_value` (which counts whole months: a
    /// horizon of `months · M`). The one CLV loop: the score table and the lifetimes
    /// comparison both use it.
    pub fn discounted_purchases(
        &self,
        c: &Customer,
        horizon: f64,
        periods_per_month: f64,
        monthly_discount: f64,
    ) -> DiscountedPurchases {
        let mut discounted = 0.0;
        let mut previous = 0.0;
        let mut discount = 1.0;
        let mut m = 1u32;
        loop {
            let end = (f64::from(m) * periods_per_month).min(horizon);
            let cumulative = self.expected_purchases(c, end);
            discount /= 1.0 + monthly_discount;
            discounted += (cumulative - previous) * discount;
            previous = cumulative;
            if end >= horizon {
                break;
            }
            m += 1;
        }
        DiscountedPurchases {
            expected: previous,
            discounted,
        }
    }

    /// Expected number of repeat purchases in `(0, t]` for a customer who made a first purchase
    /// at time 0 (the unconditional `E[X(t)]`).
    pub fn expected_purchases_new(&self, t: f64) -> f64 {
        let p = self.params.values();
        match self.kind {
            ModelKind::BgNbd => beta_geo::expected_purchases_new(&p, t, false),
            ModelKind::MbgNbd => beta_geo::expected_purchases_new(&p, t, true),
            ModelKind::ParetoNbd => pareto::expected_purchases_new(&p, t),
        }
    }
}

/// What [`FittedTransactions::discounted_purchases`] returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscountedPurchases {
    /// Expected purchases over the horizon.
    pub expected: f64,
    /// The same, each month's discounted at the month's end.
    pub discounted: f64,
}

fn check_params<const N: usize>(p: &[f64; N]) -> Result<(), BtydError> {
    if p.iter().all(|v| param_in_domain(*v)) {
        Ok(())
    } else {
        Err(BtydError::InvalidParams(format!(
            "parameters must be finite and > 0, got {p:?}"
        )))
    }
}

/// Total weighted log-likelihood of `summary` under `kind` at the natural parameters `params`
/// (`[r, α, a, b]` or `[r, α, s, β]`), and its analytic gradient with respect to them.
pub fn transaction_log_likelihood(
    kind: ModelKind,
    params: &[f64; 4],
    summary: &Summary,
) -> Result<(f64, [f64; 4]), BtydError> {
    check_params(params)?;
    Ok(natural_ll(kind, params, summary, true))
}

fn natural_ll(kind: ModelKind, p: &[f64; 4], summary: &Summary, grad: bool) -> (f64, [f64; 4]) {
    match kind {
        ModelKind::BgNbd => beta_geo::log_likelihood(p, summary, false),
        ModelKind::MbgNbd => beta_geo::log_likelihood(p, summary, true),
        ModelKind::ParetoNbd => pareto::log_likelihood(p, summary, grad),
    }
}

/// The penalised negative log-likelihood as a function of the log-parameters, divided by
/// `divisor` (the total weight for the mean objective that is minimised, 1 for the total whose
/// Hessian gives standard errors). Returns +∞ where the parameters leave the finite range.
fn objective<'a>(
    kind: ModelKind,
    summary: &'a Summary,
    penalizer: f64,
    divisor: f64,
) -> impl Fn(&[f64], &mut [f64]) -> f64 + 'a {
    let w = summary.total_weight();
    move |theta: &[f64], grad: &mut [f64]| {
        let mut p = [0.0; 4];
        for (pi, ti) in p.iter_mut().zip(theta) {
            *pi = ti.exp();
        }
        if !p.iter().all(|v| v.is_finite() && *v > 0.0) {
            return f64::INFINITY;
        }
        let (ll, g) = natural_ll(kind, &p, summary, true);
        // Penalty on the mean scale (as lifetimes), converted to the requested divisor.
        let scale = w / divisor;
        let mut value = -ll / divisor;
        for i in 0..4 {
            value += scale * penalizer * p[i] * p[i];
            // d/d(ln θ) = θ · d/dθ
            grad[i] = (-g[i] / divisor + scale * 2.0 * penalizer * p[i]) * p[i];
        }
        value
    }
}

/// Data-based starting point (log scale): r = 1 and α matching the mean purchase rate of the
/// summary (`E[λ] = r/α ≈ mean x / mean T`), a = b = 1 or s = 1, β = α.
fn start(kind: ModelKind, summary: &Summary) -> [f64; 4] {
    let w = summary.total_weight();
    let (mut sx, mut st) = (0.0, 0.0);
    for (c, &wi) in summary.rows().iter().zip(summary.weights()) {
        sx += wi * c.x;
        st += wi * c.t;
    }
    let mean_x = (sx / w).max(0.05);
    let mean_t = st / w;
    let alpha = mean_t / mean_x;
    match kind {
        ModelKind::BgNbd | ModelKind::MbgNbd => [0.0, alpha.ln(), 0.0, 0.0],
        ModelKind::ParetoNbd => [0.0, alpha.ln(), 0.0, alpha.ln()],
    }
}

/// A small penalizer for refitting after a failed fit, in the scale of the data: the
/// penalty `p · Σθ²` at the data-based starting point is 1e-5 of the mean negative
/// log-likelihood there. (A fixed value would not do: `α` is in the data's time unit, ~50 in
/// days on a typical history, ~1000 for customers buying every few years.) On a 200-customer
/// history whose BG/NBD optimum lies at infinity this bounds the ridge and costs ~0.01 in
/// total log-likelihood. Falls back to 1e-6 if the start is not finite.
pub fn fallback_penalizer(kind: ModelKind, summary: &Summary) -> f64 {
    let x0 = start(kind, summary);
    let mut g = [0.0; 4];
    let f0 = objective(kind, summary, 0.0, summary.total_weight())(&x0, &mut g);
    let norm2: f64 = x0.iter().map(|t| t.exp() * t.exp()).sum();
    let p = 1e-5 * f0.abs() / norm2;
    if p.is_finite() && p > 0.0 {
        p
    } else {
        1e-6
    }
}

pub(crate) fn minimize<F>(
    solver: Solver,
    f: F,
    x0: &[f64],
    budget: &Budget,
    model: &'static str,
    limit: std::time::Duration,
) -> Result<Minimum, BtydError>
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    let result = match solver {
        Solver::Lbfgs => optim::lbfgs(f, x0, budget),
        Solver::ArgminLbfgs => optim::argmin_lbfgs(f, x0, budget),
    };
    result.map_err(|e| match e {
        OptFailure::NotConverged {
            iterations,
            grad_norm,
            reason,
        } => BtydError::NotConverged {
            model,
            iterations,
            grad_norm,
            reason,
        },
        OptFailure::Timeout { iterations } => BtydError::Timeout {
            model,
            limit,
            iterations,
        },
        OptFailure::NonFiniteStart => BtydError::NonFinite {
            model,
            stage: "starting point",
        },
    })
}

/// A stop flat to rounding where the Hessian is not positive definite: not an optimum but the
/// flat end of a ridge (parameters running off to infinity), where the likelihood is nearly
/// constant and the predictions of the special functions break down (a BG/NBD fit with
/// `a, b ~ 1e5` predicted 0 purchases for every customer). A failure, so a penalised refit
/// follows.
pub(crate) fn ridge(model: &'static str, min: &Minimum) -> BtydError {
    BtydError::NotConverged {
        model,
        iterations: min.iterations,
        grad_norm: min.grad_norm,
        reason: "flat to rounding on a ridge (Hessian not positive definite): no interior optimum",
    }
}

/// Fits `kind` to `summary` by penalised maximum likelihood.
pub fn fit_transactions(
    kind: ModelKind,
    summary: &Summary,
    options: &FitOptions,
) -> Result<FittedTransactions, BtydError> {
    options.validate()?;
    let budget = Budget::starting_now(options);
    let model = kind.name();
    let w = summary.total_weight();
    let x0 = start(kind, summary);
    let min = minimize(
        options.solver,
        objective(kind, summary, options.penalizer, w),
        &x0,
        &budget,
        model,
        options.timeout,
    )?;
    let mut p = [0.0; 4];
    for (pi, xi) in p.iter_mut().zip(&min.x) {
        *pi = xi.exp();
    }
    let (ll, _) = natural_ll(kind, &p, summary, false);
    if check_params(&p).is_err() || !ll.is_finite() {
        return Err(BtydError::NonFinite {
            model,
            stage: "optimum",
        });
    }
    let std_errors = optim::std_errors(objective(kind, summary, options.penalizer, 1.0), &min.x)
        .and_then(|se| <[f64; 4]>::try_from(se).ok())
        .map(|se| TransactionParams::from_values(kind, se));
    if min.grad_norm > options.grad_tolerance && std_errors.is_none() {
        return Err(ridge(model, &min));
    }
    Ok(FittedTransactions {
        kind,
        params: TransactionParams::from_values(kind, p),
        std_errors,
        log_likelihood: ll,
        iterations: min.iterations,
        grad_norm: min.grad_norm,
        customers: summary.customers(),
        penalizer: options.penalizer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one CLV loop: whole months reproduce lifetimes' month sum, and a horizon that ends
    /// inside a month cuts that month there, discounted as a whole month.
    #[test]
    fn discounted_purchases_cut_the_last_month_at_the_horizon() {
        let m = FittedTransactions::from_params(ModelKind::BgNbd, [0.24, 4.4, 0.79, 2.4])
            .expect("params");
        let c = Customer::new(2.0, 30.0, 38.0);
        let e = |t: f64| m.expected_purchases(&c, t);
        let (month, d) = (4.345, 0.01);
        let whole = m.discounted_purchases(&c, 3.0 * month, month, d);
        let sum: f64 = (1..=3)
            .map(|k| (e(f64::from(k) * month) - e(f64::from(k - 1) * month)) / 1.01f64.powi(k))
            .sum();
        assert!((whole.discounted - sum).abs() < 1e-12, "{whole:?} vs {sum}");
        assert_eq!(whole.expected, e(3.0 * month));
        let cut = m.discounted_purchases(&c, 1.5 * month, month, d);
        let want = e(month) / 1.01 + (e(1.5 * month) - e(month)) / (1.01 * 1.01);
        assert!((cut.discounted - want).abs() < 1e-12, "{cut:?} vs {want}");
        assert_eq!(cut.expected, e(1.5 * month));
        // No discount: every expected purchase counts once.
        let flat = m.discounted_purchases(&c, 2.5 * month, month, 0.0);
        assert!((flat.discounted - flat.expected).abs() < 1e-12);
        assert!(flat.expected > 0.0);
    }
}
