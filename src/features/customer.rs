//! One customer's history as the accumulators left it ([`CustomerHistory`], a view into
//! [`super::Histories`]) and the feature row computed from it at a cutoff ([`Features`]): the
//! definitions of docs/features.md. A new feature is a field of [`Features`], computed here from
//! the segments and lists the accumulator keeps (`super`), and a column of `table/mod.rs`.

use super::*;

/// The front of a sorted list whose items pass `is_before` (often all of it: checked first).
fn before<T>(list: &[T], is_before: impl Fn(&T) -> bool) -> &[T] {
    match list.last() {
        Some(last) if !is_before(last) => &list[..list.partition_point(is_before)],
        _ => list,
    }
}

/// Purchases (time-sorted) merged by UTC day: (day, total micro-units) in day order.
fn purchase_days(purchases: &[(i64, i64)]) -> impl Iterator<Item = (i32, i64)> + '_ {
    let mut rest = purchases;
    std::iter::from_fn(move || {
        let (&(t, m), tail) = rest.split_first()?;
        let day = t.div_euclid(DAY_US);
        let mut total = m;
        let same = tail.partition_point(|&(p, _)| p.div_euclid(DAY_US) == day);
        for &(_, m) in &tail[..same] {
            total = total.saturating_add(m);
        }
        rest = &tail[same..];
        Some((day as i32, total))
    })
}

/// One customer's accumulated history: a view into [`Histories`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CustomerHistory<'a> {
    /// The scan's cutoffs (µs).
    pub(super) cutoffs: &'a [i64],
    /// One per cutoff: segment `k` holds events in `[c_{k−1}, c_k)`.
    pub(super) cells: &'a [Cell],
    /// Sorted lists (see [`Lists::finish`]).
    pub(super) lists: &'a Lists,
}

