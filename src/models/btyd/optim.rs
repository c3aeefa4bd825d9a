//! Minimisers for the BTYD objectives and the Hessian-based standard errors.
//!
//! The objective is a function of the log-parameters returning its value and writing its
//! gradient (computed together: they share all expensive terms). Two minimisers:
//! * [`lbfgs`], our own limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*,
//!   Alg. 7.4 two-loop recursion; line search Alg. 3.5/3.6 with cubic interpolation) — the
//!   default, see [`super::Solver`] for what it adds over argmin's;
//! * [`argmin_lbfgs`], argmin 0.11's `LBFGS` with `MoreThuenteLineSearch`, for comparison.
//!
//! Both check the wall clock before each objective evaluation, so a slow evaluation cannot
//! stretch a fit much past its limit.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use ndarray::Array1;

/// Why a minimisation stopped without a converged result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OptFailure {
    NotConverged {
        iterations: u64,
        grad_norm: f64,
        reason: &'static str,
    },
    Timeout {
        iterations: u64,
    },
    /// The objective is not finite at the starting point.
    NonFiniteStart,
}

/// Stopping rules shared by both minimisers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub max_iterations: u64,
    pub grad_tolerance: f64,
    /// A stop with no decrease left (flat to rounding) counts as converged when the gradient
    /// norm is at most this (see [`super::FitOptions::flat_tolerance`]).
    pub flat_tolerance: f64,
    pub started: Instant,
    pub timeout: Duration,
}

impl Budget {
    /// The budget of one fit, its wall clock starting now.
    pub fn starting_now(options: &super::FitOptions) -> Budget {
        Budget {
            max_iterations: options.max_iterations,
            grad_tolerance: options.grad_tolerance,
            flat_tolerance: options.flat_tolerance,
            started: Instant::now(),
            timeout: options.timeout,
        }
    }

    fn expired(&self) -> bool {
        self.started.elapsed() > self.timeout
    }
}

/// A converged minimum.
#[derive(Debug, Clone)]
pub(crate) struct Minimum {
    pub x: Vec<f64>,
    pub grad_norm: f64,
    pub iterations: u64,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn all_finite(a: &[f64]) -> bool {
    a.iter().all(|v| v.is_finite())
}

/// Largest change of any log-parameter in one iteration (a factor of e⁴ ≈ 55 on the natural
/// scale). Keeps a poor early quasi-Newton step from overflowing `exp` or wandering into regions
/// where the special functions are slow; a converging run never needs steps this large.
const MAX_STEP: f64 = 4.0;
/// L-BFGS memory. The problems have 3–4 parameters, so a memory of 8 is full BFGS after the
/// first few iterations at negligible cost.
const MEMORY: usize = 8;
const C1: f64 = 1e-4;
const C2: f64 = 0.9;

/// Our L-BFGS. `f(x, g)` returns the objective (non-finite = infeasible) and writes its gradient.
pub(crate) fn lbfgs<F>(f: F, x0: &[f64], budget: &Budget) -> Result<Minimum, OptFailure>
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    if !fx.is_finite() || !all_finite(&g) {
        return Err(OptFailure::NonFiniteStart);
    }
    let mut history: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::with_capacity(MEMORY);
    let mut d = vec![0.0; n];
    let mut xn = vec![0.0; n];
    let mut gn = vec![0.0; n];
    let mut iterations = 0u64;
    let mut restarted = false;
    loop {
        let gnorm = norm(&g);
        if gnorm <= budget.grad_tolerance {
            return Ok(Minimum {
                x,
                grad_norm: gnorm,
                iterations,
            });
        }
        if iterations >= budget.max_iterations {
            return Err(OptFailure::NotConverged {
                iterations,
                grad_norm: gnorm,
                reason: "iteration cap reached before the gradient tolerance",
            });
        }
        two_loop(&history, &g, &mut d);
        let mut slope = dot(&d, &g);
        if slope.is_nan() || slope >= 0.0 || !all_finite(&d) {
            // Not a descent direction (can only follow rounding trouble): steepest descent.
            history.clear();
            d.iter_mut().zip(&g).for_each(|(di, gi)| *di = -gi);
            slope = -gnorm * gnorm;
        }
        let dmax = d.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        let step_max = MAX_STEP / dmax;
        // Without curvature information take a unit step in the largest coordinate.
        let step0 = if history.is_empty() { 1.0 / dmax } else { 1.0 };
        let step0 = step0.min(step_max);
        let search = line_search(
            &f, &x, fx, slope, &d, step0, step_max, budget, &mut xn, &mut gn,
        )
        .map_err(|()| OptFailure::Timeout { iterations })?;
        match search {
            Some(fxn) => {
                restarted = false;
                let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                // Keep only pairs with positive curvature (the inverse-Hessian model stays
                // positive definite).
                if sy > 1e-12 * norm(&s) * norm(&y) && sy > 0.0 {
                    if history.len() == MEMORY {
                        history.pop_front();
                    }
                    history.push_back((s, y, sy));
                }
                std::mem::swap(&mut x, &mut xn);
                std::mem::swap(&mut g, &mut gn);
                fx = fxn;
                iterations += 1;
            }
            None => {
                if restarted || history.is_empty() {
                    if gnorm <= budget.flat_tolerance {
                        // Nothing left to gain that rounding lets us see, and the slope is
                        // already negligible: an optimum (or the flat end of a ridge).
                        return Ok(Minimum {
                            x,
                            grad_norm: gnorm,
                            iterations,
                        });
                    }
                    return Err(OptFailure::NotConverged {
                        iterations,
                        grad_norm: gnorm,
                        reason: "line search found no decrease (objective flat to rounding)",
                    });
                }
                // Retry once from steepest descent before giving up.
                history.clear();
                restarted = true;
            }
        }
    }
}

