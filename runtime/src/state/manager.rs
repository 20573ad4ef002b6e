//! The task's state manager: opens the task's stores, sends their changelog
//! records before a commit, and applies their write sets after it.
//!
//! The commit protocol, seen from the stores:
//! 1. `send_changelogs`: every dirty key's latest value (or a tombstone) goes
//!    to `<application.id>-<store>-changelog`, partition = task partition,
//!    inside the task's open transaction.
//! 2. The runtime commits the transaction (offsets included).
//! 3. `apply_committed`: the write sets and the new checkpoints (last
//!    changelog offset + 1) go to RocksDB in one atomic batch.
//!
//! If the process dies between 2 and 3, the local checkpoint is older than
//! the changelog, and restore replays the difference. If it dies before 2,
//! the transaction aborts and the local state is already right.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use rocksdb::WriteBatch;

use crate::error::Result;
use crate::record::Headers;
use crate::task_context::RecordCollector;

use super::builder::StoreDef;
use super::memory_backend::MemoryBackend;
use super::{Backend, TaskDb, TxnStore};

pub(crate) struct ManagedStore {
    pub def: StoreDef,
    pub store: Rc<RefCell<TxnStore>>,
    /// For in-memory stores: the changelog offset restored or written so far.
    pub memory_checkpoint: Option<i64>,
}

/// A task's sealed write sets, handed to its commit thread, which writes the
/// RocksDB stores' part with the new checkpoints in one batch once the
/// transaction has committed: the RocksDB write does not run on the stream
/// thread, which reads the same values from the sealed layers until it drops
/// them in `apply_committed_with`. (Sending the changelog records from the
/// commit thread as well was measured slower: run 36 in benches/RESULTS.md.)
pub(crate) struct SealedState {
    partition: i32,
    stores: Vec<SealedStore>,
    writer: Option<super::rocksdb_backend::DbWriter>,
}

struct SealedStore {
    name: String,
    changelog: Option<String>,
    /// The column family, for a RocksDB store.
    cf: Option<String>,
    layer: std::sync::Arc<super::transactional::Layer>,
}

impl SealedState {
    /// After the commit: the RocksDB stores' sealed write sets and each
    /// one's checkpoint (last acknowledged changelog offset + 1, from
    /// `last_offset(topic, partition)`) in one batch. Returns whether there
    /// are RocksDB stores (whose layers the stream thread then only drops).
    pub fn write(&self, last_offset: &dyn Fn(&str, i32) -> Option<i64>) -> Result<bool> {
        let Some(writer) = &self.writer else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        for s in &self.stores {
            let Some(cf) = &s.cf else {
                continue;
            };
            // Range deletions first: later writes into a range win.
            for (from, to) in &s.layer.range_deletes {
                writer.batch_delete_range(&mut batch, cf, from, to)?;
            }
            // In key order: see `DbWriter::batch_writes`.
            let mut entries: Vec<(&[u8], Option<&[u8]>)> = s
                .layer
                .write_set
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_deref()))
                .collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            writer.batch_writes(&mut batch, cf, entries)?;
            if let Some(topic) = &s.changelog
                && let Some(o) = last_offset(topic, self.partition)
            {
                TaskDb::batch_checkpoint(&mut batch, &s.name, o + 1);
            }
        }
        if !batch.is_empty() {
            writer.write(batch)?;
        }
        Ok(true)
    }
}

pub(crate) struct StateManager {
    pub stores: Vec<ManagedStore>,
    pub db: Option<Rc<TaskDb>>,
    pub partition: i32,
    empty_headers: Headers,
    /// Whether the write sets were sealed since the last `apply_committed`.
    sealed: bool,
}

