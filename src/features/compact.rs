//! Feature rows held compactly while they wait: `run` keeps the as-of table's rows through
//! the whole training (scoring and publishing read them at the end) and they were the largest
//! single owner at its memory peak (368 bytes a row, 74 MB on the 200k-customer bench file).
//! Counts as `u32`, floats as they are, optional floats with a presence bit: 216 bytes a row,
//! given back bit for bit by [`CompactRows::into_rows`].

use super::Features;

/// Counts of a row ([`Features`]' `u64` fields, in declaration order).
const COUNTS: usize = 23;
/// Floats of a row (plain, then optional, in declaration order).
const FLOATS: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Compact {
    counts: [u32; COUNTS],
    floats: [f64; FLOATS],
    /// Bit `i`: optional float `i` (floats `8 + i`) is present.
    present: u8,
}

/// One feature row, compact; a row with a count above `u32::MAX` is kept whole (never seen:
/// the accumulators count in `u32` per segment).
#[derive(Debug, Clone, PartialEq)]
pub enum CompactRow {
    Packed(Compact),
    Whole(Box<Features>),
}

impl CompactRow {
    pub fn new(f: Features) -> CompactRow {
        match pack(&f) {
            Some(c) => CompactRow::Packed(c),
            None => CompactRow::Whole(Box::new(f)),
        }
    }

    /// The row as it was given.
    pub fn get(&self) -> Features {
        match self {
            CompactRow::Packed(c) => unpack(c),
            CompactRow::Whole(f) => (**f).clone(),
        }
    }
}

/// Feature rows, compact ([`CompactRow`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactRows {
    rows: Vec<CompactRow>,
}

fn pack(f: &Features) -> Option<Compact> {
    let counts = [
        f.n_events,
        f.n_purchases,
        f.purchase_days,
        f.frequency,
        f.active_days,
        f.n_page_views,
        f.n_sessions,
        f.n_add_to_cart,
        f.cart_abandonments,
        f.n_checkout_starts,
        f.n_support_tickets,
        f.n_email_opens,
        f.n_email_clicks,
        f.n_sms_clicks,
        f.n_reviews,
        f.n_referrals,
        f.n_community_posts,
        f.n_refunds,
        f.n_categories,
        f.n_channels,
        f.events_7d,
        f.events_30d,
        f.events_90d,
    ];
    let mut c = [0u32; COUNTS];
    for (to, from) in c.iter_mut().zip(counts) {
        *to = u32::try_from(from).ok()?;
    }
    let optional = [
        f.recency_days,
        f.avg_order_value,
        f.max_order_value,
        f.repeat_spend_mean,
        f.days_since_cart_abandonment,
        f.ipt_mean_days,
        f.ipt_std_days,
    ];
    let mut floats = [0.0; FLOATS];
    floats[..8].copy_from_slice(&[
        f.t_x_days,
        f.t_days,
        f.monetary_total,
        f.tenure_days,
        f.refund_amount,
        f.refund_ratio,
        f.days_since_last_event,
        f.trend_30d,
    ]);
    let mut present = 0u8;
    for (i, o) in optional.into_iter().enumerate() {
        if let Some(v) = o {
            floats[8 + i] = v;
            present |= 1 << i;
        }
    }
    Some(Compact {
        counts: c,
        floats,
        present,
    })
}

fn unpack(c: &Compact) -> Features {
    let n = |i: usize| u64::from(c.counts[i]);
    let x = |i: usize| c.floats[i];
    let o = |i: usize| (c.present & (1 << i) != 0).then_some(c.floats[8 + i]);
    Features {
        n_events: n(0),
        n_purchases: n(1),
        purchase_days: n(2),
        frequency: n(3),
        active_days: n(4),
        n_page_views: n(5),
        n_sessions: n(6),
        n_add_to_cart: n(7),
        cart_abandonments: n(8),
        n_checkout_starts: n(9),
        n_support_tickets: n(10),
        n_email_opens: n(11),
        n_email_clicks: n(12),
        n_sms_clicks: n(13),
        n_reviews: n(14),
        n_referrals: n(15),
        n_community_posts: n(16),
        n_refunds: n(17),
        n_categories: n(18),
        n_channels: n(19),
        events_7d: n(20),
        events_30d: n(21),
        events_90d: n(22),
        t_x_days: x(0),
        t_days: x(1),
        monetary_total: x(2),
        tenure_days: x(3),
        refund_amount: x(4),
        refund_ratio: x(5),
        days_since_last_event: x(6),
        trend_30d: x(7),
        recency_days: o(0),
        avg_order_value: o(1),
        max_order_value: o(2),
        repeat_spend_mean: o(3),
        days_since_cart_abandonment: o(4),
        ipt_mean_days: o(5),
        ipt_std_days: o(6),
    }
}

