//! Per-customer features, built by accumulators in one pass over the events.
//!
//! The cutoffs of a run (SPEC §3: `t0 = as_of − 2H`, `t1 = as_of − H`, `as_of`) split time into
//! segments; each customer keeps a small aggregate per segment. Features at cutoff `k` combine
//! the segments before it, and the label window `[c_k, c_k+1)` is segment `k + 1`, so one scan
//! yields training, validation and scoring sets with no leakage.
//!
//! Accumulators follow the usual four steps — update with an event, partial state per worker,
//! merge partials, finish — and every merge is exact (integer money, min/max, sets), so the
//! result is bit-identical whatever the number of threads.

use rustc_hash::FxHashMap;

use crate::events::EventKind;
use crate::io::{Event, DAY_US};

/// Money is summed in integer micro-units: exact and order-independent.
const MICROS: f64 = 1e6;

fn to_micros(amount: f64) -> i128 {
    (amount * MICROS).round() as i128
}

fn from_micros(m: i128) -> f64 {
    m as f64 / MICROS
}

/// Aggregate of one customer's events inside one time segment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segment {
    pub n_events: u64,
    pub first_event_us: Option<i64>,
    pub last_event_us: Option<i64>,
    pub n_purchases: u64,
    pub purchase_micros: i128,
    pub n_refunds: u64,
    pub refund_micros: i128,
    pub first_purchase_us: Option<i64>,
    pub last_purchase_us: Option<i64>,
    /// UTC day numbers with a purchase (may hold duplicates until [`Segment::compact`]).
    pub purchase_days: Vec<i32>,
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Segment {
    fn update(&mut self, ev: &Event<'_>) {
        self.n_events += 1;
        self.first_event_us = min_opt(self.first_event_us, Some(ev.time_us));
        self.last_event_us = max_opt(self.last_event_us, Some(ev.time_us));
        match ev.kind {
            EventKind::Purchase => {
                self.n_purchases += 1;
                self.purchase_micros += ev.amount.map_or(0, to_micros);
                self.first_purchase_us = min_opt(self.first_purchase_us, Some(ev.time_us));
                self.last_purchase_us = max_opt(self.last_purchase_us, Some(ev.time_us));
                let day = ev.time_us.div_euclid(DAY_US) as i32;
                if self.purchase_days.last() != Some(&day) {
                    self.purchase_days.push(day);
                }
            }
            EventKind::Refund => {
                self.n_refunds += 1;
                self.refund_micros += ev.amount.map_or(0, to_micros);
            }
            _ => {}
        }
    }

    fn merge(&mut self, other: Segment) {
        self.n_events += other.n_events;
        self.first_event_us = min_opt(self.first_event_us, other.first_event_us);
        self.last_event_us = max_opt(self.last_event_us, other.last_event_us);
        self.n_purchases += other.n_purchases;
        self.purchase_micros += other.purchase_micros;
        self.n_refunds += other.n_refunds;
        self.refund_micros += other.refund_micros;
        self.first_purchase_us = min_opt(self.first_purchase_us, other.first_purchase_us);
        self.last_purchase_us = max_opt(self.last_purchase_us, other.last_purchase_us);
        self.purchase_days.extend(other.purchase_days);
        if self.purchase_days.len() > 64 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        self.purchase_days.sort_unstable();
        self.purchase_days.dedup();
    }

    /// Net spend in this segment: purchases minus refunds.
    pub fn net_spend(&self) -> f64 {
        from_micros(self.purchase_micros - self.refund_micros)
    }
}

/// One customer's history as segments between the run's cutoffs.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerHistory {
    pub segments: Box<[Segment]>,
}

/// RFM features of one customer at one cutoff (events strictly before it).
#[derive(Debug, Clone, PartialEq)]
pub struct Rfm {
    pub n_events: u64,
    pub n_purchases: u64,
    /// Distinct UTC days with a purchase.
    pub purchase_days: u64,
    /// Repeat purchase days: `purchase_days − 1` (0 without purchases).
    pub frequency: u64,
    /// Days from the last purchase to the cutoff; `None` without purchases.
    pub recency_days: Option<f64>,
    /// Purchases minus refunds.
    pub monetary_total: f64,
    /// Purchase amount per purchase; `None` without purchases.
    pub avg_order_value: Option<f64>,
    /// Days from the first event to the cutoff.
    pub tenure_days: f64,
    /// BTYD `t_x`: days from the first to the last purchase day.
    pub t_x_days: f64,
    /// BTYD `T`: days from the first purchase day to the last observed day (the day before
    /// the cutoff).
    pub t_days: f64,
}

