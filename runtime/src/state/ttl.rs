//! A key-value store whose entries expire in stream time: the memory of the
//! `dedupe` operator.
//!
//! Layout inside one byte store (so it is changelogged like any other):
//! `d` + key → expiry (8 bytes, big-endian) + value.
//!
//! Reads check the expiry, so an expired entry is gone the moment stream
//! time passes it, whenever it is physically deleted. Deleting is a sweep:
//! [`TtlStore::start_sweep`] fixes a stream time, and each
//! [`TtlStore::sweep_step`] reads the next chunk of entries in key order and
//! deletes those expired at that time (a tombstone each, changelogged). The
//! `dedupe` operator starts a sweep every `ttl / 2` of stream time and runs
//! it in bounded steps, so a large store is never swept in one go.
//!
//! Why no index by expiry: an index entry per key doubled the store's
//! writes (its memtable inserts, flushes and compactions were a tenth of the
//! orders benchmark's CPU, run 70 in `benches/RESULTS.md`) to speed up a
//! purge that runs twice per TTL. A sweep reads each entry about twice in
//! its lifetime, sequentially, which costs far less than writing, flushing
//! and compacting an index entry. Kafka Streams' equivalent (a punctuator
//! over `all()`) does the same, in one go.

use std::cell::RefCell;
use std::rc::Rc;

use crate::error::{Result, StreamsError};
use crate::serde::SerdeRef;

use super::TxnStore;

/// A store whose entries vanish `ttl` after they were written, measured in
/// stream time (record timestamps), so results do not depend on how fast
/// records are processed.
///
/// ```
/// use kstreams_runtime::{Serdes, TtlStore};
/// let s = TtlStore::<String, ()>::in_memory_for_tests("seen", Serdes::string(), Serdes::unit(), 1000);
/// s.put(&"id-1".into(), &(), 5_000).unwrap();
/// assert!(s.get(&"id-1".into(), 5_999).unwrap().is_some());
/// assert!(s.get(&"id-1".into(), 6_000).unwrap().is_none());
/// assert_eq!(s.purge_expired(6_000).unwrap(), 1);
/// ```
pub struct TtlStore<K, V> {
    inner: Rc<RefCell<TxnStore>>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    ttl_ms: i64,
}

impl<K: 'static, V: 'static> TtlStore<K, V> {
    pub(crate) fn new(
        inner: Rc<RefCell<TxnStore>>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        ttl_ms: i64,
    ) -> Self {
        TtlStore {
            inner,
            key_serde,
            value_serde,
            ttl_ms,
        }
    }

    /// A standalone in-memory TTL store without changelog, for unit tests.
    ///
    /// ```
    /// let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// assert_eq!(s.ttl_ms(), 10);
    /// ```
    pub fn in_memory_for_tests(
        name: &str,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        ttl_ms: i64,
    ) -> Self {
        let store = TxnStore::new(
            name.to_string(),
            None,
            super::Backend::Memory(Default::default()),
        );
        Self::new(Rc::new(RefCell::new(store)), key_serde, value_serde, ttl_ms)
    }

    /// The time to live in milliseconds.
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// assert_eq!(s.ttl_ms(), 10);
    /// ```
    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    fn err(&self, e: impl std::fmt::Display) -> StreamsError {
        StreamsError::store(self.inner.borrow().name.clone(), e.to_string())
    }

    fn data_key(&self, key: &K) -> Result<Vec<u8>> {
        let mut kb = Vec::with_capacity(32);
        kb.push(DATA_PREFIX);
        self.key_serde
            .serialize(key, &mut kb)
            .map_err(|e| self.err(e))?;
        Ok(kb)
    }

    fn raw_get(&self, data_key: &[u8]) -> Result<Option<(i64, Vec<u8>)>> {
        let name = self.inner.borrow().name.clone();
        self.inner.borrow().get_with(data_key, |v| match v {
            None => Ok(None),
            Some(b) if b.len() >= 8 => Ok(Some((
                i64::from_be_bytes(b[..8].try_into().unwrap()),
                b[8..].to_vec(),
            ))),
            Some(_) => Err(StreamsError::store(name.clone(), "corrupt TTL entry")),
        })?
    }

