//! # kstreams-testkit
//!
//! Starts a **real Apache Kafka broker** (KRaft combined mode, single node, transactions
//! enabled) from Rust tests, examples and benchmarks, and offers blocking helpers to create
//! topics, produce records and read topics to the end. No mocks, no hand-started services:
//! the broker jars are fetched by `tools/kafka/fetch.sh` (Maven) on first use.
//!
//! Requirements: Java 17+ (`java` on `PATH` or `$JAVA_HOME`), and for the first run Maven
//! with access to Maven Central (or pre-fetched jars: `bash tools/kafka/fetch.sh`).
//! `KSTREAMS_KAFKA_HOME` overrides the directory holding `fetch.sh` and `lib/`.
//!
//! ```no_run
//! use kstreams_testkit::{
//!     create_topic, produce, read_to_end, shared_broker, unique_name, Isolation, TestRecord,
//! };
//!
//! let bootstrap = shared_broker().bootstrap_servers();
//! let topic = unique_name("words");
//! create_topic(&bootstrap, &topic, 3, false)?;
//! produce(&bootstrap, &topic, &[TestRecord::kv("a", "1"), TestRecord::kv("b", "2")])?;
//! let records = read_to_end(&bootstrap, &topic, Isolation::ReadCommitted)?;
//! assert_eq!(records.len(), 2);
//! # Ok::<(), kstreams_testkit::Error>(())
//! ```
//!
//! The broker JVM can never outlive the process that started it (see
//! [`KafkaBroker`]); the `kstreams-broker` binary runs one from the command line.

#![warn(missing_docs)]

mod broker;
mod client;
mod cluster;
mod error;
mod process;
mod secure;
mod segments;
mod transactions;

pub use broker::{BrokerOptions, KafkaBroker, shared_broker};
pub use client::{
    ConsumedRecord, Isolation, TestRecord, committed_offsets, create_topic, delete_topic,
    end_offsets, partition_count, produce, produce_with, read_to_end, stable_offsets, topic_config,
    topic_names, unique_name,
};
pub use cluster::{ClusterOptions, KafkaCluster, transaction_state_partition};
pub use error::{Error, Result};
pub use secure::{SCRAM_PASSWORD, SCRAM_USER, SecuredBroker, shared_secured_broker};
pub use segments::stored_batch_codecs;
pub use transactions::{TransactionListing, list_transactions};

/// A random u64 from std's randomly seeded hasher (no extra dependency needed).
pub(crate) fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SALT: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(SALT.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
