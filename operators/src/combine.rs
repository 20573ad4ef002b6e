//! `combine`: map-side pre-aggregation of `count()` in front of its
//! repartition topic.
//!
//! Why: `stream.flat_map(..).group_by_key().count()` must move every record
//! through the repartition topic `<name>-repartition` so that all records of
//! a key meet in one task, and that hop (a serialization, a produce, a
//! network copy, a fetch and a deserialization per record) is the cost of a
//! word count. Between two commits a task typically sees the same words
//! many times, so the writing side of the repartition can add them up
//! first: this node keeps an in-memory map key → (partial count, largest
//! timestamp) and sends one record per distinct key, whose value is the
//! partial count. The counting node on the reading side adds the partial
//! counts instead of 1 per record.
//!
//! Exact: a count is a sum, and addition is associative and commutative,
//! so summing partial sums gives the same total however the records were
//! split into partials. (This is why only `count()` combines: a `reduce` or
//! `aggregate` function need not be associative, and its repartition topic
//! carries the input values its function expects.)
//!
//! Exactly once: the map is emptied at every commit. The runtime calls the
//! processor's `flush` before the transaction commits (`StreamTask::prepare_commit`
//! → `flush_processors`), so the partial counts are produced in the same
//! transaction as the offsets of the input records they stand for: either
//! both become visible or neither does. After an aborted transaction the
//! runtime calls `discard` on every processor and rewinds the input to the
//! last committed offsets (`StreamTask::abort` in `runtime/src/task.rs`),
//! so the records behind the discarded partials are read and counted again;
//! `discard` therefore drops the map without sending anything. An early
//! send (below) is also correct: it only splits a key's records into more
//! partials, within the same transaction.
//!
//! Memory: the map is bounded by the task's record-cache budget
//! (`cache.max.bytes.buffering`, [`ProcessorContext::cache_max_bytes`]),
//! estimated per key as its serialized size plus a fixed overhead. When a
//! new key takes the map past the budget, every partial is sent at once and
//! the map starts over.
//!
//! When it is used (decided by `count()`): the grouped stream needs a
//! repartition, the count's store is cached (not
//! [`Materialized::with_caching_disabled`](crate::Materialized::with_caching_disabled)),
//! and the grouping did not opt out with
//! [`Grouped::with_pre_aggregation(false)`](crate::Grouped::with_pre_aggregation).
//! If the task's cache budget is 0 at run time, the node sends `(key, 1)`
//! for every record at once, with the record's timestamp and headers: one
//! repartition record and one count update per input record, as without
//! the combiner.
//!
//! Wire format: `<name>-repartition` keeps its name; its key is the
//! grouping key (the grouping's key serde) and its value is the partial
//! count as a `u64`, 8 bytes big-endian (`Serdes::u64_be`). The input
//! values are not sent, so their serde is not needed. A combined record's
//! timestamp is the largest timestamp of the records it stands for; its
//! headers are empty. The format differs from a repartition topic without
//! the combiner (the input values), so a job upgraded from a version
//! without it must start with that topic drained (or keep
//! `with_pre_aggregation(false)`).
//!
//! Keys: records are combined by key equality, whatever the key is; a
//! record whose Kafka key was null is counted under the value the key serde
//! gives null (e.g. `None` for `Serdes::optional`), exactly as `count()`
//! without the combiner counts it.
//!
//! Node: `<name>-combine`, in the sub-topology that writes the repartition
//! topic, between the grouped stream and `<name>-repartition-sink`.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;

use kstreams_runtime::{
    Headers, Processor, ProcessorContext, Record, Result, SerdeRef, Serdes, StreamsError,
};

use crate::record_cache::ENTRY_OVERHEAD;
use crate::{KGroupedStream, KStream, KTable, Materialized};

/// Bytes counted per buffered key on top of its serialized size: the
/// partial count and timestamp, the index slot, and the key held twice.
const PARTIAL_OVERHEAD: usize = 16 + ENTRY_OVERHEAD;

/// The partial count of one key since the last send.
struct Partial<K> {
    key: K,
    count: u64,
    /// Largest timestamp of the records counted.
    timestamp: i64,
}

/// The combine node: counts the records of each key between two sends and
/// forwards `(key, partial count)` at every commit (`flush`), when the
/// buffer outgrows the cache budget, and never after an abort (`discard`).
pub(crate) struct CombineProcessor<K, V> {
    key_serde: SerdeRef<K>,
    /// Key → position in `partials`.
    index: HashMap<K, usize>,
    /// Partials in the order of each key's first record since the last send.
    partials: Vec<Partial<K>>,
    /// Estimated bytes of the buffer.
    bytes: usize,
    /// The task's cache budget; 0 = forward `(key, 1)` per record.
    max_bytes: usize,
    scratch: Vec<u8>,
    _in: PhantomData<fn(V)>,
}

