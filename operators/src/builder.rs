//! `StreamsBuilder`: where a DSL program starts and where it becomes a
//! [`Topology`].
//!
//! Why a shared, interior-mutable builder: DSL calls read like a chain
//! (`stream(..).filter(..).to(..)`), and each call adds nodes to one graph.
//! Every [`KStream`] therefore holds a handle to the builder's state. DSL
//! calls never return `Result`, which keeps chains pleasant; instead the
//! first error (a missing serde, a duplicate store, a bad topic name...) is
//! recorded and [`StreamsBuilder::build`] returns it. Later calls after an
//! error are harmless: they add nothing that is ever run.
//!
//! Node names follow Kafka Streams (`KSTREAM-SOURCE-0000000000`,
//! `KSTREAM-FILTER-0000000001`, ...): one counter per builder, so the same
//! program always yields the same names, which `describe()` output and tools
//! that know Kafka Streams recognise.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use kstreams_runtime::{
    ErrorPolicy, Processor, Result, SerdeRef, StoreBuilder, StreamsError, Topology,
};

use crate::KStream;

pub(crate) struct BuilderState {
    topology: Topology,
    error: Option<StreamsError>,
    index: usize,
    repartition_topics: BTreeSet<String>,
    sources: usize,
    built: bool,
    /// Grace period (ms) of the windows behind each windowed table node, for
    /// `suppress(until_window_closes)`.
    window_grace: std::collections::HashMap<String, i64>,
}

/// Builds a [`Topology`] with the DSL: streams, tables, aggregations.
///
/// ```
/// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
/// use kstreams_runtime::{Serdes, TopologyTestDriver};
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
///     .map_values(|v: String| v.to_uppercase())
///     .to("out", Produced::with(Serdes::string(), Serdes::string()));
/// let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
/// driver.pipe_str("in", Some("k"), "hello", 0).unwrap();
/// assert_eq!(driver.read_output("out")[0].value_str(), Some("HELLO"));
/// ```
#[derive(Clone)]
pub struct StreamsBuilder {
    pub(crate) state: Rc<RefCell<BuilderState>>,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    ///
    /// ```
    /// let b = kstreams_operators::StreamsBuilder::new();
    /// assert!(b.build().is_err()); // nothing to run yet
    /// ```
    pub fn new() -> Self {
        StreamsBuilder {
            state: Rc::new(RefCell::new(BuilderState {
                topology: Topology::new(),
                error: None,
                index: 0,
                repartition_topics: BTreeSet::new(),
                sources: 0,
                built: false,
                window_grace: std::collections::HashMap::new(),
            })),
        }
    }

    /// Adds a state store that [`KStream::process`] processors can use by
    /// name.
    ///
    /// ```
    /// use kstreams_operators::StreamsBuilder;
    /// use kstreams_runtime::{Serdes, StoreBuilder};
    /// let b = StreamsBuilder::new();
    /// b.add_state_store(StoreBuilder::key_value("seen", Serdes::string(), Serdes::u64_be()));
    /// ```
    pub fn add_state_store<K: 'static, V: 'static>(&self, store: StoreBuilder<K, V>) -> &Self {
        self.with_topology(|t| t.add_state_store(store, &[]).map(|_| ()));
        self
    }

