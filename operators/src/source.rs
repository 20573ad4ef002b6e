//! `StreamsBuilder::stream`: where records enter the DSL.
//!
//! A source node turns the bytes of a topic into typed records with the
//! serdes from [`Consumed`]. A record that cannot be deserialized never
//! reaches an operator: the task applies its deserialization policy
//! (`log_and_continue` by default: log, count, skip), so one bad record does
//! not stop the application. The stream remembers the serdes, so a later
//! `to` or repartition of the same types need not repeat them.

use crate::{Consumed, KStream, StreamsBuilder};

impl StreamsBuilder {
    /// A stream of the records of `topic`.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// // The stream knows its serdes, so `to` can use them.
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string())).to("out", Produced::default());
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 7).unwrap();
    /// assert_eq!(d.read_output("out")[0].timestamp, 7);
    /// ```
    pub fn stream<K: Clone + 'static, V: Clone + 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let name = consumed
            .name
            .unwrap_or_else(|| self.next_name("KSTREAM-SOURCE-"));
        self.add_source(
            &name,
            &[topic],
            consumed.key_serde.clone(),
            consumed.value_serde.clone(),
        );
        self.set_source_policy(&name, consumed.deserialization_policy);
        KStream {
            builder: self.clone(),
            node: name,
            key_serde: Some(consumed.key_serde),
            value_serde: Some(consumed.value_serde),
            repartition_required: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn undeserializable_records_are_skipped_and_counted() {
        let b = StreamsBuilder::new();
        b.stream(
            "in",
            Consumed::with(Serdes::string(), Serdes::u64_text()).with_name("numbers"),
        )
        .to("out", Produced::default());
        let t = b.build().unwrap();
        assert!(
            t.describe()
                .to_string()
                .contains("Source: numbers (topics: [in])")
        );
        let mut d = driver(t);
        d.pipe_str("in", Some("a"), "1", 0).unwrap();
        d.pipe_str("in", Some("b"), "not a number", 0).unwrap();
        d.pipe_input("in", Some(&[0xff]), Some(b"2"), 0).unwrap();
        d.pipe_str("in", Some("c"), "3", 0).unwrap();
        assert_eq!(kv(&d.read_output("out")), pairs(&[("a", "1"), ("c", "3")]));
        assert_eq!(d.skipped_records(), 2);
    }

    #[test]
    fn a_source_policy_overrides_the_global_one_for_its_topic_only() {
        use kstreams_runtime::{ErrorPolicy, TopologyTestDriver, dlq_headers};
        let b = StreamsBuilder::new();
        b.stream(
            "strict",
            Consumed::with(Serdes::string(), Serdes::u64_text()),
        )
        .to("out", Produced::default());
        b.stream(
            "lenient",
            Consumed::with(Serdes::string(), Serdes::u64_text())
                .with_deserialization_policy(ErrorPolicy::DeadLetter("lenient-dlq".into())),
        )
        .to("out2", Produced::default());
        let mut d = TopologyTestDriver::builder(b.build().unwrap())
            .deserialization_policy(ErrorPolicy::LogAndFail)
            .build()
            .unwrap();
        d.pipe_str("lenient", Some("a"), "x", 0).unwrap();
        d.pipe_str("lenient", Some("b"), "2", 0).unwrap();
        let dead = d.read_output("lenient-dlq");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].value_str(), Some("x"));
        assert_eq!(
            dead[0].headers.get(dlq_headers::TOPIC),
            Some(&b"lenient"[..])
        );
        assert_eq!(kv(&d.read_output("out2")), pairs(&[("b", "2")]));
        let err = d.pipe_str("strict", Some("c"), "y", 0).unwrap_err();
        assert!(err.to_string().contains("strict-0 offset 0"), "{err}");
    }

    #[test]
    fn empty_topic_name_is_an_error() {
        let b = StreamsBuilder::new();
        b.stream("", Consumed::with(Serdes::string(), Serdes::string()));
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("empty topic name"), "{err}");
    }
}
