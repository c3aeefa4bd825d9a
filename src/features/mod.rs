//! Per-customer features, built by accumulators in one pass over the events (docs/features.md
//! defines each column).
//!
//! The cutoffs of a scan (for `run`, docs/design.md: `tv = as_of − 3H`, `t0 = as_of − 2H`,
//! `t1 = as_of − H`, `as_of`, and `tv − H` for the prior window) split time into
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

use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

mod compact;
mod customer;
mod histories;
mod ids;
pub mod table;
pub use compact::{CompactRow, CompactRows};
pub use customer::{CustomerHistory, Features};

pub use histories::{histories_from_events, FeatureSet, Histories, HistoryPart};
use ids::IdTable;
pub use table::{features_schema, labelled_schema, FeatureTable, WindowLabels};

use crate::batch::{value_code, Event, EventBatch, EventBatches, IdsKey};
use crate::events::EventKind;
use crate::time::DAY_US;

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

/// Aggregate of one customer's events inside one time segment: what the customer's lists
/// cannot give back. Purchase totals and the largest order are summed from the purchase list
/// ([`Aggregate`]), the first event is kept once per customer ([`Lists`]): a cell is 96 bytes
/// instead of 128, and `run` keeps four a customer (issue 12: 25 MB of the run's peak on the
/// bench file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Events per [`EventKind`], indexed by `kind as usize`.
    kinds: [u32; EventKind::ALL.len()],
    refund_micros: i64,
    /// Latest event time (µs); `i64::MIN` when empty.
    last_event_us: i64,
    /// Categories / channels seen in the segment, one bit per interned value id below
    /// [`MASK_BITS`] (higher ids are listed in [`CustomerHistory`]'s overflow list).
    category_bits: u32,
    channel_bits: u32,
}

/// Value ids a segment's bit masks hold; higher ids go to the customer's overflow list.
const MASK_BITS: u32 = u32::BITS;

impl Default for Segment {
    fn default() -> Self {
        Segment {
            kinds: [0; EventKind::ALL.len()],
            refund_micros: 0,
            last_event_us: i64::MIN,
            category_bits: 0,
            channel_bits: 0,
        }
    }
}

impl Segment {
    #[inline]
    fn update(&mut self, time_us: i64, kind: EventKind, micros: i64) {
        self.kinds[kind_index(kind)] += 1;
        self.last_event_us = self.last_event_us.max(time_us);
        if kind == EventKind::Refund {
            self.refund_micros = self.refund_micros.saturating_add(micros);
        }
    }

    fn add(&mut self, other: &Segment) {
        for (a, b) in self.kinds.iter_mut().zip(other.kinds) {
            *a += b;
        }
        self.refund_micros = self.refund_micros.saturating_add(other.refund_micros);
        self.last_event_us = self.last_event_us.max(other.last_event_us);
        self.category_bits |= other.category_bits;
        self.channel_bits |= other.channel_bits;
    }

    /// All events.
    pub fn n_events(&self) -> u64 {
        self.kinds.iter().map(|&n| u64::from(n)).sum()
    }

    /// Events of one kind.
    pub fn count(&self, kind: EventKind) -> u64 {
        u64::from(self.kinds[kind_index(kind)])
    }

    fn bits(&self, field: CodeField) -> u32 {
        match field {
            CodeField::Category => self.category_bits,
            CodeField::Channel => self.channel_bits,
        }
    }

    fn bits_mut(&mut self, field: CodeField) -> &mut u32 {
        match field {
            CodeField::Category => &mut self.category_bits,
            CodeField::Channel => &mut self.channel_bits,
        }
    }
}

/// Segments summed over a time span, with the purchase totals of the span taken from the
/// purchase list: exactly what per-segment totals gave (integer micro-units; the sums only
/// differ if they saturate at ±9.2e12 currency units).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Aggregate {
    seg: Segment,
    purchase_micros: i64,
    /// Largest single purchase amount (micro-units); 0 without purchases.
    max_order_micros: i64,
}

