//! The scan's result: every customer's history in customer-id order ([`Histories`], built by
//! folding the accumulators' partitions), taken apart a partition at a time ([`HistoryPart`],
//! so a pass can free what it has read), and the feature rows at one cutoff ([`FeatureSet`]).

use super::*;

/// The accumulated state of one partition of customers.
#[derive(Debug, Clone, Default)]
struct Part {
    ids: IdTable,
    cells: Vec<Cell>,
    lists: Vec<Lists>,
}

/// Every customer's history, sorted by customer id.
#[derive(Debug, Clone)]
pub struct Histories {
    pub cutoffs: Vec<i64>,
    /// (partition, slot) of every customer, in id order (bytes).
    order: Vec<(u32, u32)>,
    parts: Vec<Part>,
}

impl Histories {
    /// Finishes accumulators over the same cutoffs: normally the disjoint customer partitions
    /// of one scan; a customer found in several is combined into one history.
    pub fn from_parts(mut accs: Vec<HistoryAcc>) -> Histories {
        let cutoffs = accs.first().map(|a| a.cutoffs.clone()).unwrap_or_default();
        let n = cutoffs.len();
        if let Some((first, rest)) = accs.split_first_mut() {
            for acc in rest.iter_mut() {
                assert_eq!(acc.cutoffs, first.cutoffs, "parts with different cutoffs");
                if !Arc::ptr_eq(&acc.codes, &first.codes) {
                    acc.recode(&first.codes);
                }
            }
        }
        let mut parts: Vec<Part> = accs
            .into_iter()
            .map(|acc| Part {
                ids: acc.ids,
                cells: acc.cells,
                lists: acc.lists,
            })
            .collect();
        let text = |&(p, s): &(u32, u32)| parts[p as usize].ids.get(s);
        let mut order: Vec<(u32, u32)> = (0..parts.len())
            .flat_map(|p| (0..parts[p].ids.len()).map(move |s| (p as u32, s as u32)))
            .collect();
        order.par_sort_unstable_by(|a, b| text(a).cmp(text(b)));
        // The same id in two parts (never from a scan, whose parts are disjoint): the later
        // history is folded into the first.
        let mut unique: Vec<(u32, u32)> = Vec::with_capacity(order.len());
        let mut folds: Vec<((u32, u32), (u32, u32))> = Vec::new();
        for at in order {
            match unique.last() {
                Some(last) if text(last) == text(&at) => folds.push((*last, at)),
                _ => unique.push(at),
            }
        }
        for ((lp, ls), (p, s)) in folds {
            let (lp, ls, p, s) = (lp as usize, ls as usize, p as usize, s as usize);
            let cells: Vec<Cell> = parts[p].cells[s * n..(s + 1) * n].to_vec();
            let lists = std::mem::take(&mut parts[p].lists[s]);
            for (a, b) in parts[lp].cells[ls * n..(ls + 1) * n].iter_mut().zip(&cells) {
                a.add(b);
            }
            parts[lp].lists[ls].absorb(lists);
        }
        // The per-slot arrays keep their capacity: shrinking one copies it (the old and the new
        // array both resident for a moment: the run's peak, +82 MB of cells on the bench
        // file), while the unused capacity of a large allocation is never touched, so never
        // resident.
        parts.par_iter_mut().for_each(|part| {
            part.lists.iter_mut().for_each(Lists::finish);
        });
        Histories {
            cutoffs,
            order: unique,
            parts,
        }
    }
}

/// One partition of customers taken out of [`Histories`] ([`Histories::into_parts`]), so a
/// pass over the customers can free each partition's memory once it has read it.
#[derive(Debug)]
pub struct HistoryPart {
    n_cutoffs: usize,
    cutoffs: Vec<i64>,
    part: Part,
    /// Each slot's position in customer-id order.
    rank: Vec<u32>,
}

impl HistoryPart {
    /// Customers in this partition.
    pub fn len(&self) -> usize {
        self.rank.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rank.is_empty()
    }

    /// Slot `s`'s position in customer-id order (its row in [`Histories`]' order).
    pub fn rank(&self, s: usize) -> usize {
        self.rank[s] as usize
    }

    /// Id of slot `s`.
    pub fn id(&self, s: usize) -> &str {
        self.part.ids.get(s as u32)
    }

    /// History of slot `s`.
    pub fn customer(&self, s: usize) -> CustomerHistory<'_> {
        let n = self.n_cutoffs;
        CustomerHistory {
            cutoffs: &self.cutoffs,
            cells: &self.part.cells[s * n..(s + 1) * n],
            lists: &self.part.lists[s],
        }
    }
}

/// One row per customer with any event before the cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    pub cutoff_us: i64,
    pub customer_ids: Vec<Box<str>>,
    pub rows: Vec<Features>,
    /// Index of each row's customer in [`Histories`] (id order).
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
}

