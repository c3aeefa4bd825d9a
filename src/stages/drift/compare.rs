//! The comparison of this run's profile with the reference's (gates not yet applied): input
//! shifts, PSI, parameter shifts, out-of-time metrics, the tier transitions and the baseline
//! window's figures.

use std::collections::{BTreeMap, HashMap};

use super::{
    BaselineFigure, Drift, Histogram, ParamShift, Profile, RunData, Shift, Shift2, Status, Tiers,
    NO_TIER,
};

/// `customer_id → engagement_tier` of this run's scores.
pub(super) fn current_tiers(run: RunData<'_>) -> Vec<(String, String)> {
    run.latest
        .customer_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.to_string(), run.scored.tier_name(i).to_owned()))
        .collect()
}

/// The comparison, gates not yet applied.
pub(super) fn compare(
    r: &Profile,
    c: &Profile,
    bins: &BTreeMap<String, Histogram>,
    previous: std::result::Result<HashMap<String, String>, String>,
    current: Vec<(String, String)>,
) -> Drift {
    let mut d = Drift::empty(Status::Passed, None, Vec::new());
    let u = |v: u64| Some(v as f64);
    d.inputs
        .push(Shift::new("customers", u(r.customers), u(c.customers)));
    d.inputs
        .push(Shift::new("buyers", u(r.buyers), u(c.buyers)));
    d.inputs.push(Shift::new(
        "rows_considered",
        u(r.rows_considered),
        u(c.rows_considered),
    ));
    d.inputs
        .push(Shift::new("rows_used", u(r.rows_used), u(c.rows_used)));
    d.inputs.push(Shift::new(
        "reject_share",
        Some(r.reject_share(None)),
        Some(c.reject_share(None)),
    ));
    for reason in union(&r.rejected_by_reason, &c.rejected_by_reason) {
        d.inputs.push(Shift::new(
            format!("reject_share.{reason}"),
            Some(r.reject_share(Some(&reason))),
            Some(c.reject_share(Some(&reason))),
        ));
    }
    for kind in union(&r.event_types, &c.event_types) {
        d.inputs.push(Shift::new(
            format!("event_type_share.{kind}"),
            Some(r.event_type_share(&kind)),
            Some(c.event_type_share(&kind)),
        ));
    }
    d.inputs.push(Shift::new(
        "purchases_per_buyer",
        r.purchases_per_buyer,
        c.purchases_per_buyer,
    ));
    d.inputs.push(Shift::new(
        "mean_order_value",
        r.mean_order_value,
        c.mean_order_value,
    ));
    for (name, h) in &r.distributions {
        d.psi
            .insert(name.clone(), bins.get(name).and_then(|b| h.psi(b)));
    }
    d.transaction_model = Some(Shift2 {
        reference: r.transaction_model.clone(),
        current: c.transaction_model.clone(),
        changed: r.transaction_model != c.transaction_model,
    });
    for (name, rp) in &r.params {
        let Some(cp) = c.params.get(name) else {
            continue;
        };
        let z = match (rp.std_error, cp.std_error) {
            (Some(a), Some(b)) if (a * a + b * b) > 0.0 => {
                Some((cp.value - rp.value) / (a * a + b * b).sqrt()).filter(|z| z.is_finite())
            }
            _ => None,
        };
        d.params.push(ParamShift {
            name: name.clone(),
            reference: *rp,
            current: *cp,
            z,
        });
    }
    for (name, a, b) in [
        ("roc_auc", r.roc_auc, c.roc_auc),
        ("log_loss", r.log_loss, c.log_loss),
        ("gini", r.gini, c.gini),
        (
            "calibration_in_the_large",
            r.calibration_in_the_large,
            c.calibration_in_the_large,
        ),
        ("value_gini", r.value_gini, c.value_gini),
        (
            "predicted_churn_rate",
            r.predicted_churn_rate,
            c.predicted_churn_rate,
        ),
        ("total_clv", Some(r.total_clv), Some(c.total_clv)),
    ] {
        d.metrics.push(Shift::new(name, a, b));
    }
    d.tiers = Some(tiers(r, c, previous, current));
    d
}

fn union(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> Vec<String> {
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

fn tiers(
    r: &Profile,
    c: &Profile,
    previous: std::result::Result<HashMap<String, String>, String>,
    current: Vec<(String, String)>,
) -> Tiers {
    let names: Vec<String> = r
        .tiers
        .keys()
        .chain(c.tiers.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let shares = names
        .iter()
        .map(|t| Shift::new(t.clone(), Some(r.tier_share(t)), Some(c.tier_share(t))))
        .collect();
    let mut out = Tiers {
        shares,
        transitions: None,
        transitions_note: None,
        customers_both: 0,
        customers_new: 0,
        customers_gone: 0,
        customers_same_tier: 0,
    };
    let mut previous = match previous {
        Ok(p) => p,
        Err(e) => {
            out.transitions_note = Some(format!("reference score table not read: {e}"));
            return out;
        }
    };
    let mut m: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (id, tier) in current {
        let from = match previous.remove(&id) {
            Some(p) => {
                out.customers_both += 1;
                if p == tier {
                    out.customers_same_tier += 1;
                }
                p
            }
            None => {
                out.customers_new += 1;
                NO_TIER.to_string()
            }
        };
        *m.entry(from).or_default().entry(tier).or_insert(0) += 1;
    }
    for (_, tier) in previous {
        out.customers_gone += 1;
        *m.entry(tier)
            .or_default()
            .entry(NO_TIER.to_string())
            .or_insert(0) += 1;
    }
    out.transitions = Some(m);
    out
}

pub(super) fn baseline_figures(window: &[&Profile], c: &Profile) -> Vec<BaselineFigure> {
    let figure = |name: String, of: &dyn Fn(&Profile) -> Option<f64>| {
        let values: Vec<f64> = window.iter().filter_map(|p| of(p)).collect();
        let n = values.len() as f64;
        BaselineFigure {
            name,
            current: of(c),
            mean: (!values.is_empty()).then(|| values.iter().sum::<f64>() / n),
            min: values.iter().copied().reduce(f64::min),
            max: values.iter().copied().reduce(f64::max),
        }
    };
    let mut out = vec![
        figure("customers".into(), &|p| Some(p.customers as f64)),
        figure("roc_auc".into(), &|p| p.roc_auc),
        figure("log_loss".into(), &|p| p.log_loss),
        figure("predicted_churn_rate".into(), &|p| p.predicted_churn_rate),
        figure("total_clv".into(), &|p| Some(p.total_clv)),
        figure("mean_order_value".into(), &|p| p.mean_order_value),
        figure("purchases_per_buyer".into(), &|p| p.purchases_per_buyer),
        figure("reject_share".into(), &|p| Some(p.reject_share(None))),
    ];
    for tier in c.tiers.keys() {
        out.push(figure(format!("tier_share.{tier}"), &|p| {
            Some(p.tier_share(tier))
        }));
    }
    out
}
