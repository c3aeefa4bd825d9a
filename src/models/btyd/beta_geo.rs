//! BG/NBD and MBG/NBD: log-likelihood with closed-form gradient, P(alive) and expected
//! purchases.
//!
//! Both models share one likelihood shape. With `m = r + x`, `u = ln(α + T)`,
//! `v = ln(α + t_x)` and a shift `h` (`h = −1` for BG/NBD, `h = 0` for MBG/NBD):
//!
//! `ln L = ln Γ(m) − ln Γ(r) + r ln α + ln Γ(a+b) + ln Γ(b+x+h) − ln Γ(b) − ln Γ(a+b+x+1+h)
//!         + ln[ (b+x+h)·e^(−m·u) + a·e^(−m·v) ]`
//!
//! which is the published `B(a, b+x)/B(a,b)·… + B(a+1, b+x−1)/B(a,b)·…` (BG/NBD) or
//! `B(a, b+x+1)/B(a,b)·… + B(a+1, b+x)/B(a,b)·…` (MBG/NBD) after dividing out the common
//! `Γ(b+x+h)` with `Γ(y+1) = y·Γ(y)`. BG/NBD customers with `x = 0` have only the first term:
//! `ln L = r·ln(α/(α+T))`. The bracket is a two-term log-sum-exp, so frequent buyers
//! (`x = 1000`) and long histories never overflow. Terms that depend on `x` alone are computed
//! once per distinct `x`.

use statrs::function::gamma::{digamma, ln_gamma};

use super::special::{beta_geo_growth, log_add_exp};
use super::{Customer, Summary};

/// Rows per chunk of the (optionally parallel) likelihood sum. Partial sums are added in chunk
/// order, so the result does not depend on the number of threads.
pub(crate) const CHUNK: usize = 4096;
/// Below this many distinct rows the sum runs on the calling thread.
pub(crate) const PARALLEL_ABOVE: usize = 16_384;

/// `h` in the module doc: −1 for BG/NBD, 0 for MBG/NBD.
fn shift(modified: bool) -> f64 {
    if modified {
        0.0
    } else {
        -1.0
    }
}

/// Total weighted log-likelihood and its gradient with respect to `(r, α, a, b)`.
pub(crate) fn log_likelihood(
    params: &[f64; 4],
    summary: &Summary,
    modified: bool,
) -> (f64, [f64; 4]) {
    let [r, alpha, a, b] = *params;
    let h = shift(modified);
    let mut ll = summary.total_weight() * r * alpha.ln();
    let mut g = [
        summary.total_weight() * alpha.ln(),
        summary.total_weight() * r / alpha,
        0.0,
        0.0,
    ];

    // Terms in x only.
    let (lg_r, dg_r) = (ln_gamma(r), digamma(r));
    let (lg_b, dg_b) = (ln_gamma(b), digamma(b));
    let (lg_ab, dg_ab) = (ln_gamma(a + b), digamma(a + b));
    for &(x, w) in summary.x_groups() {
        if x == 0.0 && !modified {
            continue; // BG/NBD x = 0: no beta-function terms
        }
        let bx = b + x + h;
        let abx = a + b + x + 1.0 + h;
        ll += w * (ln_gamma(r + x) - lg_r + lg_ab + ln_gamma(bx) - lg_b - ln_gamma(abx));
        let dg_abx = digamma(abx);
        g[0] += w * (digamma(r + x) - dg_r);
        g[2] += w * (dg_ab - dg_abx);
        g[3] += w * (dg_ab + digamma(bx) - dg_b - dg_abx);
    }

    let rows = summary.rows();
    let weights = summary.weights();
    let chunk = |lo: usize, hi: usize| -> (f64, [f64; 4]) {
        let mut ll = 0.0;
        let mut g = [0.0; 4];
        let ln_a = a.ln();
        for (c, &w) in rows[lo..hi].iter().zip(&weights[lo..hi]) {
            let m = r + c.x;
            let u = (alpha + c.t).ln();
            if c.x == 0.0 && !modified {
                ll -= w * r * u;
                g[0] -= w * u;
                g[1] -= w * r / (alpha + c.t);
                continue;
            }
            let v = (alpha + c.t_x).ln();
            let bx = b + c.x + h;
            let l1 = bx.ln() - m * u;
            let l2 = ln_a - m * v;
            let lse = log_add_exp(l1, l2);
            let w1 = (l1 - lse).exp();
            let w2 = (l2 - lse).exp();
            ll += w * lse;
            g[0] -= w * (w1 * u + w2 * v);
            g[1] -= w * m * (w1 / (alpha + c.t) + w2 / (alpha + c.t_x));
            g[2] += w * w2 / a;
            g[3] += w * w1 / bx;
        }
        (ll, g)
    };
    let (row_ll, row_g) = chunked_sum(rows.len(), chunk);
    ll += row_ll;
    for i in 0..4 {
        g[i] += row_g[i];
    }
    (ll, g)
}

