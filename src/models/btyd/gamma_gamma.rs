//! Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value Curves for
//! Customer Base Analysis").
//!
//! Each transaction value is Gamma(p, ν) with a customer-level scale ν ~ Gamma(q, γ). Given x
//! repeat transactions with mean `m`, the sum is Gamma(px, ν), so `m` is Gamma(px, νx);
//! integrating ν out gives the density of the observed mean
//!
//! `f(m | x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q · x^(px) · m^(px−1) / (γ + x·m)^(px+q)`.
//!
//! **Log-likelihood convention.** [`GammaGamma::log_likelihood`] is `Σ ln f(m_i | x_i)` over the
//! customers with `x > 0`, *including* the Jacobian factor `x^(px)` of the sum-to-mean change of
//! variable — the definition `lifetimes` uses, which gives the published −4055.92 on the CDNOW
//! sample. (The density of the sum instead of the mean drops `px·ln x` and adds `−ln x`; the
//! likelihood of the individual transactions would need the transactions themselves.) The
//! terms are regrouped as
//! `ln Γ(px+q) − ln Γ(px) − ln Γ(q) − ln m + px·ln(xm/(xm+γ)) + q·ln(γ/(xm+γ))`
//! so that spends from 1e-3 to 1e7 never overflow.
//!
//! The conditional mean spend is `E[Z | x, m] = p(γ + x·m)/(px + q − 1)`, a weighted average
//! of the population mean `pγ/(q − 1)` and the customer's own mean.

use rayon::prelude::*;

use serde::{Deserialize, Serialize};
use statrs::function::gamma::{digamma, ln_gamma};

use super::optim::{self, Budget};
use super::transactions::{minimize, ridge};
use super::{param_in_domain, BtydError, FitOptions};

/// Gamma-Gamma parameters (serialised as `p, q, gamma`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GammaGammaParams {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

/// A fitted Gamma-Gamma spend model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
    /// Standard errors on the natural scale (`None` if the Hessian is not positive definite).
    pub std_errors: Option<GammaGammaParams>,
    /// Total log-likelihood (see the module doc for its constant terms).
    pub log_likelihood: f64,
    pub iterations: u64,
    pub grad_norm: f64,
    /// Customers with `x > 0` fitted on.
    pub customers: u64,
    pub penalizer: f64,
}

impl GammaGamma {
    /// A model from known parameters, for prediction.
    pub fn from_params(p: f64, q: f64, gamma: f64) -> Result<Self, BtydError> {
        check(&[p, q, gamma])?;
        Ok(GammaGamma {
            p,
            q,
            gamma,
            std_errors: None,
            log_likelihood: f64::NAN,
            iterations: 0,
            grad_norm: f64::NAN,
            customers: 0,
            penalizer: 0.0,
        })
    }

    /// Whether the mean order value exists (`q > 1`); without it expected order values are
    /// infinite and the model is not used for CLV.
    pub fn has_finite_mean(&self) -> bool {
        self.q > 1.0
    }

    /// The first parameter outside its domain ([`param_in_domain`]): its name and value.
    pub fn out_of_domain(&self) -> Option<(&'static str, f64)> {
        [("p", self.p), ("q", self.q), ("gamma", self.gamma)]
            .into_iter()
            .find(|(_, v)| !param_in_domain(*v))
    }

    /// Population mean order value `pγ/(q − 1)`; +∞ when `q ≤ 1` (the mean does not exist).
    pub fn population_mean(&self) -> f64 {
        if self.has_finite_mean() {
            self.p * self.gamma / (self.q - 1.0)
        } else {
            f64::INFINITY
        }
    }

    /// Expected value of the customer's next orders given `x` repeat purchases with mean value
    /// `mean_spend`: `p(γ + x·m)/(px + q − 1)`. With `x = 0` (or a non-positive / non-finite
    /// `mean_spend`, i.e. nothing usable observed) this is the population mean.
    pub fn expected_spend(&self, x: f64, mean_spend: f64) -> f64 {
        if !(x > 0.0 && mean_spend.is_finite() && mean_spend > 0.0) {
            return self.population_mean();
        }
        let denom = self.p * x + self.q - 1.0;
        if denom <= 0.0 {
            return f64::INFINITY;
        }
        self.p * (self.gamma + x * mean_spend) / denom
    }
}