impl<K: Clone + Hash + Eq + 'static, V: 'static> CombineProcessor<K, V> {
    /// An empty combiner; `key_serde` measures keys for the budget.
    pub(crate) fn new(key_serde: SerdeRef<K>) -> Self {
        CombineProcessor {
            key_serde,
            index: HashMap::new(),
            partials: Vec::new(),
            bytes: 0,
            max_bytes: 0,
            scratch: Vec::new(),
            _in: PhantomData,
        }
    }

    /// Adds `count` records of `key`, the latest at `timestamp`.
    fn add(&mut self, key: K, count: u64, timestamp: i64) {
        if let Some(&i) = self.index.get(&key) {
            let p = &mut self.partials[i];
            p.count += count;
            p.timestamp = p.timestamp.max(timestamp);
            return;
        }
        self.scratch.clear();
        let _ = self.key_serde.serialize(&key, &mut self.scratch);
        self.bytes += self.scratch.len() + PARTIAL_OVERHEAD;
        self.index.insert(key.clone(), self.partials.len());
        self.partials.push(Partial {
            key,
            count,
            timestamp,
        });
    }

    /// Forwards every partial, oldest key first, and empties the buffer. If
    /// a child fails, the partials not forwarded yet stay buffered.
    fn forward_all(&mut self, ctx: &mut ProcessorContext<K, u64>) -> Result<()> {
        self.index.clear();
        self.bytes = 0;
        let mut partials = std::mem::take(&mut self.partials);
        let mut drain = partials.drain(..);
        while let Some(p) = drain.next() {
            let record = Record {
                key: p.key,
                value: p.count,
                timestamp: p.timestamp,
                headers: Headers::default(),
            };
            if let Err(e) = ctx.forward(record) {
                for rest in drain {
                    self.add(rest.key, rest.count, rest.timestamp);
                }
                return Err(e);
            }
        }
        drop(drain);
        // Keep the allocation for the next interval.
        self.partials = partials;
        Ok(())
    }

    /// Drops the buffer without forwarding it.
    fn clear(&mut self) {
        self.index.clear();
        self.partials.clear();
        self.bytes = 0;
    }

    /// Number of keys buffered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.partials.len()
    }
}

impl<K, V> Processor<K, V, K, u64> for CombineProcessor<K, V>
where
    K: Clone + Hash + Eq + 'static,
    V: 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<K, u64>) -> Result<()> {
        self.max_bytes = ctx.cache_max_bytes();
        Ok(())
    }

    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<K, u64>) -> Result<()> {
        if self.max_bytes == 0 {
            // No cache: one count update per input record downstream.
            return ctx.forward(Record {
                key: record.key,
                value: 1,
                timestamp: record.timestamp,
                headers: record.headers,
            });
        }
        self.add(record.key, 1, record.timestamp);
        if self.bytes > self.max_bytes {
            self.forward_all(ctx)?;
        }
        Ok(())
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<K, u64>) -> Result<()> {
        self.forward_all(ctx)
    }

    fn discard(&mut self) {
        // The transaction that would have carried these partials was
        // aborted and the input is rewound: the records come back.
        self.clear();
    }

    fn close(&mut self) {
        // Whatever is left was never committed; its input is not either.
        self.clear();
    }
}

