//! `TopologyTestDriver`: run a topology without Kafka, in users' unit tests.
//!
//! It creates the same `StreamTask`s the Kafka runtime creates (one per
//! sub-topology, partition 0) with the same stores, and replaces only the
//! record collector: records go to in-memory topics. Repartition and
//! changelog records land in those topics too, and the driver feeds
//! repartition topics to the downstream tasks, as Kafka would. After every
//! piped record (or every `commit_every` records) the driver commits: caches
//! are flushed, changelogs are written, and write sets are applied.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Result, StreamsError};
use crate::record::Headers;
use crate::serde::{SerdeRef, deserialize_opt};
use crate::task::{StreamTask, TaskConfig};
use crate::task_context::RecordCollector;
use crate::topology::Topology;
use crate::{ErrorPolicy, TaskId, TopologyDescription};

/// A record written to a topic of the test driver.
///
/// ```
/// let r = kstreams_runtime::TestRecord { key: Some(b"k".to_vec()), value: Some(b"v".to_vec()), timestamp: 1, headers: Default::default(), offset: 0 };
/// assert_eq!(r.key_str(), Some("k"));
/// assert_eq!(r.value_str(), Some("v"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRecord {
    /// Key bytes, or null.
    pub key: Option<Vec<u8>>,
    /// Value bytes, or null.
    pub value: Option<Vec<u8>>,
    /// Timestamp.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
    /// Offset in the topic.
    pub offset: i64,
}

impl TestRecord {
    /// The key as UTF-8, if it is present and valid.
    ///
    /// ```
    /// let r = kstreams_runtime::TestRecord { key: None, value: None, timestamp: 0, headers: Default::default(), offset: 0 };
    /// assert_eq!(r.key_str(), None);
    /// ```
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
    }
    /// The value as UTF-8, if it is present and valid.
    ///
    /// ```
    /// let r = kstreams_runtime::TestRecord { key: None, value: Some(b"x".to_vec()), timestamp: 0, headers: Default::default(), offset: 0 };
    /// assert_eq!(r.value_str(), Some("x"));
    /// ```
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
    }
}

type Topics = Rc<RefCell<HashMap<String, Vec<TestRecord>>>>;

struct DriverCollector {
    topics: Topics,
    max_message_bytes: Option<usize>,
}

