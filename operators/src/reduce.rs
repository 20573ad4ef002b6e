//! `reduce`: combine the values of each key with a binary function.
//!
//! An aggregation (see `aggregate.rs`) whose aggregate has the value type:
//! the first value of a key is its aggregate, each later one is combined
//! with `reducer(aggregate, value)`. The store's value serde defaults to the
//! grouping's (or the stream's) value serde.

use std::hash::Hash;

use crate::{KGroupedStream, KTable, Materialized};

impl<K: Clone + Hash + Eq + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    /// Combines the values of each key: `reducer(aggregate, value)`.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("temps", Consumed::with(Serdes::string(), Serdes::i64_text()))
    ///     .group_by_key(Grouped::default())
    ///     .reduce(|a, b| a.max(b), Materialized::as_("max-temp"))
    ///     .to_stream()
    ///     .to("max-temps", Produced::default());
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// for t in ["12", "19", "15"] { d.pipe_str("temps", Some("oslo"), t, 0).unwrap(); }
    /// let last = d.read_output("max-temps").pop().unwrap();
    /// assert_eq!(last.value_str(), Some("19"));
    /// ```
    pub fn reduce<R>(&self, reducer: R, materialized: Materialized<K, V>) -> KTable<K, V>
    where
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        self.aggregate_impl(
            "KSTREAM-REDUCE-",
            move |_: &K, v: V, old: Option<V>| match old {
                Some(agg) => reducer(agg, v),
                None => v,
            },
            materialized,
            self.grouped_value_serde(),
            "reduce",
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::{Serdes, TopologyTestDriver};

    #[test]
    fn reduce_concatenates_in_arrival_order_per_key() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by(
                |_, v| v[..1].to_string(),
                Grouped::with(Serdes::string(), Serdes::string()).named("by-initial"),
            )
            .reduce(|a, b| format!("{a},{b}"), Materialized::as_("joined"))
            .to_stream()
            .to("out", Produced::default());
        let t = b.build().unwrap();
        let text = t.describe().to_string();
        assert!(
            text.contains("Processor: KSTREAM-REDUCE-0000000002 (stores: [joined])"),
            "{text}"
        );
        let mut d = TopologyTestDriver::builder(t)
            .cache_max_bytes(0)
            .build()
            .unwrap();
        for v in ["apple", "avocado", "banana", "apricot"] {
            d.pipe_str("in", Some("k"), v, 0).unwrap();
        }
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[
                ("a", "apple"),
                ("a", "apple,avocado"),
                ("b", "banana"),
                ("a", "apple,avocado,apricot"),
            ])
        );
        assert_eq!(
            d.key_value_store_all::<String, String>("joined").unwrap(),
            vec![
                ("a".into(), "apple,avocado,apricot".into()),
                ("b".into(), "banana".into())
            ]
        );
        assert_eq!(d.all_records("test-app-by-initial-repartition").len(), 4);
    }

    #[test]
    fn reduce_without_any_value_serde_is_an_error() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map_values(|v| v.len() as u64)
            .group_by_key(Grouped::default())
            .reduce(|a, b| a + b, Materialized::as_("sum"));
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("reduce() into store 'sum'"), "{err}");
    }
}
