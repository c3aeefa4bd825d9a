//! A run's profile (metrics.json `profile`): everything the next run compares itself with, so
//! that no old raw data is ever read — the input's counts, the headline metrics, the fitted
//! parameters with their standard errors, tier shares, and for every model input, the churn
//! probability and the CLV a histogram whose bins are this run's deciles (the next run puts
//! its own values into these same bins to compute the PSI).

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::features::FeatureTable;
use crate::io::read::Reason;
use crate::io::ScanStats;
use crate::models::churn::{raw_row, FEATURES, INTERCEPT};
use crate::stages::score::Summary;
use crate::stages::train::Trained;

/// Bins of a profile histogram: deciles of the reference (ties merged).
const BINS: usize = 10;

/// The share given to an empty bin in the PSI (the usual floor; without it one empty bin makes
/// the index infinite).
const PSI_FLOOR: f64 = 1e-4;

/// Counts of the finite `values` per bin of `edges`, and of the others.
fn bin(edges: &[f64], values: &[f64]) -> (Vec<u64>, u64) {
    let mut counts = vec![0u64; edges.len() + 1];
    let mut missing = 0u64;
    for v in values {
        if v.is_finite() {
            counts[edges.partition_point(|e| e < v)] += 1;
        } else {
            missing += 1;
        }
    }
    (counts, missing)
}

/// A distribution in the reference's bins: `shares[i]` of the finite values fall in bin `i`
/// (`(-∞, edges[0]]`, `(edges[0], edges[1]]`, …, `(edges[last], ∞)`), `missing` is the share
/// of values that are null or not finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub shares: Vec<f64>,
    pub missing: f64,
    pub count: u64,
}

impl Histogram {
    /// Bins cut at the deciles of `values` (nulls are NaN; non-finite values count as
    /// missing). Takes the column to sort it in place: no copy is made.
    pub fn of(mut values: Vec<f64>) -> Histogram {
        let total = values.len() as u64;
        values.retain(|v| v.is_finite());
        values.sort_unstable_by(f64::total_cmp);
        let mut edges: Vec<f64> = Vec::new();
        if !values.is_empty() {
            for i in 1..BINS {
                let e = values[(i * (values.len() - 1)) / BINS];
                if edges.last() != Some(&e) {
                    edges.push(e);
                }
            }
        }
        let (counts, _) = bin(&edges, &values);
        Histogram::from_counts(edges, &counts, total - values.len() as u64)
    }

    /// `values` in the bins of `edges` (a reference's).
    pub fn with_edges(edges: Vec<f64>, values: &[f64]) -> Histogram {
        let (counts, missing) = bin(&edges, values);
        Histogram::from_counts(edges, &counts, missing)
    }

    fn from_counts(edges: Vec<f64>, counts: &[u64], missing: u64) -> Histogram {
        let n = counts.iter().sum::<u64>() + missing;
        let share = |c: u64| if n == 0 { 0.0 } else { c as f64 / n as f64 };
        Histogram {
            shares: counts.iter().map(|&c| share(c)).collect(),
            missing: share(missing),
            count: n,
            edges,
        }
    }

    /// Population stability index of `current` (binned with these edges) against this:
    /// Σ (c − r)·ln(c / r) over the bins and the missing share, each share floored at
    /// [`PSI_FLOOR`]. `None` when either side is empty or the bins differ.
    pub fn psi(&self, current: &Histogram) -> Option<f64> {
        if self.count == 0 || current.count == 0 || self.shares.len() != current.shares.len() {
            return None;
        }
        let term = |r: f64, c: f64| {
            let (r, c) = (r.max(PSI_FLOOR), c.max(PSI_FLOOR));
            (c - r) * (c / r).ln()
        };
        let bins: f64 = self
            .shares
            .iter()
            .zip(&current.shares)
            .map(|(&r, &c)| term(r, c))
            .sum();
        Some(bins + term(self.missing, current.missing))
    }
}

/// A fitted parameter and its standard error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub value: f64,
    pub std_error: Option<f64>,
}

