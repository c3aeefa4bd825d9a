//! `ln 2F1(a, b; b + 1; z)` ([`ln_hyp2f1_b1`]): Pfaff's transformation for negative `z`, Gauss's
//! continued fraction (modified Lentz) on `[0, 1)`, the `z → 1 − z` connection formula close to
//! `z = 1`; checked against mpmath (`hyp2f1_reference.in`).

use super::dual::{ln_abs_sin_pi_parts, Scalar};

/// Convergence tolerance of the continued fraction: the relative change made by each of the
/// last four factors. Not smaller: in Lentz's method each factor `C·D` carries a few rounding
/// units of noise (up to ~3e-15 observed), so a tolerance at the rounding unit may never be met.
/// Near `z = 1` the factors approach 1 geometrically with ratio ≈ `1 − 2√(1 − z)`, so stopping
/// at 1e-14 leaves a tail of about `1e-14 / (2√(1 − z))` — below the function's own
/// conditioning (`≈ 1e-16 / (1 − z)` relative) for every `z`.
const EPS: f64 = 1e-14;
/// Hard cap on continued-fraction steps. The fraction needs about `7/√(1 − z)` steps; this cap
/// is only reached for `1 − z < 1e-11` with `a` within 0.05 of an integer (where the connection
/// formula is ill-conditioned) and then the result is NaN, which callers treat as a failed
/// evaluation rather than a number.
const MAX_CF_STEPS: usize = 2_000_000;
/// Below this `1 − z` the connection formula replaces the continued fraction when usable.
const CONNECTION_BELOW: f64 = 1e-3;
/// The connection formula is used only when `a` is at least this far from an integer (its two
/// terms have poles at integer `a` that cancel; closer than this the cancellation would cost
/// more than about two digits).
const MIN_DIST_FROM_INTEGER: f64 = 0.05;

/// `ln 2F1(a, b; b + 1; z)`.
///
/// Domain: `a > 0`, `b > 0`, `b + 1 − a > 0`, `z < 1`. `one_minus_z` must be `1 − z`, computed
/// by the caller from its own inputs: near `z = 1` forming `1 − z` from a rounded `z` would
/// lose most of its digits.
pub(crate) fn ln_hyp2f1_b1<T: Scalar>(a: T, b: T, z: T, one_minus_z: T) -> T {
    if z.val() < 0.0 {
        // Pfaff: 2F1(a, b; c; z) = (1 − z)^(−b) · 2F1(c − a, b; c; z/(z − 1)). With c = b + 1
        // the result stays in the same family, and w = z/(z − 1) = −z/(1 − z) lies in (0, 1);
        // its complement 1 − w = 1/(1 − z) is again formed without cancellation.
        let w = -z / one_minus_z;
        let one_minus_w = T::cst(1.0) / one_minus_z;
        let a2 = b + 1.0 - a;
        return -(b * one_minus_z.ln()) + ln_hyp2f1_b1_unit(a2, b, w, one_minus_w);
    }
    ln_hyp2f1_b1_unit(a, b, z, one_minus_z)
}

/// `ln 2F1(a, b; b + 1; z)` for `z ∈ [0, 1)`.
fn ln_hyp2f1_b1_unit<T: Scalar>(a: T, b: T, z: T, one_minus_z: T) -> T {
    let delta = one_minus_z.val();
    let av = a.val();
    let near_integer = (av - av.round()).abs() < MIN_DIST_FROM_INTEGER;
    // The connection formula's series in (1 − z) has term ratio ≈ (b + k)/(k + 1 − a)·(1 − z);
    // require (b + 1)(1 − z) small so it converges in a handful of terms.
    if delta < CONNECTION_BELOW && !near_integer && (b.val() + 1.0) * delta < 0.1 && z.val() > 0.0 {
        if let Some(v) = ln_hyp2f1_b1_connection(a, b, z, one_minus_z) {
            return v;
        }
    }
    // Euler: 2F1(a, b; b+1; z) = (1 − z)^(1 − a) · 2F1(1, b + 1 − a; b + 1; z), and the latter
    // equals b·z^(−b)·(1 − z)^(a − 1)·B_z(b, 1 − a) whose continued fraction (the classical
    // one for the incomplete beta function, valid for any real second parameter) is
    //   1/(1 + d₁/(1 + d₂/(1 + …))),
    //   d_{2m+1} = −(p + m)(p + q + m)·z / ((p + 2m)(p + 2m + 1)),
    //   d_{2m}   =  m(q − m)·z / ((p + 2m − 1)(p + 2m)),   with p = b, q = 1 − a.
    let p = b;
    let q = -a + 1.0;
    let ln_cf = ln_incomplete_beta_cf(p, q, z);
    q * one_minus_z.ln() + ln_cf
}

