//! The customer ids of one partition: their text in one arena and a hash table of slot numbers,
//! so a lookup compares bytes that sit together in memory instead of chasing one heap
//! allocation per id.

use hashbrown::HashTable;

/// Interned customer ids, numbered 0, 1, 2, … in order of first sighting.
#[derive(Debug, Clone, Default)]
pub struct IdTable {
    text: String,
    /// End of id `k` in `text` (its start is the end of `k − 1`).
    ends: Vec<usize>,
    /// (hash, number) of every id.
    table: HashTable<(u64, u32)>,
}

impl IdTable {
    /// Ids held.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Id number `k`.
    pub fn get(&self, k: u32) -> &str {
        let k = k as usize;
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        &self.text[start..self.ends[k]]
    }

    /// The number of `id` (whose hash is `hash`), adding it if new; `true` when added.
    pub fn intern(&mut self, hash: u64, id: &str) -> (u32, bool) {
        let Self { text, ends, table } = self;
        let text_of = |k: u32| {
            let k = k as usize;
            let start = if k == 0 { 0 } else { ends[k - 1] };
            &text[start..ends[k]]
        };
        if let Some(&(_, k)) = table.find(hash, |&(h, k)| h == hash && text_of(k) == id) {
            return (k, false);
        }
        let k = ends.len() as u32;
        table.insert_unique(hash, (hash, k), |&(h, _)| h);
        text.push_str(id);
        ends.push(text.len());
        (k, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_ids_in_order_of_first_sighting() {
        let mut t = IdTable::default();
        // Equal hashes for different ids: the text decides.
        assert_eq!(t.intern(7, "b"), (0, true));
        assert_eq!(t.intern(7, "a"), (1, true));
        assert_eq!(t.intern(7, "b"), (0, false));
        assert_eq!(t.intern(9, ""), (2, true));
        assert_eq!(t.intern(7, "a"), (1, false));
        assert_eq!((t.get(0), t.get(1), t.get(2), t.len()), ("b", "a", "", 3));
    }
}
