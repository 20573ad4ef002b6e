//! `flat_map`: each record becomes zero or more records with new keys.
//!
//! Like `map`, it may change keys, so it marks the stream for repartitioning
//! before a grouping. Each output record gets the input's timestamp and a
//! copy of its headers.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::KStream;

pub(crate) struct FlatMapProcessor<F, K, V> {
    mapper: Arc<F>,
    _types: PhantomData<fn(K, V)>,
}

impl<F, I, K, V, KR, VR> Processor<K, V, KR, VR> for FlatMapProcessor<F, K, V>
where
    F: Fn(K, V) -> I + 'static,
    I: IntoIterator<Item = (KR, VR)>,
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
        for (key, value) in (self.mapper)(key, value) {
            ctx.forward(Record {
                key,
                value,
                timestamp,
                headers: headers.clone(),
            })?;
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Replaces each record with the `(key, value)` pairs `mapper` returns.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::unit(), Serdes::string()))
    ///     .flat_map(|_, line: String| {
    ///         line.split(',').map(|kv| {
    ///             let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    ///             (k.to_string(), v.to_string())
    ///         }).collect::<Vec<_>>()
    ///     })
    ///     .to("pairs", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", None, "a=1,b=2", 0).unwrap();
    /// assert_eq!(d.read_output("pairs").len(), 2);
    /// ```
    pub fn flat_map<KR, VR, I, F>(&self, mapper: F) -> KStream<KR, VR>
    where
        KR: Clone + 'static,
        VR: Clone + 'static,
        I: IntoIterator<Item = (KR, VR)>,
        F: Fn(K, V) -> I + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KSTREAM-FLATMAP-");
        let mapper = Arc::new(mapper);
        self.add_child(
            name,
            move || FlatMapProcessor {
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
    use crate::{Consumed, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn flat_map_emits_every_pair_in_order_with_the_input_timestamp() {
        let b = StreamsBuilder::new();
        let s = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::u64_text()))
            .flat_map(|k, n| (0..n).map(move |i| (format!("{k}{i}"), i)));
        assert!(s.repartition_required());
        s.to("out", Produced::with(Serdes::string(), Serdes::u64_text()));
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("a"), "3", 9).unwrap();
        d.pipe_str("in", Some("b"), "0", 10).unwrap();
        d.pipe_str("in", Some("c"), "1", 11).unwrap();
        let out = d.read_output("out");
        assert_eq!(
            kv(&out),
            pairs(&[("a0", "0"), ("a1", "1"), ("a2", "2"), ("c0", "0")])
        );
        assert_eq!(
            out.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            [9, 9, 9, 11]
        );
    }
}