    /// The value of `key` if it has not expired at stream time `now`.
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// assert!(s.get(&"k".into(), 0).unwrap().is_none());
    /// ```
    pub fn get(&self, key: &K, now: i64) -> Result<Option<V>> {
        let dk = self.data_key(key)?;
        match self.raw_get(&dk)? {
            Some((expiry, v)) if expiry > now => Ok(Some(
                self.value_serde.deserialize(&v).map_err(|e| self.err(e))?,
            )),
            _ => Ok(None),
        }
    }

    /// Writes `key`, expiring at `now + ttl`.
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// s.put(&"k".into(), &(), 0).unwrap();
    /// assert!(s.get(&"k".into(), 9).unwrap().is_some());
    /// ```
    pub fn put(&self, key: &K, value: &V, now: i64) -> Result<()> {
        let dk = self.data_key(key)?;
        let mut store = self.inner.borrow_mut();
        self.write(&mut store, dk, value, now)
    }

    /// Writes the data entry `dk`, expiring at `now + ttl`.
    fn write(&self, store: &mut TxnStore, dk: Vec<u8>, value: &V, now: i64) -> Result<()> {
        let expiry = now.saturating_add(self.ttl_ms);
        let mut vb = Vec::with_capacity(16);
        vb.extend_from_slice(&expiry.to_be_bytes());
        self.value_serde
            .serialize(value, &mut vb)
            .map_err(|e| StreamsError::store(store.name.clone(), e.to_string()))?;
        store.put_owned(dk, vb);
        Ok(())
    }

    /// Writes `key` (expiring at `now + ttl`) unless it is there and has
    /// not expired at `now`; returns whether it wrote. One read where `get`
    /// followed by `put` takes two (the `dedupe` operator's check).
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// assert!(s.put_if_absent(&"k".into(), &(), 0).unwrap());
    /// assert!(!s.put_if_absent(&"k".into(), &(), 9).unwrap());
    /// // Expired at 10: written again, now expiring at 20.
    /// assert!(s.put_if_absent(&"k".into(), &(), 10).unwrap());
    /// assert!(s.get(&"k".into(), 19).unwrap().is_some());
    /// ```
    pub fn put_if_absent(&self, key: &K, value: &V, now: i64) -> Result<bool> {
        let dk = self.data_key(key)?;
        let mut store = self.inner.borrow_mut();
        if drop_borrow_get(&store, &dk)?.is_some_and(|(expiry, _)| expiry > now) {
            return Ok(false);
        }
        self.write(&mut store, dk, value, now)?;
        Ok(true)
    }

    /// Deletes every entry that has expired at stream time `now`, in one
    /// go; returns how many. (The `dedupe` operator sweeps in steps instead:
    /// [`start_sweep`](Self::start_sweep).)
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// assert_eq!(s.purge_expired(100).unwrap(), 0);
    /// ```
    pub fn purge_expired(&self, now: i64) -> Result<usize> {
        let mut sweep = self.start_sweep(now);
        while !self.sweep_step(&mut sweep, 10_000)? {}
        Ok(sweep.purged())
    }

    /// Starts a sweep that deletes the entries expired at stream time
    /// `now`; run it with [`sweep_step`](Self::sweep_step).
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// let sweep = s.start_sweep(100);
    /// assert_eq!((sweep.now(), sweep.purged(), sweep.is_done()), (100, 0, false));
    /// ```
    pub fn start_sweep(&self, now: i64) -> Sweep {
        Sweep {
            now,
            next: Some(vec![DATA_PREFIX]),
            purged: 0,
        }
    }

