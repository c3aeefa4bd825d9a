//! The growth bracket of the BG/NBD and MBG/NBD expected-purchase formulas
//! ([`beta_geo_growth`]), finite at `a = 1` and free of overflowing `2F1` values.

use super::one_minus_exp_over;

/// Growth bracket of the beta-geometric family:
/// `c · [1 − (1 − z)^(a−1) · 2F1(A, a − 1; c; z)] / (a − 1)`, `z ∈ [0, 1)`.
///
/// For BG/NBD (`c = a+b+x−1`, `A = a+b−1−r`) and MBG/NBD (`c = a+b+x`, `A = a+b−r`) this is the
/// numerator of the conditional expected number of purchases, after Euler's transformation of
/// `(1 − z)^(r+x) · 2F1(r+x, b+x(+1); c; z)`. Writing `2F1(A, a−1; c; z) = 1 + (a−1)·H` with
/// `H = Σ_{k≥1} (A)_k (a)_{k−1} / ((c)_k k!) zᵏ` gives
///
/// `c·[1 − (1−z)^(a−1)]/(a−1) − (1−z)^(a−1) · c·H`,
///
/// finite at `a = 1`; `c·H` is summed as `Σ (A)_k (a)_{k−1} / ((c+1)_{k−1} k!) zᵏ`, which also
/// stays finite when `c = 0` (BG/NBD with `a + b = 1`, `x = 0`). The series has positive or
/// eventually one-signed terms of size `O(k^(a−r−x−2) zᵏ)`; the term cap is only approached when
/// the horizon is millions of times `α + T`.
pub(crate) fn beta_geo_growth(big_a: f64, a: f64, c: f64, z: f64, ln_one_minus_z: f64) -> f64 {
    if z <= 0.0 {
        return 0.0;
    }
    let head = c * one_minus_exp_over(a - 1.0, ln_one_minus_z);
    // c·H series.
    let mut term = big_a * z; // k = 1: (A)_1 (a)_0 / ((c+1)_0 1!) z
    let mut sum = term;
    let mut k = 1.0_f64;
    let mut quiet = 0;
    while k < 5.0e7 {
        term *= (big_a + k) * (a + k - 1.0) / ((c + k) * (k + 1.0)) * z;
        sum += term;
        k += 1.0;
        // Terms can change sign once (negative A); stop after a few consecutive tiny terms.
        if term.abs() <= 1e-17 * sum.abs() {
            quiet += 1;
            if quiet >= 3 {
                break;
            }
        } else {
            quiet = 0;
        }
    }
    head - ((a - 1.0) * ln_one_minus_z).exp() * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_bracket_is_continuous_at_a_equal_one() {
        let z: f64 = 0.4;
        let l = (1.0 - z).ln();
        let at = |a: f64| beta_geo_growth(a + 1.5 - 1.0 - 0.3, a, a + 1.5 + 3.0 - 1.0, z, l);
        let mid = at(1.0);
        assert!(mid.is_finite() && mid > 0.0);
        assert!((at(1.0 + 1e-9) - mid).abs() < 1e-7 * mid);
        assert!((at(1.0 - 1e-9) - mid).abs() < 1e-7 * mid);
    }
}
