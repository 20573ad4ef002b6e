//! `aggregate`: fold the records of each key into a value kept in a store;
//! also the engine under `count` and `reduce`.
//!
//! For each record the processor reads the key's current aggregate (from
//! its record cache, else from the store), applies the aggregator, writes
//! the result to the store, and hands it to the cache. The cache forwards
//! the latest aggregate of each key downstream at the next commit or when it
//! outgrows `cache.max.bytes.buffering` (see `record_cache.rs`); with a
//! budget of 0, or with [`Materialized::with_caching_disabled`], every
//! update is forwarded at once. An aborted transaction (`discard`) drops the
//! cache along with the store's uncommitted writes, so nothing of the
//! aborted work is forwarded.
//!
//! The store is a named key-value store (RocksDB and changelogged by
//! default; see [`Materialized`]); its changelog is
//! `<application.id>-<store>-changelog`. The result is a [`KTable`] whose
//! changes are the forwarded aggregates.
//!
//! The node reads the grouped stream, its repartitioned copy, or (for a
//! pre-aggregating `count()`, see `combine.rs`) the repartitioned partial
//! counts, which its aggregator adds up (`aggregate_node`).

use std::hash::Hash;
use std::sync::Arc;

use kstreams_runtime::{
    KeyValueStore, Processor, ProcessorContext, Record, Result, SerdeRef, StoreBuilder,
    StreamsError,
};

use crate::record_cache::{CacheEntry, Cached, ENTRY_OVERHEAD, RecordCache};
use crate::{KGroupedStream, KStream, KTable, Materialized};

/// The aggregation node: store, cache and the folding function
/// `f(key, value, current aggregate or None) -> new aggregate`.
pub(crate) struct AggregateProcessor<K, V, VA, F> {
    store_name: String,
    aggregator: Arc<F>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<VA>,
    caching: bool,
    store: Option<KeyValueStore<K, VA>>,
    cache: RecordCache<K, Option<VA>>,
    max_bytes: usize,
    scratch: Vec<u8>,
    _in: std::marker::PhantomData<fn(V)>,
}

/// Serialized length of `value`, as the cache's size estimate.
fn measure<T: 'static>(serde: &SerdeRef<T>, scratch: &mut Vec<u8>, value: &T) -> usize {
    scratch.clear();
    let _ = serde.serialize(value, scratch);
    scratch.len()
}

/// Forwards a cache entry. An entry emptied by a panicking aggregator
/// forwards the store's value (the last good aggregate), if any.
fn forward_entry<K, VA>(
    e: CacheEntry<K, Option<VA>>,
    store: Option<&KeyValueStore<K, VA>>,
    ctx: &mut ProcessorContext<K, Option<VA>>,
) -> Result<()>
where
    K: Clone + 'static,
    VA: Clone + 'static,
{
    let value = match (e.value, store) {
        (Some(v), _) => v,
        (None, Some(store)) => match store.get(&e.key)? {
            Some(v) => v,
            None => return Ok(()),
        },
        (None, None) => return Ok(()),
    };
    ctx.forward(Record {
        key: e.key,
        value: Some(value),
        timestamp: e.timestamp,
        headers: e.headers,
    })
}

