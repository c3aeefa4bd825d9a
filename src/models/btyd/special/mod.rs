//! Special functions for the BTYD models, all evaluated in log space where values can overflow.
//!
//! * [`Scalar`] abstracts over `f64` and [`Dual4`] (forward-mode dual numbers carrying four
//!   partial derivatives). The Pareto/NBD likelihood is written once, generically; evaluated on
//!   `Dual4` it yields the exact derivative of the computed expression, including the parameter
//!   derivatives of the hypergeometric function, which have no closed form.
//! * [`ln_hyp2f1_b1`]: `ln 2F1(a, b; b + 1; z)`, the only hypergeometric family the Pareto/NBD
//!   needs (see `pareto.rs` for why). Negative `z` is mapped into `(0, 1)` by Pfaff's
//!   transformation; on `[0, 1)` Euler's transformation factors out the `(1 − z)^(1 − a)`
//!   singularity and the remaining Stieltjes function is evaluated by Gauss's continued fraction
//!   (modified Lentz), which converges on the whole cut plane. Close to `z = 1`, where the
//!   continued fraction needs `O(1/√(1 − z))` steps, the `z → 1 − z` connection formula is used
//!   instead whenever it is well conditioned (`a` not close to an integer).
//! * [`beta_geo_growth`]: the bracket `c/(a − 1)·[1 − (1 − z)^(r + x)·2F1(…)]` of the
//!   BG/NBD and MBG/NBD expected-purchase formulas, rewritten (Euler transformation, then the
//!   `a − 1` factor pulled out of the series) so that it is finite at `a = 1` and never forms
//!   the huge `2F1` values that overflow for frequent buyers.
//!
//! `dual.rs`: [`Scalar`] and [`Dual4`]; `hyp2f1.rs`: [`ln_hyp2f1_b1`]; `growth.rs`:
//! [`beta_geo_growth`]; here, the small log-space helpers both models use.

mod dual;
mod growth;
mod hyp2f1;

pub(crate) use dual::{Dual4, Scalar};
pub(crate) use growth::beta_geo_growth;
pub(crate) use hyp2f1::ln_hyp2f1_b1;

/// `ln(eᵃ + eᵇ)` without overflow.
#[inline]
pub(crate) fn log_add_exp<T: Scalar>(a: T, b: T) -> T {
    let (hi, lo) = if a.val() >= b.val() { (a, b) } else { (b, a) };
    if lo.val() == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// `(1 − e^(k·l)) / k`, continuous at `k = 0` (where it equals `−l`). Used for the
/// `[1 − u^(s−1)]/(s − 1)` and `[1 − (1 − z)^(a−1)]/(a − 1)` brackets whose naive forms are
/// `0/0` at `s = 1` or `a = 1`.
#[inline]
pub(crate) fn one_minus_exp_over(k: f64, l: f64) -> f64 {
    let kl = k * l;
    if kl.abs() < 1e-10 {
        // Two series terms: the relative error is below (k·l)²/6 < 1e-20.
        -l * (1.0 + 0.5 * kl)
    } else {
        -kl.exp_m1() / k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minus_exp_over_limits() {
        assert!((one_minus_exp_over(0.0, -2.0) - 2.0).abs() < 1e-15);
        let k = 0.3;
        let l = -1.7;
        assert!((one_minus_exp_over(k, l) - (1.0 - (k * l).exp()) / k).abs() < 1e-14);
    }
}
