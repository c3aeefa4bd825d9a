//! Per-customer features, built by accumulators in one pass over the events (SPEC §4).
//!
//! The cutoffs of a run (SPEC §3: `t0 = as_of − 2H`, `t1 = as_of − H`, `as_of`) split time into
//! segments; each customer keeps a small aggregate per segment plus a few sorted lists (purchase
//! and cart-add times, active days, first sighting of each category and channel). Features at
//! cutoff `k` only look at what lies before it, and the label window `[c_k, c_k+1)` is segment
//! `k + 1`, so one scan yields the training, validation and scoring sets with no leakage.
//!
//! Accumulators follow the usual four steps — `update` with an event, a partial per worker,
//! `merge` partials, `finish` — and every merge is exact (integer money, min/max, lists sorted
//! at the end), so the result is bit-identical whatever the number of threads.
//!
//! Memory is per customer: fixed-size aggregates, plus lists whose length is the number of
//! purchases, cart adds, active days and distinct categories/channels — never page views,
//! emails or other high-volume events.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use rustc_hash::FxHashMap;

use crate::events::EventKind;
use crate::io::{Event, DAY_US};

/// Money is summed in integer micro-units: exact and order-independent. An i64 holds
/// 9.2e12 currency units per customer and segment; sums saturate rather than wrap.
const MICROS: f64 = 1e6;

fn to_micros(amount: f64) -> i64 {
    (amount * MICROS).round() as i64
}

fn from_micros(m: i64) -> f64 {
    m as f64 / MICROS
}

fn kind_index(kind: EventKind) -> usize {
    kind as usize
}

/// Aggregate of one customer's events inside one time segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub n_events: u64,
    /// Events per [`EventKind`], indexed by `kind as usize`.
    pub kinds: [u32; EventKind::ALL.len()],
    pub purchase_micros: i64,
    pub refund_micros: i64,
    /// Largest single purchase amount (micro-units); 0 without purchases.
    pub max_order_micros: i64,
    /// Earliest / latest event time (µs); `i64::MAX` / `i64::MIN` when empty.
    pub first_event_us: i64,
    pub last_event_us: i64,
}

impl Default for Segment {
    fn default() -> Self {
        Segment {
            n_events: 0,
            kinds: [0; EventKind::ALL.len()],
            purchase_micros: 0,
            refund_micros: 0,
            max_order_micros: 0,
            first_event_us: i64::MAX,
            last_event_us: i64::MIN,
        }
    }
}

impl Segment {
    fn update(&mut self, ev: &Event<'_>) {
        self.n_events += 1;
        self.kinds[kind_index(ev.kind)] += 1;
        self.first_event_us = self.first_event_us.min(ev.time_us);
        self.last_event_us = self.last_event_us.max(ev.time_us);
        match ev.kind {
            EventKind::Purchase => {
                let m = ev.amount.map_or(0, to_micros);
                self.purchase_micros = self.purchase_micros.saturating_add(m);
                self.max_order_micros = self.max_order_micros.max(m);
            }
            EventKind::Refund => {
                self.refund_micros = self
                    .refund_micros
                    .saturating_add(ev.amount.map_or(0, to_micros))
            }
            _ => {}
        }
    }

    fn add(&mut self, other: &Segment) {
        self.n_events += other.n_events;
        for (a, b) in self.kinds.iter_mut().zip(other.kinds) {
            *a += b;
        }
        self.purchase_micros = self.purchase_micros.saturating_add(other.purchase_micros);
        self.refund_micros = self.refund_micros.saturating_add(other.refund_micros);
        self.max_order_micros = self.max_order_micros.max(other.max_order_micros);
        self.first_event_us = self.first_event_us.min(other.first_event_us);
        self.last_event_us = self.last_event_us.max(other.last_event_us);
    }

    /// Events of one kind.
    pub fn count(&self, kind: EventKind) -> u64 {
        u64::from(self.kinds[kind_index(kind)])
    }

