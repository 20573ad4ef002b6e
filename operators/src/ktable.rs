//! `KTable`: a changelog stream read as a table, the latest value per key.
//!
//! Representation: a table node forwards `Record<K, Option<V>>`, one record
//! per change of a key: `Some(v)` is an insert or update, `None` a deletion
//! (a tombstone). Old values are not carried; no operator here needs them.
//!
//! Tables come from aggregations (`count`, `reduce`, `aggregate`), whose
//! store is the table's queryable state. Derived tables (`filter`,
//! `map_values`) are not materialized: they transform the change stream.
//! The operators live in `table_filter.rs`, `table_map_values.rs` and
//! `to_stream.rs`.

use kstreams_runtime::SerdeRef;

use crate::StreamsBuilder;

/// A table: for each key, its latest value.
///
/// ```
/// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
/// use kstreams_runtime::{Serdes, TopologyTestDriver};
/// let b = StreamsBuilder::new();
/// let counts = b
///     .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
///     .group_by_key(Grouped::default())
///     .count(Materialized::as_("counts"));
/// counts
///     .filter(|_, n| *n >= 2)
///     .to_stream()
///     .to("popular", Produced::default().with_value_serde(Serdes::u64_text()));
/// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
/// for k in ["a", "b", "a"] { d.pipe_str("in", Some(k), "x", 0).unwrap(); }
/// let out = d.read_output("popular");
/// assert_eq!((out.len(), out[0].key_str(), out[0].value_str()), (1, Some("a"), Some("2")));
/// ```
pub struct KTable<K, V> {
    pub(crate) builder: StreamsBuilder,
    pub(crate) node: String,
    pub(crate) store_name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
}

impl<K, V> Clone for KTable<K, V> {
    fn clone(&self) -> Self {
        KTable {
            builder: self.builder.clone(),
            node: self.node.clone(),
            store_name: self.store_name.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// The store holding this table, if it is materialized (tables from
    /// aggregations are).
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// use kstreams_runtime::Serdes;
    /// let b = StreamsBuilder::new();
    /// let t = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("counts"));
    /// assert_eq!(t.queryable_store_name(), Some("counts"));
    /// assert_eq!(t.filter(|_, _| true).queryable_store_name(), None);
    /// ```
    pub fn queryable_store_name(&self) -> Option<&str> {
        self.store_name.as_deref()
    }

    /// The name of the node this table's changes come out of.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// use kstreams_runtime::Serdes;
    /// let b = StreamsBuilder::new();
    /// let t = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .count(Materialized::as_("counts"));
    /// assert_eq!(t.node_name(), "KSTREAM-AGGREGATE-0000000001");
    /// ```
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// Adds a child of this table's node; returns a table on it.
    pub(crate) fn add_table_child<VR, P, F>(
        &self,
        name: String,
        supplier: F,
        value_serde: Option<SerdeRef<VR>>,
    ) -> KTable<K, VR>
    where
        VR: Clone + 'static,
        P: kstreams_runtime::Processor<K, Option<V>, K, Option<VR>>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.builder
            .add_processor::<K, Option<V>, K, Option<VR>, P, F>(&name, supplier, &[&self.node]);
        if let Some(grace) = self.builder.window_grace(&self.node) {
            self.builder.set_window_grace(&name, grace);
        }
        KTable {
            builder: self.builder.clone(),
            node: name,
            store_name: None,
            key_serde: self.key_serde.clone(),
            value_serde,
        }
    }
}
