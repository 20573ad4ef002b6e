//! `KTable::map_values`: a table with each row's value transformed.
//!
//! Keys and deletions are kept; `Some(v)` becomes `Some(mapper(v))`. The
//! result is not materialized: it is a view computed from the change stream.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::KTable;

pub(crate) struct TableMapValuesProcessor<F, K, V> {
    mapper: Arc<F>,
    _types: PhantomData<fn(K, V)>,
}

impl<F, K, V, VR> Processor<K, Option<V>, K, Option<VR>> for TableMapValuesProcessor<F, K, V>
where
    F: Fn(&K, V) -> VR + 'static,
    K: Clone + 'static,
    V: 'static,
    VR: Clone + 'static,
{
    fn process(
        &mut self,
        r: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<K, Option<VR>>,
    ) -> Result<()> {
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = r;
        let value = value.map(|v| (self.mapper)(&key, v));
        ctx.forward(Record {
            key,
            value,
            timestamp,
            headers,
        })
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// A table with `mapper(value)` for each row.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("c"))
    ///     .map_values(|n| format!("{n} times"))
    ///     .to_stream()
    ///     .to("out", Produced::default().with_value_serde(Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// assert_eq!(d.read_output("out")[0].value_str(), Some("1 times"));
    /// ```
    pub fn map_values<VR, F>(&self, mapper: F) -> KTable<K, VR>
    where
        VR: Clone + 'static,
        F: Fn(V) -> VR + Send + Sync + 'static,
    {
        self.map_values_with_key(move |_, v| mapper(v))
    }

    /// A table with `mapper(&key, value)` for each row.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("c"))
    ///     .map_values_with_key(|k, n| format!("{k}:{n}"))
    ///     .to_stream()
    ///     .to("out", Produced::default().with_value_serde(Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// assert_eq!(d.read_output("out")[0].value_str(), Some("k:1"));
    /// ```
    pub fn map_values_with_key<VR, F>(&self, mapper: F) -> KTable<K, VR>
    where
        VR: Clone + 'static,
        F: Fn(&K, V) -> VR + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KTABLE-MAPVALUES-");
        let mapper = Arc::new(mapper);
        self.add_table_child(
            name,
            move || TableMapValuesProcessor {
                mapper: mapper.clone(),
                _types: PhantomData,
            },
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::{Serdes, TopologyTestDriver};

    #[test]
    fn map_values_transforms_updates_and_keeps_deletions() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::default())
            .count(Materialized::as_("c"))
            .filter(|_, n| *n < 3)
            .map_values(|n| n * 100)
            .to_stream_with_tombstones()
            .to(
                "out",
                Produced::default().with_value_serde(Serdes::optional(Serdes::u64_text())),
            );
        let mut d = TopologyTestDriver::builder(b.build().unwrap())
            .cache_max_bytes(0)
            .build()
            .unwrap();
        for _ in 0..3 {
            d.pipe_str("in", Some("x"), "v", 0).unwrap();
        }
        assert_eq!(
            kv(&d.read_output("out")),
            vec![
                (Some("x".into()), Some("100".into())),
                (Some("x".into()), Some("200".into())),
                (Some("x".into()), None),
            ]
        );
    }
}
