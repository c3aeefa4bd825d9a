//! Gradient-boosted decision trees: our own small histogram booster (depth-wise trees on
//! quantile bins, second-order gains, shrinkage, early stopping on a validation set), its
//! readable saved form (trees as nodes: feature, threshold, left/right, leaf value) and
//! per-row contributions by TreeSHAP. Written here because no crate fitted (docs/models.md,
//! "Boosted churn model": the `perpetual` releases need nightly Rust, `lightgbm3` needs cmake
//! and libclang, linfa-ensemble has no boosting).
//!
//! Prediction compares the raw input with the saved threshold (`x <= threshold` goes left);
//! the fit's bins are cut at those same thresholds, so what is saved is exactly what was
//! fitted, and `margin_row` is the only scoring path (run and `score` give identical
//! numbers).

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::models::saved::InvalidField;

/// The loss a booster minimises.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Objective {
    /// Binary log loss on labels 0/1; the margin is the log-odds.
    Logistic,
    /// Tweedie deviance with a log link (1 < power < 2), for non-negative amounts with zeros.
    Tweedie { power: f64 },
}

/// Hyperparameters (checked by [`BoostParams::check`] before any work).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoostParams {
    pub objective: Objective,
    /// Shrinkage applied to every leaf value (0.1).
    pub learning_rate: f64,
    /// Depth of every tree (4: up to 16 leaves).
    pub max_depth: usize,
    /// Fewest training rows in a leaf (100).
    pub min_leaf_rows: usize,
    /// L2 penalty on leaf values (1.0).
    pub lambda: f64,
    /// Histogram bins per input, at most 255 (64).
    pub bins: usize,
    /// Most rounds (500); with a validation set, the best round is kept.
    pub max_rounds: usize,
    /// Early stopping: rounds without a better validation loss before stopping (20).
    pub patience: usize,
}

impl Default for BoostParams {
    fn default() -> Self {
        BoostParams {
            objective: Objective::Logistic,
            learning_rate: 0.1,
            max_depth: 4,
            min_leaf_rows: 100,
            lambda: 1.0,
            bins: 64,
            max_rounds: 500,
            patience: 20,
        }
    }
}

/// Why a booster could not be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoostError {
    #[error("booster parameter {name}: must be {expected} (got {got})")]
    Param {
        name: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("booster: no training rows")]
    Empty,
    #[error("booster {what}: {rows} rows of inputs but {labels} labels")]
    Shape {
        what: &'static str,
        rows: usize,
        labels: usize,
    },
    #[error("booster {what}: input column {column} of row {row} is not finite ({value})")]
    NonFinite {
        what: &'static str,
        row: usize,
        column: usize,
        value: f64,
    },
    #[error("booster {what}: label of row {row} must be {expected} (got {value})")]
    Label {
        what: &'static str,
        row: usize,
        expected: &'static str,
        value: f64,
    },
}

impl BoostParams {
    pub fn check(&self) -> Result<(), BoostError> {
        let bad = |name, expected, got: String| {
            Err(BoostError::Param {
                name,
                expected,
                got,
            })
        };
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate", "in (0, 1]", self.learning_rate.to_string());
        }
        if !(1..=12).contains(&self.max_depth) {
            return bad("max_depth", "in 1..=12", self.max_depth.to_string());
        }
        if self.min_leaf_rows == 0 {
            return bad("min_leaf_rows", ">= 1", "0".into());
        }
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return bad("lambda", "finite and >= 0", self.lambda.to_string());
        }
        if !(2..=255).contains(&self.bins) {
            return bad("bins", "in 2..=255", self.bins.to_string());
        }
        if self.max_rounds == 0 {
            return bad("max_rounds", ">= 1", "0".into());
        }
        if let Objective::Tweedie { power } = self.objective {
            if !(power > 1.0 && power < 2.0) {
                return bad("tweedie power", "in (1, 2)", power.to_string());
            }
        }
        Ok(())
    }
}

/// One node of a tree: a split (`x[feature] <= threshold` goes to `left`, else `right`;
/// children are positions in the tree's node list) or a leaf adding `value` to the margin.
/// `cover` is the number of training rows that reached the node (TreeSHAP weighs the unseen
/// branches by it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
        cover: f64,
    },
    Leaf {
        value: f64,
        cover: f64,
    },
}

