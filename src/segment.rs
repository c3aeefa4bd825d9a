//! Segments and engagement tiers (the columns and tier rules are in docs/schema.md): r/f/m quintile scores, the named RFM segment,
//! lifecycle stage, churn-risk band, CLV decile, churn reasons, and exactly one engagement tier
//! with its next best action per customer. Pure functions over the scored rows; thresholds
//! come from config `[tiers]`.

use serde::{Deserialize, Serialize};

/// `[tiers]`: thresholds of the bands and tiers (documented in docs/config.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierConfig {
    /// Share of buyers with the highest CLV who are VIPs.
    pub vip_top_share: f64,
    /// churn_probability at or above this is `medium` risk …
    pub churn_risk_medium: f64,
    /// … and at or above this `high`.
    pub churn_risk_high: f64,
    /// A cart abandoned within this many days (and no purchase since) → cart recovery.
    pub cart_window_days: f64,
    /// Customers whose first event is at most this many days old are new (nurture).
    pub new_customer_days: f64,
    /// Purchase days from which a repeat buyer is `loyal`.
    pub loyal_min_purchase_days: u64,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            vip_top_share: 0.05,
            churn_risk_medium: 0.3,
            churn_risk_high: 0.6,
            cart_window_days: 7.0,
            new_customer_days: 30.0,
            loyal_min_purchase_days: 4,
        }
    }
}

impl TierConfig {
    /// Checks the ranges; the error names the key.
    /// Returns the first offending key, what it must be, and its value.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str, f64)> {
        let checks = [
            (
                "tiers.vip_top_share",
                "between 0 and 1",
                self.vip_top_share,
                (0.0..=1.0).contains(&self.vip_top_share),
            ),
            (
                "tiers.churn_risk_medium",
                "between 0 and 1",
                self.churn_risk_medium,
                (0.0..=1.0).contains(&self.churn_risk_medium),
            ),
            (
                "tiers.churn_risk_high",
                "between tiers.churn_risk_medium and 1",
                self.churn_risk_high,
                (self.churn_risk_medium..=1.0).contains(&self.churn_risk_high),
            ),
            (
                "tiers.cart_window_days",
                "a finite number >= 0",
                self.cart_window_days,
                self.cart_window_days.is_finite() && self.cart_window_days >= 0.0,
            ),
            (
                "tiers.new_customer_days",
                "a finite number >= 0",
                self.new_customer_days,
                self.new_customer_days.is_finite() && self.new_customer_days >= 0.0,
            ),
        ];
        match checks.into_iter().find(|c| !c.3) {
            Some((key, expected, value, _)) => Err((key, expected, value)),
            None => Ok(()),
        }
    }
}

/// 1–5 quintile scores by rank (5 = highest value), ties broken by position so the result is
/// deterministic. `None` values get no score.
pub fn quintiles(values: &[Option<f64>]) -> Vec<Option<u8>> {
    rank_bins(values, 5)
}

/// Deciles 1–10 by rank (10 = highest), ties broken by position.
pub fn deciles(values: &[Option<f64>]) -> Vec<Option<u8>> {
    rank_bins(values, 10)
}

/// Equal-count bins 1..=`bins` by rank of the present values.
fn rank_bins(values: &[Option<f64>], bins: usize) -> Vec<Option<u8>> {
    let mut idx: Vec<usize> = (0..values.len()).filter(|&i| values[i].is_some()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (values[a].unwrap_or(0.0), values[b].unwrap_or(0.0));
        x.total_cmp(&y).then(a.cmp(&b))
    });
    let n = idx.len().max(1);
    let mut out = vec![None; values.len()];
    for (rank, &i) in idx.iter().enumerate() {
        out[i] = Some((rank * bins / n) as u8 + 1);
    }
    out
}

/// The named RFM segment from the recency and frequency scores (the widely used R×F grid;
/// monetary refines tiers, not segments):
///
/// | R \ F | 1 | 2 | 3 | 4 | 5 |
/// |---|---|---|---|---|---|
/// | 5 | new_customer | potential_loyalist | potential_loyalist | champions | champions |
/// | 4 | promising | potential_loyalist | potential_loyalist | loyal | loyal |
/// | 3 | about_to_sleep | about_to_sleep | need_attention | loyal | loyal |
/// | 2 | hibernating | hibernating | at_risk | at_risk | cannot_lose_them |
/// | 1 | lost | hibernating | at_risk | at_risk | cannot_lose_them |
pub fn rfm_segment(r: u8, f: u8) -> &'static str {
    match (r, f) {
        (5, 4..=5) => "champions",
        (5, 1) => "new_customer",
        (4, 1) => "promising",
        (4..=5, 2..=3) => "potential_loyalist",
        (3..=4, 4..=5) => "loyal",
        (3, 3) => "need_attention",
        (3, _) => "about_to_sleep",
        (1, 1) => "lost",
        (1..=2, 1..=2) => "hibernating",
        (1..=2, 5) => "cannot_lose_them",
        _ => "at_risk",
    }
}