/// Sums `f(lo, hi)` over fixed chunks of `0..n`, in parallel for large `n`, adding the partial
/// results in chunk order (deterministic for any thread count).
pub(crate) fn chunked_sum<F>(n: usize, f: F) -> (f64, [f64; 4])
where
    F: Fn(usize, usize) -> (f64, [f64; 4]) + Sync,
{
    let bounds: Vec<(usize, usize)> = (0..n)
        .step_by(CHUNK)
        .map(|lo| (lo, (lo + CHUNK).min(n)))
        .collect();
    let parts: Vec<(f64, [f64; 4])> = if n > PARALLEL_ABOVE {
        use rayon::prelude::*;
        bounds.par_iter().map(|&(lo, hi)| f(lo, hi)).collect()
    } else {
        bounds.iter().map(|&(lo, hi)| f(lo, hi)).collect()
    };
    let mut ll = 0.0;
    let mut g = [0.0; 4];
    for (pl, pg) in parts {
        ll += pl;
        for i in 0..4 {
            g[i] += pg[i];
        }
    }
    (ll, g)
}

/// `1 / P(alive)`: `1 + a/(b+x+h) · ((α+T)/(α+t_x))^(r+x)` (BG/NBD with `x = 0`: 1).
fn inverse_p_alive_ln_term(params: &[f64; 4], c: &Customer, modified: bool) -> Option<f64> {
    let [r, alpha, a, b] = *params;
    if c.x == 0.0 && !modified {
        return None;
    }
    let h = shift(modified);
    // ln of the second term; (α+T)/(α+t_x) ≥ 1 so this can be large for x = 1000, hence logs.
    Some(a.ln() - (b + c.x + h).ln() + (r + c.x) * ((alpha + c.t).ln() - (alpha + c.t_x).ln()))
}

/// P(alive at T | x, t_x, T).
pub(crate) fn p_alive(params: &[f64; 4], c: &Customer, modified: bool) -> f64 {
    match inverse_p_alive_ln_term(params, c, modified) {
        None => 1.0,
        // 1/(1 + e^l) evaluated without overflow.
        Some(l) => (-log_add_exp(0.0, l)).exp().clamp(0.0, 1.0),
    }
}

/// E[purchases in (T, T + horizon] | x, t_x, T].
pub(crate) fn expected_purchases(
    params: &[f64; 4],
    c: &Customer,
    horizon: f64,
    modified: bool,
) -> f64 {
    let [r, alpha, a, b] = *params;
    if horizon <= 0.0 {
        return 0.0;
    }
    let h = shift(modified);
    // c·[1 − (1−z)^(a−1)·2F1(A, a−1; c; z)]/(a−1), z = horizon/(α+T+horizon); see
    // `beta_geo_growth`. BG/NBD: c = a+b+x−1, A = a+b−1−r; MBG/NBD: c = a+b+x, A = a+b−r.
    let big_c = a + b + c.x + h;
    let big_a = a + b + h - r;
    let total = alpha + c.t + horizon;
    let z = horizon / total;
    let ln_one_minus_z = ((alpha + c.t) / total).ln();
    let growth = beta_geo_growth(big_a, a, big_c, z, ln_one_minus_z);
    let denominator_ln = match inverse_p_alive_ln_term(params, c, modified) {
        None => 0.0,
        Some(l) => log_add_exp(0.0, l),
    };
    (growth * (-denominator_ln).exp()).max(0.0)
}

/// E[X(t)] for a new customer (first purchase at time 0, observed for `t`).
pub(crate) fn expected_purchases_new(params: &[f64; 4], t: f64, modified: bool) -> f64 {
    let [r, alpha, a, b] = *params;
    if t <= 0.0 {
        return 0.0;
    }
    let h = shift(modified);
    let big_c = a + b + h;
    let big_a = a + b + h - r;
    let total = alpha + t;
    beta_geo_growth(big_a, a, big_c, t / total, (alpha / total).ln()).max(0.0)
}