    /// Reads the sweep's next `max_entries` committed entries in key order
    /// (with the uncommitted writes among them) and deletes those expired
    /// at the sweep's stream time. Returns whether the sweep is done.
    /// Entries written after the sweep started are seen or not depending on
    /// where their key falls; either way a live entry is never deleted.
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// for id in ["a", "b", "c"] {
    ///     s.put(&id.to_string(), &(), 0).unwrap();
    /// }
    /// s.put(&"d".to_string(), &(), 50).unwrap();
    /// let mut sweep = s.start_sweep(20);
    /// while !s.sweep_step(&mut sweep, 2).unwrap() {}
    /// assert_eq!(sweep.purged(), 3);
    /// assert!(s.get(&"a".to_string(), 20).unwrap().is_none());
    /// assert!(s.get(&"d".to_string(), 55).unwrap().is_some());
    /// ```
    pub fn sweep_step(&self, sweep: &mut Sweep, max_entries: usize) -> Result<bool> {
        let Some(from) = sweep.next.take() else {
            return Ok(true);
        };
        let (entries, next) = self.inner.borrow().scan_chunk(
            &from,
            &|k| k.first() == Some(&DATA_PREFIX),
            max_entries,
        )?;
        let mut store = self.inner.borrow_mut();
        for (k, v) in entries {
            if v.len() >= 8 && i64::from_be_bytes(v[..8].try_into().unwrap()) <= sweep.now {
                store.delete_owned(k);
                sweep.purged += 1;
            }
        }
        sweep.next = next;
        Ok(sweep.next.is_none())
    }
}

/// A sweep of a [`TtlStore`] in progress: the stream time it purges at,
/// how far it got and how many entries it deleted.
///
/// ```
/// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
/// let mut sweep = s.start_sweep(5);
/// assert!(s.sweep_step(&mut sweep, 100).unwrap());
/// assert!(sweep.is_done());
/// ```
#[derive(Debug, Clone)]
pub struct Sweep {
    now: i64,
    /// Where the next step reads from (`None`: done).
    next: Option<Vec<u8>>,
    purged: usize,
}

impl Sweep {
    /// The stream time the sweep purges at.
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// assert_eq!(s.start_sweep(7).now(), 7);
    /// ```
    pub fn now(&self) -> i64 {
        self.now
    }

    /// How many entries the sweep deleted so far.
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// assert_eq!(s.start_sweep(7).purged(), 0);
    /// ```
    pub fn purged(&self) -> usize {
        self.purged
    }

    /// Whether the sweep has read the whole store.
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// assert!(!s.start_sweep(7).is_done());
    /// ```
    pub fn is_done(&self) -> bool {
        self.next.is_none()
    }
}

fn drop_borrow_get(store: &TxnStore, dk: &[u8]) -> Result<Option<(i64, ())>> {
    store.get_with(dk, |v| {
        v.filter(|b| b.len() >= 8)
            .map(|b| (i64::from_be_bytes(b[..8].try_into().unwrap()), ()))
    })
}

/// The first byte of a TTL store's entries.
const DATA_PREFIX: u8 = b'd';

/// The first byte of the expiry index that versions before the sweep kept
/// (local, never changelogged).
const LEGACY_INDEX_PREFIX: u8 = b'x';

/// Deletes a TTL store's expiry index left by an earlier version (a range
/// deletion, written only if there is one): nothing reads it any more.
pub(crate) fn drop_legacy_index(db: &super::TaskDb, cf: &str) -> Result<()> {
    let seen = std::cell::Cell::new(false);
    let found = db.scan(cf, cf, Some(&[LEGACY_INDEX_PREFIX]), &|k| {
        let first = !seen.replace(true);
        first && k.first() == Some(&LEGACY_INDEX_PREFIX)
    })?;
    if found.is_empty() {
        return Ok(());
    }
    let mut batch = rocksdb::WriteBatch::default();
    db.writer().batch_delete_range(
        &mut batch,
        cf,
        &[LEGACY_INDEX_PREFIX],
        &[LEGACY_INDEX_PREFIX + 1],
    )?;
    db.write(batch)
}
