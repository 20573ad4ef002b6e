//! `StreamsConfig`: the settings of a kstreams application.
//!
//! The names follow Kafka Streams, so a `streams.properties` file carries
//! over. Keys kstreams does not know are passed to librdkafka unchanged
//! (consumer and producer), so any client setting can be tuned.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use crate::ErrorPolicy;
use crate::error::{Result, StreamsError};

/// `processing.guarantee`.
///
/// ```
/// use kstreams_runtime::kafka::ProcessingGuarantee;
/// assert_eq!("exactly_once".parse::<ProcessingGuarantee>().unwrap(), ProcessingGuarantee::ExactlyOnce);
/// let err = "exactly-once".parse::<ProcessingGuarantee>().unwrap_err();
/// assert!(err.to_string().contains("at_least_once"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    /// Offsets, changelogs and outputs commit in one transaction per task.
    ExactlyOnce,
    /// No loss; duplicates possible after a failure.
    AtLeastOnce,
}

impl FromStr for ProcessingGuarantee {
    type Err = StreamsError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "exactly_once" | "exactly_once_v2" => Ok(Self::ExactlyOnce),
            "at_least_once" => Ok(Self::AtLeastOnce),
            other => Err(StreamsError::Config(format!(
                "processing.guarantee: '{other}' is not valid; use exactly_once or at_least_once"
            ))),
        }
    }
}

/// How the instances share the tasks (`group.protocol`).
///
/// ```
/// use kstreams_runtime::GroupProtocol;
/// assert_eq!("streams".parse::<GroupProtocol>().unwrap(), GroupProtocol::Streams);
/// assert!("consumer".parse::<GroupProtocol>().unwrap_err().to_string().contains("classic"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupProtocol {
    /// The consumer group protocol with librdkafka's eager `range`
    /// assignor: every rebalance revokes every task.
    Classic,
    /// The Streams rebalance protocol (KIP-1071, Apache Kafka 4.2+): the
    /// broker assigns tasks and moves only those that must move.
    Streams,
}

impl FromStr for GroupProtocol {
    type Err = StreamsError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "classic" => Ok(Self::Classic),
            "streams" => Ok(Self::Streams),
            other => Err(StreamsError::Config(format!(
                "group.protocol: '{other}' is not valid; use classic or streams"
            ))),
        }
    }
}

/// The configuration of a [`crate::KafkaStreams`] application.
///
/// ```
/// use kstreams_runtime::StreamsConfig;
/// let cfg = StreamsConfig::builder("word-count", "127.0.0.1:9092")
///     .set("processing.guarantee", "exactly_once")
///     .set("commit.interval.ms", "100")
///     .set("state.dir", "/tmp/kstreams")
///     .set("fetch.min.bytes", "1") // passed through to librdkafka
///     .build()
///     .unwrap();
/// assert_eq!(cfg.commit_interval().as_millis(), 100);
/// assert!(StreamsConfig::builder("x", "h:1").set("num.stream.threads", "zero").build().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct StreamsConfig {
    pub(crate) application_id: String,
    pub(crate) bootstrap_servers: String,
    pub(crate) guarantee: ProcessingGuarantee,
    pub(crate) group_protocol: GroupProtocol,
    /// `num.standby.replicas` (set on the group under the Streams protocol).
    pub(crate) num_standby_replicas: Option<u32>,
    pub(crate) commit_interval: Duration,
    pub(crate) num_threads: usize,
    pub(crate) state_dir: PathBuf,
    pub(crate) cache_max_bytes: usize,
    /// `rocksdb.memtables.max.bytes`: all memtables of the process.
    pub(crate) rocksdb_memtables_bytes: usize,
    /// `rocksdb.block.cache.bytes`: the process's shared block cache.
    pub(crate) rocksdb_block_cache_bytes: usize,
    pub(crate) deserialization_policy: ErrorPolicy,
    pub(crate) processing_policy: ErrorPolicy,
    pub(crate) production_policy: ErrorPolicy,
    pub(crate) startup_timeout: Duration,
    pub(crate) task_timeout: Duration,
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    pub(crate) application_server: Option<String>,
    pub(crate) replication_factor: Option<i32>,
    /// `topic.*` settings: configs of the internal topics kstreams creates.
    pub(crate) internal_topic_overrides: BTreeMap<String, String>,
    pub(crate) repartition_purge_interval: Duration,
    /// `background.threads.nice`: see `priority.rs`.
    pub(crate) background_nice: i32,
    pub(crate) passthrough: BTreeMap<String, String>,
}

