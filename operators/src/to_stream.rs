//! `to_stream` / `to_stream_with_tombstones`: a table's changes as a stream.
//!
//! `to_stream` drops deletions (tombstones): the stream carries each key's
//! new values only, which is what most outputs want (a count, a total).
//! `to_stream_with_tombstones` keeps them as `None` values; written with
//! `Serdes::optional(..)`, a `None` becomes a Kafka null, so a compacted
//! output topic forgets the key.

use std::marker::PhantomData;

use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result, Serde, SerdeError, SerdeRef};

use crate::{KStream, KTable};

/// `inner` with Kafka null as `None`. Like `Serdes::optional`, without
/// its `T: Send + Sync` bound (a serde is shareable whatever `T` is).
fn optional<T: 'static>(inner: SerdeRef<T>) -> SerdeRef<Option<T>> {
    Arc::new(OptionalSerde(inner))
}

struct OptionalSerde<T>(SerdeRef<T>);

impl<T: 'static> Serde<Option<T>> for OptionalSerde<T> {
    fn serialize(
        &self,
        value: &Option<T>,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), SerdeError> {
        match value {
            Some(v) => self.0.serialize(v, out),
            None => Ok(()),
        }
    }
    fn deserialize(&self, bytes: &[u8]) -> std::result::Result<Option<T>, SerdeError> {
        self.0.deserialize(bytes).map(Some)
    }
    fn deserialize_null(&self) -> std::result::Result<Option<T>, SerdeError> {
        Ok(None)
    }
    fn is_null(&self, value: &Option<T>) -> bool {
        value.is_none()
    }
    fn name(&self) -> &'static str {
        self.0.name()
    }
}

pub(crate) struct ToStreamProcessor<K, V>(PhantomData<fn(K, V)>);

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Option<V>, K, V>
    for ToStreamProcessor<K, V>
{
    fn process(&mut self, r: Record<K, Option<V>>, ctx: &mut ProcessorContext<K, V>) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = r;
        match value {
            Some(value) => ctx.forward(Record {
                key,
                value,
                timestamp,
                headers,
            }),
            None => Ok(()),
        }
    }
}

pub(crate) struct ChangesProcessor;

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Option<V>, K, Option<V>>
    for ChangesProcessor
{
    fn process(
        &mut self,
        r: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<K, Option<V>>,
    ) -> Result<()> {
        ctx.forward(r)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// The table's updates as a stream; deletions are dropped.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("c").with_value_serde(Serdes::u64_text()))
    ///     .to_stream()
    ///     .to("counts", Produced::default()); // serdes known from the table
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// assert_eq!(d.read_output("counts")[0].value_str(), Some("1"));
    /// ```
    pub fn to_stream(&self) -> KStream<K, V> {
        let name = self.builder.next_name("KTABLE-TOSTREAM-");
        self.builder.add_processor::<K, Option<V>, K, V, _, _>(
            &name,
            || ToStreamProcessor(PhantomData),
            &[&self.node],
        );
        KStream {
            builder: self.builder.clone(),
            node: name,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            repartition_required: false,
        }
    }

    /// The table's changes as a stream, deletions included as `None`.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("c"))
    ///     .filter(|_, n| *n < 2)
    ///     .to_stream_with_tombstones()
    ///     .to("small", Produced::default().with_value_serde(Serdes::optional(Serdes::u64_text())));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// let out = d.read_output("small");
    /// assert_eq!(out[0].value_str(), Some("1"));
    /// assert_eq!(out[1].value, None); // k left the filtered table
    /// ```
    pub fn to_stream_with_tombstones(&self) -> KStream<K, Option<V>> {
        let name = self.builder.next_name("KTABLE-TOSTREAM-");
        self.builder
            .add_processor::<K, Option<V>, K, Option<V>, _, _>(
                &name,
                || ChangesProcessor,
                &[&self.node],
            );
        KStream {
            builder: self.builder.clone(),
            node: name,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone().map(optional),
            repartition_required: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn tombstones_are_dropped_by_to_stream_and_kept_by_the_other() {
        let b = StreamsBuilder::new();
        let t = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::default())
            .count(Materialized::as_("c").with_value_serde(Serdes::u64_text()))
            .filter(|_, n| n % 2 == 1);
        t.to_stream().to(
            "plain",
            Produced::default().with_value_serde(Serdes::u64_text()),
        );
        // Serdes known from the table: the optional wrapper is derived.
        t.map_values(|n| n * 10).to_stream_with_tombstones().to(
            "changes",
            Produced::default().with_value_serde(Serdes::optional(Serdes::u64_text())),
        );
        let mut d = driver(b.build().unwrap());
        for _ in 0..3 {
            d.pipe_str("in", Some("k"), "v", 0).unwrap();
        }
        assert_eq!(
            kv(&d.read_output("plain")),
            pairs(&[("k", "1"), ("k", "3")])
        );
        assert_eq!(
            kv(&d.read_output("changes")),
            vec![
                (Some("k".into()), Some("10".into())),
                (Some("k".into()), None),
                (Some("k".into()), Some("30".into())),
            ]
        );
    }

    #[test]
    fn to_stream_with_tombstones_derives_the_optional_serde() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::default())
            .count(Materialized::as_("c").with_value_serde(Serdes::u64_text()))
            .filter(|_, n| *n == 1)
            .to_stream_with_tombstones()
            .to("changes", Produced::default());
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("k"), "v", 0).unwrap();
        d.pipe_str("in", Some("k"), "v", 0).unwrap();
        assert_eq!(
            kv(&d.read_output("changes")),
            vec![
                (Some("k".into()), Some("1".into())),
                (Some("k".into()), None)
            ]
        );
    }
}
