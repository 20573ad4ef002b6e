//! `merge`: one stream with the records of two.
//!
//! A pass-through node with two parents. Records keep their relative order
//! within each input; across inputs they interleave as they arrive. Both
//! inputs must come from the same builder. The result needs repartitioning
//! before a grouping if either input did.

use kstreams_runtime::StreamsError;

use crate::KStream;
use crate::split::PassThrough;

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// The records of this stream and of `other`, as one stream.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// let a = b.stream("a", Consumed::with(Serdes::string(), Serdes::string()));
    /// let c = b.stream("c", Consumed::with(Serdes::string(), Serdes::string()));
    /// a.merge(&c).to("all", Produced::default());
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("a", Some("1"), "x", 0).unwrap();
    /// d.pipe_str("c", Some("2"), "y", 0).unwrap();
    /// assert_eq!(d.read_output("all").len(), 2);
    /// ```
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let name = self.builder.next_name("KSTREAM-MERGE-");
        if !self.builder.same_as(&other.builder) {
            self.builder.fail(StreamsError::Topology(format!(
                "cannot merge '{}' with '{}': the streams come from different StreamsBuilders",
                self.node, other.node
            )));
        } else {
            self.builder.add_processor::<K, V, K, V, _, _>(
                &name,
                || PassThrough,
                &[&self.node, &other.node],
            );
        }
        KStream {
            builder: self.builder.clone(),
            node: name,
            key_serde: self.key_serde.clone().or_else(|| other.key_serde.clone()),
            value_serde: self
                .value_serde
                .clone()
                .or_else(|| other.value_serde.clone()),
            repartition_required: self.repartition_required || other.repartition_required,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn merge_interleaves_in_arrival_order() {
        let b = StreamsBuilder::new();
        let x = b.stream("x", Consumed::with(Serdes::string(), Serdes::string()));
        let y = b.stream("y", Consumed::with(Serdes::string(), Serdes::string()));
        let merged = x.merge(&y);
        merged.to("out", Produced::default());
        let t = b.build().unwrap();
        // Both sources feed one node, so they share a sub-topology (one task).
        assert_eq!(t.subtopologies().len(), 1);
        let mut d = driver(t);
        d.pipe_str("x", Some("1"), "a", 0).unwrap();
        d.pipe_str("y", Some("2"), "b", 0).unwrap();
        d.pipe_str("x", Some("3"), "c", 0).unwrap();
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[("1", "a"), ("2", "b"), ("3", "c")])
        );
    }

    #[test]
    fn merging_streams_of_different_builders_is_an_error() {
        let b1 = StreamsBuilder::new();
        let b2 = StreamsBuilder::new();
        let x = b1.stream("x", Consumed::with(Serdes::string(), Serdes::string()));
        let y = b2.stream("y", Consumed::with(Serdes::string(), Serdes::string()));
        x.merge(&y);
        let err = b1.build().unwrap_err().to_string();
        assert!(err.contains("different StreamsBuilders"), "{err}");
    }

    #[test]
    fn merge_carries_the_repartition_mark() {
        let b = StreamsBuilder::new();
        let x = b.stream("x", Consumed::with(Serdes::string(), Serdes::string()));
        let y = b
            .stream("y", Consumed::with(Serdes::string(), Serdes::string()))
            .select_key(|_, v| v.clone());
        let m = x.merge(&y);
        assert!(m.repartition_required());
        m.group_by_key(Grouped::with(Serdes::string(), Serdes::string()).named("m"))
            .count(Materialized::as_("mc"));
        let mut d = driver(b.build().unwrap());
        d.pipe_str("x", Some("k"), "v", 0).unwrap();
        d.pipe_str("y", Some("ignored"), "k", 0).unwrap();
        assert_eq!(d.all_records("test-app-m-repartition").len(), 2);
        assert_eq!(
            d.key_value_store_all::<String, u64>("mc").unwrap(),
            vec![("k".to_string(), 2)]
        );
    }
}