/// `ln K` for `K = 1/(1 + d₁/(1 + d₂/(1 + …)))` above, by the modified Lentz method.
///
/// Stops when two consecutive rounds (four factors) leave the value unchanged to `EPS` and the
/// derivatives (duals only) to `DERIV_EPS`. Derivative increments carry rounding
/// noise and may never fall below a fixed threshold, so once the value has settled at step
/// `m₀` the derivatives get at most `m₀ + 16` further steps.
fn ln_incomplete_beta_cf<T: Scalar>(p: T, q: T, z: T) -> T {
    const TINY: f64 = 1e-300;
    const DERIV_EPS: f64 = 1e-13;
    let guard = |v: T| {
        if v.val().abs() < TINY {
            T::cst(TINY)
        } else {
            v
        }
    };
    // Continued fraction f = 1 + d₁/(1 + d₂/(1 + …)); K = 1/f.
    let mut f = T::cst(1.0);
    let mut c = f;
    let mut d = T::cst(0.0);
    let one = T::cst(1.0);
    let step = |coef: T, f: &mut T, c: &mut T, d: &mut T| -> (bool, bool) {
        *d = guard(one + coef * *d);
        *c = guard(one + coef / *c);
        *d = one / *d;
        let delta = *c * *d;
        *f = *f * delta;
        delta.settled(*f, EPS, DERIV_EPS)
    };
    // m = 0 odd coefficient d₁.
    let d1 = -((p + q) * z) / (p + 1.0);
    let (mut prev_value, mut prev_derivs) = step(d1, &mut f, &mut c, &mut d);
    let mut value_settled_at: Option<usize> = None;
    let mut m = 1usize;
    // Both coefficients of a round are applied before testing: a zero coefficient (z = 0) makes
    // a single factor exactly 1 even though the next one still matters.
    loop {
        let mf = m as f64;
        let even = (q - mf) * z * mf / ((p + (2.0 * mf - 1.0)) * (p + 2.0 * mf));
        let (ev, ed) = step(even, &mut f, &mut c, &mut d);
        let odd = -((p + mf) * (p + q + mf) * z) / ((p + 2.0 * mf) * (p + (2.0 * mf + 1.0)));
        let (ov, od) = step(odd, &mut f, &mut c, &mut d);
        let value_done = prev_value && ev && ov;
        if value_done && prev_derivs && ed && od {
            break;
        }
        if value_done {
            let m0 = *value_settled_at.get_or_insert(m);
            if m > 2 * m0 + 16 {
                break;
            }
        } else {
            value_settled_at = None;
        }
        prev_value = ev && ov;
        prev_derivs = ed && od;
        m += 1;
        if m > MAX_CF_STEPS {
            return T::cst(f64::NAN);
        }
    }
    -f.ln()
}

