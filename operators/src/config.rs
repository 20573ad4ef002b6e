//! The small configuration values DSL calls take, in the builder style of
//! Kafka Streams (`Consumed.with(..)`, `Materialized.as(..)`, ...).
//!
//! Why separate values instead of more method arguments: most settings are
//! optional (names, serdes, partition counts, store kinds), and a value
//! keeps the call sites short while leaving room for new settings without
//! breaking code.
//!
//! Serdes left out here are taken from the stream when it knows them (a
//! stream knows its serdes when they came from `Consumed`, `Grouped` or a
//! repartition and no operator has changed the type since). If neither is
//! known where bytes are needed (a sink, a repartition topic, a store),
//! [`StreamsBuilder::build`](crate::StreamsBuilder::build) returns an error
//! that says which serde to add.

use std::time::Duration;

use kstreams_runtime::{ErrorPolicy, SerdeRef};

/// How a source topic is read: key and value serdes, and an optional name
/// for the source node.
///
/// ```
/// use kstreams_operators::Consumed;
/// use kstreams_runtime::Serdes;
/// let c = Consumed::with(Serdes::string(), Serdes::u64_text()).with_name("words-source");
/// ```
pub struct Consumed<K, V> {
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
    pub(crate) name: Option<String>,
    pub(crate) deserialization_policy: Option<ErrorPolicy>,
}

