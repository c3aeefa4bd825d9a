//! Gradient-boosted decision trees: our own small histogram booster (depth-wise trees on
//! quantile bins, second-order gains, shrinkage, early stopping on a validation set), its
//! readable saved form (trees as nodes: feature, threshold, left/right, leaf value) and
//! per-row contributions by TreeSHAP. Written here because no crate fitted (docs/models.md,
//! "Boosted churn model": the `perpetual` releases need nightly Rust, `lightgbm3` needs cmake
//! and libclang, linfa-ensemble has no boosting).
//!
//! Prediction compares the raw input with the saved threshold (`x <= threshold` goes left);
//! the fit's bins are cut at those same thresholds, so what is saved is exactly what was
//! fitted. A row's margin is `margin_row`'s walk, or bit for bit the same from the batch
//! layout of `predict.rs` (`margins`: every tree padded to a complete tree), so run and
//! `score` give identical numbers.

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
    /// Share of the training rows each tree is grown on, drawn afresh every round by a seeded
    /// hash of (round, row) (1.0: every row), from [`SUBSAMPLE_MIN_ROWS`] rows up. The
    /// other rows still get the tree's value.
    pub subsample: f64,
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
            subsample: 1.0,
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
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return bad("subsample", "in (0, 1]", self.subsample.to_string());
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
        self.walk(input, |_, _, _| {})
    }

    /// Follows a row down from the root, calling `step(feature, node, child)` at each split
    /// passed; returns the value of the leaf reached. The one walk scoring and the path
    /// contributions share.
    fn walk(&self, input: impl Fn(usize) -> f64, mut step: impl FnMut(usize, usize, usize)) -> f64 {
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
                    let next = if input(feature) <= threshold {
                        left
                    } else {
                        right
                    };
                    step(feature, i, next);
                    i = next;
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

    /// Predictions of every row of `x`, in parallel ([`Ensemble::margins`]).
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        let mut m = self.margins(x);
        for v in &mut m {
            *v = link(self.objective, *v);
        }
        m
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
        self.margin_and_path_contributions(row).1
    }

    /// The row's margin (bit for bit [`Ensemble::margin_row`]: the leaf values added in tree
    /// order) and its [`Explainer::path_contributions`], from one walk per tree.
    pub fn margin_and_path_contributions(&self, row: &[f64]) -> (f64, Vec<f64>) {
        let k = self.ensemble.features.len();
        let mut phi = vec![0.0; k + 1];
        phi[k] = self.expected;
        let mut margin = self.ensemble.base_margin;
        for (t, means) in self.ensemble.trees.iter().zip(&self.node_means) {
            margin += t.walk(|j| row[j], |f, from, to| phi[f] += means[to] - means[from]);
        }
        (margin, phi)
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

/// SplitMix64's output function: a well-mixed 64-bit hash of `z` (the
/// booster's row draws, the bootstrap's weights: seeded, and independent of the thread count).
pub fn mix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rows per chunk of [`mean_loss`]'s parallel sum.
const LOSS_CHUNK: usize = 8192;

/// Mean loss of margins against labels (log loss, or Tweedie negative log-likelihood up to a
/// constant): what early stopping watches.
pub fn mean_loss(objective: Objective, margins: &[f64], y: &[f64]) -> f64 {
    let n = margins.len().max(1) as f64;
    let loss = |(&m, &y): (&f64, &f64)| match objective {
        Objective::Logistic => {
            // log(1 + e^m) − y·m, computed stably.
            let softplus = if m > 0.0 {
                m + (-m).exp().ln_1p()
            } else {
                m.exp().ln_1p()
            };
            softplus - y * m
        }
        Objective::Tweedie { power: p } => {
            -y * ((1.0 - p) * m).exp() / (1.0 - p) + ((2.0 - p) * m).exp() / (2.0 - p)
        }
    };
    // Chunks summed in parallel, then in order: the same total on any number of threads.
    let total: f64 = margins
        .par_chunks(LOSS_CHUNK)
        .zip(y.par_chunks(LOSS_CHUNK))
        .map(|(m, y)| m.iter().zip(y).map(loss).sum::<f64>())
        .collect::<Vec<f64>>()
        .iter()
        .sum();
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

mod predict;
mod shap;
mod train;
use shap::{expected_value, max_depth, tree_shap, PathElement};
pub use train::{fit, SUBSAMPLE_MIN_ROWS};

#[cfg(test)]
mod tests;