    /// Net spend: purchases minus refunds.
    pub fn net_spend(&self) -> f64 {
        from_micros(self.purchase_micros.saturating_sub(self.refund_micros))
    }
}

/// Recent-activity counters of one cutoff: events in the last 7, 30 and 90 days, and in the
/// 30 days before the last 30.
type Recent = [u32; 4];

/// One customer's accumulated history.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerHistory {
    /// One per cutoff: segment `k` holds events in `[c_{k−1}, c_k)`.
    pub segments: Box<[Segment]>,
    recent: Box<[Recent]>,
    /// Purchases as (time µs, amount micro-units), sorted by `finish`.
    purchases: Vec<(i64, i64)>,
    /// add_to_cart times (µs), sorted by `finish`.
    carts: Vec<i64>,
    /// UTC days with any event, sorted and distinct after `finish`.
    days: Vec<i32>,
    /// (value code, first time seen) per category / channel, one entry per code after `finish`.
    categories: Vec<(u64, i64)>,
    channels: Vec<(u64, i64)>,
}

fn note_code(list: &mut Vec<(u64, i64)>, code: u64, time: i64) {
    // Most customers use few values: a linear scan beats a map and keeps memory small.
    match list.iter_mut().find(|(c, _)| *c == code) {
        Some(entry) => entry.1 = entry.1.min(time),
        None => list.push((code, time)),
    }
}

fn compact_codes(list: &mut Vec<(u64, i64)>) {
    list.sort_unstable();
    list.dedup_by_key(|(c, _)| *c); // keeps the first (smallest time) of each code
}

impl CustomerHistory {
    fn new(n: usize) -> CustomerHistory {
        CustomerHistory {
            segments: vec![Segment::default(); n].into_boxed_slice(),
            recent: vec![[0; 4]; n].into_boxed_slice(),
            purchases: Vec::new(),
            carts: Vec::new(),
            days: Vec::new(),
            categories: Vec::new(),
            channels: Vec::new(),
        }
    }

    fn update(&mut self, cutoffs: &[i64], ev: &Event<'_>) {
        let t = ev.time_us;
        let seg = cutoffs.partition_point(|&c| c <= t).min(cutoffs.len() - 1);
        self.segments[seg].update(ev);
        for (k, &c) in cutoffs.iter().enumerate().skip(seg) {
            let d = c - t; // > 0: the event is before cutoff k
            let r = &mut self.recent[k];
            if d <= 90 * DAY_US {
                r[2] += 1;
                if d <= 30 * DAY_US {
                    r[1] += 1;
                    if d <= 7 * DAY_US {
                        r[0] += 1;
                    }
                } else if d <= 60 * DAY_US {
                    r[3] += 1;
                }
            }
        }
        match ev.kind {
            EventKind::Purchase => self.purchases.push((t, ev.amount.map_or(0, to_micros))),
            EventKind::AddToCart => self.carts.push(t),
            _ => {}
        }
        let day = t.div_euclid(DAY_US) as i32;
        if self.days.last() != Some(&day) {
            self.days.push(day);
        }
        if let Some(code) = ev.category {
            note_code(&mut self.categories, code, t);
        }
        if let Some(code) = ev.channel {
            note_code(&mut self.channels, code, t);
        }
    }

    fn merge(&mut self, other: CustomerHistory) {
        for (a, b) in self.segments.iter_mut().zip(other.segments.iter()) {
            a.add(b);
        }
        for (a, b) in self.recent.iter_mut().zip(other.recent.iter()) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.purchases.extend(other.purchases);
        self.carts.extend(other.carts);
        self.days.extend(other.days);
        if self.days.len() > 256 {
            self.days.sort_unstable();
            self.days.dedup();
        }
        for (c, t) in other.categories {
            note_code(&mut self.categories, c, t);
        }
        for (c, t) in other.channels {
            note_code(&mut self.channels, c, t);
        }
    }

