//! L2-penalised binary logistic regression fitted by Newton's method (the churn model's solver):
//! the objective linfa-logistic minimises, solved in a handful of fused, parallel passes.
//!
//! Objective (linfa-logistic's, so the optimum is the same model): with `η_i = b + w·x_i`,
//! `Σ_i c_i·[ln(1 + e^{η_i}) − y_i·η_i] + α/2·|w|²` (intercept not penalised), where `c_i` is a
//! per-class row weight (1, or the balancing factor, which is the same objective as replicating
//! the rows). Why not linfa's L-BFGS: `perf` showed its fits were three quarters of the whole
//! run's CPU (cost and gradient computed in separate passes, each a strided matrix-vector
//! product, ~100 line-search evaluations per fit, stopped at a mean gradient of 1e-4). With 18
//! parameters the Hessian is tiny: one pass over the rows gives loss, gradient and Hessian
//! together, and Newton's method reaches the optimum to rounding in 6–10 passes.
//!
//! Determinism: rows are cut into fixed chunks whose partial sums are added in chunk order, so
//! the result does not depend on the thread count.

use std::time::Instant;

use ndarray::{Array2, ArrayView1, Axis, Slice};
use rayon::prelude::*;

/// Rows per partial sum (fixed, so that sums do not depend on the thread count).
const CHUNK: usize = 4096;

/// Stop when every component of the gradient, divided by the total row weight, is below this.
/// Newton's quadratic convergence reaches it one step after the mean gradient is ~1e-5, and
/// each step halves nothing in practice; the old L-BFGS stopped at a mean |gradient| of 1e-4.
pub const GRADIENT_TOLERANCE: f64 = 1e-9;

/// Accepted when the loss is flat to rounding and the mean gradient is at most this.
pub const ROUNDING_FLOOR: f64 = 1e-6;

/// Why a fit failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogisticError {
    #[error("did not converge within {iterations} Newton iterations (largest mean gradient component {gradient:e}, tolerance {GRADIENT_TOLERANCE:e})")]
    NotConverged { iterations: u64, gradient: f64 },
    #[error("did not finish within {seconds} s ({iterations} Newton iterations done)")]
    Timeout { seconds: u64, iterations: u64 },
    #[error("non-finite value in the design matrix (row {row}, column {column})")]
    NonFinite { row: usize, column: usize },
    #[error("the Hessian is not positive definite (alpha {alpha}); the features are degenerate")]
    Singular { alpha: f64 },
}

/// Solver settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// L2 strength on the summed loss (not on the intercept). Must be > 0.
    pub alpha: f64,
    /// Newton iteration cap.
    pub max_iterations: u64,
    /// Wall-clock limit for the whole fit.
    pub timeout_seconds: u64,
    /// Row weight of the rows with `y = true` and with `y = false`.
    pub class_weights: (f64, f64),
}

/// The fitted parameters: `P(y) = σ(intercept + weights·x)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub weights: Vec<f64>,
    pub intercept: f64,
    /// Newton iterations (one fused pass each, plus the rare step halving).
    pub iterations: u64,
    /// Asymptotic standard errors of the weights then the intercept (last): the square roots
    /// of the diagonal of the inverse Hessian of the objective at the optimum (the penalised,
    /// class-weighted one: with balanced weights the replicated rows make them smaller).
    /// `None` when that Hessian is not positive definite.
    pub std_errors: Option<Vec<f64>>,
}

/// `√diag(H⁻¹)` of a symmetric positive definite `H` (k × k, row-major), one Cholesky solve
/// per unit vector (k is the feature count plus one: tiny).
fn inverse_diagonal_sqrt(h: &[f64], k: usize) -> Option<Vec<f64>> {
    (0..k)
        .map(|i| {
            let mut e = vec![0.0; k];
            e[i] = 1.0;
            let col = cholesky_solve(h, &e)?;
            let v = col[i];
            (v.is_finite() && v > 0.0).then(|| v.sqrt())
        })
        .collect()
}

