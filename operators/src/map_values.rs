//! `map_values` / `map_values_with_key`: a new value, the same key.
//!
//! Why prefer it over `map` when the key stays: it cannot change the key, so
//! the stream keeps its partitioning and a later grouping needs no
//! repartition topic. The key serde is kept; the value serde is forgotten
//! (the type may have changed).

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::KStream;

pub(crate) struct MapValuesProcessor<F, K, V> {
    mapper: Arc<F>,
    _types: PhantomData<fn(K, V)>,
}

impl<F, K, V, VR> Processor<K, V, K, VR> for MapValuesProcessor<F, K, V>
where
    F: Fn(&K, V) -> VR + 'static,
    K: Clone + 'static,
    V: 'static,
    VR: Clone + 'static,
{
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<K, VR>) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = record;
        let value = (self.mapper)(&key, value);
        ctx.forward(Record {
            key,
            value,
            timestamp,
            headers,
        })
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Replaces each value with `mapper(value)`; keys, timestamps and
    /// headers are kept.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .map_values(|v| v.len() as u64)
    ///     .to("lengths", Produced::default().with_value_serde(Serdes::u64_text()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("k"), "four", 0).unwrap();
    /// assert_eq!(d.read_output("lengths")[0].value_str(), Some("4"));
    /// ```
    pub fn map_values<VR, F>(&self, mapper: F) -> KStream<K, VR>
    where
        VR: Clone + 'static,
        F: Fn(V) -> VR + Send + Sync + 'static,
    {
        self.map_values_with_key(move |_, v| mapper(v))
    }

    /// Replaces each value with `mapper(&key, value)`.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .map_values_with_key(|k, v| format!("{k}={v}"))
    ///     .to("out", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("a"), "1", 0).unwrap();
    /// assert_eq!(d.read_output("out")[0].value_str(), Some("a=1"));
    /// ```
    pub fn map_values_with_key<VR, F>(&self, mapper: F) -> KStream<K, VR>
    where
        VR: Clone + 'static,
        F: Fn(&K, V) -> VR + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KSTREAM-MAPVALUES-");
        let mapper = Arc::new(mapper);
        self.add_child(
            name,
            move || MapValuesProcessor {
                mapper: mapper.clone(),
                _types: PhantomData,
            },
            self.key_serde.clone(),
            None,
            self.repartition_required,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn map_values_keeps_key_and_partitioning() {
        let b = StreamsBuilder::new();
        let s = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map_values(|v| v.to_uppercase());
        assert!(!s.repartition_required());
        // Key serde is still known; value serde must be given.
        s.to(
            "out",
            Produced::default().with_value_serde(Serdes::string()),
        );
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("k1"), "abc", 0).unwrap();
        d.pipe_str("in", Some("k2"), "déf", 0).unwrap();
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[("k1", "ABC"), ("k2", "DÉF")])
        );
    }

    #[test]
    fn grouping_after_map_values_needs_no_repartition_topic() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map_values_with_key(|k, v| format!("{k}{v}"))
            .group_by_key(Grouped::default().with_value_serde(Serdes::string()))
            .count(Materialized::as_("c"));
        let t = b.build().unwrap();
        assert_eq!(t.subtopologies().len(), 1);
        assert!(!t.describe().to_string().contains("repartition"));
    }
}