impl Aggregate {
    /// `seg` with the purchases `purchases` (those of the same span).
    fn of(seg: Segment, purchases: &[(i64, i64)]) -> Aggregate {
        let (mut sum, mut max) = (0i64, 0i64);
        for &(_, m) in purchases {
            sum = sum.saturating_add(m);
            max = max.max(m);
        }
        Aggregate {
            seg,
            purchase_micros: sum,
            max_order_micros: max,
        }
    }

    /// All events.
    pub fn n_events(&self) -> u64 {
        self.seg.n_events()
    }

    /// Events of one kind.
    pub fn count(&self, kind: EventKind) -> u64 {
        self.seg.count(kind)
    }

    /// Net spend: purchases minus refunds.
    pub fn net_spend(&self) -> f64 {
        from_micros(self.purchase_micros.saturating_sub(self.seg.refund_micros))
    }
}

/// Recent-activity counters of one cutoff: events in the last 7, 30 and 90 days, and in the
/// 30 days before the last 30.
type Recent = [u32; 4];

/// What one customer keeps per cutoff `k`: the aggregate of segment `k` and the recent-activity
/// counters of cutoff `k`. 96 bytes (two cache lines at most, so one event touches few).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C, align(32))]
struct Cell {
    seg: Segment,
    recent: Recent,
}

impl Cell {
    fn add(&mut self, other: &Cell) {
        self.seg.add(&other.seg);
        for (x, y) in self.recent.iter_mut().zip(other.recent) {
            *x += y;
        }
    }
}

/// The two text columns counted as distinct values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CodeField {
    Category = 0,
    Channel = 1,
}

/// A category or channel whose interned id does not fit a segment's bit mask, with the
/// first segment it was seen in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rare {
    field: CodeField,
    id: u32,
    seg: u32,
}

fn note_rare(rare: &mut Vec<Rare>, field: CodeField, id: u32, seg: u32) {
    match rare.iter_mut().find(|r| r.field == field && r.id == id) {
        Some(r) => r.seg = r.seg.min(seg),
        None => rare.push(Rare { field, id, seg }),
    }
}

/// Dense ids for category and channel codes. The partials of one scan share one table, so
/// their bit masks line up; partials with different tables are re-coded when merged.
#[derive(Debug, Default)]
struct CodeIds {
    ids: [FxHashMap<u64, u32>; 2],
    codes: [Vec<u64>; 2],
}

impl CodeIds {
    fn id(&mut self, field: CodeField, code: u64) -> u32 {
        let f = field as usize;
        let next = self.codes[f].len() as u32;
        let id = *self.ids[f].entry(code).or_insert(next);
        if id == next {
            self.codes[f].push(code);
        }
        id
    }
}

type SharedCodes = Arc<Mutex<CodeIds>>;

fn lock(codes: &SharedCodes) -> std::sync::MutexGuard<'_, CodeIds> {
    // A poisoned table is still consistent: ids are only ever appended.
    codes.lock().unwrap_or_else(|e| e.into_inner())
}

/// The per-event lists of one customer.
#[derive(Debug, Clone, PartialEq)]
struct Lists {
    /// Purchases as (time µs, amount micro-units).
    purchases: Vec<(i64, i64)>,
    /// add_to_cart times (µs).
    carts: Vec<i64>,
    /// UTC days with any event; `last_day` is the latest pushed, so a run of events on one day
    /// pushes once.
    days: Vec<i32>,
    last_day: i32,
    rare: Vec<Rare>,
    /// Earliest event time (µs); `i64::MAX` before any. The first event before a cutoff, when
    /// there is one, is this one.
    first_us: i64,
}

impl Default for Lists {
    fn default() -> Self {
        Lists {
            purchases: Vec::new(),
            carts: Vec::new(),
            days: Vec::new(),
            last_day: i32::MIN,
            rare: Vec::new(),
            first_us: i64::MAX,
        }
    }
}

impl Lists {
    /// Sorts the lists; days and rare values become distinct (the earliest segment of each
    /// rare value is kept).
    fn finish(&mut self) {
        self.purchases.sort_unstable();
        self.carts.sort_unstable();
        self.days.sort_unstable();
        self.days.dedup();
        self.rare.sort_unstable();
        self.rare.dedup_by_key(|r| (r.field, r.id));
        // The lists grew by doubling during the scan and are only read from now on (through
        // the whole training in `run`): the spare capacity is given back.
        self.purchases.shrink_to_fit();
        self.carts.shrink_to_fit();
        self.days.shrink_to_fit();
        self.rare.shrink_to_fit();
    }

