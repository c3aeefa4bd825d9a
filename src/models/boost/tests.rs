use super::*;

fn data(n: usize) -> (Array2<f64>, Vec<f64>) {
    // Deterministic: y depends on x0 (threshold), x1 (interaction with x0) and not x2.
    let mut x = Array2::zeros((n, 3));
    let mut y = vec![0.0; n];
    let mut s: u64 = 7;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    for r in 0..n {
        let (a, b, c) = (next(), next(), next());
        x[[r, 0]] = a;
        x[[r, 1]] = (b * 10.0).floor();
        x[[r, 2]] = c;
        let logit = 3.0 * (a - 0.5) + if a > 0.5 && b > 0.5 { 1.5 } else { -0.5 };
        y[r] = f64::from(u8::from(next() < sigmoid(logit)));
    }
    (x, y)
}

const NAMES: [&str; 3] = ["a", "b", "c"];

#[test]
fn learns_and_stops_early_on_validation() {
    let (x, y) = data(4000);
    let (vx, vy) = data(2000);
    let params = BoostParams {
        min_leaf_rows: 20,
        ..BoostParams::default()
    };
    let fit = fit(&params, &NAMES, &x, &y, Some((&vx, &vy))).expect("fit");
    assert!(
        fit.rounds >= 5 && fit.rounds < params.max_rounds,
        "{}",
        fit.rounds
    );
    // The best round is kept: its loss is the minimum of those seen.
    let min = fit.valid_loss.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(fit.valid_loss[fit.rounds - 1], min);
    // Better than the constant model on validation.
    let margins: Vec<f64> = (0..vx.nrows())
        .map(|r| fit.ensemble.margin_row(&vx.row(r).to_vec()))
        .collect();
    let base = vec![fit.ensemble.base_margin; vx.nrows()];
    assert!(
        mean_loss(Objective::Logistic, &margins, &vy)
            < mean_loss(Objective::Logistic, &base, &vy) - 0.05
    );
}

#[test]
fn path_contributions_sum_to_the_margin() {
    let (x, y) = data(3000);
    let params = BoostParams {
        max_rounds: 30,
        min_leaf_rows: 20,
        ..BoostParams::default()
    };
    let e = fit(&params, &NAMES, &x, &y, None).expect("fit").ensemble;
    let ex = e.explainer();
    for r in 0..200 {
        let row = x.row(r).to_vec();
        let phi = ex.path_contributions(&row);
        let sum: f64 = phi.iter().sum();
        assert!((sum - e.margin_row(&row)).abs() < 1e-9, "row {r}: {sum}");
        // The expected margin is the same as TreeSHAP's.
        assert!((phi[3] - ex.contributions(&row)[3]).abs() < 1e-12);
    }
}

#[test]
fn contributions_sum_to_the_margin_and_match_exact_shapley() {
    let (x, y) = data(3000);
    let params = BoostParams {
        max_rounds: 30,
        max_depth: 3,
        min_leaf_rows: 20,
        ..BoostParams::default()
    };
    let e = fit(&params, &NAMES, &x, &y, None).expect("fit").ensemble;
    assert_eq!(e.trees.len(), 30);
    for r in 0..50 {
        let row = x.row(r).to_vec();
        let phi = e.contributions(&row);
        let sum: f64 = phi.iter().sum();
        assert!(
            (sum - e.margin_row(&row)).abs() < 1e-9,
            "row {r}: {sum} vs {}",
            e.margin_row(&row)
        );
        // Exact Shapley values of the cover-weighted conditional expectation, by brute
        // force over the 2^3 coalitions: what path-dependent TreeSHAP computes.
        let v = |set: u32| -> f64 {
            e.base_margin
                + e.trees
                    .iter()
                    .map(|t| cond_exp(t, 0, &row, set))
                    .sum::<f64>()
        };
        for j in 0..3 {
            let mut exact = 0.0;
            for s in 0..8u32 {
                if s & (1 << j) != 0 {
                    continue;
                }
                let size = s.count_ones() as i32;
                let w = fact(size) * fact(3 - size - 1) / fact(3);
                exact += w * (v(s | (1 << j)) - v(s));
            }
            assert!(
                (phi[j] - exact).abs() < 1e-9,
                "row {r} input {j}: {} vs {exact}",
                phi[j]
            );
        }
        assert!((phi[3] - v(0)).abs() < 1e-9);
    }
    // The input the labels ignore gets (almost) nothing.
    let spread = |j: usize| {
        (0..200)
            .map(|r| e.contributions(&x.row(r).to_vec())[j].abs())
            .sum::<f64>()
    };
    assert!(
        spread(2) < 0.2 * spread(0),
        "{} vs {}",
        spread(2),
        spread(0)
    );
}

