//! `group_by_key` / `group_by`: declare the key an aggregation will use.
//!
//! Grouping adds no node by itself. It returns a [`KGroupedStream`] that
//! remembers the stream, the [`Grouped`] settings and whether the key may
//! have changed. The aggregation (`count`, `reduce`, `aggregate`) then
//! decides the topology: if the key may have changed it first routes the
//! records through a repartition topic named `<grouped name>-repartition`,
//! or `<store name>-repartition` if the grouping is unnamed, so that all
//! records of a key meet in one task. The name is only known at that point,
//! which is why the repartition is inserted lazily, as Kafka Streams does.

use kstreams_runtime::SerdeRef;

use crate::{Grouped, KStream};

/// A stream grouped by key, ready to be aggregated into a
/// [`KTable`](crate::KTable).
///
/// ```
/// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder};
/// use kstreams_runtime::Serdes;
/// let b = StreamsBuilder::new();
/// let grouped = b
///     .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
///     .group_by_key(Grouped::default());
/// let per_user = grouped.count(Materialized::as_("clicks-per-user"));
/// assert_eq!(per_user.queryable_store_name(), Some("clicks-per-user"));
/// ```
pub struct KGroupedStream<K, V> {
    pub(crate) stream: KStream<K, V>,
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    /// [`Grouped::with_pre_aggregation`]: whether `count()` may combine
    /// before the repartition topic.
    pub(crate) pre_aggregation: bool,
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Groups the records by their current key.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("counts"));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("a"), "x", 0).unwrap();
    /// d.pipe_str("in", Some("a"), "y", 0).unwrap();
    /// assert_eq!(d.key_value_store_get::<String, u64>("counts", &"a".into()).unwrap(), Some(2));
    /// ```
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream {
            stream: self.clone(),
            name: grouped.name,
            key_serde: grouped.key_serde,
            value_serde: grouped.value_serde,
            pre_aggregation: grouped.pre_aggregation,
        }
    }

    /// Groups the records by `selector(&key, &value)`: a new key, so the
    /// aggregation reads them through a repartition topic.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::unit(), Serdes::string()))
    ///     .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
    ///     .count(Materialized::as_("counts"));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", None, "hello", 0).unwrap();
    /// assert_eq!(d.all_records("test-app-counts-repartition").len(), 1);
    /// ```
    pub fn group_by<KR, F>(&self, selector: F, grouped: Grouped<KR, V>) -> KGroupedStream<KR, V>
    where
        KR: Clone + 'static,
        F: Fn(&K, &V) -> KR + Send + Sync + 'static,
    {
        self.select_key(selector).group_by_key(grouped)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    /// The stream the aggregation reads: the grouped stream itself, or its
    /// repartitioned copy if the key may have changed.
    pub(crate) fn input(&self, store_name: &str) -> KStream<K, V> {
        let s = &self.stream;
        if !s.repartition_required {
            return s.clone();
        }
        let name = self.name.clone().unwrap_or_else(|| store_name.to_string());
        let hint = "Grouped::with(key_serde, value_serde)";
        let what = format!("the repartition topic '{name}-repartition'");
        let ks = s.resolve_serde(self.key_serde.clone(), &s.key_serde, &what, hint);
        let vs = s.resolve_serde(self.value_serde.clone(), &s.value_serde, &what, hint);
        match (ks, vs) {
            (Some(ks), Some(vs)) => s.builder.repartition_through(s, &name, ks, vs, None),
            _ => s.clone(),
        }
    }

    /// The key serde for the store: explicit, else the grouping's, else the stream's.
    pub(crate) fn store_key_serde(&self, explicit: Option<SerdeRef<K>>) -> Option<SerdeRef<K>> {
        explicit
            .or_else(|| self.key_serde.clone())
            .or_else(|| self.stream.key_serde.clone())
    }

    /// The value serde of the grouped values: the grouping's, else the stream's.
    pub(crate) fn grouped_value_serde(&self) -> Option<SerdeRef<V>> {
        self.value_serde
            .clone()
            .or_else(|| self.stream.value_serde.clone())
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn grouped_name_wins_over_store_name_for_the_repartition_topic() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by(
                |_, v| v.clone(),
                Grouped::as_("by-value").with_key_serde(Serdes::string()),
            )
            .count(Materialized::as_("counts"));
        let t = b.build().unwrap();
        assert_eq!(t.subtopologies().len(), 2);
        let mut d = driver(t);
        d.pipe_str("in", Some("k1"), "x", 1).unwrap();
        d.pipe_str("in", Some("k2"), "x", 2).unwrap();
        // Partial counts (u64 big-endian), one per commit.
        let one = String::from_utf8_lossy(&1u64.to_be_bytes()).into_owned();
        assert_eq!(
            kv(&d.all_records("test-app-by-value-repartition")),
            pairs(&[("x", &one), ("x", &one)])
        );
        assert!(d.all_records("test-app-counts-repartition").is_empty());
        assert_eq!(
            d.key_value_store_all::<String, u64>("counts").unwrap(),
            vec![("x".to_string(), 2)]
        );
    }

    #[test]
    fn unnamed_grouping_and_store_get_generated_names() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by(
                |_, v| v.clone(),
                Grouped::default().with_key_serde(Serdes::string()),
            )
            .count(Materialized::default());
        let text = b.build().unwrap().describe().to_string();
        assert!(
            text.contains("Sink: KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition-sink (topic: KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition)"),
            "{text}"
        );
        assert!(
            text.contains("Processor: KSTREAM-AGGREGATE-0000000002 (stores: [KSTREAM-AGGREGATE-STATE-STORE-0000000003])"),
            "{text}"
        );
    }

    #[test]
    fn repartition_without_serdes_is_a_clear_error() {
        // A pre-aggregating count sends partial counts, not the values:
        // the key serde is enough.
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map(|k, v| (k, v.len() as u64))
            .group_by_key(Grouped::as_("g").with_key_serde(Serdes::string()))
            .count(Materialized::as_("c"));
        b.build().unwrap();
        // Without pre-aggregation the values need their serde.
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map(|k, v| (k, v.len() as u64))
            .group_by_key(
                Grouped::as_("g")
                    .with_key_serde(Serdes::string())
                    .with_pre_aggregation(false),
            )
            .count(Materialized::as_("c"));
        let err = b.build().unwrap_err().to_string();
        assert!(
            err.contains("the repartition topic 'g-repartition'"),
            "{err}"
        );
        assert!(err.contains("needs a serde for type u64"), "{err}");
        assert!(
            err.contains("Grouped::with(key_serde, value_serde)"),
            "{err}"
        );
    }

    #[test]
    fn two_aggregations_of_one_rekeyed_stream_need_two_names() {
        let b = StreamsBuilder::new();
        let g = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by(
                |_, v| v.clone(),
                Grouped::with(Serdes::string(), Serdes::string()).named("g"),
            );
        g.count(Materialized::as_("c1"));
        g.count(Materialized::as_("c2"));
        let err = b.build().unwrap_err().to_string();
        assert!(
            err.contains("the repartition topic 'g-repartition' is used twice"),
            "{err}"
        );
    }
}