/// What a run leaves for the next one to compare with (metrics.json `profile`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Customers scored (any event before as-of) and buyers among them.
    pub customers: u64,
    pub buyers: u64,
    /// Rows read minus those merely after as-of (the rows the run could have used).
    pub rows_considered: u64,
    pub rows_used: u64,
    /// Rows rejected, by reason (`after_as_of` left out: a backfill is not a bad feed).
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Used rows by canonical event type.
    pub event_types: BTreeMap<String, u64>,
    /// Purchase events per buyer.
    pub purchases_per_buyer: Option<f64>,
    /// Purchase amount per purchase event.
    pub mean_order_value: Option<f64>,
    /// Out-of-time churn metrics; `gini` = 2·AUC − 1; calibration in the large = mean
    /// predicted − observed churn rate.
    pub roc_auc: Option<f64>,
    pub log_loss: Option<f64>,
    pub gini: Option<f64>,
    pub calibration_in_the_large: Option<f64>,
    /// Normalised Gini of the spend model out of time.
    pub value_gini: Option<f64>,
    /// Mean churn probability of the buyers and total CLV of the scored customers.
    pub predicted_churn_rate: Option<f64>,
    pub total_clv: f64,
    /// Tier sizes of the scored customers.
    pub tiers: BTreeMap<String, u64>,
    /// The transaction model used (`bgnbd`, `mbgnbd`, `pnbd`).
    pub transaction_model: String,
    /// Fitted parameters: `churn.<feature>`, `churn.intercept` (standardised units),
    /// `<transaction model>.<name>` and `gamma_gamma.<p|q|gamma>`.
    pub params: BTreeMap<String, Param>,
    /// Every churn-model input (over the buyers), `churn_probability` and `clv`.
    pub distributions: BTreeMap<String, Histogram>,
}

/// What the profile is built from: this run's scan, training and scores.
#[derive(Clone, Copy)]
pub struct RunData<'a> {
    pub stats: &'a ScanStats,
    /// The as-of feature table (every customer scored).
    pub latest: &'a FeatureTable,
    pub trained: &'a Trained,
    /// What the score table sums up (its rows are published by then, or never held).
    pub scored: &'a Summary,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The distributions compared: the 17 model inputs (over the buyers), then the scores.
fn distribution_names() -> impl Iterator<Item = &'static str> {
    FEATURES.iter().copied().chain(["churn_probability", "clv"])
}

/// One distribution's values, built when needed (one column of N floats at a time per
/// thread, never all of them: with millions of customers a copy of every column would cost
/// hundreds of MB). Model inputs are the raw values the churn model reads.
fn column(run: RunData<'_>, name: &str) -> Vec<f64> {
    match crate::models::churn::feature_column(name) {
        Some(j) => run
            .latest
            .rows
            .iter()
            .filter(|f| f.has_purchase())
            .map(|f| raw_row(f)[j])
            .collect(),
        None => match name {
            "churn_probability" => Some(&run.scored.churn_probability),
            "clv" => Some(&run.scored.clv),
            _ => None,
        }
        // As the score table's column reads: nulls as NaN.
        .map(|v| v.iter().map(|x| x.unwrap_or(f64::NAN)).collect())
        .unwrap_or_default(),
    }
}

impl Profile {
    /// This run's profile, with its own bins.
    pub fn of(run: RunData<'_>) -> Profile {
        let mut profile = Profile::counts(run);
        let names: Vec<&str> = distribution_names().collect();
        // Independent columns: one per thread.
        profile.distributions = names
            .par_iter()
            .map(|name| (name.to_string(), Histogram::of(column(run, name))))
            .collect();
        profile
    }

    /// The distributions of this run in the bins of `reference` (a name the reference lacks
    /// is left out).
    pub fn binned_like(run: RunData<'_>, reference: &Profile) -> BTreeMap<String, Histogram> {
        let names: Vec<&str> = distribution_names().collect();
        names
            .par_iter()
            .filter_map(|name| {
                let edges = reference.distributions.get(*name)?.edges.clone();
                Some((
                    name.to_string(),
                    Histogram::with_edges(edges, &column(run, name)),
                ))
            })
            .collect()
    }

