//! The reader–accumulator contract: what the scan hands an accumulator ([`EventBatch`]: the
//! valid rows of one customer partition, column by column, with ids, channels and categories
//! as numbers into the batch's distinct values), how customers are split into partitions
//! ([`partition_of`]), the stable value codes ([`value_code`]), and the same batches built from
//! events held in memory ([`EventBatches`], for tests, benchmarks and small inputs). The reader
//! (`io::read`) produces these and the feature accumulators (`features`) consume them; neither
//! needs the other's internals.

use std::sync::Arc;

use arrow_array::{Array, StringArray};
use rustc_hash::FxHashMap;

use crate::events::EventKind;

/// A validated row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    pub customer_id: &'a str,
    /// Microseconds since the Unix epoch, UTC.
    pub time_us: i64,
    pub kind: EventKind,
    /// Finite, non-negative, within the configured range; `None` when absent.
    pub amount: Option<f64>,
    /// Code of the channel / category text ([`value_code`]); `None` when absent.
    pub channel: Option<u64>,
    pub category: Option<u64>,
}

/// A stable code for a text value (FxHash is deterministic across runs and platforms).
pub fn value_code(s: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

/// The customer ids of one batch (its dictionary), split into partitions by a hash of the id:
/// every row of a customer lands in the same partition, whichever batch or file it is in.
#[derive(Debug)]
pub struct IdDictionary {
    pub(crate) values: StringArray,
    /// Per partition: (index into `values`, [`value_code`]) of the ids that belong to it,
    /// side by side so that a partition's ids are read front to back.
    picks: Vec<Vec<(u32, u64)>>,
    /// Per value: its partition and its position in that partition's `picks`.
    pub(crate) place: Vec<(u32, u32)>,
}

impl IdDictionary {
    pub(crate) fn new(values: StringArray, parts: usize) -> IdDictionary {
        let mut picks = vec![Vec::new(); parts];
        let place = (0..values.len())
            .map(|j| {
                let h = value_code(values.value(j));
                let p = partition_of_hash(h, parts);
                picks[p].push((j as u32, h));
                (p as u32, (picks[p].len() - 1) as u32)
            })
            .collect();
        IdDictionary {
            values,
            picks,
            place,
        }
    }
}

/// The partition (of `parts`) a customer id belongs to.
pub fn partition_of(id: &str, parts: usize) -> usize {
    partition_of_hash(value_code(id), parts)
}

fn partition_of_hash(hash: u64, parts: usize) -> usize {
    // The high half of the hash: the low bits pick hash-table buckets downstream.
    ((hash >> 32) % parts.max(1) as u64) as usize
}

/// The distinct customer ids an [`EventBatch`] refers to: one partition of a batch dictionary.
#[derive(Debug, Clone, Copy)]
pub struct Ids<'a> {
    dict: &'a Arc<IdDictionary>,
    part: usize,
}

impl<'a> Ids<'a> {
    /// Distinct ids.
    pub fn len(&self) -> usize {
        self.dict.picks[self.part].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Id number `k`.
    pub fn get(&self, k: u32) -> &'a str {
        let dict: &'a IdDictionary = self.dict;
        dict.values
            .value(dict.picks[self.part][k as usize].0 as usize)
    }

    /// [`value_code`] of id number `k`.
    pub fn hash(&self, k: u32) -> u64 {
        self.dict.picks[self.part][k as usize].1
    }

    /// Whether `self` and `other` are the same ids, numbered the same way (so a mapping from
    /// id numbers computed for one holds for the other).
    pub fn same_as(&self, other: &IdsKey) -> bool {
        Arc::ptr_eq(self.dict, &other.0) && self.part == other.1
    }

    /// A key that keeps these ids alive and identifies them (see [`Ids::same_as`]).
    pub fn key(&self) -> IdsKey {
        IdsKey(Arc::clone(self.dict), self.part)
    }
}

/// Identity of an [`Ids`], for caches.
#[derive(Debug, Clone)]
pub struct IdsKey(Arc<IdDictionary>, usize);

/// Valid rows of one record batch for one customer partition, column by column: what a scan
/// hands an accumulator.
///
/// Customer ids, channels and categories come as numbers into the batch's distinct values (the
/// Parquet dictionary when the column has one), so an accumulator can resolve each distinct
/// value once instead of once per row.
#[derive(Debug, Clone, Copy)]
pub struct EventBatch<'a> {
    /// Distinct customer ids; `customer[i]` numbers them.
    pub ids: Ids<'a>,
    pub customer: &'a [u32],
    /// Microseconds since the Unix epoch, UTC.
    pub time_us: &'a [i64],
    pub kind: &'a [EventKind],
    /// Finite, non-negative and within range; NaN when absent.
    pub amount: &'a [f64],
    pub channel: Codes<'a>,
    pub category: Codes<'a>,
}

/// A coded text column of an [`EventBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Codes<'a> {
    /// Code ([`value_code`]) of each distinct value.
    pub values: &'a [u64],
    /// Per row: index into `values`, or [`Codes::NONE`] when the value is absent.
    pub keys: &'a [u32],
}

impl Codes<'_> {
    /// Key of an absent value.
    pub const NONE: u32 = u32::MAX;

    /// The code of row `i`.
    pub fn get(&self, i: usize) -> Option<u64> {
        self.values.get(self.keys[i] as usize).copied()
    }
}

impl<'a> EventBatch<'a> {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.time_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time_us.is_empty()
    }

    /// Row `i` as one [`Event`].
    pub fn event(&self, i: usize) -> Event<'a> {
        let amount = self.amount[i];
        Event {
            customer_id: self.ids.get(self.customer[i]),
            time_us: self.time_us[i],
            kind: self.kind[i],
            amount: (!amount.is_nan()).then_some(amount),
            channel: self.channel.get(i),
            category: self.category.get(i),
        }
    }

    /// The rows as [`Event`]s, in order.
    pub fn events(&self) -> impl Iterator<Item = Event<'a>> + '_ {
        (0..self.len()).map(|i| self.event(i))
    }
}