fn check(p: &[f64]) -> Result<(), BtydError> {
    if p.iter().all(|v| param_in_domain(*v)) {
        Ok(())
    } else {
        Err(BtydError::InvalidParams(format!(
            "Gamma-Gamma parameters must be finite and > 0, got {p:?}"
        )))
    }
}

/// Distinct `(x, m)` pairs with weights, customers with `x = 0` dropped.
struct SpendData {
    rows: Vec<(f64, f64)>,
    weights: Vec<f64>,
    /// `ln(mean_spend)` of each row, computed once.
    ln_m: Vec<f64>,
    total: f64,
}

fn collect(x: &[f64], mean_spend: &[f64]) -> Result<SpendData, BtydError> {
    if x.len() != mean_spend.len() {
        return Err(BtydError::InvalidOptions(format!(
            "x has {} values but mean_spend has {}",
            x.len(),
            mean_spend.len()
        )));
    }
    let mut pairs = Vec::with_capacity(x.len());
    for (index, (&xi, &mi)) in x.iter().zip(mean_spend).enumerate() {
        if !(xi.is_finite() && xi >= 0.0 && xi.fract() == 0.0) {
            return Err(BtydError::InvalidCustomer {
                index,
                reason: format!("x must be a whole number >= 0, got {xi}"),
            });
        }
        if xi == 0.0 {
            continue;
        }
        if !(mi.is_finite() && mi > 0.0) {
            return Err(BtydError::InvalidCustomer {
                index,
                reason: format!("mean spend must be finite and > 0 when x > 0, got {mi}"),
            });
        }
        pairs.push((xi, mi));
    }
    if pairs.is_empty() {
        return Err(BtydError::Empty);
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let total = pairs.len() as f64;
    let mut rows: Vec<(f64, f64)> = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    for pr in pairs {
        match (rows.last(), weights.last_mut()) {
            (Some(last), Some(w)) if last.0 == pr.0 && last.1.to_bits() == pr.1.to_bits() => {
                *w += 1.0
            }
            _ => {
                rows.push(pr);
                weights.push(1.0);
            }
        }
    }
    let ln_m = rows.iter().map(|&(_, m)| m.ln()).collect();
    Ok(SpendData {
        rows,
        weights,
        ln_m,
        total,
    })
}

/// Total log-likelihood and gradient with respect to `(p, q, γ)`.
fn ll_grad(params: &[f64; 3], data: &SpendData) -> (f64, [f64; 3]) {
    // Fixed-size blocks summed in order: parallel (rayon) yet bit-identical for any number of
    // threads.
    const BLOCK: usize = 16_384;
    let n = data.rows.len();
    let parts: Vec<(f64, [f64; 3])> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| ll_grad_rows(params, data, b * BLOCK..((b + 1) * BLOCK).min(n)))
        .collect();
    let mut ll = 0.0;
    let mut g = [0.0; 3];
    for (l, gb) in parts {
        ll += l;
        for (a, v) in g.iter_mut().zip(gb) {
            *a += v;
        }
    }
    (ll, g)
}