impl Rfm {
    /// Whether the customer had bought before the cutoff (the modelled population).
    pub fn has_purchase(&self) -> bool {
        self.n_purchases > 0
    }
}

impl CustomerHistory {
    fn new(n_segments: usize) -> CustomerHistory {
        CustomerHistory {
            segments: vec![Segment::default(); n_segments].into_boxed_slice(),
        }
    }

    /// Features at cutoff number `k` (segments `0..=k`); `cutoff_us` is that cutoff.
    /// `None` if the customer has no event before it.
    pub fn rfm(&self, k: usize, cutoff_us: i64) -> Option<Rfm> {
        let mut s = Segment::default();
        for seg in &self.segments[..=k] {
            s.merge(seg.clone());
        }
        s.compact();
        let first_event = s.first_event_us?;
        let cutoff_day = cutoff_us.div_euclid(DAY_US) as i32;
        let purchase_days = s.purchase_days.len() as u64;
        let (t_x, t) = match (s.purchase_days.first(), s.purchase_days.last()) {
            (Some(&first), Some(&last)) => (
                f64::from(last - first),
                f64::from(cutoff_day - 1 - first),
            ),
            _ => (0.0, 0.0),
        };
        let days = |us: i64| (cutoff_us - us) as f64 / DAY_US as f64;
        Some(Rfm {
            n_events: s.n_events,
            n_purchases: s.n_purchases,
            purchase_days,
            frequency: purchase_days.saturating_sub(1),
            recency_days: s.last_purchase_us.map(days),
            monetary_total: s.net_spend(),
            avg_order_value: (s.n_purchases > 0)
                .then(|| from_micros(s.purchase_micros) / s.n_purchases as f64),
            tenure_days: days(first_event),
            t_x_days: t_x,
            t_days: t,
        })
    }

    /// The label window after cutoff `k`: segment `k + 1`, if it exists.
    pub fn window(&self, k: usize) -> Option<&Segment> {
        self.segments.get(k + 1)
    }
}

/// Accumulates [`CustomerHistory`] for every customer across the given cutoffs.
#[derive(Debug, Clone)]
pub struct HistoryAcc {
    cutoffs: Vec<i64>,
    customers: FxHashMap<Box<str>, CustomerHistory>,
}

impl HistoryAcc {
    /// `cutoffs` in µs, ascending; events at or after the last cutoff must not be passed in.
    pub fn new(cutoffs: &[i64]) -> HistoryAcc {
        HistoryAcc {
            cutoffs: cutoffs.to_vec(),
            customers: FxHashMap::default(),
        }
    }

    /// Adds one event.
    pub fn update(&mut self, ev: &Event<'_>) {
        let seg = self.cutoffs.partition_point(|&c| c <= ev.time_us);
        let n = self.cutoffs.len();
        let seg = seg.min(n - 1);
        match self.customers.get_mut(ev.customer_id) {
            Some(h) => h.segments[seg].update(ev),
            None => {
                let mut h = CustomerHistory::new(n);
                h.segments[seg].update(ev);
                self.customers.insert(ev.customer_id.into(), h);
            }
        }
    }

    /// Combines two partials (order does not matter).
    pub fn merge(mut self, other: HistoryAcc) -> HistoryAcc {
        let (mut big, small) = if self.customers.len() >= other.customers.len() {
            (std::mem::take(&mut self.customers), other.customers)
        } else {
            (other.customers, std::mem::take(&mut self.customers))
        };
        for (id, h) in small {
            match big.get_mut(&id) {
                Some(b) => {
                    for (bs, s) in b.segments.iter_mut().zip(h.segments.into_vec()) {
                        bs.merge(s);
                    }
                }
                None => {
                    big.insert(id, h);
                }
            }
        }
        HistoryAcc {
            cutoffs: self.cutoffs,
            customers: big,
        }
    }

    /// Customers sorted by id: the deterministic order of every output.
    pub fn finish(self) -> Histories {
        let mut customers: Vec<(Box<str>, CustomerHistory)> = self.customers.into_iter().collect();
        customers.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (_, h) in customers.iter_mut() {
            for s in h.segments.iter_mut() {
                s.compact();
            }
        }
        Histories {
            cutoffs: self.cutoffs,
            customers,
        }
    }
}

