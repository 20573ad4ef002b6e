//! The transactional layer of every store: a write set in front of a backend.
//!
//! Why: under exactly-once, a store's local state must never run ahead of
//! what Kafka committed. Writes therefore stay in memory (the write set) until
//! the task's transaction commits; then the state manager applies them to the
//! backend together with the changelog checkpoint in one atomic batch. Reads
//! look in the write set first, so a processor always sees its own writes.
//!
//! The write set also coalesces: a key updated a thousand times in one commit
//! interval produces one changelog record.
//!
//! Why two layers: the Kafka runtime does not wait for a transaction's
//! commit before it goes on processing. When a task hands its transaction
//! to a commit thread, its write set is *sealed* (frozen) and a new one
//! starts; reads look in the new write set, then the sealed one, then the
//! backend. Once the commit succeeds the sealed layer is applied to the
//! backend; if it fails, both layers are dropped and the task rewinds to its
//! last committed offsets.

use std::rc::Rc;

use crate::error::Result;

use super::memory_backend::MemoryBackend;
use super::rocksdb_backend::TaskDb;

/// Where committed state lives.
pub(crate) enum Backend {
    Rocks { db: Rc<TaskDb>, cf: String },
    Memory(MemoryBackend),
}

impl Backend {
    /// Calls `f` with the committed value of `key` (RocksDB's pinned
    /// slice: not copied out).
    fn get_with<R>(
        &self,
        store: &str,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R> {
        match self {
            Backend::Rocks { db, cf } => db.get_with(store, cf, key, f),
            Backend::Memory(m) => Ok(f(m.get(key))),
        }
    }

    fn scan(
        &self,
        store: &str,
        from: Option<&[u8]>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        match self {
            Backend::Rocks { db, cf } => db.scan(store, cf, from, keep),
            Backend::Memory(m) => Ok(m.scan(from, keep)),
        }
    }

    pub fn approximate_len(&self) -> u64 {
        match self {
            Backend::Rocks { db, cf } => db.approximate_len(cf),
            Backend::Memory(m) => m.len() as u64,
        }
    }
}

/// A store's committed backend plus its uncommitted write set.
pub(crate) struct TxnStore {
    pub name: String,
    pub changelog: Option<String>,
    pub backend: Backend,
    write_set: WriteSet,
    write_bytes: usize,
    /// Uncommitted range deletions `[from, to)`, applied before the write
    /// set (so a key written after a range deletion survives it).
    range_deletes: Vec<(Vec<u8>, Vec<u8>)>,
    /// The write set of a transaction being committed (see the module docs).
    sealed: Option<std::sync::Arc<Layer>>,
}

/// One transaction's writes: range deletions, then the write set.
#[derive(Default, Clone)]
pub(crate) struct Layer {
    pub write_set: WriteSet,
    pub range_deletes: Vec<(Vec<u8>, Vec<u8>)>,
}

type WriteSet = crate::FastHashMap<Vec<u8>, Option<Vec<u8>>>;

/// What [`TxnStore::scan_chunk`] returns: the entries, and where the next
/// chunk starts (`None`: done).
pub(crate) type ScanChunk = (Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>);

fn in_ranges(ranges: &[(Vec<u8>, Vec<u8>)], key: &[u8]) -> bool {
    ranges
        .iter()
        .any(|(from, to)| key >= from.as_slice() && key < to.as_slice())
}

impl Layer {
    /// What this layer says about `key`: `Some(value or None)` if it decides,
    /// `None` if the key falls through to the layer below.
    fn lookup(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        if let Some(v) = self.write_set.get(key) {
            return Some(v.as_deref());
        }
        if !self.range_deletes.is_empty() && in_ranges(&self.range_deletes, key) {
            return Some(None);
        }
        None
    }
}

/// `below` (sorted entries of the layers under this one) with one layer's
/// range deletions and writes applied, limited to `from <= key` and `keep`.
fn overlay(
    write_set: &WriteSet,
    range_deletes: &[(Vec<u8>, Vec<u8>)],
    mut below: Vec<(Vec<u8>, Vec<u8>)>,
    from: Option<&[u8]>,
    keep: &dyn Fn(&[u8]) -> bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if !range_deletes.is_empty() {
        below.retain(|(k, _)| !in_ranges(range_deletes, k));
    }
    if write_set.is_empty() {
        return below;
    }
    let mut pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = write_set
        .iter()
        .filter(|(k, _)| from.is_none_or(|f| k.as_slice() >= f) && keep(k))
        .collect();
    pending.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(below.len() + pending.len());
    let mut c = below.into_iter().peekable();
    let mut p = pending.into_iter().peekable();
    loop {
        match (c.peek(), p.peek()) {
            (None, None) => break,
            (Some(_), None) => out.push(c.next().unwrap()),
            (None, Some(_)) => {
                let (k, v) = p.next().unwrap();
                if let Some(v) = v {
                    out.push((k.clone(), v.clone()));
                }
            }
            (Some((ck, _)), Some((pk, _))) => {
                if ck < *pk {
                    out.push(c.next().unwrap());
                } else {
                    if ck == *pk {
                        c.next();
                    }
                    let (k, v) = p.next().unwrap();
                    if let Some(v) = v {
                        out.push((k.clone(), v.clone()));
                    }
                }
            }
        }
    }
    out
}

impl TxnStore {
    pub fn new(name: String, changelog: Option<String>, backend: Backend) -> Self {
        TxnStore {
            name,
            changelog,
            backend,
            write_set: WriteSet::default(),
            write_bytes: 0,
            range_deletes: Vec::new(),
            sealed: None,
        }
    }