/// `d = −H·g` for the L-BFGS inverse-Hessian model.
fn two_loop(history: &VecDeque<(Vec<f64>, Vec<f64>, f64)>, g: &[f64], d: &mut [f64]) {
    d.iter_mut().zip(g).for_each(|(di, gi)| *di = -gi);
    let mut alphas = [0.0; MEMORY];
    for (k, (s, y, sy)) in history.iter().enumerate().rev() {
        let a = dot(s, d) / sy;
        alphas[k] = a;
        d.iter_mut().zip(y).for_each(|(di, yi)| *di -= a * yi);
    }
    if let Some((s, y, sy)) = history.back() {
        let gamma = sy / dot(y, y);
        let _ = s;
        d.iter_mut().for_each(|di| *di *= gamma);
    }
    for (k, (s, y, sy)) in history.iter().enumerate() {
        let beta = dot(y, d) / sy;
        let a = alphas[k];
        d.iter_mut()
            .zip(s)
            .for_each(|(di, si)| *di += (a - beta) * si);
    }
}

/// One trial point of the line search.
#[derive(Debug, Clone, Copy)]
struct Trial {
    step: f64,
    value: f64,
    slope: f64,
}

/// Strong-Wolfe line search (bracketing phase, then zoom with safeguarded cubic interpolation).
/// Returns `Ok(Some(value))` with the accepted point in `xn`/`gn`, `Ok(None)` when no acceptable
/// step was found, `Err(())` on timeout. Also accepts Hager–Zhang's approximate Wolfe conditions
/// (`f ≤ f₀ + 1e-12|f₀|`, `(2c₁−1)φ'(0) ≥ φ'(α) ≥ c₂φ'(0)`): near the optimum the Armijo test
/// compares differences below rounding of `f`, while the exact gradient is still informative.
#[allow(clippy::too_many_arguments)]
fn line_search<F>(
    f: &F,
    x: &[f64],
    f0: f64,
    slope0: f64,
    d: &[f64],
    step0: f64,
    step_max: f64,
    budget: &Budget,
    xn: &mut [f64],
    gn: &mut [f64],
) -> Result<Option<f64>, ()>
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    let eps_f = 1e-12 * f0.abs().max(1e-300);
    let eval = |step: f64, xn: &mut [f64], gn: &mut [f64]| -> Result<Trial, ()> {
        if budget.expired() {
            return Err(());
        }
        xn.iter_mut()
            .zip(x.iter().zip(d))
            .for_each(|(xi, (x0, di))| *xi = x0 + step * di);
        let v = f(xn, gn);
        if !v.is_finite() || !all_finite(gn) {
            return Ok(Trial {
                step,
                value: f64::INFINITY,
                slope: f64::NAN,
            });
        }
        Ok(Trial {
            step,
            value: v,
            slope: dot(gn, d),
        })
    };
    let armijo = |t: &Trial| t.value <= f0 + C1 * t.step * slope0;
    let strong = |t: &Trial| t.slope.abs() <= -C2 * slope0;
    let approx = |t: &Trial| {
        t.value <= f0 + eps_f && (2.0 * C1 - 1.0) * slope0 >= t.slope && t.slope >= C2 * slope0
    };
    // Best acceptable-for-decrease point seen, returned if the search runs out of room.
    let mut best: Option<(Trial, Vec<f64>, Vec<f64>)> = None;
    let remember =
        |t: &Trial, xn: &[f64], gn: &[f64], best: &mut Option<(Trial, Vec<f64>, Vec<f64>)>| {
            let better = match best.as_ref() {
                None => true,
                Some((b, _, _)) => t.value < b.value,
            };
            if t.value < f0 && better {
                *best = Some((*t, xn.to_vec(), gn.to_vec()));
            }
        };

    let mut prev = Trial {
        step: 0.0,
        value: f0,
        slope: slope0,
    };
    let mut step = step0;
    let (mut lo, mut hi);
    let mut first = true;
    // Bracketing phase.
    loop {
        let t = eval(step, xn, gn)?;
        if !t.value.is_finite() {
            // Infeasible: shrink towards the last good point.
            lo = prev;
            hi = t;
            break;
        }
        if !armijo(&t) || (!first && t.value >= prev.value) {
            if approx(&t) {
                return Ok(Some(t.value));
            }
            remember(&t, xn, gn, &mut best);
            lo = prev;
            hi = t;
            break;
        }
        if strong(&t) || approx(&t) {
            return Ok(Some(t.value));
        }
        remember(&t, xn, gn, &mut best);
        if t.slope >= 0.0 {
            lo = t;
            hi = prev;
            break;
        }
        if step >= step_max {
            // Still descending at the step cap: take the capped step.
            return Ok(Some(t.value));
        }
        prev = t;
        first = false;
        step = (step * 4.0).min(step_max);
    }
    // Zoom phase: `lo` satisfies Armijo and has the lowest value so far; the minimiser along
    // the line lies between `lo` and `hi`.
    for _ in 0..40 {
        let width = (hi.step - lo.step).abs();
        if width <= 1e-14 * lo.step.abs().max(hi.step.abs()).max(1e-300) {
            break;
        }
        let trial_step = interpolate(&lo, &hi);
        let t = eval(trial_step, xn, gn)?;
        if !t.value.is_finite() || !armijo(&t) || t.value >= lo.value {
            if t.value.is_finite() && approx(&t) {
                return Ok(Some(t.value));
            }
            remember(&t, xn, gn, &mut best);
            hi = t;
        } else {
            if strong(&t) || approx(&t) {
                return Ok(Some(t.value));
            }
            remember(&t, xn, gn, &mut best);
            if t.slope * (hi.step - lo.step) >= 0.0 {
                hi = lo;
            }
            lo = t;
        }
    }
    // No Wolfe point: fall back to the best decrease found (still a valid descent step; the
    // curvature pair is skipped if it is not positive).
    match best {
        Some((t, bx, bg)) => {
            xn.copy_from_slice(&bx);
            gn.copy_from_slice(&bg);
            Ok(Some(t.value))
        }
        None => Ok(None),
    }
}

