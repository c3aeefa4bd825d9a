//! What a score table sums up ([`Summary`]): the tier summary and KPIs that metrics.json, the
//! report, the console summary and the drift profile read, and three numbers per customer.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::features::Features;
use crate::segment::TIERS;

/// Size, mean CLV and mean churn probability of one engagement tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStats {
    pub customers: usize,
    pub share: f64,
    pub next_best_action: &'static str,
    pub mean_clv: Option<f64>,
    pub mean_churn_probability: Option<f64>,
}

/// The business KPIs of a group of customers (the whole run, or one tier).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpis {
    pub customers: usize,
    pub customers_by_lifecycle_stage: BTreeMap<&'static str, usize>,
    /// Buyers with at least two purchase days / buyers.
    pub repeat_purchase_rate: Option<f64>,
    /// Purchase amount / purchase events.
    pub average_order_value: Option<f64>,
    /// Abandoned cart adds / cart adds.
    pub cart_abandonment_rate: Option<f64>,
    /// Mean churn probability of the buyers: the expected churn rate of the next H days.
    pub predicted_churn_rate: Option<f64>,
    pub total_clv: f64,
    pub mean_clv: Option<f64>,
}

fn kpis(
    rows: &[Features],
    members: &[usize],
    stages: &[&'static str],
    churn: &[Option<f64>],
    clv: &[Option<f64>],
) -> Kpis {
    let rows = || members.iter().map(|&i| &rows[i]);
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let buyers = rows().filter(|r| r.has_purchase()).count() as f64;
    let purchases: f64 = rows().map(|r| r.n_purchases as f64).sum();
    let spend: f64 = rows()
        .map(|r| r.avg_order_value.unwrap_or(0.0) * r.n_purchases as f64)
        .sum();
    let mut by_stage = BTreeMap::new();
    for &i in members {
        *by_stage.entry(stages[i]).or_insert(0) += 1;
    }
    let probs: Vec<f64> = members.iter().filter_map(|&i| churn[i]).collect();
    let clvs: Vec<f64> = members.iter().filter_map(|&i| clv[i]).collect();
    Kpis {
        customers: members.len(),
        customers_by_lifecycle_stage: by_stage,
        repeat_purchase_rate: ratio(
            rows().filter(|r| r.purchase_days >= 2).count() as f64,
            buyers,
        ),
        average_order_value: ratio(spend, purchases),
        cart_abandonment_rate: ratio(
            rows().map(|r| r.cart_abandonments as f64).sum(),
            rows().map(|r| r.n_add_to_cart as f64).sum(),
        ),
        predicted_churn_rate: ratio(probs.iter().sum(), probs.len() as f64),
        total_clv: clvs.iter().sum(),
        mean_clv: ratio(clvs.iter().sum(), clvs.len() as f64),
    }
}

/// What metrics.json, the report, the console summary and the drift profile read of a score
/// table: its tier summary and KPIs, and three compact numbers per customer (in the feature
/// table's row order). The same whether the table was built whole ([`score_with`]) or by
/// slices ([`summary_by_slices`]): `run` under a memory budget never holds the whole table.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Every tier, in priority order (empty tiers included).
    pub tiers: BTreeMap<&'static str, TierStats>,
    /// KPIs of all scored customers and of each tier.
    pub kpis: Kpis,
    pub kpis_by_tier: BTreeMap<&'static str, Kpis>,
    pub with_probability: usize,
    /// `churn_probability` of each customer (`None`: not a buyer).
    pub churn_probability: Vec<Option<f64>>,
    /// `clv` of each customer (`None`: not a buyer).
    pub clv: Vec<Option<f64>>,
    /// `engagement_tier` of each customer, an index of [`TIERS`].
    pub tier: Vec<u8>,
}

impl Summary {
    /// The engagement tier name of row `i`.
    pub fn tier_name(&self, i: usize) -> &'static str {
        TIERS[usize::from(self.tier[i])].0
    }
}

/// What each scored row came out as: the inputs of a [`Summary`].
pub(super) struct Outcomes {
    pub churn_probability: Vec<Option<f64>>,
    pub clv: Vec<Option<f64>>,
    /// Index into `TIERS`.
    pub tier: Vec<u8>,
    /// Lifecycle stage.
    pub stages: Vec<&'static str>,
    /// Rows with a churn probability.
    pub with_probability: usize,
}

/// The summary of `rows` scored (`outcomes` row for row).
pub(super) fn summarise(rows: &[Features], outcomes: Outcomes) -> Summary {
    let Outcomes {
        churn_probability,
        clv,
        tier,
        stages,
        with_probability,
    } = outcomes;
    let stages = &stages[..];
    let n = rows.len();
    let all: Vec<usize> = (0..n).collect();
    let kpis_all = kpis(rows, &all, stages, &churn_probability, &clv);
    drop(all);
    let mut kpis_by_tier = BTreeMap::new();
    let mut summary: BTreeMap<&'static str, TierStats> = BTreeMap::new();
    for (t, (name, action)) in TIERS.iter().enumerate() {
        let members: Vec<usize> = (0..n).filter(|&i| usize::from(tier[i]) == t).collect();
        kpis_by_tier.insert(
            *name,
            kpis(rows, &members, stages, &churn_probability, &clv),
        );
        let mean = |v: &dyn Fn(usize) -> Option<f64>| {
            let xs: Vec<f64> = members.iter().filter_map(|&i| v(i)).collect();
            (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
        };
        summary.insert(
            name,
            TierStats {
                customers: members.len(),
                share: if n == 0 {
                    0.0
                } else {
                    members.len() as f64 / n as f64
                },
                next_best_action: action,
                mean_clv: mean(&|i| clv[i]),
                mean_churn_probability: mean(&|i| churn_probability[i]),
            },
        );
    }
    Summary {
        tiers: summary,
        kpis: kpis_all,
        kpis_by_tier,
        with_probability,
        churn_probability,
        clv,
        tier,
    }
}