impl RecordCollector for DriverCollector {
    fn send(
        &mut self,
        topic: &str,
        _partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> Result<()> {
        let size = key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        if let Some(max) = self.max_message_bytes
            && size > max
        {
            return Err(StreamsError::Production {
                topic: topic.to_string(),
                message: format!(
                    "the record is {size} bytes, more than max_message_bytes ({max}), \
                     as a producer's message.max.bytes would refuse it"
                ),
            });
        }
        let mut topics = self.topics.borrow_mut();
        let log = topics.entry(topic.to_string()).or_default();
        let offset = log.len() as i64;
        log.push(TestRecord {
            key: key.map(|k| k.to_vec()),
            value: value.map(|v| v.to_vec()),
            timestamp,
            headers: headers.clone(),
            offset,
        });
        Ok(())
    }
    fn last_offset(&self, topic: &str, _partition: i32) -> Option<i64> {
        self.topics
            .borrow()
            .get(topic)
            .and_then(|l| l.len().checked_sub(1))
            .map(|o| o as i64)
    }
}

/// Builds a [`TopologyTestDriver`].
///
/// ```
/// use kstreams_runtime::{Topology, Serdes, TopologyTestDriver};
/// let mut t = Topology::new();
/// t.add_source("src", &["in"], Serdes::string(), Serdes::string()).unwrap();
/// let d = TopologyTestDriver::builder(t).application_id("my-app").wall_clock_start(1_000).build().unwrap();
/// assert_eq!(d.wall_clock(), 1_000);
/// ```
pub struct TestDriverBuilder {
    topology: Topology,
    application_id: String,
    state_dir: Option<PathBuf>,
    wall_clock: i64,
    commit_every: usize,
    policy: ErrorPolicy,
    processing_policy: ErrorPolicy,
    production_policy: ErrorPolicy,
    max_message_bytes: Option<usize>,
    cache_max_bytes: usize,
}

impl TestDriverBuilder {
    /// The application id used to name internal topics (default `test-app`).
    ///
    /// ```
    /// # let t = kstreams_runtime::Topology::new();
    /// let _ = kstreams_runtime::TopologyTestDriver::builder(t).application_id("orders");
    /// ```
    pub fn application_id(mut self, id: &str) -> Self {
        self.application_id = id.to_string();
        self
    }
    /// Where RocksDB stores live; kept after the driver is dropped. By
    /// default a temporary directory is used and deleted.
    ///
    /// ```
    /// # let t = kstreams_runtime::Topology::new();
    /// let _ = kstreams_runtime::TopologyTestDriver::builder(t).state_dir("/tmp/my-test-state");
    /// ```
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }
    /// The simulated wall clock at start (epoch millis; default 0).
    ///
    /// ```
    /// # let t = kstreams_runtime::Topology::new();
    /// let _ = kstreams_runtime::TopologyTestDriver::builder(t).wall_clock_start(5);
    /// ```
    pub fn wall_clock_start(mut self, ms: i64) -> Self {
        self.wall_clock = ms;
        self
    }
    /// Commit after every `n` piped records (default 1: after each record,
    /// so every intermediate result is visible). Larger values let caches
    /// coalesce, as a commit interval does in production.
    ///
    /// ```
    /// # let t = kstreams_runtime::Topology::new();
    /// let _ = kstreams_runtime::TopologyTestDriver::builder(t).commit_every(1000);
    /// ```
    pub fn commit_every(mut self, n: usize) -> Self {
        self.commit_every = n.max(1);
        self
    }
    /// What to do with records that cannot be deserialized (default: log and continue).
    ///
    /// ```
    /// # let t = kstreams_runtime::Topology::new();
    /// let _ = kstreams_runtime::TopologyTestDriver::builder(t)
    ///     .deserialization_policy(kstreams_runtime::ErrorPolicy::LogAndFail);
    /// ```
    pub fn deserialization_policy(mut self, policy: ErrorPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// What to do when a processor fails or panics on a record (default: log and fail).
    ///
    /// ```
    /// # let t = kstreams_runtime::Topology::new();
    /// let _ = kstreams_runtime::TopologyTestDriver::builder(t)
    ///     .processing_policy(kstreams_runtime::ErrorPolicy::DeadLetter("dlq".into()));
    /// ```
    pub fn processing_policy(mut self, policy: ErrorPolicy) -> Self {
        self.processing_policy = policy;
        self
    }

    /// What to do with an output record the producer refuses (default: log
    /// and fail), as `production.exception.handler` does. Use with
    /// [`Self::max_message_bytes`] to see it act.
    ///
    /// ```
    /// use kstreams_runtime::{ErrorPolicy, Serdes, Topology, TopologyTestDriver};
    /// let mut t = Topology::new();
    /// t.add_source("in", &["in"], Serdes::string(), Serdes::string()).unwrap();
    /// t.add_sink("out", "out", Serdes::string(), Serdes::string(), &["in"]).unwrap();
    /// let mut d = TopologyTestDriver::builder(t)
    ///     .max_message_bytes(10)
    ///     .production_policy(ErrorPolicy::LogAndContinue)
    ///     .build()
    ///     .unwrap();
    /// d.pipe_str("in", Some("k"), "far too long for the limit", 0).unwrap();
    /// d.pipe_str("in", Some("k"), "short", 1).unwrap();
    /// assert_eq!(d.read_output("out").len(), 1);
    /// assert_eq!(d.production_errors(), 1);
    /// ```
    pub fn production_policy(mut self, policy: ErrorPolicy) -> Self {
        self.production_policy = policy;
        self
    }

    /// Refuses output records whose key plus value exceed `bytes`, as a
    /// producer's `message.max.bytes` would (default: no limit).
    ///
    /// ```
    /// # let t = kstreams_runtime::Topology::new();
    /// let _ = kstreams_runtime::TopologyTestDriver::builder(t).max_message_bytes(1_000_000);
    /// ```
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = Some(bytes);
        self
    }