fn fact(n: i32) -> f64 {
    (1..=n).map(f64::from).product()
}

fn cond_exp(t: &Tree, i: usize, row: &[f64], set: u32) -> f64 {
    match t.nodes[i] {
        Node::Leaf { value, .. } => value,
        Node::Split {
            feature,
            threshold,
            left,
            right,
            cover,
        } => {
            if set & (1 << feature) != 0 {
                cond_exp(
                    t,
                    if row[feature] <= threshold {
                        left
                    } else {
                        right
                    },
                    row,
                    set,
                )
            } else {
                (t.nodes[left].cover() * cond_exp(t, left, row, set)
                    + t.nodes[right].cover() * cond_exp(t, right, row, set))
                    / cover
            }
        }
    }
}

#[test]
fn thresholds_reproduce_the_bins_and_save_exactly() {
    let (x, y) = data(2000);
    let params = BoostParams {
        max_rounds: 20,
        min_leaf_rows: 10,
        ..BoostParams::default()
    };
    let e = fit(&params, &NAMES, &x, &y, None).expect("fit").ensemble;
    let json = serde_json::to_string(&e).expect("json");
    let back: Ensemble = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, e);
    back.validate(&NAMES).expect("valid");
    for r in 0..x.nrows() {
        let row = x.row(r).to_vec();
        assert_eq!(
            back.predict_row(&row).to_bits(),
            e.predict_row(&row).to_bits()
        );
    }
    assert!(json.contains("\"split\":{\"feature\":"), "{}", &json[..200]);
}

#[test]
fn tweedie_fits_the_total() {
    let (x, y) = data(3000);
    let amount: Vec<f64> = y
        .iter()
        .zip(x.column(0))
        .map(|(&y, &a)| y * (20.0 + 100.0 * a))
        .collect();
    let params = BoostParams {
        objective: Objective::Tweedie { power: 1.5 },
        max_rounds: 200,
        min_leaf_rows: 20,
        ..BoostParams::default()
    };
    let e = fit(&params, &NAMES, &x, &amount, None)
        .expect("fit")
        .ensemble;
    let predicted: f64 = (0..x.nrows())
        .map(|r| e.predict_row(&x.row(r).to_vec()))
        .sum();
    let actual: f64 = amount.iter().sum();
    assert!(
        (predicted / actual - 1.0).abs() < 0.02,
        "{predicted} vs {actual}"
    );
}

#[test]
fn rejects_bad_input_with_the_row() {
    let (mut x, y) = data(50);
    x[[7, 1]] = f64::NAN;
    let err = fit(&BoostParams::default(), &NAMES, &x, &y, None).err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("booster training: input column 1 of row 7 is not finite (NaN)".into())
    );
    let bad = BoostParams {
        bins: 300,
        ..BoostParams::default()
    };
    assert_eq!(
        bad.check().err().map(|e| e.to_string()),
        Some("booster parameter bins: must be in 2..=255 (got 300)".into())
    );
}

#[test]
fn batch_margins_are_margin_row_bit_for_bit() {
    // Shallow and deep leaves (min_leaf_rows large against depth 6), a NaN and infinities.
    let (x, y) = data(3000);
    let params = BoostParams {
        max_depth: 6,
        min_leaf_rows: 300,
        max_rounds: 25,
        ..BoostParams::default()
    };
    let e = fit(&params, &NAMES, &x, &y, None).expect("fit").ensemble;
    let depths: Vec<usize> = e.trees.iter().map(|t| t.nodes.len()).collect();
    assert!(
        depths.iter().any(|&n| n < 127),
        "some tree is not complete: {depths:?}"
    );
    let (mut z, _) = data(1003);
    z[[0, 0]] = f64::NAN;
    z[[1, 1]] = f64::INFINITY;
    z[[2, 2]] = f64::NEG_INFINITY;
    let batch = e.margins(&z);
    assert_eq!(batch.len(), 1003);
    for (r, m) in batch.iter().enumerate() {
        let row = z.row(r).to_vec();
        assert_eq!(m.to_bits(), e.margin_row(&row).to_bits(), "row {r}");
    }
    let single_leaf = Ensemble {
        trees: vec![Tree {
            nodes: vec![Node::Leaf {
                value: 0.25,
                cover: 1.0,
            }],
        }],
        ..e.clone()
    };
    assert_eq!(single_leaf.margins(&z)[5], e.base_margin + 0.25);
}