    fn finish(&mut self) {
        self.purchases.sort_unstable();
        self.carts.sort_unstable();
        self.days.sort_unstable();
        self.days.dedup();
        compact_codes(&mut self.categories);
        compact_codes(&mut self.channels);
    }

    /// The label window after cutoff `k`: segment `k + 1`, if it exists.
    pub fn window(&self, k: usize) -> Option<&Segment> {
        self.segments.get(k + 1)
    }

    /// Distinct UTC days with a purchase in `[from_us, until_us)` (the BTYD holdout count).
    pub fn purchase_days_between(&self, from_us: i64, until_us: i64) -> u64 {
        let lo = self.purchases.partition_point(|&(p, _)| p < from_us);
        let hi = self.purchases.partition_point(|&(p, _)| p < until_us);
        let mut days = 0u64;
        let mut last = None;
        for &(p, _) in &self.purchases[lo..hi] {
            let d = p.div_euclid(DAY_US);
            if last != Some(d) {
                days += 1;
                last = Some(d);
            }
        }
        days
    }

    /// Features at cutoff number `k` (time `cutoff_us`, midnight UTC); `None` if the customer
    /// has no event before it.
    pub fn features(&self, k: usize, cutoff_us: i64) -> Option<Features> {
        let mut s = Segment::default();
        for seg in &self.segments[..=k] {
            s.add(seg);
        }
        if s.n_events == 0 {
            return None;
        }
        let days = |us: i64| (cutoff_us - us) as f64 / DAY_US as f64;
        let cutoff_day = cutoff_us.div_euclid(DAY_US) as i32;
        let purchases = &self.purchases[..self.purchases.partition_point(|&(p, _)| p < cutoff_us)];

        // Distinct purchase days (with their totals) and the gaps between them.
        let mut pdays: Vec<i32> = Vec::new();
        let mut day_totals: Vec<i64> = Vec::new();
        for &(p, m) in purchases {
            let d = p.div_euclid(DAY_US) as i32;
            if pdays.last() == Some(&d) {
                if let Some(t) = day_totals.last_mut() {
                    *t = t.saturating_add(m);
                }
            } else {
                pdays.push(d);
                day_totals.push(m);
            }
        }
        let repeat_spend_mean = (day_totals.len() > 1).then(|| {
            let repeat = &day_totals[1..];
            repeat.iter().map(|&m| from_micros(m)).sum::<f64>() / repeat.len() as f64
        });
        let gaps: Vec<f64> = pdays.windows(2).map(|w| f64::from(w[1] - w[0])).collect();
        let (ipt_mean, ipt_std) = if gaps.is_empty() {
            (None, None)
        } else {
            let n = gaps.len() as f64;
            let mean = gaps.iter().sum::<f64>() / n;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
            (Some(mean), Some(var.sqrt()))
        };
        let (t_x, t) = match (pdays.first(), pdays.last()) {
            (Some(&first), Some(&last)) => {
                (f64::from(last - first), f64::from(cutoff_day - 1 - first))
            }
            _ => (0.0, 0.0),
        };

        // A cart add is abandoned when no purchase follows within 24 h (before the cutoff).
        let carts = &self.carts[..self.carts.partition_point(|&a| a < cutoff_us)];
        let is_abandoned = |a: i64| {
            let next = purchases.partition_point(|&(p, _)| p < a);
            purchases.get(next).is_none_or(|&(p, _)| p >= a + DAY_US)
        };
        let abandoned = carts.iter().filter(|&&a| is_abandoned(a)).count() as u64;
        let last_abandoned = carts.iter().rev().find(|&&a| is_abandoned(a)).copied();

        let n_purchases = s.count(EventKind::Purchase);
        let r = self.recent[k];
        let seen_before =
            |list: &[(u64, i64)]| list.iter().filter(|(_, t)| *t < cutoff_us).count() as u64;
        Some(Features {
            n_events: s.n_events,
            n_purchases,
            purchase_days: pdays.len() as u64,
            frequency: (pdays.len() as u64).saturating_sub(1),
            recency_days: purchases.last().map(|&(p, _)| days(p)),
            t_x_days: t_x,
            t_days: t,
            monetary_total: s.net_spend(),
            avg_order_value: (n_purchases > 0)
                .then(|| from_micros(s.purchase_micros) / n_purchases as f64),
            max_order_value: (n_purchases > 0).then(|| from_micros(s.max_order_micros)),
            repeat_spend_mean,
            tenure_days: days(s.first_event_us),
            active_days: self.days.partition_point(|&d| d < cutoff_day) as u64,
            n_page_views: s.count(EventKind::PageView),
            n_sessions: s.count(EventKind::SessionStart),
            n_add_to_cart: s.count(EventKind::AddToCart),
            cart_abandonments: abandoned,
            days_since_cart_abandonment: last_abandoned.map(days),
            n_checkout_starts: s.count(EventKind::CheckoutStart),
            n_support_tickets: s.count(EventKind::SupportTicket),
            n_email_opens: s.count(EventKind::EmailOpen),
            n_email_clicks: s.count(EventKind::EmailClick),
            n_sms_clicks: s.count(EventKind::SmsClick),
            n_reviews: s.count(EventKind::Review),
            n_referrals: s.count(EventKind::Referral),
            n_community_posts: s.count(EventKind::CommunityPost),
            n_refunds: s.count(EventKind::Refund),
            refund_amount: from_micros(s.refund_micros),
            refund_ratio: (s.purchase_micros > 0)
                .then(|| s.refund_micros as f64 / s.purchase_micros as f64)
                .unwrap_or(0.0),
            n_categories: seen_before(&self.categories),
            n_channels: seen_before(&self.channels),
            days_since_last_event: days(s.last_event_us),
            ipt_mean_days: ipt_mean,
            ipt_std_days: ipt_std,
            events_7d: u64::from(r[0]),
            events_30d: u64::from(r[1]),
            events_90d: u64::from(r[2]),
            trend_30d: f64::from(r[1] + 1) / f64::from(r[3] + 1),
        })
    }
}

