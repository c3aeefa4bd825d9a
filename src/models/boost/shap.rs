//! Per-row contributions: TreeSHAP (exact Shapley values of the trees) and what the
//! explainer computes once per tree.

use super::*;

pub(super) fn expected_value(t: &Tree, i: usize) -> f64 {
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

pub(super) fn max_depth(t: &Tree, i: usize) -> usize {
    match t.nodes[i] {
        Node::Leaf { .. } => 0,
        Node::Split { left, right, .. } => 1 + max_depth(t, left).max(max_depth(t, right)),
    }
}

#[derive(Clone, Copy, Default)]
pub(super) struct PathElement {
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
pub(super) fn tree_shap(
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
