//! The window store: values per key and time window, kept for a retention
//! period of stream time, dropped a whole time segment at a time.
//!
//! Why segments: a windowed aggregation writes new windows forever, so
//! its store would grow forever unless old windows go. Looking for them key
//! by key would read the whole store. Instead every entry's key starts with
//! the number of the time *segment* its window end falls in; when stream
//! time moves past a segment's end plus the retention, the whole segment is
//! deleted with one range deletion (a single RocksDB range tombstone), and
//! reads ignore entries of a segment that is only partly expired.
//!
//! Layout inside one byte store (one column family, changelogged like any
//! other store, so the transactional write set applies unchanged):
//! - `w`, segment (8, order-preserving), key length (4, big-endian), key,
//!   window start (8, order-preserving), window end (8, order-preserving)
//!   → value;
//! - `m` → observed stream time (8), first live segment (8), highest
//!   segment written (8): the store's
//!   own clock, changelogged, so after a crash or a move to another instance
//!   the store still knows which windows are closed.
//!
//! Transactions: a segment deletion is an uncommitted range deletion in the
//! store's write set. Reads stop seeing the segment at once; the range
//! deletion reaches RocksDB only after the Kafka transaction committed, and
//! the changelog gets a tombstone for each committed entry of the segment
//! (reading only the expired segment), so the compacted changelog forgets
//! them as well.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Result, SerdeError, StreamsError};
use crate::serde::{Serde, SerdeRef};

use super::TxnStore;

/// Retention and segment size of a window store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WindowSpec {
    pub retention_ms: i64,
    pub segment_ms: i64,
}

impl WindowSpec {
    /// Segments of half the retention: at most about three are live.
    pub fn new(retention_ms: i64) -> Self {
        WindowSpec {
            retention_ms,
            segment_ms: (retention_ms / 2).max(1),
        }
    }
}

/// What the key-serde slot of a window store holds: the key serde and the
/// store's retention, so that `ProcessorContext::window_store` can open it.
pub(crate) struct WindowKeySlot<K> {
    pub key_serde: SerdeRef<K>,
    pub spec: WindowSpec,
}

/// A key with the time window it belongs to: `[start, end)` for time
/// windows, `[start, end]` for sessions (see each window type).
///
/// ```
/// use kstreams_runtime::Windowed;
/// let w = Windowed::new("alice".to_string(), 60_000, 120_000);
/// assert_eq!(w.to_string(), "alice@[60000, 120000)");
/// assert_eq!((w.start, w.end), (60_000, 120_000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// Window start, epoch millis.
    pub start: i64,
    /// Window end, epoch millis.
    pub end: i64,
}

impl<K> Windowed<K> {
    /// A windowed key.
    ///
    /// ```
    /// let w = kstreams_runtime::Windowed::new(1u64, 0, 10);
    /// assert_eq!(w.key, 1);
    /// ```
    pub fn new(key: K, start: i64, end: i64) -> Self {
        Windowed { key, start, end }
    }
}

impl<K: fmt::Display> fmt::Display for Windowed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@[{}, {})", self.key, self.start, self.end)
    }
}

impl<K: Send + Sync + 'static> Windowed<K> {
    /// A serde for windowed keys: the inner key's bytes, then start and end
    /// as 8-byte big-endian integers.
    ///
    /// ```
    /// use kstreams_runtime::{Serde, Serdes, Windowed};
    /// let s = Windowed::serde(Serdes::string());
    /// let mut buf = Vec::new();
    /// s.serialize(&Windowed::new("k".to_string(), 1, 2), &mut buf).unwrap();
    /// assert_eq!(buf.len(), 1 + 16);
    /// assert_eq!(s.deserialize(&buf).unwrap(), Windowed::new("k".to_string(), 1, 2));
    /// assert!(s.deserialize(b"short").is_err());
    /// ```
    pub fn serde(inner: SerdeRef<K>) -> SerdeRef<Windowed<K>> {
        Arc::new(WindowedSerde(inner))
    }
}

struct WindowedSerde<K>(SerdeRef<K>);