impl<K, V> Consumed<K, V> {
    /// Reads keys and values with these serdes.
    ///
    /// ```
    /// let c = kstreams_operators::Consumed::with(kstreams_runtime::Serdes::unit(), kstreams_runtime::Serdes::string());
    /// ```
    pub fn with(key_serde: SerdeRef<K>, value_serde: SerdeRef<V>) -> Self {
        Consumed {
            key_serde,
            value_serde,
            name: None,
            deserialization_policy: None,
        }
    }
    /// How records of this source that cannot be deserialized are handled,
    /// overriding the application's `default.deserialization.exception.handler`
    /// for this topic: `LogAndContinue`, `LogAndFail` or `DeadLetter(topic)`.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{ErrorPolicy, Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::u64_text())
    ///         .with_deserialization_policy(ErrorPolicy::DeadLetter("in-dlq".into())))
    ///     .to("out", Produced::default());
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("a"), "not a number", 0).unwrap();
    /// assert_eq!(d.read_output("in-dlq")[0].value_str(), Some("not a number"));
    /// ```
    pub fn with_deserialization_policy(mut self, policy: ErrorPolicy) -> Self {
        self.deserialization_policy = Some(policy);
        self
    }
    /// Names the source node (default `KSTREAM-SOURCE-<n>`).
    ///
    /// ```
    /// let c = kstreams_operators::Consumed::with(kstreams_runtime::Serdes::unit(), kstreams_runtime::Serdes::string())
    ///     .with_name("lines");
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a stream is written to a topic: serdes (default: the stream's own)
/// and an optional name for the sink node.
///
/// ```
/// use kstreams_operators::Produced;
/// use kstreams_runtime::Serdes;
/// let p = Produced::with(Serdes::string(), Serdes::u64_text()).with_name("counts-sink");
/// let q: Produced<String, u64> = Produced::default().with_value_serde(Serdes::u64_text());
/// ```
pub struct Produced<K, V> {
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Produced<K, V> {
    fn default() -> Self {
        Produced {
            key_serde: None,
            value_serde: None,
            name: None,
        }
    }
}

impl<K, V> Produced<K, V> {
    /// Writes keys and values with these serdes.
    ///
    /// ```
    /// let p = kstreams_operators::Produced::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// ```
    pub fn with(key_serde: SerdeRef<K>, value_serde: SerdeRef<V>) -> Self {
        Produced {
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
            name: None,
        }
    }
    /// Sets the key serde.
    ///
    /// ```
    /// let p: kstreams_operators::Produced<String, u64> =
    ///     kstreams_operators::Produced::default().with_key_serde(kstreams_runtime::Serdes::string());
    /// ```
    pub fn with_key_serde(mut self, serde: SerdeRef<K>) -> Self {
        self.key_serde = Some(serde);
        self
    }
    /// Sets the value serde.
    ///
    /// ```
    /// let p: kstreams_operators::Produced<String, u64> =
    ///     kstreams_operators::Produced::default().with_value_serde(kstreams_runtime::Serdes::u64_text());
    /// ```
    pub fn with_value_serde(mut self, serde: SerdeRef<V>) -> Self {
        self.value_serde = Some(serde);
        self
    }
    /// Names the sink node (default `KSTREAM-SINK-<n>`).
    ///
    /// ```
    /// let p = kstreams_operators::Produced::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string())
    ///     .with_name("to-out");
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a stream is grouped: the serdes of the repartition topic (if one is
/// needed) and its name (`<name>-repartition`).
///
/// ```
/// use kstreams_operators::Grouped;
/// use kstreams_runtime::Serdes;
/// let g = Grouped::with(Serdes::string(), Serdes::string()).named("by-word");
/// let h: Grouped<String, String> = Grouped::as_("by-word");
/// ```
pub struct Grouped<K, V> {
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) name: Option<String>,
    pub(crate) pre_aggregation: bool,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Grouped {
            key_serde: None,
            value_serde: None,
            name: None,
            pre_aggregation: true,
        }
    }
}

impl<K, V> Grouped<K, V> {
    /// Groups with these serdes.
    ///
    /// ```
    /// let g = kstreams_operators::Grouped::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::i64_be());
    /// ```
    pub fn with(key_serde: SerdeRef<K>, value_serde: SerdeRef<V>) -> Self {
        Grouped {
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
            ..Self::default()
        }
    }
    /// Groups under `name`, with the stream's serdes.
    ///
    /// ```
    /// let g: kstreams_operators::Grouped<String, String> = kstreams_operators::Grouped::as_("by-customer");
    /// ```
    pub fn as_(name: impl Into<String>) -> Self {
        Grouped {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// Names the grouping: the repartition topic becomes `<name>-repartition`.
    ///
    /// ```
    /// let g = kstreams_operators::Grouped::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string())
    ///     .named("by-customer");
    /// ```
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the key serde.
    ///
    /// ```
    /// let g: kstreams_operators::Grouped<String, u64> =
    ///     kstreams_operators::Grouped::default().with_key_serde(kstreams_runtime::Serdes::string());
    /// ```
    pub fn with_key_serde(mut self, serde: SerdeRef<K>) -> Self {
        self.key_serde = Some(serde);
        self
    }
    /// Sets the value serde.
    ///
    /// ```
    /// let g: kstreams_operators::Grouped<String, u64> =
    ///     kstreams_operators::Grouped::default().with_value_serde(kstreams_runtime::Serdes::u64_be());
    /// ```
    pub fn with_value_serde(mut self, serde: SerdeRef<V>) -> Self {
        self.value_serde = Some(serde);
        self
    }
    /// Whether `count()` pre-aggregates before the repartition topic (default
    /// `true`).
    ///
    /// When a grouped stream needs a repartition and the count's store is
    /// cached, `count()` adds a combiner on the writing side of the
    /// repartition topic: it adds up the records of each key between two
    /// commits and sends one record per key (the partial count, a `u64`)
    /// instead of every record. The final counts are the same; the
    /// repartition topic carries fewer records. See
    /// [`KGroupedStream::count`](crate::KGroupedStream::count).
    ///
    /// `with_pre_aggregation(false)` keeps one repartition record per input
    /// record, carrying the input value (and needing its serde), as without
    /// the combiner: for consumers that read the repartition topic
    /// themselves, or to see every input record in it while debugging.
    /// Other aggregations (`reduce`, `aggregate`, windowed counts) never
    /// pre-aggregate.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    ///
    /// let topology = |pre_aggregation: bool| {
    ///     let b = StreamsBuilder::new();
    ///     b.stream("words", Consumed::with(Serdes::unit(), Serdes::string()))
    ///         .group_by(
    ///             |_, word| word.clone(),
    ///             Grouped::with(Serdes::string(), Serdes::string())
    ///                 .with_pre_aggregation(pre_aggregation),
    ///         )
    ///         .count(Materialized::as_("counts"));
    ///     b.build().unwrap()
    /// };
    /// for pre_aggregation in [true, false] {
    ///     // Commit after every 3 records.
    ///     let mut d = TopologyTestDriver::builder(topology(pre_aggregation))
    ///         .commit_every(3)
    ///         .build()
    ///         .unwrap();
    ///     for w in ["a", "b", "a"] {
    ///         d.pipe_str("words", None, w, 0).unwrap();
    ///     }
    ///     let repartitioned = d.all_records("test-app-counts-repartition").len();
    ///     // Combined: (a, 2) and (b, 1). Not combined: a, b, a.
    ///     assert_eq!(repartitioned, if pre_aggregation { 2 } else { 3 });
    ///     let a = d.key_value_store_get::<String, u64>("counts", &"a".into()).unwrap();
    ///     assert_eq!(a, Some(2));
    /// }
    /// ```
    pub fn with_pre_aggregation(mut self, enabled: bool) -> Self {
        self.pre_aggregation = enabled;
        self
    }
}

/// The store behind a table: its name, serdes, and whether it is kept in
/// RocksDB (default) or memory, changelogged (default) or not, and cached
/// (default) or not.
///
/// ```
/// use kstreams_operators::Materialized;
/// use kstreams_runtime::Serdes;
/// let m: Materialized<String, u64> = Materialized::as_("counts")
///     .with_key_serde(Serdes::string())
///     .with_value_serde(Serdes::u64_be())
///     .in_memory();
/// ```
pub struct Materialized<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) persistent: bool,
    pub(crate) logged: bool,
    pub(crate) caching: bool,
    pub(crate) retention: Option<Duration>,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Materialized {
            name: None,
            key_serde: None,
            value_serde: None,
            persistent: true,
            logged: true,
            caching: true,
            retention: None,
        }
    }
}

impl<K, V> Materialized<K, V> {
    /// A store named `name`; its changelog is `<application.id>-<name>-changelog`.
    ///
    /// ```
    /// let m: kstreams_operators::Materialized<String, u64> = kstreams_operators::Materialized::as_("counts");
    /// ```
    pub fn as_(name: impl Into<String>) -> Self {
        Materialized {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// An unnamed store (named `KSTREAM-AGGREGATE-STATE-STORE-<n>`) with these serdes.
    ///
    /// ```
    /// let m = kstreams_operators::Materialized::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::u64_be());
    /// ```
    pub fn with(key_serde: SerdeRef<K>, value_serde: SerdeRef<V>) -> Self {
        Materialized {
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
            ..Self::default()
        }
    }
    /// Sets the key serde (default: the grouping's).
    ///
    /// ```
    /// let m: kstreams_operators::Materialized<String, u64> =
    ///     kstreams_operators::Materialized::as_("c").with_key_serde(kstreams_runtime::Serdes::string());
    /// ```
    pub fn with_key_serde(mut self, serde: SerdeRef<K>) -> Self {
        self.key_serde = Some(serde);
        self
    }
    /// Sets the value serde (default for `count`: 8-byte big-endian; for
    /// `reduce`: the grouping's value serde; `aggregate` needs one).
    ///
    /// ```
    /// let m: kstreams_operators::Materialized<String, u64> =
    ///     kstreams_operators::Materialized::as_("c").with_value_serde(kstreams_runtime::Serdes::u64_text());
    /// ```
    pub fn with_value_serde(mut self, serde: SerdeRef<V>) -> Self {
        self.value_serde = Some(serde);
        self
    }
    /// Keeps the store in memory (rebuilt from its changelog on start).
    ///
    /// ```
    /// let m: kstreams_operators::Materialized<String, u64> = kstreams_operators::Materialized::as_("c").in_memory();
    /// ```
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }
    /// Turns off the changelog: the store is then not fault-tolerant.
    ///
    /// ```
    /// let m: kstreams_operators::Materialized<String, u64> =
    ///     kstreams_operators::Materialized::as_("c").with_logging_disabled();
    /// ```
    pub fn with_logging_disabled(mut self) -> Self {
        self.logged = false;
        self
    }
    /// How long a window store keeps windows (windowed aggregations only).
    /// It is never shorter than what the windows need (size plus grace),
    /// which is also the default.
    ///
    /// ```
    /// let m: kstreams_operators::Materialized<String, u64> =
    ///     kstreams_operators::Materialized::as_("per-minute").with_retention(std::time::Duration::from_secs(3600));
    /// assert_eq!(m.retention_ms(), Some(3_600_000));
    /// ```
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }
    /// The retention set with [`Materialized::with_retention`], in ms.
    ///
    /// ```
    /// let m: kstreams_operators::Materialized<String, u64> = kstreams_operators::Materialized::as_("c");
    /// assert_eq!(m.retention_ms(), None);
    /// ```
    pub fn retention_ms(&self) -> Option<i64> {
        self.retention
            .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
    }
    /// Turns off the record cache: every update is forwarded downstream at
    /// once, whatever `cache.max.bytes.buffering` says.
    ///
    /// ```
    /// let m: kstreams_operators::Materialized<String, u64> =
    ///     kstreams_operators::Materialized::as_("c").with_caching_disabled();
    /// ```
    pub fn with_caching_disabled(mut self) -> Self {
        self.caching = false;
        self
    }
}

/// How [`KStream::repartition`](crate::KStream::repartition) writes its
/// internal topic: serdes, name (`<name>-repartition`) and partition count.
///
/// ```
/// use kstreams_operators::Repartitioned;
/// use kstreams_runtime::Serdes;
/// let r = Repartitioned::with(Serdes::string(), Serdes::string()).named("by-user").partitions(4);
/// ```
pub struct Repartitioned<K, V> {
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) name: Option<String>,
    pub(crate) partitions: Option<usize>,
}