impl CompactRows {
    /// `rows`, compact (their memory is given back when this returns).
    pub fn new(rows: Vec<Features>) -> CompactRows {
        CompactRows {
            rows: rows.into_iter().map(CompactRow::new).collect(),
        }
    }

    /// Rows compacted one by one as they were built.
    pub fn from_rows(rows: Vec<CompactRow>) -> CompactRows {
        CompactRows { rows }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i` as it was given.
    pub fn get(&self, i: usize) -> Features {
        self.rows[i].get()
    }

    /// Every row, in order, as given.
    pub fn iter(&self) -> impl Iterator<Item = Features> + '_ {
        self.rows.iter().map(CompactRow::get)
    }

    /// The rows as they were given.
    pub fn into_rows(self) -> Vec<Features> {
        self.rows.iter().map(CompactRow::get).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seed: u64) -> Features {
        let s = seed as f64;
        Features {
            n_events: seed * 7 + 1,
            n_purchases: seed,
            purchase_days: seed + 2,
            frequency: seed + 1,
            recency_days: (seed % 2 == 0).then_some(s * 0.25),
            t_x_days: s + 0.5,
            t_days: s + 1.5,
            monetary_total: -s * 3.1,
            avg_order_value: (seed % 3 != 0).then_some(s / 7.0),
            max_order_value: Some(s * 2.0),
            repeat_spend_mean: None,
            tenure_days: s * 11.0,
            active_days: seed + 3,
            n_page_views: seed + 4,
            n_sessions: seed + 5,
            n_add_to_cart: seed + 6,
            cart_abandonments: seed + 7,
            days_since_cart_abandonment: Some(s - 0.75),
            n_checkout_starts: seed + 8,
            n_support_tickets: seed + 9,
            n_email_opens: seed + 10,
            n_email_clicks: seed + 11,
            n_sms_clicks: seed + 12,
            n_reviews: seed + 13,
            n_referrals: seed + 14,
            n_community_posts: seed + 15,
            n_refunds: seed + 16,
            refund_amount: s * 0.1,
            refund_ratio: 1.0 / 3.0,
            n_categories: seed + 17,
            n_channels: seed + 18,
            days_since_last_event: s + 0.125,
            ipt_mean_days: (seed > 1).then_some(s * 1.5),
            ipt_std_days: (seed > 2).then_some(f64::INFINITY),
            events_7d: seed + 19,
            events_30d: seed + 20,
            events_90d: seed + 21,
            trend_30d: 2.0 / 3.0,
        }
    }

    #[test]
    fn rows_come_back_as_given_including_a_count_that_needs_64_bits() {
        let mut rows: Vec<Features> = (0..6).map(row).collect();
        rows[4].n_events = u64::from(u32::MAX) + 5;
        let held = CompactRows::new(rows.clone());
        assert_eq!(held.len(), 6);
        assert!(matches!(held.rows[4], CompactRow::Whole(_)));
        assert!(matches!(held.rows[3], CompactRow::Packed(_)));
        assert_eq!(held.get(4), rows[4]);
        assert_eq!(held.iter().collect::<Vec<_>>(), rows);
        assert_eq!(held.into_rows(), rows);
        assert_eq!(std::mem::size_of::<Compact>(), 216);
        assert_eq!(std::mem::size_of::<CompactRow>(), 224);
    }

    #[test]
    fn floats_keep_their_bits() {
        let mut f = row(3);
        f.max_order_value = Some(f64::NAN);
        f.days_since_cart_abandonment = Some(-0.0);
        f.refund_ratio = f64::NAN;
        let back = CompactRows::new(vec![f]).into_rows().remove(0);
        assert!(back.max_order_value.is_some_and(f64::is_nan));
        assert!(back.refund_ratio.is_nan());
        assert_eq!(
            back.days_since_cart_abandonment.map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
        assert_eq!(back.repeat_spend_mean, None);
        assert_eq!(back.ipt_std_days, Some(f64::INFINITY));
    }
}
