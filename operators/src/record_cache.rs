//! The record cache of an aggregation: write coalescing between a store and
//! the operators downstream of it.
//!
//! Why: a word-count task that sees "the" a thousand times between two
//! commits would otherwise send a thousand updates downstream (and to the
//! output topic), each superseded by the next. The cache keeps the latest
//! value per key and forwards it once: at the next commit (the processor's
//! `flush`, which the runtime calls before every commit) or when the cache
//! grows past its byte budget (`cache.max.bytes.buffering`). The store
//! itself is written on every update, so reads and the changelog are never
//! stale; the store's write set coalesces changelog records on its own.
//!
//! Order: a key takes its place in the queue at its first update since it
//! was last forwarded and keeps it while it is updated again; eviction and
//! flush forward from the oldest place. Every forwarded value is the key's
//! latest, so a key's forwarded values only move forward.
//!
//! Reads: the cache also answers reads, so a hot key is not read (and
//! deserialized) from the store on every update. Entries forwarded at a
//! flush stay as *clean* entries (their value is what the store holds once
//! the commit is done) until the budget is needed: when dirty and clean
//! entries together outgrow it, the clean ones are dropped first, all at
//! once (cheap, nothing to forward), then the oldest dirty ones are
//! forwarded. After an aborted commit (`discard`) both are dropped, since
//! the store goes back to its last committed state.
//!
//! The invariant this relies on: while a task lives, its aggregation is the
//! only writer of its store. The runtime restores a store only before the
//! processor's `init`, or for a task resumed in the same rebalance that
//! suspended it (when nobody else can have written the changelog); a
//! runtime that ever restored new records into a live task's store would
//! have to call `discard` on its processors first.
//!
//! Sizes are estimates: the serialized key and value plus a fixed overhead
//! per entry.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use kstreams_runtime::Headers;

/// Bytes counted per entry on top of its serialized key and value: the
/// entry, its index slot and the key held twice.
pub(crate) const ENTRY_OVERHEAD: usize = 64;

/// One cached key: its latest value, timestamp and headers.
pub(crate) struct CacheEntry<K, V> {
    pub key: K,
    pub value: V,
    pub timestamp: i64,
    pub headers: Headers,
    /// Estimated bytes of this entry.
    pub size: usize,
    /// Serialized size of the key (measured once).
    pub key_size: usize,
}

/// Latest value per key, in order of each key's first update (dirty
/// entries), plus forwarded values kept for reads (clean entries).
pub(crate) struct RecordCache<K, V> {
    /// Key → absolute position of its entry.
    index: HashMap<K, u64>,
    entries: VecDeque<CacheEntry<K, V>>,
    /// Absolute position of `entries[0]`.
    base: u64,
    bytes: usize,
    /// Forwarded entries kept for reads: key → (value, size, key size).
    clean: HashMap<K, (V, usize, usize)>,
    clean_bytes: usize,
}

impl<K: Hash + Eq + Clone, V> RecordCache<K, V> {
    pub fn new() -> Self {
        RecordCache {
            index: HashMap::new(),
            entries: VecDeque::new(),
            base: 0,
            bytes: 0,
            clean: HashMap::new(),
            clean_bytes: 0,
        }
    }

