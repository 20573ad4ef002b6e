//! `KTable::filter` / `filter_not`: the rows of a table a predicate accepts.
//!
//! A row that does not pass becomes a deletion downstream (`None`): if the
//! key was in the filtered table before, it must leave it. Without old
//! values the node cannot tell whether the key was there, so it forwards the
//! tombstone every time (as Kafka Streams does without "send old values");
//! `to_stream` drops those, `to_stream_with_tombstones` shows them.
//! Deletions pass through as deletions.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::KTable;

pub(crate) struct TableFilterProcessor<F, K, V> {
    predicate: Arc<F>,
    keep_if: bool,
    _types: PhantomData<fn(K, V)>,
}

impl<F, K, V> Processor<K, Option<V>, K, Option<V>> for TableFilterProcessor<F, K, V>
where
    F: Fn(&K, &V) -> bool + 'static,
    K: Clone + 'static,
    V: Clone + 'static,
{
    fn process(
        &mut self,
        mut r: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<K, Option<V>>,
    ) -> Result<()> {
        if let Some(v) = &r.value
            && (self.predicate)(&r.key, v) != self.keep_if
        {
            r.value = None;
        }
        ctx.forward(r)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    fn filter_impl<F>(&self, predicate: F, keep_if: bool) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KTABLE-FILTER-");
        let predicate = Arc::new(predicate);
        self.add_table_child(
            name,
            move || TableFilterProcessor {
                predicate: predicate.clone(),
                keep_if,
                _types: PhantomData,
            },
            self.value_serde.clone(),
        )
    }

    /// The rows for which `predicate` is true; others become deletions.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("c"))
    ///     .filter(|_, n| *n > 1)
    ///     .to_stream()
    ///     .to("repeat", Produced::default().with_value_serde(Serdes::u64_text()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// assert!(d.read_output("repeat").is_empty());
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// assert_eq!(d.read_output("repeat")[0].value_str(), Some("2"));
    /// ```
    pub fn filter<F>(&self, predicate: F) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_impl(predicate, true)
    }

    /// The rows for which `predicate` is false; others become deletions.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("c"))
    ///     .filter_not(|k, _| k.starts_with('_'))
    ///     .to_stream()
    ///     .to("visible", Produced::default().with_value_serde(Serdes::u64_text()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("_internal"), "v", 0).unwrap();
    /// d.pipe_str("in", Some("page"), "v", 0).unwrap();
    /// assert_eq!(d.read_output("visible").len(), 1);
    /// ```
    pub fn filter_not<F>(&self, predicate: F) -> KTable<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_impl(predicate, false)
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn filtered_out_rows_become_tombstones_and_deletions_pass_through() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::default())
            .count(Materialized::as_("c"))
            .filter(|_, n| *n != 2)
            .filter_not(|k, _| k == "hidden")
            .to_stream_with_tombstones()
            .to(
                "out",
                Produced::default().with_value_serde(Serdes::optional(Serdes::u64_text())),
            );
        let t = b.build().unwrap();
        let text = t.describe().to_string();
        assert!(text.contains("KTABLE-FILTER-0000000002"), "{text}");
        assert!(text.contains("KTABLE-FILTER-0000000003"), "{text}");
        let mut d = driver(t);
        for k in ["a", "a", "a", "hidden"] {
            d.pipe_str("in", Some(k), "v", 0).unwrap();
        }
        assert_eq!(
            kv(&d.read_output("out")),
            vec![
                (Some("a".into()), Some("1".into())),
                (Some("a".into()), None),
                (Some("a".into()), Some("3".into())),
                (Some("hidden".into()), None),
            ]
        );
    }
}
