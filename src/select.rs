//! Exact rank selection in bounded memory over keys that can be scanned again and again (the
//! cut points of `churnclv cuts`, `stages::sharded::cuts_of_raw`): the key at a given rank of
//! a column, found in a few passes without holding the column.
//!
//! A key is a byte string whose byte order is the ranking's order (the cut points encode
//! (value, customer_id) as the f64's order-preserving u64, big-endian, then the id's bytes).
//! The first pass counts every column's keys in 66,049 ranges — the key's first two bytes
//! (each byte or "ended") — and the ranks wanted are known once the counts are; each rank's
//! range is then known, with its offset. A range is a key prefix. Each later pass either
//! counts the keys of a range by their next two bytes (a narrower range), or, once a range
//! holds at most `budget` keys, keeps them and sorts them: the key at rank − offset is the
//! answer. Each range's smallest and largest key are kept with its count, so the next prefix
//! is their common prefix: a range of one tied value (millions of customers with the same
//! purchase days) skips straight to the bytes where its ids differ. Memory: one count table
//! (~2.6 MB with its bounds) per distinct range being refined, and at most `budget` keys per
//! range being sorted — whatever the number of keys.

use std::collections::BTreeMap;

/// Two key bytes, each 0 when the key has ended or 1 + the byte: 257² ranges.
const RANGES: usize = 257 * 257;

/// The range of `key` at `depth` (byte order of keys = order of ranges).
fn digit(key: &[u8], depth: usize) -> usize {
    let at = |i: usize| key.get(i).map_or(0, |&b| b as usize + 1);
    at(depth) * 257 + at(depth + 1)
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A rank wanted: the key at 0-based `rank` of `column`, ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub column: usize,
    pub rank: u64,
}

/// How the selection went (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Passes {
    /// Scans of the keys, the counting pass included.
    pub scans: usize,
    /// The most keys held at once for sorting.
    pub held: usize,
}

/// Counts of one range's keys by their next two bytes, each with its smallest and largest key.
struct Counts {
    n: Vec<u64>,
    min: Vec<Box<[u8]>>,
    max: Vec<Box<[u8]>>,
}

impl Counts {
    fn new() -> Counts {
        Counts {
            n: vec![0; RANGES],
            min: vec![Box::default(); RANGES],
            max: vec![Box::default(); RANGES],
        }
    }

    fn add(&mut self, key: &[u8], depth: usize) {
        let d = digit(key, depth);
        self.n[d] += 1;
        // Keys are never empty here (8 value bytes first): an empty bound is "none yet".
        if self.min[d].is_empty() || key < &self.min[d][..] {
            self.min[d] = key.into();
        }
        if self.max[d].is_empty() || key > &self.max[d][..] {
            self.max[d] = key.into();
        }
    }

    fn total(&self) -> u64 {
        self.n.iter().sum()
    }
}

/// Where a target stands: its range (prefix, the keys before it in its column, the keys in
/// it), or its key once found.
#[derive(Debug, Clone)]
struct State {
    prefix: Vec<u8>,
    offset: u64,
    count: u64,
    found: Option<Box<[u8]>>,
}

enum Work {
    Count(Counts),
    Hold(Vec<Box<[u8]>>),
}

/// Narrows `state` (a range counted by `counts` at its prefix's length) to the range that
/// holds `rank`.
fn narrow(state: &mut State, counts: &Counts, rank: u64) {
    let mut before = state.offset;
    for d in 0..RANGES {
        let n = counts.n[d];
        if rank < before + n {
            let (lo, hi) = (&counts.min[d], &counts.max[d]);
            state.offset = before;
            state.count = n;
            state.prefix = lo[..common_prefix(lo, hi)].to_vec();
            // One key, or (keys being unique) nothing left to split.
            if n == 1 || lo == hi {
                state.found = Some(lo.clone());
            }
            return;
        }
        before += n;
    }
}

