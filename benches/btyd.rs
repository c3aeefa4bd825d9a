//! Fit timings of the BTYD models (`cargo bench --bench btyd`).
//!
//! * CDNOW sample (2,357 customers, 1,016 distinct rows, weeks): BG/NBD, MBG/NBD, Pareto/NBD
//!   and Gamma-Gamma with our L-BFGS, and BG/NBD and Pareto/NBD with argmin's L-BFGS +
//!   Moré–Thuente for comparison. Reference: Python `lifetimes` takes 0.38 s (BG/NBD) and
//!   1.68 s (Pareto/NBD) on the same data.
//! * 200,000 simulated BG/NBD customers (r 0.25, α 30 days, a 0.7, b 2.2, T uniform on
//!   100–700 days): once with continuous times (every row distinct: the worst case for the
//!   row-collapsing) and once with times in whole days, as the pipeline produces them.
//!
//! Every fit includes the standard errors (numerical Hessian), as in production.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use churnclv::models::btyd::{
    fit_gamma_gamma, fit_transactions, Customer, FitOptions, ModelKind, Solver, Summary,
};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};

/// CDNOW sample: customers and mean repeat spend.
fn cdnow() -> (Vec<Customer>, Vec<f64>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/cdnow/cdnow_customers_summary_with_transactions.csv");
    let text = std::fs::read_to_string(path).expect("CDNOW csv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<f64> = l
                .trim_end_matches('\r')
                .split(',')
                .map(|c| c.trim().parse().expect("number"))
                .collect();
            (Customer::new(v[1], v[2], v[3]), v[4])
        })
        .unzip()
}

/// BG/NBD histories; `whole_days` floors purchase times to days (a repeat purchase on the
/// first day is dropped, as the pipeline counts purchase days).
fn simulate(n: usize, whole_days: bool, seed: u64) -> Vec<Customer> {
    let (r, alpha, a, b) = (0.25, 30.0, 0.7, 2.2);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lambda_dist = Gamma::<f64>::new(r, 1.0 / alpha).expect("gamma");
    let p_dist = Beta::<f64>::new(a, b).expect("beta");
    (0..n)
        .map(|_| {
            let big_t: f64 = if whole_days {
                f64::from(rng.gen_range(100u32..=700))
            } else {
                rng.gen_range(100.0..700.0)
            };
            let lambda: f64 = lambda_dist.sample(&mut rng).max(1e-300);
            let p: f64 = p_dist.sample(&mut rng);
            let wait = Exp::new(lambda).expect("exp");
            let (mut t, mut x, mut t_x) = (0.0_f64, 0.0, 0.0);
            loop {
                t += wait.sample(&mut rng);
                if t > big_t {
                    break;
                }
                let when = if whole_days { t.floor() } else { t };
                if when > t_x {
                    x += 1.0;
                    t_x = when;
                }
                if rng.gen::<f64>() < p {
                    break;
                }
            }
            Customer::new(x, t_x, big_t)
        })
        .collect()
}

fn options(solver: Solver) -> FitOptions {
    FitOptions {
        solver,
        timeout: Duration::from_secs(120),
        ..FitOptions::default()
    }
}

fn bench_cdnow(c: &mut Criterion) {
    let (rows, spend) = cdnow();
    let x: Vec<f64> = rows.iter().map(|r| r.x).collect();
    let mut group = c.benchmark_group("cdnow");
    group.bench_function("summary_collapse", |bench| {
        bench.iter(|| Summary::from_rows(black_box(&rows)).expect("summary"))
    });
    let summary = Summary::from_rows(&rows).expect("summary");
    for (name, kind, solver) in [
        ("bg_nbd", ModelKind::BgNbd, Solver::Lbfgs),
        ("bg_nbd_argmin", ModelKind::BgNbd, Solver::ArgminLbfgs),
        ("mbg_nbd", ModelKind::MbgNbd, Solver::Lbfgs),
        ("pareto_nbd", ModelKind::ParetoNbd, Solver::Lbfgs),
        (
            "pareto_nbd_argmin",
            ModelKind::ParetoNbd,
            Solver::ArgminLbfgs,
        ),
    ] {
        let opts = options(solver);
        group.bench_function(name, |bench| {
            bench.iter(|| fit_transactions(kind, black_box(&summary), &opts).expect("fit"))
        });
    }
    let opts = options(Solver::Lbfgs);
    group.bench_function("gamma_gamma", |bench| {
        bench.iter(|| fit_gamma_gamma(black_box(&x), black_box(&spend), &opts).expect("fit"))
    });
    group.finish();
}

fn bench_synthetic(c: &mut Criterion) {
    let mut group = c.benchmark_group("synthetic_200k");
    group.sample_size(10);
    for (name, whole_days) in [("continuous", false), ("whole_days", true)] {
        let rows = simulate(200_000, whole_days, 11);
        let summary = Summary::from_rows(&rows).expect("summary");
        eprintln!("{name}: {} distinct rows", summary.rows().len());
        let opts = options(Solver::Lbfgs);
        group.bench_function(format!("bg_nbd_{name}"), |bench| {
            bench.iter(|| {
                fit_transactions(ModelKind::BgNbd, black_box(&summary), &opts).expect("fit")
            })
        });
        group.bench_function(format!("pareto_nbd_{name}"), |bench| {
            bench.iter(|| {
                fit_transactions(ModelKind::ParetoNbd, black_box(&summary), &opts).expect("fit")
            })
        });
        group.bench_function(format!("summary_collapse_{name}"), |bench| {
            bench.iter(|| Summary::from_rows(black_box(&rows)).expect("summary"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_cdnow, bench_synthetic);
criterion_main!(benches);