impl<K, V, VA, F> Processor<K, V, K, Option<VA>> for AggregateProcessor<K, V, VA, F>
where
    K: Clone + Hash + Eq + 'static,
    V: 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<K, Option<VA>>) -> Result<()> {
        self.store = Some(ctx.key_value_store::<K, VA>(&self.store_name)?);
        self.max_bytes = if self.caching {
            ctx.cache_max_bytes()
        } else {
            0
        };
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<K, Option<VA>>,
    ) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = record;
        let Some(store) = self.store.as_ref() else {
            return Err(StreamsError::IllegalState(format!(
                "aggregation over store '{}' received a record before init",
                self.store_name
            )));
        };
        if self.max_bytes == 0 {
            let new = (self.aggregator)(&key, value, store.get(&key)?);
            store.put(&key, &new)?;
            return ctx.forward(Record {
                key,
                value: Some(new),
                timestamp,
                headers,
            });
        }
        let clean = match self.cache.find(&key) {
            Cached::Dirty(entry) => {
                // The aggregate is moved into the aggregator (no clone). If the
                // aggregator panics (the runtime may catch that and go on), the
                // entry is left empty: it then means "read the store", which
                // still holds the last good value, and is never forwarded.
                let old = match entry.value.take() {
                    Some(v) => Some(v),
                    None => store.get(&key)?,
                };
                let new = (self.aggregator)(&key, value, old);
                store.put(&key, &new)?;
                let old_size = entry.size;
                entry.size = entry.key_size
                    + measure(&self.value_serde, &mut self.scratch, &new)
                    + ENTRY_OVERHEAD;
                let new_size = entry.size;
                entry.value = Some(new);
                entry.timestamp = timestamp;
                entry.headers = headers;
                self.cache.resized(old_size, new_size);
                None
            }
            // A clean entry (forwarded at the last flush) saves a store read.
            Cached::Clean(old, key_size, slot) => Some((old, key_size, value, headers, Some(slot))),
            Cached::Absent => Some((
                store.get(&key)?,
                measure(&self.key_serde, &mut self.scratch, &key),
                value,
                headers,
                None,
            )),
        };
        if let Some((old, key_size, value, headers, slot)) = clean {
            let new = (self.aggregator)(&key, value, old);
            store.put(&key, &new)?;
            let size =
                key_size + measure(&self.value_serde, &mut self.scratch, &new) + ENTRY_OVERHEAD;
            let entry = CacheEntry {
                key,
                value: Some(new),
                timestamp,
                headers,
                size,
                key_size,
            };
            match slot {
                Some(slot) => self.cache.reinsert(slot, entry),
                None => self.cache.insert(entry),
            }
        }
        while self.cache.total_bytes() > self.max_bytes {
            if self.cache.clean_bytes() > 0 {
                self.cache.clear_clean();
                continue;
            }
            match self.cache.pop_oldest() {
                Some(e) => forward_entry(e, Some(store), ctx)?,
                None => break,
            }
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<K, Option<VA>>) -> Result<()> {
        // Forward one at a time: a downstream error must not lose the rest.
        // Forwarded values stay as clean entries, for reads.
        while let Some(e) = self
            .cache
            .pop_oldest_keeping_clean(self.max_bytes, |e| e.value.clone().map(Some))
        {
            forward_entry(e, self.store.as_ref(), ctx)?;
        }
        Ok(())
    }

    fn discard(&mut self) {
        self.cache.clear();
    }
}

