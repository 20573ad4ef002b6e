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

use std::collections::HashMap;
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
    fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Backend::Rocks { db, cf } => db.get(store, cf, key),
            Backend::Memory(m) => Ok(m.get(key).map(|v| v.to_vec())),
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
    /// Keys starting with this byte are local only: not sent to the
    /// changelog, rebuilt on restore from the other entries (a TTL store's
    /// expiry index).
    pub local_prefix: Option<u8>,
    pub backend: Backend,
    write_set: HashMap<Vec<u8>, Option<Vec<u8>>>,
    write_bytes: usize,
    /// Uncommitted range deletions `[from, to)`, applied before the write
    /// set (so a key written after a range deletion survives it).
    range_deletes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl TxnStore {
    pub fn new(name: String, changelog: Option<String>, backend: Backend) -> Self {
        TxnStore {
            name,
            changelog,
            local_prefix: None,
            backend,
            write_set: HashMap::new(),
            write_bytes: 0,
            range_deletes: Vec::new(),
        }
    }

    fn range_deleted(&self, key: &[u8]) -> bool {
        self.range_deletes
            .iter()
            .any(|(from, to)| key >= from.as_slice() && key < to.as_slice())
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

    /// Committed keys in `[from, to)` (the backend only, not the write set).
    pub fn committed_keys_in(&self, from: &[u8], to: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .backend
            .scan(&self.name, Some(from), &|k| k < to)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
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
        let v = self.backend.get(&self.name, key)?;
        Ok(f(v.as_deref()))
    }

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
    /// stopping at the first key where it does not; write set merged in.
    pub fn scan(
        &self,
        from: Option<&[u8]>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut committed = self.backend.scan(&self.name, from, keep)?;
        if !self.range_deletes.is_empty() {
            committed.retain(|(k, _)| !self.range_deleted(k));
        }
        if self.write_set.is_empty() {
            return Ok(committed);
        }
        let mut pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = self
            .write_set
            .iter()
            .filter(|(k, _)| from.is_none_or(|f| k.as_slice() >= f) && keep(k))
            .collect();
        pending.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(committed.len() + pending.len());
        let mut c = committed.into_iter().peekable();
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
        Ok(out)
    }

    /// The uncommitted writes, one per key (the latest).
    pub fn write_set(&self) -> &HashMap<Vec<u8>, Option<Vec<u8>>> {
        &self.write_set
    }

    pub fn take_write_set(&mut self) -> HashMap<Vec<u8>, Option<Vec<u8>>> {
        self.write_bytes = 0;
        std::mem::take(&mut self.write_set)
    }

    pub fn take_range_deletes(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        std::mem::take(&mut self.range_deletes)
    }

    pub fn discard(&mut self) {
        self.range_deletes.clear();
        self.write_set.clear();
        self.write_bytes = 0;
    }

    pub fn write_set_bytes(&self) -> usize {
        self.write_bytes
    }

    pub fn approximate_len(&self) -> u64 {
        self.backend.approximate_len() + self.write_set.len() as u64
    }
}