impl<K: Clone + Hash + Eq + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    /// Whether `count()` pre-aggregates: a repartition is needed, the store
    /// is cached and the grouping did not opt out.
    pub(crate) fn combines<VA>(&self, materialized: &Materialized<K, VA>) -> bool {
        self.pre_aggregation && materialized.caching && self.stream.repartition_required
    }

    /// `count()` through a combiner: `<name>-combine` → `<name>-repartition`
    /// (values: partial counts, `u64` big-endian) → a counting node that
    /// adds the partial counts.
    pub(crate) fn count_combined(&self, materialized: Materialized<K, u64>) -> KTable<K, u64> {
        const PREFIX: &str = "KSTREAM-AGGREGATE-";
        let (name, store_name) = self.aggregate_names(PREFIX, &materialized);
        let Some(partials) = self.combined_input(&store_name) else {
            // The error is recorded; build() returns it.
            return KTable {
                builder: self.stream.builder.clone(),
                node: name,
                store_name: Some(store_name),
                key_serde: None,
                value_serde: Some(Serdes::u64_be()),
            };
        };
        self.aggregate_node(
            name,
            store_name,
            &partials,
            |_: &K, partial: u64, old: Option<u64>| old.unwrap_or(0) + partial,
            materialized,
            Some(Serdes::u64_be()),
            "count",
        )
    }

    /// Adds the combine node after the grouped stream and routes its
    /// partial counts through `<name>-repartition`; returns the stream read
    /// back from that topic, or `None` after recording an error.
    fn combined_input(&self, store_name: &str) -> Option<KStream<K, u64>> {
        let s = &self.stream;
        let builder = &s.builder;
        let name = self.name.clone().unwrap_or_else(|| store_name.to_string());
        let what = format!("the repartition topic '{name}-repartition'");
        let ks = s.resolve_serde(
            self.key_serde.clone(),
            &s.key_serde,
            &what,
            "Grouped::with(key_serde, value_serde) or Grouped::with_key_serde",
        )?;
        if builder.repartition_topic_taken(&name) {
            builder.fail(StreamsError::Topology(format!(
                "the repartition topic '{name}-repartition' is used twice; give each grouping or \
                 repartition its own name (Grouped::named / Repartitioned::named / Materialized::as_)"
            )));
            return None;
        }
        let combine = format!("{name}-combine");
        let measure = ks.clone();
        let added = builder.add_processor::<K, V, K, u64, _, _>(
            &combine,
            move || CombineProcessor::<K, V>::new(measure.clone()),
            &[&s.node],
        );
        if !added {
            return None;
        }
        let partials = KStream {
            builder: builder.clone(),
            node: combine,
            key_serde: Some(ks.clone()),
            value_serde: Some(Serdes::u64_be()),
            repartition_required: true,
        };
        Some(builder.repartition_through(&partials, &name, ks, Serdes::u64_be(), None))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::{Topology, TopologyTestDriver};

    /// Word count over `(word, ())` records re-keyed by `flat_map`, like
    /// the word_count example.
    fn word_count(
        grouped: Grouped<String, ()>,
        materialized: Materialized<String, u64>,
    ) -> Topology {
        let b = StreamsBuilder::new();
        b.stream("lines", Consumed::with(Serdes::unit(), Serdes::string()))
            .flat_map(|_, line: String| {
                line.split(' ')
                    .filter(|w| !w.is_empty())
                    .map(|w| (w.to_string(), ()))
                    .collect::<Vec<_>>()
            })
            .group_by_key(grouped.with_key_serde(Serdes::string()))
            .count(materialized)
            .to_stream()
            .to("out", Produced::with(Serdes::string(), Serdes::u64_text()));
        b.build().unwrap()
    }

    fn default_word_count() -> Topology {
        word_count(
            Grouped::with(Serdes::string(), Serdes::unit()),
            Materialized::as_("counts"),
        )
    }

    /// A deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// `n` lines of 1..=8 words drawn from a skewed vocabulary of up to
    /// 300 words, with their timestamps, and the expected count of each word.
    fn lines(n: usize, seed: u64) -> (Vec<(String, i64)>, HashMap<String, u64>) {
        let mut rng = Rng(seed);
        let mut expected = HashMap::new();
        let lines = (0..n)
            .map(|i| {
                let words: Vec<String> = (0..1 + rng.below(8))
                    .map(|_| {
                        // Small numbers are far more likely: a few hot
                        // words and a long tail, as in text.
                        let tail = 1 + rng.below(300);
                        let bound = 1 + rng.below(tail);
                        let w = rng.below(bound);
                        format!("w{w}")
                    })
                    .collect();
                for w in &words {
                    *expected.entry(w.clone()).or_insert(0) += 1;
                }
                // Timestamps go back and forth a little.
                let ts = 1_000 + i as i64 * 10 - rng.below(30) as i64;
                (words.join(" "), ts)
            })
            .collect();
        (lines, expected)
    }

    fn pipe(d: &mut TopologyTestDriver, lines: &[(String, i64)]) {
        for (line, ts) in lines {
            d.pipe_str("lines", None, line, *ts).unwrap();
        }
    }

    /// The last output count of each word.
    fn final_output(d: &mut TopologyTestDriver) -> HashMap<String, u64> {
        d.read_output_as("out", &Serdes::string(), &Serdes::u64_text())
            .unwrap()
            .into_iter()
            .collect()
    }

    fn store(d: &TopologyTestDriver) -> HashMap<String, u64> {
        d.key_value_store_all::<String, u64>("counts")
            .unwrap()
            .into_iter()
            .collect()
    }

    fn partial(bytes: Option<&[u8]>) -> u64 {
        Serdes::u64_be()
            .deserialize(bytes.expect("a partial count is never null"))
            .expect("8 bytes big-endian")
    }

    #[test]
    fn combined_counts_are_exact_and_the_repartition_topic_carries_partials() {
        let (input, expected) = lines(2_000, 7);
        let words: u64 = expected.values().sum();
        let mut d = TopologyTestDriver::builder(default_word_count())
            .commit_every(50)
            .build()
            .unwrap();
        pipe(&mut d, &input);
        d.commit().unwrap();

        assert_eq!(store(&d), expected);
        assert_eq!(final_output(&mut d), expected);

        let rep = d.all_records("test-app-counts-repartition");
        // Partials of each word add up to its count.
        let mut summed: HashMap<String, u64> = HashMap::new();
        for r in &rep {
            let n = partial(r.value.as_deref());
            assert!(n >= 1);
            *summed.entry(r.key_str().unwrap().to_string()).or_default() += n;
        }
        assert_eq!(summed, expected);
        // At most one record per word per commit (40 commits of 50 lines),
        // and far fewer records than words.
        let commits = input.len().div_ceil(50);
        assert!(rep.len() <= commits * expected.len(), "{}", rep.len());
        assert!(
            (rep.len() as u64) < words / 2,
            "{} repartition records for {words} words",
            rep.len()
        );
        println!(
            "{} input lines, {words} words, {} distinct; repartition records: {}",
            input.len(),
            expected.len(),
            rep.len()
        );
    }

    #[test]
    fn a_combined_record_has_the_largest_timestamp_of_its_records() {
        let mut d = TopologyTestDriver::builder(default_word_count())
            .commit_every(3)
            .build()
            .unwrap();
        d.pipe_str("lines", None, "a b", 50).unwrap();
        d.pipe_str("lines", None, "a", 70).unwrap();
        d.pipe_str("lines", None, "a b", 60).unwrap();
        let rep: Vec<(String, u64, i64)> = d
            .all_records("test-app-counts-repartition")
            .iter()
            .map(|r| {
                (
                    r.key_str().unwrap().to_string(),
                    partial(r.value.as_deref()),
                    r.timestamp,
                )
            })
            .collect();
        assert_eq!(rep, [("a".to_string(), 3, 70), ("b".to_string(), 2, 60)]);
        assert!(
            d.all_records("test-app-counts-repartition")[0]
                .headers
                .is_empty()
        );
    }

    #[test]
    fn without_cache_or_when_opted_out_every_record_goes_through() {
        let (input, expected) = lines(500, 11);
        let words: u64 = expected.values().sum();

        // Cache budget 0 at run time: the combiner sends (word, 1) at once.
        let mut d = TopologyTestDriver::builder(default_word_count())
            .commit_every(50)
            .cache_max_bytes(0)
            .build()
            .unwrap();
        pipe(&mut d, &input);
        d.commit().unwrap();
        let rep = d.all_records("test-app-counts-repartition");
        assert_eq!(rep.len() as u64, words);
        assert!(rep.iter().all(|r| partial(r.value.as_deref()) == 1));
        // One count update per input record.
        assert_eq!(d.read_output("out").len() as u64, words);
        assert_eq!(store(&d), expected);

        // Opted out, or the store not cached: no combine node; the topic
        // carries the input values (null for `()`).
        for t in [
            word_count(
                Grouped::with(Serdes::string(), Serdes::unit()).with_pre_aggregation(false),
                Materialized::as_("counts"),
            ),
            word_count(
                Grouped::with(Serdes::string(), Serdes::unit()),
                Materialized::as_("counts").with_caching_disabled(),
            ),
        ] {
            assert!(!t.describe().to_string().contains("combine"));
            let mut d = TopologyTestDriver::builder(t)
                .commit_every(50)
                .build()
                .unwrap();
            pipe(&mut d, &input);
            d.commit().unwrap();
            let rep = d.all_records("test-app-counts-repartition");
            assert_eq!(rep.len() as u64, words);
            assert!(rep.iter().all(|r| r.value.is_none()));
            assert_eq!(store(&d), expected);
            assert_eq!(final_output(&mut d), expected);
        }
    }

    #[test]
    fn no_combiner_without_a_repartition() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::default())
            .count(Materialized::as_("c"));
        let text = b.build().unwrap().describe().to_string();
        assert!(!text.contains("combine"), "{text}");
        assert!(!text.contains("repartition"), "{text}");
    }

    #[test]
    fn the_combine_node_sits_before_the_repartition_sink() {
        let text = default_word_count().describe().to_string();
        assert!(
            text.contains(
                "Processor: counts-combine (stores: [])\n      --> counts-repartition-sink\n      <-- KSTREAM-FLATMAP-0000000001"
            ),
            "{text}"
        );
        assert!(
            text.contains("Sink: counts-repartition-sink (topic: counts-repartition)\n      <-- counts-combine"),
            "{text}"
        );
        // Generated names after the count are unchanged by the combiner.
        assert!(
            text.contains("Processor: KTABLE-TOSTREAM-0000000003"),
            "{text}"
        );
    }

    #[test]
    fn a_small_budget_sends_early_and_stays_exact() {
        let (input, expected) = lines(1_000, 3);
        // About 4 keys fit (key + 80 bytes each): many early sends.
        let mut d = TopologyTestDriver::builder(default_word_count())
            .commit_every(1_000_000)
            .cache_max_bytes(350)
            .build()
            .unwrap();
        pipe(&mut d, &input);
        let before_commit = d.all_records("test-app-counts-repartition").len();
        assert!(before_commit > 0, "early sends before any commit");
        d.commit().unwrap();
        assert_eq!(store(&d), expected);
        assert_eq!(final_output(&mut d), expected);
    }

    #[test]
    fn null_keys_are_counted_like_any_key() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map(|_, v: String| ((!v.is_empty()).then_some(v.clone()), v))
            .group_by_key(Grouped::with(
                Serdes::optional(Serdes::string()),
                Serdes::string(),
            ))
            .count(Materialized::as_("c"));
        let mut d = TopologyTestDriver::builder(b.build().unwrap())
            .commit_every(4)
            .build()
            .unwrap();
        for v in ["", "x", "", ""] {
            d.pipe_str("in", Some("k"), v, 0).unwrap();
        }
        let rep = d.all_records("test-app-c-repartition");
        assert_eq!(rep.len(), 2);
        assert_eq!(
            (rep[0].key.as_deref(), partial(rep[0].value.as_deref())),
            (None, 3)
        );
        assert_eq!(
            d.key_value_store_get::<Option<String>, u64>("c", &None)
                .unwrap(),
            Some(3)
        );
    }

    // ------------------------------------------------ the processor itself

    /// Runs a lone combiner inside a driver, through a repartition, so that
    /// `flush` / `discard` can be driven directly.
    #[test]
    fn discard_drops_the_buffer_and_flush_sends_it() {
        use kstreams_runtime::{Processor, Topology};
        // A topology: source → combine → sink, built by hand.
        let mut t = Topology::new();
        t.add_source("src", &["in"], Serdes::string(), Serdes::unit())
            .unwrap();
        t.add_processor::<String, (), String, u64, _, _>(
            "combine",
            || CombineProcessor::<String, ()>::new(Serdes::string()),
            &["src"],
        )
        .unwrap();
        t.add_sink(
            "sink",
            "out",
            Serdes::string(),
            Serdes::u64_be(),
            &["combine"],
        )
        .unwrap();
        let mut d = TopologyTestDriver::builder(t)
            .commit_every(1_000)
            .build()
            .unwrap();
        for w in ["a", "b", "a"] {
            d.pipe_str("in", Some(w), "", 0).unwrap();
        }
        assert!(d.read_output("out").is_empty(), "nothing before the commit");
        d.commit().unwrap();
        let out: Vec<(String, u64)> = d
            .read_output_as("out", &Serdes::string(), &Serdes::u64_be())
            .unwrap();
        assert_eq!(out, [("a".to_string(), 2), ("b".to_string(), 1)]);

        // discard(): what the task does on abort. Driven on the processor
        // directly, since the driver has no aborted commit.
        let mut p = CombineProcessor::<String, ()>::new(Serdes::string());
        p.add("a".to_string(), 1, 5);
        p.add("b".to_string(), 1, 6);
        p.add("a".to_string(), 1, 7);
        assert_eq!(p.len(), 2);
        assert!(p.bytes > 0);
        Processor::<String, (), String, u64>::discard(&mut p);
        assert_eq!((p.len(), p.bytes), (0, 0));
        assert!(p.index.is_empty());
        // It starts over from zero after a discard.
        p.add("a".to_string(), 1, 8);
        assert_eq!(p.len(), 1);
        assert_eq!((p.partials[0].count, p.partials[0].timestamp), (1, 8));
    }
}