    /// Turns the program into a [`Topology`], or returns the first error a
    /// DSL call ran into.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, StreamsBuilder};
    /// use kstreams_runtime::Serdes;
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()));
    /// let topology = b.build().unwrap();
    /// assert!(topology.describe().to_string().contains("KSTREAM-SOURCE-0000000000"));
    /// ```
    pub fn build(self) -> Result<Topology> {
        let mut s = self.state.borrow_mut();
        if s.built {
            return Err(StreamsError::IllegalState(
                "this StreamsBuilder was already built".into(),
            ));
        }
        s.built = true;
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        if s.sources == 0 {
            return Err(StreamsError::Topology(
                "the topology is empty: add a source with StreamsBuilder::stream".into(),
            ));
        }
        Ok(std::mem::take(&mut s.topology))
    }

    /// The next Kafka-style generated name: `<prefix><10-digit index>`.
    pub(crate) fn next_name(&self, prefix: &str) -> String {
        let mut s = self.state.borrow_mut();
        let i = s.index;
        s.index += 1;
        format!("{prefix}{i:010}")
    }

    /// Records `err` unless an earlier error is already recorded.
    pub(crate) fn fail(&self, err: StreamsError) {
        let mut s = self.state.borrow_mut();
        if s.error.is_none() {
            s.error = Some(err);
        }
    }

    /// Runs `f` on the topology; records its error. Returns whether it succeeded.
    pub(crate) fn with_topology(&self, f: impl FnOnce(&mut Topology) -> Result<()>) -> bool {
        let result = {
            let mut s = self.state.borrow_mut();
            if s.built {
                Err(StreamsError::IllegalState(
                    "this StreamsBuilder was already built; DSL calls after build() have no effect"
                        .into(),
                ))
            } else {
                f(&mut s.topology)
            }
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    /// Records that table node `node` carries windows with this grace.
    pub(crate) fn set_window_grace(&self, node: &str, grace_ms: i64) {
        self.state
            .borrow_mut()
            .window_grace
            .insert(node.to_string(), grace_ms);
    }

    /// The grace of the windows behind table node `node`, if it is windowed.
    pub(crate) fn window_grace(&self, node: &str) -> Option<i64> {
        self.state.borrow().window_grace.get(node).copied()
    }

    /// Whether two handles belong to the same builder.
    pub(crate) fn same_as(&self, other: &StreamsBuilder) -> bool {
        Rc::ptr_eq(&self.state, &other.state)
    }

    /// Adds a processor node; records any error.
    pub(crate) fn add_processor<KIn, VIn, KOut, VOut, P, F>(
        &self,
        name: &str,
        supplier: F,
        parents: &[&str],
    ) -> bool
    where
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + 'static,
        VOut: Clone + 'static,
        P: Processor<KIn, VIn, KOut, VOut>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.with_topology(|t| {
            t.add_processor::<KIn, VIn, KOut, VOut, P, F>(name, supplier, parents)
                .map(|_| ())
        })
    }

    /// Adds a source node for user topics; records any error.
    pub(crate) fn add_source<K: Clone + 'static, V: Clone + 'static>(
        &self,
        name: &str,
        topics: &[&str],
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> bool {
        let ok = self.with_topology(|t| {
            t.add_source(name, topics, key_serde, value_serde)
                .map(|_| ())
        });
        if ok {
            self.state.borrow_mut().sources += 1;
        }
        ok
    }

    /// Applies a source's own deserialization policy, if it has one.
    pub(crate) fn set_source_policy(&self, source: &str, policy: Option<ErrorPolicy>) {
        if let Some(p) = policy {
            self.with_topology(|t| t.set_deserialization_policy(source, p).map(|_| ()));
        }
    }

    /// Whether the repartition topic `<name>-repartition` is already used
    /// by an earlier grouping or repartition of this builder.
    pub(crate) fn repartition_topic_taken(&self, name: &str) -> bool {
        self.state
            .borrow()
            .repartition_topics
            .contains(&format!("{name}-repartition"))
    }

    /// Routes `stream` through the internal topic `<name>-repartition`
    /// (nodes `<name>-repartition-sink` and `<name>-repartition-source`),
    /// which cuts the topology into two sub-topologies.
    pub(crate) fn repartition_through<K: Clone + 'static, V: Clone + 'static>(
        &self,
        stream: &KStream<K, V>,
        name: &str,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        partitions: Option<usize>,
    ) -> KStream<K, V> {
        let topic = format!("{name}-repartition");
        let sink = format!("{name}-repartition-sink");
        let source = format!("{name}-repartition-source");
        let fresh = self
            .state
            .borrow_mut()
            .repartition_topics
            .insert(topic.clone());
        if !fresh {
            self.fail(StreamsError::Topology(format!(
                "the repartition topic '{topic}' is used twice; give each grouping or \
                 repartition its own name (Grouped::named / Repartitioned::named / Materialized::as_)"
            )));
        } else {
            let (ks, vs) = (key_serde.clone(), value_serde.clone());
            let parent = stream.node.clone();
            self.with_topology(|t| {
                t.add_internal_sink(&sink, &topic, partitions, ks, vs, &[&parent])?;
                t.add_internal_source(&source, &topic, key_serde.clone(), value_serde.clone())?;
                Ok(())
            });
        }
        KStream {
            builder: self.clone(),
            node: source,
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
            repartition_required: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Consumed, Produced};
    use kstreams_runtime::Serdes;

    #[test]
    fn empty_builder_is_an_error() {
        let err = StreamsBuilder::new().build().unwrap_err();
        assert!(err.to_string().contains("the topology is empty"), "{err}");
    }

    #[test]
    fn names_count_up_like_kafka_streams() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .filter(|_, _| true)
            .to("out", Produced::with(Serdes::string(), Serdes::string()));
        let text = b.build().unwrap().describe().to_string();
        assert!(
            text.contains("Source: KSTREAM-SOURCE-0000000000 (topics: [in])"),
            "{text}"
        );
        assert!(
            text.contains("Processor: KSTREAM-FILTER-0000000001"),
            "{text}"
        );
        assert!(
            text.contains("Sink: KSTREAM-SINK-0000000002 (topic: out)"),
            "{text}"
        );
    }

    #[test]
    fn first_error_wins_and_later_calls_are_harmless() {
        let b = StreamsBuilder::new();
        let s = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()));
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string())); // same topic twice
        s.to("", Produced::with(Serdes::string(), Serdes::string())); // empty topic: second error
        let err = b.build().unwrap_err();
        assert!(
            err.to_string().contains("topic 'in' is already read"),
            "{err}"
        );
    }

    #[test]
    fn calls_after_build_do_not_panic() {
        let b = StreamsBuilder::new();
        let s = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()));
        let b2 = b.clone();
        b.build().unwrap();
        s.filter(|_, _| true);
        assert!(b2.build().is_err());
    }
}
