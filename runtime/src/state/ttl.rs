//! A key-value store whose entries expire in stream time: the memory of the
//! `dedupe` operator.
//!
//! Layout inside one byte store (so it is changelogged like any other):
//! - `d` + key → expiry (8 bytes, big-endian) + value
//! - `x` + expiry (order-preserving) + key → empty: an index by expiry, so
//!   purging expired entries reads only what has expired, never the whole store.

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

fn order_preserving(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
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
        kb.push(b'd');
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
        if let Some((old_expiry, _)) = drop_borrow_get(&store, &dk)? {
            store.delete_owned(index_key(old_expiry, &dk[1..]));
        }
        self.write(&mut store, dk, value, now)
    }

    /// Writes the data entry `dk` and its index entry, expiring at `now + ttl`.
    fn write(&self, store: &mut TxnStore, dk: Vec<u8>, value: &V, now: i64) -> Result<()> {
        let expiry = now.saturating_add(self.ttl_ms);
        let mut vb = Vec::with_capacity(16);
        vb.extend_from_slice(&expiry.to_be_bytes());
        self.value_serde
            .serialize(value, &mut vb)
            .map_err(|e| StreamsError::store(store.name.clone(), e.to_string()))?;
        store.put_owned(index_key(expiry, &dk[1..]), Vec::new());
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
        match drop_borrow_get(&store, &dk)? {
            Some((expiry, _)) if expiry > now => return Ok(false),
            Some((old_expiry, _)) => store.delete_owned(index_key(old_expiry, &dk[1..])),
            None => {}
        }
        self.write(&mut store, dk, value, now)?;
        Ok(true)
    }

    /// Deletes every entry that has expired at stream time `now`; returns how many.
    ///
    /// ```
    /// # let s = kstreams_runtime::TtlStore::<String, ()>::in_memory_for_tests("s", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::unit(), 10);
    /// assert_eq!(s.purge_expired(100).unwrap(), 0);
    /// ```
    pub fn purge_expired(&self, now: i64) -> Result<usize> {
        let limit = order_preserving(now);
        let expired = self.inner.borrow().scan(Some(b"x"), &|k| {
            k.first() == Some(&b'x') && k.len() >= 9 && k[1..9] <= limit[..]
        })?;
        let mut store = self.inner.borrow_mut();
        let mut purged = 0;
        for (ik, _) in &expired {
            store.delete(ik);
            let mut dk = vec![b'd'];
            dk.extend_from_slice(&ik[9..]);
            // The index is rebuilt on restore from the data entries, and a
            // restore replaying an older write of a key leaves that write's
            // index entry behind: delete the data entry only if it has
            // expired itself.
            if drop_borrow_get(&store, &dk)?.is_some_and(|(expiry, _)| expiry <= now) {
                store.delete(&dk);
                purged += 1;
            }
        }
        Ok(purged)
    }
}

fn drop_borrow_get(store: &TxnStore, dk: &[u8]) -> Result<Option<(i64, ())>> {
    store.get_with(dk, |v| {
        v.filter(|b| b.len() >= 8)
            .map(|b| (i64::from_be_bytes(b[..8].try_into().unwrap()), ()))
    })
}

/// The first byte of a TTL store's expiry-index keys. The index is local:
/// it is not changelogged (half the changelog records of a `dedupe`), and a
/// restore rebuilds it from the data entries ([`index_entry_of`]).
pub(crate) const INDEX_PREFIX: u8 = b'x';

/// The index key of a restored data entry (`d` + key → expiry + value), if
/// it is one.
pub(crate) fn index_entry_of(key: &[u8], value: Option<&[u8]>) -> Option<Vec<u8>> {
    match (key.first(), value) {
        (Some(b'd'), Some(v)) if v.len() >= 8 => Some(index_key(
            i64::from_be_bytes(v[..8].try_into().ok()?),
            &key[1..],
        )),
        _ => None,
    }
}

fn index_key(expiry: i64, key: &[u8]) -> Vec<u8> {
    let mut ik = Vec::with_capacity(9 + key.len());
    ik.push(INDEX_PREFIX);
    ik.extend_from_slice(&order_preserving(expiry));
    ik.extend_from_slice(key);
    ik
}