/// Minimiser of the cubic through two trial points (Nocedal & Wright eq. 3.59), kept at least
/// 10% of the interval away from both ends; bisection when the cubic is unusable.
fn interpolate(p: &Trial, q: &Trial) -> f64 {
    let (left, right) = if p.step < q.step {
        (p.step, q.step)
    } else {
        (q.step, p.step)
    };
    let width = right - left;
    let mid = 0.5 * (left + right);
    if !(p.value.is_finite() && q.value.is_finite() && p.slope.is_finite() && q.slope.is_finite()) {
        return mid;
    }
    let d1 = p.slope + q.slope - 3.0 * (p.value - q.value) / (p.step - q.step);
    let disc = d1 * d1 - p.slope * q.slope;
    if disc.is_nan() || disc < 0.0 {
        return mid;
    }
    let d2 = (q.step - p.step).signum() * disc.sqrt();
    let denom = q.slope - p.slope + 2.0 * d2;
    if denom == 0.0 {
        return mid;
    }
    let c = q.step - (q.step - p.step) * (q.slope + d2 - d1) / denom;
    if !c.is_finite() {
        return mid;
    }
    c.clamp(left + 0.1 * width, right - 0.1 * width)
}

/// argmin's problem wrapper: caches the last (point, value, gradient) because argmin asks for
/// the cost and the gradient of the same point in two calls, and records a timeout (argmin only
/// checks its own `timeout` between iterations and turns errors inside the line search into a
/// normal termination, so the flag is what tells us).
/// Last evaluated point with its value and gradient.
type Cached = Option<(Array1<f64>, f64, Array1<f64>)>;