impl<K: Clone + Hash + Eq + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    /// Adds the aggregation node (after a repartition if needed) and its store.
    pub(crate) fn aggregate_impl<VA, F>(
        &self,
        prefix: &str,
        aggregator: F,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        op: &str,
    ) -> KTable<K, VA>
    where
        VA: Clone + 'static,
        F: Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
    {
        let (name, store_name) = self.aggregate_names(prefix, &materialized);
        let input = self.input(&store_name);
        self.aggregate_node(
            name,
            store_name,
            &input,
            aggregator,
            materialized,
            default_value_serde,
            op,
        )
    }

    /// The aggregation node's generated name and its store's name (the
    /// materialized name, else a generated one), in this order, so that the
    /// generated names do not depend on what is inserted before the node.
    pub(crate) fn aggregate_names<VA>(
        &self,
        prefix: &str,
        materialized: &Materialized<K, VA>,
    ) -> (String, String) {
        let builder = &self.stream.builder;
        let name = builder.next_name(prefix);
        let store_name = materialized
            .name
            .clone()
            .unwrap_or_else(|| builder.next_name(&format!("{prefix}STATE-STORE-")));
        (name, store_name)
    }

    /// Adds the aggregation node `name` reading `input` (this grouping's
    /// stream, its repartitioned copy, or pre-aggregated partials of it) and
    /// its store `store_name`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn aggregate_node<VIn, VA, F>(
        &self,
        name: String,
        store_name: String,
        input: &KStream<K, VIn>,
        aggregator: F,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        op: &str,
    ) -> KTable<K, VA>
    where
        VIn: Clone + 'static,
        VA: Clone + 'static,
        F: Fn(&K, VIn, Option<VA>) -> VA + Send + Sync + 'static,
    {
        let builder = self.stream.builder.clone();
        let key_serde = self.stream.resolve_serde(
            self.store_key_serde(materialized.key_serde.clone()),
            &None,
            &format!("{op}() into store '{store_name}'"),
            "Materialized::with_key_serde or Grouped::with",
        );
        let value_serde = self.stream.resolve_serde(
            materialized.value_serde.clone().or(default_value_serde),
            &None,
            &format!("{op}() into store '{store_name}'"),
            "Materialized::with_value_serde",
        );
        let table = KTable {
            builder: builder.clone(),
            node: name.clone(),
            store_name: Some(store_name.clone()),
            key_serde: key_serde.clone(),
            value_serde: value_serde.clone(),
        };
        let (Some(ks), Some(vs)) = (key_serde, value_serde) else {
            return table;
        };
        let aggregator = Arc::new(aggregator);
        let caching = materialized.caching;
        let (sn, pks, pvs) = (store_name.clone(), ks.clone(), vs.clone());
        let added = builder.add_processor::<K, VIn, K, Option<VA>, _, _>(
            &name,
            move || AggregateProcessor {
                store_name: sn.clone(),
                aggregator: aggregator.clone(),
                key_serde: pks.clone(),
                value_serde: pvs.clone(),
                caching,
                store: None,
                cache: RecordCache::new(),
                max_bytes: 0,
                scratch: Vec::new(),
                _in: std::marker::PhantomData,
            },
            &[&input.node],
        );
        if added {
            let mut store = StoreBuilder::key_value(store_name, ks, vs);
            if !materialized.persistent {
                store = store.in_memory();
            }
            if !materialized.logged {
                store = store.with_logging_disabled();
            }
            builder.with_topology(|t| t.add_state_store(store, &[&name]).map(|_| ()));
        }
        table
    }

    /// Folds the values of each key into an aggregate: `initializer()` for a
    /// new key, then `aggregator(&key, value, aggregate)` per record. The
    /// store needs a value serde ([`Materialized::with_value_serde`]).
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("purchases", Consumed::with(Serdes::string(), Serdes::i64_text()))
    ///     .group_by_key(Grouped::default())
    ///     .aggregate(
    ///         || (0u64, 0i64),
    ///         |_user, amount, (n, total)| (n + 1, total + amount),
    ///         Materialized::as_("spend").with_value_serde(Serdes::json::<(u64, i64)>()),
    ///     )
    ///     .to_stream()
    ///     .to("spend", Produced::default());
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("purchases", Some("ann"), "30", 0).unwrap();
    /// d.pipe_str("purchases", Some("ann"), "12", 0).unwrap();
    /// assert_eq!(d.read_output("spend")[1].value_str(), Some("[2,42]"));
    /// ```
    pub fn aggregate<VA, I, A>(
        &self,
        initializer: I,
        aggregator: A,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA>
    where
        VA: Clone + 'static,
        I: Fn() -> VA + Send + Sync + 'static,
        A: Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    {
        self.aggregate_impl(
            "KSTREAM-AGGREGATE-",
            move |k: &K, v: V, old: Option<VA>| aggregator(k, v, old.unwrap_or_else(&initializer)),
            materialized,
            None,
            "aggregate",
        )
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::{Serdes, TopologyTestDriver};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Stats {
        n: u64,
        min: i64,
        max: i64,
    }

    fn stats_topology(materialized: Materialized<String, Stats>) -> kstreams_runtime::Topology {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
            .group_by_key(Grouped::default())
            .aggregate(
                || Stats {
                    n: 0,
                    min: i64::MAX,
                    max: i64::MIN,
                },
                |_, x, s| Stats {
                    n: s.n + 1,
                    min: s.min.min(x),
                    max: s.max.max(x),
                },
                materialized.with_value_serde(Serdes::json()),
            )
            .to_stream()
            .to("out", Produced::default());
        b.build().unwrap()
    }

    #[test]
    fn aggregate_forwards_every_update_when_committing_every_record() {
        let mut d = driver(stats_topology(Materialized::as_("stats")));
        for (k, x) in [("a", "5"), ("b", "1"), ("a", "-2"), ("a", "9")] {
            d.pipe_str("in", Some(k), x, 0).unwrap();
        }
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[
                ("a", r#"{"n":1,"min":5,"max":5}"#),
                ("b", r#"{"n":1,"min":1,"max":1}"#),
                ("a", r#"{"n":2,"min":-2,"max":5}"#),
                ("a", r#"{"n":3,"min":-2,"max":9}"#),
            ])
        );
        assert_eq!(
            d.key_value_store_all::<String, Stats>("stats").unwrap(),
            vec![
                (
                    "a".to_string(),
                    Stats {
                        n: 3,
                        min: -2,
                        max: 9
                    }
                ),
                (
                    "b".to_string(),
                    Stats {
                        n: 1,
                        min: 1,
                        max: 1
                    }
                ),
            ]
        );
        // One changelog record per key per commit.
        assert_eq!(
            kv(&d.all_records("test-app-stats-changelog")),
            pairs(&[
                ("a", r#"{"n":1,"min":5,"max":5}"#),
                ("b", r#"{"n":1,"min":1,"max":1}"#),
                ("a", r#"{"n":2,"min":-2,"max":5}"#),
                ("a", r#"{"n":3,"min":-2,"max":9}"#),
            ])
        );
    }

    #[test]
    fn cache_coalesces_per_commit_and_keeps_first_update_order() {
        let t = stats_topology(Materialized::as_("stats"));
        let mut d = TopologyTestDriver::builder(t)
            .commit_every(3)
            .build()
            .unwrap();
        for (k, x) in [("b", "1"), ("a", "5"), ("b", "7")] {
            d.pipe_str("in", Some(k), x, 0).unwrap();
        }
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[
                ("b", r#"{"n":2,"min":1,"max":7}"#),
                ("a", r#"{"n":1,"min":5,"max":5}"#)
            ])
        );
        d.pipe_str("in", Some("a"), "6", 0).unwrap();
        assert!(d.read_output("out").is_empty(), "nothing before the commit");
        d.commit().unwrap();
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[("a", r#"{"n":2,"min":5,"max":6}"#)])
        );
    }

    #[test]
    fn caching_disabled_forwards_every_update_despite_the_budget() {
        let t = stats_topology(Materialized::as_("stats").with_caching_disabled());
        let mut d = TopologyTestDriver::builder(t)
            .commit_every(100)
            .build()
            .unwrap();
        d.pipe_str("in", Some("a"), "1", 0).unwrap();
        d.pipe_str("in", Some("a"), "2", 0).unwrap();
        assert_eq!(d.read_output("out").len(), 2);
    }

    #[test]
    fn a_small_cache_evicts_oldest_first() {
        // Each entry is estimated at key + JSON value + 64 bytes, about 90:
        // a 200-byte budget holds two keys.
        let t = stats_topology(Materialized::as_("stats"));
        let mut d = TopologyTestDriver::builder(t)
            .commit_every(100)
            .cache_max_bytes(200)
            .build()
            .unwrap();
        for (k, x) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")] {
            d.pipe_str("in", Some(k), x, 0).unwrap();
        }
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[("a", r#"{"n":2,"min":1,"max":3}"#)])
        );
        d.commit().unwrap();
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[
                ("b", r#"{"n":1,"min":2,"max":2}"#),
                ("c", r#"{"n":1,"min":4,"max":4}"#)
            ])
        );
    }

    #[test]
    fn a_panicking_aggregator_loses_nothing_when_the_runtime_goes_on() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::default())
            .aggregate(
                || 0i64,
                |_, v: String, acc| match v.parse::<i64>() {
                    Ok(n) => acc + n,
                    Err(_) => panic!("not a number: {v}"),
                },
                Materialized::as_("sum").with_value_serde(Serdes::i64_text()),
            )
            .to_stream()
            .to("out", Produced::default());
        let mut d = TopologyTestDriver::builder(b.build().unwrap())
            .commit_every(100)
            .processing_policy(kstreams_runtime::ErrorPolicy::LogAndContinue)
            .build()
            .unwrap();
        for (k, v) in [
            ("a", "1"),
            ("a", "boom"),
            ("a", "2"),
            ("b", "5"),
            ("b", "boom"),
        ] {
            d.pipe_str("in", Some(k), v, 0).unwrap();
        }
        d.commit().unwrap();
        // "a" went on from its last good value; "b" was emptied by the
        // panic and is forwarded from the store.
        assert_eq!(kv(&d.read_output("out")), pairs(&[("a", "3"), ("b", "5")]));
        assert_eq!(d.processing_errors(), 2);
    }

    #[test]
    fn aggregate_without_value_serde_is_a_clear_error() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
            .group_by_key(Grouped::default())
            .aggregate(|| 0i64, |_, v, a| a + v, Materialized::as_("sum"));
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("aggregate() into store 'sum'"), "{err}");
        assert!(err.contains("Materialized::with_value_serde"), "{err}");
    }

    #[test]
    fn duplicate_store_names_are_an_error() {
        let b = StreamsBuilder::new();
        let g = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
            .group_by_key(Grouped::default());
        g.count(Materialized::as_("same"));
        g.count(Materialized::as_("same"));
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("a store named 'same' already exists"), "{err}");
    }

    #[test]
    fn in_memory_unlogged_store_writes_no_changelog() {
        let mut d = driver(stats_topology(
            Materialized::as_("stats")
                .in_memory()
                .with_logging_disabled(),
        ));
        d.pipe_str("in", Some("a"), "1", 0).unwrap();
        assert!(d.all_records("test-app-stats-changelog").is_empty());
        assert_eq!(
            d.key_value_store_all::<String, Stats>("stats")
                .unwrap()
                .len(),
            1
        );
    }
}