    /// The record-cache budget per task (default 10 MiB). With the default
    /// commit after every record, every update is still visible.
    ///
    /// ```
    /// # let t = kstreams_runtime::Topology::new();
    /// let _ = kstreams_runtime::TopologyTestDriver::builder(t).cache_max_bytes(0);
    /// ```
    pub fn cache_max_bytes(mut self, bytes: usize) -> Self {
        self.cache_max_bytes = bytes;
        self
    }

    /// Creates the tasks and initializes their processors.
    ///
    /// ```
    /// # let t = kstreams_runtime::Topology::new();
    /// let d = kstreams_runtime::TopologyTestDriver::builder(t).build().unwrap();
    /// ```
    pub fn build(self) -> Result<TopologyTestDriver> {
        let (state_root, temp) = match self.state_dir {
            Some(d) => (d, None),
            None => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let d = std::env::temp_dir().join(format!(
                    "kstreams-test-driver-{}-{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                ));
                (d.clone(), Some(d))
            }
        };
        let topology = Arc::new(self.topology);
        let topics: Topics = Rc::new(RefCell::new(HashMap::new()));
        let mut tasks = Vec::new();
        for sub in topology.subtopologies() {
            let id = TaskId {
                subtopology: sub.id,
                partition: 0,
            };
            let task = StreamTask::new(TaskConfig {
                application_id: self.application_id.clone(),
                task_id: id,
                topology: topology.clone(),
                subtopology: sub,
                state_dir: Some(state_root.join(&self.application_id).join(id.to_string())),
                collector: Box::new(DriverCollector {
                    topics: topics.clone(),
                    max_message_bytes: self.max_message_bytes,
                }),
                wall_clock: self.wall_clock,
                lock_wait: Duration::from_secs(5),
                deserialization_policy: self.policy.clone(),
                processing_policy: self.processing_policy.clone(),
                production_policy: self.production_policy.clone(),
                max_write_set_bytes: usize::MAX,
                cache_max_bytes: self.cache_max_bytes,
            })?;
            tasks.push(task);
        }
        for t in &mut tasks {
            t.init()?;
        }
        Ok(TopologyTestDriver {
            application_id: self.application_id,
            topology,
            tasks,
            topics,
            consumed: HashMap::new(),
            read_positions: HashMap::new(),
            wall_clock: self.wall_clock,
            commit_every: self.commit_every,
            since_commit: 0,
            temp_dir: temp,
            input_offsets: HashMap::new(),
            committed: DriverCommit::default(),
        })
    }
}

/// Runs a topology in memory: pipe records in, read records out, inspect stores.
///
/// ```
/// use kstreams_runtime::{Topology, Serdes, TopologyTestDriver};
/// let mut t = Topology::new();
/// t.add_source("src", &["in"], Serdes::string(), Serdes::string()).unwrap();
/// t.add_sink("sink", "out", Serdes::string(), Serdes::string(), &["src"]).unwrap();
/// let mut d = TopologyTestDriver::new(t).unwrap();
/// d.pipe_input("in", Some(b"a"), Some(b"1"), 10).unwrap();
/// let out = d.read_output("out");
/// assert_eq!((out[0].key_str(), out[0].value_str(), out[0].timestamp), (Some("a"), Some("1"), 10));
/// assert!(d.read_output("out").is_empty()); // read_output returns only new records
/// ```
pub struct TopologyTestDriver {
    application_id: String,
    topology: Arc<Topology>,
    tasks: Vec<StreamTask>,
    topics: Topics,
    /// Next offset each internal source topic is read from.
    consumed: HashMap<String, usize>,
    read_positions: HashMap<String, usize>,
    wall_clock: i64,
    commit_every: usize,
    since_commit: usize,
    temp_dir: Option<PathBuf>,
    input_offsets: HashMap<String, i64>,
    /// As of the last commit: what `abort` returns to.
    committed: DriverCommit,
}

/// The driver's positions as of a commit.
#[derive(Default)]
struct DriverCommit {
    topic_lens: HashMap<String, usize>,
    consumed: HashMap<String, usize>,
    input_offsets: HashMap<String, i64>,
}

impl TopologyTestDriver {
    /// A driver with default settings (see [`TopologyTestDriver::builder`]).
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// ```
    pub fn new(topology: Topology) -> Result<Self> {
        Self::builder(topology).build()
    }