struct ArgminProblem<'a, F> {
    f: &'a F,
    budget: Budget,
    cache: RefCell<Cached>,
    timed_out: RefCell<bool>,
}

impl<F> ArgminProblem<'_, F>
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    fn evaluate(&self, p: &Array1<f64>) -> Result<(f64, Array1<f64>), argmin::core::Error> {
        if let Some((cp, v, g)) = self.cache.borrow().as_ref() {
            if cp == p {
                return Ok((*v, g.clone()));
            }
        }
        if self.budget.expired() {
            *self.timed_out.borrow_mut() = true;
            return Err(argmin::core::Error::msg("time limit exceeded"));
        }
        let x = p.to_vec();
        let mut g = vec![0.0; x.len()];
        let v = (self.f)(&x, &mut g);
        // Moré–Thuente needs finite numbers: an infeasible trial gets a huge value and a
        // gradient pointing back, which makes the line search shrink the step.
        let (v, g) = if v.is_finite() && all_finite(&g) {
            (v, Array1::from(g))
        } else {
            (f64::MAX / 4.0, Array1::from_elem(x.len(), 0.0))
        };
        *self.cache.borrow_mut() = Some((p.clone(), v, g.clone()));
        Ok((v, g))
    }
}

impl<F> CostFunction for ArgminProblem<'_, F>
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    type Param = Array1<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.evaluate(p)?.0)
    }
}

impl<F> Gradient for ArgminProblem<'_, F>
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    type Param = Array1<f64>;
    type Gradient = Array1<f64>;
    fn gradient(&self, p: &Self::Param) -> Result<Array1<f64>, argmin::core::Error> {
        Ok(self.evaluate(p)?.1)
    }
}

/// argmin 0.11 L-BFGS (memory 8) with the Moré–Thuente line search, stopping on the same
/// gradient norm (its cost-change test is disabled: it stops early on flat stretches).
pub(crate) fn argmin_lbfgs<F>(f: F, x0: &[f64], budget: &Budget) -> Result<Minimum, OptFailure>
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    let mut g0 = vec![0.0; x0.len()];
    let v0 = f(x0, &mut g0);
    if !v0.is_finite() || !all_finite(&g0) {
        return Err(OptFailure::NonFiniteStart);
    }
    let problem = ArgminProblem {
        f: &f,
        budget: *budget,
        cache: RefCell::new(None),
        timed_out: RefCell::new(false),
    };
    let fail = |reason: &'static str| OptFailure::NotConverged {
        iterations: 0,
        grad_norm: norm(&g0),
        reason,
    };
    let linesearch = MoreThuenteLineSearch::new();
    let solver = LBFGS::new(linesearch, MEMORY)
        .with_tolerance_grad(budget.grad_tolerance)
        .and_then(|s| s.with_tolerance_cost(0.0))
        .map_err(|_| fail("invalid argmin settings"))?;
    let remaining = budget.timeout.saturating_sub(budget.started.elapsed());
    let result = Executor::new(problem, solver)
        .configure(|state| {
            state
                .param(Array1::from(x0.to_vec()))
                .max_iters(budget.max_iterations)
        })
        .timeout(remaining)
        .run();
    let result = match result {
        Ok(r) => r,
        Err(_) => return Err(OptFailure::Timeout { iterations: 0 }),
    };
    let state = result.state();
    let iterations = state.get_iter();
    let timed_out = result
        .problem()
        .problem
        .as_ref()
        .is_some_and(|p| *p.timed_out.borrow());
    if timed_out
        || matches!(
            state.get_termination_reason(),
            Some(TerminationReason::Timeout)
        )
    {
        return Err(OptFailure::Timeout { iterations });
    }
    let best = match state.get_best_param() {
        Some(p) => p.to_vec(),
        None => return Err(fail("argmin returned no parameters")),
    };
    let mut g = vec![0.0; best.len()];
    let value = f(&best, &mut g);
    let grad_norm = norm(&g);
    if !value.is_finite() || grad_norm.is_nan() || grad_norm > budget.grad_tolerance {
        return Err(OptFailure::NotConverged {
            iterations,
            grad_norm,
            reason: match state.get_termination_reason() {
                Some(TerminationReason::MaxItersReached) => {
                    "iteration cap reached before the gradient tolerance"
                }
                _ => "argmin stopped before the gradient tolerance (line search failure)",
            },
        });
    }
    Ok(Minimum {
        x: best,
        grad_norm,
        iterations,
    })
}