/// All features of one customer at one cutoff (events strictly before it). Definitions in
/// `docs/features.md`; the column of the same name in `features.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub n_events: u64,
    pub n_purchases: u64,
    pub purchase_days: u64,
    pub frequency: u64,
    pub recency_days: Option<f64>,
    pub t_x_days: f64,
    pub t_days: f64,
    pub monetary_total: f64,
    pub avg_order_value: Option<f64>,
    pub max_order_value: Option<f64>,
    /// Mean total of the repeat purchase days (same-day purchases merged, first day excluded):
    /// the Gamma-Gamma spend input (`zbar`); null without a repeat purchase day.
    pub repeat_spend_mean: Option<f64>,
    pub tenure_days: f64,
    pub active_days: u64,
    pub n_page_views: u64,
    pub n_sessions: u64,
    pub n_add_to_cart: u64,
    pub cart_abandonments: u64,
    /// Days from the latest abandoned cart add to the cutoff; null without one.
    pub days_since_cart_abandonment: Option<f64>,
    pub n_checkout_starts: u64,
    pub n_support_tickets: u64,
    pub n_email_opens: u64,
    pub n_email_clicks: u64,
    pub n_sms_clicks: u64,
    pub n_reviews: u64,
    pub n_referrals: u64,
    pub n_community_posts: u64,
    pub n_refunds: u64,
    pub refund_amount: f64,
    pub refund_ratio: f64,
    pub n_categories: u64,
    pub n_channels: u64,
    pub days_since_last_event: f64,
    pub ipt_mean_days: Option<f64>,
    pub ipt_std_days: Option<f64>,
    pub events_7d: u64,
    pub events_30d: u64,
    pub events_90d: u64,
    pub trend_30d: f64,
}

