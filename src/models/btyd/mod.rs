//! Probabilistic "buy till you die" (BTYD) models of repeat purchasing and spend.
//!
//! Transaction models, fitted on one summary row per customer (`x` repeat purchases, the time
//! `t_x` of the last one and the age `T`, both measured from the first purchase):
//! * **BG/NBD** (Fader, Hardie & Lee 2005): purchases Poisson(λ) with λ ~ Gamma(r, α); after
//!   each *repeat* purchase the customer drops out with probability p ~ Beta(a, b).
//! * **MBG/NBD** (Batislam, Denizel & Filiztekin 2007): as BG/NBD, but a drop-out may also
//!   happen right after the first purchase, so customers with `x = 0` can be inactive.
//! * **Pareto/NBD** (Schmittlein, Morrison & Colombo 1987): lifetime Exponential(μ) with
//!   μ ~ Gamma(s, β). Its likelihood needs the Gauss hypergeometric function, see `pareto.rs`
//!   and `special/`.
//!
//! Spend model: **Gamma-Gamma** (Fader, Hardie & Lee 2005, "RFM and CLV"), fitted on the
//! customers with at least one repeat purchase.
//!
//! # Units and conventions
//! The models are unit-free: `t_x`, `T`, horizons and the scale parameters α, β are all in the
//! unit of the data. The pipeline uses **days**; the CDNOW reference figures are in weeks.
//! Monthly quantities (CLV, [`FittedTransactions::discounted_purchases`]) take an explicit
//! `periods_per_month`: `btyd.days_per_month` for days (default
//! [`crate::time::DAYS_PER_MONTH`] = 365.25/12 = 30.4375), [`WEEKS_PER_MONTH_LIFETIMES`]
//! (4.345, the constant the Python `lifetimes` package uses) to reproduce its numbers.
//!
//! # Fitting
//! Identical `(x, t_x, T)` rows are collapsed into weights ([`Summary`]). The objective is the
//! weighted mean negative log-likelihood plus `penalizer · Σ θ²` over the natural parameters
//! (the `lifetimes` convention, so its penalizer values carry over), minimised over
//! log-parameters by L-BFGS with analytic gradients ([`Solver`]). Every fit has an iteration
//! cap and a wall-clock limit and fails with a [`BtydError`] instead of returning a
//! non-converged optimum. Standard errors come from a numerical Hessian (central differences of
//! the analytic gradient) of the total penalised negative log-likelihood, inverted on the log
//! scale and mapped to the natural scale by the delta method (`se(θ) = θ · se(ln θ)`).

mod beta_geo;
mod gamma_gamma;
mod optim;
mod pareto;
mod special;
mod transactions;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use gamma_gamma::{fit_gamma_gamma, gamma_gamma_log_likelihood, GammaGamma, GammaGammaParams};
pub use transactions::{
    fallback_penalizer, fit_transactions, transaction_log_likelihood, BetaGeoParams,
    DiscountedPurchases, FittedTransactions, ParetoParams, TransactionParams,
};

/// Weeks per month in the `lifetimes` CLV code (its `freq="W"` factor): the months of
/// [`FittedTransactions::discounted_purchases`] that reproduce its CLV on data in weeks.
pub const WEEKS_PER_MONTH_LIFETIMES: f64 = 4.345;

/// The domain of every BTYD parameter (r, α, a, b, s, β, p, q, γ): finite and > 0. The one
/// definition used by the fits, `from_params` and the model-file checks.
pub fn param_in_domain(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// One customer's summary, in any time unit (the same for every row and horizon).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Number of repeat purchases (purchase occasions after the first), a whole number ≥ 0.
    pub x: f64,
    /// Time from the first to the last purchase (0 when `x = 0`).
    pub t_x: f64,
    /// Time from the first purchase to the end of the calibration period (`T`), > 0.
    pub t: f64,
}

impl Customer {
    pub fn new(x: f64, t_x: f64, t: f64) -> Self {
        Customer { x, t_x, t }
    }

    /// Checks the summary invariants; `Err` carries the reason.
    pub fn check(&self) -> Result<(), String> {
        let Customer { x, t_x, t } = *self;
        if !(x.is_finite() && t_x.is_finite() && t.is_finite()) {
            return Err(format!("non-finite value (x {x}, t_x {t_x}, T {t})"));
        }
        if x < 0.0 || x.fract() != 0.0 {
            return Err(format!("x must be a whole number >= 0, got {x}"));
        }
        if t <= 0.0 {
            return Err(format!("T must be > 0, got {t}"));
        }
        if t_x < 0.0 || t_x > t {
            return Err(format!("t_x must be in [0, T], got t_x {t_x}, T {t}"));
        }
        if x == 0.0 && t_x != 0.0 {
            return Err(format!("t_x must be 0 when x = 0, got {t_x}"));
        }
        Ok(())
    }
}