    fn absorb(&mut self, other: Lists) {
        self.first_us = self.first_us.min(other.first_us);
        self.purchases.extend(other.purchases);
        self.carts.extend(other.carts);
        self.days.extend(other.days);
        if self.days.len() > 256 {
            self.days.sort_unstable();
            self.days.dedup();
        }
        for r in other.rare {
            note_rare(&mut self.rare, r.field, r.id, r.seg);
        }
    }
}

/// Slot of a customer id not resolved yet.
const NO_SLOT: u32 = u32::MAX;

/// Accumulates every customer's history across the given cutoffs.
///
/// Customers get dense slots: a hash lookup per distinct id of each batch dictionary (not per
/// event), then flat per-slot arrays, so an event touches its customer's two cache lines and
/// list tails with no pointer chasing.
#[derive(Debug, Clone)]
pub struct HistoryAcc {
    cutoffs: Vec<i64>,
    /// Customer ids; an id's number is its slot.
    ids: IdTable,
    /// `cutoffs.len()` cells per slot.
    cells: Vec<Cell>,
    /// One per slot.
    lists: Vec<Lists>,
    codes: SharedCodes,
    /// The ids of the last batch and the slot of each (`NO_SLOT` until used).
    dict: Option<(IdsKey, Vec<u32>)>,
}

impl HistoryAcc {
    /// `cutoffs` in µs, ascending (at least one); events at or after the last cutoff are
    /// filtered out by the reader and must not be passed in.
    pub fn new(cutoffs: &[i64]) -> HistoryAcc {
        HistoryAcc {
            cutoffs: cutoffs.to_vec(),
            ids: IdTable::default(),
            cells: Vec::new(),
            lists: Vec::new(),
            codes: SharedCodes::default(),
            dict: None,
        }
    }

    /// `n` empty accumulators for the customer partitions of one scan. They share one value-id
    /// table, so [`Histories::from_parts`] needs no re-coding.
    pub fn partitions(cutoffs: &[i64], n: usize) -> Vec<HistoryAcc> {
        let first = HistoryAcc::new(cutoffs);
        let mut parts: Vec<HistoryAcc> = (1..n)
            .map(|_| HistoryAcc {
                codes: Arc::clone(&first.codes),
                ..HistoryAcc::new(cutoffs)
            })
            .collect();
        parts.insert(0, first);
        parts
    }

    fn slot(&mut self, hash: u64, id: &str) -> u32 {
        let (s, added) = self.ids.intern(hash, id);
        if added {
            self.lists.push(Lists::default());
            let n = self.cutoffs.len();
            self.cells.resize(self.cells.len() + n, Cell::default());
        }
        s
    }

