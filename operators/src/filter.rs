//! `filter` / `filter_not`: keep the records a predicate accepts (or rejects).
//!
//! Why its own node: each operator is one node in `describe()`, named like
//! Kafka Streams (`KSTREAM-FILTER-<n>`), so a topology reads the same as its
//! Java counterpart. The predicate is called with borrowed key and value;
//! the record is moved on untouched (no clone) when it passes.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::KStream;

pub(crate) struct FilterProcessor<F, K, V> {
    predicate: Arc<F>,
    keep_if: bool,
    _types: PhantomData<fn(K, V)>,
}

impl<F, K, V> Processor<K, V, K, V> for FilterProcessor<F, K, V>
where
    F: Fn(&K, &V) -> bool + 'static,
    K: Clone + 'static,
    V: Clone + 'static,
{
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<K, V>) -> Result<()> {
        if (self.predicate)(&record.key, &record.value) == self.keep_if {
            ctx.forward(record)
        } else {
            Ok(())
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    fn filter_impl<F>(&self, predicate: F, keep_if: bool) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KSTREAM-FILTER-");
        let predicate = Arc::new(predicate);
        self.add_child(
            name,
            move || FilterProcessor {
                predicate: predicate.clone(),
                keep_if,
                _types: PhantomData,
            },
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.repartition_required,
        )
    }

    /// Keeps the records for which `predicate` returns true.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .filter(|_, v| !v.is_empty())
    ///     .to("out", Produced::default());
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("a"), "", 0).unwrap();
    /// d.pipe_str("in", Some("b"), "x", 0).unwrap();
    /// assert_eq!(d.read_output("out").len(), 1);
    /// ```
    pub fn filter<F>(&self, predicate: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_impl(predicate, true)
    }

    /// Keeps the records for which `predicate` returns false.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .filter_not(|_, v| v.starts_with('#'))
    ///     .to("out", Produced::default());
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("a"), "# comment", 0).unwrap();
    /// d.pipe_str("in", Some("b"), "data", 0).unwrap();
    /// assert_eq!(d.read_output("out")[0].value_str(), Some("data"));
    /// ```
    pub fn filter_not<F>(&self, predicate: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        self.filter_impl(predicate, false)
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn filter_and_filter_not_split_the_input_exactly() {
        let b = StreamsBuilder::new();
        let s = b.stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()));
        s.filter(|_, n| n % 2 == 0).to("even", Produced::default());
        s.filter_not(|_, n| n % 2 == 0)
            .to("odd", Produced::default());
        let mut d = driver(b.build().unwrap());
        for (i, n) in ["1", "2", "3", "4"].iter().enumerate() {
            d.pipe_str("in", Some(&format!("k{i}")), n, i as i64)
                .unwrap();
        }
        assert_eq!(
            kv(&d.read_output("even")),
            pairs(&[("k1", "2"), ("k3", "4")])
        );
        assert_eq!(
            kv(&d.read_output("odd")),
            pairs(&[("k0", "1"), ("k2", "3")])
        );
    }

    #[test]
    fn filter_keeps_timestamp_headers_and_key() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .filter(|k, _| k == "keep")
            .to("out", Produced::default());
        let mut d = driver(b.build().unwrap());
        let mut h = kstreams_runtime::Headers::default();
        h.add("trace", b"t1".to_vec());
        d.pipe_input_with_headers("in", Some(b"keep"), Some(b"v"), 42, h.clone())
            .unwrap();
        let out = d.read_output("out");
        assert_eq!(kv(&out), pairs(&[("keep", "v")]));
        assert_eq!((out[0].timestamp, &out[0].headers), (42, &h));
    }

    #[test]
    fn filter_does_not_mark_for_repartition() {
        let b = StreamsBuilder::new();
        let s = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()));
        assert!(!s.filter(|_, _| true).repartition_required());
        assert!(
            s.select_key(|_, v| v.clone())
                .filter(|_, _| true)
                .repartition_required()
        );
    }
}