impl Features {
    /// Whether the customer had bought before the cutoff (the modelled population).
    pub fn has_purchase(&self) -> bool {
        self.n_purchases > 0
    }
}

/// How a column reads its value off [`Features`].
#[derive(Clone, Copy)]
enum Getter {
    Count(fn(&Features) -> u64),
    Real(fn(&Features) -> f64),
    Maybe(fn(&Features) -> Option<f64>),
}

/// The columns of `features.parquet` after `customer_id`, in order: one list drives the
/// schema and the table.
const COLUMNS: [(&str, Getter); 38] = [
    ("n_events", Getter::Count(|f| f.n_events)),
    ("n_purchases", Getter::Count(|f| f.n_purchases)),
    ("purchase_days", Getter::Count(|f| f.purchase_days)),
    ("frequency", Getter::Count(|f| f.frequency)),
    ("recency_days", Getter::Maybe(|f| f.recency_days)),
    ("t_x_days", Getter::Real(|f| f.t_x_days)),
    ("T_days", Getter::Real(|f| f.t_days)),
    ("monetary_total", Getter::Real(|f| f.monetary_total)),
    ("avg_order_value", Getter::Maybe(|f| f.avg_order_value)),
    ("max_order_value", Getter::Maybe(|f| f.max_order_value)),
    ("repeat_spend_mean", Getter::Maybe(|f| f.repeat_spend_mean)),
    ("tenure_days", Getter::Real(|f| f.tenure_days)),
    ("active_days", Getter::Count(|f| f.active_days)),
    ("n_page_views", Getter::Count(|f| f.n_page_views)),
    ("n_sessions", Getter::Count(|f| f.n_sessions)),
    ("n_add_to_cart", Getter::Count(|f| f.n_add_to_cart)),
    ("cart_abandonments", Getter::Count(|f| f.cart_abandonments)),
    (
        "days_since_cart_abandonment",
        Getter::Maybe(|f| f.days_since_cart_abandonment),
    ),
    ("n_checkout_starts", Getter::Count(|f| f.n_checkout_starts)),
    ("n_support_tickets", Getter::Count(|f| f.n_support_tickets)),
    ("n_email_opens", Getter::Count(|f| f.n_email_opens)),
    ("n_email_clicks", Getter::Count(|f| f.n_email_clicks)),
    ("n_sms_clicks", Getter::Count(|f| f.n_sms_clicks)),
    ("n_reviews", Getter::Count(|f| f.n_reviews)),
    ("n_referrals", Getter::Count(|f| f.n_referrals)),
    ("n_community_posts", Getter::Count(|f| f.n_community_posts)),
    ("n_refunds", Getter::Count(|f| f.n_refunds)),
    ("refund_amount", Getter::Real(|f| f.refund_amount)),
    ("refund_ratio", Getter::Real(|f| f.refund_ratio)),
    ("n_categories", Getter::Count(|f| f.n_categories)),
    ("n_channels", Getter::Count(|f| f.n_channels)),
    (
        "days_since_last_event",
        Getter::Real(|f| f.days_since_last_event),
    ),
    ("ipt_mean_days", Getter::Maybe(|f| f.ipt_mean_days)),
    ("ipt_std_days", Getter::Maybe(|f| f.ipt_std_days)),
    ("events_7d", Getter::Count(|f| f.events_7d)),
    ("events_30d", Getter::Count(|f| f.events_30d)),
    ("events_90d", Getter::Count(|f| f.events_90d)),
    ("trend_30d", Getter::Real(|f| f.trend_30d)),
];

/// Schema of `features.parquet`.
pub fn features_schema() -> SchemaRef {
    let mut fields = vec![Field::new("customer_id", DataType::Utf8, false)];
    for (name, g) in COLUMNS {
        fields.push(match g {
            Getter::Count(_) => Field::new(name, DataType::Int64, false),
            Getter::Real(_) => Field::new(name, DataType::Float64, false),
            Getter::Maybe(_) => Field::new(name, DataType::Float64, true),
        });
    }
    Arc::new(Schema::new(fields))
}

