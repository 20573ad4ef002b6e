//! `count`: the number of records per key, as a table.
//!
//! An aggregation (see `aggregate.rs`) whose aggregate is a `u64`. The store
//! keeps counts as 8 big-endian bytes unless [`Materialized`] says
//! otherwise; the output serde is chosen at the sink (e.g.
//! `Serdes::u64_text()` for decimal text).
//!
//! Behind a repartition, a count pre-aggregates by default: a combine node
//! on the writing side adds up each key's records between two commits and
//! the repartition topic carries partial counts, which the counting node
//! adds (see `combine.rs`).

use std::hash::Hash;

use kstreams_runtime::Serdes;

use crate::{KGroupedStream, KTable, Materialized};

impl<K: Clone + Hash + Eq + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    /// Counts the records of each key.
    ///
    /// **Pre-aggregation.** If the grouped stream needs a repartition (its
    /// key may have changed), the store is cached (the default; not
    /// [`Materialized::with_caching_disabled`]) and the grouping did not opt
    /// out ([`Grouped::with_pre_aggregation(false)`](crate::Grouped::with_pre_aggregation)),
    /// the records are counted per key on the writing side of the
    /// repartition topic first, by a node `<name>-combine`, and only the
    /// partial counts go through the topic: one record per distinct key per
    /// commit (or more often, when the partial counts outgrow
    /// `cache.max.bytes.buffering`). The counting node adds them up, so the
    /// counts are exactly those without pre-aggregation. The repartition
    /// topic keeps its name `<name>-repartition`; its key is the grouping
    /// key and its **value is a partial count: a `u64`, 8 bytes big-endian**
    /// (`Serdes::u64_be`), with the largest timestamp of the records it
    /// stands for. The input values are not sent, so no value serde is
    /// needed for them. With a cache budget of 0 every record is sent at
    /// once as a partial count of 1 (one count update per record, as without
    /// pre-aggregation). Partial counts are sent within the commit's
    /// transaction and dropped with an aborted one, so exactly-once holds.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("pageviews", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("views"))
    ///     .to_stream()
    ///     .to("views-per-page", Produced::default().with_value_serde(Serdes::u64_text()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("pageviews", Some("/home"), "u1", 0).unwrap();
    /// d.pipe_str("pageviews", Some("/home"), "u2", 0).unwrap();
    /// assert_eq!(d.read_output("views-per-page")[1].value_str(), Some("2"));
    /// ```
    pub fn count(&self, materialized: Materialized<K, u64>) -> KTable<K, u64> {
        if self.combines(&materialized) {
            return self.count_combined(materialized);
        }
        self.aggregate_impl(
            "KSTREAM-AGGREGATE-",
            |_: &K, _: V, old: Option<u64>| old.unwrap_or(0) + 1,
            materialized,
            Some(Serdes::u64_be()),
            "count",
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::{Serdes, TestRecord, Topology, TopologyTestDriver};

    /// Words (one per record value) counted by word, through a repartition.
    fn word_counts() -> Topology {
        word_counts_with(Grouped::with(Serdes::string(), Serdes::string()))
    }

    fn word_counts_with(grouped: Grouped<String, String>) -> Topology {
        let b = StreamsBuilder::new();
        b.stream("words", Consumed::with(Serdes::unit(), Serdes::string()))
            .group_by(|_, w| w.clone(), grouped)
            .count(Materialized::as_("counts").with_value_serde(Serdes::u64_text()))
            .to_stream()
            .to("out", Produced::default());
        b.build().unwrap()
    }

    /// `(key, partial count)` of the records of a pre-aggregated
    /// repartition topic (values: u64 big-endian).
    fn partials(records: &[TestRecord]) -> Vec<(String, u64)> {
        records
            .iter()
            .map(|r| {
                let bytes: [u8; 8] = r.value.as_deref().unwrap().try_into().unwrap();
                (r.key_str().unwrap().to_string(), u64::from_be_bytes(bytes))
            })
            .collect()
    }

    fn owned(items: &[(&str, u64)]) -> Vec<(String, u64)> {
        items.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    fn pipe_words(d: &mut TopologyTestDriver, words: &[&str]) {
        for (i, w) in words.iter().enumerate() {
            d.pipe_str("words", None, w, i as i64).unwrap();
        }
    }

    #[test]
    fn cache_off_forwards_every_update() {
        let mut d = TopologyTestDriver::builder(word_counts())
            .commit_every(100)
            .cache_max_bytes(0)
            .build()
            .unwrap();
        pipe_words(&mut d, &["a", "b", "a", "a"]);
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[("a", "1"), ("b", "1"), ("a", "2"), ("a", "3")])
        );
        // Nothing committed yet: no changelog records, but the store
        // already answers with the uncommitted counts.
        assert!(d.all_records("test-app-counts-changelog").is_empty());
        assert_eq!(
            d.key_value_store_all::<String, u64>("counts").unwrap(),
            vec![("a".to_string(), 3), ("b".to_string(), 1)]
        );
        d.commit().unwrap();
        let mut changelog = kv(&d.all_records("test-app-counts-changelog"));
        changelog.sort();
        assert_eq!(changelog, pairs(&[("a", "3"), ("b", "1")]));
    }

    #[test]
    fn cache_on_coalesces_to_the_latest_count_per_commit() {
        let mut d = TopologyTestDriver::builder(word_counts())
            .commit_every(4)
            .build()
            .unwrap();
        pipe_words(&mut d, &["a", "b", "a", "a"]);
        assert_eq!(kv(&d.read_output("out")), pairs(&[("a", "3"), ("b", "1")]));
        pipe_words(&mut d, &["b", "c", "b", "b"]);
        assert_eq!(kv(&d.read_output("out")), pairs(&[("b", "4"), ("c", "1")]));
        // The repartition topic carries one partial count per word per
        // commit (pre-aggregation), not every word.
        assert_eq!(
            partials(&d.all_records("test-app-counts-repartition")),
            owned(&[("a", 3), ("b", 1), ("b", 3), ("c", 1)])
        );
        // The changelog carries one record per key per commit.
        let mut changelog = kv(&d.all_records("test-app-counts-changelog"));
        changelog.sort();
        assert_eq!(
            changelog,
            pairs(&[("a", "3"), ("b", "1"), ("b", "4"), ("c", "1")])
        );
    }

    #[test]
    fn without_pre_aggregation_the_repartition_topic_carries_every_word() {
        for (t, cache) in [
            // Opted out: the topic carries the input values.
            (
                word_counts_with(
                    Grouped::with(Serdes::string(), Serdes::string()).with_pre_aggregation(false),
                ),
                10 << 20,
            ),
            // Cache off: a partial count of 1 per word, sent at once.
            (word_counts(), 0),
        ] {
            let mut d = TopologyTestDriver::builder(t)
                .commit_every(4)
                .cache_max_bytes(cache)
                .build()
                .unwrap();
            pipe_words(&mut d, &["a", "b", "a", "a", "b", "c", "b", "b"]);
            let rep = d.all_records("test-app-counts-repartition");
            if cache == 0 {
                assert_eq!(
                    partials(&rep),
                    owned(&[
                        ("a", 1),
                        ("b", 1),
                        ("a", 1),
                        ("a", 1),
                        ("b", 1),
                        ("c", 1),
                        ("b", 1),
                        ("b", 1)
                    ])
                );
                // And one count update per word.
                assert_eq!(d.read_output("out").len(), 8);
            } else {
                assert_eq!(
                    kv(&rep),
                    pairs(&[
                        ("a", "a"),
                        ("b", "b"),
                        ("a", "a"),
                        ("a", "a"),
                        ("b", "b"),
                        ("c", "c"),
                        ("b", "b"),
                        ("b", "b")
                    ])
                );
            }
            assert_eq!(
                d.key_value_store_all::<String, u64>("counts").unwrap(),
                owned(&[("a", 3), ("b", 4), ("c", 1)])
            );
        }
    }

    #[test]
    fn commit_after_every_record_shows_every_count() {
        let mut d = driver(word_counts());
        pipe_words(&mut d, &["x", "x", "y"]);
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[("x", "1"), ("x", "2"), ("y", "1")])
        );
        // A commit after every record: every partial count is 1.
        assert_eq!(
            partials(&d.all_records("test-app-counts-repartition")),
            owned(&[("x", 1), ("x", 1), ("y", 1)])
        );
        assert_eq!(
            kv(&d.all_records("test-app-counts-changelog")),
            pairs(&[("x", "1"), ("x", "2"), ("y", "1")])
        );
    }

    #[test]
    fn counts_survive_a_restart_from_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut d = TopologyTestDriver::builder(word_counts())
                .state_dir(dir.path())
                .build()
                .unwrap();
            pipe_words(&mut d, &["a", "a"]);
        }
        let mut d = TopologyTestDriver::builder(word_counts())
            .state_dir(dir.path())
            .build()
            .unwrap();
        pipe_words(&mut d, &["a"]);
        assert_eq!(kv(&d.read_output("out")), pairs(&[("a", "3")]));
    }

    #[test]
    fn count_default_store_serde_is_u64_big_endian() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::default())
            .count(Materialized::as_("c"));
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("k"), "v", 0).unwrap();
        let cl = d.all_records("test-app-c-changelog");
        assert_eq!(cl[0].value, Some(1u64.to_be_bytes().to_vec()));
    }
}
