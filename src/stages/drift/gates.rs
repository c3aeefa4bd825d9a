//! The `[gates]`: each limit measured on the comparison (its worst subject) and tripped or not.

use crate::config::GatesConfig;

use super::{Drift, Gate, Profile};

/// The worst of `(subject, measured)` against `limit`.
fn gate(name: &'static str, limit: f64, measured: impl IntoIterator<Item = (String, f64)>) -> Gate {
    let worst = measured
        .into_iter()
        .filter(|(_, m)| !m.is_nan())
        .max_by(|a, b| a.1.total_cmp(&b.1));
    Gate {
        gate: name,
        tripped: worst.as_ref().is_some_and(|(_, m)| *m > limit),
        subject: worst.as_ref().map(|(s, _)| s.clone()),
        measured: worst.map(|(_, m)| m),
        limit,
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("none".into(), |v| format!("{v:.4}"))
}

/// Every gate, input-side first: when several trip, the first names the likeliest cause.
pub(super) fn apply_gates(g: &GatesConfig, d: &Drift, r: &Profile, c: &Profile) -> Vec<Gate> {
    let relative = |a: f64, b: f64| {
        if a == 0.0 {
            if b == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (b / a - 1.0).abs()
        }
    };
    let mut gates = vec![gate(
        "max_customer_change",
        g.max_customer_change,
        [(
            format!("customers {} → {}", r.customers, c.customers),
            relative(r.customers as f64, c.customers as f64),
        )],
    )];
    let floor = g.min_reject_share;
    let rejects = d
        .inputs
        .iter()
        .filter(|s| s.name.starts_with("reject_share"))
        .filter_map(|s| {
            // Either way: a reason that stops firing (a key column renamed, a check lost) is
            // as suspicious as one that starts.
            let (a, b) = (s.reference?.max(floor), s.current?.max(floor));
            Some((
                format!("{} {} → {}", s.name, fmt(s.reference), fmt(s.current)),
                a.max(b) / a.min(b),
            ))
        });
    gates.push(gate(
        "max_reject_share_ratio",
        g.max_reject_share_ratio,
        rejects,
    ));
    let types = d
        .inputs
        .iter()
        .filter(|s| s.name.starts_with("event_type_share."))
        .filter_map(|s| {
            let (a, b) = (s.reference?, s.current?);
            let larger = a.max(b);
            // Relative to the larger share: 1 = the type vanished (or appeared), 0.5 = halved
            // (or doubled); bounded, so a type new this run is measured too.
            (larger >= g.min_event_type_share).then(|| {
                (
                    format!("{} {} → {}", s.name, fmt(s.reference), fmt(s.current)),
                    (b - a).abs() / larger,
                )
            })
        });
    gates.push(gate(
        "max_event_type_share_change",
        g.max_event_type_share_change,
        types,
    ));
    let means = d
        .inputs
        .iter()
        .filter(|s| s.name == "mean_order_value" || s.name == "purchases_per_buyer")
        .filter_map(|s| {
            Some((
                format!("{} {} → {}", s.name, fmt(s.reference), fmt(s.current)),
                relative(s.reference?, s.current?),
            ))
        });
    gates.push(gate(
        "max_input_mean_change",
        g.max_input_mean_change,
        means,
    ));
    let psi = |scores: bool| {
        d.psi
            .iter()
            .filter(move |(n, _)| {
                (n.as_str() == "churn_probability" || n.as_str() == "clv") == scores
            })
            .filter_map(|(n, v)| Some((format!("PSI of {n}"), (*v)?)))
    };
    gates.push(gate("max_input_psi", g.max_input_psi, psi(false)));
    gates.push(gate("max_score_psi", g.max_score_psi, psi(true)));
    let tiers = d.tiers.iter().flat_map(|t| &t.shares).filter_map(|s| {
        Some((
            format!(
                "share of tier {} {} → {}",
                s.name,
                fmt(s.reference),
                fmt(s.current)
            ),
            s.difference?.abs(),
        ))
    });
    gates.push(gate(
        "max_tier_share_change",
        g.max_tier_share_change,
        tiers,
    ));
    let params = d.params.iter().filter_map(|p| {
        Some((
            format!(
                "{} {:.4} → {:.4} ({:+.1} se)",
                p.name, p.reference.value, p.current.value, p.z?
            ),
            p.z?.abs(),
        ))
    });
    gates.push(gate("max_param_shift_se", g.max_param_shift_se, params));
    let auc = d
        .metrics
        .iter()
        .filter(|s| s.name == "roc_auc")
        .filter_map(|s| {
            Some((
                format!(
                    "out-of-time ROC-AUC {} → {}",
                    fmt(s.reference),
                    fmt(s.current)
                ),
                -s.difference?,
            ))
        });
    gates.push(gate("max_auc_drop", g.max_auc_drop, auc));
    gates
}
