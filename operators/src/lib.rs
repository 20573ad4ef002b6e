//! # kstreams-operators
//!
//! The kstreams DSL, in the style of Kafka Streams: [`StreamsBuilder`],
//! [`KStream`], [`KGroupedStream`], [`KTable`], aggregations with a record
//! cache, repartitioning, branching, and [`KStream::dedupe`].
//!
//! The DSL is built only on the runtime's public Processor API
//! (`Topology::add_source` / `add_processor` / `add_sink` /
//! `add_state_store`, the `Processor` trait and its `ProcessorContext`):
//! each operator is an ordinary processor, one per file, so anything the DSL
//! does a user could do by hand.
//!
//! ## Word count
//!
//! ```
//! use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
//! use kstreams_runtime::{Serdes, TopologyTestDriver};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("lines", Consumed::with(Serdes::unit(), Serdes::string()))
//!     .flat_map_values(|line: String| {
//!         line.to_lowercase()
//!             .split(|c: char| !c.is_alphanumeric())
//!             .filter(|w| !w.is_empty())
//!             .map(String::from)
//!             .collect::<Vec<_>>()
//!     })
//!     .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
//!     .count(Materialized::as_("counts"))
//!     .to_stream()
//!     .to("word-counts", Produced::with(Serdes::string(), Serdes::u64_text()));
//! let topology = builder.build().unwrap();
//!
//! let mut driver = TopologyTestDriver::new(topology).unwrap();
//! driver.pipe_str("lines", None, "To be, or not to be", 0).unwrap();
//! let counts = driver.read_output_as("word-counts", &Serdes::string(), &Serdes::u64_text()).unwrap();
//! // The commit after the line forwards each word's latest count once
//! // (the record cache), in the order the words first appeared.
//! let expected = [("to", 2), ("be", 2), ("or", 1), ("not", 1)].map(|(w, n)| (w.to_string(), n));
//! assert_eq!(counts, expected);
//! assert_eq!(driver.key_value_store_get::<String, u64>("counts", &"to".into()).unwrap(), Some(2));
//! ```
//!
//! ## Where things are
//! - `builder.rs`: [`StreamsBuilder`], node naming, error recording.
//! - `kstream.rs`, `ktable.rs`, `group_by.rs`: the handles.
//! - `config.rs`: [`Consumed`], [`Produced`], [`Grouped`], [`Materialized`],
//!   [`Repartitioned`], [`Deduplicated`], [`Named`], [`Branched`].
//! - one file per operator: `filter.rs`, `map.rs`, `map_values.rs`,
//!   `flat_map.rs`, `flat_map_values.rs`, `select_key.rs`, `peek.rs`,
//!   `split.rs`, `merge.rs`, `sink.rs`, `repartition.rs`, `process.rs`,
//!   `aggregate.rs`, `count.rs`, `combine.rs` (pre-aggregation of `count`
//!   before its repartition topic), `reduce.rs`, `dedupe.rs`, `to_stream.rs`,
//!   `table_filter.rs`, `table_map_values.rs`.
//! - windows and joins: `windows.rs` ([`TimeWindows`], [`SessionWindows`],
//!   [`SlidingWindows`], [`JoinWindows`]), `windowed_by.rs`,
//!   `time_window_aggregate.rs`, `suppress.rs`, `table_source.rs`
//!   ([`StreamsBuilder::table`]), `stream_table_join.rs`,
//!   `session_window_aggregate.rs`, `table_table_join.rs`,
//!   `stream_stream_join.rs` ([`StreamJoined`]), `sliding_window_aggregate.rs`.
//! - `record_cache.rs`: the write-coalescing cache of aggregations.
//!
//! ## Errors
//! DSL calls do not return `Result`; the first error (a missing serde, a
//! duplicate store or repartition name, an unknown store) is recorded and
//! returned by [`StreamsBuilder::build`], with a message saying what to add.

#![warn(missing_docs)]

mod aggregate;
mod builder;
mod combine;
mod config;
mod count;
mod dedupe;
mod filter;
mod flat_map;
mod flat_map_values;
mod group_by;
mod kstream;
mod ktable;
mod map;
mod map_values;
mod merge;
mod peek;
mod process;
mod record_cache;
mod reduce;
mod repartition;
mod select_key;
mod session_window_aggregate;
mod sink;
mod sliding_window_aggregate;
mod source;
mod split;
mod stream_stream_join;
mod stream_table_join;
mod suppress;
mod table_filter;
mod table_map_values;
mod table_source;
mod table_table_join;
mod time_window_aggregate;
mod to_stream;
mod windowed_by;
mod windows;

pub use builder::StreamsBuilder;
pub use config::{
    Branched, Consumed, Deduplicated, Grouped, Materialized, Named, Produced, Repartitioned,
};
pub use group_by::KGroupedStream;
pub use kstream::KStream;
pub use ktable::KTable;
pub use split::BranchedKStream;
pub use stream_stream_join::StreamJoined;
pub use stream_table_join::Joined;
pub use suppress::Suppressed;
pub use windowed_by::{
    SessionWindowedKStream, SlidingWindowedKStream, TimeWindowedKStream, WindowedBy,
};
pub use windows::{JoinWindows, SessionWindows, SlidingWindows, TimeWindows, Windowed};