    /// Seals the write set of the transaction about to commit and starts an
    /// empty one. Sealing twice without `take_sealed` merges the two.
    pub fn seal(&mut self) {
        // The next transaction likely writes about as many keys: start the
        // new write set at that size instead of growing it from empty.
        let next = WriteSet::with_capacity_and_hasher(self.write_set.len(), Default::default());
        let write_set = std::mem::replace(&mut self.write_set, next);
        let range_deletes = std::mem::take(&mut self.range_deletes);
        self.write_bytes = 0;
        match &mut self.sealed {
            None => {
                self.sealed = Some(std::sync::Arc::new(Layer {
                    write_set,
                    range_deletes,
                }))
            }
            Some(l) => {
                // Only a caller that sealed twice without a commit between
                // (the test driver's path) gets here: the layer is unshared.
                let l = std::sync::Arc::make_mut(l);
                for (from, to) in range_deletes {
                    l.write_set
                        .retain(|k, _| !(k.as_slice() >= from.as_slice() && k < &to));
                    l.range_deletes.push((from, to));
                }
                l.write_set.extend(write_set);
            }
        }
    }

    /// The sealed layer, if any, shared (for a commit thread).
    pub fn sealed(&self) -> Option<std::sync::Arc<Layer>> {
        self.sealed.clone()
    }

    /// The sealed layer (empty if none), to apply after its commit.
    pub fn take_sealed(&mut self) -> std::sync::Arc<Layer> {
        self.sealed.take().unwrap_or_default()
    }

    fn range_deleted(&self, key: &[u8]) -> bool {
        in_ranges(&self.range_deletes, key)
    }

    /// Deletes every key in `[from, to)`: the committed ones (with one
    /// RocksDB range deletion after the commit) and the uncommitted ones.
    /// Reads stop seeing them at once; keys written afterwards are kept.
    pub fn delete_range(&mut self, from: &[u8], to: &[u8]) {
        if from >= to {
            return;
        }
        self.write_set
            .retain(|k, _| !(k.as_slice() >= from && k.as_slice() < to));
        self.range_deletes.push((from.to_vec(), to.to_vec()));
    }

    /// The uncommitted range deletions, `[from, to)`.
    pub fn range_deletes(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.range_deletes
    }

    /// Keys in `[from, to)` that earlier transactions wrote (the backend and
    /// a sealed layer; not the current write set).
    pub fn committed_keys_in(&self, from: &[u8], to: &[u8]) -> Result<Vec<Vec<u8>>> {
        let keep = |k: &[u8]| k < to;
        let mut entries = self.backend.scan(&self.name, Some(from), &keep)?;
        if let Some(l) = &self.sealed {
            entries = overlay(&l.write_set, &l.range_deletes, entries, Some(from), &keep);
        }
        Ok(entries.into_iter().map(|(k, _)| k).collect())
    }