/// Builds a [`StreamsConfig`] from key/value settings.
///
/// ```
/// let b = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9092");
/// let cfg = b.build().unwrap();
/// assert_eq!(cfg.application_id(), "app");
/// ```
#[derive(Clone, Debug)]
pub struct StreamsConfigBuilder {
    settings: BTreeMap<String, String>,
}

impl StreamsConfig {
    /// Starts a configuration with the two required settings.
    ///
    /// ```
    /// let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9092").build().unwrap();
    /// assert_eq!(cfg.bootstrap_servers(), "127.0.0.1:9092");
    /// ```
    pub fn builder(application_id: &str, bootstrap_servers: &str) -> StreamsConfigBuilder {
        let mut settings = BTreeMap::new();
        settings.insert("application.id".into(), application_id.into());
        settings.insert("bootstrap.servers".into(), bootstrap_servers.into());
        StreamsConfigBuilder { settings }
    }

    /// `application.id`: the consumer group, the prefix of internal topics
    /// and transactional ids.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").build().unwrap();
    /// assert_eq!(cfg.application_id(), "app");
    /// ```
    pub fn application_id(&self) -> &str {
        &self.application_id
    }
    /// `bootstrap.servers`.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").build().unwrap();
    /// assert_eq!(cfg.bootstrap_servers(), "h:1");
    /// ```
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }
    /// `processing.guarantee` (default `exactly_once`).
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").build().unwrap();
    /// assert_eq!(cfg.processing_guarantee(), kstreams_runtime::kafka::ProcessingGuarantee::ExactlyOnce);
    /// ```
    pub fn processing_guarantee(&self) -> ProcessingGuarantee {
        self.guarantee
    }
    /// `commit.interval.ms` (default 100 under exactly-once, 30000 otherwise).
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").set("processing.guarantee", "at_least_once").build().unwrap();
    /// assert_eq!(cfg.commit_interval().as_millis(), 30_000);
    /// ```
    pub fn commit_interval(&self) -> Duration {
        self.commit_interval
    }
    /// `task.timeout.ms` (default 300000): how long a task keeps retrying a
    /// broker call that fails with a retriable error (the broker is down or
    /// moving) before the stream thread gives up: `init_transactions`,
    /// committing, restoring. A broker outage shorter than this is ridden out.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").set("task.timeout.ms", "60000").build().unwrap();
    /// assert_eq!(cfg.task_timeout().as_secs(), 60);
    /// ```
    pub fn task_timeout(&self) -> Duration {
        self.task_timeout
    }
    /// `num.stream.threads` (default 1).
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").build().unwrap();
    /// assert_eq!(cfg.num_stream_threads(), 1);
    /// ```
    pub fn num_stream_threads(&self) -> usize {
        self.num_threads
    }
    /// `background.threads.nice` (default 10): the nice value of the
    /// threads around the stream threads (librdkafka's, RocksDB's, the
    /// commit threads), so that on a busy machine the stream threads get the
    /// CPU first. 0 turns this off. Linux only. Only the runtime's own
    /// threads are lowered: its clients and stores are created on a thread
    /// at this nice value, whose value their threads inherit; the
    /// application's own clients keep theirs.
    ///
    /// ```
    /// # use kstreams_runtime::StreamsConfig;
    /// let cfg = StreamsConfig::builder("app", "h:1").build().unwrap();
    /// assert_eq!(cfg.background_threads_nice(), 10);
    /// let off = StreamsConfig::builder("app", "h:1").set("background.threads.nice", "0").build().unwrap();
    /// assert_eq!(off.background_threads_nice(), 0);
    /// let err = StreamsConfig::builder("app", "h:1").set("background.threads.nice", "-5").build().unwrap_err();
    /// assert!(err.to_string().contains("out of range"), "{err}");
    /// ```
    pub fn background_threads_nice(&self) -> i32 {
        self.background_nice
    }
    /// `state.dir` (default `<tmp>/kstreams`).
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").set("state.dir", "/data").build().unwrap();
    /// assert_eq!(cfg.state_dir(), std::path::Path::new("/data"));
    /// ```
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }
    /// Dead-letter topics named by the error policies; they must exist.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1")
    /// #     .set("default.deserialization.exception.handler", "dead_letter:bad").build().unwrap();
    /// assert_eq!(cfg.dead_letter_topics(), vec!["bad".to_string()]);
    /// ```
    pub fn dead_letter_topics(&self) -> Vec<String> {
        let mut v = Vec::new();
        for p in [
            &self.deserialization_policy,
            &self.processing_policy,
            &self.production_policy,
        ] {
            if let ErrorPolicy::DeadLetter(t) = p
                && !v.contains(t)
            {
                v.push(t.clone());
            }
        }
        v
    }

    /// Settings passed to librdkafka as they are.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").set("session.timeout.ms", "6000").build().unwrap();
    /// assert_eq!(cfg.passthrough().get("session.timeout.ms").map(String::as_str), Some("6000"));
    /// ```
    pub fn passthrough(&self) -> &BTreeMap<String, String> {
        &self.passthrough
    }

    /// `metrics.listen` (off by default): the `host:port` of the HTTP
    /// listener serving Prometheus metrics (`/metrics`) and interactive
    /// queries (`/stores/...`).
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").set("metrics.listen", "127.0.0.1:9464").build().unwrap();
    /// assert_eq!(cfg.metrics_listen().unwrap().port(), 9464);
    /// let err = kstreams_runtime::StreamsConfig::builder("app", "h:1").set("metrics.listen", "9464").build().unwrap_err();
    /// assert!(err.to_string().contains("metrics.listen"));
    /// ```
    pub fn metrics_listen(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listen
    }

    /// `application.server`: the `host:port` other instances use to reach
    /// this instance's HTTP listener, shared through the consumer group so
    /// a query for a key held elsewhere is pointed there. Defaults to
    /// `metrics.listen` when that names a specific address.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "h:1").set("metrics.listen", "0.0.0.0:8080")
    /// #     .set("application.server", "node-1.example:8080").build().unwrap();
    /// assert_eq!(cfg.application_server(), Some("node-1.example:8080"));
    /// ```
    pub fn application_server(&self) -> Option<&str> {
        self.application_server.as_deref()
    }
}