/// The keys at `targets(counts)` — `counts[c]` the number of keys of column `c` —, by
/// scanning again and again: `scan(emit)` must call `emit(column, key)` for every key of
/// every column, the same keys on every call (any order), keys unique within a column.
/// Ranks past a column's end are not answered (`None`).
pub fn select<E>(
    columns: usize,
    targets: impl FnOnce(&[u64]) -> Vec<Target>,
    budget: usize,
    mut scan: impl FnMut(&mut dyn FnMut(usize, &[u8])) -> Result<(), E>,
) -> Result<(Vec<Option<Box<[u8]>>>, Passes), E> {
    let budget = budget.max(1) as u64;
    let mut passes = Passes::default();
    // The counting pass: every column from its first bytes.
    let mut first: Vec<Counts> = (0..columns).map(|_| Counts::new()).collect();
    scan(&mut |c, key| first[c].add(key, 0))?;
    passes.scans += 1;
    let counts: Vec<u64> = first.iter().map(Counts::total).collect();
    let targets = targets(&counts);
    let mut states: Vec<State> = targets
        .iter()
        .map(|t| {
            let mut s = State {
                prefix: Vec::new(),
                offset: 0,
                count: counts[t.column],
                found: None,
            };
            if t.rank < s.count {
                narrow(&mut s, &first[t.column], t.rank);
            }
            s
        })
        .collect();
    drop(first);
    loop {
        // One piece of work per (column, prefix) still open: count its keys if there are
        // more than `budget`, else hold them.
        let mut work: BTreeMap<(usize, Vec<u8>), Work> = BTreeMap::new();
        for (t, s) in targets.iter().zip(&states) {
            if s.found.is_none() && t.rank < counts[t.column] {
                work.entry((t.column, s.prefix.clone())).or_insert_with(|| {
                    if s.count <= budget {
                        Work::Hold(Vec::new())
                    } else {
                        Work::Count(Counts::new())
                    }
                });
            }
        }
        if work.is_empty() {
            break;
        }
        let mut by_column: Vec<Vec<(&[u8], &mut Work)>> = (0..columns).map(|_| vec![]).collect();
        for ((c, prefix), w) in work.iter_mut() {
            by_column[*c].push((prefix.as_slice(), w));
        }
        scan(&mut |c, key| {
            for (prefix, w) in by_column[c].iter_mut() {
                if key.starts_with(prefix) {
                    match w {
                        Work::Count(counts) => counts.add(key, prefix.len()),
                        Work::Hold(keys) => keys.push(key.into()),
                    }
                }
            }
        })?;
        passes.scans += 1;
        drop(by_column);
        let held: usize = work
            .values()
            .map(|w| match w {
                Work::Hold(keys) => keys.len(),
                Work::Count(_) => 0,
            })
            .sum();
        passes.held = passes.held.max(held);
        for w in work.values_mut() {
            if let Work::Hold(keys) = w {
                keys.sort_unstable();
            }
        }
        for (t, s) in targets.iter().zip(states.iter_mut()) {
            if s.found.is_some() || t.rank >= counts[t.column] {
                continue;
            }
            match work.get(&(t.column, s.prefix.clone())) {
                Some(Work::Hold(keys)) => {
                    let i = (t.rank - s.offset) as usize;
                    s.found = Some(keys.get(i).cloned().unwrap_or_default());
                }
                Some(Work::Count(c)) => narrow(s, c, t.rank),
                None => {}
            }
        }
    }
    Ok((states.into_iter().map(|s| s.found).collect(), passes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 33
        };
        // Heavy ties in the first bytes, ids of different lengths after them.
        (0..n)
            .map(|i| {
                let mut k = vec![0x80, (next() % 3) as u8];
                k.extend(format!("c{}", i * 7 % (n + 3)).bytes());
                k
            })
            .collect()
    }

    #[test]
    fn every_rank_equals_the_sorted_keys_whatever_the_budget() {
        for (n, budget) in [(1, 1), (10, 1), (300, 2), (300, 7), (300, 1000), (2000, 3)] {
            let ks = keys(n, n as u64);
            let mut sorted = ks.clone();
            sorted.sort();
            let want: Vec<Target> = (0..n as u64 + 2)
                .map(|rank| Target { column: 0, rank })
                .collect();
            let (got, passes) = select(
                1,
                |c| {
                    assert_eq!(c, [n as u64]);
                    want.clone()
                },
                budget,
                |emit| {
                    ks.iter().for_each(|k| emit(0, k));
                    Ok::<(), ()>(())
                },
            )
            .expect("select");
            for (rank, g) in got.iter().enumerate() {
                assert_eq!(
                    g.as_deref(),
                    sorted.get(rank).map(|k| &k[..]),
                    "n {n} rank {rank}"
                );
            }
            assert!(passes.held <= budget.max(1) * want.len(), "{passes:?}");
        }
    }
}
