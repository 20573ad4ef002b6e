//! One RocksDB instance per task, under `state.dir/<application.id>/<task id>/`.
//!
//! Each store of the task is a column family, and each store's changelog
//! checkpoint is a key in the default column family. The state manager
//! writes a commit's write sets and the new checkpoints in one `WriteBatch`,
//! so the on-disk state and its checkpoint can never disagree, whatever the
//! moment of a crash. The WAL stays on (without fsync): a killed process
//! loses nothing that RocksDB acknowledged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    WriteBatch, WriteBufferManager,
};

use crate::error::{Result, StreamsError};

const CHECKPOINT_PREFIX: &[u8] = b"__checkpoint__/";

/// Memtable size of one store (column family) before it is flushed (at
/// most the shared budget).
const MEMTABLE_BYTES: usize = 8 << 20;
/// Default of `rocksdb.memtables.max.bytes`: all memtables of all tasks'
/// stores in this process together.
pub(crate) const DEFAULT_ALL_MEMTABLES_BYTES: usize = 16 << 20;
/// Default of `rocksdb.block.cache.bytes`: the block cache every task's
/// RocksDB shares.
pub(crate) const DEFAULT_BLOCK_CACHE_BYTES: usize = 8 << 20;
/// Bloom filter bits per key of every table file.
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Memory limits shared by every task's RocksDB in the process.
///
/// Why: each stateful task has its own RocksDB (so a task's state moves,
/// restores and is deleted as a unit). With per-instance defaults, memory
/// grew with the number of tasks: every store kept up to two 16 MiB
/// memtables and its own block cache, and an orders job with eight
/// stateful tasks held most of its data in memtables. A shared
/// `WriteBufferManager` flushes the largest memtables once all of them
/// together pass `rocksdb.memtables.max.bytes`, and one LRU block cache serves
/// every instance, so the process's RocksDB memory stays bounded however
/// many tasks it runs (Kafka Streams users get the same with a
/// `RocksDBConfigSetter`).
struct SharedMemory {
    write_buffers: WriteBufferManager,
    block_cache: Cache,
    memtables: usize,
    block_cache_bytes: usize,
}

// SAFETY: RocksDB's WriteBufferManager is made to be shared by DB instances
// used from many threads (its counters are atomic, its state behind a
// mutex); the Rust wrapper is only `!Sync` because it holds a raw pointer.
// kstreams never mutates it after creation.
unsafe impl Send for SharedMemory {}
unsafe impl Sync for SharedMemory {}

static SHARED: OnceLock<SharedMemory> = OnceLock::new();

/// The shared memory, created with the defaults unless
/// [`set_shared_memory`] came first.
fn shared_memory() -> &'static SharedMemory {
    SHARED.get_or_init(|| SharedMemory::new(DEFAULT_ALL_MEMTABLES_BYTES, DEFAULT_BLOCK_CACHE_BYTES))
}

/// Sizes the process's shared RocksDB memory (`rocksdb.memtables.max.bytes`,
/// `rocksdb.block.cache.bytes`). It is created once per process, when the
/// first application starts (or the first store opens): a later call with
/// other sizes changes nothing and says so.
pub(crate) fn set_shared_memory(memtables: usize, block_cache: usize) {
    let shared = SHARED.get_or_init(|| SharedMemory::new(memtables, block_cache));
    if (shared.memtables, shared.block_cache_bytes) != (memtables, block_cache) {
        tracing::warn!(
            memtables = shared.memtables,
            block_cache = shared.block_cache_bytes,
            requested_memtables = memtables,
            requested_block_cache = block_cache,
            "RocksDB memory is shared by the whole process and was already sized; \
             keeping the first sizes"
        );
    }
}

impl SharedMemory {
    fn new(memtables: usize, block_cache: usize) -> SharedMemory {
        SharedMemory {
            write_buffers: WriteBufferManager::new_write_buffer_manager(memtables, false),
            block_cache: Cache::new_lru_cache(block_cache),
            memtables,
            block_cache_bytes: block_cache,
        }
    }
}

