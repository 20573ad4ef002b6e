//! `map`: turn each record into a new key and value.
//!
//! Why it marks the stream for repartitioning: the new key may belong to
//! another partition than the one the record was read from. Nothing moves
//! yet (a plain `to` writes to the right partition anyway); but a later
//! grouping first sends the records through a repartition topic. If the key
//! does not change, prefer [`KStream::map_values`], which keeps the
//! partitioning and avoids that topic.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::KStream;

pub(crate) struct MapProcessor<F, K, V> {
    mapper: Arc<F>,
    _types: PhantomData<fn(K, V)>,
}

impl<F, K, V, KR, VR> Processor<K, V, KR, VR> for MapProcessor<F, K, V>
where
    F: Fn(K, V) -> (KR, VR) + 'static,
    K: 'static,
    V: 'static,
    KR: Clone + 'static,
    VR: Clone + 'static,
{
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<KR, VR>) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = record;
        let (key, value) = (self.mapper)(key, value);
        ctx.forward(Record {
            key,
            value,
            timestamp,
            headers,
        })
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Replaces each record's key and value with `mapper(key, value)`.
    /// Timestamp and headers are kept.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .map(|k, v| (v, k))
    ///     .to("swapped", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// let out = d.read_output("swapped");
    /// assert_eq!((out[0].key_str(), out[0].value_str()), (Some("v"), Some("k")));
    /// ```
    pub fn map<KR, VR, F>(&self, mapper: F) -> KStream<KR, VR>
    where
        KR: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(K, V) -> (KR, VR) + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KSTREAM-MAP-");
        let mapper = Arc::new(mapper);
        self.add_child(
            name,
            move || MapProcessor {
                mapper: mapper.clone(),
                _types: PhantomData,
            },
            None,
            None,
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn map_changes_key_and_value_and_marks_repartition() {
        let b = StreamsBuilder::new();
        let s = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map(|k, v| (v.len() as i64, format!("{k}:{v}")));
        assert!(s.repartition_required());
        s.to("out", Produced::with(Serdes::i64_text(), Serdes::string()));
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("a"), "xyz", 5).unwrap();
        let out = d.read_output("out");
        assert_eq!(kv(&out), pairs(&[("3", "a:xyz")]));
        assert_eq!(out[0].timestamp, 5);
    }

    #[test]
    fn sink_after_map_without_serdes_is_a_clear_error() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map(|k, v| (v, k.len() as u64))
            .to("out", Produced::default().with_key_serde(Serdes::string()));
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("needs a serde for type u64"), "{err}");
        assert!(err.contains("KSTREAM-MAP-0000000001"), "{err}");
        assert!(err.contains("Produced::with"), "{err}");
    }

    #[test]
    fn grouping_after_map_goes_through_a_repartition_topic() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map(|_, v| (v.clone(), v))
            // Without pre-aggregation, so the topic shows the mapped records.
            .group_by_key(
                Grouped::with(Serdes::string(), Serdes::string()).with_pre_aggregation(false),
            )
            .count(Materialized::as_("c"));
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("x"), "a", 0).unwrap();
        d.pipe_str("in", Some("y"), "a", 1).unwrap();
        assert_eq!(
            kv(&d.all_records("test-app-c-repartition")),
            pairs(&[("a", "a"), ("a", "a")])
        );
        assert_eq!(
            d.key_value_store_all::<String, u64>("c").unwrap(),
            vec![("a".to_string(), 2)]
        );
    }
}