/// Validated customer summaries with identical rows collapsed into weights, sorted by
/// `(x, t_x, T)`. Collapsing is exact (bitwise equal rows) and makes the fit cost depend on the
/// number of distinct rows: with whole-day times a large cohort has far fewer distinct rows than
/// customers.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    rows: Vec<Customer>,
    weights: Vec<f64>,
    /// Distinct `x` values with their total weight: terms that depend on `x` only (`ln Γ(r+x)`…)
    /// are computed once per value.
    x_groups: Vec<(f64, f64)>,
    total_weight: f64,
    customers: u64,
}

impl Summary {
    /// Validates and collapses the rows. Errors name the first offending row (0-based).
    pub fn from_rows(rows: &[Customer]) -> Result<Summary, BtydError> {
        if rows.is_empty() {
            return Err(BtydError::Empty);
        }
        for (index, c) in rows.iter().enumerate() {
            c.check()
                .map_err(|reason| BtydError::InvalidCustomer { index, reason })?;
        }
        let mut sorted: Vec<Customer> = rows.to_vec();
        sorted.sort_by(|p, q| {
            p.x.total_cmp(&q.x)
                .then(p.t_x.total_cmp(&q.t_x))
                .then(p.t.total_cmp(&q.t))
        });
        let mut out_rows: Vec<Customer> = Vec::new();
        let mut weights: Vec<f64> = Vec::new();
        for c in sorted {
            match (out_rows.last(), weights.last_mut()) {
                (Some(last), Some(w)) if same_bits(last, &c) => *w += 1.0,
                _ => {
                    out_rows.push(c);
                    weights.push(1.0);
                }
            }
        }
        let mut x_groups: Vec<(f64, f64)> = Vec::new();
        for (c, &w) in out_rows.iter().zip(&weights) {
            match x_groups.last_mut() {
                Some((x, tw)) if *x == c.x => *tw += w,
                _ => x_groups.push((c.x, w)),
            }
        }
        Ok(Summary {
            rows: out_rows,
            weights,
            x_groups,
            total_weight: rows.len() as f64,
            customers: rows.len() as u64,
        })
    }

    /// Distinct rows, sorted.
    pub fn rows(&self) -> &[Customer] {
        &self.rows
    }
    /// How many input rows each distinct row stands for.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
    /// Number of input rows (customers).
    pub fn customers(&self) -> u64 {
        self.customers
    }
    pub(crate) fn x_groups(&self) -> &[(f64, f64)] {
        &self.x_groups
    }
    pub(crate) fn total_weight(&self) -> f64 {
        self.total_weight
    }
}

fn same_bits(p: &Customer, q: &Customer) -> bool {
    p.x.to_bits() == q.x.to_bits()
        && p.t_x.to_bits() == q.t_x.to_bits()
        && p.t.to_bits() == q.t.to_bits()
}

/// Which transaction model to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelKind {
    BgNbd,
    MbgNbd,
    ParetoNbd,
}

impl ModelKind {
    /// Every kind.
    pub const ALL: [ModelKind; 3] = [ModelKind::BgNbd, ModelKind::MbgNbd, ModelKind::ParetoNbd];

    /// Its name in config and on the command line (`btyd.model`, `btyd --model`), and in
    /// the `fit` record of metrics.json and model.json: `bgnbd`, `mbgnbd`, `pnbd`.
    pub fn key(self) -> &'static str {
        match self {
            ModelKind::BgNbd => "bgnbd",
            ModelKind::MbgNbd => "mbgnbd",
            ModelKind::ParetoNbd => "pnbd",
        }
    }

    /// The kind of a [`ModelKind::key`].
    pub fn from_key(key: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// Name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::BgNbd => "BG/NBD",
            ModelKind::MbgNbd => "MBG/NBD",
            ModelKind::ParetoNbd => "Pareto/NBD",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which L-BFGS implementation minimises the objective.
///
/// [`Solver::Lbfgs`] (the default) is this module's own L-BFGS: one pass computes the value and
/// the gradient together (they share every `ln Γ`, logarithm and hypergeometric evaluation),
/// the line search enforces the strong Wolfe conditions with cubic interpolation and accepts
/// Hager–Zhang's approximate Wolfe conditions where the objective is flat to rounding, steps
/// are capped in log-parameter space (no `exp` overflow on a wild first step), non-finite trial
/// points shrink the step, and the wall clock is checked before every evaluation.
/// [`Solver::ArgminLbfgs`] runs argmin's L-BFGS with its Moré–Thuente line search on the same
/// objective, kept for comparison (`benches/btyd.rs`). Measured on the CDNOW sample (release,
/// 2 cores, standard errors included): BG/NBD 1.8 ms with either; Pareto/NBD 27 ms with ours
/// and 65 ms with argmin's (25 iterations against 21, and more objective evaluations per
/// iteration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Solver {
    #[default]
    Lbfgs,
    ArgminLbfgs,
}

