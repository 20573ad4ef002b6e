//! `KStream`: a handle on one node of the topology being built, and the
//! bookkeeping every stream operator shares.
//!
//! Why a handle and not a value: a stream is a point in the graph. Calling an
//! operator adds a node whose parent is that point and returns a handle on
//! the new node, so a stream can be used many times (fan-out) and operators
//! chain. The operators themselves live one per file (`filter.rs`,
//! `map.rs`, ...), each adding `impl` blocks to this type.
//!
//! Two facts travel with a handle:
//! - the serdes of its key and value, when known (from `Consumed`,
//!   `Grouped`, a repartition), so later sinks and repartitions need not
//!   repeat them. An operator that changes a type forgets that serde.
//! - whether the key may have changed since the stream was last partitioned
//!   (`map`, `flat_map`, `select_key`, `process`). Grouping such a stream
//!   first sends it through a repartition topic, so that all records of a
//!   key meet in one task.

use kstreams_runtime::{Processor, SerdeRef, StreamsError};

use crate::StreamsBuilder;

/// A record stream: every record is an independent fact.
///
/// ```
/// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
/// use kstreams_runtime::{Serdes, TopologyTestDriver};
///
/// let b = StreamsBuilder::new();
/// let numbers = b.stream("numbers", Consumed::with(Serdes::string(), Serdes::i64_text()));
/// numbers
///     .filter(|_, n| *n > 0)
///     .map_values(|n| n * 2)
///     .to("doubled", Produced::with(Serdes::string(), Serdes::i64_text()));
/// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
/// d.pipe_str("numbers", Some("a"), "21", 0).unwrap();
/// d.pipe_str("numbers", Some("b"), "-1", 0).unwrap();
/// let out = d.read_output("doubled");
/// assert_eq!(out.len(), 1);
/// assert_eq!(out[0].value_str(), Some("42"));
/// ```
pub struct KStream<K, V> {
    pub(crate) builder: StreamsBuilder,
    pub(crate) node: String,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) repartition_required: bool,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            builder: self.builder.clone(),
            node: self.node.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            repartition_required: self.repartition_required,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// The name of the node this stream comes out of.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, StreamsBuilder};
    /// let b = StreamsBuilder::new();
    /// let s = b.stream("in", Consumed::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()));
    /// assert_eq!(s.node_name(), "KSTREAM-SOURCE-0000000000");
    /// ```
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// Whether the key may have changed since the stream was last
    /// partitioned, so that grouping it needs a repartition topic.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, StreamsBuilder};
    /// let b = StreamsBuilder::new();
    /// let s = b.stream("in", Consumed::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()));
    /// assert!(!s.repartition_required());
    /// assert!(s.select_key(|_, v| v.clone()).repartition_required());
    /// ```
    pub fn repartition_required(&self) -> bool {
        self.repartition_required
    }

    /// Adds a processor child of this stream and returns the stream it forwards.
    pub(crate) fn add_child<KO, VO, P, F>(
        &self,
        name: String,
        supplier: F,
        key_serde: Option<SerdeRef<KO>>,
        value_serde: Option<SerdeRef<VO>>,
        repartition_required: bool,
    ) -> KStream<KO, VO>
    where
        KO: Clone + 'static,
        VO: Clone + 'static,
        P: Processor<K, V, KO, VO>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.builder
            .add_processor::<K, V, KO, VO, P, F>(&name, supplier, &[&self.node]);
        KStream {
            builder: self.builder.clone(),
            node: name,
            key_serde,
            value_serde,
            repartition_required,
        }
    }

    /// The serde to use: the explicit one, else the stream's; records an
    /// error naming `what` and `hint` if neither is known.
    pub(crate) fn resolve_serde<T>(
        &self,
        explicit: Option<SerdeRef<T>>,
        known: &Option<SerdeRef<T>>,
        what: &str,
        hint: &str,
    ) -> Option<SerdeRef<T>> {
        match explicit.or_else(|| known.clone()) {
            Some(s) => Some(s),
            None => {
                self.builder.fail(StreamsError::Topology(format!(
                    "{what} after node '{}' needs a serde for type {}: the stream does not know one \
                     (an operator changed the type); pass it with {hint}",
                    self.node,
                    std::any::type_name::<T>()
                )));
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the operator tests.
    use kstreams_runtime::{TestRecord, Topology, TopologyTestDriver};

    /// A driver that commits after every record (every update visible).
    pub fn driver(t: Topology) -> TopologyTestDriver {
        TopologyTestDriver::new(t).unwrap()
    }

    /// `(key, value)` of records as UTF-8 (`None` for null), for exact comparisons.
    pub fn kv(records: &[TestRecord]) -> Vec<(Option<String>, Option<String>)> {
        records
            .iter()
            .map(|r| {
                (
                    r.key
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                    r.value
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                )
            })
            .collect()
    }

    /// `(key, value)` pairs of strings, for building expected outputs.
    pub fn pairs(items: &[(&str, &str)]) -> Vec<(Option<String>, Option<String>)> {
        items
            .iter()
            .map(|(k, v)| (Some(k.to_string()), Some(v.to_string())))
            .collect()
    }
}