    /// Everything but the distributions.
    fn counts(run: RunData<'_>) -> Profile {
        let s = run.stats;
        let after = s
            .rejected_by_reason
            .get(&Reason::AfterAsOf)
            .copied()
            .unwrap_or(0);
        let rejected_by_reason = s
            .rejected_by_reason
            .iter()
            .filter(|(r, _)| **r != Reason::AfterAsOf)
            .map(|(r, n)| (r.as_str().to_string(), *n))
            .collect();
        let event_types = s
            .event_types
            .iter()
            .map(|(k, n)| (k.as_str().to_string(), *n))
            .collect();
        let (buyers, purchases) = run
            .latest
            .rows
            .iter()
            .filter(|f| f.has_purchase())
            .fold((0u64, 0u64), |(b, p), f| (b + 1, p + f.n_purchases));
        let e = &run.trained.evaluation;
        let (p, churned) = (&e.eval_scores.0, &e.eval_scores.2);
        let calibration = (!p.is_empty()).then(|| {
            let n = p.len() as f64;
            p.iter().sum::<f64>() / n - churned.iter().filter(|&&c| c).count() as f64 / n
        });
        let k = &run.scored.kpis;
        let mut params = BTreeMap::new();
        let churn = &run.trained.churn;
        let se = |name: &str| churn.std_errors.as_ref().and_then(|m| m.get(name).copied());
        for (f, c) in churn.features.iter().zip(&churn.coefficients) {
            params.insert(
                format!("churn.{}", f.name),
                Param {
                    value: *c,
                    std_error: se(&f.name),
                },
            );
        }
        params.insert(
            format!("churn.{INTERCEPT}"),
            Param {
                value: churn.intercept,
                std_error: se(INTERCEPT),
            },
        );
        let t = &run.trained.value.transactions;
        let kind = t.kind.key();
        let ses = t.std_errors.map(|p| p.values());
        for (i, (name, value)) in t.params.names().iter().zip(t.params.values()).enumerate() {
            params.insert(
                format!("{kind}.{name}"),
                Param {
                    value,
                    std_error: ses.map(|s| s[i]),
                },
            );
        }
        if let Some(gg) = &run.trained.value.spend {
            let ses = gg.std_errors.map(|s| [s.p, s.q, s.gamma]);
            for (i, (name, value)) in [("p", gg.p), ("q", gg.q), ("gamma", gg.gamma)]
                .into_iter()
                .enumerate()
            {
                params.insert(
                    format!("gamma_gamma.{name}"),
                    Param {
                        value,
                        std_error: ses.map(|s| s[i]),
                    },
                );
            }
        }
        Profile {
            customers: run.latest.len() as u64,
            buyers,
            rows_considered: s.rows_read.saturating_sub(after),
            rows_used: s.rows_used,
            rejected_by_reason,
            event_types,
            purchases_per_buyer: (buyers > 0).then(|| purchases as f64 / buyers as f64),
            mean_order_value: k.average_order_value.and_then(finite),
            roc_auc: finite(e.model.roc_auc),
            log_loss: e.model.log_loss.and_then(finite),
            gini: finite(2.0 * e.model.roc_auc - 1.0),
            calibration_in_the_large: calibration.and_then(finite),
            value_gini: finite(e.value_model.gini),
            predicted_churn_rate: k.predicted_churn_rate.and_then(finite),
            total_clv: k.total_clv,
            tiers: run
                .scored
                .tiers
                .iter()
                .map(|(t, s)| (t.to_string(), s.customers as u64))
                .collect(),
            transaction_model: kind.to_string(),
            params,
            distributions: BTreeMap::new(),
        }
    }

    /// Share of the considered rows rejected for `reason` (`None`: all reasons).
    pub fn reject_share(&self, reason: Option<&str>) -> f64 {
        let n = match reason {
            Some(r) => self.rejected_by_reason.get(r).copied().unwrap_or(0),
            None => self.rejected_by_reason.values().sum(),
        };
        ratio(n, self.rows_considered)
    }

    /// Share of the used rows of an event type.
    pub fn event_type_share(&self, kind: &str) -> f64 {
        ratio(
            self.event_types.get(kind).copied().unwrap_or(0),
            self.rows_used,
        )
    }

    /// Share of the customers in a tier.
    pub fn tier_share(&self, tier: &str) -> f64 {
        ratio(self.tiers.get(tier).copied().unwrap_or(0), self.customers)
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_for_the_same_values_and_grows_with_a_shift() {
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let reference = Histogram::of(values.clone());
        assert_eq!(reference.edges.len(), 9);
        assert_eq!(
            reference.psi(&Histogram::with_edges(reference.edges.clone(), &values)),
            Some(0.0)
        );
        // Everything ×3: 2/3 of the values land in the last bin.
        let tripled: Vec<f64> = values.iter().map(|v| v * 3.0).collect();
        let psi = reference
            .psi(&Histogram::with_edges(reference.edges.clone(), &tripled))
            .unwrap_or(0.0);
        assert!(psi > 1.0, "psi {psi}");
    }

    #[test]
    fn ties_merge_bins_and_missing_values_count() {
        let mut values = vec![0.0; 900];
        values.extend((0..100).map(|i| f64::from(i + 1)));
        values.push(f64::NAN);
        let h = Histogram::of(values);
        // 90% zeros: all nine deciles are 0, one edge; the positives share the last bin.
        assert_eq!(h.edges, vec![0.0]);
        assert_eq!(h.shares.len(), 2);
        assert!((h.shares[1] - 100.0 / 1001.0).abs() < 1e-12);
        assert!((h.shares[0] - 900.0 / 1001.0).abs() < 1e-12);
        assert!((h.missing - 1.0 / 1001.0).abs() < 1e-12);
    }
}