/// Fit settings, checked by [`FitOptions::validate`] before every fit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// L2 penalty coefficient on the natural parameters (added to the *mean* negative
    /// log-likelihood, as in `lifetimes`). 0 = plain maximum likelihood.
    pub penalizer: f64,
    /// Cap on optimiser iterations; reaching it without convergence is an error.
    pub max_iterations: u64,
    /// Wall-clock limit for the whole fit (including standard errors).
    pub timeout: Duration,
    /// Convergence: Euclidean norm of the gradient of the mean penalised negative
    /// log-likelihood with respect to the log-parameters.
    pub grad_tolerance: f64,
    /// Convergence when the line search finds no decrease left (the objective is flat to
    /// rounding): accepted if the gradient norm is at most this. The objective is a mean per
    /// customer, so 1e-4 means that changing any parameter by 1% moves a customer's
    /// log-likelihood by at most 1e-6 (and the total by at most 1e-6 × customers: 0.02 on
    /// 20,000 customers, far below the ~2 units a likelihood-ratio test can tell apart).
    /// Such stops happen at optima the rounding of the objective hides, and at the flat end of
    /// a ridge where a parameter pair runs off to infinity (BG/NBD `a, b → ∞` with `a/(a+b)`
    /// fixed: every customer has the same drop-out probability); the fitted predictions are
    /// then those of the limit. Only the default [`Solver::Lbfgs`] uses it.
    #[serde(default = "default_flat_tolerance")]
    pub flat_tolerance: f64,
    pub solver: Solver,
}

fn default_flat_tolerance() -> f64 {
    1e-4
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            penalizer: 0.0,
            max_iterations: 500,
            timeout: Duration::from_secs(60),
            grad_tolerance: 1e-8,
            flat_tolerance: default_flat_tolerance(),
            solver: Solver::Lbfgs,
        }
    }
}

impl FitOptions {
    pub fn validate(&self) -> Result<(), BtydError> {
        if !(self.penalizer.is_finite() && self.penalizer >= 0.0) {
            return Err(BtydError::InvalidOptions(format!(
                "penalizer must be finite and >= 0, got {}",
                self.penalizer
            )));
        }
        if self.max_iterations == 0 {
            return Err(BtydError::InvalidOptions(
                "max_iterations must be >= 1".to_string(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(BtydError::InvalidOptions("timeout must be > 0".to_string()));
        }
        if !(self.flat_tolerance.is_finite() && self.flat_tolerance >= 0.0) {
            return Err(BtydError::InvalidOptions(format!(
                "flat_tolerance must be finite and >= 0, got {}",
                self.flat_tolerance
            )));
        }
        if !(self.grad_tolerance.is_finite() && self.grad_tolerance > 0.0) {
            return Err(BtydError::InvalidOptions(format!(
                "grad_tolerance must be finite and > 0, got {}",
                self.grad_tolerance
            )));
        }
        Ok(())
    }
}

/// Errors of the BTYD models.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BtydError {
    #[error("no customers to fit")]
    Empty,
    #[error("invalid customer at row {index}: {reason}")]
    InvalidCustomer { index: usize, reason: String },
    #[error("invalid fit options: {0}")]
    InvalidOptions(String),
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("{model} fit did not converge after {iterations} iterations (gradient norm {grad_norm:.3e}): {reason}")]
    NotConverged {
        model: &'static str,
        iterations: u64,
        grad_norm: f64,
        reason: &'static str,
    },
    #[error("{model} fit exceeded its time limit of {limit:?} after {iterations} iterations")]
    Timeout {
        model: &'static str,
        limit: Duration,
        iterations: u64,
    },
    #[error("{model}: the log-likelihood is not finite at the {stage}")]
    NonFinite {
        model: &'static str,
        stage: &'static str,
    },
    #[error("no BTYD transaction model could be fitted: {attempts}")]
    AllFailed { attempts: String },
}

impl BtydError {
    /// Whether the error is about the input or the options (no other fit can help), rather
    /// than a fit that did not work out.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            BtydError::Empty | BtydError::InvalidCustomer { .. } | BtydError::InvalidOptions(_)
        )
    }
}