    /// Reads a key and hands the bytes (or `None`) to `f` without copying
    /// them out of the write set.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        if let Some(v) = self.write_set.get(key) {
            return Ok(f(v.as_deref()));
        }
        if !self.range_deletes.is_empty() && self.range_deleted(key) {
            return Ok(f(None));
        }
        if let Some(v) = self.sealed.as_ref().and_then(|l| l.lookup(key)) {
            return Ok(f(v));
        }
        self.backend.get_with(&self.name, key, f)
    }

    /// Writes `key` → `value`, copying them (a key already in the write set
    /// reuses its buffer).
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        match self.write_set.get_mut(key) {
            Some(Some(buf)) => {
                self.write_bytes = self.write_bytes + value.len() - buf.len().min(self.write_bytes);
                buf.clear();
                buf.extend_from_slice(value);
            }
            Some(slot) => {
                self.write_bytes += value.len();
                *slot = Some(value.to_vec());
            }
            None => {
                self.write_bytes += key.len() + value.len() + 48;
                self.write_set.insert(key.to_vec(), Some(value.to_vec()));
            }
        }
    }

    /// [`put`](Self::put) for buffers the caller built and no longer needs:
    /// moved in, not copied, with one hash lookup.
    pub fn put_owned(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.insert_owned(key, Some(value));
    }

    /// [`delete`](Self::delete) for a key buffer the caller no longer needs.
    pub fn delete_owned(&mut self, key: Vec<u8>) {
        self.insert_owned(key, None);
    }

    fn insert_owned(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let new_len = value.as_ref().map_or(0, Vec::len);
        match self.write_set.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let old_len = e.get().as_ref().map_or(0, Vec::len);
                self.write_bytes = (self.write_bytes + new_len).saturating_sub(old_len);
                e.insert(value);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                self.write_bytes += e.key().len() + new_len + 48;
                e.insert(value);
            }
        }
    }

    pub fn delete(&mut self, key: &[u8]) {
        match self.write_set.get_mut(key) {
            Some(slot) => *slot = None,
            None => {
                self.write_bytes += key.len() + 48;
                self.write_set.insert(key.to_vec(), None);
            }
        }
    }

    /// Entries with `from <= key` (all if `None`) for which `keep` holds,
    /// stopping at the first key where it does not; the sealed layer and
    /// the write set merged in.
    pub fn scan(
        &self,
        from: Option<&[u8]>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .scan_chunk(from.unwrap_or_default(), keep, usize::MAX)?
            .0)
    }

    /// One chunk of a `scan` from `from`: at most `limit` committed
    /// entries are read, and every layer's entries up to the last of them
    /// are merged in. Returns the entries and where the next chunk starts
    /// (`None`: the scan is complete), so a long scan can be spread over
    /// many calls without holding the whole range in memory.
    pub fn scan_chunk(
        &self,
        from: &[u8],
        keep: &dyn Fn(&[u8]) -> bool,
        limit: usize,
    ) -> Result<ScanChunk> {
        let limit = limit.max(1);
        let read = std::cell::Cell::new(0usize);
        let below = self.backend.scan(&self.name, Some(from), &|k| {
            if !keep(k) || read.get() == limit {
                return false;
            }
            read.set(read.get() + 1);
            true
        })?;
        // A full chunk ends at its last committed key; a short one read
        // everything, so the layers above are merged up to the end.
        let bound = (below.len() == limit).then(|| below[below.len() - 1].0.clone());
        let keep_bounded = |k: &[u8]| keep(k) && bound.as_deref().is_none_or(|b| k <= b);
        let mut entries = below;
        if let Some(l) = &self.sealed {
            entries = overlay(
                &l.write_set,
                &l.range_deletes,
                entries,
                Some(from),
                &keep_bounded,
            );
        }
        let entries = overlay(
            &self.write_set,
            &self.range_deletes,
            entries,
            Some(from),
            &keep_bounded,
        );
        let next = bound.map(|mut b| {
            // The smallest key after `b`.
            b.push(0);
            b
        });
        Ok((entries, next))
    }

    /// The uncommitted writes, one per key (the latest).
    pub fn write_set(&self) -> &WriteSet {
        &self.write_set
    }

    pub fn discard(&mut self) {
        self.sealed = None;
        self.range_deletes.clear();
        self.write_set.clear();
        self.write_bytes = 0;
    }

    pub fn write_set_bytes(&self) -> usize {
        self.write_bytes
    }

    pub fn approximate_len(&self) -> u64 {
        self.backend.approximate_len()
            + self.write_set.len() as u64
            + self.sealed.as_ref().map_or(0, |l| l.write_set.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TxnStore {
        TxnStore::new("s".into(), None, Backend::Memory(MemoryBackend::default()))
    }

    fn read(s: &TxnStore, key: &[u8]) -> Option<Vec<u8>> {
        s.get_with(key, |v| v.map(<[u8]>::to_vec)).unwrap()
    }

    #[test]
    fn chunked_scans_merge_every_layer_and_resume_where_they_stopped() {
        let mut m = MemoryBackend::default();
        for k in ["d1", "d3", "d5", "d7", "x0"] {
            m.put(k.as_bytes().to_vec(), b"c".to_vec());
        }
        let mut s = TxnStore::new("s".into(), None, Backend::Memory(m));
        s.put(b"d2", b"sealed");
        s.delete(b"d3");
        s.seal();
        for k in ["d4", "d5", "d9"] {
            s.put(k.as_bytes(), b"new");
        }
        s.delete(b"d7");
        let keep = |k: &[u8]| k.first() == Some(&b'd');
        let text = |entries: &[(Vec<u8>, Vec<u8>)]| {
            entries
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    )
                })
                .collect::<Vec<_>>()
        };
        let mut from = b"d".to_vec();
        let mut chunks = Vec::new();
        loop {
            let (entries, next) = s.scan_chunk(&from, &keep, 2).unwrap();
            chunks.push(text(&entries));
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        // Two committed keys per chunk (d1 d3 | d5 d7 | none left), each
        // chunk merged with the layers' keys up to its last committed one.
        assert_eq!(
            chunks,
            vec![
                vec!["d1=c", "d2=sealed"],
                vec!["d4=new", "d5=new"],
                vec!["d9=new"]
            ]
        );
        assert_eq!(
            chunks.concat(),
            text(&s.scan(Some(b"d"), &keep).unwrap()),
            "the chunks add up to one scan"
        );
    }

    #[test]
    fn owned_writes_read_and_count_like_copied_ones() {
        let (mut copied, mut owned) = (store(), store());
        copied.put(b"a", b"12345");
        owned.put_owned(b"a".to_vec(), b"12345".to_vec());
        copied.put(b"a", b"1");
        owned.put_owned(b"a".to_vec(), b"1".to_vec());
        copied.delete(b"b");
        owned.delete_owned(b"b".to_vec());
        copied.put(b"b", b"xy");
        owned.put_owned(b"b".to_vec(), b"xy".to_vec());
        for s in [&copied, &owned] {
            assert_eq!(read(s, b"a").as_deref(), Some(&b"1"[..]));
            assert_eq!(read(s, b"b").as_deref(), Some(&b"xy"[..]));
        }
        assert_eq!(owned.write_set(), copied.write_set());
        assert_eq!(owned.write_set_bytes(), copied.write_set_bytes());
        owned.delete_owned(b"a".to_vec());
        assert_eq!(read(&owned, b"a"), None);
    }

    #[test]
    fn a_new_write_set_after_sealing_starts_at_the_last_ones_size() {
        let mut s = store();
        for i in 0..100u32 {
            s.put_owned(i.to_be_bytes().to_vec(), vec![1]);
        }
        s.seal();
        assert!(s.write_set().capacity() >= 100);
        assert!(s.write_set().is_empty());
        assert_eq!(read(&s, &7u32.to_be_bytes()).as_deref(), Some(&[1u8][..]));
    }
}
