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

use std::collections::VecDeque;
use std::hash::Hash;

use kstreams_runtime::{FastHashMap, Headers};

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

/// What the cache holds in one slot.
enum Slot<K, V> {
    /// Unused, on the free list.
    Free,
    /// A dirty entry; its slot id is in the queue.
    Dirty(CacheEntry<K, V>),
    /// A clean entry: its value (what the store holds), size and key size.
    Clean(V, usize, usize),
    /// A clean entry whose value [`RecordCache::find`] handed out, about to
    /// be re-inserted as dirty (or left behind if the update failed); the
    /// same as absent.
    Taken,
}

/// Where [`RecordCache::find`] found a clean entry: hand it back to
/// [`RecordCache::reinsert`] to make the key dirty without a second lookup.
pub(crate) struct SlotId(u32);

/// What [`RecordCache::find`] found.
pub(crate) enum Cached<'a, K, V> {
    /// A dirty entry, to update in place.
    Dirty(&'a mut CacheEntry<K, V>),
    /// A clean entry's value and key size, moved out, and its slot: give
    /// the updated entry to [`RecordCache::reinsert`].
    Clean(V, usize, SlotId),
    /// Nothing: read the store.
    Absent,
}

/// Latest value per key, in order of each key's first update (dirty
/// entries), plus forwarded values kept for reads (clean entries).
///
/// Entries live in slots; the index maps each key to its slot and the
/// queue holds the dirty slots, oldest first. A key is looked up once per
/// update: turning a clean entry dirty reuses the slot `find` returned, and
/// a flush reaches each dirty entry through the queue and leaves its clean
/// value in the same slot. Only dropping entries (evictions, entries that
/// do not fit the budget, `clear_clean`) touches the index again.
pub(crate) struct RecordCache<K, V> {
    index: FastHashMap<K, u32>,
    slots: Vec<Slot<K, V>>,
    free: Vec<u32>,
    queue: VecDeque<u32>,
    bytes: usize,
    clean_bytes: usize,
}

impl<K: Hash + Eq + Clone, V> RecordCache<K, V> {
    pub fn new() -> Self {
        RecordCache {
            index: FastHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            bytes: 0,
            clean_bytes: 0,
        }
    }

