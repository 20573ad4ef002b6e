//! The error type of the testkit.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use rdkafka::error::KafkaError;

/// Result alias used by every fallible function of the testkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while starting a broker or talking to it.
///
/// Every message says what happened and, where possible, how to fix it.
///
/// ```no_run
/// use kstreams_testkit::{BrokerOptions, Error, KafkaBroker};
///
/// match KafkaBroker::start(BrokerOptions::default()) {
///     Ok(broker) => println!("{}", broker.bootstrap_servers()),
///     Err(Error::JavaNotFound) => eprintln!("install a JDK first"),
///     Err(e) => eprintln!("{e}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `java` executable was found (neither `$JAVA_HOME/bin/java` nor on `PATH`).
    #[error(
        "java not found on PATH (nor at $JAVA_HOME/bin/java): install OpenJDK 17 \
         (apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME"
    )]
    JavaNotFound,

    /// The Kafka jars were missing and `tools/kafka/fetch.sh` failed to download them.
    #[error(
        "Kafka jars missing and fetch failed (`bash {script}`): {output}\n\
         Fix: make sure Maven (mvn) is installed and Maven Central is reachable, then run \
         `bash tools/kafka/fetch.sh`, or point KSTREAMS_KAFKA_HOME at a directory whose lib/ \
         (or libs/) holds the Kafka jars"
    )]
    FetchFailed {
        /// The fetch script that was run.
        script: PathBuf,
        /// Its combined stdout and stderr (contains Maven's error).
        output: String,
    },

    /// The Kafka jars are not where they should be and there is no fetch script to get them.
    #[error(
        "Kafka jars not found in {dir} (no kafka_2.13-*.jar) and no fetch.sh next to it: \
         run `bash tools/kafka/fetch.sh` or set KSTREAMS_KAFKA_HOME to a Kafka installation"
    )]
    JarsMissing {
        /// The directory that was searched.
        dir: PathBuf,
    },

    /// An I/O operation failed (file, directory, process spawn, port probe).
    #[error("{context}: {source}")]
    Io {
        /// What the testkit was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// `kafka.tools.StorageTool format` failed.
    #[error("formatting the Kafka storage directory {dir} failed ({status}):\n{output}")]
    FormatFailed {
        /// The data directory being formatted.
        dir: PathBuf,
        /// The exit status of the storage tool.
        status: ExitStatus,
        /// Its output.
        output: String,
    },

    /// The broker process exited before it became ready (or while it was expected to run).
    #[error(
        "the Kafka broker exited unexpectedly ({status}); full log: {log_path}\n\
         --- last lines of the broker log ---\n{log_tail}"
    )]
    BrokerExited {
        /// The exit status of the JVM.
        status: ExitStatus,
        /// Path of `broker.log`.
        log_path: PathBuf,
        /// The last lines of `broker.log`.
        log_tail: String,
    },

    /// The broker did not answer a metadata request within the startup timeout.
    #[error(
        "the Kafka broker on {bootstrap} did not become ready within {timeout:?}; \
         full log: {log_path}\n--- last lines of the broker log ---\n{log_tail}"
    )]
    StartTimeout {
        /// The bootstrap address that was polled.
        bootstrap: String,
        /// How long the testkit waited.
        timeout: Duration,
        /// Path of `broker.log`.
        log_path: PathBuf,
        /// The last lines of `broker.log`.
        log_tail: String,
    },

    /// A Kafka client operation failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What the testkit was doing.
        context: String,
        /// The client error.
        #[source]
        source: KafkaError,
    },

    /// A helper gave up waiting for a condition (topic creation, reading to the end, ...).
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the helper waited.
        timeout: Duration,
    },

    /// A [`KafkaCluster`](crate::KafkaCluster) method was given a node id it does not have.
    #[error("no node {id} in this Kafka cluster (its nodes: {nodes:?})")]
    UnknownNode {
        /// The id asked for.
        id: i32,
        /// The cluster's node ids.
        nodes: Vec<i32>,
    },

    /// A broker's answer to a request the testkit speaks itself (see
    /// [`list_transactions`](crate::list_transactions)) could not be read, or
    /// carried an error code.
    #[error("{context}: {detail}")]
    Protocol {
        /// The request and the broker.
        context: String,
        /// What was wrong.
        detail: String,
    },

    /// Some produced records were not acknowledged by the broker.
    #[error("{failed} of {total} records to topic {topic:?} were not delivered: {first_error}")]
    Delivery {
        /// The topic produced to.
        topic: String,
        /// How many records failed.
        failed: usize,
        /// How many records were sent.
        total: usize,
        /// The first delivery error reported.
        first_error: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }
}