/// A task's RocksDB. Reads go through it on the stream thread; batches are
/// built and written through its `DbWriter`.
pub(crate) struct TaskDb {
    w: DbWriter,
}

/// Builds and writes batches into a task's database; cloned to the commit
/// thread, which applies a committed transaction's write sets.
#[derive(Clone)]
pub(crate) struct DbWriter {
    db: std::sync::Arc<DB>,
    path: PathBuf,
}

impl DbWriter {
    /// Adds a put or delete for each of `entries` to `batch`, looking `cf`
    /// up once. Given in key order, the entries go into the memtable's skip
    /// list each next to the one before, which is much cheaper than random
    /// inserts (RocksDB keeps the previous insert's position per level).
    pub fn batch_writes<'a>(
        &self,
        batch: &mut WriteBatch,
        cf: &str,
        entries: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Result<()> {
        let h = cf_handle(&self.db, cf)?;
        for (key, value) in entries {
            match value {
                Some(v) => batch.put_cf(h, key, v),
                None => batch.delete_cf(h, key),
            }
        }
        Ok(())
    }

    /// Adds a range deletion `[from, to)` of `cf` to `batch`.
    pub fn batch_delete_range(
        &self,
        batch: &mut WriteBatch,
        cf: &str,
        from: &[u8],
        to: &[u8],
    ) -> Result<()> {
        batch_range_delete(&self.db, batch, cf, from, to)
    }

    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.db
            .write(batch)
            .map_err(|e| store_err(&self.path.display().to_string(), e))
    }
}

fn cf_handle<'a>(db: &'a DB, cf: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(cf)
        .ok_or_else(|| store_err(cf, "column family missing"))
}

fn batch_range_delete(
    db: &DB,
    batch: &mut WriteBatch,
    cf: &str,
    from: &[u8],
    to: &[u8],
) -> Result<()> {
    batch.delete_range_cf(cf_handle(db, cf)?, from, to);
    Ok(())
}

fn store_err(store: &str, e: impl std::fmt::Display) -> StreamsError {
    StreamsError::store(store, e.to_string())
}

impl TaskDb {
    /// Opens (or creates) the task's database with a column family per store.
    /// A database locked by another owner is retried until `lock_wait` passes
    /// (during a rebalance the previous owner may still be closing it). A
    /// corrupt database is wiped: the changelog rebuilds it.
    pub fn open(path: &Path, stores: &[String], lock_wait: Duration) -> Result<TaskDb> {
        std::fs::create_dir_all(path).map_err(|e| StreamsError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let deadline = Instant::now() + lock_wait;
        let mut wiped = false;
        loop {
            match Self::try_open(path, stores) {
                Ok(db) => {
                    return Ok(TaskDb {
                        w: DbWriter {
                            db: std::sync::Arc::new(db),
                            path: path.to_path_buf(),
                        },
                    });
                }
                Err(e) => {
                    let msg = e.to_string();
                    if msg.contains("lock") || msg.contains("LOCK") {
                        if Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                        return Err(StreamsError::store(
                            path.display().to_string(),
                            format!(
                                "state directory is locked by another process or thread ({msg}); \
                                     is another instance running with the same state.dir and application.id?"
                            ),
                        ));
                    }
                    if !wiped
                        && (e.kind() == rocksdb::ErrorKind::Corruption
                            || msg.contains("Corruption"))
                    {
                        tracing::warn!(path = %path.display(), error = %msg, "corrupt state directory; wiping it and restoring from the changelog");
                        let _ = std::fs::remove_dir_all(path);
                        std::fs::create_dir_all(path).map_err(|e| StreamsError::Io {
                            path: path.display().to_string(),
                            source: e,
                        })?;
                        wiped = true;
                        continue;
                    }
                    return Err(StreamsError::store(
                        path.display().to_string(),
                        format!("cannot open RocksDB: {msg}"),
                    ));
                }
            }
        }
    }

    fn try_open(path: &Path, stores: &[String]) -> std::result::Result<DB, rocksdb::Error> {
        let shared = shared_memory();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(2);
        opts.set_write_buffer_manager(&shared.write_buffers);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&shared.block_cache);
        // A Bloom filter per table file: a lookup of a key that is not there
        // (every new order id the dedupe store checks) skips the files
        // instead of searching each one's index and data blocks, which
        // grew costly as the state outgrew the memtables (orders at 1M:
        // 1.30x the throughput, 0.86x the CPU; benches/RESULTS.md).
        // 10 bits per key: ~1% false positives.
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        let mut cf_opts = Options::default();
        cf_opts.set_write_buffer_size(MEMTABLE_BYTES.min(shared.memtables.max(1 << 20)));
        cf_opts.set_block_based_table_factory(&table);
        let cfs: Vec<ColumnFamilyDescriptor> = stores
            .iter()
            .map(|s| ColumnFamilyDescriptor::new(s.as_str(), cf_opts.clone()))
            .collect();
        // Opened at background.threads.nice: RocksDB starts its flush and
        // compaction threads on the first open (kafka/priority.rs).
        crate::kafka::priority::created_lowered(crate::kafka::priority::store_open_nice(), || {
            DB::open_cf_descriptors(&opts, path, cfs)
        })
    }

