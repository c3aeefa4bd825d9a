//! Pareto/NBD: log-likelihood (gradient by forward-mode differentiation), P(alive) and expected
//! purchases.
//!
//! Given λ and μ, a customer alive until τ makes x purchases in (0, τ] and none in (t_x, τ];
//! mixing λ ~ Gamma(r, α) and μ ~ Gamma(s, β) gives
//!
//! `L = Γ(r+x) α^r β^s / Γ(r) · [ (α+T)^(−(r+x)) (β+T)^(−s)
//!                                + s ∫_{t_x}^{T} (α+y)^(−(r+x)) (β+y)^(−(s+1)) dy ]`.
//!
//! The textbook form writes the integral as a *difference* of two `2F1` terms, which cancels
//! catastrophically when `t_x` is close to `T`. Integrating the first term by parts instead,
//! `(α+T)^(−m)(β+T)^(−s) = s·I_{m,s+1}(T) + m·I_{m+1,s}(T)` with
//! `I_{m,n}(t) = ∫_t^∞ (α+y)^(−m) (β+y)^(−n) dy` and `m = r + x`, gives a sum of two positive
//! terms:
//!
//! `bracket = s·I_{m,s+1}(t_x) + m·I_{m+1,s}(T)`.
//!
//! Substituting `u = (α+t)/(α+y)` turns each integral into Euler's integral for the
//! hypergeometric function with `c = b + 1`:
//!
//! `I_{m,n}(t) = (α+t)^(−b) / b · 2F1(n, b; b+1; (α−β)/(α+t))`, `b = m + n − 1 = r + s + x`,
//!
//! and the same with α and β (and m and n) swapped. We expand around the larger of α and β, so
//! the argument is in `[0, 1)` (this choice is the Pfaff transformation) and its complement
//! `(β+t)/(α+t)` is computed directly rather than as `1 − z`. `P(alive) = (α+T)^(−m)
//! (β+T)^(−s) / bracket`, and the expected-purchases formula is the standard one.
//!
//! The likelihood is written once over [`Scalar`]; on [`Dual4`] it returns the exact gradient,
//! including the derivatives of `2F1` with respect to its parameters (which have no closed
//! form) — the continued fraction is differentiated step by step.

use statrs::function::gamma::{digamma, ln_gamma};

use super::beta_geo::chunked_sum;
use super::special::{ln_hyp2f1_b1, log_add_exp, one_minus_exp_over, Dual4, Scalar};
use super::{Customer, Summary};

/// `ln bracket` (see the module doc) for one customer.
fn ln_bracket<T: Scalar>(r: T, alpha: T, s: T, beta: T, c: &Customer) -> T {
    let m = r + c.x;
    let b = m + s;
    let (t1, t2) = if alpha.val() >= beta.val() {
        let at_x = alpha + c.t_x;
        let at = alpha + c.t;
        let z1 = (alpha - beta) / at_x;
        let om1 = (beta + c.t_x) / at_x;
        let z2 = (alpha - beta) / at;
        let om2 = (beta + c.t) / at;
        (
            s.ln() - b * at_x.ln() + ln_hyp2f1_b1(s + 1.0, b, z1, om1),
            m.ln() - b * at.ln() + ln_hyp2f1_b1(s, b, z2, om2),
        )
    } else {
        let bt_x = beta + c.t_x;
        let bt = beta + c.t;
        let z1 = (beta - alpha) / bt_x;
        let om1 = (alpha + c.t_x) / bt_x;
        let z2 = (beta - alpha) / bt;
        let om2 = (alpha + c.t) / bt;
        (
            s.ln() - b * bt_x.ln() + ln_hyp2f1_b1(m, b, z1, om1),
            m.ln() - b * bt.ln() + ln_hyp2f1_b1(m + 1.0, b, z2, om2),
        )
    };
    log_add_exp(t1, t2) - b.ln()
}

/// Total weighted log-likelihood; with `want_gradient`, also its gradient with respect to
/// `(r, α, s, β)` (otherwise the gradient is zero and the cheaper `f64` path runs).
pub(crate) fn log_likelihood(
    params: &[f64; 4],
    summary: &Summary,
    want_gradient: bool,
) -> (f64, [f64; 4]) {
    let [r, alpha, s, beta] = *params;
    let w_total = summary.total_weight();
    let mut ll = w_total * (r * alpha.ln() + s * beta.ln());
    let mut g = [
        w_total * alpha.ln(),
        w_total * r / alpha,
        w_total * beta.ln(),
        w_total * s / beta,
    ];
    let (lg_r, dg_r) = (ln_gamma(r), digamma(r));
    for &(x, w) in summary.x_groups() {
        ll += w * (ln_gamma(r + x) - lg_r);
        g[0] += w * (digamma(r + x) - dg_r);
    }
    let rows = summary.rows();
    let weights = summary.weights();
    let (row_ll, row_g) = chunked_sum(rows.len(), |lo, hi| {
        let mut ll = 0.0;
        let mut g = [0.0; 4];
        if want_gradient {
            let (dr, da, ds, db) = (
                Dual4::var(r, 0),
                Dual4::var(alpha, 1),
                Dual4::var(s, 2),
                Dual4::var(beta, 3),
            );
            for (c, &w) in rows[lo..hi].iter().zip(&weights[lo..hi]) {
                let v = ln_bracket(dr, da, ds, db, c);
                ll += w * v.v;
                for (gi, di) in g.iter_mut().zip(v.d) {
                    *gi += w * di;
                }
            }
        } else {
            for (c, &w) in rows[lo..hi].iter().zip(&weights[lo..hi]) {
                ll += w * ln_bracket(r, alpha, s, beta, c);
            }
        }
        (ll, g)
    });
    ll += row_ll;
    for i in 0..4 {
        g[i] += row_g[i];
    }
    (ll, g)
}

/// P(alive at T | x, t_x, T).
pub(crate) fn p_alive(params: &[f64; 4], c: &Customer) -> f64 {
    let [r, alpha, s, beta] = *params;
    let ln_alive = -(r + c.x) * (alpha + c.t).ln() - s * (beta + c.t).ln();
    let v = (ln_alive - ln_bracket(r, alpha, s, beta, c)).exp();
    // Mathematically ≤ 1 (equal when t_x = T); clamp the last-bit rounding.
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// E[purchases in (T, T + horizon] | x, t_x, T]
/// `= (r+x)(β+T)/((α+T)(s−1)) · [1 − ((β+T)/(β+T+horizon))^(s−1)] · P(alive)`,
/// with the bracket evaluated stably through `s = 1`.
pub(crate) fn expected_purchases(params: &[f64; 4], c: &Customer, horizon: f64) -> f64 {
    let [r, alpha, s, beta] = *params;
    if horizon <= 0.0 {
        return 0.0;
    }
    let l = -(horizon / (beta + c.t)).ln_1p();
    let rate = (r + c.x) * (beta + c.t) / (alpha + c.t);
    (rate * one_minus_exp_over(s - 1.0, l) * p_alive(params, c)).max(0.0)
}

/// E[X(t)] for a new customer: `rβ/(α(s−1)) · [1 − (β/(β+t))^(s−1)]`.
pub(crate) fn expected_purchases_new(params: &[f64; 4], t: f64) -> f64 {
    let [r, alpha, s, beta] = *params;
    if t <= 0.0 {
        return 0.0;
    }
    let l = -(t / beta).ln_1p();
    (r * beta / alpha * one_minus_exp_over(s - 1.0, l)).max(0.0)
}