impl Node {
    fn cover(&self) -> f64 {
        match *self {
            Node::Split { cover, .. } | Node::Leaf { cover, .. } => cover,
        }
    }
}

/// One tree; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    fn leaf_value(&self, row: &[f64]) -> f64 {
        self.leaf_value_by(|j| row[j])
    }

    fn leaf_value_by(&self, input: impl Fn(usize) -> f64) -> f64 {
        let mut i = 0;
        loop {
            match self.nodes[i] {
                Node::Leaf { value, .. } => return value,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                    ..
                } => {
                    i = if input(feature) <= threshold {
                        left
                    } else {
                        right
                    }
                }
            }
        }
    }
}

/// A fitted ensemble: margin = `base_margin` + Σ tree leaf values (learning rate applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ensemble {
    pub objective: Objective,
    /// The inputs, in column order (`feature` of a split is a position in this list).
    pub features: Vec<String>,
    pub base_margin: f64,
    pub trees: Vec<Tree>,
}

impl Ensemble {
    /// The margin (log-odds, or log mean for Tweedie) of one row of inputs. Trees are added
    /// in order, so the sum is the same wherever it is computed.
    pub fn margin_row(&self, row: &[f64]) -> f64 {
        let mut m = self.base_margin;
        for t in &self.trees {
            m += t.leaf_value(row);
        }
        m
    }

