//! Global cut points for scoring in shards: the score table's rank columns (`r_score`,
//! `f_score`, `m_score`, `clv_decile`), the VIP tier and the buyers' median CLV are ranks over
//! *all* customers (`segment::quintiles`, `segment::deciles`, `segment::assign_tiers`). A
//! bucket scored alone would rank within the bucket; with the [`Cuts`] of the whole table —
//! a few boundary keys per column, computed once from every bucket's rank keys — each bucket
//! gets exactly the bins and tiers the whole table would give.
//!
//! Ties: the single-node path sorts by value (`f64::total_cmp`) and breaks ties by row
//! position, and the feature table's rows are in `customer_id` order (byte order), so a
//! customer's place is the pair (value, customer_id) — unique. A boundary is such a pair, and
//! a customer's bin is 1 + the number of boundaries at or below its pair: customers equal in
//! value on both sides of a cut point fall as their ids order them, identically on both
//! paths.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// One customer's place in a ranking: value first (`f64::total_cmp`), then id (byte order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub value: f64,
    pub customer_id: String,
}

/// Orders (value, id) pairs as the single-node ranking does.
pub fn cmp_key(a: (f64, &str), b: (f64, &str)) -> Ordering {
    a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1))
}

impl Key {
    fn of(k: (f64, &str)) -> Key {
        Key {
            value: k.0,
            customer_id: k.1.to_string(),
        }
    }

    fn pair(&self) -> (f64, &str) {
        (self.value, &self.customer_id)
    }
}

/// The equal-count bins of one column over the whole table: `bins` bins of the `present`
/// customers with a value; `boundaries[j]` is the key at rank ⌈(j+1)·n/bins⌉ (ascending),
/// the first key of a higher bin (boundaries at ranks past the last customer are left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankCuts {
    pub bins: usize,
    pub present: u64,
    pub boundaries: Vec<Key>,
}

impl RankCuts {
    /// The cuts of `sorted` (ascending by [`cmp_key`], every customer with a value once).
    pub fn of_sorted(sorted: &[(f64, &str)], bins: usize) -> RankCuts {
        let n = sorted.len();
        // rank_bins gives rank r the bin ⌊r·bins/n⌋ + 1: bin k+1 starts at rank ⌈k·n/bins⌉.
        let boundaries = (1..bins)
            .map(|k| (k * n).div_ceil(bins))
            .filter(|&r| r < n)
            .map(|r| Key::of(sorted[r]))
            .collect();
        RankCuts {
            bins,
            present: n as u64,
            boundaries,
        }
    }

    /// The bin (1..=bins) of a customer with a value; `None` without one.
    pub fn bin(&self, value: Option<f64>, customer_id: &str) -> Option<u8> {
        let v = value?;
        let below = self
            .boundaries
            .partition_point(|b| cmp_key(b.pair(), (v, customer_id)) != Ordering::Greater);
        Some(below as u8 + 1)
    }

    /// Bins of a bucket's customers.
    pub fn bins_of(&self, values: &[Option<f64>], ids: &[Box<str>]) -> Vec<Option<u8>> {
        values
            .iter()
            .zip(ids)
            .map(|(v, id)| self.bin(*v, id))
            .collect()
    }
}

/// The cut points of a whole as-of table (`cuts.json`): what pass 2 applies to each bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cuts {
    /// Customers in the table (every bucket's rows).
    pub customers: u64,
    /// `r_score`: quintiles of −recency_days.
    pub recency: RankCuts,
    /// `f_score`: quintiles of purchase days (buyers).
    pub frequency: RankCuts,
    /// `m_score`: quintiles of monetary_total (buyers).
    pub monetary: RankCuts,
    /// `clv_decile`: deciles of CLV (buyers).
    pub clv: RankCuts,
    /// `[tiers] vip_top_share` the VIP cut was made with (pass 2 must use the same).
    pub vip_top_share: f64,
    /// The last VIP by (CLV descending, customer_id ascending): a buyer is a VIP when its
    /// CLV is above this one's, or equal with an id at or before it. `None`: no VIP.
    pub vip_last: Option<Key>,
    /// The buyers' median CLV (the value at rank ⌊n/2⌋ ascending; 0 without buyers).
    pub clv_median: f64,
}

