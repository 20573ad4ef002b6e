//! `repartition`: send a stream through an internal topic so that each
//! record lands on the partition (and task) of its current key.
//!
//! Why: after a key change, records of one key may sit in many tasks. An
//! internal sink writes them to `<application.id>-<name>-repartition`,
//! partitioned by key, and an internal source reads that topic. The topic
//! cuts the graph: everything after it runs in a new sub-topology. Grouping
//! a re-keyed stream does this implicitly; call `repartition` to do it
//! explicitly, to choose the partition count, or to re-balance a skewed
//! input.
//!
//! Nodes: `<name>-repartition-sink` and `<name>-repartition-source`. The
//! name defaults to `KSTREAM-REPARTITION-<n>`.

use crate::{KStream, Repartitioned};

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Routes the stream through a repartition topic.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, Repartitioned, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .select_key(|_, v| v.clone())
    ///     .repartition(Repartitioned::with(Serdes::string(), Serdes::string()).named("by-value"))
    ///     .to("out", Produced::default());
    /// let t = b.build().unwrap();
    /// assert_eq!(t.subtopologies().len(), 2);
    /// let mut d = TopologyTestDriver::new(t).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// assert_eq!(d.all_records("test-app-by-value-repartition").len(), 1);
    /// assert_eq!(d.read_output("out")[0].key_str(), Some("v"));
    /// ```
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        let name = repartitioned
            .name
            .clone()
            .unwrap_or_else(|| self.builder.next_name("KSTREAM-REPARTITION-"));
        let hint = "Repartitioned::with(key_serde, value_serde)";
        let ks = self.resolve_serde(
            repartitioned.key_serde,
            &self.key_serde,
            "repartition()",
            hint,
        );
        let vs = self.resolve_serde(
            repartitioned.value_serde,
            &self.value_serde,
            "repartition()",
            hint,
        );
        match (ks, vs) {
            (Some(ks), Some(vs)) => {
                self.builder
                    .repartition_through(self, &name, ks, vs, repartitioned.partitions)
            }
            _ => KStream {
                builder: self.builder.clone(),
                node: format!("{name}-repartition-source"),
                key_serde: None,
                value_serde: None,
                repartition_required: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Produced, Repartitioned, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn repartition_topic_holds_rekeyed_records_and_splits_the_topology() {
        let b = StreamsBuilder::new();
        let r = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
            .select_key(|k, _| k.to_uppercase())
            .repartition(
                Repartitioned::default()
                    .with_key_serde(Serdes::string())
                    .partitions(3),
            );
        assert!(!r.repartition_required());
        r.to("out", Produced::default());
        let t = b.build().unwrap();
        let text = t.describe().to_string();
        assert!(text.contains("Sink: KSTREAM-REPARTITION-0000000002-repartition-sink (topic: KSTREAM-REPARTITION-0000000002-repartition)"), "{text}");
        assert!(
            text.contains(
                "Sub-topology: 1\n    Source: KSTREAM-REPARTITION-0000000002-repartition-source"
            ),
            "{text}"
        );
        let mut d = driver(t);
        d.pipe_str("in", Some("a"), "1", 10).unwrap();
        d.pipe_str("in", Some("b"), "2", 11).unwrap();
        let rep = d.all_records("test-app-KSTREAM-REPARTITION-0000000002-repartition");
        assert_eq!(kv(&rep), pairs(&[("A", "1"), ("B", "2")]));
        assert_eq!(rep[1].timestamp, 11);
        assert_eq!(kv(&d.read_output("out")), pairs(&[("A", "1"), ("B", "2")]));
    }

    #[test]
    fn zero_partitions_and_reused_names_are_errors() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .repartition(Repartitioned::as_("r").partitions(0));
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("needs at least one partition"), "{err}");

        let b = StreamsBuilder::new();
        let s = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()));
        s.repartition(Repartitioned::as_("r"));
        s.repartition(Repartitioned::as_("r"));
        let err = b.build().unwrap_err().to_string();
        assert!(
            err.contains("the repartition topic 'r-repartition' is used twice"),
            "{err}"
        );
    }

    #[test]
    fn repartition_without_known_serdes_is_an_error() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map(|k, v| (k, v.len() as u64))
            .repartition(Repartitioned::as_("r"));
        let err = b.build().unwrap_err().to_string();
        assert!(
            err.contains("repartition() after node 'KSTREAM-MAP-0000000001' needs a serde"),
            "{err}"
        );
        assert!(err.contains("Repartitioned::with"), "{err}");
    }
}