/// Standard errors on the natural scale from the Hessian of `total_nll` (a function of the
/// log-parameters returning value and gradient) at `x`: central differences of the analytic
/// gradient, symmetrised, inverted by Cholesky; `se(θᵢ) = θᵢ·√(H⁻¹)ᵢᵢ` (delta method, since
/// `θ = exp(x)`). `None` when the Hessian is not positive definite or not finite.
// Small dense matrices: explicit indices read like the formulas.
#[allow(clippy::needless_range_loop)]
pub(crate) fn std_errors<F>(total_nll: F, x: &[f64]) -> Option<Vec<f64>>
where
    F: Fn(&[f64], &mut [f64]) -> f64,
{
    let n = x.len();
    let mut h = vec![vec![0.0; n]; n];
    let mut gp = vec![0.0; n];
    let mut gm = vec![0.0; n];
    let mut xp = x.to_vec();
    for j in 0..n {
        // Step ≈ ε^(1/3) balances truncation and rounding for central differences.
        let step = 1e-5;
        xp[j] = x[j] + step;
        total_nll(&xp, &mut gp);
        xp[j] = x[j] - step;
        total_nll(&xp, &mut gm);
        xp[j] = x[j];
        for i in 0..n {
            h[i][j] = (gp[i] - gm[i]) / (2.0 * step);
        }
    }
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (h[i][j] + h[j][i]);
            h[i][j] = m;
            h[j][i] = m;
        }
    }
    let inv = invert_spd(&h)?;
    let out: Vec<f64> = (0..n).map(|i| x[i].exp() * inv[i][i].sqrt()).collect();
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// Inverse of a symmetric positive-definite matrix by Cholesky factorisation.
#[allow(clippy::needless_range_loop)]
fn invert_spd(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = a[i][i] - s;
                if !(d.is_finite() && d > 0.0) {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    // Solve L Lᵀ X = I column by column.
    let mut inv = vec![vec![0.0; n]; n];
    for col in 0..n {
        let mut y = vec![0.0; n];
        for i in 0..n {
            let e = if i == col { 1.0 } else { 0.0 };
            let s: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
            y[i] = (e - s) / l[i][i];
        }
        let mut z = vec![0.0; n];
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|k| l[k][i] * z[k]).sum();
            z[i] = (y[i] - s) / l[i][i];
        }
        for i in 0..n {
            inv[i][col] = z[i];
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget {
            max_iterations: 500,
            grad_tolerance: 1e-10,
            flat_tolerance: 1e-4,
            started: Instant::now(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Rosenbrock in two dimensions.
    fn rosen(x: &[f64], g: &mut [f64]) -> f64 {
        let (a, b) = (x[0], x[1]);
        g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
        g[1] = 200.0 * (b - a * a);
        (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
    }

    #[test]
    fn lbfgs_solves_rosenbrock() {
        let m = lbfgs(rosen, &[-1.2, 1.0], &budget()).expect("converges");
        assert!(
            (m.x[0] - 1.0).abs() < 1e-8 && (m.x[1] - 1.0).abs() < 1e-8,
            "{m:?}"
        );
    }

    #[test]
    fn argmin_solves_rosenbrock() {
        let m = argmin_lbfgs(rosen, &[-1.2, 1.0], &budget()).expect("converges");
        assert!(
            (m.x[0] - 1.0).abs() < 1e-7 && (m.x[1] - 1.0).abs() < 1e-7,
            "{m:?}"
        );
    }

    #[test]
    fn iteration_cap_is_an_error() {
        let b = Budget {
            max_iterations: 3,
            ..budget()
        };
        match lbfgs(rosen, &[-1.2, 1.0], &b) {
            Err(OptFailure::NotConverged { iterations, .. }) => assert_eq!(iterations, 3),
            other => panic!("expected NotConverged, got {other:?}"),
        }
    }

    #[test]
    fn spd_inverse() {
        let a = vec![vec![4.0, 1.0], vec![1.0, 3.0]];
        let inv = invert_spd(&a).expect("spd");
        let det = 11.0;
        assert!((inv[0][0] - 3.0 / det).abs() < 1e-14);
        assert!((inv[0][1] + 1.0 / det).abs() < 1e-14);
        assert!(invert_spd(&[vec![1.0, 2.0], vec![2.0, 1.0]]).is_none());
    }
}
