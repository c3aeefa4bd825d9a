//! Time windows and labels (SPEC §3).
//!
//! With scoring date `as_of` and horizon `H`: training cutoff `t1 = as_of − H` with labels in
//! `[t1, as_of)`, and the out-of-time validation pair `t0 = as_of − 2H` with labels in
//! `[t0, t1)`. A customer churned in a window if they made no purchase in it.

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::events::EventKind;
use crate::features::{CustomerHistory, FeatureSet, Histories};
use crate::time::date_us;

/// The cutoffs of a run, as dates (midnight UTC). `tv = as_of − 3H` is the extra earlier
/// cutoff used to choose the churn model's L2 strength by time-ordered validation (fit at `tv`,
/// validate on `[t0, t1)`), so the out-of-time evaluation at `t1` stays untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cutoffs {
    pub tv: NaiveDate,
    pub t0: NaiveDate,
    pub t1: NaiveDate,
    pub as_of: NaiveDate,
    pub horizon_days: u32,
}

impl Cutoffs {
    pub fn new(as_of: NaiveDate, horizon_days: u32) -> Cutoffs {
        let h = Duration::days(i64::from(horizon_days));
        Cutoffs {
            tv: as_of - h - h - h,
            t0: as_of - h - h,
            t1: as_of - h,
            as_of,
            horizon_days,
        }
    }

    /// `[tv, t0, t1, as_of]` in µs: the segment boundaries of the feature accumulators.
    pub fn as_us(&self) -> [i64; 4] {
        [
            date_us(self.tv),
            date_us(self.t0),
            date_us(self.t1),
            date_us(self.as_of),
        ]
    }
}

/// Index of each cutoff in [`Cutoffs::as_us`].
pub const TV: usize = 0;
pub const T0: usize = 1;
pub const T1: usize = 2;
pub const AS_OF: usize = 3;

/// Labels for the customers of a feature set, from the window that follows its cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// No purchase in the window.
    pub churned: Vec<bool>,
    /// Net spend (purchases − refunds) in the window.
    pub spend: Vec<f64>,
    /// Distinct UTC days with a purchase in the window (what BTYD models predict).
    pub purchase_days: Vec<u64>,
}

/// Labels of `set` (built at cutoff `k`) from window `k + 1` of `histories`.
pub fn labels(histories: &Histories, set: &FeatureSet, k: usize) -> Labels {
    window_labels(histories, set, k, k + 1)
}

/// One customer's label in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Label {
    pub churned: bool,
    pub spend: f64,
    pub purchase_days: u64,
}

/// The label of customer history `h` in the window `[c_from, c_until)` of the scan's `cutoffs`
/// (an index past the last cutoff stands for "no end", where no event is kept).
pub fn window_label(cutoffs: &[i64], h: &CustomerHistory<'_>, from: usize, until: usize) -> Label {
    let (from_us, until_us) = (
        cutoffs[from],
        cutoffs.get(until).copied().unwrap_or(i64::MAX),
    );
    let w = h.between(from, until);
    Label {
        churned: w.count(EventKind::Purchase) == 0,
        spend: w.net_spend(),
        purchase_days: h.purchase_days_between(from_us, until_us),
    }
}

/// Labels of `set` from the window `[c_from, c_until)` of `histories` ([`window_label`]).
pub fn window_labels(histories: &Histories, set: &FeatureSet, from: usize, until: usize) -> Labels {
    let mut churned = Vec::with_capacity(set.rows.len());
    let mut spend = Vec::with_capacity(set.rows.len());
    let mut purchase_days = Vec::with_capacity(set.rows.len());
    for &i in &set.index {
        let l = window_label(&histories.cutoffs, &histories.customer(i), from, until);
        churned.push(l.churned);
        spend.push(l.spend);
        purchase_days.push(l.purchase_days);
    }
    Labels {
        churned,
        spend,
        purchase_days,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Event;
    use crate::events::EventKind;
    use crate::features::histories_from_events;
    use crate::time::DAY_US;

    #[test]
    fn cutoffs_are_horizon_apart() {
        let d = NaiveDate::from_ymd_opt(1998, 7, 1).unwrap_or_default();
        let c = Cutoffs::new(d, 273);
        assert_eq!(
            c.t1,
            NaiveDate::from_ymd_opt(1997, 10, 1).unwrap_or_default()
        );
        assert_eq!(
            c.t0,
            NaiveDate::from_ymd_opt(1997, 1, 1).unwrap_or_default()
        );
    }

    #[test]
    fn churn_label_is_no_purchase_in_window() {
        let cutoffs = [10 * DAY_US, 20 * DAY_US, 30 * DAY_US];
        let e = |id, day: i64, kind, amount| Event {
            customer_id: id,
            time_us: day * DAY_US,
            kind,
            amount,
            channel: None,
            category: None,
        };
        let events = [
            e("a", 1, EventKind::Purchase, Some(5.0)),
            e("a", 12, EventKind::Purchase, Some(8.0)),
            e("a", 13, EventKind::Refund, Some(3.0)),
            e("b", 2, EventKind::Purchase, Some(5.0)),
            e("b", 15, EventKind::PageView, None),
            e("b", 25, EventKind::Purchase, Some(1.0)),
        ];
        let h = histories_from_events(&cutoffs, &events);
        let set = h.features(0);
        let l = labels(&h, &set, 0);
        assert_eq!(l.churned, vec![false, true]);
        assert_eq!(l.spend, vec![5.0, 0.0]);
        assert_eq!(l.purchase_days, vec![1, 0]);
        let set = h.features(1);
        let l = labels(&h, &set, 1);
        assert_eq!(l.churned, vec![true, false]);
        assert_eq!(l.spend, vec![0.0, 1.0]);
    }
}