impl<K: Send + Sync + 'static> Serde<Windowed<K>> for WindowedSerde<K> {
    fn serialize(
        &self,
        value: &Windowed<K>,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), SerdeError> {
        self.0.serialize(&value.key, out)?;
        out.extend_from_slice(&value.start.to_be_bytes());
        out.extend_from_slice(&value.end.to_be_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> std::result::Result<Windowed<K>, SerdeError> {
        if bytes.len() < 16 {
            return Err(SerdeError::new(
                "windowed",
                format!(
                    "{} bytes are too short for a windowed key (at least 16)",
                    bytes.len()
                ),
            ));
        }
        let n = bytes.len() - 16;
        let start = i64::from_be_bytes(bytes[n..n + 8].try_into().unwrap_or([0; 8]));
        let end = i64::from_be_bytes(bytes[n + 8..].try_into().unwrap_or([0; 8]));
        Ok(Windowed {
            key: self.0.deserialize(&bytes[..n])?,
            start,
            end,
        })
    }
    fn name(&self) -> &'static str {
        "windowed"
    }
}

const DATA: u8 = b'w';
const META: &[u8] = b"m";

fn op(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn un_op(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    (u64::from_be_bytes(a) ^ (1 << 63)) as i64
}

/// A typed window store: for each key, values per window `(start, end)`.
/// Entries whose window end is older than the store's observed stream time
/// minus the retention are gone (see the module docs for how).
///
/// Reads see this commit interval's own writes, like every store.
///
/// ```
/// use kstreams_runtime::{Serdes, WindowStore, Windowed};
/// let s = WindowStore::<String, u64>::in_memory_for_tests("w", Serdes::string(), Serdes::u64_be(), 1_000);
/// s.put(&"a".into(), 0, 100, &1).unwrap();
/// s.put(&"a".into(), 100, 200, &2).unwrap();
/// assert_eq!(s.get(&"a".into(), 100, 200).unwrap(), Some(2));
/// assert_eq!(s.fetch(&"a".into(), 0, 150).unwrap(), vec![(0, 100, 1)]);
/// s.advance(1_150).unwrap(); // the window ending at 100 is now beyond retention
/// assert_eq!(s.all().unwrap(), vec![(Windowed::new("a".to_string(), 100, 200), 2)]);
/// ```
pub struct WindowStore<K, V> {
    inner: Rc<RefCell<TxnStore>>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    spec: WindowSpec,
}

impl<K, V> Clone for WindowStore<K, V> {
    fn clone(&self) -> Self {
        WindowStore {
            inner: self.inner.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            spec: self.spec,
        }
    }
}

impl<K: 'static, V: 'static> WindowStore<K, V> {
    pub(crate) fn new(
        inner: Rc<RefCell<TxnStore>>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        spec: WindowSpec,
    ) -> Self {
        WindowStore {
            inner,
            key_serde,
            value_serde,
            spec,
        }
    }

    /// A standalone in-memory window store without changelog, for unit tests.
    ///
    /// ```
    /// let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests(
    ///     "w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 60_000);
    /// assert_eq!(s.retention_ms(), 60_000);
    /// ```
    pub fn in_memory_for_tests(
        name: &str,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        retention_ms: i64,
    ) -> Self {
        let store = TxnStore::new(
            name.to_string(),
            None,
            super::Backend::Memory(Default::default()),
        );
        Self::new(
            Rc::new(RefCell::new(store)),
            key_serde,
            value_serde,
            WindowSpec::new(retention_ms.max(1)),
        )
    }

    /// The retention in milliseconds.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 10);
    /// assert_eq!(s.retention_ms(), 10);
    /// ```
    pub fn retention_ms(&self) -> i64 {
        self.spec.retention_ms
    }

    /// The store's name.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 10);
    /// assert_eq!(s.name(), "w");
    /// ```
    pub fn name(&self) -> String {
        self.inner.borrow().name.clone()
    }

    fn err(&self, e: impl fmt::Display) -> StreamsError {
        StreamsError::store(self.inner.borrow().name.clone(), e.to_string())
    }

    fn segment(&self, ts: i64) -> i64 {
        ts.div_euclid(self.spec.segment_ms)
    }

    /// (observed stream time, first live segment, highest segment written).
    fn meta(&self) -> Result<(i64, i64, i64)> {
        let name = self.inner.borrow().name.clone();
        let int = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        self.inner.borrow().get_with(META, |v| match v {
            None => Ok((i64::MIN, i64::MIN, i64::MIN)),
            Some(b) if b.len() == 24 => Ok((int(&b[..8]), int(&b[8..16]), int(&b[16..]))),
            Some(_) => Err(StreamsError::store(
                name.clone(),
                "corrupt window store clock",
            )),
        })?
    }

    fn set_meta(&self, observed: i64, first_live: i64, max_segment: i64) {
        let mut m = [0u8; 24];
        m[..8].copy_from_slice(&observed.to_be_bytes());
        m[8..16].copy_from_slice(&first_live.to_be_bytes());
        m[16..].copy_from_slice(&max_segment.to_be_bytes());
        self.inner.borrow_mut().put(META, &m);
    }

    /// The largest stream time passed to [`WindowStore::advance`] so far
    /// (`i64::MIN` if none). It is part of the store, so it survives
    /// restarts.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 10);
    /// assert_eq!(s.observed_stream_time().unwrap(), i64::MIN);
    /// s.advance(5).unwrap();
    /// s.advance(3).unwrap(); // time never goes back
    /// assert_eq!(s.observed_stream_time().unwrap(), 5);
    /// ```
    pub fn observed_stream_time(&self) -> Result<i64> {
        Ok(self.meta()?.0)
    }

    /// The oldest window end still kept: observed stream time − retention.
    fn floor(&self) -> Result<i64> {
        Ok(Self::floor_of(self.meta()?.0, self.spec.retention_ms))
    }

    fn floor_of(observed: i64, retention_ms: i64) -> i64 {
        if observed == i64::MIN {
            i64::MIN
        } else {
            observed.saturating_sub(retention_ms)
        }
    }

    /// Moves the store's clock to `stream_time` (if later) and drops the
    /// segments that are now entirely older than `stream_time − retention`,
    /// with one range deletion. Returns how many segments became droppable
    /// (0 when none).
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 10);
    /// s.put(&"k".into(), 0, 1, &1).unwrap();
    /// assert!(s.advance(100).unwrap() > 0);
    /// assert!(s.all().unwrap().is_empty());
    /// ```
    pub fn advance(&self, stream_time: i64) -> Result<u64> {
        let (observed, first_live, max_segment) = self.meta()?;
        if stream_time <= observed {
            return Ok(0);
        }
        let floor = stream_time.saturating_sub(self.spec.retention_ms);
        let live = self.segment(floor);
        let mut dropped = 0;
        let mut new_first_live = first_live;
        if live > first_live {
            let mut from = vec![DATA];
            if first_live == i64::MIN {
                // Nothing dropped yet: from the very first segment.
            } else {
                from.extend_from_slice(&op(first_live));
            }
            let mut to = vec![DATA];
            to.extend_from_slice(&op(live));
            self.inner.borrow_mut().delete_range(&from, &to);
            dropped = if first_live == i64::MIN {
                1
            } else {
                (live - first_live) as u64
            };
            new_first_live = live;
        }
        self.set_meta(stream_time, new_first_live, max_segment);
        Ok(dropped)
    }

    fn key_prefix(&self, segment: i64, key_bytes: &[u8], out: &mut Vec<u8>) {
        out.push(DATA);
        out.extend_from_slice(&op(segment));
        out.extend_from_slice(&(key_bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(key_bytes);
    }

    fn entry_key(&self, key: &K, start: i64, end: i64) -> Result<Vec<u8>> {
        let mut kb = Vec::new();
        self.key_serde
            .serialize(key, &mut kb)
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(kb.len() + 29);
        self.key_prefix(self.segment(end), &kb, &mut out);
        out.extend_from_slice(&op(start));
        out.extend_from_slice(&op(end));
        Ok(out)
    }

    /// Writes the value of `key` in window `(start, end)`. A window whose
    /// end is already beyond the retention is not written (it would be
    /// dropped at once); the caller decides whether that record was late.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 10);
    /// s.put(&"k".into(), 0, 5, &7).unwrap();
    /// assert_eq!(s.get(&"k".into(), 0, 5).unwrap(), Some(7));
    /// ```
    pub fn put(&self, key: &K, start: i64, end: i64, value: &V) -> Result<()> {
        let (observed, first_live, max_segment) = self.meta()?;
        if end < Self::floor_of(observed, self.spec.retention_ms) {
            return Ok(());
        }
        let seg = self.segment(end);
        if seg > max_segment {
            self.set_meta(observed, first_live, seg);
        }
        let k = self.entry_key(key, start, end)?;
        if self.value_serde.is_null(value) {
            self.inner.borrow_mut().delete(&k);
            return Ok(());
        }
        let mut vb = Vec::new();
        self.value_serde
            .serialize(value, &mut vb)
            .map_err(|e| self.err(e))?;
        self.inner.borrow_mut().put(&k, &vb);
        Ok(())
    }

    /// Deletes the value of `key` in window `(start, end)`.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 10);
    /// s.put(&"k".into(), 0, 5, &7).unwrap();
    /// s.delete(&"k".into(), 0, 5).unwrap();
    /// assert_eq!(s.get(&"k".into(), 0, 5).unwrap(), None);
    /// ```
    pub fn delete(&self, key: &K, start: i64, end: i64) -> Result<()> {
        let k = self.entry_key(key, start, end)?;
        self.inner.borrow_mut().delete(&k);
        Ok(())
    }

    /// The value of `key` in window `(start, end)`, unless expired.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 10);
    /// assert_eq!(s.get(&"k".into(), 0, 5).unwrap(), None);
    /// ```
    pub fn get(&self, key: &K, start: i64, end: i64) -> Result<Option<V>> {
        if end < self.floor()? {
            return Ok(None);
        }
        let k = self.entry_key(key, start, end)?;
        let store = self.inner.borrow();
        store
            .get_with(&k, |v| {
                v.map(|b| self.value_serde.deserialize(b)).transpose()
            })?
            .map_err(|e| self.err(e))
    }

    /// The windows of `key` whose end is in `[end_from, end_to]`, as
    /// `(start, end, value)`, ordered by end, then start.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 1000);
    /// s.put(&"k".into(), 0, 10, &1).unwrap();
    /// s.put(&"k".into(), 10, 20, &2).unwrap();
    /// s.put(&"other".into(), 10, 20, &3).unwrap();
    /// assert_eq!(s.fetch(&"k".into(), 15, 100).unwrap(), vec![(10, 20, 2)]);
    /// ```
    pub fn fetch(&self, key: &K, end_from: i64, end_to: i64) -> Result<Vec<(i64, i64, V)>> {
        let end_from = end_from.max(self.floor()?);
        if end_from > end_to {
            return Ok(Vec::new());
        }
        let mut kb = Vec::new();
        self.key_serde
            .serialize(key, &mut kb)
            .map_err(|e| self.err(e))?;
        // One prefix scan per segment that can hold such ends, up to the
        // highest segment ever written (the live segments span about the
        // retention, so these are few).
        let lo = self.segment(end_from);
        let hi = self.segment(end_to).min(self.meta()?.2);
        let mut out = Vec::new();
        let mut prefix = Vec::with_capacity(kb.len() + 13);
        let mut seg = lo;
        while seg <= hi {
            prefix.clear();
            self.key_prefix(seg, &kb, &mut prefix);
            let entries = self
                .inner
                .borrow()
                .scan(Some(&prefix), &|k| k.starts_with(&prefix))?;
            for (k, v) in entries {
                if k.len() != prefix.len() + 16 {
                    continue;
                }
                let start = un_op(&k[prefix.len()..]);
                let end = un_op(&k[prefix.len() + 8..]);
                if end >= end_from && end <= end_to {
                    let v = self.value_serde.deserialize(&v).map_err(|e| self.err(e))?;
                    out.push((start, end, v));
                }
            }
            seg += 1;
        }
        out.sort_by_key(|(s, e, _)| (*e, *s));
        Ok(out)
    }

    fn decode_entry(&self, k: &[u8], v: &[u8]) -> Result<(Windowed<K>, V)> {
        let bad = || self.err("corrupt window store key");
        if k.len() < 1 + 8 + 4 + 16 {
            return Err(bad());
        }
        let klen = u32::from_be_bytes(k[9..13].try_into().map_err(|_| bad())?) as usize;
        if k.len() != 13 + klen + 16 {
            return Err(bad());
        }
        let key = self
            .key_serde
            .deserialize(&k[13..13 + klen])
            .map_err(|e| self.err(e))?;
        let start = un_op(&k[13 + klen..]);
        let end = un_op(&k[13 + klen + 8..]);
        let value = self.value_serde.deserialize(v).map_err(|e| self.err(e))?;
        Ok((Windowed { key, start, end }, value))
    }

    /// Every live window of every key whose end is in `[end_from, end_to]`,
    /// ordered by segment, then key bytes, then start.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 1000);
    /// s.put(&"a".into(), 0, 10, &1).unwrap();
    /// s.put(&"b".into(), 0, 10, &2).unwrap();
    /// assert_eq!(s.fetch_all(0, 10).unwrap().len(), 2);
    /// ```
    pub fn fetch_all(&self, end_from: i64, end_to: i64) -> Result<Vec<(Windowed<K>, V)>> {
        let end_from = end_from.max(self.floor()?);
        if end_from > end_to {
            return Ok(Vec::new());
        }
        let mut from = vec![DATA];
        from.extend_from_slice(&op(self.segment(end_from)));
        let hi = op(self.segment(end_to));
        let entries = self.inner.borrow().scan(Some(&from), &|k| {
            k.first() == Some(&DATA) && k.len() >= 9 && k[1..9] <= hi[..]
        })?;
        let mut out = Vec::new();
        for (k, v) in entries {
            let (w, v) = self.decode_entry(&k, &v)?;
            if w.end >= end_from && w.end <= end_to {
                out.push((w, v));
            }
        }
        Ok(out)
    }

    /// Every live entry.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 1000);
    /// assert!(s.all().unwrap().is_empty());
    /// ```
    pub fn all(&self) -> Result<Vec<(Windowed<K>, V)>> {
        self.fetch_all(i64::MIN, i64::MAX)
    }

    /// The number of entries held, expired-but-not-yet-dropped ones
    /// included (what occupies the store), counted exactly.
    ///
    /// ```
    /// # let s = kstreams_runtime::WindowStore::<String, u64>::in_memory_for_tests("w", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be(), 1000);
    /// s.put(&"a".into(), 0, 10, &1).unwrap();
    /// assert_eq!(s.stored_entries().unwrap(), 1);
    /// ```
    pub fn stored_entries(&self) -> Result<usize> {
        Ok(self
            .inner
            .borrow()
            .scan(Some(&[DATA]), &|k| k.first() == Some(&DATA))?
            .len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serdes;

    fn store(retention: i64) -> WindowStore<String, u64> {
        WindowStore::in_memory_for_tests("w", Serdes::string(), Serdes::u64_be(), retention)
    }

    #[test]
    fn keys_that_prefix_each_other_stay_apart() {
        let s = store(1000);
        s.put(&"a".into(), 0, 10, &1).unwrap();
        s.put(&"ab".into(), 0, 10, &2).unwrap();
        assert_eq!(s.fetch(&"a".into(), 0, 10).unwrap(), vec![(0, 10, 1)]);
        assert_eq!(s.fetch(&"ab".into(), 0, 10).unwrap(), vec![(0, 10, 2)]);
    }

    #[test]
    fn fetch_spans_segments() {
        let s = store(100); // segments of 50 ms
        for end in [10, 60, 1_000_000] {
            s.put(&"k".into(), end - 5, end, &(end as u64)).unwrap();
        }
        assert_eq!(
            s.fetch(&"k".into(), 0, i64::MAX).unwrap(),
            vec![(5, 10, 10), (55, 60, 60), (999_995, 1_000_000, 1_000_000)]
        );
    }

    #[test]
    fn expiry_drops_whole_segments_and_hides_partly_expired_ones() {
        let s = store(100); // segments of 50 ms
        for end in [10, 40, 60, 120] {
            s.put(&"k".into(), end - 10, end, &1).unwrap();
        }
        // Floor 45: segment 0 (ends 0..49) is not entirely expired yet (49 >= 45)
        // -> nothing dropped, but the entries ending at 10 and 40 are hidden.
        s.advance(145).unwrap();
        assert_eq!(s.stored_entries().unwrap(), 4);
        let ends: Vec<i64> = s.all().unwrap().iter().map(|(w, _)| w.end).collect();
        assert_eq!(ends, [60, 120]);
        // Floor 50: segment 0 goes with one range deletion.
        assert_eq!(s.advance(150).unwrap(), 1);
        assert_eq!(s.stored_entries().unwrap(), 2);
        // A write into an expired window is ignored.
        s.put(&"k".into(), 0, 20, &9).unwrap();
        assert_eq!(s.stored_entries().unwrap(), 2);
    }

    /// Collects changelog records (key, value) and acknowledges them.
    #[derive(Default)]
    struct Collector(Vec<(Vec<u8>, Option<Vec<u8>>)>);
    impl crate::task_context::RecordCollector for Collector {
        fn send(
            &mut self,
            _: &str,
            _: Option<i32>,
            key: Option<&[u8]>,
            value: Option<&[u8]>,
            _: i64,
            _: &crate::Headers,
        ) -> Result<()> {
            self.0
                .push((key.unwrap_or_default().to_vec(), value.map(|v| v.to_vec())));
            Ok(())
        }
        fn last_offset(&self, _: &str, _: i32) -> Option<i64> {
            (self.0.len() as i64).checked_sub(1)
        }
    }

    #[test]
    fn rocksdb_segments_go_with_a_range_deletion_after_the_commit_and_are_tombstoned() {
        use super::super::{StateManager, StoreBuilder};
        let dir = tempfile::tempdir().unwrap();
        let defs = vec![
            StoreBuilder::window(
                "w",
                Serdes::string(),
                Serdes::u64_be(),
                std::time::Duration::from_millis(100),
            )
            .into_def(),
        ];
        let open = || {
            StateManager::open(
                &defs,
                "app",
                Some(dir.path().into()),
                0,
                std::time::Duration::from_secs(1),
            )
            .unwrap()
        };
        let mut collector = Collector::default();
        {
            let mut sm = open();
            let s = WindowStore::<String, u64>::new(
                sm.stores[0].store.clone(),
                Serdes::string(),
                Serdes::u64_be(),
                WindowSpec::new(100),
            );
            for end in [10, 20, 60, 120] {
                s.put(&"k".into(), end - 10, end, &(end as u64)).unwrap();
            }
            sm.send_changelogs(&mut collector, 0).unwrap();
            sm.apply_committed(&collector).unwrap();
            let committed = collector.0.len();
            // Floor 60: segment 0 (ends 0..49) goes; reads stop seeing it at
            // once, before any commit.
            s.advance(160).unwrap();
            assert_eq!(s.stored_entries().unwrap(), 2);
            sm.send_changelogs(&mut collector, 0).unwrap();
            let mut tombstones: Vec<_> = collector.0[committed..]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            tombstones.sort();
            assert_eq!(tombstones.len(), 2, "one per entry of the dropped segment");
            sm.apply_committed(&collector).unwrap();
            // An uncommitted expiry is rolled back by a crash (drop without commit).
            s.advance(1_000).unwrap();
            assert_eq!(s.stored_entries().unwrap(), 0);
        }
        let sm = open();
        let s = WindowStore::<String, u64>::new(
            sm.stores[0].store.clone(),
            Serdes::string(),
            Serdes::u64_be(),
            WindowSpec::new(100),
        );
        assert_eq!(s.observed_stream_time().unwrap(), 160);
        let ends: Vec<i64> = s.all().unwrap().iter().map(|(w, _)| w.end).collect();
        assert_eq!(ends, [60, 120]);
    }

    #[test]
    fn windowed_serde_round_trips_and_rejects_short_input() {
        let s = Windowed::serde(Serdes::u64_be());
        let w = Windowed::new(7u64, -5, 5);
        let mut buf = Vec::new();
        s.serialize(&w, &mut buf).unwrap();
        assert_eq!(s.deserialize(&buf).unwrap(), w);
        assert!(s.deserialize(&[1, 2]).is_err());
    }
}