impl Histories {
    /// Customers.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The partitions, each with its slots' positions in id order (a customer folded into
    /// another partition's history is not in its own any more).
    pub fn into_parts(self) -> Vec<HistoryPart> {
        let n_cutoffs = self.cutoffs.len();
        let cutoffs = self.cutoffs;
        let mut rank: Vec<Vec<u32>> = self
            .parts
            .iter()
            .map(|p| vec![u32::MAX; p.ids.len()])
            .collect();
        for (i, &(p, s)) in self.order.iter().enumerate() {
            rank[p as usize][s as usize] = i as u32;
        }
        self.parts
            .into_iter()
            .zip(rank)
            .map(|(part, rank)| {
                // Slots folded away (never from a scan) are left out.
                let keep: Vec<usize> = (0..rank.len()).filter(|&s| rank[s] != u32::MAX).collect();
                if keep.len() == rank.len() {
                    return HistoryPart {
                        n_cutoffs,
                        cutoffs: cutoffs.clone(),
                        part,
                        rank,
                    };
                }
                let mut ids = IdTable::default();
                let mut cells = Vec::with_capacity(keep.len() * n_cutoffs);
                let mut lists = Vec::with_capacity(keep.len());
                let mut part = part;
                for &s in &keep {
                    let id = part.ids.get(s as u32).to_string();
                    ids.intern(value_code(&id), &id);
                    cells.extend_from_slice(&part.cells[s * n_cutoffs..(s + 1) * n_cutoffs]);
                    lists.push(std::mem::take(&mut part.lists[s]));
                }
                HistoryPart {
                    n_cutoffs,
                    cutoffs: cutoffs.clone(),
                    part: Part { ids, cells, lists },
                    rank: keep.iter().map(|&s| rank[s]).collect(),
                }
            })
            .collect()
    }

    /// Id of customer `i` (in id order).
    pub fn id(&self, i: usize) -> &str {
        let (p, s) = self.order[i];
        self.parts[p as usize].ids.get(s)
    }

    /// History of customer `i` (in id order).
    pub fn customer(&self, i: usize) -> CustomerHistory<'_> {
        let n = self.cutoffs.len();
        let (p, s) = self.order[i];
        let (part, s) = (&self.parts[p as usize], s as usize);
        CustomerHistory {
            cutoffs: &self.cutoffs,
            cells: &part.cells[s * n..(s + 1) * n],
            lists: &part.lists[s],
        }
    }

    /// Features at cutoff `k` for every customer with an event before it.
    pub fn features(&self, k: usize) -> FeatureSet {
        self.features_of(k, 0..self.len())
    }

    /// Features at cutoff `k` for customers `range` (in id order) with an event before it.
    pub fn features_of(&self, k: usize, range: std::ops::Range<usize>) -> FeatureSet {
        self.features_where(k, range, |_| true)
    }

    /// [`Histories::features_of`] for the customers who had bought before the cutoff (the
    /// models' population), without building the others' rows.
    pub fn buyers_of(&self, k: usize, range: std::ops::Range<usize>) -> FeatureSet {
        self.features_where(k, range, Features::has_purchase)
    }

    fn features_where(
        &self,
        k: usize,
        range: std::ops::Range<usize>,
        keep: impl Fn(&Features) -> bool + Sync,
    ) -> FeatureSet {
        let cutoff_us = self.cutoffs[k];
        let rows: Vec<(usize, Features)> = range
            .into_par_iter()
            .filter_map(|i| self.customer(i).features(k, cutoff_us).map(|r| (i, r)))
            .filter(|(_, r)| keep(r))
            .collect();
        self.feature_set(cutoff_us, rows)
    }

    fn feature_set(&self, cutoff_us: i64, rows: Vec<(usize, Features)>) -> FeatureSet {
        let mut set = FeatureSet {
            cutoff_us,
            customer_ids: Vec::with_capacity(rows.len()),
            rows: Vec::with_capacity(rows.len()),
            index: Vec::with_capacity(rows.len()),
        };
        for (i, r) in rows {
            set.customer_ids.push(self.id(i).into());
            set.rows.push(r);
            set.index.push(i);
        }
        set
    }
}

/// Builds histories single-threaded from a slice of events (tests and small inputs).
/// (Through the same partitioned batch path as a scan.)
pub fn histories_from_events(cutoffs: &[i64], events: &[Event<'_>]) -> Histories {
    const PARTS: usize = 4;
    let batches = EventBatches::new(events, PARTS);
    let mut parts = HistoryAcc::partitions(cutoffs, PARTS);
    for (p, acc) in parts.iter_mut().enumerate() {
        acc.update_batch(&batches.batch(p));
    }
    Histories::from_parts(parts)
}