/// One customer's rank keys (`None`: not ranked in that column).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankKeys {
    pub recency: Option<f64>,
    pub frequency: Option<f64>,
    pub monetary: Option<f64>,
    pub clv: Option<f64>,
}

impl Cuts {
    /// The cuts of every customer's keys (each customer once; any order).
    pub fn of(keys: &[(Box<str>, RankKeys)], vip_top_share: f64) -> Cuts {
        Cuts::of_each(
            keys.len(),
            |i| keys[i].0.as_ref(),
            |i| keys[i].1,
            vip_top_share,
        )
    }

    /// The cuts of `n` customers, the `i`th with id `id(i)` and keys `key(i)` (each customer
    /// once; any order): the keys are read a column at a time, never held all at once.
    pub fn of_each<'a>(
        n: usize,
        id: impl Fn(usize) -> &'a str,
        key: impl Fn(usize) -> RankKeys,
        vip_top_share: f64,
    ) -> Cuts {
        let column = |f: &dyn Fn(&RankKeys) -> Option<f64>| {
            let mut v: Vec<(f64, &str)> = (0..n)
                .filter_map(|i| f(&key(i)).map(|x| (x, id(i))))
                .collect();
            v.sort_unstable_by(|a, b| cmp_key(*a, *b));
            v
        };
        let clv = column(&|k| k.clv);
        // As assign_tiers: round(share × buyers) VIPs, the highest CLV first, ties by id.
        let n_vip = ((vip_top_share * clv.len() as f64).round() as usize).min(clv.len());
        let vip_last = n_vip
            .checked_sub(1)
            .map(|r| Key::of(clv[descending(&clv)[r]]));
        let clv_median = clv.get(clv.len() / 2).map_or(0.0, |k| k.0);
        Cuts {
            customers: n as u64,
            recency: RankCuts::of_sorted(&column(&|k| k.recency), 5),
            frequency: RankCuts::of_sorted(&column(&|k| k.frequency), 5),
            monetary: RankCuts::of_sorted(&column(&|k| k.monetary), 5),
            clv: RankCuts::of_sorted(&clv, 10),
            vip_top_share,
            vip_last,
            clv_median,
        }
    }

    /// Whether a buyer with this CLV is a VIP.
    pub fn is_vip(&self, clv: Option<f64>, customer_id: &str) -> bool {
        match (clv, &self.vip_last) {
            (Some(v), Some(last)) => match v.total_cmp(&last.value) {
                Ordering::Greater => true,
                Ordering::Equal => customer_id <= last.customer_id.as_str(),
                Ordering::Less => false,
            },
            _ => false,
        }
    }
}

