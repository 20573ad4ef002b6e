//! Typed errors for everything a topology, a store or the runtime can report.
//!
//! Every message says what happened and, where there is one, what to do about
//! it. Errors raised while processing carry enough context (topic, partition,
//! offset, node) to find the offending record.

use thiserror::Error;

/// The error type of kstreams.
///
/// ```
/// use kstreams_runtime::StreamsError;
/// let e = StreamsError::Config("commit.interval.ms must be a number".into());
/// assert!(e.to_string().contains("commit.interval.ms"));
/// ```
#[derive(Debug, Error)]
pub enum StreamsError {
    /// A record could not be serialized or deserialized.
    #[error("serde error: {0}")]
    Serde(#[from] SerdeError),
    /// The topology is not valid (unknown parent, duplicate name, type mismatch, ...).
    #[error("invalid topology: {0}")]
    Topology(String),
    /// A configuration value is missing or invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A state store failed.
    #[error("state store '{store}': {message}")]
    Store {
        /// The store's name.
        store: String,
        /// What went wrong.
        message: String,
    },
    /// A store was requested that is not attached to the processor.
    #[error(
        "state store '{0}' is not connected to this processor: attach it with Topology::add_state_store(.., &[\"<processor>\"])"
    )]
    UnknownStore(String),
    /// A store was requested with other key/value types than it was built with.
    #[error(
        "state store '{0}' was requested with different key/value types than it was declared with"
    )]
    StoreType(String),
    /// A user processor failed.
    #[error("processing failed in node '{node}': {message}")]
    Processing {
        /// The node that failed.
        node: String,
        /// What went wrong.
        message: String,
    },
    /// An input record's key or value could not be deserialized.
    #[error("cannot deserialize the record at {topic}-{partition} offset {offset}: {source}")]
    Deserialization {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// The serde failure.
        source: SerdeError,
    },
    /// Processing a record failed (an operator error or a panic).
    #[error("processing the record at {topic}-{partition} offset {offset} failed: {source}")]
    AtRecord {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// What went wrong.
        source: Box<StreamsError>,
    },
    /// Kafka reported an error.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The cluster refused this client, or sent what it cannot read, and no
    /// retry can change that: failed SASL authentication, a TLS handshake
    /// that failed, a missing ACL, a compression codec the build lacks. The
    /// message names the setting to fix.
    ///
    /// ```
    /// let e = kstreams_runtime::StreamsError::ClusterAccess("consumer: ... Fix: set ssl.ca.location".into());
    /// assert!(e.to_string().starts_with("cannot work with the Kafka cluster"));
    /// ```
    #[error("cannot work with the Kafka cluster: {0}")]
    ClusterAccess(String),
    /// An output record could not be handed to the producer, e.g. it is
    /// larger than the producer's `message.max.bytes`. Goes through the
    /// `production.exception.handler`.
    #[error("cannot produce a record to '{topic}': {message}")]
    Production {
        /// The topic the record was for.
        topic: String,
        /// What went wrong, with the fix where there is one.
        message: String,
    },
    /// The task's transaction takes no more records: its producer left the
    /// transaction (a delivery failed, e.g. while a partition leader
    /// moved, or the producer was fenced), so librdkafka refuses every
    /// record until the transaction is aborted. Under exactly-once the
    /// runtime aborts the transaction and reprocesses from the last
    /// commit; the error never reaches an exception handler, since no
    /// single record is at fault.
    ///
    /// ```
    /// let e = kstreams_runtime::StreamsError::TransactionAborted("Local: Erroneous state".into());
    /// assert!(e.is_transaction_aborted());
    /// ```
    #[error("the task's transaction must be aborted: {0}")]
    TransactionAborted(String),
    /// The task's producer was fenced by a newer instance holding the same
    /// `transactional.id`; the task has moved.
    #[error("task {0} was fenced: another instance now owns it")]
    Fenced(String),
    /// An I/O error, e.g. on the state directory.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The application is in a state where the call is not allowed.
    #[error("illegal state: {0}")]
    IllegalState(String),
}

impl StreamsError {
    /// Whether this is (or wraps, for a record) a
    /// [`TransactionAborted`](StreamsError::TransactionAborted).
    pub fn is_transaction_aborted(&self) -> bool {
        match self {
            StreamsError::TransactionAborted(_) => true,
            StreamsError::AtRecord { source, .. } => source.is_transaction_aborted(),
            _ => false,
        }
    }

    /// Convenience constructor for [`StreamsError::Processing`].
    ///
    /// ```
    /// let e = kstreams_runtime::StreamsError::processing("split", "bad line");
    /// assert_eq!(e.to_string(), "processing failed in node 'split': bad line");
    /// ```
    pub fn processing(node: impl Into<String>, message: impl Into<String>) -> Self {
        StreamsError::Processing {
            node: node.into(),
            message: message.into(),
        }
    }

    /// Convenience constructor for [`StreamsError::Store`].
    ///
    /// ```
    /// let e = kstreams_runtime::StreamsError::store("counts", "disk full");
    /// assert!(e.to_string().contains("counts"));
    /// ```
    pub fn store(store: impl Into<String>, message: impl Into<String>) -> Self {
        StreamsError::Store {
            store: store.into(),
            message: message.into(),
        }
    }
}

/// A serialization or deserialization failure.
///
/// ```
/// use kstreams_runtime::SerdeError;
/// let e = SerdeError::new("string", "invalid UTF-8 at byte 3");
/// assert_eq!(e.to_string(), "string: invalid UTF-8 at byte 3");
/// ```
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{format}: {message}")]
pub struct SerdeError {
    /// The serde that failed (e.g. `string`, `json`).
    pub format: &'static str,
    /// What went wrong.
    pub message: String,
}

impl SerdeError {
    /// Creates a serde error.
    ///
    /// ```
    /// let e = kstreams_runtime::SerdeError::new("json", "expected value");
    /// assert_eq!(e.format, "json");
    /// ```
    pub fn new(format: &'static str, message: impl Into<String>) -> Self {
        SerdeError {
            format,
            message: message.into(),
        }
    }
}

/// Result alias used throughout kstreams.
pub type Result<T, E = StreamsError> = std::result::Result<T, E>;