fn parse_num<T: FromStr>(key: &str, v: &str, what: &str) -> Result<T> {
    v.trim()
        .parse::<T>()
        .map_err(|_| StreamsError::Config(format!("{key}: '{v}' is not {what}")))
}

impl StreamsConfigBuilder {
    /// Sets a key. Known kstreams keys are validated by [`Self::build`];
    /// all others go to librdkafka.
    ///
    /// ```
    /// let b = kstreams_runtime::StreamsConfig::builder("app", "h:1").set("cache.max.bytes.buffering", "0");
    /// assert!(b.build().is_ok());
    /// ```
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings
            .insert(key.trim().to_string(), value.trim().to_string());
        self
    }

    /// Validates the settings.
    ///
    /// ```
    /// let err = kstreams_runtime::StreamsConfig::builder("", "h:1").build().unwrap_err();
    /// assert!(err.to_string().contains("application.id"));
    /// ```
    pub fn build(self) -> Result<StreamsConfig> {
        let mut s = self.settings;
        let application_id = s.remove("application.id").unwrap_or_default();
        if application_id.is_empty()
            || !application_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(StreamsError::Config(format!(
                "application.id '{application_id}' is not valid: it must be non-empty and use only ASCII letters, digits, '.', '_' and '-'"
            )));
        }
        let bootstrap_servers = s.remove("bootstrap.servers").unwrap_or_default();
        if bootstrap_servers.is_empty() {
            return Err(StreamsError::Config(
                "bootstrap.servers is required, e.g. 127.0.0.1:9092".into(),
            ));
        }
        let guarantee = match s.remove("processing.guarantee") {
            Some(v) => v.parse()?,
            None => ProcessingGuarantee::ExactlyOnce,
        };
        // Exactly-once applications default to the Streams rebalance
        // protocol; at-least-once commits offsets outside a transaction,
        // which a streams group refuses from a client that is not its
        // member, so it stays on the classic protocol.
        let group_protocol = match s.remove("group.protocol") {
            Some(v) => v.parse()?,
            None if guarantee == ProcessingGuarantee::ExactlyOnce => GroupProtocol::Streams,
            None => GroupProtocol::Classic,
        };
        if group_protocol == GroupProtocol::Streams && guarantee != ProcessingGuarantee::ExactlyOnce
        {
            return Err(StreamsError::Config(
                "group.protocol=streams supports processing.guarantee=exactly_once only (its \
                 offsets commit inside each task's transaction); at_least_once needs \
                 group.protocol=classic"
                    .into(),
            ));
        }
        let num_standby_replicas = match s.remove("num.standby.replicas") {
            Some(v) => Some(parse_num::<u32>(
                "num.standby.replicas",
                &v,
                "a number of replicas (0 or more)",
            )?),
            None => None,
        };
        if num_standby_replicas.is_some_and(|n| n > 0) && group_protocol != GroupProtocol::Streams {
            return Err(StreamsError::Config(
                "num.standby.replicas needs group.protocol=streams: the broker assigns the \
                 standby tasks (KIP-1071); the classic protocol has none"
                    .into(),
            ));
        }
        let commit_ms: u64 = match s.remove("commit.interval.ms") {
            Some(v) => parse_num("commit.interval.ms", &v, "a number of milliseconds")?,
            None if guarantee == ProcessingGuarantee::ExactlyOnce => 100,
            None => 30_000,
        };
        let num_threads: usize = match s.remove("num.stream.threads") {
            Some(v) => parse_num("num.stream.threads", &v, "a positive number")?,
            None => 1,
        };
        if num_threads == 0 {
            return Err(StreamsError::Config(
                "num.stream.threads must be at least 1".into(),
            ));
        }
        let state_dir = s
            .remove("state.dir")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("kstreams"));
        let cache_max_bytes = match s.remove("cache.max.bytes.buffering") {
            Some(v) => parse_num("cache.max.bytes.buffering", &v, "a number of bytes")?,
            None => 10 << 20,
        };
        let rocksdb_memtables_bytes = match s.remove("rocksdb.memtables.max.bytes") {
            Some(v) => parse_num("rocksdb.memtables.max.bytes", &v, "a number of bytes")?,
            None => crate::state::DEFAULT_ALL_MEMTABLES_BYTES,
        };
        let rocksdb_block_cache_bytes = match s.remove("rocksdb.block.cache.bytes") {
            Some(v) => parse_num("rocksdb.block.cache.bytes", &v, "a number of bytes")?,
            None => crate::state::DEFAULT_BLOCK_CACHE_BYTES,
        };
        if rocksdb_memtables_bytes < 1 << 20 {
            return Err(StreamsError::Config(format!(
                "rocksdb.memtables.max.bytes ({rocksdb_memtables_bytes}) must be at least 1048576 \
                 (1 MiB): every store needs room for a memtable"
            )));
        }
        let deserialization_policy = match s.remove("default.deserialization.exception.handler") {
            Some(v) => v.parse()?,
            None => ErrorPolicy::LogAndContinue,
        };
        let processing_policy = match s.remove("processing.exception.handler") {
            Some(v) => v.parse()?,
            None => ErrorPolicy::LogAndFail,
        };
        let production_policy = match s.remove("production.exception.handler") {
            Some(v) => v.parse()?,
            None => ErrorPolicy::LogAndFail,
        };
        let startup_timeout = match s.remove("startup.timeout.ms") {
            Some(v) => Duration::from_millis(parse_num(
                "startup.timeout.ms",
                &v,
                "a number of milliseconds",
            )?),
            None => Duration::from_secs(60),
        };
        let task_timeout = match s.remove("task.timeout.ms") {
            Some(v) => Duration::from_millis(parse_num(
                "task.timeout.ms",
                &v,
                "a number of milliseconds",
            )?),
            None => Duration::from_secs(300),
        };
        let metrics_listen = match s.remove("metrics.listen") {
            Some(v) => Some(v.parse::<std::net::SocketAddr>().map_err(|_| {
                StreamsError::Config(format!(
                    "metrics.listen: '{v}' is not an address; use ip:port, e.g. 127.0.0.1:9464"
                ))
            })?),
            None => None,
        };
        let application_server = match s.remove("application.server") {
            Some(v) => {
                let ok = v
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok || v.contains(['/', '@', ' ']) {
                    return Err(StreamsError::Config(format!(
                        "application.server: '{v}' is not host:port (e.g. 10.0.0.5:9464)"
                    )));
                }
                if metrics_listen.is_none() {
                    return Err(StreamsError::Config(
                        "application.server needs metrics.listen: set metrics.listen to the address the HTTP listener binds".into(),
                    ));
                }
                Some(v)
            }
            None => metrics_listen
                .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
                .map(|a| a.to_string()),
        };
        let repartition_purge_interval = match s.remove("repartition.purge.interval.ms") {
            Some(v) => Duration::from_millis(parse_num(
                "repartition.purge.interval.ms",
                &v,
                "a number of milliseconds",
            )?),
            None => Duration::from_secs(30),
        };
        let background_nice = match s.remove("background.threads.nice") {
            Some(v) => {
                let n: i32 = parse_num(
                    "background.threads.nice",
                    &v,
                    "a nice value from 0 (off) to 19",
                )?;
                if !(0..=19).contains(&n) {
                    return Err(StreamsError::Config(format!(
                        "background.threads.nice: {n} is out of range; use 0 (background \
                         threads run like the stream threads) to 19 (they run only when a \
                         core is free)"
                    )));
                }
                n
            }
            None => 10,
        };
        let replication_factor = match s.remove("replication.factor") {
            Some(v) => Some(parse_num::<i32>(
                "replication.factor",
                &v,
                "a positive number (or -1 for the broker's default)",
            )?)
            .filter(|n| *n != -1),
            None => None,
        };
        let topic_keys: Vec<String> = s
            .keys()
            .filter(|k| k.starts_with("topic."))
            .cloned()
            .collect();
        let mut internal_topic_overrides = BTreeMap::new();
        for key in topic_keys {
            let value = s.remove(&key).unwrap_or_default();
            let name = key["topic.".len()..].to_string();
            if name.is_empty() || name == "replication.factor" {
                return Err(StreamsError::Config(format!(
                    "{key}: name a topic config after 'topic.', e.g. topic.segment.bytes; \
                     the replication factor of internal topics is replication.factor"
                )));
            }
            internal_topic_overrides.insert(name, value);
        }
        if replication_factor.is_some_and(|n| n < 1) {
            return Err(StreamsError::Config(
                "replication.factor must be at least 1 (or -1 for the broker's default)".into(),
            ));
        }
        if guarantee == ProcessingGuarantee::ExactlyOnce
            && let Some(t) = s.get("transaction.timeout.ms")
        {
            let t: u64 = parse_num("transaction.timeout.ms", t, "a number of milliseconds")?;
            if t <= commit_ms {
                return Err(StreamsError::Config(format!(
                    "transaction.timeout.ms ({t}) must be larger than commit.interval.ms ({commit_ms}), \
                     or every transaction times out before it commits"
                )));
            }
        }
        for forbidden in [
            "group.id",
            "transactional.id",
            "enable.auto.commit",
            "enable.auto.offset.store",
            "isolation.level",
            "partition.assignment.strategy",
        ] {
            if s.contains_key(forbidden) {
                return Err(StreamsError::Config(format!(
                    "{forbidden} is managed by kstreams and cannot be set; remove it from the configuration"
                )));
            }
        }
        Ok(StreamsConfig {
            application_id,
            bootstrap_servers,
            guarantee,
            group_protocol,
            num_standby_replicas,
            commit_interval: Duration::from_millis(commit_ms),
            num_threads,
            state_dir,
            cache_max_bytes,
            rocksdb_memtables_bytes,
            rocksdb_block_cache_bytes,
            deserialization_policy,
            processing_policy,
            production_policy,
            startup_timeout,
            task_timeout,
            metrics_listen,
            application_server,
            replication_factor,
            internal_topic_overrides,
            repartition_purge_interval,
            background_nice,
            passthrough: s,
        })
    }
}