    fn cf(&self, cf: &str) -> Result<&rocksdb::ColumnFamily> {
        cf_handle(&self.w.db, cf)
    }

    /// Calls `f` with the value of `key` in `cf`, read in place (pinned in
    /// the block cache or memtable, not copied).
    pub fn get_with<R>(
        &self,
        store: &str,
        cf: &str,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R> {
        let v = self
            .w
            .db
            .get_pinned_cf(self.cf(cf)?, key)
            .map_err(|e| store_err(store, e))?;
        Ok(f(v.as_deref()))
    }

    pub fn scan(
        &self,
        store: &str,
        cf: &str,
        from: Option<&[u8]>,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mode = match from {
            Some(f) => IteratorMode::From(f, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.w.db.iterator_cf(self.cf(cf)?, mode) {
            let (k, v) = item.map_err(|e| store_err(store, e))?;
            if !keep(&k) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    pub fn approximate_len(&self, cf: &str) -> u64 {
        self.cf(cf)
            .ok()
            .and_then(|h| {
                self.w
                    .db
                    .property_int_value_cf(h, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0)
    }

    /// Approximate bytes of a store (for metrics): its live SST files plus
    /// its memtables.
    pub fn approximate_size_bytes(&self, cf: &str) -> u64 {
        let Ok(h) = self.cf(cf) else { return 0 };
        [
            "rocksdb.live-sst-files-size",
            "rocksdb.cur-size-all-mem-tables",
        ]
        .iter()
        .filter_map(|p| self.w.db.property_int_value_cf(h, *p).ok().flatten())
        .sum()
    }

    /// The changelog offset up to which `store` holds committed state.
    pub fn checkpoint(&self, store: &str) -> Result<Option<i64>> {
        let key = [CHECKPOINT_PREFIX, store.as_bytes()].concat();
        match self.w.db.get(&key).map_err(|e| store_err(store, e))? {
            Some(v) if v.len() == 8 => Ok(Some(i64::from_be_bytes(v[..8].try_into().unwrap()))),
            Some(_) => Err(store_err(store, "corrupt checkpoint entry")),
            None => Ok(None),
        }
    }

    pub fn batch_checkpoint(batch: &mut WriteBatch, store: &str, offset: i64) {
        batch.put(
            [CHECKPOINT_PREFIX, store.as_bytes()].concat(),
            offset.to_be_bytes(),
        );
    }

    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.w.write(batch)
    }

    /// The batch writer (clone it for another thread).
    pub fn writer(&self) -> &DbWriter {
        &self.w
    }

    /// Deletes every entry of `cf` and its checkpoint (before a full restore).
    pub fn wipe(&self, store: &str, cf: &str) -> Result<()> {
        let h = self.cf(cf)?;
        let mut batch = WriteBatch::default();
        for item in self.w.db.iterator_cf(h, IteratorMode::Start) {
            let (k, _) = item.map_err(|e| store_err(store, e))?;
            batch.delete_cf(h, k);
        }
        batch.delete([CHECKPOINT_PREFIX, store.as_bytes()].concat());
        self.write(batch)
    }
}
