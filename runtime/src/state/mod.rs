//! State stores: what they are, how writes stay transactional, and how they
//! reach the changelog.
//!
//! Layers, from the processor down:
//! - [`KeyValueStore`] / [`TtlStore`]: typed handles; serdes turn keys and
//!   values into bytes.
//! - `TxnStore` (`transactional.rs`): holds this commit interval's writes in a
//!   write set. Reads see the write set first, then the backend. Nothing
//!   reaches disk before the Kafka transaction that carries the same writes
//!   to the changelog has committed, so after a crash the local store is
//!   exactly the last committed state and only the changelog tail is replayed.
//! - [`WindowStore`] (`window_store.rs`): values per key and time window,
//!   with retention; expired time segments go with one range deletion.
//! - backends: RocksDB (`rocksdb_backend.rs`, one instance per task, one
//!   column family per store, checkpoints in the same atomic batch) or memory
//!   (`memory_backend.rs`).
//! - `StateManager` (`manager.rs`): the task's stores, their changelog
//!   records at commit, and applying the write sets after the commit.

mod builder;
mod key_value;
mod manager;
mod memory_backend;
mod rocksdb_backend;
mod transactional;
mod ttl;
mod window_store;

pub(crate) use builder::StoreDef;
pub use builder::{StoreBuilder, StoreKind};
pub use key_value::KeyValueStore;
pub(crate) use manager::{SealedState, StateManager};
pub(crate) use rocksdb_backend::{
    DEFAULT_ALL_MEMTABLES_BYTES, DEFAULT_BLOCK_CACHE_BYTES, TaskDb, set_shared_memory,
};
pub(crate) use transactional::{Backend, TxnStore};
pub use ttl::{Sweep, TtlStore};
pub(crate) use window_store::WindowKeySlot;
pub use window_store::{WindowStore, Windowed};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Serdes;
    use crate::record::Headers;
    use crate::task_context::RecordCollector;

    /// (topic, partition, key, value) of a collected changelog record.
    type Collected = (String, i32, Vec<u8>, Option<Vec<u8>>);

    /// Collects changelog records and acknowledges them with offsets.
    #[derive(Default)]
    struct VecCollector {
        records: Vec<Collected>,
    }
    impl RecordCollector for VecCollector {
        fn send(
            &mut self,
            topic: &str,
            partition: Option<i32>,
            key: Option<&[u8]>,
            value: Option<&[u8]>,
            _: i64,
            _: &Headers,
        ) -> crate::Result<()> {
            self.records.push((
                topic.into(),
                partition.unwrap_or(-1),
                key.unwrap().to_vec(),
                value.map(|v| v.to_vec()),
            ));
            Ok(())
        }
        fn last_offset(&self, topic: &str, _: i32) -> Option<i64> {
            let n = self.records.iter().filter(|r| r.0 == topic).count();
            n.checked_sub(1).map(|n| n as i64)
        }
    }

    fn defs() -> Vec<StoreDef> {
        vec![
            StoreBuilder::key_value("counts", Serdes::string(), Serdes::u64_be()).into_def(),
            StoreBuilder::key_value("mem", Serdes::string(), Serdes::string())
                .in_memory()
                .into_def(),
        ]
    }

    #[test]
    fn rocksdb_store_keeps_only_committed_state_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app").join("0_1");
        let mut collector = VecCollector::default();
        {
            let mut sm = StateManager::open(
                &defs(),
                "app",
                Some(path.clone()),
                1,
                Duration::from_secs(1),
            )
            .unwrap();
            let counts = KeyValueStore::<String, u64>::new(
                sm.stores[0].store.clone(),
                Serdes::string(),
                Serdes::u64_be(),
            );
            counts.put(&"a".into(), &1).unwrap();
            counts.put(&"a".into(), &2).unwrap();
            counts.put(&"b".into(), &7).unwrap();
            counts.delete(&"b".into()).unwrap();
            assert_eq!(
                counts.get(&"a".into()).unwrap(),
                Some(2),
                "reads see uncommitted writes"
            );
            sm.send_changelogs(&mut collector, 0).unwrap();
            // One changelog record per key (coalesced), tombstone for the delete.
            let mut cl: Vec<_> = collector
                .records
                .iter()
                .filter(|r| r.0 == "app-counts-changelog")
                .cloned()
                .collect();
            cl.sort();
            assert_eq!(
                cl,
                vec![
                    (
                        "app-counts-changelog".to_string(),
                        1,
                        b"a".to_vec(),
                        Some(2u64.to_be_bytes().to_vec())
                    ),
                    ("app-counts-changelog".to_string(), 1, b"b".to_vec(), None),
                ]
            );
            sm.apply_committed(&collector).unwrap();
            assert_eq!(sm.checkpoint(0).unwrap(), Some(2));
            // An uncommitted write that is never committed (crash).
            counts.put(&"a".into(), &99).unwrap();
            counts.put(&"z".into(), &5).unwrap();
        }
        let sm = StateManager::open(&defs(), "app", Some(path), 1, Duration::from_secs(1)).unwrap();
        let counts = KeyValueStore::<String, u64>::new(
            sm.stores[0].store.clone(),
            Serdes::string(),
            Serdes::u64_be(),
        );
        assert_eq!(counts.all().unwrap(), vec![("a".to_string(), 2)]);
        assert_eq!(sm.checkpoint(0).unwrap(), Some(2));
        // The in-memory store has no checkpoint after a reopen: full restore.
        assert_eq!(sm.checkpoint(1).unwrap(), None);
    }

    #[test]
    fn a_ttl_store_changelogs_its_entries_and_restores_them_with_their_expiry() {
        let ttl_defs = || {
            vec![
                StoreBuilder::ttl(
                    "seen",
                    Serdes::string(),
                    Serdes::unit(),
                    Duration::from_millis(100),
                )
                .into_def(),
            ]
        };
        let dir = tempfile::tempdir().unwrap();
        let mut collector = VecCollector::default();
        {
            let mut sm = StateManager::open(
                &ttl_defs(),
                "app",
                Some(dir.path().join("a")),
                0,
                Duration::from_secs(1),
            )
            .unwrap();
            let seen = TtlStore::<String, ()>::new(
                sm.stores[0].store.clone(),
                Serdes::string(),
                Serdes::unit(),
                100,
            );
            seen.put(&"k".into(), &(), 0).unwrap();
            seen.put(&"k".into(), &(), 50).unwrap();
            seen.put(&"gone".into(), &(), 0).unwrap();
            sm.send_changelogs(&mut collector, 0).unwrap();
            sm.apply_committed(&collector).unwrap();
            assert_eq!(seen.purge_expired(100).unwrap(), 1, "gone expired at 100");
            sm.send_changelogs(&mut collector, 100).unwrap();
        }
        // Only data entries (`d` + key) were sent: k twice coalesced into
        // one write, gone written then deleted in the next commit.
        let mut keys: Vec<(Vec<u8>, bool)> = collector
            .records
            .iter()
            .map(|r| (r.2.clone(), r.3.is_some()))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                (b"dgone".to_vec(), false),
                (b"dgone".to_vec(), true),
                (b"dk".to_vec(), true),
            ]
        );
        // Restore into an empty store, replaying an older write of k too
        // (an uncompacted changelog): the older write must not purge k
        // early.
        let mut sm = StateManager::open(
            &ttl_defs(),
            "app",
            Some(dir.path().join("b")),
            0,
            Duration::from_secs(1),
        )
        .unwrap();
        let exp = |t: i64| Some(t.to_be_bytes().to_vec());
        let restored = vec![
            (b"dk".to_vec(), exp(100)),
            (b"dgone".to_vec(), exp(100)),
            (b"dk".to_vec(), exp(150)),
            (b"dgone".to_vec(), None),
        ];
        sm.apply_restored(0, &restored, 4).unwrap();
        let seen = TtlStore::<String, ()>::new(
            sm.stores[0].store.clone(),
            Serdes::string(),
            Serdes::unit(),
            100,
        );
        assert!(seen.get(&"gone".into(), 0).unwrap().is_none());
        assert_eq!(seen.purge_expired(120).unwrap(), 0, "k lives until 150");
        assert!(seen.get(&"k".into(), 120).unwrap().is_some());
        assert_eq!(seen.purge_expired(150).unwrap(), 1);
        assert!(seen.get(&"k".into(), 0).unwrap().is_none());
    }

    #[test]
    fn an_expiry_index_left_by_an_earlier_version_is_dropped_on_open() {
        let defs = vec![
            StoreBuilder::ttl(
                "seen",
                Serdes::string(),
                Serdes::unit(),
                Duration::from_millis(100),
            )
            .into_def(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            StateManager::open(
                &defs,
                "app",
                Some(dir.path().into()),
                0,
                Duration::from_secs(1),
            )
            .unwrap()
        };
        let all = |sm: &StateManager| {
            sm.stores[0]
                .store
                .borrow()
                .scan(None, &|_| true)
                .unwrap()
                .into_iter()
                .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
                .collect::<Vec<_>>()
        };
        {
            // What an earlier version wrote: a data entry and its index entry.
            let mut sm = open();
            let mut index_key = b"x".to_vec();
            index_key.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 100]);
            index_key.extend_from_slice(b"k");
            let restored = vec![
                (b"dk".to_vec(), Some(100i64.to_be_bytes().to_vec())),
                (index_key, Some(Vec::new())),
            ];
            sm.apply_restored(0, &restored, 2).unwrap();
            assert_eq!(all(&sm).len(), 2);
        }
        let sm = open();
        assert_eq!(all(&sm), ["dk"]);
        assert_eq!(sm.checkpoint(0).unwrap(), Some(2), "the checkpoint stays");
        let seen = TtlStore::<String, ()>::new(
            sm.stores[0].store.clone(),
            Serdes::string(),
            Serdes::unit(),
            100,
        );
        assert!(seen.get(&"k".into(), 99).unwrap().is_some());
    }

    #[test]
    fn scans_merge_write_set_and_committed_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateManager::open(
            &defs(),
            "app",
            Some(dir.path().into()),
            0,
            Duration::from_secs(1),
        )
        .unwrap();
        let s = KeyValueStore::<String, u64>::new(
            sm.stores[0].store.clone(),
            Serdes::string(),
            Serdes::u64_be(),
        );
        for (k, v) in [("apple", 1), ("apricot", 2), ("banana", 3), ("cherry", 4)] {
            s.put(&k.into(), &v).unwrap();
        }
        let c = VecCollector::default();
        sm.apply_committed(&c).unwrap();
        s.put(&"avocado".into(), &5).unwrap();
        s.delete(&"apricot".into()).unwrap();
        s.put(&"banana".into(), &30).unwrap();
        let keys = |v: Vec<(String, u64)>| {
            v.into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(s.prefix_scan(&"a".into()).unwrap()),
            ["apple=1", "avocado=5"]
        );
        assert_eq!(
            keys(s.range(&"avocado".into(), &"banana".into()).unwrap()),
            ["avocado=5", "banana=30"]
        );
        assert_eq!(
            keys(s.all().unwrap()),
            ["apple=1", "avocado=5", "banana=30", "cherry=4"]
        );
        sm.discard();
        assert_eq!(
            keys(s.all().unwrap()),
            ["apple=1", "apricot=2", "banana=3", "cherry=4"]
        );
    }

    /// A RocksDB-backed state manager of `defs()` at `dir`, its `counts`
    /// store and a typed view of it.
    fn open_counts(
        dir: &std::path::Path,
        partition: i32,
    ) -> (
        StateManager,
        std::rc::Rc<std::cell::RefCell<TxnStore>>,
        KeyValueStore<String, u64>,
    ) {
        let sm = StateManager::open(
            &defs(),
            "app",
            Some(dir.into()),
            partition,
            Duration::from_secs(1),
        )
        .unwrap();
        let store = sm.stores[0].store.clone();
        let s = KeyValueStore::new(store.clone(), Serdes::string(), Serdes::u64_be());
        (sm, store, s)
    }

    #[test]
    fn a_sealed_write_set_is_read_under_the_new_one_and_applied_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store, s) = open_counts(dir.path(), 0);
        let all = |s: &KeyValueStore<String, u64>| {
            s.all()
                .unwrap()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            s.put(&k.into(), &v).unwrap();
        }
        sm.apply_committed(&VecCollector::default()).unwrap();
        // Transaction 1: sealed (its commit is in flight).
        s.put(&"b".into(), &20).unwrap();
        s.delete(&"c".into()).unwrap();
        s.put(&"d".into(), &4).unwrap();
        store.borrow_mut().delete_range(b"a", b"b");
        sm.seal();
        // Transaction 2, on top of it.
        s.put(&"c".into(), &30).unwrap();
        s.delete(&"d".into()).unwrap();
        s.put(&"e".into(), &5).unwrap();
        assert_eq!(
            s.get(&"a".into()).unwrap(),
            None,
            "range-deleted in the sealed layer"
        );
        assert_eq!(
            s.get(&"b".into()).unwrap(),
            Some(20),
            "from the sealed layer"
        );
        assert_eq!(
            s.get(&"c".into()).unwrap(),
            Some(30),
            "rewritten after the seal"
        );
        assert_eq!(s.get(&"d".into()).unwrap(), None, "deleted after the seal");
        assert_eq!(all(&s), ["b=20", "c=30", "e=5"]);
        assert_eq!(
            store.borrow().committed_keys_in(b"a", b"z").unwrap(),
            [b"b".to_vec(), b"d".to_vec()],
            "keys written by earlier transactions: backend and sealed layer"
        );
        // Transaction 1 commits: only its writes reach the backend.
        sm.apply_committed(&VecCollector::default()).unwrap();
        assert_eq!(all(&s), ["b=20", "c=30", "e=5"]);
        sm.discard();
        assert_eq!(all(&s), ["b=20", "d=4"], "transaction 2 dropped, 1 kept");
    }

    #[test]
    fn a_sealed_state_written_by_another_thread_is_the_committed_state_with_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path: std::path::PathBuf = dir.path().into();
        {
            let (mut sm, _, s) = open_counts(&path, 3);
            s.put(&"a".into(), &1).unwrap();
            s.put(&"b".into(), &2).unwrap();
            sm.seal();
            let sealed = sm.sealed_state();
            s.put(&"c".into(), &3).unwrap();
            // The commit thread, after the commit: RocksDB, with the
            // checkpoint from the producer's acknowledged changelog offsets.
            std::thread::spawn(move || {
                let rocks = sealed
                    .write(&|topic, p| (topic == "app-counts-changelog" && p == 3).then_some(41))
                    .unwrap();
                assert!(rocks, "the store is in RocksDB");
            })
            .join()
            .unwrap();
            assert_eq!(sm.checkpoint(0).unwrap(), Some(42));
            sm.apply_committed_with(&VecCollector::default(), true)
                .unwrap();
            assert_eq!(
                s.all().unwrap(),
                vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)],
                "the sealed layer is gone, its values read from RocksDB"
            );
            // "c" is never committed.
        }
        let sm = StateManager::open(&defs(), "app", Some(path), 3, Duration::from_secs(1)).unwrap();
        let s = KeyValueStore::<String, u64>::new(
            sm.stores[0].store.clone(),
            Serdes::string(),
            Serdes::u64_be(),
        );
        assert_eq!(s.all().unwrap(), vec![("a".into(), 1), ("b".into(), 2)]);
        assert_eq!(sm.checkpoint(0).unwrap(), Some(42));
    }

    #[test]
    fn sealing_twice_merges_the_layers() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, store, s) = open_counts(dir.path(), 0);
        s.put(&"a".into(), &1).unwrap();
        s.put(&"b".into(), &2).unwrap();
        sm.seal();
        store.borrow_mut().delete_range(b"a", b"b");
        s.put(&"b".into(), &3).unwrap();
        sm.seal();
        sm.apply_committed(&VecCollector::default()).unwrap();
        assert_eq!(
            s.all().unwrap(),
            vec![("b".to_string(), 3)],
            "the second seal's range deletion removed the first's write of a"
        );
    }

    #[test]
    fn restore_applies_records_and_checkpoint_atomically_and_wipe_clears() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateManager::open(
            &defs(),
            "app",
            Some(dir.path().into()),
            0,
            Duration::from_secs(1),
        )
        .unwrap();
        sm.apply_restored(
            0,
            &[
                (b"k".to_vec(), Some(1u64.to_be_bytes().to_vec())),
                (b"gone".to_vec(), None),
            ],
            10,
        )
        .unwrap();
        let s = KeyValueStore::<String, u64>::new(
            sm.stores[0].store.clone(),
            Serdes::string(),
            Serdes::u64_be(),
        );
        assert_eq!(s.all().unwrap(), vec![("k".to_string(), 1)]);
        assert_eq!(sm.checkpoint(0).unwrap(), Some(10));
        sm.wipe(0).unwrap();
        assert!(s.all().unwrap().is_empty());
        assert_eq!(sm.checkpoint(0).unwrap(), None);
    }

    #[test]
    fn ttl_store_expires_in_stream_time_and_purges_expired_entries() {
        let s = TtlStore::<String, String>::in_memory_for_tests(
            "seen",
            Serdes::string(),
            Serdes::string(),
            100,
        );
        s.put(&"a".into(), &"x".into(), 1000).unwrap();
        s.put(&"b".into(), &"y".into(), 1050).unwrap();
        assert_eq!(s.get(&"a".into(), 1099).unwrap().as_deref(), Some("x"));
        assert_eq!(s.get(&"a".into(), 1100).unwrap(), None);
        // Re-writing extends the expiry and drops the old index entry.
        s.put(&"a".into(), &"x2".into(), 1090).unwrap();
        assert_eq!(s.purge_expired(1160).unwrap(), 1, "only b expired");
        assert_eq!(s.get(&"a".into(), 1160).unwrap().as_deref(), Some("x2"));
        assert_eq!(s.purge_expired(1190).unwrap(), 1);
        assert_eq!(s.purge_expired(5000).unwrap(), 0);
    }

    #[test]
    fn locked_state_directory_gives_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateManager::open(
            &defs(),
            "app",
            Some(dir.path().into()),
            0,
            Duration::from_secs(1),
        )
        .unwrap();
        let err = StateManager::open(
            &defs(),
            "app",
            Some(dir.path().into()),
            0,
            Duration::from_millis(300),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("locked by another process"),
            "{err}"
        );
    }
}