    /// The entry of `key`, to update in place. After changing an entry's
    /// size, call [`resized`](Self::resized).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut CacheEntry<K, V>> {
        let pos = *self.index.get(key)?;
        self.entries.get_mut((pos - self.base) as usize)
    }

    /// Accounts for an entry whose size changed from `old` to `new`.
    pub fn resized(&mut self, old: usize, new: usize) {
        self.bytes = self.bytes + new - old.min(self.bytes);
    }

    /// Adds an entry for a key that is not cached.
    pub fn insert(&mut self, entry: CacheEntry<K, V>) {
        debug_assert!(!self.index.contains_key(&entry.key));
        let pos = self.base + self.entries.len() as u64;
        self.index.insert(entry.key.clone(), pos);
        self.bytes += entry.size;
        self.entries.push_back(entry);
    }

    /// Removes and returns the oldest entry.
    pub fn pop_oldest(&mut self) -> Option<CacheEntry<K, V>> {
        let e = self.entries.pop_front()?;
        self.base += 1;
        self.index.remove(&e.key);
        self.bytes -= e.size.min(self.bytes);
        Some(e)
    }

    /// Drops every entry, dirty and clean, without forwarding it (after an
    /// aborted commit).
    pub fn clear(&mut self) {
        self.index.clear();
        self.base += self.entries.len() as u64;
        self.bytes = 0;
        self.entries.clear();
        self.clear_clean();
    }

    /// Removes the clean entry of `key`: `(value, size, key size)`.
    pub fn take_clean(&mut self, key: &K) -> Option<(V, usize, usize)> {
        let (value, size, key_size) = self.clean.remove(key)?;
        self.clean_bytes -= size.min(self.clean_bytes);
        Some((value, size, key_size))
    }

    /// Keeps a forwarded value for reads, if it fits in `budget` (total bytes).
    pub fn put_clean(&mut self, key: K, value: V, size: usize, key_size: usize, budget: usize) {
        if self.bytes + self.clean_bytes + size <= budget {
            self.clean_bytes += size;
            if let Some((_, old, _)) = self.clean.insert(key, (value, size, key_size)) {
                self.clean_bytes -= old.min(self.clean_bytes);
            }
        }
    }

    /// Drops every clean entry.
    pub fn clear_clean(&mut self) {
        self.clean.clear();
        self.clean_bytes = 0;
    }

    /// Estimated bytes of clean entries.
    pub fn clean_bytes(&self) -> usize {
        self.clean_bytes
    }

    /// Estimated bytes of dirty entries (not forwarded yet).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Estimated bytes of all entries, dirty and clean.
    pub fn total_bytes(&self) -> usize {
        self.bytes + self.clean_bytes
    }

    /// Removes every entry, oldest first.
    #[cfg(test)]
    fn drain(&mut self) -> Vec<CacheEntry<K, V>> {
        std::iter::from_fn(|| self.pop_oldest()).collect()
    }

    /// Number of keys held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: u64) -> CacheEntry<String, u64> {
        CacheEntry {
            key: key.to_string(),
            value,
            timestamp: 0,
            headers: Headers::default(),
            size: 10,
            key_size: key.len(),
        }
    }

    #[test]
    fn keeps_first_update_order_and_latest_value() {
        let mut c = RecordCache::new();
        c.insert(entry("a", 1));
        c.insert(entry("b", 1));
        c.get_mut(&"a".to_string()).unwrap().value = 2;
        c.insert(entry("c", 1));
        assert_eq!(c.bytes(), 30);
        let got: Vec<(String, u64)> = c.drain().into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(got, [("a".into(), 2), ("b".into(), 1), ("c".into(), 1)]);
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn pop_oldest_then_reinsert_goes_to_the_back() {
        let mut c = RecordCache::new();
        c.insert(entry("a", 1));
        c.insert(entry("b", 1));
        assert_eq!(c.pop_oldest().unwrap().key, "a");
        assert!(c.get_mut(&"a".to_string()).is_none());
        c.insert(entry("a", 5));
        c.get_mut(&"b".to_string()).unwrap().value = 7;
        let got: Vec<(String, u64)> = c.drain().into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(got, [("b".into(), 7), ("a".into(), 5)]);
        // Positions keep counting after a drain.
        c.insert(entry("z", 1));
        assert_eq!(c.get_mut(&"z".to_string()).unwrap().value, 1);
        c.resized(10, 25);
        assert_eq!(c.bytes(), 25);
        c.clear();
        assert!(c.pop_oldest().is_none());
    }

    #[test]
    fn clean_entries_serve_reads_within_the_budget_and_go_first() {
        let mut c: RecordCache<String, u64> = RecordCache::new();
        c.insert(entry("a", 1));
        c.put_clean("b".into(), 2, 10, 1, 100);
        c.put_clean("c".into(), 3, 95, 1, 100); // does not fit: not kept
        assert_eq!((c.bytes(), c.clean_bytes(), c.total_bytes()), (10, 10, 20));
        assert_eq!(c.take_clean(&"c".to_string()), None);
        assert_eq!(c.take_clean(&"b".to_string()), Some((2, 10, 1)));
        assert_eq!(c.take_clean(&"b".to_string()), None);
        c.put_clean("d".into(), 4, 10, 1, 100);
        c.clear_clean();
        assert_eq!(c.total_bytes(), 10);
        c.put_clean("e".into(), 5, 10, 1, 100);
        c.clear();
        assert_eq!((c.total_bytes(), c.len()), (0, 0));
        assert_eq!(c.take_clean(&"e".to_string()), None);
    }
}
