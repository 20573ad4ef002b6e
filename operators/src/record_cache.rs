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
//! Sizes are estimates: the serialized key and value plus a fixed overhead
//! per entry. The cache also answers reads: a key in the cache need not be
//! read (and deserialized) from the store.

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

/// Latest value per key, in order of each key's first update.
pub(crate) struct RecordCache<K, V> {
    /// Key → absolute position of its entry.
    index: HashMap<K, u64>,
    entries: VecDeque<CacheEntry<K, V>>,
    /// Absolute position of `entries[0]`.
    base: u64,
    bytes: usize,
}

impl<K: Hash + Eq + Clone, V> RecordCache<K, V> {
    pub fn new() -> Self {
        RecordCache { index: HashMap::new(), entries: VecDeque::new(), base: 0, bytes: 0 }
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

    /// Drops every entry without forwarding it (after an aborted commit).
    pub fn clear(&mut self) {
        self.index.clear();
        self.base += self.entries.len() as u64;
        self.bytes = 0;
        self.entries.clear();
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
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
}