/// What the tiering needs to know about one customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierInput {
    pub purchase_days: u64,
    pub recency_days: Option<f64>,
    pub tenure_days: f64,
    pub days_since_cart_abandonment: Option<f64>,
    pub churn_probability: Option<f64>,
    pub clv: Option<f64>,
}

/// prospect (never bought), lapsed (no purchase within the horizon), first_time_buyer,
/// loyal (≥ `loyal_min_purchase_days` purchase days), repeat.
pub fn lifecycle_stage(c: &TierInput, horizon_days: f64, cfg: &TierConfig) -> &'static str {
    match c.recency_days {
        None => "prospect",
        Some(r) if r > horizon_days => "lapsed",
        Some(_) if c.purchase_days <= 1 => "first_time_buyer",
        Some(_) if c.purchase_days >= cfg.loyal_min_purchase_days => "loyal",
        Some(_) => "repeat",
    }
}

/// low / medium / high from the churn probability; `None` without one.
pub fn churn_risk(p: Option<f64>, cfg: &TierConfig) -> Option<&'static str> {
    p.map(|p| {
        if p >= cfg.churn_risk_high {
            "high"
        } else if p >= cfg.churn_risk_medium {
            "medium"
        } else {
            "low"
        }
    })
}

/// The engagement tiers, in priority order, with their next best action.
pub const TIERS: [(&str, &str); 7] = [
    ("vip", "early_access"),
    ("proactive_retention", "personal_outreach"),
    ("cart_recovery", "cart_sms"),
    ("nurture", "onboarding_series"),
    ("win_back", "winback_offer"),
    ("loyalty", "loyalty_programme"),
    ("standard", "transactional"),
];

/// Exactly one tier per customer (index into [`TIERS`]), by priority:
/// 1 `vip` — among the top `vip_top_share` of buyers by CLV;
/// 2 `proactive_retention` — high churn risk and CLV above the buyers' median;
/// 3 `cart_recovery` — a cart abandoned within `cart_window_days` and no purchase since;
/// 4 `nurture` — first-time buyers, and prospects first seen within `new_customer_days`;
/// 5 `win_back` — high churn risk (at or below median CLV) or lapsed;
/// 6 `loyalty` — repeat or loyal buyers at low churn risk;
/// 7 `standard` — everyone else.
pub fn assign_tiers(rows: &[TierInput], horizon_days: f64, cfg: &TierConfig) -> Vec<usize> {
    let mut clvs: Vec<(f64, usize)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.clv.map(|c| (c, i)))
        .collect();
    clvs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let n_vip = (cfg.vip_top_share * clvs.len() as f64).round() as usize;
    let mut vip = vec![false; rows.len()];
    for &(_, i) in &clvs[..n_vip.min(clvs.len())] {
        vip[i] = true;
    }
    let median = if clvs.is_empty() {
        0.0
    } else {
        let mut v: Vec<f64> = clvs.iter().map(|c| c.0).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    assign_tiers_given(rows, &vip, median, horizon_days, cfg)
}

/// [`assign_tiers`] with the VIPs and the buyers' median CLV given (scoring in shards: from
/// the whole table's `cuts::Cuts`).
pub fn assign_tiers_given(
    rows: &[TierInput],
    vip: &[bool],
    median: f64,
    horizon_days: f64,
    cfg: &TierConfig,
) -> Vec<usize> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let risk = churn_risk(r.churn_probability, cfg);
            let stage = lifecycle_stage(r, horizon_days, cfg);
            let clv = r.clv.unwrap_or(0.0);
            let cart = r.days_since_cart_abandonment.is_some_and(|d| {
                d <= cfg.cart_window_days && r.recency_days.is_none_or(|rec| rec > d)
            });
            if vip[i] {
                0
            } else if risk == Some("high") && clv > median {
                1
            } else if cart {
                2
            } else if stage == "first_time_buyer"
                || (stage == "prospect" && r.tenure_days <= cfg.new_customer_days)
            {
                3
            } else if risk == Some("high") || stage == "lapsed" {
                4
            } else if matches!(stage, "repeat" | "loyal") && risk == Some("low") {
                5
            } else {
                6
            }
        })
        .collect()
}