fn ll_grad_rows(
    params: &[f64; 3],
    data: &SpendData,
    range: std::ops::Range<usize>,
) -> (f64, [f64; 3]) {
    let [p, q, gamma] = *params;
    let (lg_q, dg_q) = (ln_gamma(q), digamma(q));
    let mut ll = 0.0;
    let mut g = [0.0; 3];
    // Rows are sorted by x: the Gamma-function terms depend on x only, so they are computed
    // once per distinct x (a few dozen values) instead of once per customer.
    let mut current_x = f64::NAN;
    let (mut lg_ratio, mut dg_pxq, mut dg_px) = (0.0, 0.0, 0.0);
    for i in range {
        let (x, m) = data.rows[i];
        let (w, ln_m) = (data.weights[i], data.ln_m[i]);
        let px = p * x;
        if x != current_x {
            current_x = x;
            lg_ratio = ln_gamma(px + q) - ln_gamma(px);
            dg_pxq = digamma(px + q);
            dg_px = digamma(px);
        }
        let xm = x * m;
        let ln_own = -(gamma / xm).ln_1p(); // ln(xm/(xm+γ))
        let ln_pop = -(xm / gamma).ln_1p(); // ln(γ/(xm+γ))
        ll += w * (lg_ratio - lg_q - ln_m + px * ln_own + q * ln_pop);
        g[0] += w * x * (dg_pxq - dg_px + ln_own);
        g[1] += w * (dg_pxq - dg_q + ln_pop);
        g[2] += w * (q / gamma - (px + q) / (xm + gamma));
    }
    (ll, g)
}

/// Gamma-Gamma log-likelihood of `(x, mean_spend)` at `[p, q, γ]` (customers with `x = 0` are
/// skipped) and its analytic gradient.
pub fn gamma_gamma_log_likelihood(
    params: &[f64; 3],
    x: &[f64],
    mean_spend: &[f64],
) -> Result<(f64, [f64; 3]), BtydError> {
    check(params)?;
    let data = collect(x, mean_spend)?;
    Ok(ll_grad(params, &data))
}

/// Fits the Gamma-Gamma model on the customers with `x > 0` (`x` = number of repeat
/// purchases, `mean_spend` = their mean value). Customers with `x = 0` are ignored.
pub fn fit_gamma_gamma(
    x: &[f64],
    mean_spend: &[f64],
    options: &FitOptions,
) -> Result<GammaGamma, BtydError> {
    options.validate()?;
    let budget = Budget::starting_now(options);
    let data = collect(x, mean_spend)?;
    let penalizer = options.penalizer;
    let objective = |divisor: f64| {
        let data = &data;
        move |theta: &[f64], grad: &mut [f64]| -> f64 {
            let mut p = [0.0; 3];
            for (pi, ti) in p.iter_mut().zip(theta) {
                *pi = ti.exp();
            }
            if !p.iter().all(|v| v.is_finite() && *v > 0.0) {
                return f64::INFINITY;
            }
            let (ll, g) = ll_grad(&p, data);
            let scale = data.total / divisor;
            let mut value = -ll / divisor;
            for i in 0..3 {
                value += scale * penalizer * p[i] * p[i];
                grad[i] = (-g[i] / divisor + scale * 2.0 * penalizer * p[i]) * p[i];
            }
            value
        }
    };
    // Start: p = 1, q = 2, γ = mean spend, so that the population mean pγ/(q−1) matches the
    // data's mean.
    let mean: f64 = data
        .rows
        .iter()
        .zip(&data.weights)
        .map(|(r, w)| r.1 * w)
        .sum::<f64>()
        / data.total;
    let x0 = [0.0, 2.0_f64.ln(), mean.ln()];
    let min = minimize(
        options.solver,
        objective(data.total),
        &x0,
        &budget,
        "Gamma-Gamma",
        options.timeout,
    )?;
    let p = [min.x[0].exp(), min.x[1].exp(), min.x[2].exp()];
    let (ll, _) = ll_grad(&p, &data);
    if check(&p).is_err() || !ll.is_finite() {
        return Err(BtydError::NonFinite {
            model: "Gamma-Gamma",
            stage: "optimum",
        });
    }
    let std_errors = optim::std_errors(objective(1.0), &min.x).and_then(|se| match se[..] {
        [sp, sq, sg] => Some(GammaGammaParams {
            p: sp,
            q: sq,
            gamma: sg,
        }),
        _ => None,
    });
    if min.grad_norm > options.grad_tolerance && std_errors.is_none() {
        return Err(ridge("Gamma-Gamma", &min));
    }
    Ok(GammaGamma {
        p: p[0],
        q: p[1],
        gamma: p[2],
        std_errors,
        log_likelihood: ll,
        iterations: min.iterations,
        grad_norm: min.grad_norm,
        customers: data.total as u64,
        penalizer,
    })
}