/// One pass: loss, gradient and Hessian (k × k, row-major, k = columns + 1 for the
/// intercept, last) at `theta` (weights, then the intercept).
#[derive(Debug, Clone)]
struct Pass {
    loss: f64,
    grad: Vec<f64>,
    hess: Vec<f64>,
}

/// `ln(1 + e^η)` and `σ(η)` from one `exp` (of `−|η|`, which cannot overflow).
fn loss_and_mean(eta: f64) -> (f64, f64) {
    let e = (-eta.abs()).exp();
    let softplus = eta.max(0.0) + e.ln_1p();
    let mu = if eta >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    (softplus, mu)
}

fn pass(x: &Array2<f64>, y: &[bool], s: &Settings, theta: &[f64]) -> Pass {
    let p = x.ncols();
    let k = p + 1;
    let w = ArrayView1::from(&theta[..p]);
    let b = theta[p];
    // Per chunk: η = X·w + b (contiguous rows), then the gradient and the Hessian as matrix
    // products (matrixmultiply's packed kernels): Xᵀ·[r h] gives ∂/∂w and the intercept's
    // Hessian column, (h ⊙ X)ᵀ·X the weights' block.
    let chunk = |start: usize| -> Pass {
        let end = (start + CHUNK).min(x.nrows());
        let xc = x.slice_axis(Axis(0), Slice::from(start..end));
        let eta = xc.dot(&w);
        let mut rh = Array2::<f64>::zeros((end - start, 2));
        let mut loss = 0.0;
        for (i, (e, mut out)) in eta.iter().zip(rh.rows_mut()).enumerate() {
            let t = y[start + i];
            let (c, yi) = if t {
                (s.class_weights.0, 1.0)
            } else {
                (s.class_weights.1, 0.0)
            };
            let eta = e + b;
            let (softplus, mu) = loss_and_mean(eta);
            loss += c * (softplus - yi * eta);
            out[0] = c * (mu - yi);
            out[1] = c * mu * (1.0 - mu);
        }
        let g = xc.t().dot(&rh);
        let mut hx = xc.to_owned();
        hx *= &rh.column(1).insert_axis(Axis(1));
        let hww = hx.t().dot(&xc);
        let mut grad = vec![0.0; k];
        let mut hess = vec![0.0; k * k];
        for j in 0..p {
            grad[j] = g[[j, 0]];
            hess[j * k + p] = g[[j, 1]];
            hess[p * k + j] = g[[j, 1]];
            for m in 0..p {
                hess[j * k + m] = hww[[j, m]];
            }
        }
        grad[p] = rh.column(0).sum();
        hess[p * k + p] = rh.column(1).sum();
        Pass { loss, grad, hess }
    };
    let starts: Vec<usize> = (0..x.nrows()).step_by(CHUNK).collect();
    let parts: Vec<Pass> = starts.par_iter().map(|&s| chunk(s)).collect();
    let mut total = Pass {
        loss: 0.0,
        grad: vec![0.0; k],
        hess: vec![0.0; k * k],
    };
    // Added in chunk order: the same sums whatever the thread count.
    for part in parts {
        total.loss += part.loss;
        for (t, v) in total.grad.iter_mut().zip(&part.grad) {
            *t += v;
        }
        for (t, v) in total.hess.iter_mut().zip(&part.hess) {
            *t += v;
        }
    }
    // The penalty (not on the intercept).
    total.loss += 0.5 * s.alpha * w.dot(&w);
    for j in 0..p {
        total.grad[j] += s.alpha * w[j];
        total.hess[j * k + j] += s.alpha;
    }
    total
}

