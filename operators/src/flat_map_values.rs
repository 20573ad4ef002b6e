//! `flat_map_values`: each record becomes zero or more records with the
//! same key.
//!
//! The classic first step of word count (a line becomes its words). Keys are
//! kept, so the partitioning is kept and no repartition is needed for a
//! later `group_by_key`. The key is cloned once per output record.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::KStream;

pub(crate) struct FlatMapValuesProcessor<F, K, V> {
    mapper: Arc<F>,
    _types: PhantomData<fn(K, V)>,
}

impl<F, I, K, V, VR> Processor<K, V, K, VR> for FlatMapValuesProcessor<F, K, V>
where
    F: Fn(&K, V) -> I + 'static,
    I: IntoIterator<Item = VR>,
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
        for value in (self.mapper)(&key, value) {
            ctx.forward(Record {
                key: key.clone(),
                value,
                timestamp,
                headers: headers.clone(),
            })?;
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Replaces each record with one record per value `mapper(value)`
    /// returns, all with the input's key, timestamp and headers.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .flat_map_values(|line: String| line.split_whitespace().map(String::from).collect::<Vec<_>>())
    ///     .to("words", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("doc1"), "to be or not", 0).unwrap();
    /// assert_eq!(d.read_output("words").len(), 4);
    /// ```
    pub fn flat_map_values<VR, I, F>(&self, mapper: F) -> KStream<K, VR>
    where
        VR: Clone + 'static,
        I: IntoIterator<Item = VR>,
        F: Fn(V) -> I + Send + Sync + 'static,
    {
        self.flat_map_values_with_key(move |_, v| mapper(v))
    }

    /// Like [`flat_map_values`](Self::flat_map_values), with the key as
    /// well.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::u64_text()))
    ///     .flat_map_values_with_key(|k: &String, n: u64| (0..n).map(|i| format!("{k}-{i}")).collect::<Vec<_>>())
    ///     .to("out", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("x"), "2", 0).unwrap();
    /// assert_eq!(d.read_output("out")[1].value_str(), Some("x-1"));
    /// ```
    pub fn flat_map_values_with_key<VR, I, F>(&self, mapper: F) -> KStream<K, VR>
    where
        VR: Clone + 'static,
        I: IntoIterator<Item = VR>,
        F: Fn(&K, V) -> I + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KSTREAM-FLATMAPVALUES-");
        let mapper = Arc::new(mapper);
        self.add_child(
            name,
            move || FlatMapValuesProcessor {
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
    use crate::{Consumed, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn flat_map_values_keeps_the_key_for_every_output() {
        let b = StreamsBuilder::new();
        let s = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .flat_map_values(|v: String| v.chars().map(|c| c.to_string()).collect::<Vec<_>>());
        assert!(!s.repartition_required());
        s.to(
            "out",
            Produced::default().with_value_serde(Serdes::string()),
        );
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("k"), "ab", 0).unwrap();
        d.pipe_str("in", Some("e"), "", 0).unwrap();
        d.pipe_str("in", Some("z"), "c", 0).unwrap();
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[("k", "a"), ("k", "b"), ("z", "c")])
        );
    }
}