    /// A builder for a driver.
    ///
    /// ```
    /// let b = kstreams_runtime::TopologyTestDriver::builder(kstreams_runtime::Topology::new());
    /// ```
    pub fn builder(topology: Topology) -> TestDriverBuilder {
        TestDriverBuilder {
            topology,
            application_id: "test-app".into(),
            state_dir: None,
            wall_clock: 0,
            commit_every: 1,
            policy: ErrorPolicy::LogAndContinue,
            processing_policy: ErrorPolicy::LogAndFail,
            production_policy: ErrorPolicy::LogAndFail,
            max_message_bytes: None,
            cache_max_bytes: 10 << 20,
        }
    }

    /// The topology's description.
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert!(d.describe().subtopologies.is_empty());
    /// ```
    pub fn describe(&self) -> TopologyDescription {
        self.topology.describe()
    }

    /// The simulated wall clock.
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert_eq!(d.wall_clock(), 0);
    /// ```
    pub fn wall_clock(&self) -> i64 {
        self.wall_clock
    }

    fn task_for(&self, topic: &str) -> Option<usize> {
        self.tasks
            .iter()
            .position(|t| t.input_topics().iter().any(|s| s == topic))
    }

    /// Pipes one record (raw bytes) into input topic `topic`.
    ///
    /// ```
    /// # use kstreams_runtime::*;
    /// # let mut t = Topology::new();
    /// # t.add_source("src", &["in"], Serdes::unit(), Serdes::string()).unwrap();
    /// let mut d = TopologyTestDriver::new(t).unwrap();
    /// d.pipe_input("in", None, Some(b"line"), 0).unwrap();
    /// assert!(d.pipe_input("nope", None, Some(b"line"), 0).is_err());
    /// ```
    pub fn pipe_input(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
    ) -> Result<()> {
        self.pipe_input_with_headers(topic, key, value, timestamp, Headers::default())
    }