    /// The key's dirty entry, its clean value (moved out), or nothing.
    pub fn find(&mut self, key: &K) -> Cached<'_, K, V> {
        let Some(&id) = self.index.get(key) else {
            return Cached::Absent;
        };
        let slot = &mut self.slots[id as usize];
        if let Slot::Clean(..) = slot {
            if let Slot::Clean(value, size, key_size) = std::mem::replace(slot, Slot::Taken) {
                self.clean_bytes -= size.min(self.clean_bytes);
                return Cached::Clean(value, key_size, SlotId(id));
            }
            return Cached::Absent;
        }
        match slot {
            Slot::Dirty(e) => Cached::Dirty(e),
            _ => Cached::Absent,
        }
    }

    pub fn resized(&mut self, old: usize, new: usize) {
        self.bytes = self.bytes + new - old.min(self.bytes);
    }

    /// Makes the entry [`find`](Self::find) found clean (and handed out)
    /// dirty again, with its updated value.
    pub fn reinsert(&mut self, slot: SlotId, entry: CacheEntry<K, V>) {
        debug_assert!(matches!(self.slots[slot.0 as usize], Slot::Taken));
        self.make_dirty(slot.0, entry);
    }

    /// Adds a dirty entry for a key [`find`](Self::find) found absent.
    pub fn insert(&mut self, entry: CacheEntry<K, V>) {
        let id = match self.index.get(&entry.key) {
            Some(&id) => {
                // A clean entry (or one taken and never re-inserted) is
                // replaced; a dirty key is never inserted again.
                match &self.slots[id as usize] {
                    Slot::Clean(_, size, _) => {
                        self.clean_bytes -= (*size).min(self.clean_bytes);
                    }
                    Slot::Dirty(_) => {
                        debug_assert!(false, "insert of a dirty key");
                        return;
                    }
                    Slot::Free | Slot::Taken => {}
                }
                id
            }
            None => {
                let id = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(Slot::Free);
                    (self.slots.len() - 1) as u32
                });
                self.index.insert(entry.key.clone(), id);
                id
            }
        };
        self.make_dirty(id, entry);
    }

    fn make_dirty(&mut self, id: u32, entry: CacheEntry<K, V>) {
        self.bytes += entry.size;
        self.slots[id as usize] = Slot::Dirty(entry);
        self.queue.push_back(id);
    }

    /// Takes the oldest dirty entry out of its slot (which is left taken).
    fn take_oldest(&mut self) -> Option<(u32, CacheEntry<K, V>)> {
        let id = self.queue.pop_front()?;
        match std::mem::replace(&mut self.slots[id as usize], Slot::Taken) {
            Slot::Dirty(e) => {
                self.bytes -= e.size.min(self.bytes);
                Some((id, e))
            }
            other => {
                // Not reachable: a queued slot stays dirty until popped.
                self.slots[id as usize] = other;
                None
            }
        }
    }

    /// Forgets a slot and its key.
    fn release(&mut self, id: u32, key: &K) {
        self.index.remove(key);
        self.slots[id as usize] = Slot::Free;
        self.free.push(id);
    }

    /// Removes the oldest dirty entry (an eviction: nothing is kept).
    pub fn pop_oldest(&mut self) -> Option<CacheEntry<K, V>> {
        let (id, e) = self.take_oldest()?;
        self.release(id, &e.key);
        Some(e)
    }

    /// Removes the oldest dirty entry (to forward at a flush) and keeps
    /// `clean(&entry)` as the key's clean value if it fits in `budget`.
    pub fn pop_oldest_keeping_clean(
        &mut self,
        budget: usize,
        clean: impl FnOnce(&CacheEntry<K, V>) -> Option<V>,
    ) -> Option<CacheEntry<K, V>> {
        let (id, e) = self.take_oldest()?;
        let kept = if self.bytes + self.clean_bytes + e.size <= budget {
            clean(&e)
        } else {
            None
        };
        match kept {
            Some(value) => {
                self.slots[id as usize] = Slot::Clean(value, e.size, e.key_size);
                self.clean_bytes += e.size;
            }
            None => self.release(id, &e.key),
        }
        Some(e)
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.queue.clear();
        self.bytes = 0;
        self.clean_bytes = 0;
    }

    /// Drops every clean entry (the dirty ones stay).
    pub fn clear_clean(&mut self) {
        let (slots, free) = (&mut self.slots, &mut self.free);
        self.index.retain(|_, id| {
            let slot = &mut slots[*id as usize];
            if let Slot::Dirty(_) = slot {
                return true;
            }
            *slot = Slot::Free;
            free.push(*id);
            false
        });
        self.clean_bytes = 0;
    }

    pub fn clean_bytes(&self) -> usize {
        self.clean_bytes
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn total_bytes(&self) -> usize {
        self.bytes + self.clean_bytes
    }

    #[cfg(test)]
    fn drain(&mut self) -> Vec<CacheEntry<K, V>> {
        std::iter::from_fn(|| self.pop_oldest()).collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(c: &mut RecordCache<String, u64>, key: &str) -> Option<u64> {
        match c.find(&key.to_string()) {
            Cached::Dirty(e) => Some(e.value),
            _ => None,
        }
    }

    fn set(c: &mut RecordCache<String, u64>, key: &str, value: u64) {
        match c.find(&key.to_string()) {
            Cached::Dirty(e) => e.value = value,
            _ => panic!("{key} is not dirty"),
        }
    }

    /// Flushes everything, keeping each value clean within `budget`.
    fn flush(c: &mut RecordCache<String, u64>, budget: usize) -> Vec<(String, u64)> {
        std::iter::from_fn(|| c.pop_oldest_keeping_clean(budget, |e| Some(e.value)))
            .map(|e| (e.key, e.value))
            .collect()
    }

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
        set(&mut c, "a", 2);
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
        assert!(dirty(&mut c, "a").is_none());
        c.insert(entry("a", 5));
        set(&mut c, "b", 7);
        let got: Vec<(String, u64)> = c.drain().into_iter().map(|e| (e.key, e.value)).collect();
        assert_eq!(got, [("b".into(), 7), ("a".into(), 5)]);
        // Positions keep counting after a drain.
        c.insert(entry("z", 1));
        assert_eq!(dirty(&mut c, "z"), Some(1));
        c.resized(10, 25);
        assert_eq!(c.bytes(), 25);
        c.clear();
        assert!(c.pop_oldest().is_none());
    }

    #[test]
    fn clean_entries_serve_reads_within_the_budget_and_go_first() {
        let mut c: RecordCache<String, u64> = RecordCache::new();
        let mut c_big = entry("c", 3);
        c_big.size = 95;
        c.insert(c_big);
        c.insert(entry("a", 1));
        c.insert(entry("b", 2));
        // A flush forwards all three in order; "c" does not fit in the
        // budget next to the dirty ones still queued and is not kept clean.
        assert_eq!(
            flush(&mut c, 100),
            [("c".into(), 3), ("a".into(), 1), ("b".into(), 2)]
        );
        assert_eq!((c.bytes(), c.clean_bytes(), c.total_bytes()), (0, 20, 20));
        assert!(matches!(c.find(&"c".to_string()), Cached::Absent));
        // A clean value is handed out once, with its key size; the key is
        // absent until re-inserted, and then dirty again.
        assert!(matches!(c.find(&"b".to_string()), Cached::Clean(2, 1, _)));
        assert_eq!(c.clean_bytes(), 10);
        assert!(matches!(c.find(&"b".to_string()), Cached::Absent));
        c.insert(entry("b", 5));
        assert_eq!(dirty(&mut c, "b"), Some(5));
        assert_eq!((c.bytes(), c.clean_bytes()), (10, 10));
        // Re-inserting over a clean entry (not taken first) drops it.
        c.insert(entry("a", 6));
        assert_eq!((c.bytes(), c.clean_bytes()), (20, 0));
        // An eviction keeps nothing; clear_clean keeps the dirty entries.
        flush(&mut c, 100);
        assert_eq!(c.clean_bytes(), 20);
        c.insert(entry("x", 1));
        assert_eq!(c.pop_oldest().map(|e| e.key), Some("x".into()));
        assert!(matches!(c.find(&"x".to_string()), Cached::Absent));
        c.insert(entry("y", 1));
        c.clear_clean();
        assert_eq!((c.total_bytes(), c.len()), (10, 1));
        assert!(matches!(c.find(&"a".to_string()), Cached::Absent));
        assert_eq!(dirty(&mut c, "y"), Some(1));
        flush(&mut c, 100);
        c.clear();
        assert_eq!((c.total_bytes(), c.len()), (0, 0));
        assert!(matches!(c.find(&"y".to_string()), Cached::Absent));
    }

    #[test]
    fn a_clean_entry_found_goes_back_dirty_into_its_slot_and_slots_are_reused() {
        let mut c: RecordCache<String, u64> = RecordCache::new();
        c.insert(entry("a", 1));
        c.insert(entry("b", 2));
        assert_eq!(flush(&mut c, 100), [("a".into(), 1), ("b".into(), 2)]);
        // "b" is found clean and re-inserted through its slot: dirty again,
        // queued behind "c", and no second slot is used.
        let Cached::Clean(old, key_size, slot) = c.find(&"b".to_string()) else {
            panic!("b is not clean");
        };
        assert_eq!((old, key_size), (2, 1));
        c.insert(entry("c", 3));
        let mut updated = entry("b", old + 10);
        updated.key_size = key_size;
        c.reinsert(slot, updated);
        assert_eq!(c.slots.len(), 3);
        assert_eq!((c.bytes(), c.clean_bytes()), (20, 10));
        assert_eq!(flush(&mut c, 100), [("c".into(), 3), ("b".into(), 12)]);
        // Dropped entries free their slots, which new keys take over.
        c.clear_clean();
        assert_eq!((c.total_bytes(), c.index.len(), c.free.len()), (0, 0, 3));
        c.insert(entry("d", 4));
        c.insert(entry("e", 5));
        assert_eq!((c.slots.len(), c.free.len()), (3, 1));
        assert_eq!(c.pop_oldest().map(|e| e.key), Some("d".into()));
        assert_eq!(c.free.len(), 2);
        assert!(matches!(c.find(&"d".to_string()), Cached::Absent));
        assert_eq!(dirty(&mut c, "e"), Some(5));
    }
}