impl<K, V> Default for Repartitioned<K, V> {
    fn default() -> Self {
        Repartitioned {
            key_serde: None,
            value_serde: None,
            name: None,
            partitions: None,
        }
    }
}

impl<K, V> Repartitioned<K, V> {
    /// Repartitions with these serdes.
    ///
    /// ```
    /// let r = kstreams_operators::Repartitioned::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// ```
    pub fn with(key_serde: SerdeRef<K>, value_serde: SerdeRef<V>) -> Self {
        Repartitioned {
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
            ..Self::default()
        }
    }
    /// Repartitions through `<name>-repartition`, with the stream's serdes.
    ///
    /// ```
    /// let r: kstreams_operators::Repartitioned<String, String> = kstreams_operators::Repartitioned::as_("by-user");
    /// ```
    pub fn as_(name: impl Into<String>) -> Self {
        Repartitioned {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// Names the topic `<name>-repartition` (default `KSTREAM-REPARTITION-<n>-repartition`).
    ///
    /// ```
    /// let r = kstreams_operators::Repartitioned::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string())
    ///     .named("by-user");
    /// ```
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Fixes the topic's partition count (default: as many as the writing
    /// sub-topology has tasks).
    ///
    /// ```
    /// let r = kstreams_operators::Repartitioned::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string())
    ///     .partitions(8);
    /// ```
    pub fn partitions(mut self, partitions: usize) -> Self {
        self.partitions = Some(partitions);
        self
    }
    /// Sets the key serde.
    ///
    /// ```
    /// let r: kstreams_operators::Repartitioned<String, u64> =
    ///     kstreams_operators::Repartitioned::default().with_key_serde(kstreams_runtime::Serdes::string());
    /// ```
    pub fn with_key_serde(mut self, serde: SerdeRef<K>) -> Self {
        self.key_serde = Some(serde);
        self
    }
    /// Sets the value serde.
    ///
    /// ```
    /// let r: kstreams_operators::Repartitioned<String, u64> =
    ///     kstreams_operators::Repartitioned::default().with_value_serde(kstreams_runtime::Serdes::u64_be());
    /// ```
    pub fn with_value_serde(mut self, serde: SerdeRef<V>) -> Self {
        self.value_serde = Some(serde);
        self
    }
}

/// How [`KStream::dedupe`](crate::KStream::dedupe) remembers ids: the store
/// name, the id serde and the time to live (in stream time).
///
/// ```
/// use std::time::Duration;
/// use kstreams_operators::Deduplicated;
/// use kstreams_runtime::Serdes;
/// let d = Deduplicated::with("seen-orders", Serdes::string(), Duration::from_secs(3600));
/// ```
pub struct Deduplicated<I> {
    pub(crate) store_name: String,
    pub(crate) id_serde: SerdeRef<I>,
    pub(crate) ttl: Duration,
    pub(crate) persistent: bool,
    pub(crate) name: Option<String>,
}

impl<I> Deduplicated<I> {
    /// Remembers ids in store `store_name` for `ttl` of stream time.
    ///
    /// ```
    /// let d = kstreams_operators::Deduplicated::with("seen", kstreams_runtime::Serdes::string(), std::time::Duration::from_secs(60));
    /// ```
    pub fn with(store_name: impl Into<String>, id_serde: SerdeRef<I>, ttl: Duration) -> Self {
        Deduplicated {
            store_name: store_name.into(),
            id_serde,
            ttl,
            persistent: true,
            name: None,
        }
    }
    /// Keeps the id store in memory (rebuilt from its changelog on start).
    ///
    /// ```
    /// let d = kstreams_operators::Deduplicated::with("seen", kstreams_runtime::Serdes::string(), std::time::Duration::from_secs(60))
    ///     .in_memory();
    /// ```
    pub fn in_memory(mut self) -> Self {
        self.persistent = false;
        self
    }
    /// Names the processor node (default `KSTREAM-DEDUPE-<n>`).
    ///
    /// ```
    /// let d = kstreams_operators::Deduplicated::with("seen", kstreams_runtime::Serdes::string(), std::time::Duration::from_secs(60))
    ///     .with_name("drop-resent");
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A name for the node an operator adds.
///
/// ```
/// let n = kstreams_operators::Named::as_("parse-orders");
/// assert_eq!(n.name(), "parse-orders");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named(pub(crate) String);

impl Named {
    /// A name.
    ///
    /// ```
    /// let n = kstreams_operators::Named::as_("split-");
    /// ```
    pub fn as_(name: impl Into<String>) -> Self {
        Named(name.into())
    }
    /// The name.
    ///
    /// ```
    /// assert_eq!(kstreams_operators::Named::as_("x").name(), "x");
    /// ```
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// The name of one branch of a [`split`](crate::KStream::split).
///
/// ```
/// let b = kstreams_operators::Branched::as_("large");
/// let unnamed = kstreams_operators::Branched::default(); // named by its position
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Branched {
    pub(crate) name: Option<String>,
}

impl Branched {
    /// A branch named `<split prefix><name>`.
    ///
    /// ```
    /// let b = kstreams_operators::Branched::as_("small");
    /// ```
    pub fn as_(name: impl Into<String>) -> Self {
        Branched {
            name: Some(name.into()),
        }
    }
}
