//! The number types the generic BTYD formulas run on: [`Scalar`], implemented by `f64` and by
//! [`Dual4`], forward-mode dual numbers carrying four partial derivatives.

use std::ops::{Add, Div, Mul, Neg, Sub};

use statrs::function::gamma::{digamma, ln_gamma};

/// Number type the generic formulas run on: `f64`, or [`Dual4`] for gradients.
pub(crate) trait Scalar:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + Add<f64, Output = Self>
    + Sub<f64, Output = Self>
    + Mul<f64, Output = Self>
    + Div<f64, Output = Self>
{
    fn cst(v: f64) -> Self;
    fn val(self) -> f64;
    fn ln(self) -> Self;
    fn exp(self) -> Self;
    fn ln_1p(self) -> Self;
    fn ln_gamma(self) -> Self;
    /// `ln |sin(π·self)|`.
    fn ln_abs_sin_pi(self) -> Self;
    /// Whether a continued-fraction factor `self` no longer changes the running product
    /// `total`: its value by more than `eps`, and (for duals) the derivatives of `ln total` by
    /// more than `deriv_eps` relative to their size.
    fn settled(self, total: Self, eps: f64, deriv_eps: f64) -> (bool, bool);
}

impl Scalar for f64 {
    #[inline]
    fn cst(v: f64) -> Self {
        v
    }
    #[inline]
    fn val(self) -> f64 {
        self
    }
    #[inline]
    fn ln(self) -> Self {
        f64::ln(self)
    }
    #[inline]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline]
    fn ln_1p(self) -> Self {
        f64::ln_1p(self)
    }
    #[inline]
    fn ln_gamma(self) -> Self {
        ln_gamma(self)
    }
    fn ln_abs_sin_pi(self) -> Self {
        ln_abs_sin_pi_parts(self).0
    }
    #[inline]
    fn settled(self, _total: Self, eps: f64, _deriv_eps: f64) -> (bool, bool) {
        ((self - 1.0).abs() <= eps, true)
    }
}

/// `(ln |sin πa|, π·cot πa, sign of sin πa)`, with the argument reduced to `[-½, ½]` first so
/// that large `a` (frequent buyers) lose no accuracy.
pub(super) fn ln_abs_sin_pi_parts(a: f64) -> (f64, f64, f64) {
    let n = a.round();
    let f = a - n; // exact
    let s = (std::f64::consts::PI * f).sin();
    let parity = if (n.abs() % 2.0) == 1.0 { -1.0 } else { 1.0 };
    let sign = parity * s.signum();
    let cot = std::f64::consts::PI * (std::f64::consts::PI * f).cos() / s;
    (s.abs().ln(), cot, sign)
}

/// A value with its partial derivatives with respect to four inputs (forward-mode automatic
/// differentiation). Every operation applies the chain rule exactly, so a likelihood evaluated
/// on `Dual4` returns its analytic gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dual4 {
    pub v: f64,
    pub d: [f64; 4],
}

impl Dual4 {
    /// The `i`-th independent variable with value `v`.
    pub fn var(v: f64, i: usize) -> Self {
        let mut d = [0.0; 4];
        if let Some(slot) = d.get_mut(i) {
            *slot = 1.0;
        }
        Dual4 { v, d }
    }
    /// `f(self)` given `f(v)` and `f'(v)`.
    #[inline]
    fn chain(self, fv: f64, dfv: f64) -> Self {
        let d = self.d;
        Dual4 {
            v: fv,
            d: [d[0] * dfv, d[1] * dfv, d[2] * dfv, d[3] * dfv],
        }
    }
}

impl Add for Dual4 {
    type Output = Self;
    #[inline]
    fn add(self, o: Self) -> Self {
        let (a, b) = (self.d, o.d);
        Dual4 {
            v: self.v + o.v,
            d: [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]],
        }
    }
}
impl Sub for Dual4 {
    type Output = Self;
    #[inline]
    fn sub(self, o: Self) -> Self {
        let (a, b) = (self.d, o.d);
        Dual4 {
            v: self.v - o.v,
            d: [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]],
        }
    }
}
impl Mul for Dual4 {
    type Output = Self;
    #[inline]
    fn mul(self, o: Self) -> Self {
        let (a, b) = (self.d, o.d);
        let (u, w) = (self.v, o.v);
        Dual4 {
            v: u * w,
            d: [
                a[0] * w + u * b[0],
                a[1] * w + u * b[1],
                a[2] * w + u * b[2],
                a[3] * w + u * b[3],
            ],
        }
    }
}
impl Div for Dual4 {
    type Output = Self;
    #[inline]
    fn div(self, o: Self) -> Self {
        let q = self.v / o.v;
        let inv = 1.0 / o.v;
        let (a, b) = (self.d, o.d);
        Dual4 {
            v: q,
            d: [
                (a[0] - q * b[0]) * inv,
                (a[1] - q * b[1]) * inv,
                (a[2] - q * b[2]) * inv,
                (a[3] - q * b[3]) * inv,
            ],
        }
    }
}
impl Neg for Dual4 {
    type Output = Self;
    #[inline]
    fn neg(self) -> Self {
        let a = self.d;
        Dual4 {
            v: -self.v,
            d: [-a[0], -a[1], -a[2], -a[3]],
        }
    }
}
impl Add<f64> for Dual4 {
    type Output = Self;
    #[inline]
    fn add(self, o: f64) -> Self {
        Dual4 {
            v: self.v + o,
            d: self.d,
        }
    }
}
impl Sub<f64> for Dual4 {
    type Output = Self;
    #[inline]
    fn sub(self, o: f64) -> Self {
        Dual4 {
            v: self.v - o,
            d: self.d,
        }
    }
}
impl Mul<f64> for Dual4 {
    type Output = Self;
    #[inline]
    fn mul(self, o: f64) -> Self {
        let a = self.d;
        Dual4 {
            v: self.v * o,
            d: [a[0] * o, a[1] * o, a[2] * o, a[3] * o],
        }
    }
}
impl Div<f64> for Dual4 {
    type Output = Self;
    #[inline]
    fn div(self, o: f64) -> Self {
        self * (1.0 / o)
    }
}

impl Scalar for Dual4 {
    #[inline]
    fn cst(v: f64) -> Self {
        Dual4 { v, d: [0.0; 4] }
    }
    #[inline]
    fn val(self) -> f64 {
        self.v
    }
    #[inline]
    fn ln(self) -> Self {
        self.chain(self.v.ln(), 1.0 / self.v)
    }
    #[inline]
    fn exp(self) -> Self {
        let e = self.v.exp();
        self.chain(e, e)
    }
    #[inline]
    fn ln_1p(self) -> Self {
        self.chain(self.v.ln_1p(), 1.0 / (1.0 + self.v))
    }
    fn ln_gamma(self) -> Self {
        self.chain(ln_gamma(self.v), digamma(self.v))
    }
    fn ln_abs_sin_pi(self) -> Self {
        let (l, cot, _) = ln_abs_sin_pi_parts(self.v);
        self.chain(l, cot)
    }
    fn settled(self, total: Self, eps: f64, deriv_eps: f64) -> (bool, bool) {
        // `total` accumulates the product of the factors, so `d ln total` changes by
        // `self.d / self.v`: compare with the size of the derivative reached so far.
        let derivs = (0..4).all(|i| {
            let scale = 1.0 + (total.d[i] / total.v).abs();
            (self.d[i] / self.v).abs() <= deriv_eps * scale
        });
        ((self.v - 1.0).abs() <= eps, derivs)
    }
}