/// Valid rows of a batch, column by column (buffers reused from batch to batch).
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub(crate) part: Vec<u32>,
    pub(crate) customer: Vec<u32>,
    pub(crate) time_us: Vec<i64>,
    pub(crate) kind: Vec<EventKind>,
    pub(crate) amount: Vec<f64>,
    pub(crate) channel: Vec<u32>,
    pub(crate) category: Vec<u32>,
}

impl Rows {
    pub(crate) fn reserve(&mut self, n: usize) {
        self.customer.reserve(n);
        self.time_us.reserve(n);
        self.kind.reserve(n);
        self.amount.reserve(n);
        self.channel.reserve(n);
        self.category.reserve(n);
    }

    pub(crate) fn clear(&mut self) {
        self.part.clear();
        self.customer.clear();
        self.time_us.clear();
        self.kind.clear();
        self.amount.clear();
        self.channel.clear();
        self.category.clear();
    }

    /// Rows `r` as the [`EventBatch`] of partition `part`, with the dictionaries they refer to.
    pub(crate) fn batch<'a>(
        &'a self,
        r: std::ops::Range<usize>,
        part: usize,
        dict: &'a Arc<IdDictionary>,
        channel: &'a [u64],
        category: &'a [u64],
    ) -> EventBatch<'a> {
        EventBatch {
            ids: Ids { dict, part },
            customer: &self.customer[r.clone()],
            time_us: &self.time_us[r.clone()],
            kind: &self.kind[r.clone()],
            amount: &self.amount[r.clone()],
            channel: Codes {
                values: channel,
                keys: &self.channel[r.clone()],
            },
            category: Codes {
                values: category,
                keys: &self.category[r],
            },
        }
    }

    /// Row numbers grouped by partition (stable) into `order`; returns where each
    /// partition's rows start in it.
    pub(crate) fn order_by_part(&self, parts: usize, order: &mut Vec<u32>) -> Vec<usize> {
        let mut start = vec![0usize; parts + 1];
        for &p in &self.part {
            start[p as usize + 1] += 1;
        }
        for p in 0..parts {
            start[p + 1] += start[p];
        }
        order.clear();
        order.resize(self.part.len(), 0);
        let mut next = start.clone();
        for (i, &p) in self.part.iter().enumerate() {
            order[next[p as usize]] = i as u32;
            next[p as usize] += 1;
        }
        start
    }

    /// Appends rows `picked` of `from`.
    pub(crate) fn extend_from(&mut self, from: &Rows, picked: &[u32]) {
        fn gather<T: Copy>(to: &mut Vec<T>, from: &[T], picked: &[u32]) {
            to.extend(picked.iter().map(|&i| from[i as usize]));
        }
        gather(&mut self.customer, &from.customer, picked);
        gather(&mut self.time_us, &from.time_us, picked);
        gather(&mut self.kind, &from.kind, picked);
        gather(&mut self.amount, &from.amount, picked);
        gather(&mut self.channel, &from.channel, picked);
        gather(&mut self.category, &from.category, picked);
    }
}

/// Events held in memory, split into customer partitions the way a scan splits them: for
/// tests, benchmarks and small inputs.
#[derive(Debug)]
pub struct EventBatches {
    ids: Arc<IdDictionary>,
    channel: Arc<[u64]>,
    category: Arc<[u64]>,
    rows: Rows,
    /// Where each partition's rows start in `rows` (and where the last ends).
    start: Vec<usize>,
}

impl EventBatches {
    /// `events` (already valid) into `parts` partitions.
    pub fn new(events: &[Event<'_>], parts: usize) -> EventBatches {
        let parts = parts.max(1);
        let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
        let mut names: Vec<&str> = Vec::new();
        let mut codes = [FxHashMap::<u64, u32>::default(), FxHashMap::default()];
        let mut values: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        let mut key = |f: usize, code: Option<u64>| match code {
            Some(c) => *codes[f].entry(c).or_insert_with(|| {
                values[f].push(c);
                (values[f].len() - 1) as u32
            }),
            None => Codes::NONE,
        };
        let mut all = Rows::default();
        let mut customers = Vec::with_capacity(events.len());
        for e in events {
            customers.push(*ids.entry(e.customer_id).or_insert_with(|| {
                names.push(e.customer_id);
                (names.len() - 1) as u32
            }));
            all.time_us.push(e.time_us);
            all.kind.push(e.kind);
            all.amount.push(e.amount.unwrap_or(f64::NAN));
            all.channel.push(key(0, e.channel));
            all.category.push(key(1, e.category));
        }
        let dict = IdDictionary::new(StringArray::from_iter_values(names), parts);
        for c in customers {
            let (part, local) = dict.place[c as usize];
            all.part.push(part);
            all.customer.push(local);
        }
        let mut order = Vec::new();
        let start = all.order_by_part(parts, &mut order);
        let mut rows = Rows::default();
        rows.extend_from(&all, &order);
        let [channel, category] = values;
        EventBatches {
            ids: Arc::new(dict),
            channel: channel.into(),
            category: category.into(),
            rows,
            start,
        }
    }

    /// Partitions.
    pub fn parts(&self) -> usize {
        self.start.len() - 1
    }

    /// The events of partition `p`.
    pub fn batch(&self, p: usize) -> EventBatch<'_> {
        self.rows.batch(
            self.start[p]..self.start[p + 1],
            p,
            &self.ids,
            &self.channel,
            &self.category,
        )
    }
}
