//! `to`: write a stream to a topic.
//!
//! A sink node serializes with the [`Produced`] serdes (or the stream's own)
//! and sends through the task's record collector, partitioned by the
//! serialized key (murmur2, as Kafka's default partitioner, so Java
//! producers and consumers agree). A `()` key is written as null.

use crate::{KStream, Produced};

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Writes every record to `topic`.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .to("out", Produced::with(Serdes::string(), Serdes::string()).with_name("write-out"));
    /// let t = b.build().unwrap();
    /// assert!(t.describe().to_string().contains("Sink: write-out (topic: out)"));
    /// let mut d = TopologyTestDriver::new(t).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 3).unwrap();
    /// assert_eq!(d.read_output("out")[0].timestamp, 3);
    /// ```
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let name = produced
            .name
            .clone()
            .unwrap_or_else(|| self.builder.next_name("KSTREAM-SINK-"));
        let hint = "Produced::with(key_serde, value_serde)";
        let ks = self.resolve_serde(produced.key_serde, &self.key_serde, "to()", hint);
        let vs = self.resolve_serde(produced.value_serde, &self.value_serde, "to()", hint);
        if let (Some(ks), Some(vs)) = (ks, vs) {
            let parent = self.node.clone();
            self.builder
                .with_topology(|t| t.add_sink(&name, topic, ks, vs, &[&parent]).map(|_| ()));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn to_serializes_with_the_given_serdes_and_unit_keys_are_null() {
        let b = StreamsBuilder::new();
        let s = b.stream("in", Consumed::with(Serdes::unit(), Serdes::string()));
        s.map_values(|v| v.len() as i64)
            .to("lens", Produced::with(Serdes::unit(), Serdes::i64_be()));
        s.to("copy", Produced::default());
        let mut d = driver(b.build().unwrap());
        d.pipe_input("in", Some(b"ignored"), Some(b"abc"), 0)
            .unwrap();
        let lens = d.read_output("lens");
        assert_eq!(lens[0].key, None);
        assert_eq!(lens[0].value, Some(3i64.to_be_bytes().to_vec()));
        assert_eq!(
            kv(&d.read_output("copy")),
            vec![(None, Some("abc".to_string()))]
        );
    }

    #[test]
    fn to_the_same_topic_twice_is_allowed() {
        let b = StreamsBuilder::new();
        let s = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()));
        s.to("out", Produced::default());
        s.map_values(|v| v + "!").to(
            "out",
            Produced::default().with_value_serde(Serdes::string()),
        );
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("k"), "v", 0).unwrap();
        assert_eq!(kv(&d.read_output("out")), pairs(&[("k", "v"), ("k", "v!")]));
    }

    #[test]
    fn missing_value_serde_is_a_clear_error() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .map_values(|v| v.len())
            .to("out", Produced::default());
        let err = b.build().unwrap_err().to_string();
        assert!(
            err.contains(
                "to() after node 'KSTREAM-MAPVALUES-0000000001' needs a serde for type usize"
            ),
            "{err}"
        );
    }
}