    /// Pipes one record with headers.
    ///
    /// ```
    /// # use kstreams_runtime::*;
    /// # let mut t = Topology::new();
    /// # t.add_source("src", &["in"], Serdes::unit(), Serdes::string()).unwrap();
    /// let mut d = TopologyTestDriver::new(t).unwrap();
    /// d.pipe_input_with_headers("in", None, Some(b"x"), 0, Headers::default()).unwrap();
    /// ```
    pub fn pipe_input_with_headers(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<()> {
        let idx = self.task_for(topic).ok_or_else(|| {
            StreamsError::Config(format!(
                "topic '{topic}' is not an input of this topology; inputs: {:?}",
                self.input_topics()
            ))
        })?;
        let offset = {
            let o = self.input_offsets.entry(topic.to_string()).or_insert(0);
            *o += 1;
            *o - 1
        };
        self.tasks[idx].process(topic, 0, offset, timestamp, key, value, headers)?;
        self.drain_internal()?;
        self.since_commit += 1;
        if self.since_commit >= self.commit_every || self.tasks.iter().any(|t| t.commit_requested())
        {
            self.commit()?;
        }
        Ok(())
    }

    /// Pipes a UTF-8 key (or none) and value.
    ///
    /// ```
    /// # use kstreams_runtime::*;
    /// # let mut t = Topology::new();
    /// # t.add_source("src", &["in"], Serdes::unit(), Serdes::string()).unwrap();
    /// let mut d = TopologyTestDriver::new(t).unwrap();
    /// d.pipe_str("in", None, "hello world", 0).unwrap();
    /// ```
    pub fn pipe_str(
        &mut self,
        topic: &str,
        key: Option<&str>,
        value: &str,
        timestamp: i64,
    ) -> Result<()> {
        self.pipe_input(
            topic,
            key.map(str::as_bytes),
            Some(value.as_bytes()),
            timestamp,
        )
    }

    /// The topology's external input topics.
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert!(d.input_topics().is_empty());
    /// ```
    pub fn input_topics(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .topology
            .subtopologies()
            .iter()
            .flat_map(|s| {
                s.source_topics
                    .iter()
                    .filter(|t| !t.internal)
                    .map(|t| t.name.clone())
            })
            .collect();
        v.sort();
        v
    }

    fn drain_internal(&mut self) -> Result<()> {
        loop {
            let mut progressed = false;
            for i in 0..self.tasks.len() {
                for topic in self.tasks[i].input_topics() {
                    let pending: Vec<TestRecord> = {
                        let topics = self.topics.borrow();
                        let Some(log) = topics.get(&topic) else {
                            continue;
                        };
                        let from = *self.consumed.get(&topic).unwrap_or(&0);
                        log[from..].to_vec()
                    };
                    if pending.is_empty() {
                        continue;
                    }
                    self.consumed.insert(
                        topic.clone(),
                        pending.last().map(|r| r.offset as usize + 1).unwrap_or(0),
                    );
                    for r in pending {
                        self.tasks[i].process(
                            &topic,
                            0,
                            r.offset,
                            r.timestamp,
                            r.key.as_deref(),
                            r.value.as_deref(),
                            r.headers,
                        )?;
                    }
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Commits every task now: caches flush downstream, changelog records
    /// are written, and write sets become committed state.
    ///
    /// ```
    /// let mut d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// d.commit().unwrap();
    /// ```
    pub fn commit(&mut self) -> Result<()> {
        // Flushing a cache may emit records into repartition topics, which
        // downstream tasks must process (and flush) within the same commit.
        loop {
            for t in &mut self.tasks {
                t.flush_processors()?;
            }
            let before: usize = self.pending_internal();
            if before == 0 {
                break;
            }
            self.drain_internal()?;
        }
        for t in &mut self.tasks {
            t.send_changelogs()?;
            t.post_commit()?;
        }
        self.since_commit = 0;
        self.committed = DriverCommit {
            topic_lens: self
                .topics
                .borrow()
                .iter()
                .map(|(t, log)| (t.clone(), log.len()))
                .collect(),
            consumed: self.consumed.clone(),
            input_offsets: self.input_offsets.clone(),
        };
        Ok(())
    }

    /// Aborts everything since the last commit, as a failed transaction
    /// does: every task drops its uncommitted state and returns to the
    /// stream time (and stream-time punctuation schedule) of the last
    /// commit, and the records written since disappear from every topic,
    /// as they do for a `read_committed` reader. Pipe the same input again
    /// to see how your topology reprocesses it: it must decide the same.
    /// (With the default `commit_every(1)` every record commits at once;
    /// set a larger one, or nothing is left to abort.)
    ///
    /// ```
    /// # use kstreams_runtime::*;
    /// # let mut t = Topology::new();
    /// # t.add_source("src", &["in"], Serdes::string(), Serdes::string()).unwrap();
    /// # t.add_sink("sink", "out", Serdes::string(), Serdes::string(), &["src"]).unwrap();
    /// let mut d = TopologyTestDriver::builder(t).commit_every(100).build().unwrap();
    /// d.pipe_str("in", Some("a"), "1", 0).unwrap();
    /// d.commit().unwrap();
    /// d.pipe_str("in", Some("b"), "2", 1).unwrap();
    /// d.abort();
    /// let out = d.read_output("out");
    /// assert_eq!(out.len(), 1);
    /// assert_eq!(out[0].key_str(), Some("a"));
    /// ```
    pub fn abort(&mut self) {
        for t in &mut self.tasks {
            t.abort();
        }
        for (topic, log) in self.topics.borrow_mut().iter_mut() {
            log.truncate(self.committed.topic_lens.get(topic).copied().unwrap_or(0));
            if let Some(pos) = self.read_positions.get_mut(topic) {
                *pos = (*pos).min(log.len());
            }
        }
        self.consumed = self.committed.consumed.clone();
        self.input_offsets = self.committed.input_offsets.clone();
        self.since_commit = 0;
    }

    fn pending_internal(&self) -> usize {
        let topics = self.topics.borrow();
        self.tasks
            .iter()
            .flat_map(|t| t.input_topics())
            .map(|topic| {
                let len = topics.get(&topic).map(|l| l.len()).unwrap_or(0);
                len.saturating_sub(*self.consumed.get(&topic).unwrap_or(&0))
            })
            .sum()
    }

    /// Advances the simulated wall clock and fires wall-clock punctuators.
    ///
    /// ```
    /// let mut d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// d.advance_wall_clock(std::time::Duration::from_secs(1)).unwrap();
    /// assert_eq!(d.wall_clock(), 1000);
    /// ```
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<()> {
        self.wall_clock += by.as_millis() as i64;
        for t in &mut self.tasks {
            t.punctuate_wall_clock(self.wall_clock)?;
        }
        self.drain_internal()?;
        self.commit()
    }

    /// Records written to `topic` since the last call (for this topic).
    ///
    /// ```
    /// let mut d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert!(d.read_output("out").is_empty());
    /// ```
    pub fn read_output(&mut self, topic: &str) -> Vec<TestRecord> {
        let topics = self.topics.borrow();
        let Some(log) = topics.get(topic) else {
            return Vec::new();
        };
        let pos = self.read_positions.entry(topic.to_string()).or_insert(0);
        let out = log[*pos..].to_vec();
        *pos = log.len();
        out
    }

    /// New records of `topic`, deserialized.
    ///
    /// ```
    /// let mut d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// let kv = d.read_output_as("out", &kstreams_runtime::Serdes::string(), &kstreams_runtime::Serdes::u64_text()).unwrap();
    /// assert!(kv.is_empty());
    /// ```
    pub fn read_output_as<K: 'static, V: 'static>(
        &mut self,
        topic: &str,
        key_serde: &SerdeRef<K>,
        value_serde: &SerdeRef<V>,
    ) -> Result<Vec<(K, V)>> {
        self.read_output(topic)
            .into_iter()
            .map(|r| {
                Ok((
                    deserialize_opt(&**key_serde, r.key.as_deref())?,
                    deserialize_opt(&**value_serde, r.value.as_deref())?,
                ))
            })
            .collect()
    }

    /// Every record ever written to `topic` (outputs, repartition topics and
    /// changelogs, e.g. `test-app-counts-changelog`).
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert!(d.all_records("test-app-counts-changelog").is_empty());
    /// ```
    pub fn all_records(&self, topic: &str) -> Vec<TestRecord> {
        self.topics.borrow().get(topic).cloned().unwrap_or_default()
    }

    /// Every topic written so far, sorted.
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert!(d.written_topics().is_empty());
    /// ```
    pub fn written_topics(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topics.borrow().keys().cloned().collect();
        v.sort();
        v
    }

    /// All entries of key-value store `store` (committed plus uncommitted).
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert!(d.key_value_store_all::<String, u64>("counts").is_err()); // no such store
    /// ```
    pub fn key_value_store_all<K: 'static, V: 'static>(&self, store: &str) -> Result<Vec<(K, V)>> {
        self.kv_store::<K, V>(store)?.all()
    }

    /// One entry of key-value store `store`.
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert!(d.key_value_store_get::<String, u64>("counts", &"a".into()).is_err());
    /// ```
    pub fn key_value_store_get<K: 'static, V: 'static>(
        &self,
        store: &str,
        key: &K,
    ) -> Result<Option<V>> {
        self.kv_store::<K, V>(store)?.get(key)
    }

    fn kv_store<K: 'static, V: 'static>(&self, store: &str) -> Result<crate::KeyValueStore<K, V>> {
        for t in &self.tasks {
            let slots = t.shared.stores.borrow();
            if let Some(slot) = slots.get(store) {
                let ks = slot
                    .key_serde
                    .downcast_ref::<SerdeRef<K>>()
                    .cloned()
                    .ok_or_else(|| StreamsError::StoreType(store.to_string()))?;
                let vs = slot
                    .value_serde
                    .downcast_ref::<SerdeRef<V>>()
                    .cloned()
                    .ok_or_else(|| StreamsError::StoreType(store.to_string()))?;
                return Ok(crate::KeyValueStore::new(slot.store.clone(), ks, vs));
            }
        }
        Err(StreamsError::UnknownStore(store.to_string()))
    }

    /// The window store `store` (committed plus uncommitted entries), e.g.
    /// to list its windows with [`crate::WindowStore::all`] or count what it
    /// holds with [`crate::WindowStore::stored_entries`].
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert!(d.window_store::<String, u64>("per-minute").is_err()); // no such store
    /// ```
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        store: &str,
    ) -> Result<crate::WindowStore<K, V>> {
        for t in &self.tasks {
            let slots = t.shared.stores.borrow();
            if let Some(slot) = slots.get(store) {
                let ks = slot
                    .key_serde
                    .downcast_ref::<crate::state::WindowKeySlot<K>>()
                    .ok_or_else(|| StreamsError::StoreType(store.to_string()))?;
                let vs = slot
                    .value_serde
                    .downcast_ref::<SerdeRef<V>>()
                    .cloned()
                    .ok_or_else(|| StreamsError::StoreType(store.to_string()))?;
                return Ok(crate::WindowStore::new(
                    slot.store.clone(),
                    ks.key_serde.clone(),
                    vs,
                    ks.spec,
                ));
            }
        }
        Err(StreamsError::UnknownStore(store.to_string()))
    }

    /// Records dropped on purpose by operators, by (node, reason).
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert!(d.dropped_records().is_empty());
    /// ```
    pub fn dropped_records(&self) -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        for t in &self.tasks {
            for (k, v) in t.dropped() {
                *out.entry(k).or_insert(0) += v;
            }
        }
        out
    }

    /// Input records skipped because they could not be deserialized.
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert_eq!(d.skipped_records(), 0);
    /// ```
    pub fn skipped_records(&self) -> u64 {
        self.tasks.iter().map(|t| t.skipped_deserialization()).sum()
    }

    /// Records that failed in a processor and were skipped (policy log_and_continue).
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert_eq!(d.processing_errors(), 0);
    /// ```
    pub fn processing_errors(&self) -> u64 {
        self.tasks.iter().map(|t| t.processing_errors()).sum()
    }

    /// Output records refused by the producer and skipped by the
    /// production policy.
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert_eq!(d.production_errors(), 0);
    /// ```
    pub fn production_errors(&self) -> u64 {
        self.tasks.iter().map(|t| t.production_errors()).sum()
    }

    /// Records dead-lettered by the error policies.
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert_eq!(d.dead_lettered_records(), 0);
    /// ```
    pub fn dead_lettered_records(&self) -> u64 {
        self.tasks.iter().map(|t| t.dead_lettered()).sum()
    }

    /// Input records processed by all tasks (including repartition topics).
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert_eq!(d.processed_records(), 0);
    /// ```
    pub fn processed_records(&self) -> u64 {
        self.tasks.iter().map(|t| t.processed()).sum()
    }

    /// The application id.
    ///
    /// ```
    /// let d = kstreams_runtime::TopologyTestDriver::new(kstreams_runtime::Topology::new()).unwrap();
    /// assert_eq!(d.application_id(), "test-app");
    /// ```
    pub fn application_id(&self) -> &str {
        &self.application_id
    }
}

impl Drop for TopologyTestDriver {
    fn drop(&mut self) {
        let _ = self.commit();
        for t in &mut self.tasks {
            t.close();
        }
        self.tasks.clear();
        if let Some(d) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