/// librdkafka properties only a consumer reads (scope `C` in librdkafka's
/// CONFIGURATION.md). Passed to a producer they are ignored with a
/// `CONFWARN` line per client, and a job has a producer per task.
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.offset.reset",
    "consume.callback.max.messages",
];

/// librdkafka properties only a producer reads (scope `P`).
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
];

/// `base` without the consumer-only properties: for producers and admin
/// clients (librdkafka's admin handle is a producer).
pub(crate) fn producer_client(base: &ClientConfig) -> ClientConfig {
    let mut c = base.clone();
    for k in CONSUMER_ONLY {
        c.remove(k);
    }
    c
}

/// `base` without the producer-only properties: for consumers.
pub(crate) fn consumer_client(base: &ClientConfig) -> ClientConfig {
    let mut c = base.clone();
    for k in PRODUCER_ONLY {
        c.remove(k);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(kv: &[(&str, &str)]) -> Result<StreamsConfig> {
        kv.iter()
            .fold(StreamsConfig::builder("app", "h:1"), |b, (k, v)| {
                b.set(k, v)
            })
            .build()
    }

    #[test]
    fn replication_factor_is_a_kstreams_key_not_a_client_setting() {
        let cfg = build(&[("replication.factor", "3")]).unwrap();
        assert_eq!(cfg.replication_factor, Some(3));
        assert!(!cfg.passthrough().contains_key("replication.factor"));
        assert_eq!(
            build(&[("replication.factor", "-1")])
                .unwrap()
                .replication_factor,
            None
        );
        let err = build(&[("replication.factor", "0")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("replication.factor must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn topic_prefixed_keys_configure_internal_topics_not_clients() {
        let cfg = build(&[
            ("topic.segment.bytes", "1048576"),
            ("topic.min.insync.replicas", "2"),
        ])
        .unwrap();
        assert_eq!(cfg.internal_topic_overrides["segment.bytes"], "1048576");
        assert_eq!(cfg.internal_topic_overrides["min.insync.replicas"], "2");
        assert!(cfg.passthrough().keys().all(|k| !k.starts_with("topic.")));
        let err = build(&[("topic.replication.factor", "3")]).unwrap_err();
        assert!(err.to_string().contains("replication.factor"), "{err}");
    }

    #[test]
    fn a_transaction_timeout_below_the_commit_interval_is_refused() {
        let err = build(&[
            ("commit.interval.ms", "5000"),
            ("transaction.timeout.ms", "4000"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "transaction.timeout.ms (4000) must be larger than commit.interval.ms (5000)"
            ),
            "{err}"
        );
        assert!(build(&[("transaction.timeout.ms", "60000")]).is_ok());
    }

    #[test]
    fn settings_that_would_break_assignment_or_offsets_are_refused() {
        for key in ["partition.assignment.strategy", "enable.auto.offset.store"] {
            let err = build(&[(key, "x")]).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("{key} is managed by kstreams")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_group_protocol_follows_the_guarantee_unless_set() {
        assert_eq!(build(&[]).unwrap().group_protocol, GroupProtocol::Streams);
        let alos = build(&[("processing.guarantee", "at_least_once")]).unwrap();
        assert_eq!(alos.group_protocol, GroupProtocol::Classic);
        let classic = build(&[("group.protocol", "classic")]).unwrap();
        assert_eq!(classic.group_protocol, GroupProtocol::Classic);
        let err = build(&[("group.protocol", "consumer")]).unwrap_err();
        assert!(err.to_string().contains("classic or streams"), "{err}");
        let err = build(&[
            ("group.protocol", "streams"),
            ("processing.guarantee", "at_least_once"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("exactly_once only"), "{err}");
        let err =
            build(&[("group.protocol", "classic"), ("num.standby.replicas", "1")]).unwrap_err();
        assert!(
            err.to_string().contains("needs group.protocol=streams"),
            "{err}"
        );
        assert_eq!(
            build(&[("num.standby.replicas", "2")])
                .unwrap()
                .num_standby_replicas,
            Some(2)
        );
        assert!(build(&[("num.standby.replicas", "-1")]).is_err());
    }

    #[test]
    fn producers_and_consumers_get_only_the_properties_they_read() {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", "h:1")
            .set("session.timeout.ms", "6000")
            .set("linger.ms", "20")
            .set("retry.backoff.ms", "50");
        let p = producer_client(&base);
        assert_eq!(p.get("session.timeout.ms"), None);
        assert_eq!(p.get("linger.ms"), Some("20"));
        assert_eq!(p.get("retry.backoff.ms"), Some("50"));
        let c = consumer_client(&base);
        assert_eq!(c.get("session.timeout.ms"), Some("6000"));
        assert_eq!(c.get("linger.ms"), None);
        assert_eq!(c.get("bootstrap.servers"), Some("h:1"));
    }

    #[test]
    fn rocksdb_memory_is_a_kstreams_key_with_a_floor() {
        let cfg = build(&[
            ("rocksdb.memtables.max.bytes", "67108864"),
            ("rocksdb.block.cache.bytes", "0"),
        ])
        .unwrap();
        assert_eq!(cfg.rocksdb_memtables_bytes, 64 << 20);
        assert_eq!(cfg.rocksdb_block_cache_bytes, 0);
        assert!(
            !cfg.passthrough()
                .contains_key("rocksdb.memtables.max.bytes")
        );
        let d = build(&[]).unwrap();
        assert_eq!(d.rocksdb_memtables_bytes, 16 << 20);
        assert_eq!(d.rocksdb_block_cache_bytes, 8 << 20);
        let err = build(&[("rocksdb.memtables.max.bytes", "1000")]).unwrap_err();
        assert!(
            err.to_string().contains("must be at least 1048576"),
            "{err}"
        );
        let err = build(&[("rocksdb.block.cache.bytes", "lots")]).unwrap_err();
        assert!(
            err.to_string().contains("rocksdb.block.cache.bytes"),
            "{err}"
        );
    }
}