/// Every customer's history, sorted by customer id.
#[derive(Debug, Clone)]
pub struct Histories {
    pub cutoffs: Vec<i64>,
    pub customers: Vec<(Box<str>, CustomerHistory)>,
}

/// One row per customer with any event before the cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    pub cutoff_us: i64,
    pub customer_ids: Vec<Box<str>>,
    pub rows: Vec<Rfm>,
    /// Index of each row's customer in [`Histories::customers`].
    pub index: Vec<usize>,
}

impl Histories {
    /// Features at cutoff `k` for every customer with an event before it.
    pub fn features(&self, k: usize) -> FeatureSet {
        let cutoff_us = self.cutoffs[k];
        let mut set = FeatureSet {
            cutoff_us,
            customer_ids: Vec::new(),
            rows: Vec::new(),
            index: Vec::new(),
        };
        for (i, (id, h)) in self.customers.iter().enumerate() {
            if let Some(r) = h.rfm(k, cutoff_us) {
                set.customer_ids.push(id.clone());
                set.rows.push(r);
                set.index.push(i);
            }
        }
        set
    }
}

/// Builds histories single-threaded from a slice of events (tests and small inputs).
pub fn histories_from_events(cutoffs: &[i64], events: &[Event<'_>]) -> Histories {
    let mut acc = HistoryAcc::new(cutoffs);
    for e in events {
        acc.update(e);
    }
    acc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, day: f64, kind: EventKind, amount: Option<f64>) -> Event<'_> {
        Event {
            customer_id: id,
            time_us: (day * DAY_US as f64) as i64,
            kind,
            amount,
            channel: None,
            category: None,
        }
    }

    #[test]
    fn rfm_by_hand() {
        // Cutoffs at day 10 and day 20.
        let cutoffs = [10 * DAY_US, 20 * DAY_US];
        let events = vec![
            ev("a", 1.25, EventKind::PageView, None),
            ev("a", 2.5, EventKind::Purchase, Some(10.0)),
            ev("a", 2.75, EventKind::Purchase, Some(5.0)), // same day
            ev("a", 6.5, EventKind::Purchase, Some(20.0)),
            ev("a", 7.0, EventKind::Refund, Some(4.0)),
            ev("a", 12.0, EventKind::Purchase, Some(7.5)), // label window [10, 20)
            ev("b", 15.0, EventKind::PageView, None),
        ];
        let h = histories_from_events(&cutoffs, &events);
        let f = h.features(0);
        assert_eq!(f.customer_ids.len(), 1, "b has no event before day 10");
        let a = &f.rows[0];
        assert_eq!(a.n_purchases, 3);
        assert_eq!(a.purchase_days, 2);
        assert_eq!(a.frequency, 1);
        assert_eq!(a.recency_days, Some(3.5));
        assert_eq!(a.monetary_total, 31.0);
        assert_eq!(a.avg_order_value, Some(35.0 / 3.0));
        assert_eq!(a.tenure_days, 8.75);
        assert_eq!(a.t_x_days, 4.0);
        assert_eq!(a.t_days, 7.0); // last observed day 9 minus first purchase day 2
        let w = h.customers[0].1.window(0).cloned().unwrap_or_default();
        assert_eq!(w.n_purchases, 1);
        assert_eq!(w.net_spend(), 7.5);
        let f1 = h.features(1);
        assert_eq!(f1.customer_ids.len(), 2);
        assert_eq!(f1.rows[1].recency_days, None);
        assert_eq!(f1.rows[1].avg_order_value, None);
        assert_eq!(f1.rows[0].frequency, 2);
    }

    #[test]
    fn merge_equals_sequential() {
        let cutoffs = [10 * DAY_US, 20 * DAY_US];
        let events: Vec<Event<'_>> = (0..200)
            .map(|i| {
                let id = ["x", "y", "z"][i % 3];
                let kind = if i % 4 == 0 { EventKind::Purchase } else { EventKind::PageView };
                ev(id, (i % 19) as f64 + 0.1, kind, Some(0.1 * i as f64))
            })
            .collect();
        let whole = histories_from_events(&cutoffs, &events);
        let mut left = HistoryAcc::new(&cutoffs);
        let mut right = HistoryAcc::new(&cutoffs);
        for (i, e) in events.iter().enumerate() {
            if i % 7 < 3 {
                left.update(e)
            } else {
                right.update(e)
            }
        }
        let merged = right.merge(left).finish();
        for k in 0..2 {
            assert_eq!(whole.features(k), merged.features(k));
        }
    }
}