    /// The prediction of one row: a probability (logistic) or a mean (Tweedie).
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        link(self.objective, self.margin_row(row))
    }

    /// Predictions of every row of `x`, in parallel.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        let rows: Vec<usize> = (0..x.nrows()).collect();
        rows.par_iter()
            .map(|&r| {
                let row: Vec<f64> = x.row(r).to_vec();
                self.predict_row(&row)
            })
            .collect()
    }

    /// Per-input contributions to the margin of `row` by path-dependent TreeSHAP: see
    /// [`Explainer::contributions`] (build an explainer once for many rows).
    pub fn contributions(&self, row: &[f64]) -> Vec<f64> {
        self.explainer().contributions(row)
    }

    /// What TreeSHAP needs per tree, computed once: the expected margin and the depth.
    pub fn explainer(&self) -> Explainer<'_> {
        let expected =
            self.base_margin + self.trees.iter().map(|t| expected_value(t, 0)).sum::<f64>();
        let depth = self
            .trees
            .iter()
            .map(|t| max_depth(t, 0))
            .max()
            .unwrap_or(0);
        let node_means = self
            .trees
            .iter()
            .map(|t| (0..t.nodes.len()).map(|i| expected_value(t, i)).collect())
            .collect();
        Explainer {
            ensemble: self,
            expected,
            node_means,
            // Depth d's copy of the path holds d + 1 elements, after one unused element.
            path_len: (depth + 2) * (depth + 3) / 2 + 1,
        }
    }

    /// Checks a loaded ensemble: inputs named as `expected`, every node index inside its tree
    /// and pointing forward (no cycles), every feature a known input, finite numbers.
    pub fn validate(&self, expected: &[&str]) -> Result<(), InvalidField> {
        if self.features.len() != expected.len()
            || self.features.iter().zip(expected).any(|(a, b)| a != b)
        {
            return Err(InvalidField::new(
                "features",
                format!("must be the inputs {expected:?} in that order"),
                format!("{:?}", self.features),
            ));
        }
        if let Objective::Tweedie { power } = self.objective {
            if !(power > 1.0 && power < 2.0) {
                return Err(InvalidField::new(
                    "objective.power",
                    "must be in (1, 2)",
                    power,
                ));
            }
        }
        if !self.base_margin.is_finite() {
            return Err(InvalidField::new(
                "base_margin",
                "must be finite",
                self.base_margin,
            ));
        }
        for (ti, t) in self.trees.iter().enumerate() {
            if t.nodes.is_empty() {
                return Err(InvalidField::new(
                    format!("trees[{ti}].nodes"),
                    "must not be empty",
                    "[]",
                ));
            }
            for (ni, n) in t.nodes.iter().enumerate() {
                let at = |f: &str| format!("trees[{ti}].nodes[{ni}].{f}");
                match *n {
                    Node::Leaf { value, cover } => {
                        if !value.is_finite() {
                            return Err(InvalidField::new(at("value"), "must be finite", value));
                        }
                        if !(cover.is_finite() && cover >= 0.0) {
                            return Err(InvalidField::new(
                                at("cover"),
                                "must be finite and >= 0",
                                cover,
                            ));
                        }
                    }
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                        cover,
                    } => {
                        if feature >= expected.len() {
                            return Err(InvalidField::new(
                                at("feature"),
                                format!("must be an input position below {}", expected.len()),
                                feature,
                            ));
                        }
                        if !threshold.is_finite() {
                            return Err(InvalidField::new(
                                at("threshold"),
                                "must be finite",
                                threshold,
                            ));
                        }
                        for (name, child) in [("left", left), ("right", right)] {
                            if child <= ni || child >= t.nodes.len() {
                                return Err(InvalidField::new(
                                    at(name),
                                    format!(
                                        "must be a later node of the tree ({} to {})",
                                        ni + 1,
                                        t.nodes.len() - 1
                                    ),
                                    child,
                                ));
                            }
                        }
                        if !(cover.is_finite() && cover > 0.0) {
                            return Err(InvalidField::new(
                                at("cover"),
                                "must be finite and > 0",
                                cover,
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Per-row contributions of one ensemble (TreeSHAP, or path contributions), with what they
/// need per tree computed once.
pub struct Explainer<'a> {
    ensemble: &'a Ensemble,
    expected: f64,
    path_len: usize,
    /// Per tree, per node: the cover-weighted mean leaf value below it.
    node_means: Vec<Vec<f64>>,
}

impl Explainer<'_> {
    /// Path contributions (the booster's own, as XGBoost's `approx_contribs`, Saabas 2014):
    /// along the row's path in each tree, the change of the cover-weighted mean leaf value at
    /// each split goes to the split's input; last, the expected margin. They sum to the
    /// margin (the changes telescope to the leaf value), and cost one walk per tree
    /// (TreeSHAP visits every node with a quadratic path update: about 100 times more here).
    pub fn path_contributions(&self, row: &[f64]) -> Vec<f64> {
        let k = self.ensemble.features.len();
        let mut phi = vec![0.0; k + 1];
        phi[k] = self.expected;
        for (t, means) in self.ensemble.trees.iter().zip(&self.node_means) {
            let mut i = 0;
            while let Node::Split {
                feature,
                threshold,
                left,
                right,
                ..
            } = t.nodes[i]
            {
                let next = if row[feature] <= threshold {
                    left
                } else {
                    right
                };
                phi[feature] += means[next] - means[i];
                i = next;
            }
        }
        phi
    }

    /// Per-input contributions to the margin of `row` by path-dependent TreeSHAP (Lundberg et
    /// al. 2018, algorithm 2): `phi[j]` for each input and, last, the expected margin (the
    /// cover-weighted mean leaf value plus `base_margin`). They sum to the row's margin.
    pub fn contributions(&self, row: &[f64]) -> Vec<f64> {
        let k = self.ensemble.features.len();
        let mut phi = vec![0.0; k + 1];
        phi[k] = self.expected;
        let mut path = vec![PathElement::default(); self.path_len];
        for t in &self.ensemble.trees {
            tree_shap(t, row, &mut phi, 0, 0, &mut path, 0, 1.0, 1.0, None);
        }
        phi
    }
}

/// Platt scaling of a booster's margin: `P = sigmoid(slope · margin + intercept)`, fitted on
/// the validation window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platt {
    pub slope: f64,
    pub intercept: f64,
}

impl Platt {
    pub fn apply(&self, margin: f64) -> f64 {
        sigmoid(self.slope * margin + self.intercept)
    }
}

/// The boosted churn model as saved and scored: the ensemble on the logged model inputs
/// ([`crate::models::churn::logged_row`]) and, when the validation window showed it
/// miscalibrated, its Platt scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoostedChurn {
    pub ensemble: Ensemble,
    #[serde(deserialize_with = "Option::deserialize")]
    pub platt: Option<Platt>,
}

impl BoostedChurn {
    /// Checks a loaded boosted model: the ensemble on this build's inputs, a logistic
    /// objective, a finite Platt scaling with a positive slope.
    pub fn validate(&self) -> Result<(), InvalidField> {
        self.ensemble
            .validate(&crate::models::churn::FEATURES)
            .map_err(|e| e.within("ensemble"))?;
        if self.ensemble.objective != Objective::Logistic {
            return Err(InvalidField::new(
                "ensemble.objective",
                "must be logistic for a churn model",
                format_args!("{:?}", self.ensemble.objective),
            ));
        }
        if let Some(p) = &self.platt {
            if !(p.slope.is_finite() && p.slope > 0.0) {
                return Err(InvalidField::new(
                    "platt.slope",
                    "must be finite and > 0",
                    p.slope,
                ));
            }
            if !p.intercept.is_finite() {
                return Err(InvalidField::new(
                    "platt.intercept",
                    "must be finite",
                    p.intercept,
                ));
            }
        }
        Ok(())
    }

    /// P(churn) of one row of logged inputs.
    pub fn probability(&self, row: &[f64]) -> f64 {
        self.probability_of_margin(self.ensemble.margin_row(row))
    }

    /// P(churn) of an ensemble margin (Platt scaling applied when present).
    pub fn probability_of_margin(&self, m: f64) -> f64 {
        match &self.platt {
            Some(p) => p.apply(m),
            None => sigmoid(m),
        }
    }
}

fn sigmoid(m: f64) -> f64 {
    1.0 / (1.0 + (-m).exp())
}

fn link(objective: Objective, margin: f64) -> f64 {
    match objective {
        Objective::Logistic => sigmoid(margin),
        Objective::Tweedie { .. } => margin.exp(),
    }
}

/// Mean loss of margins against labels (log loss, or Tweedie negative log-likelihood up to a
/// constant): what early stopping watches.
pub fn mean_loss(objective: Objective, margins: &[f64], y: &[f64]) -> f64 {
    let n = margins.len().max(1) as f64;
    let total: f64 = match objective {
        Objective::Logistic => margins
            .iter()
            .zip(y)
            .map(|(&m, &y)| {
                // log(1 + e^m) − y·m, computed stably.
                let softplus = if m > 0.0 {
                    m + (-m).exp().ln_1p()
                } else {
                    m.exp().ln_1p()
                };
                softplus - y * m
            })
            .sum(),
        Objective::Tweedie { power: p } => margins
            .iter()
            .zip(y)
            .map(|(&m, &y)| {
                -y * ((1.0 - p) * m).exp() / (1.0 - p) + ((2.0 - p) * m).exp() / (2.0 - p)
            })
            .sum(),
    };
    total / n
}

/// Gradient and hessian of the loss in the margin.
fn grad_hess(objective: Objective, m: f64, y: f64) -> (f64, f64) {
    match objective {
        Objective::Logistic => {
            let p = sigmoid(m);
            (p - y, (p * (1.0 - p)).max(1e-16))
        }
        Objective::Tweedie { power: p } => {
            let a = ((1.0 - p) * m).exp();
            let b = ((2.0 - p) * m).exp();
            (-y * a + b, (-y * (1.0 - p) * a + (2.0 - p) * b).max(1e-16))
        }
    }
}

/// What a fit gives: the ensemble (truncated at the best validation round) and its record.
#[derive(Debug, Clone)]
pub struct BoostFit {
    pub ensemble: Ensemble,
    /// Trees kept.
    pub rounds: usize,
    /// Validation loss after each round fitted (empty without a validation set).
    pub valid_loss: Vec<f64>,
}

fn check_inputs(
    what: &'static str,
    x: &Array2<f64>,
    y: &[f64],
    objective: Objective,
) -> Result<(), BoostError> {
    if x.nrows() != y.len() {
        return Err(BoostError::Shape {
            what,
            rows: x.nrows(),
            labels: y.len(),
        });
    }
    for (r, row) in x.outer_iter().enumerate() {
        if let Some((column, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(BoostError::NonFinite {
                what,
                row: r,
                column,
                value,
            });
        }
    }
    for (row, &value) in y.iter().enumerate() {
        let ok = match objective {
            Objective::Logistic => value == 0.0 || value == 1.0,
            Objective::Tweedie { .. } => value >= 0.0 && value.is_finite(),
        };
        if !ok {
            let expected = match objective {
                Objective::Logistic => "0 or 1",
                Objective::Tweedie { .. } => "finite and >= 0",
            };
            return Err(BoostError::Label {
                what,
                row,
                expected,
                value,
            });
        }
    }
    Ok(())
}

/// Cut points of one input: up to `bins − 1` distinct values at equal-count quantiles (every
/// distinct value but the largest when there are fewer). Bin of `v` = number of cuts below
/// `v`, so `bin(v) <= b` exactly when `v <= cuts[b]`.
fn cut_points(column: impl Iterator<Item = f64>, bins: usize) -> Vec<f64> {
    let mut v: Vec<f64> = column.collect();
    v.sort_by(f64::total_cmp);
    let mut distinct = v.clone();
    distinct.dedup();
    if distinct.len() <= bins {
        distinct.pop();
        return distinct;
    }
    let n = v.len();
    let mut cuts: Vec<f64> = (1..bins).map(|q| v[(q * n / bins).min(n - 1)]).collect();
    cuts.dedup();
    if cuts.last() == distinct.last() {
        cuts.pop();
    }
    cuts
}

#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

/// The best split of a node: input, bin (left = bins `<= bin`), gain.
struct Best {
    feature: usize,
    bin: usize,
    gain: f64,
}

/// Fits an ensemble on `x` (rows × inputs, finite, any monotone scale) and labels `y`. With
/// `valid`, stops once the validation loss has not improved for `patience` rounds and keeps
/// the best round; without it, fits `max_rounds` rounds.
pub fn fit(
    params: &BoostParams,
    features: &[&str],
    x: &Array2<f64>,
    y: &[f64],
    valid: Option<(&Array2<f64>, &[f64])>,
) -> Result<BoostFit, BoostError> {
    params.check()?;
    let obj = params.objective;
    check_inputs("training", x, y, obj)?;
    if x.nrows() == 0 {
        return Err(BoostError::Empty);
    }
    if let Some((vx, vy)) = valid {
        check_inputs("validation", vx, vy, obj)?;
    }
    let (n, k) = x.dim();
    if features.len() != k {
        return Err(BoostError::Shape {
            what: "input names",
            rows: k,
            labels: features.len(),
        });
    }
    // Bins, one column of u8 per input (columns in parallel).
    let cuts: Vec<Vec<f64>> = (0..k)
        .into_par_iter()
        .map(|j| cut_points(x.column(j).iter().copied(), params.bins))
        .collect();
    // Row-major bins (one row's inputs together: a histogram pass reads each row once).
    let mut off = vec![0usize];
    for c in &cuts {
        off.push(off[off.len() - 1] + c.len() + 1);
    }
    let mut bins = vec![0u8; n * k];
    bins.par_chunks_mut(k).enumerate().for_each(|(r, out)| {
        for (j, o) in out.iter_mut().enumerate() {
            *o = cuts[j].partition_point(|&cut| cut < x[[r, j]]) as u8;
        }
    });
    let binned = Binned { k, bins, off };
    let mean = y.iter().sum::<f64>() / n as f64;
    let base_margin = match obj {
        Objective::Logistic => {
            let p = mean.clamp(1e-6, 1.0 - 1e-6);
            (p / (1.0 - p)).ln()
        }
        Objective::Tweedie { .. } => mean.max(1e-9).ln(),
    };
    let mut margin = vec![base_margin; n];
    let mut valid_margin: Vec<f64> = valid
        .map(|(vx, _)| vec![base_margin; vx.nrows()])
        .unwrap_or_default();
    let mut grad = vec![(0.0, 0.0); n];
    let mut trees: Vec<Tree> = Vec::new();
    let mut valid_loss = Vec::new();
    let (mut best_round, mut best_loss) = (0usize, f64::INFINITY);
    let mut rows: Vec<u32> = (0..n as u32).collect();
    let mut scratch: Vec<u32> = vec![0; n];
    for round in 0..params.max_rounds {
        grad.par_iter_mut()
            .zip(margin.par_iter().zip(y.par_iter()))
            .for_each(|(g, (&m, &y))| *g = grad_hess(obj, m, y));
        for (i, r) in rows.iter_mut().enumerate() {
            *r = i as u32;
        }
        let (tree, leaves) = grow(params, &cuts, &binned, &grad, &mut rows, &mut scratch);
        for (value, start, end) in leaves {
            for &r in &rows[start..end] {
                margin[r as usize] += value;
            }
        }
        if let Some((vx, vy)) = valid {
            valid_margin.par_iter_mut().enumerate().for_each(|(r, m)| {
                *m += tree.leaf_value(vx.row(r).as_slice().unwrap_or(&vx.row(r).to_vec()))
            });
            let loss = mean_loss(obj, &valid_margin, vy);
            valid_loss.push(loss);
            trees.push(tree);
            if loss < best_loss {
                (best_round, best_loss) = (round + 1, loss);
            } else if round + 1 - best_round >= params.patience {
                break;
            }
        } else {
            trees.push(tree);
            best_round = round + 1;
        }
    }
    trees.truncate(best_round);
    Ok(BoostFit {
        rounds: trees.len(),
        ensemble: Ensemble {
            objective: obj,
            features: features.iter().map(|s| s.to_string()).collect(),
            base_margin,
            trees,
        },
        valid_loss,
    })
}

/// Binned inputs, row-major (`bins[r * k + j]`); input `j`'s bins are `off[j]..off[j + 1]` of
/// a flat histogram.
struct Binned {
    k: usize,
    bins: Vec<u8>,
    off: Vec<usize>,
}

/// Rows per histogram chunk: chunks are summed in order, so a fit is the same on any number
/// of threads.
const CHUNK: usize = 8192;

impl Binned {
    fn hist_of(&self, grad: &[(f64, f64)], part: &[u32]) -> Vec<Bin> {
        let mut h = vec![Bin::default(); self.off[self.k]];
        for &r in part {
            let (g, hh) = grad[r as usize];
            let row = &self.bins[r as usize * self.k..(r as usize + 1) * self.k];
            for (j, &b) in row.iter().enumerate() {
                let e = &mut h[self.off[j] + b as usize];
                e.g += g;
                e.h += hh;
                e.n += 1;
            }
        }
        h
    }

    fn hist(&self, grad: &[(f64, f64)], part: &[u32]) -> Vec<Bin> {
        if part.len() <= CHUNK {
            return self.hist_of(grad, part);
        }
        let parts: Vec<Vec<Bin>> = part
            .par_chunks(CHUNK)
            .map(|c| self.hist_of(grad, c))
            .collect();
        let mut parts = parts.into_iter();
        let mut h = parts.next().unwrap_or_default();
        for p in parts {
            for (a, b) in h.iter_mut().zip(p) {
                a.g += b.g;
                a.h += b.h;
                a.n += b.n;
            }
        }
        h
    }
}

/// Grows one depth-wise tree on the rows `rows` (reordered in place so that each leaf's rows
/// are a range). Returns the tree and, per leaf, its value and row range.
fn grow(
    params: &BoostParams,
    cuts: &[Vec<f64>],
    binned: &Binned,
    grad: &[(f64, f64)],
    rows: &mut [u32],
    scratch: &mut [u32],
) -> (Tree, Vec<(f64, usize, usize)>) {
    struct Open {
        node: usize,
        start: usize,
        end: usize,
        hist: Vec<Bin>,
    }
    let k = binned.k;
    let n = rows.len();
    let mut nodes: Vec<Node> = vec![Node::Leaf {
        value: 0.0,
        cover: n as f64,
    }];
    let mut leaves = Vec::new();
    let mut level = vec![Open {
        node: 0,
        start: 0,
        end: n,
        hist: binned.hist(grad, rows),
    }];
    let lambda = params.lambda;
    let score = |g: f64, h: f64| g * g / (h + lambda);
    for depth in 0..=params.max_depth {
        let mut next = Vec::new();
        for open in level {
            // Every row falls in one bin of input 0: its bins sum to the node.
            let total = open.hist[..binned.off[1]]
                .iter()
                .fold(Bin::default(), |a, b| Bin {
                    g: a.g + b.g,
                    h: a.h + b.h,
                    n: a.n + b.n,
                });
            let leaf_value = -total.g / (total.h + lambda) * params.learning_rate;
            let best = if depth == params.max_depth {
                None
            } else {
                best_split(
                    &open.hist,
                    &binned.off,
                    total,
                    params.min_leaf_rows as u32,
                    &score,
                )
            };
            let Some(best) = best else {
                nodes[open.node] = Node::Leaf {
                    value: leaf_value,
                    cover: f64::from(total.n),
                };
                leaves.push((leaf_value, open.start, open.end));
                continue;
            };
            // Partition the node's rows: left (bin <= best.bin) first, stable.
            let part = &mut rows[open.start..open.end];
            let (mut l, mut r) = (0usize, 0usize);
            let spill = &mut scratch[..part.len()];
            // Left rows move down in place (never past the one being read), right rows spill.
            for i in 0..part.len() {
                let row = part[i];
                if (binned.bins[row as usize * k + best.feature] as usize) <= best.bin {
                    part[l] = row;
                    l += 1;
                } else {
                    spill[r] = row;
                    r += 1;
                }
            }
            part[l..].copy_from_slice(&spill[..r]);
            let mid = open.start + l;
            let (left, right) = (nodes.len(), nodes.len() + 1);
            nodes.push(Node::Leaf {
                value: 0.0,
                cover: l as f64,
            });
            nodes.push(Node::Leaf {
                value: 0.0,
                cover: r as f64,
            });
            nodes[open.node] = Node::Split {
                feature: best.feature,
                threshold: cuts[best.feature][best.bin],
                left,
                right,
                cover: f64::from(total.n),
            };
            // Histogram of the smaller child built, the larger one by subtraction.
            let (small, small_is_left) = if l <= r {
                (&rows[open.start..mid], true)
            } else {
                (&rows[mid..open.end], false)
            };
            let small_hist = binned.hist(grad, small);
            let large_hist: Vec<Bin> = open
                .hist
                .iter()
                .zip(&small_hist)
                .map(|(p, s)| Bin {
                    g: p.g - s.g,
                    h: p.h - s.h,
                    n: p.n - s.n,
                })
                .collect();
            let (lh, rh) = if small_is_left {
                (small_hist, large_hist)
            } else {
                (large_hist, small_hist)
            };
            next.push(Open {
                node: left,
                start: open.start,
                end: mid,
                hist: lh,
            });
            next.push(Open {
                node: right,
                start: mid,
                end: open.end,
                hist: rh,
            });
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    (Tree { nodes }, leaves)
}

fn best_split(
    hist: &[Bin],
    off: &[usize],
    total: Bin,
    min_rows: u32,
    score: &dyn Fn(f64, f64) -> f64,
) -> Option<Best> {
    let parent = score(total.g, total.h);
    let mut best: Option<Best> = None;
    for feature in 0..off.len() - 1 {
        let h = &hist[off[feature]..off[feature + 1]];
        let mut left = Bin::default();
        // The last bin cannot be a left side (nothing would go right).
        for (bin, b) in h.iter().enumerate().take(h.len().saturating_sub(1)) {
            left.g += b.g;
            left.h += b.h;
            left.n += b.n;
            let rn = total.n - left.n;
            if left.n < min_rows {
                continue;
            }
            if rn < min_rows {
                break;
            }
            let gain = score(left.g, left.h) + score(total.g - left.g, total.h - left.h) - parent;
            if gain > 1e-12 && best.as_ref().is_none_or(|b| gain > b.gain) {
                best = Some(Best { feature, bin, gain });
            }
        }
    }
    best
}

fn expected_value(t: &Tree, i: usize) -> f64 {
    match t.nodes[i] {
        Node::Leaf { value, .. } => value,
        Node::Split {
            left, right, cover, ..
        } => {
            let (cl, cr) = (t.nodes[left].cover(), t.nodes[right].cover());
            if cover <= 0.0 {
                return 0.0;
            }
            (cl * expected_value(t, left) + cr * expected_value(t, right)) / cover
        }
    }
}

fn max_depth(t: &Tree, i: usize) -> usize {
    match t.nodes[i] {
        Node::Leaf { .. } => 0,
        Node::Split { left, right, .. } => 1 + max_depth(t, left).max(max_depth(t, right)),
    }
}

#[derive(Clone, Copy, Default)]
struct PathElement {
    feature: Option<usize>,
    zero_fraction: f64,
    one_fraction: f64,
    pweight: f64,
}

fn extend_path(
    path: &mut [PathElement],
    unique_depth: usize,
    zero: f64,
    one: f64,
    feature: Option<usize>,
) {
    path[unique_depth] = PathElement {
        feature,
        zero_fraction: zero,
        one_fraction: one,
        pweight: if unique_depth == 0 { 1.0 } else { 0.0 },
    };
    let d = unique_depth as f64;
    for i in (0..unique_depth).rev() {
        path[i + 1].pweight += one * path[i].pweight * (i as f64 + 1.0) / (d + 1.0);
        path[i].pweight = zero * path[i].pweight * (d - i as f64) / (d + 1.0);
    }
}

fn unwind_path(path: &mut [PathElement], unique_depth: usize, index: usize) {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let d = unique_depth as f64;
    let mut next_one = path[unique_depth].pweight;
    for i in (0..unique_depth).rev() {
        if one != 0.0 {
            let tmp = path[i].pweight;
            path[i].pweight = next_one * (d + 1.0) / ((i as f64 + 1.0) * one);
            next_one = tmp - path[i].pweight * zero * (d - i as f64) / (d + 1.0);
        } else {
            path[i].pweight = path[i].pweight * (d + 1.0) / (zero * (d - i as f64));
        }
    }
    for i in index..unique_depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

fn unwound_path_sum(path: &[PathElement], unique_depth: usize, index: usize) -> f64 {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let d = unique_depth as f64;
    let mut next_one = path[unique_depth].pweight;
    let mut total = 0.0;
    for i in (0..unique_depth).rev() {
        if one != 0.0 {
            let tmp = next_one * (d + 1.0) / ((i as f64 + 1.0) * one);
            total += tmp;
            next_one = path[i].pweight - tmp * zero * ((d - i as f64) / (d + 1.0));
        } else {
            total += (path[i].pweight / zero) / ((d - i as f64) / (d + 1.0));
        }
    }
    total
}

/// TreeSHAP's recursion, as in the reference implementation: `path` is one buffer holding each
/// depth's copy of the path one after another; the parent's copy starts at `parent`, this
/// call's right after it (`parent + unique_depth + 1`).
#[allow(clippy::too_many_arguments)]
fn tree_shap(
    t: &Tree,
    row: &[f64],
    phi: &mut [f64],
    node: usize,
    unique_depth: usize,
    path: &mut [PathElement],
    parent: usize,
    zero: f64,
    one: f64,
    feature: Option<usize>,
) {
    let here = parent + unique_depth + 1;
    path.copy_within(parent..here, here);
    let mut depth = unique_depth;
    extend_path(&mut path[here..], depth, zero, one, feature);
    match t.nodes[node] {
        Node::Leaf { value, .. } => {
            let p = &path[here..];
            for i in 1..=depth {
                let w = unwound_path_sum(p, depth, i);
                if let Some(f) = p[i].feature {
                    phi[f] += w * (p[i].one_fraction - p[i].zero_fraction) * value;
                }
            }
        }
        Node::Split {
            feature: f,
            threshold,
            left,
            right,
            cover,
        } => {
            let (hot, cold) = if row[f] <= threshold {
                (left, right)
            } else {
                (right, left)
            };
            let hot_zero = t.nodes[hot].cover() / cover;
            let cold_zero = t.nodes[cold].cover() / cover;
            let (mut in_zero, mut in_one) = (1.0, 1.0);
            // A feature split on before is undone, then redone for this node.
            let p = &mut path[here..];
            if let Some(k) = (1..=depth).find(|&k| p[k].feature == Some(f)) {
                in_zero = p[k].zero_fraction;
                in_one = p[k].one_fraction;
                unwind_path(p, depth, k);
                depth -= 1;
            }
            tree_shap(
                t,
                row,
                phi,
                hot,
                depth + 1,
                path,
                here,
                hot_zero * in_zero,
                in_one,
                Some(f),
            );
            tree_shap(
                t,
                row,
                phi,
                cold,
                depth + 1,
                path,
                here,
                cold_zero * in_zero,
                0.0,
                Some(f),
            );
        }
    }
}

#[cfg(test)]
mod tests {
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
}