/// Accumulates [`CustomerHistory`] for every customer across the given cutoffs.
#[derive(Debug, Clone)]
pub struct HistoryAcc {
    cutoffs: Vec<i64>,
    customers: FxHashMap<Box<str>, CustomerHistory>,
}

impl HistoryAcc {
    /// `cutoffs` in µs, ascending (at least one); events at or after the last cutoff are
    /// filtered out by the reader and must not be passed in.
    pub fn new(cutoffs: &[i64]) -> HistoryAcc {
        HistoryAcc {
            cutoffs: cutoffs.to_vec(),
            customers: FxHashMap::default(),
        }
    }

    /// Adds one event.
    pub fn update(&mut self, ev: &Event<'_>) {
        match self.customers.get_mut(ev.customer_id) {
            Some(h) => h.update(&self.cutoffs, ev),
            None => {
                let mut h = CustomerHistory::new(self.cutoffs.len());
                h.update(&self.cutoffs, ev);
                self.customers.insert(ev.customer_id.into(), h);
            }
        }
    }

    /// Combines two partials (order does not matter).
    pub fn merge(mut self, mut other: HistoryAcc) -> HistoryAcc {
        if self.customers.len() < other.customers.len() {
            std::mem::swap(&mut self.customers, &mut other.customers);
        }
        for (id, h) in other.customers {
            match self.customers.get_mut(&id) {
                Some(b) => b.merge(h),
                None => {
                    self.customers.insert(id, h);
                }
            }
        }
        self
    }

    /// Customers sorted by id (byte order): the deterministic order of every output.
    pub fn finish(self) -> Histories {
        let mut customers: Vec<(Box<str>, CustomerHistory)> = self.customers.into_iter().collect();
        customers.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (_, h) in customers.iter_mut() {
            h.finish();
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
    pub rows: Vec<Features>,
    /// Index of each row's customer in [`Histories::customers`].
    pub index: Vec<usize>,
}

impl FeatureSet {
    /// The rows whose customer has bought before the cutoff.
    pub fn purchasers(&self) -> FeatureSet {
        let keep: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].has_purchase())
            .collect();
        FeatureSet {
            cutoff_us: self.cutoff_us,
            customer_ids: keep.iter().map(|&i| self.customer_ids[i].clone()).collect(),
            rows: keep.iter().map(|&i| self.rows[i].clone()).collect(),
            index: keep.iter().map(|&i| self.index[i]).collect(),
        }
    }

    /// The table written as `features.parquet`.
    pub fn to_record_batch(&self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
            self.customer_ids.iter().map(|s| s.as_ref()),
        ))];
        for (_, g) in COLUMNS {
            let rows = self.rows.iter();
            columns.push(match g {
                Getter::Count(f) => {
                    Arc::new(Int64Array::from_iter_values(rows.map(|r| f(r) as i64)))
                }
                Getter::Real(f) => Arc::new(Float64Array::from_iter_values(rows.map(f))),
                Getter::Maybe(f) => Arc::new(Float64Array::from_iter(rows.map(f))),
            });
        }
        RecordBatch::try_new(features_schema(), columns)
    }
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
            if let Some(r) = h.features(k, cutoff_us) {
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
    fn merge_equals_sequential() {
        let cutoffs = [10 * DAY_US, 20 * DAY_US];
        let kinds = [
            EventKind::Purchase,
            EventKind::PageView,
            EventKind::AddToCart,
            EventKind::Refund,
        ];
        let events: Vec<Event<'_>> = (0..200)
            .map(|i| {
                let id = ["x", "y", "z"][i % 3];
                let mut e = ev(
                    id,
                    (i % 19) as f64 + 0.1 * (i % 7) as f64,
                    kinds[i % 4],
                    Some(0.1 * i as f64),
                );
                e.category = Some((i % 5) as u64);
                e.channel = Some((i % 2) as u64);
                e
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