impl StateManager {
    /// Opens the stores of one task. Persistent stores share one RocksDB
    /// instance at `dir` (which must be given when any store is persistent).
    pub fn open(
        defs: &[StoreDef],
        application_id: &str,
        dir: Option<PathBuf>,
        partition: i32,
        lock_wait: Duration,
    ) -> Result<StateManager> {
        let persistent: Vec<String> = defs
            .iter()
            .filter(|d| d.persistent)
            .map(|d| d.name.clone())
            .collect();
        let db = match (&dir, persistent.is_empty()) {
            (_, true) => None,
            (Some(dir), false) => Some(Rc::new(TaskDb::open(dir, &persistent, lock_wait)?)),
            (None, false) => {
                return Err(crate::StreamsError::Config(
                    "persistent stores need a state directory: set state.dir".into(),
                ));
            }
        };
        let stores = defs
            .iter()
            .map(|def| {
                let backend = match (&db, def.persistent) {
                    (Some(db), true) => Backend::Rocks {
                        db: db.clone(),
                        cf: def.name.clone(),
                    },
                    _ => Backend::Memory(MemoryBackend::default()),
                };
                if let (Backend::Rocks { db, cf }, crate::StoreKind::Ttl { .. }) =
                    (&backend, &def.kind)
                {
                    super::ttl::drop_legacy_index(db, cf)?;
                }
                let store = TxnStore::new(
                    def.name.clone(),
                    def.changelog_topic(application_id),
                    backend,
                );
                Ok(ManagedStore {
                    def: def.clone(),
                    store: Rc::new(RefCell::new(store)),
                    memory_checkpoint: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StateManager {
            stores,
            db,
            partition,
            empty_headers: Headers::default(),
            sealed: false,
        })
    }

    /// The committed changelog position of a store: where its restore starts.
    pub fn checkpoint(&self, index: usize) -> Result<Option<i64>> {
        let s = &self.stores[index];
        match (&self.db, s.def.persistent) {
            (Some(db), true) => db.checkpoint(&s.def.name),
            _ => Ok(s.memory_checkpoint),
        }
    }

    /// Bytes held in all write sets.
    pub fn write_set_bytes(&self) -> usize {
        self.stores
            .iter()
            .map(|s| s.store.borrow().write_set_bytes())
            .sum()
    }

    /// Step 1 of a commit: the write sets go to the changelogs.
    pub fn send_changelogs(
        &self,
        collector: &mut dyn RecordCollector,
        timestamp: i64,
    ) -> Result<()> {
        // Range deletions (expired window segments): a tombstone per
        // committed key in the range, so the compacted changelog forgets
        // them too. Only the deleted range is read.
        self.send_range_tombstones(collector, timestamp)?;
        for s in &self.stores {
            let store = s.store.borrow();
            let Some(topic) = &store.changelog else {
                continue;
            };
            for (k, v) in store.write_set() {
                collector.send(
                    topic,
                    Some(self.partition),
                    Some(k),
                    v.as_deref(),
                    timestamp,
                    &self.empty_headers,
                )?;
            }
        }
        Ok(())
    }

    /// Between steps 1 and 2: the write sets sent to the changelogs are
    /// sealed; processing goes on into new ones while the transaction commits.
    pub fn seal(&mut self) {
        for s in &self.stores {
            s.store.borrow_mut().seal();
        }
        self.sealed = true;
    }

    /// Range deletions' tombstones to the changelogs: one per key that
    /// earlier transactions wrote in a deleted range (read from the backend,
    /// so on this thread), unless the write set rewrote the key.
    fn send_range_tombstones(
        &self,
        collector: &mut dyn RecordCollector,
        timestamp: i64,
    ) -> Result<()> {
        for s in &self.stores {
            let store = s.store.borrow();
            let Some(topic) = &store.changelog else {
                continue;
            };
            for (from, to) in store.range_deletes() {
                for k in store.committed_keys_in(from, to)? {
                    if store.write_set().contains_key(&k) {
                        continue;
                    }
                    collector.send(
                        topic,
                        Some(self.partition),
                        Some(&k),
                        None,
                        timestamp,
                        &self.empty_headers,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// After `seal`: the sealed write sets for the commit thread.
    pub fn sealed_state(&self) -> SealedState {
        let stores = self
            .stores
            .iter()
            .filter_map(|s| {
                let store = s.store.borrow();
                let layer = store.sealed()?;
                Some(SealedStore {
                    name: s.def.name.clone(),
                    changelog: store.changelog.clone(),
                    cf: match &store.backend {
                        Backend::Rocks { cf, .. } => Some(cf.clone()),
                        Backend::Memory(_) => None,
                    },
                    layer,
                })
            })
            .collect();
        SealedState {
            partition: self.partition,
            stores,
            writer: self.db.as_ref().map(|db| db.writer().clone()),
        }
    }

    /// Step 3 of a commit: the sealed write sets and the checkpoints become
    /// local state. Without a `seal` since the last call, the current write
    /// sets are sealed and applied.
    #[cfg(test)]
    pub fn apply_committed(&mut self, collector: &dyn RecordCollector) -> Result<()> {
        self.apply_committed_with(collector, false)
    }

    /// `apply_committed`; with `rocks_written`, the RocksDB stores' sealed
    /// write sets and checkpoints were already written (`SealedState::write`
    /// on the commit thread) and are only dropped here.
    pub fn apply_committed_with(
        &mut self,
        collector: &dyn RecordCollector,
        rocks_written: bool,
    ) -> Result<()> {
        if !self.sealed {
            self.seal();
        }
        self.sealed = false;
        if !rocks_written {
            self.sealed_state()
                .write(&|topic, p| collector.last_offset(topic, p))?;
        }
        for s in &mut self.stores {
            let mut store = s.store.borrow_mut();
            let layer = store.take_sealed();
            let Backend::Memory(m) = &mut store.backend else {
                // RocksDB: written above or by the commit thread.
                continue;
            };
            let super::transactional::Layer {
                write_set,
                range_deletes,
            } = std::sync::Arc::try_unwrap(layer).unwrap_or_else(|shared| (*shared).clone());
            for (from, to) in &range_deletes {
                m.delete_range(from, to);
            }
            for (k, v) in write_set {
                match v {
                    Some(v) => m.put(k, v),
                    None => m.delete(&k),
                }
            }
            if let Some(o) = store
                .changelog
                .as_ref()
                .and_then(|t| collector.last_offset(t, self.partition))
            {
                s.memory_checkpoint = Some(o + 1);
            }
        }
        Ok(())
    }

    /// After an abort: forget everything not committed.
    pub fn discard(&mut self) {
        for s in &self.stores {
            s.store.borrow_mut().discard();
        }
        self.sealed = false;
    }

    /// Restore: applies changelog records directly to committed state, with
    /// the new checkpoint, atomically.
    pub fn apply_restored(
        &mut self,
        index: usize,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
        next_offset: i64,
    ) -> Result<()> {
        let s = &mut self.stores[index];
        let mut store = s.store.borrow_mut();
        match &mut store.backend {
            Backend::Rocks { db, cf } => {
                let mut batch = WriteBatch::default();
                // In key order (see `DbWriter::batch_writes`); the sort is
                // stable, so of two records of one key the later still wins.
                let mut entries: Vec<(&[u8], Option<&[u8]>)> = records
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                db.writer().batch_writes(&mut batch, cf, entries)?;
                TaskDb::batch_checkpoint(&mut batch, &s.def.name, next_offset);
                db.write(batch)?;
            }
            Backend::Memory(m) => {
                for (k, v) in records {
                    match v {
                        Some(v) => m.put(k.clone(), v.clone()),
                        None => m.delete(k),
                    }
                }
                s.memory_checkpoint = Some(next_offset);
            }
        }
        Ok(())
    }

    /// Empties a store before a full restore.
    pub fn wipe(&mut self, index: usize) -> Result<()> {
        let s = &mut self.stores[index];
        let mut store = s.store.borrow_mut();
        store.discard();
        let name = store.name.clone();
        match &mut store.backend {
            Backend::Rocks { db, cf } => db.wipe(&name, cf)?,
            Backend::Memory(m) => {
                m.clear();
                s.memory_checkpoint = None;
            }
        }
        Ok(())
    }
}
