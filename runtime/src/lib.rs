//! # kstreams-runtime
//!
//! The engine under kstreams: the Processor API, the topology graph, state
//! stores, serdes, the Kafka runtime and the in-memory test driver.
//!
//! ## Where a record goes next
//! - [`topology`]: the graph a program declares; split into sub-topologies.
//! - `task.rs`: a sub-topology instantiated for one partition (a task).
//! - [`processor`]: the trait each node implements and its context.
//! - [`state`]: stores, their write sets and changelogs.
//! - `kafka/`: threads, the task manager, the record collector, restore.
//! - [`test_driver`]: the same tasks, fed from memory.
//!
//! ```
//! use kstreams_runtime::{Topology, Serdes, TopologyTestDriver};
//! let mut t = Topology::new();
//! t.add_source("src", &["in"], Serdes::string(), Serdes::string()).unwrap();
//! t.add_sink("out", "out", Serdes::string(), Serdes::string(), &["src"]).unwrap();
//! let mut driver = TopologyTestDriver::new(t).unwrap();
//! driver.pipe_input("in", Some(b"k"), Some(b"v"), 0).unwrap();
//! assert_eq!(driver.read_output("out").len(), 1);
//! ```

#![warn(missing_docs)]

pub mod error;
mod hash;
pub mod kafka;
pub mod partitioner;
pub mod processor;
pub mod record;
pub mod serde;
pub mod state;
mod task;
mod task_context;
pub mod test_driver;
pub mod topology;

use std::fmt;
use std::str::FromStr;

pub use error::{Result, SerdeError, StreamsError};
pub use hash::{FastHash, FastHashMap};
pub use kafka::{GroupProtocol, KafkaStreams, StreamsConfig, StreamsState};
pub use processor::{Processor, ProcessorContext, PunctuationType, PunctuatorId};
pub use record::{Headers, RawRecord, Record, RecordMetadata};
pub use serde::{Serde, SerdeRef, Serdes};
pub use state::{KeyValueStore, StoreBuilder, StoreKind, Sweep, TtlStore, WindowStore, Windowed};
pub use test_driver::{TestRecord, TopologyTestDriver};
pub use topology::{Subtopology, TopicRef, Topology, TopologyDescription};

/// A task: sub-topology `subtopology` for partition `partition`, shown as `0_3`.
///
/// ```
/// use kstreams_runtime::TaskId;
/// let t: TaskId = "1_4".parse().unwrap();
/// assert_eq!(t, TaskId { subtopology: 1, partition: 4 });
/// assert_eq!(t.to_string(), "1_4");
/// assert!("x".parse::<TaskId>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology.
    pub subtopology: u32,
    /// The partition number.
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

impl FromStr for TaskId {
    type Err = StreamsError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            StreamsError::Config(format!(
                "'{s}' is not a task id (expected <subtopology>_<partition>, e.g. 0_3)"
            ))
        };
        let (a, b) = s.split_once('_').ok_or_else(bad)?;
        Ok(TaskId {
            subtopology: a.parse().map_err(|_| bad())?,
            partition: b.parse().map_err(|_| bad())?,
        })
    }
}

/// What to do with a record that fails: it cannot be deserialized
/// (`default.deserialization.exception.handler`, default `log_and_continue`)
/// or a processor returned an error or panicked on it
/// (`processing.exception.handler`, default `log_and_fail`).
///
/// ```
/// use kstreams_runtime::ErrorPolicy;
/// assert_eq!("log_and_fail".parse::<ErrorPolicy>().unwrap(), ErrorPolicy::LogAndFail);
/// assert_eq!("dead_letter:orders-dlq".parse::<ErrorPolicy>().unwrap(), ErrorPolicy::DeadLetter("orders-dlq".into()));
/// assert!("ignore".parse::<ErrorPolicy>().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Log it, count it, skip it.
    #[default]
    LogAndContinue,
    /// Stop the application with an error naming the topic, partition and offset.
    LogAndFail,
    /// Write the original key and value bytes to this topic, with headers
    /// saying where the record came from and what went wrong (under
    /// exactly-once, inside the task's transaction), then continue.
    DeadLetter(String),
}

/// The policy type used for deserialization errors (an [`ErrorPolicy`]).
pub type DeserializationErrorPolicy = ErrorPolicy;

impl FromStr for ErrorPolicy {
    type Err = StreamsError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "log_and_continue" => Ok(Self::LogAndContinue),
            "log_and_fail" => Ok(Self::LogAndFail),
            other => match other.strip_prefix("dead_letter:") {
                Some(topic) if !topic.is_empty() => Ok(Self::DeadLetter(topic.to_string())),
                _ => Err(StreamsError::Config(format!(
                    "error handler '{other}' is not valid; use log_and_continue, log_and_fail or dead_letter:<topic>"
                ))),
            },
        }
    }
}

/// Header names of a dead-letter record.
pub mod dlq_headers {
    /// The source topic.
    pub const TOPIC: &str = "__streams.errors.topic";
    /// The source partition (decimal text).
    pub const PARTITION: &str = "__streams.errors.partition";
    /// The source offset (decimal text).
    pub const OFFSET: &str = "__streams.errors.offset";
    /// The error message.
    pub const EXCEPTION: &str = "__streams.errors.exception";
    /// The application id.
    pub const APPLICATION_ID: &str = "__streams.errors.application.id";
}