/// Indices of `ascending` (sorted by [`cmp_key`]) in (value descending, id ascending) order.
fn descending(ascending: &[(f64, &str)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ascending.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        ascending[b]
            .0
            .total_cmp(&ascending[a].0)
            .then_with(|| ascending[a].1.cmp(ascending[b].1))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{deciles, quintiles};

    /// Values with many ties (including ±0 and negative values) in id order.
    fn table(n: usize, seed: u64) -> (Vec<Box<str>>, Vec<Option<f64>>) {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 33
        };
        let ids: Vec<Box<str>> = (0..n).map(|i| format!("c{i:05}").into()).collect();
        let values = (0..n)
            .map(|_| match next() % 7 {
                0 => None,
                1 => Some(0.0),
                2 => Some(-0.0),
                3 => Some(-((next() % 3) as f64)),
                _ => Some((next() % 5) as f64 * 1.5),
            })
            .collect();
        (ids, values)
    }

    fn keys(ids: &[Box<str>], v: &[Option<f64>]) -> Vec<(Box<str>, RankKeys)> {
        ids.iter()
            .zip(v)
            .map(|(id, &x)| {
                let k = RankKeys {
                    recency: x,
                    frequency: x,
                    monetary: x,
                    clv: x,
                };
                (id.clone(), k)
            })
            .collect()
    }

    #[test]
    fn cut_bins_equal_the_whole_table_ranks_ties_included() {
        for (n, seed) in [(0, 1), (1, 2), (2, 3), (7, 4), (10, 5), (23, 6), (500, 7)] {
            let (ids, v) = table(n, seed);
            let cuts = Cuts::of(&keys(&ids, &v), 0.05);
            assert_eq!(cuts.recency.bins_of(&v, &ids), quintiles(&v), "n {n}");
            assert_eq!(cuts.clv.bins_of(&v, &ids), deciles(&v), "n {n}");
            // Any split of the customers into buckets gives the same bins.
            let odd: Vec<usize> = (0..n).filter(|i| i % 3 == 1).collect();
            let sub_ids: Vec<Box<str>> = odd.iter().map(|&i| ids[i].clone()).collect();
            let sub_v: Vec<Option<f64>> = odd.iter().map(|&i| v[i]).collect();
            let whole = deciles(&v);
            let want: Vec<Option<u8>> = odd.iter().map(|&i| whole[i]).collect();
            assert_eq!(cuts.clv.bins_of(&sub_v, &sub_ids), want, "n {n}");
        }
    }

    #[test]
    fn vips_and_median_equal_assign_tiers_ties_included() {
        use crate::segment::{assign_tiers, TierConfig, TierInput};
        for (n, seed, share) in [(1, 1, 0.5), (40, 2, 0.1), (500, 3, 0.05), (500, 4, 0.3)] {
            let (ids, v) = table(n, seed);
            let cfg = TierConfig {
                vip_top_share: share,
                ..TierConfig::default()
            };
            let rows: Vec<TierInput> = v
                .iter()
                .map(|&clv| TierInput {
                    purchase_days: 2,
                    recency_days: Some(1.0),
                    tenure_days: 100.0,
                    days_since_cart_abandonment: None,
                    churn_probability: Some(0.1),
                    clv,
                })
                .collect();
            let cuts = Cuts::of(&keys(&ids, &v), share);
            let want: Vec<bool> = assign_tiers(&rows, 90.0, &cfg)
                .iter()
                .map(|&t| t == 0)
                .collect();
            let got: Vec<bool> = ids
                .iter()
                .zip(&v)
                .map(|(i, c)| cuts.is_vip(*c, i))
                .collect();
            assert_eq!(got, want, "n {n}, share {share}");
            let mut clvs: Vec<f64> = v.iter().flatten().copied().collect();
            clvs.sort_by(f64::total_cmp);
            assert_eq!(cuts.clv_median.to_bits(), clvs[clvs.len() / 2].to_bits());
        }
    }

    #[test]
    fn the_vip_cut_splits_ties_by_id() {
        let ids: Vec<Box<str>> = ["a", "b", "c", "d", "e"].map(Box::from).to_vec();
        let v = [Some(1.0), Some(5.0), Some(5.0), Some(5.0), None];
        // 4 buyers × 0.5 = 2 VIPs: the two first ids of the three tied at the top.
        let cuts = Cuts::of(&keys(&ids, &v), 0.5);
        let vip: Vec<bool> = ids.iter().zip(v).map(|(i, c)| cuts.is_vip(c, i)).collect();
        assert_eq!(vip, [false, true, true, false, false]);
        assert_eq!(cuts.clv_median, 5.0);
        assert_eq!(Cuts::of(&keys(&ids, &v), 0.0).vip_last, None);
    }
}