/// The up-to-three features that push this customer's churn score up the most
/// (coefficient × standardised value > 0), largest first.
pub fn churn_reasons<'a>(names: &'a [String], contributions: &[f64]) -> [Option<&'a str>; 3] {
    let mut idx: Vec<usize> = (0..contributions.len())
        .filter(|&j| contributions[j] > 0.0)
        .collect();
    idx.sort_by(|&a, &b| {
        contributions[b]
            .total_cmp(&contributions[a])
            .then(a.cmp(&b))
    });
    let mut out: [Option<&'a str>; 3] = [None, None, None];
    for (slot, &j) in out.iter_mut().zip(&idx) {
        *slot = names.get(j).map(String::as_str);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_and_deciles_by_rank() {
        let v: Vec<Option<f64>> = (0..10).map(|i| Some(f64::from(i))).chain([None]).collect();
        let q = quintiles(&v);
        assert_eq!(
            q[..10].iter().map(|s| s.unwrap_or(0)).collect::<Vec<_>>(),
            [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        );
        assert_eq!(q[10], None);
        // Ties are broken by position: deterministic.
        let ties = quintiles(&[Some(1.0); 5]);
        assert_eq!(ties, vec![Some(1), Some(2), Some(3), Some(4), Some(5)]);
        let d = deciles(&v);
        assert_eq!((d[0], d[9]), (Some(1), Some(10)));
    }

    #[test]
    fn segment_grid() {
        assert_eq!(rfm_segment(5, 5), "champions");
        assert_eq!(rfm_segment(5, 1), "new_customer");
        assert_eq!(rfm_segment(4, 1), "promising");
        assert_eq!(rfm_segment(4, 3), "potential_loyalist");
        assert_eq!(rfm_segment(3, 4), "loyal");
        assert_eq!(rfm_segment(3, 3), "need_attention");
        assert_eq!(rfm_segment(3, 2), "about_to_sleep");
        assert_eq!(rfm_segment(2, 4), "at_risk");
        assert_eq!(rfm_segment(1, 5), "cannot_lose_them");
        assert_eq!(rfm_segment(2, 1), "hibernating");
        assert_eq!(rfm_segment(1, 1), "lost");
    }

    fn buyer(p: f64, clv: f64) -> TierInput {
        TierInput {
            purchase_days: 3,
            recency_days: Some(10.0),
            tenure_days: 300.0,
            days_since_cart_abandonment: None,
            churn_probability: Some(p),
            clv: Some(clv),
        }
    }

    #[test]
    fn tiers_by_priority() {
        let cfg = TierConfig {
            vip_top_share: 0.1,
            ..TierConfig::default()
        };
        let mut rows: Vec<TierInput> = (0..10).map(|i| buyer(0.1, f64::from(i))).collect();
        rows[9].churn_probability = Some(0.9); // top CLV: VIP wins over retention
        rows[8].churn_probability = Some(0.9); // high risk, CLV above median
        rows[1].churn_probability = Some(0.9); // high risk, low value
        rows[7].days_since_cart_abandonment = Some(2.0); // bought 10 days ago, abandoned 2 days ago
        rows[6].purchase_days = 1; // first-time buyer
        rows[5].recency_days = Some(200.0); // lapsed
        rows[4].churn_probability = Some(0.4); // medium risk repeat buyer
        rows.push(TierInput {
            purchase_days: 0,
            recency_days: None,
            tenure_days: 3.0,
            days_since_cart_abandonment: None,
            churn_probability: None,
            clv: None,
        });
        rows.push(TierInput {
            purchase_days: 0,
            recency_days: None,
            tenure_days: 90.0,
            days_since_cart_abandonment: Some(1.0),
            churn_probability: None,
            clv: None,
        });
        let tiers: Vec<&str> = assign_tiers(&rows, 90.0, &cfg)
            .into_iter()
            .map(|t| TIERS[t].0)
            .collect();
        assert_eq!(
            tiers,
            [
                "loyalty",
                "win_back",
                "loyalty",
                "loyalty",
                "standard",
                "win_back",
                "nurture",
                "cart_recovery",
                "proactive_retention",
                "vip",
                "nurture",
                "cart_recovery"
            ]
        );
        assert_eq!(lifecycle_stage(&rows[5], 90.0, &cfg), "lapsed");
        assert_eq!(churn_risk(Some(0.3), &cfg), Some("medium"));
    }

    #[test]
    fn reasons_are_the_largest_positive_contributions() {
        let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            churn_reasons(&names, &[0.5, -1.0, 2.0, 0.1]),
            [Some("c"), Some("a"), Some("d")]
        );
        assert_eq!(
            churn_reasons(&names, &[-0.5, 0.0, 0.3, -0.1]),
            [Some("c"), None, None]
        );
    }
}