    /// Adds one event to slot `slot`; `category` / `channel` are interned value ids.
    #[inline]
    fn apply(
        &mut self,
        slot: u32,
        t: i64,
        kind: EventKind,
        micros: i64,
        category: Option<u32>,
        channel: Option<u32>,
    ) {
        let n = self.cutoffs.len();
        let seg = if n == 1 {
            0
        } else {
            self.cutoffs.partition_point(|&c| c <= t).min(n - 1)
        };
        let base = slot as usize * n;
        let cells = &mut self.cells[base..base + n];
        let lists = &mut self.lists[slot as usize];
        let cell = &mut cells[seg];
        cell.seg.update(t, kind, micros);
        for (field, id) in [
            (CodeField::Category, category),
            (CodeField::Channel, channel),
        ] {
            match id {
                Some(id) if id < MASK_BITS => *cell.seg.bits_mut(field) |= 1 << id,
                Some(id) => note_rare(&mut lists.rare, field, id, seg as u32),
                None => {}
            }
        }
        for (cell, &c) in cells.iter_mut().zip(&self.cutoffs).skip(seg) {
            let d = c.saturating_sub(t); // > 0: the event is before this cutoff
            let r = &mut cell.recent;
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
        match kind {
            EventKind::Purchase => lists.purchases.push((t, micros)),
            EventKind::AddToCart => lists.carts.push(t),
            _ => {}
        }
        lists.first_us = lists.first_us.min(t);
        let day = t.div_euclid(DAY_US) as i32;
        if lists.last_day != day {
            lists.days.push(day);
            lists.last_day = day;
        }
    }

    /// Adds one event.
    pub fn update(&mut self, ev: &Event<'_>) {
        let slot = self.slot(value_code(ev.customer_id), ev.customer_id);
        let (category, channel) = {
            let mut codes = lock(&self.codes);
            (
                ev.category.map(|c| codes.id(CodeField::Category, c)),
                ev.channel.map(|c| codes.id(CodeField::Channel, c)),
            )
        };
        let micros = ev.amount.map_or(0, to_micros);
        self.apply(slot, ev.time_us, ev.kind, micros, category, channel);
    }

    /// Adds a batch of events: each distinct customer id, category and channel of the batch
    /// is resolved once.
    pub fn update_batch(&mut self, batch: &EventBatch<'_>) {
        let ids = batch.ids;
        let (key, mut slots) = match self.dict.take() {
            Some((key, slots)) if ids.same_as(&key) => (key, slots),
            _ => (ids.key(), vec![NO_SLOT; ids.len()]),
        };
        let (categories, channels): (Vec<u32>, Vec<u32>) = {
            let mut codes = lock(&self.codes);
            (
                batch
                    .category
                    .values
                    .iter()
                    .map(|&c| codes.id(CodeField::Category, c))
                    .collect(),
                batch
                    .channel
                    .values
                    .iter()
                    .map(|&c| codes.id(CodeField::Channel, c))
                    .collect(),
            )
        };
        for i in 0..batch.len() {
            let j = batch.customer[i];
            let slot = match slots[j as usize] {
                NO_SLOT => {
                    let s = self.slot(ids.hash(j), ids.get(j));
                    slots[j as usize] = s;
                    s
                }
                s => s,
            };
            // Only purchase and refund amounts are kept.
            let kind = batch.kind[i];
            let amount = batch.amount[i];
            let micros = match kind {
                EventKind::Purchase | EventKind::Refund if !amount.is_nan() => to_micros(amount),
                _ => 0,
            };
            self.apply(
                slot,
                batch.time_us[i],
                kind,
                micros,
                categories.get(batch.category.keys[i] as usize).copied(),
                channels.get(batch.channel.keys[i] as usize).copied(),
            );
        }
        self.dict = Some((key, slots));
    }

    /// Moves this partial's value ids onto `target`'s table.
    fn recode(&mut self, target: &SharedCodes) {
        let old: [Vec<u64>; 2] = {
            let codes = lock(&self.codes);
            codes.codes.clone()
        };
        let new: [Vec<u32>; 2] = {
            let mut t = lock(target);
            [CodeField::Category, CodeField::Channel]
                .map(|f| old[f as usize].iter().map(|&c| t.id(f, c)).collect())
        };
        let n = self.cutoffs.len();
        for (slot, lists) in self.lists.iter_mut().enumerate() {
            let cells = &mut self.cells[slot * n..(slot + 1) * n];
            let rare = std::mem::take(&mut lists.rare);
            let mut moved: Vec<Rare> = Vec::new();
            for (seg, cell) in cells.iter_mut().enumerate() {
                for field in [CodeField::Category, CodeField::Channel] {
                    let bits = std::mem::take(cell.seg.bits_mut(field));
                    for b in (0..MASK_BITS).filter(|b| bits & (1u32 << b) != 0) {
                        moved.push(Rare {
                            field,
                            id: b,
                            seg: seg as u32,
                        });
                    }
                }
            }
            for r in moved.into_iter().chain(rare) {
                let id = new[r.field as usize][r.id as usize];
                if id < MASK_BITS {
                    *cells[r.seg as usize].seg.bits_mut(r.field) |= 1 << id;
                } else {
                    note_rare(&mut lists.rare, r.field, id, r.seg);
                }
            }
        }
        self.codes = Arc::clone(target);
        self.dict = None;
    }

    /// Customers sorted by id (byte order): the deterministic order of every output.
    pub fn finish(self) -> Histories {
        Histories::from_parts(vec![self])
    }
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
    fn a_cell_is_96_bytes() {
        // `run` keeps four a customer: the scan's peak memory (docs/benchmarks.md, issue 12).
        assert_eq!(std::mem::size_of::<Cell>(), 96);
        assert_eq!(std::mem::size_of::<Segment>(), 80);
    }

    #[test]
    fn purchase_totals_of_a_span_come_from_the_purchase_list() {
        let d = |day: i64| day * DAY_US;
        let cutoffs = [d(10), d(20), d(30)];
        let events = [
            ev("a", 5.0, EventKind::Purchase, Some(10.0)),
            ev("a", 15.0, EventKind::Purchase, Some(20.0)),
            ev("a", 16.0, EventKind::Refund, Some(5.0)),
            ev("a", 25.0, EventKind::Purchase, Some(40.0)),
            ev("a", 26.0, EventKind::PageView, None),
        ];
        let h = histories_from_events(&cutoffs, &events);
        let a = h.customer(0);
        let w = a.between(0, 1); // [day 10, day 20)
        assert_eq!((w.count(EventKind::Purchase), w.net_spend()), (1, 15.0));
        let w = a.between(0, 2); // [day 10, day 30)
        assert_eq!((w.count(EventKind::Purchase), w.net_spend()), (2, 55.0));
        // Past the last cutoff: the segments there are, [day 20, day 30).
        let w = a.between(1, 5);
        assert_eq!((w.n_events(), w.net_spend()), (2, 40.0));
        assert_eq!(a.window(1).map(|w| w.net_spend()), Some(40.0));
        assert_eq!(a.window(2), None);
        let f = a.features(1, d(20)).expect("events before day 20");
        assert_eq!(f.avg_order_value, Some(15.0));
        assert_eq!(f.max_order_value, Some(20.0));
        assert_eq!(f.refund_ratio, 5.0 / 30.0);
        assert_eq!(f.monetary_total, 25.0);
        assert_eq!(f.tenure_days, 15.0);
        let f = a.features(0, d(10)).expect("an event before day 10");
        assert_eq!((f.n_purchases, f.max_order_value), (1, Some(10.0)));
        assert_eq!((f.refund_ratio, f.tenure_days), (0.0, 5.0));
    }

    #[test]
    fn overlapping_parts_fold_into_the_sequential_result() {
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
        let merged = Histories::from_parts(vec![right, left]);
        for k in 0..2 {
            assert_eq!(whole.features(k), merged.features(k));
        }
    }

    /// More distinct categories than a mask holds, seen in different orders by two parts with
    /// their own value-id tables: one side is re-coded and the counts stay exact.
    #[test]
    fn parts_with_own_value_ids_are_recoded() {
        let cutoffs = [30 * DAY_US, 60 * DAY_US];
        let events: Vec<Event<'_>> = (0..600)
            .map(|i| {
                let mut e = ev(
                    ["a", "b"][i % 2],
                    (i % 59) as f64,
                    EventKind::PageView,
                    None,
                );
                e.category = Some(((i * 37) % 150) as u64);
                e.channel = Some((i % 70) as u64);
                e
            })
            .collect();
        let whole = histories_from_events(&cutoffs, &events);
        let mut left = HistoryAcc::new(&cutoffs);
        let mut right = HistoryAcc::new(&cutoffs);
        for (_, e) in events.iter().enumerate().rev().filter(|(i, _)| i % 3 == 0) {
            left.update(e);
        }
        for (_, e) in events.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
            right.update(e);
        }
        assert!(left.lists.len() == 2 && right.lists.len() == 2);
        let merged = Histories::from_parts(vec![left, right]);
        for k in 0..2 {
            let (a, b) = (whole.features(k), merged.features(k));
            assert_eq!(a, b);
            // Hand count: distinct categories of customer "a" before the cutoff.
            let mut seen: Vec<u64> = events
                .iter()
                .filter(|e| e.customer_id == "a" && e.time_us < cutoffs[k])
                .filter_map(|e| e.category)
                .collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(a.rows[0].n_categories, seen.len() as u64);
            assert!(seen.len() > 64, "only {} categories", seen.len());
        }
    }
}