/// Solves `H·d = g` for symmetric positive definite `H` (k × k, row-major) by Cholesky.
pub(crate) fn cholesky_solve(h: &[f64], g: &[f64]) -> Option<Vec<f64>> {
    let k = g.len();
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let mut sum = h[i * k + j];
            for m in 0..j {
                sum -= l[i * k + m] * l[j * k + m];
            }
            if i == j {
                if !(sum > 0.0 && sum.is_finite()) {
                    return None;
                }
                l[i * k + i] = sum.sqrt();
            } else {
                l[i * k + j] = sum / l[j * k + j];
            }
        }
    }
    let mut z = vec![0.0; k];
    for i in 0..k {
        let s: f64 = (0..i).map(|m| l[i * k + m] * z[m]).sum();
        z[i] = (g[i] - s) / l[i * k + i];
    }
    let mut d = vec![0.0; k];
    for i in (0..k).rev() {
        let s: f64 = (i + 1..k).map(|m| l[m * k + i] * d[m]).sum();
        d[i] = (z[i] - s) / l[i * k + i];
    }
    Some(d)
}

/// The Newton direction `H⁻¹·g`. With `alpha` 0 and a constant or collinear column, `H` is
/// singular: a small ridge, grown until the factorisation succeeds, gives the least-change
/// direction (the gradient has no component along a constant column).
fn newton_step(h: &[f64], g: &[f64]) -> Option<Vec<f64>> {
    if let Some(d) = cholesky_solve(h, g) {
        return Some(d);
    }
    let k = g.len();
    let scale = (0..k)
        .map(|i| h[i * k + i].abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    let mut ridge = 1e-12 * scale;
    while ridge <= scale {
        let mut damped = h.to_vec();
        for i in 0..k {
            damped[i * k + i] += ridge;
        }
        if let Some(d) = cholesky_solve(&damped, g) {
            return Some(d);
        }
        ridge *= 100.0;
    }
    None
}

/// Fits on the rows of `x` (row-major, standardised) and labels `y`, from `start` (weights
/// then intercept, e.g. the fit at a neighbouring `alpha`) or from zero weights and the
/// log-odds intercept. The optimum is unique (`alpha` > 0): the start changes the number of
/// iterations, not the model beyond the tolerance.
pub fn fit(
    x: &Array2<f64>,
    y: &[bool],
    s: &Settings,
    start: Option<&[f64]>,
) -> Result<Fitted, LogisticError> {
    let started = Instant::now();
    if let Some((i, _)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let cols = x.ncols().max(1);
        return Err(LogisticError::NonFinite {
            row: i / cols,
            column: i % cols,
        });
    }
    let p = x.ncols();
    let total_weight: f64 = y
        .iter()
        .map(|&t| {
            if t {
                s.class_weights.0
            } else {
                s.class_weights.1
            }
        })
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    // Start at the weighted log-odds of y with zero weights (the intercept-only optimum).
    let pos: f64 = y.iter().filter(|&&t| t).count() as f64 * s.class_weights.0;
    let neg = total_weight - pos;
    let mut theta = vec![0.0; p + 1];
    match start {
        Some(t) if t.len() == p + 1 && t.iter().all(|v| v.is_finite()) => theta.copy_from_slice(t),
        _ if pos > 0.0 && neg > 0.0 => theta[p] = (pos / neg).ln(),
        _ => {}
    }
    let mut at = pass(x, y, s, &theta);
    let mut iterations = 0;
    loop {
        let largest = at.grad.iter().fold(0.0_f64, |m, g| m.max(g.abs())) / total_weight;
        if largest <= GRADIENT_TOLERANCE {
            return Ok(Fitted {
                weights: theta[..p].to_vec(),
                intercept: theta[p],
                iterations,
                std_errors: inverse_diagonal_sqrt(&at.hess, p + 1),
            });
        }
        if iterations >= s.max_iterations {
            return Err(LogisticError::NotConverged {
                iterations,
                gradient: largest,
            });
        }
        if started.elapsed().as_secs() >= s.timeout_seconds {
            return Err(LogisticError::Timeout {
                seconds: s.timeout_seconds,
                iterations,
            });
        }
        iterations += 1;
        let step =
            newton_step(&at.hess, &at.grad).ok_or(LogisticError::Singular { alpha: s.alpha })?;
        // Newton step with backtracking (Armijo). Each trial is a full pass, so the accepted
        // one is the next iteration's loss, gradient and Hessian: near the optimum full steps
        // are taken and an iteration is one pass.
        let slope: f64 = -at.grad.iter().zip(&step).map(|(g, d)| g * d).sum::<f64>();
        let mut t = 1.0;
        loop {
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(v, d)| v - t * d).collect();
            if cand == theta {
                // No representable progress: the loss is flat to rounding here. Extreme feature
                // values (the fuzz corpus) put that floor just above GRADIENT_TOLERANCE; a point
                // within ROUNDING_FLOOR is the optimum as far as f64 can tell (linfa stopped at
                // 1e-4), anything further is an error.
                if largest <= ROUNDING_FLOOR {
                    return Ok(Fitted {
                        weights: theta[..p].to_vec(),
                        intercept: theta[p],
                        iterations,
                        std_errors: inverse_diagonal_sqrt(&at.hess, p + 1),
                    });
                }
                return Err(LogisticError::NotConverged {
                    iterations,
                    gradient: largest,
                });
            }
            let trial = pass(x, y, s, &cand);
            if trial.loss <= at.loss + 1e-4 * t * slope {
                theta = cand;
                at = trial;
                break;
            }
            t *= 0.5;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(alpha: f64) -> Settings {
        Settings {
            alpha,
            max_iterations: 100,
            timeout_seconds: 60,
            class_weights: (1.0, 1.0),
        }
    }

    /// The same model as linfa-logistic (the crate this solver replaced for speed, see
    /// docs/models.md): on 2,000 rows drawn from a known logistic model, linfa's L-BFGS run to
    /// a tight tolerance and this Newton fit give the same weights and intercept.
    #[test]
    fn same_optimum_as_linfa_logistic() {
        use linfa::traits::Fit;
        use linfa::Dataset;
        use linfa_logistic::LogisticRegression;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let (n, w, b): (usize, [f64; 3], f64) = (2000, [1.5, -1.0, 0.5], -0.3);
        let mut x = Array2::zeros((n, 3));
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let mut eta = b;
            for (j, wj) in w.iter().enumerate() {
                x[[i, j]] = rng.gen_range(-2.0..2.0);
                eta += wj * x[[i, j]];
            }
            y.push(rng.gen_range(0.0..1.0) < 1.0 / (1.0 + (-eta).exp()));
        }
        for alpha in [0.1, 1.0, 10.0] {
            let ours = fit(&x, &y, &settings(alpha), None).unwrap_or_else(|e| panic!("{e}"));
            let theirs = LogisticRegression::default()
                .alpha(alpha)
                .max_iterations(10_000)
                .gradient_tolerance(1e-7)
                .fit(&Dataset::new(x.clone(), ndarray::Array1::from(y.clone())))
                .unwrap_or_else(|e| panic!("{e}"));
            // linfa calls the more frequent label positive (rust-ml/linfa#393).
            let sign = if theirs.labels().pos.class { 1.0 } else { -1.0 };
            for j in 0..3 {
                let (a, l) = (ours.weights[j], sign * theirs.params()[j]);
                assert!(
                    (a - l).abs() < 1e-5,
                    "alpha {alpha}, w[{j}]: {a} vs linfa {l}"
                );
            }
            let (a, l) = (ours.intercept, sign * theirs.intercept());
            assert!(
                (a - l).abs() < 1e-5,
                "alpha {alpha}, intercept: {a} vs linfa {l}"
            );
        }
    }

    /// Standard errors with a closed form: a column of zeros carries only the penalty
    /// (Hessian α, SE 1/√α) and the intercept of 30 churners in 100 rows has the Fisher
    /// information n·p·(1 − p) = 21.
    #[test]
    fn standard_errors_of_a_known_case() {
        let x = Array2::zeros((100, 1));
        let y: Vec<bool> = (0..100).map(|i| i < 30).collect();
        let f = fit(&x, &y, &settings(4.0), None).unwrap_or_else(|e| panic!("{e}"));
        let se = f.std_errors.unwrap_or_default();
        assert_eq!(se.len(), 2);
        assert!((se[0] - 0.5).abs() < 1e-12, "{se:?}");
        assert!((se[1] - 1.0 / 21f64.sqrt()).abs() < 1e-9, "{se:?}");
    }

    /// A small problem: the fit's gradient is zero (the optimum), checked by finite differences
    /// of the loss rather than by the solver's own gradient.
    #[test]
    fn optimum_has_zero_finite_difference_gradient() {
        let n = 300;
        let mut x = Array2::zeros((n, 2));
        let mut y = Vec::new();
        for i in 0..n {
            let a = ((i * 37) % 101) as f64 / 50.0 - 1.0;
            let b = ((i * 53) % 89) as f64 / 44.0 - 1.0;
            x[[i, 0]] = a;
            x[[i, 1]] = b;
            y.push((a * 2.0 - b + ((i * 7) % 13) as f64 / 6.5 - 1.0) > 0.0);
        }
        let s = settings(1.0);
        let f = fit(&x, &y, &s, None).unwrap_or_else(|e| panic!("{e}"));
        let theta = [f.weights[0], f.weights[1], f.intercept];
        let loss = |t: &[f64]| pass(&x, &y, &s, t).loss;
        for j in 0..3 {
            let h = 1e-5;
            let mut up = theta;
            let mut down = theta;
            up[j] += h;
            down[j] -= h;
            let d = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!(d.abs() < 1e-5, "d loss / d theta[{j}] = {d}");
        }
        assert!(f.iterations < 15, "{} iterations", f.iterations);
    }

    /// Weighting a class by k is the same objective as repeating its rows k times.
    #[test]
    fn class_weight_equals_replicated_rows() {
        let n = 200;
        let mut x = Array2::zeros((n, 1));
        let mut y = Vec::new();
        for i in 0..n {
            x[[i, 0]] = (i as f64 / n as f64) * 4.0 - 2.0;
            y.push((i * 31) % 7 < 2 && i > 50);
        }
        let weighted = fit(
            &x,
            &y,
            &Settings {
                class_weights: (3.0, 1.0),
                ..settings(0.5)
            },
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let rows: Vec<usize> = (0..n)
            .flat_map(|i| std::iter::repeat_n(i, if y[i] { 3 } else { 1 }))
            .collect();
        let xr = x.select(ndarray::Axis(0), &rows);
        let yr: Vec<bool> = rows.iter().map(|&i| y[i]).collect();
        let replicated = fit(&xr, &yr, &settings(0.5), None).unwrap_or_else(|e| panic!("{e}"));
        assert!((weighted.weights[0] - replicated.weights[0]).abs() < 1e-9);
        assert!((weighted.intercept - replicated.intercept).abs() < 1e-9);
    }

    #[test]
    fn chunking_does_not_depend_on_threads() {
        let n = 3 * CHUNK + 17;
        let mut x = Array2::zeros((n, 3));
        let mut y = Vec::new();
        for i in 0..n {
            for j in 0..3 {
                x[[i, j]] = (((i + 1) * (j + 3) * 2654435761) % 1000) as f64 / 500.0 - 1.0;
            }
            y.push(x[[i, 0]] + 0.3 * x[[i, 2]] > ((i % 11) as f64 / 5.5 - 1.0));
        }
        let s = settings(2.0);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .install(|| fit(&x, &y, &s, None));
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .install(|| fit(&x, &y, &s, None));
        assert_eq!(one, three);
        assert!(one.is_ok());
    }

    #[test]
    fn iteration_cap_is_an_error() {
        let x = Array2::from_shape_vec((4, 1), vec![-1.0, -0.5, 0.5, 1.0])
            .unwrap_or_else(|e| panic!("{e}"));
        let y = [false, true, false, true];
        let err = fit(
            &x,
            &y,
            &Settings {
                max_iterations: 0,
                ..settings(1.0)
            },
            None,
        );
        assert!(
            matches!(err, Err(LogisticError::NotConverged { iterations: 0, .. })),
            "{err:?}"
        );
    }
}