impl<'a> CustomerHistory<'a> {
    /// The events of segment `k`: `[c_{k−1}, c_k)` (counts, refunds, latest event).
    pub fn segment(&self, k: usize) -> &'a Segment {
        &self.cells[k].seg
    }

    /// The label window after cutoff `k`: segment `k + 1`, if it exists.
    pub fn window(&self, k: usize) -> Option<Aggregate> {
        (k + 1 < self.cells.len()).then(|| self.between(k, k + 1))
    }

    /// The aggregate of the window `[c_from, c_until)`: segments `from + 1 ..= until` (empty
    /// when `until` is past the last cutoff's segment, where no event is kept).
    pub fn between(&self, from: usize, until: usize) -> Aggregate {
        let mut s = Segment::default();
        for cell in self.cells.iter().take(until + 1).skip(from + 1) {
            s.add(&cell.seg);
        }
        // The purchases of the same segments: from c_from to the last summed segment's end.
        let last = until.min(self.cells.len().saturating_sub(1));
        let purchases = match (self.cutoffs.get(from), self.cutoffs.get(last)) {
            (Some(&lo), Some(&hi)) if last > from => {
                let p = &self.lists.purchases;
                &p[p.partition_point(|&(t, _)| t < lo)..p.partition_point(|&(t, _)| t < hi)]
            }
            _ => &[],
        };
        Aggregate::of(s, purchases)
    }

    /// Distinct values of a text column seen before cutoff `k`.
    fn distinct_before(&self, field: CodeField, k: usize) -> u64 {
        let bits = self.cells[..=k]
            .iter()
            .fold(0u32, |acc, c| acc | c.seg.bits(field));
        let rare = self
            .lists
            .rare
            .iter()
            .filter(|r| r.field == field && r.seg as usize <= k)
            .count();
        u64::from(bits.count_ones()) + rare as u64
    }

    /// Whether the customer bought before cutoff `k` (the models' population there).
    pub fn bought_before(&self, k: usize) -> bool {
        self.cells[..=k]
            .iter()
            .any(|c| c.seg.count(EventKind::Purchase) > 0)
    }

    /// Distinct UTC days with a purchase in `[from_us, until_us)` (the BTYD holdout count).
    pub fn purchase_days_between(&self, from_us: i64, until_us: i64) -> u64 {
        let lo = self.lists.purchases.partition_point(|&(p, _)| p < from_us);
        let hi = self.lists.purchases.partition_point(|&(p, _)| p < until_us);
        let mut days = 0u64;
        let mut last = None;
        for &(p, _) in &self.lists.purchases[lo..hi] {
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
        let mut seg = Segment::default();
        for cell in &self.cells[..=k] {
            seg.add(&cell.seg);
        }
        if seg.n_events() == 0 {
            return None;
        }
        let days = |us: i64| (cutoff_us - us) as f64 / DAY_US as f64;
        let cutoff_day = cutoff_us.div_euclid(DAY_US) as i32;
        let purchases = before(&self.lists.purchases, |&(p, _)| p < cutoff_us);
        let s = Aggregate::of(seg, purchases);

        // Distinct purchase days (with their totals) and the gaps between them, in two
        // passes over the purchases (the spread needs the mean first).
        let mut n_days = 0u64;
        let (mut first, mut last) = (0i32, 0i32);
        let (mut gap_sum, mut repeat_sum) = (0.0f64, 0.0f64);
        for (d, total) in purchase_days(purchases) {
            if n_days == 0 {
                first = d;
            } else {
                gap_sum += f64::from(d - last);
                repeat_sum += from_micros(total);
            }
            last = d;
            n_days += 1;
        }
        let repeat_spend_mean = (n_days > 1).then(|| repeat_sum / (n_days - 1) as f64);
        let (ipt_mean, ipt_std) = if n_days > 1 {
            let n = (n_days - 1) as f64;
            let mean = gap_sum / n;
            let mut var_sum = 0.0f64;
            let mut prev = None;
            for (d, _) in purchase_days(purchases) {
                if let Some(p) = prev {
                    var_sum += (f64::from(d - p) - mean).powi(2);
                }
                prev = Some(d);
            }
            (Some(mean), Some((var_sum / n).sqrt()))
        } else {
            (None, None)
        };
        let (t_x, t) = if n_days > 0 {
            (f64::from(last - first), f64::from(cutoff_day - 1 - first))
        } else {
            (0.0, 0.0)
        };

        // A cart add is abandoned when no purchase follows within 24 h (before the cutoff).
        // Both lists are sorted: one walk pairs each cart add with the next purchase.
        let carts = before(&self.lists.carts, |&a| a < cutoff_us);
        let (mut abandoned, mut last_abandoned) = (0u64, None);
        let mut next = 0;
        for &a in carts {
            while purchases.get(next).is_some_and(|&(p, _)| p < a) {
                next += 1;
            }
            if purchases.get(next).is_none_or(|&(p, _)| p >= a + DAY_US) {
                abandoned += 1;
                last_abandoned = Some(a);
            }
        }

        let n_purchases = s.count(EventKind::Purchase);
        let r = self.cells[k].recent;
        Some(Features {
            n_events: s.n_events(),
            n_purchases,
            purchase_days: n_days,
            frequency: n_days.saturating_sub(1),
            recency_days: purchases.last().map(|&(p, _)| days(p)),
            t_x_days: t_x,
            t_days: t,
            monetary_total: s.net_spend(),
            avg_order_value: (n_purchases > 0)
                .then(|| from_micros(s.purchase_micros) / n_purchases as f64),
            max_order_value: (n_purchases > 0).then(|| from_micros(s.max_order_micros)),
            repeat_spend_mean,
            tenure_days: days(self.lists.first_us),
            active_days: before(&self.lists.days, |&d| d < cutoff_day).len() as u64,
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
            refund_amount: from_micros(s.seg.refund_micros),
            refund_ratio: (s.purchase_micros > 0)
                .then(|| s.seg.refund_micros as f64 / s.purchase_micros as f64)
                .unwrap_or(0.0),
            n_categories: self.distinct_before(CodeField::Category, k),
            n_channels: self.distinct_before(CodeField::Channel, k),
            days_since_last_event: days(s.seg.last_event_us),
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
/// `docs/features.md`; the column of the same name in a feature table (`table::COLUMNS`).
#[derive(Debug, Clone, PartialEq, Default)]
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