/// The `z → 1 − z` connection formula for `c = b + 1` (Abramowitz & Stegun 15.3.6):
///
/// `2F1(a, b; b+1; z) = Γ(b+1)Γ(1−a)/Γ(b+1−a) · z^(−b)
///                    + b/(a−1) · (1−z)^(1−a) · 2F1(b+1−a, 1; 2−a; 1−z)`,
///
/// with `Γ(1−a) = π/(sin(πa)Γ(a))` so that only `ln Γ` of positive arguments is needed.
/// Returns `None` when the two signed terms do not combine to a clearly positive value.
fn ln_hyp2f1_b1_connection<T: Scalar>(a: T, b: T, z: T, one_minus_z: T) -> Option<T> {
    let (_, _, sin_sign) = ln_abs_sin_pi_parts(a.val());
    let ln_t1 = T::cst(std::f64::consts::PI.ln()) + (b + 1.0).ln_gamma()
        - a.ln_gamma()
        - (b + 1.0 - a).ln_gamma()
        - a.ln_abs_sin_pi()
        - b * z.ln();
    let sign1 = sin_sign;
    // Series 2F1(b + 1 − a, 1; 2 − a; w) = Σ (b+1−a)_k / (2−a)_k · wᵏ, w = 1 − z small.
    let w = one_minus_z;
    let mut term = T::cst(1.0);
    let mut sum = T::cst(1.0);
    let top = b + 1.0 - a;
    let bottom = -a + 2.0;
    for k in 0..200 {
        let kf = k as f64;
        term = term * (top + kf) / (bottom + kf) * w;
        sum = sum + term;
        if term.val().abs() <= 1e-17 * sum.val().abs() {
            break;
        }
    }
    let s_val = sum.val();
    if s_val == 0.0 || !s_val.is_finite() {
        return None;
    }
    let abs_sum = if s_val < 0.0 { -sum } else { sum };
    let am1 = a - 1.0;
    let abs_am1 = if am1.val() < 0.0 { -am1 } else { am1 };
    let ln_t2 = b.ln() - abs_am1.ln() + (-a + 1.0) * one_minus_z.ln() + abs_sum.ln();
    let sign2 = am1.val().signum() * s_val.signum();
    let (hi, lo, sign_hi) = if ln_t1.val() >= ln_t2.val() {
        (ln_t1, ln_t2, sign1)
    } else {
        (ln_t2, ln_t1, sign2)
    };
    if sign_hi <= 0.0 {
        return None;
    }
    let r = (lo - hi).exp();
    let out = if sign1 == sign2 {
        hi + r.ln_1p()
    } else {
        if r.val() > 0.99 {
            // Cancellation of more than two digits: let the continued fraction do it.
            return None;
        }
        hi + (-r).ln_1p()
    };
    out.val().is_finite().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::btyd::special::Dual4;

    /// (a, b, z, 1 − z, ln 2F1(a, b; b+1; z)) from mpmath 1.3 at 40 digits.
    const REFERENCE: &[(f64, f64, f64, f64, f64)] = include!("hyp2f1_reference.in");

    #[test]
    fn hyp2f1_matches_mpmath() {
        for &(a, b, z, omz, want) in REFERENCE {
            let got = ln_hyp2f1_b1(a, b, z, omz);
            let err = (got - want).abs() / want.abs().max(1.0);
            // Near z = 1 the function itself amplifies the rounding of the f64 `z` (the
            // reference used the exact 1 − z): allow for that conditioning.
            let eff = if z < 0.0 { 1.0 / omz } else { omz };
            let tol = 1e-12 + 4e-16 / eff.min(1.0);
            assert!(
                err < tol,
                "a={a} b={b} z={z}: got {got}, want {want}, err {err:e}"
            );
        }
    }

    #[test]
    fn hyp2f1_derivatives_match_finite_differences() {
        // Inputs (a, b, z) as functions of three duals; compare each partial.
        for &(a, b, z, omz, _) in REFERENCE {
            if omz < 1e-6 || z.abs() > 1e6 {
                continue; // finite differences in z lose too many digits there
            }
            let dual = ln_hyp2f1_b1(
                Dual4::var(a, 0),
                Dual4::var(b, 1),
                Dual4::var(z, 2),
                Dual4 {
                    v: omz,
                    d: [0.0, 0.0, -1.0, 0.0],
                },
            );
            for i in 0..3 {
                let h = match i {
                    0 => 1e-6 * a.max(1e-3),
                    1 => 1e-6 * b.max(1e-3),
                    // Relative to the distance from the singularity: f's rounding noise is
                    // ε·|∂f/∂z| and ∂f/∂z grows like 1/(1 − z).
                    _ => 1e-4 * z.abs().max(1e-3).min(omz),
                };
                let f = |s: f64| {
                    let (aa, bb, zz) = match i {
                        0 => (a + s, b, z),
                        1 => (a, b + s, z),
                        _ => (a, b, z + s),
                    };
                    let om = if i == 2 { omz - s } else { omz };
                    ln_hyp2f1_b1(aa, bb, zz, om)
                };
                let fd = (f(h) - f(-h)) / (2.0 * h);
                let err = (fd - dual.d[i]).abs() / fd.abs().max(1e-2);
                assert!(
                    err < 1e-5,
                    "a={a} b={b} z={z} partial {i}: dual {} fd {fd}",
                    dual.d[i]
                );
            }
        }
    }

    #[test]
    fn dual_value_equals_plain_value() {
        for &(a, b, z, omz, _) in REFERENCE {
            let plain = ln_hyp2f1_b1(a, b, z, omz);
            let dual = ln_hyp2f1_b1(
                Dual4::var(a, 0),
                Dual4::var(b, 1),
                Dual4::cst(z),
                Dual4::cst(omz),
            );
            // Distance of the effective argument from 1 (after Pfaff for z < 0).
            let eff = if z < 0.0 { 1.0 / omz } else { omz };
            let tol = 1e-13 + 4e-16 / eff.min(1.0);
            assert!(
                (plain - dual.v).abs() <= tol * plain.abs().max(1.0),
                "a={a} b={b} z={z}: {plain} vs {}",
                dual.v
            );
        }
    }

    #[test]
    fn connection_formula_agrees_with_continued_fraction() {
        // Where both apply, the two evaluation paths must agree (values and derivatives).
        for &a in &[0.3, 0.7, 1.3, 1.9, 2.5, 4.2] {
            for &b in &[0.4, 3.0, 40.0] {
                if b + 1.0 - a <= 0.0 {
                    continue;
                }
                for &omz in &[9e-4, 1e-4, 1e-6] {
                    if (b + 1.0) * omz >= 0.1 {
                        continue;
                    }
                    let z = 1.0 - omz;
                    let (da, db, dz, domz) = (
                        Dual4::var(a, 0),
                        Dual4::var(b, 1),
                        Dual4::var(z, 2),
                        Dual4 {
                            v: omz,
                            d: [0.0, 0.0, -1.0, 0.0],
                        },
                    );
                    let conn = ln_hyp2f1_b1_connection(da, db, dz, domz).expect("usable");
                    let cf = -(da - 1.0) * domz.ln() + ln_incomplete_beta_cf(db, -da + 1.0, dz);
                    let tol = 1e-13 + 4e-16 / omz;
                    assert!(
                        (conn.v - cf.v).abs() <= tol * cf.v.abs().max(1.0),
                        "a={a} b={b} 1-z={omz}: {} vs {}",
                        conn.v,
                        cf.v
                    );
                    // For a < 1 the continued fraction's z-derivative is the difference of
                    // two O(1/(1 − z)) terms ((1 − a)·ln(1 − z) and ln K), so near z = 1 it
                    // carries rounding of order 1e-11 relative to 1/(1 − z) (checked against
                    // mpmath: the connection formula is the accurate one there).
                    let dtol = 1e-8 + 1e-11 / omz;
                    for i in 0..3 {
                        let scale = cf.d[i].abs().max(1.0);
                        assert!(
                            (conn.d[i] - cf.d[i]).abs() <= dtol * scale,
                            "a={a} b={b} 1-z={omz} partial {i}: {} vs {}",
                            conn.d[i],
                            cf.d[i]
                        );
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 400,
            rng_seed: proptest::test_runner::RngSeed::Fixed(20261123),
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// Finite (value and derivatives) over the whole domain the Pareto/NBD can produce,
        /// including 1 − z down to 1e-10 and z down to −1e8.
        #[test]
        fn hyp2f1_is_finite_everywhere(
            ln_a in (0.01f64).ln()..(1500.0f64).ln(),
            ln_gap in (1e-3f64).ln()..(100.0f64).ln(),
            ln_omz in (1e-10f64).ln()..(1e8f64).ln(),
        ) {
            let a = ln_a.exp();
            // b + 1 − a = gap > 0 and b > 0.
            let b = (a - 1.0 + ln_gap.exp()).max(1e-3);
            let omz = ln_omz.exp();
            let z = 1.0 - omz;
            let plain = ln_hyp2f1_b1(a, b, z, omz);
            proptest::prop_assert!(plain.is_finite(), "a={} b={} 1-z={}: {}", a, b, omz, plain);
            let dual = ln_hyp2f1_b1(
                Dual4::var(a, 0),
                Dual4::var(b, 1),
                Dual4::var(z, 2),
                Dual4 { v: omz, d: [0.0, 0.0, -1.0, 0.0] },
            );
            proptest::prop_assert!(dual.v.is_finite() && dual.d.iter().all(|v| v.is_finite()),
                "a={} b={} 1-z={}: {:?}", a, b, omz, dual);
        }
    }
}
