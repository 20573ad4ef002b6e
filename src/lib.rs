//! # kstreams
//!
//! Stream processing in the style of Kafka Streams, for Rust: a DSL and a
//! Processor API, RocksDB state with changelogs, exactly-once processing
//! with Kafka transactions, and an in-memory test driver.
//!
//! This crate gathers the two layers:
//! - [`runtime`] (`kstreams-runtime`): the Processor API, topology, stores,
//!   serdes, the Kafka runtime ([`KafkaStreams`]) and [`TopologyTestDriver`];
//! - [`operators`] (`kstreams-operators`): the DSL ([`StreamsBuilder`],
//!   [`KStream`], [`KTable`], aggregations, `dedupe`);
//!
//! plus the example topologies in [`apps`] and a [`prelude`].
//!
//! ```
//! use kstreams::prelude::*;
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
//!     .map_values(|v: String| v.to_uppercase())
//!     .to("out", Produced::with(Serdes::string(), Serdes::string()));
//! let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
//! driver.pipe_str("in", Some("k"), "hi", 0).unwrap();
//! assert_eq!(driver.read_output("out")[0].value_str(), Some("HI"));
//! ```

#![warn(missing_docs)]

pub mod apps;

pub use kstreams_operators as operators;
pub use kstreams_runtime as runtime;

pub use kstreams_operators::{
    Branched, BranchedKStream, Consumed, Deduplicated, Grouped, JoinWindows, Joined,
    KGroupedStream, KStream, KTable, Materialized, Named, Produced, Repartitioned, SessionWindows,
    SlidingWindows, StreamJoined, StreamsBuilder, Suppressed, TimeWindows, Windowed,
};
pub use kstreams_runtime::{
    DeserializationErrorPolicy, ErrorPolicy, Headers, KafkaStreams, KeyValueStore, Processor,
    ProcessorContext, PunctuationType, PunctuatorId, RawRecord, Record, RecordMetadata, Result,
    Serde, SerdeError, SerdeRef, Serdes, StoreBuilder, StreamsConfig, StreamsError, StreamsState,
    TaskId, TestRecord, Topology, TopologyDescription, TopologyTestDriver, TtlStore,
};

/// The names most programs need, in one import: `use kstreams::prelude::*;`.
///
/// ```
/// use kstreams::prelude::*;
/// let t: Result<Topology> = StreamsBuilder::new().build();
/// assert!(t.is_err());
/// ```
pub mod prelude {
    pub use kstreams_operators::{
        Branched, Consumed, Deduplicated, Grouped, JoinWindows, Joined, KGroupedStream, KStream,
        KTable, Materialized, Named, Produced, Repartitioned, SessionWindows, SlidingWindows,
        StreamJoined, StreamsBuilder, Suppressed, TimeWindows, Windowed,
    };
    pub use kstreams_runtime::{
        KafkaStreams, KeyValueStore, Processor, ProcessorContext, PunctuationType, Record, Result,
        Serde, SerdeRef, Serdes, StoreBuilder, StreamsConfig, StreamsError, Topology,
        TopologyTestDriver,
    };
}

/// The README's Rust code blocks, compiled (and run, unless `no_run`) as
/// doctests so that the README cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
