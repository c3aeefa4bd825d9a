//! Batch prediction: an ensemble laid out as complete trees, walked for several rows at once.
//!
//! Every tree is padded to a complete binary tree of the ensemble's depth (a leaf above the
//! bottom becomes splits whose children all carry its value), so a row's walk is `depth`
//! steps with no branch on the node kind, and eight rows walk each tree side by side (their
//! steps are independent, so their loads overlap). A row reaches the same leaf as by
//! [`Ensemble::margin_row`] — the same `x <= threshold` test at every real split, and at a
//! padding split both sides hold the leaf's value — and the leaf values are added in tree
//! order from the base margin: the margins are bit for bit `margin_row`'s (tested). On 180k
//! rows of 17 inputs and 71 depth-4 trees it takes 85 ms against 125–170 ms for the
//! node-by-node walk of each row (two threads, release build).

use ndarray::Array2;
use rayon::prelude::*;

use super::{Ensemble, Node, Tree};

/// Rows per parallel chunk.
const CHUNK: usize = 4096;
/// Rows walking a tree side by side.
const ROWS: usize = 8;

/// One ensemble padded to complete trees of depth `depth`: tree `t`'s split `i` (heap order,
/// children of `i` at `2i + 1`, `2i + 2`) is `feature[t * splits + i]` / `threshold[..]`, its
/// leaf `l` is `leaf[t * leaves + l]`.
pub(super) struct Complete {
    depth: usize,
    splits: usize,
    leaves: usize,
    feature: Vec<usize>,
    threshold: Vec<f64>,
    leaf: Vec<f64>,
}

fn depth_of(tree: &Tree, node: usize) -> usize {
    match tree.nodes[node] {
        Node::Leaf { .. } => 0,
        Node::Split { left, right, .. } => 1 + depth_of(tree, left).max(depth_of(tree, right)),
    }
}

impl Complete {
    pub(super) fn of(e: &Ensemble) -> Complete {
        let depth = e.trees.iter().map(|t| depth_of(t, 0)).max().unwrap_or(0);
        let (splits, leaves) = ((1usize << depth) - 1, 1usize << depth);
        let mut c = Complete {
            depth,
            splits,
            leaves,
            feature: vec![0; splits * e.trees.len()],
            // A padding split sends every row left; its right side holds the same value.
            threshold: vec![f64::INFINITY; splits * e.trees.len()],
            leaf: vec![0.0; leaves * e.trees.len()],
        };
        for (t, tree) in e.trees.iter().enumerate() {
            c.place(t, tree, 0, 0);
        }
        c
    }

    /// Places `tree`'s node `node` at heap position `at` of tree `t`.
    fn place(&mut self, t: usize, tree: &Tree, node: usize, at: usize) {
        match tree.nodes[node] {
            Node::Split {
                feature,
                threshold,
                left,
                right,
                ..
            } => {
                self.feature[t * self.splits + at] = feature;
                self.threshold[t * self.splits + at] = threshold;
                self.place(t, tree, left, 2 * at + 1);
                self.place(t, tree, right, 2 * at + 2);
            }
            Node::Leaf { value, .. } => {
                // Every bottom position under `at` gets the value: the leaves of the complete
                // subtree rooted there are a contiguous run of the bottom level.
                let (mut lo, mut hi) = (at, at);
                while lo < self.splits {
                    (lo, hi) = (2 * lo + 1, 2 * hi + 2);
                }
                let base = t * self.leaves;
                for l in lo..=hi {
                    self.leaf[base + l - self.splits] = value;
                }
            }
        }
    }

    /// The leaf value of tree `t` for each of `rows`.
    fn leaves_of<const N: usize>(&self, t: usize, rows: [&[f64]; N]) -> [f64; N] {
        let (feature, threshold) = (
            &self.feature[t * self.splits..(t + 1) * self.splits],
            &self.threshold[t * self.splits..(t + 1) * self.splits],
        );
        let mut at = [0usize; N];
        for _ in 0..self.depth {
            for (a, row) in at.iter_mut().zip(&rows) {
                // Not `<=` goes right: NaN goes right, as in `Tree::walk`.
                let right = !(row[feature[*a]] <= threshold[*a]);
                *a = 2 * *a + 1 + usize::from(right);
            }
        }
        let leaf = &self.leaf[t * self.leaves..(t + 1) * self.leaves];
        std::array::from_fn(|i| leaf[at[i] - self.splits])
    }
}

impl Ensemble {
    /// The margin of every row of `x` (rows in parallel), bit for bit [`Ensemble::margin_row`].
    pub fn margins(&self, x: &Array2<f64>) -> Vec<f64> {
        if x.ncols() == 0 {
            return (0..x.nrows()).map(|_| self.margin_row(&[])).collect();
        }
        let c = Complete::of(self);
        let x = x.as_standard_layout();
        let k = x.ncols();
        let Some(flat) = x.as_slice() else {
            return Vec::new(); // unreachable: a standard-layout array is one slice
        };
        let mut out = vec![self.base_margin; x.nrows()];
        out.par_chunks_mut(CHUNK)
            .zip(flat.par_chunks(CHUNK * k))
            .for_each(|(out, rows)| {
                let mut rows = rows.chunks(k);
                for group in out.chunks_mut(ROWS) {
                    if group.len() == ROWS {
                        let g: [&[f64]; ROWS] = std::array::from_fn(|_| rows.next().unwrap_or(&[]));
                        for t in 0..self.trees.len() {
                            for (m, v) in group.iter_mut().zip(c.leaves_of(t, g)) {
                                *m += v;
                            }
                        }
                    } else {
                        for m in group.iter_mut() {
                            let row = [rows.next().unwrap_or(&[])];
                            for t in 0..self.trees.len() {
                                *m += c.leaves_of(t, row)[0];
                            }
                        }
                    }
                }
            });
        out
    }
}
