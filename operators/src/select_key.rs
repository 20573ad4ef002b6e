//! `select_key`: a new key computed from the record, the same value.
//!
//! The usual way to re-key a stream before grouping. It marks the stream for
//! repartitioning; the repartition itself happens only if a grouping (or an
//! explicit `repartition`) follows.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::KStream;

pub(crate) struct SelectKeyProcessor<F, K, V> {
    selector: Arc<F>,
    _types: PhantomData<fn(K, V)>,
}

impl<F, K, V, KR> Processor<K, V, KR, V> for SelectKeyProcessor<F, K, V>
where
    F: Fn(&K, &V) -> KR + 'static,
    K: 'static,
    V: Clone + 'static,
    KR: Clone + 'static,
{
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<KR, V>) -> Result<()> {
        let key = (self.selector)(&record.key, &record.value);
        ctx.forward(record.with_key(key))
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Sets each record's key to `selector(&key, &value)`.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::unit(), Serdes::string()))
    ///     .select_key(|_, v| v.chars().next().unwrap_or(' ').to_string())
    ///     .to("by-initial", Produced::default().with_key_serde(Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", None, "kafka", 0).unwrap();
    /// assert_eq!(d.read_output("by-initial")[0].key_str(), Some("k"));
    /// ```
    pub fn select_key<KR, F>(&self, selector: F) -> KStream<KR, V>
    where
        KR: Clone + 'static,
        F: Fn(&K, &V) -> KR + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KSTREAM-KEY-SELECT-");
        let selector = Arc::new(selector);
        self.add_child(
            name,
            move || SelectKeyProcessor {
                selector: selector.clone(),
                _types: PhantomData,
            },
            None,
            self.value_serde.clone(),
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
    fn select_key_rekeys_and_keeps_value_serde() {
        let b = StreamsBuilder::new();
        let s = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .select_key(|k, v| format!("{v}/{k}"));
        assert!(s.repartition_required());
        s.to("out", Produced::default().with_key_serde(Serdes::string()));
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("1"), "a", 0).unwrap();
        assert_eq!(kv(&d.read_output("out")), pairs(&[("a/1", "a")]));
    }
}
