//! Admin, produce and read helpers for tests (blocking; callable from sync or async tests).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::error::{Error, Result};

/// How long helpers wait for the broker before giving up.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A unique name for a topic, application id or group id: `prefix-<pid>-<counter>-<random>`.
///
/// Tests sharing a broker (and repeated runs against a persistent broker) never collide.
///
/// ```no_run
/// let topic = kstreams_testkit::unique_name("input");
/// assert!(topic.starts_with("input-"));
/// ```
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}-{n}-{:08x}",
        std::process::id(),
        crate::random_u64() as u32
    )
}

/// Which records a read sees (the consumer's `isolation.level`).
///
/// ```no_run
/// use kstreams_testkit::{read_to_end, Isolation};
/// let committed = read_to_end("127.0.0.1:9092", "out", Isolation::ReadCommitted)?;
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// Only records of committed transactions (and non-transactional records), up to the
    /// last stable offset.
    ReadCommitted,
    /// Every record up to the high watermark, including open and aborted transactions.
    ReadUncommitted,
}

impl Isolation {
    fn as_config(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// A record to produce with [`produce`]. Unset fields are left to the producer
/// (partitioner, current time).
///
/// ```no_run
/// use kstreams_testkit::TestRecord;
/// let records = vec![
///     TestRecord::kv("alice", "1"),
///     TestRecord::value("hello world").with_partition(0),
///     TestRecord::kv("bob", "2").with_timestamp(1_700_000_000_000).with_header("h", "x"),
///     TestRecord::tombstone("alice"),
/// ];
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRecord {
    /// The key, or `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// The value, or `None` for a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// The partition, or `None` to let the default partitioner choose.
    pub partition: Option<i32>,
    /// The timestamp in ms since the epoch, or `None` for the current time.
    pub timestamp: Option<i64>,
    /// Record headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TestRecord {
    /// A record with a key and a value.
    ///
    /// ```no_run
    /// let r = kstreams_testkit::TestRecord::kv("word", "1");
    /// ```
    pub fn kv(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        TestRecord {
            key: Some(key.as_ref().to_vec()),
            value: Some(value.as_ref().to_vec()),
            ..Default::default()
        }
    }

    /// A record with a null key and a value.
    ///
    /// ```no_run
    /// let r = kstreams_testkit::TestRecord::value("a line of text");
    /// ```
    pub fn value(value: impl AsRef<[u8]>) -> Self {
        TestRecord {
            value: Some(value.as_ref().to_vec()),
            ..Default::default()
        }
    }

    /// A record with a key and a null value (a delete for compacted topics and tables).
    ///
    /// ```no_run
    /// let r = kstreams_testkit::TestRecord::tombstone("word");
    /// ```
    pub fn tombstone(key: impl AsRef<[u8]>) -> Self {
        TestRecord {
            key: Some(key.as_ref().to_vec()),
            ..Default::default()
        }
    }

    /// Sets the partition.
    ///
    /// ```no_run
    /// let r = kstreams_testkit::TestRecord::kv("k", "v").with_partition(2);
    /// ```
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (ms since the epoch).
    ///
    /// ```no_run
    /// let r = kstreams_testkit::TestRecord::kv("k", "v").with_timestamp(1_000);
    /// ```
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Adds a header.
    ///
    /// ```no_run
    /// let r = kstreams_testkit::TestRecord::kv("k", "v").with_header("trace", "abc");
    /// ```
    pub fn with_header(mut self, key: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((key.into(), value.as_ref().to_vec()));
        self
    }
}

/// A record read by [`read_to_end`].
///
/// ```no_run
/// use kstreams_testkit::{read_to_end, Isolation};
/// for r in read_to_end("127.0.0.1:9092", "out", Isolation::ReadCommitted)? {
///     println!("{}/{}@{}: {:?}={:?}", r.topic, r.partition, r.offset, r.key_str(), r.value_str());
/// }
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
    /// The key (`None` if null).
    pub key: Option<Vec<u8>>,
    /// The value (`None` if null).
    pub value: Option<Vec<u8>>,
    /// The timestamp in ms since the epoch, if the record has one.
    pub timestamp: Option<i64>,
    /// The headers (a null header value is returned as an empty vector).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ConsumedRecord {
    /// The key as UTF-8 (lossy), if not null.
    ///
    /// ```
    /// # let r = kstreams_testkit::ConsumedRecord { topic: "t".into(), partition: 0, offset: 0,
    /// #     key: Some(b"k".to_vec()), value: Some(b"v".to_vec()), timestamp: None, headers: vec![] };
    /// assert_eq!(r.key_str().as_deref(), Some("k"));
    /// ```
    pub fn key_str(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The value as UTF-8 (lossy), if not null.
    ///
    /// ```
    /// # let r = kstreams_testkit::ConsumedRecord { topic: "t".into(), partition: 0, offset: 0,
    /// #     key: Some(b"k".to_vec()), value: Some(b"v".to_vec()), timestamp: None, headers: vec![] };
    /// assert_eq!(r.value_str().as_deref(), Some("v"));
    /// ```
    pub fn value_str(&self) -> Option<String> {
        self.value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set_log_level(RDKafkaLogLevel::Warning);
    cfg
}

fn admin_client(bootstrap: &str) -> Result<AdminClient<DefaultClientContext>> {
    base_config(bootstrap)
        .create()
        .map_err(|e| Error::kafka("creating an admin client", e))
}

fn metadata_consumer(bootstrap: &str) -> Result<BaseConsumer> {
    base_config(bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| Error::kafka("creating a metadata client", e))
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(TIMEOUT))
        .operation_timeout(Some(TIMEOUT))
}

/// Minimal executor for rdkafka's admin futures (they are completed by librdkafka's own
/// threads, so no async runtime is needed, and this works inside one as well).
fn block_on<F: Future>(fut: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

fn topic_result(
    what: &str,
    name: &str,
    res: std::result::Result<Vec<rdkafka::admin::TopicResult>, KafkaError>,
) -> Result<()> {
    let results = res.map_err(|e| Error::kafka(format!("{what} topic {name:?}"), e))?;
    for r in results {
        if let Err((topic, code)) = r {
            return Err(Error::kafka(
                format!("{what} topic {topic:?}"),
                KafkaError::AdminOp(code),
            ));
        }
    }
    Ok(())
}

/// Creates a topic with replication factor 1 and waits until the broker's metadata shows
/// it with every partition led. `compacted` sets `cleanup.policy=compact` (for changelogs
/// and tables). Fails if the topic already exists.
///
/// ```no_run
/// use kstreams_testkit::{create_topic, shared_broker, unique_name};
/// let topic = unique_name("words");
/// create_topic(&shared_broker().bootstrap_servers(), &topic, 3, false)?;
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, compacted: bool) -> Result<()> {
    let admin = admin_client(bootstrap)?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    if compacted {
        topic = topic.set("cleanup.policy", "compact");
    }
    topic_result(
        "creating",
        name,
        block_on(admin.create_topics([&topic], &admin_options())),
    )?;
    let consumer = metadata_consumer(bootstrap)?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(md) = consumer.fetch_metadata(Some(name), Duration::from_secs(5))
            && let Some(t) = md.topics().iter().find(|t| t.name() == name)
            && t.error().is_none()
            && t.partitions().len() == partitions as usize
            && t.partitions().iter().all(|p| p.leader() >= 0)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("topic {name:?} to appear in metadata with {partitions} partitions"),
                timeout: TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes a topic and waits until it is gone from the metadata.
///
/// ```no_run
/// kstreams_testkit::delete_topic("127.0.0.1:9092", "old-topic")?;
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn delete_topic(bootstrap: &str, name: &str) -> Result<()> {
    let admin = admin_client(bootstrap)?;
    topic_result(
        "deleting",
        name,
        block_on(admin.delete_topics(&[name], &admin_options())),
    )?;
    let deadline = Instant::now() + TIMEOUT;
    while partition_count(bootstrap, name)?.is_some() {
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("topic {name:?} to disappear from metadata"),
                timeout: TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The number of partitions of a topic, or `None` if it does not exist.
///
/// ```no_run
/// let n = kstreams_testkit::partition_count("127.0.0.1:9092", "words")?;
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn partition_count(bootstrap: &str, topic: &str) -> Result<Option<usize>> {
    let consumer = metadata_consumer(bootstrap)?;
    let md = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| Error::kafka(format!("fetching metadata of topic {topic:?}"), e))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len()))
}

/// The names of all topics in the cluster (internal ones like
/// `__consumer_offsets` included), sorted.
///
/// ```no_run
/// let topics = kstreams_testkit::topic_names("127.0.0.1:9092")?;
/// let repartition: Vec<&String> = topics.iter().filter(|t| t.ends_with("-repartition")).collect();
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn topic_names(bootstrap: &str) -> Result<Vec<String>> {
    let consumer = metadata_consumer(bootstrap)?;
    let md = consumer
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| Error::kafka("fetching the cluster's topics", e))?;
    let mut names: Vec<String> = md.topics().iter().map(|t| t.name().to_string()).collect();
    names.sort();
    Ok(names)
}

/// The end offset of every partition of `topic`: the high watermark, which
/// is where a consumer that has read everything (commit markers included)
/// stands, so a group that has consumed the topic has committed exactly
/// these offsets.
///
/// ```no_run
/// let ends = kstreams_testkit::end_offsets("127.0.0.1:9092", "orders")?;
/// let total: i64 = ends.values().sum();
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn end_offsets(bootstrap: &str, topic: &str) -> Result<HashMap<i32, i64>> {
    watermarks(bootstrap, topic, Isolation::ReadUncommitted)
}

/// The last stable offset of every partition of `topic`: the end as a
/// `read_committed` reader sees it, below any transaction still open.
///
/// ```no_run
/// let stable = kstreams_testkit::stable_offsets("127.0.0.1:9092", "orders")?;
/// let ends = kstreams_testkit::end_offsets("127.0.0.1:9092", "orders")?;
/// let open_transactions = ends.iter().filter(|(p, e)| stable.get(*p) != Some(*e)).count();
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn stable_offsets(bootstrap: &str, topic: &str) -> Result<HashMap<i32, i64>> {
    watermarks(bootstrap, topic, Isolation::ReadCommitted)
}

fn watermarks(bootstrap: &str, topic: &str, isolation: Isolation) -> Result<HashMap<i32, i64>> {
    let partitions = partition_count(bootstrap, topic)?.unwrap_or(0) as i32;
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("allow.auto.create.topics", "false")
        .set("isolation.level", isolation.as_config())
        .create()
        .map_err(|e| Error::kafka("creating a metadata client", e))?;
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, TIMEOUT)
                .map(|(_, high)| (p, high))
                .map_err(|e| Error::kafka(format!("fetching end offsets of {topic:?}/{p}"), e))
        })
        .collect()
}

/// The topic-level configuration (every entry the broker reports, e.g.
/// `cleanup.policy`), as a map.
///
/// ```no_run
/// let cfg = kstreams_testkit::topic_config("127.0.0.1:9092", "changelog")?;
/// assert_eq!(cfg.get("cleanup.policy").map(String::as_str), Some("compact"));
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn topic_config(bootstrap: &str, topic: &str) -> Result<HashMap<String, String>> {
    let admin = admin_client(bootstrap)?;
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()))
            .map_err(|e| Error::kafka(format!("describing the config of topic {topic:?}"), e))?;
    let mut map = HashMap::new();
    for r in results {
        let resource = r.map_err(|code| {
            Error::kafka(
                format!("describing the config of topic {topic:?}"),
                KafkaError::AdminOp(code),
            )
        })?;
        for entry in resource.entries {
            if let Some(v) = entry.value {
                map.insert(entry.name, v);
            }
        }
    }
    Ok(map)
}

struct DeliveryCollector {
    delivered: Mutex<(usize, Vec<String>)>,
}

impl ClientContext for DeliveryCollector {}

impl ProducerContext for DeliveryCollector {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut d = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        d.0 += 1;
        if let Err((e, m)) = result {
            d.1.push(format!("partition {}: {e}", m.partition()));
        }
    }
}

/// Produces `records` to `topic` non-transactionally with `acks=all` (keys
/// partitioned by murmur2, as Kafka's Java producer does), flushes, and checks
/// that every single record was acknowledged.
///
/// ```no_run
/// use kstreams_testkit::{produce, TestRecord};
/// produce("127.0.0.1:9092", "words", &[TestRecord::kv("a", "1"), TestRecord::value("b")])?;
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn produce(bootstrap: &str, topic: &str, records: &[TestRecord]) -> Result<()> {
    produce_with(bootstrap, topic, records, &[])
}

/// [`produce`] with extra producer settings, e.g. `compression.type`.
///
/// ```no_run
/// use kstreams_testkit::{produce_with, TestRecord};
/// produce_with("127.0.0.1:9092", "words", &[TestRecord::value("a b")], &[("compression.type", "zstd")])?;
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn produce_with(
    bootstrap: &str,
    topic: &str,
    records: &[TestRecord],
    settings: &[(&str, &str)],
) -> Result<()> {
    let mut config = base_config(bootstrap);
    // Keyed records land where a Java producer (and kstreams' own
    // producers) would put them, so joined topics are co-partitioned.
    config
        .set("partitioner", "murmur2_random")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let producer: BaseProducer<DeliveryCollector> = config
        .create_with_context(DeliveryCollector {
            delivered: Mutex::new((0, Vec::new())),
        })
        .map_err(|e| Error::kafka("creating a producer", e))?;
    for r in records {
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(p) = r.partition {
            rec = rec.partition(p);
        }
        if let Some(ts) = r.timestamp {
            rec = rec.timestamp(ts);
        }
        if !r.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_slice()),
                });
            }
            rec = rec.headers(headers);
        }
        let mut rec = rec;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    rec = back;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    return Err(Error::kafka(format!("producing to topic {topic:?}"), e));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(TIMEOUT)
        .map_err(|e| Error::kafka(format!("flushing records to topic {topic:?}"), e))?;
    let d = producer
        .context()
        .delivered
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let failed = d.1.len() + records.len().saturating_sub(d.0);
    if failed > 0 {
        return Err(Error::Delivery {
            topic: topic.to_string(),
            failed,
            total: records.len(),
            first_error: d
                .1
                .first()
                .cloned()
                .unwrap_or_else(|| "no delivery report received".into()),
        });
    }
    Ok(())
}

/// Reads every partition of `topic` from the beginning to its current end and returns the
/// records ordered by (partition, offset).
///
/// The end is the high watermark for [`Isolation::ReadUncommitted`] and the last stable
/// offset for [`Isolation::ReadCommitted`], taken when the call starts. Uses a manually
/// assigned consumer without a group, so it commits nothing and can be called any number
/// of times.
///
/// ```no_run
/// use kstreams_testkit::{read_to_end, Isolation};
/// let records = read_to_end("127.0.0.1:9092", "counts", Isolation::ReadCommitted)?;
/// let values: Vec<String> = records.iter().filter_map(|r| r.value_str()).collect();
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn read_to_end(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
) -> Result<Vec<ConsumedRecord>> {
    let partitions = partition_count(bootstrap, topic)?.ok_or_else(|| {
        Error::kafka(
            format!("reading topic {topic:?}"),
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
        )
    })? as i32;
    // librdkafka needs a group.id even for manual assignment; the group never joins
    // (no subscribe) and nothing is committed.
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", unique_name("kstreams-testkit-reader"))
        .set("isolation.level", isolation.as_config())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| Error::kafka("creating a reader", e))?;

    // End offsets: fetch_watermarks uses the consumer's isolation level, so for
    // read_committed the "high" value is the last stable offset.
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    // Right after a broker (re)start a partition may have no leader yet
    // (NotLeaderForPartition): retry until the deadline.
    let deadline = Instant::now() + TIMEOUT;
    for p in 0..partitions {
        let (low, high) = loop {
            match consumer.fetch_watermarks(topic, p, TIMEOUT) {
                Ok(w) => break w,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(Error::kafka(
                        format!("fetching end offsets of {topic:?}/{p}"),
                        e,
                    ));
                }
            }
        };
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| Error::kafka("building an assignment", e))?;
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(format!("assigning {topic:?}"), e))?;

    let mut done: HashSet<i32> = HashSet::new();
    // The deadline moves on while records arrive: a large topic takes as
    // long as it takes; a read that makes no progress for TIMEOUT fails.
    let mut deadline = Instant::now() + TIMEOUT;
    while done.len() < ends.len() {
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "reading topic {topic:?} to its end offsets {ends:?} ({} records so far)",
                    out.len()
                ),
                timeout: TIMEOUT,
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                deadline = Instant::now() + TIMEOUT;
                if m.offset() + 1 >= ends[&m.partition()] {
                    done.insert(m.partition());
                }
                if m.offset() < ends[&m.partition()] {
                    out.push(ConsumedRecord {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        timestamp: m.timestamp().to_millis(),
                        headers: m
                            .headers()
                            .map(|hs| {
                                hs.iter()
                                    .map(|h| {
                                        (h.key.to_string(), h.value.unwrap_or_default().to_vec())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
            }
            // Reached the end of a partition as seen by this consumer (the LSO for
            // read_committed), which is at or past the end offset taken above.
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p);
            }
            Some(Err(e)) => return Err(Error::kafka(format!("reading topic {topic:?}"), e)),
        }
        // Control records (transaction markers) and aborted records are skipped by the
        // consumer, so also look at the position, not only at delivered records.
        if let Ok(pos) = consumer.position() {
            for e in pos.elements() {
                if let (Offset::Offset(o), Some(end)) = (e.offset(), ends.get(&e.partition()))
                    && o >= *end
                {
                    done.insert(e.partition());
                }
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// The offsets committed by consumer group `group_id` for `topic`, by partition
/// (partitions without a committed offset are absent).
///
/// ```no_run
/// let offsets = kstreams_testkit::committed_offsets("127.0.0.1:9092", "my-app", "input")?;
/// let total: i64 = offsets.values().sum();
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub fn committed_offsets(
    bootstrap: &str,
    group_id: &str,
    topic: &str,
) -> Result<HashMap<i32, i64>> {
    let partitions = partition_count(bootstrap, topic)?.unwrap_or(0) as i32;
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| Error::kafka("creating an offsets client", e))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT).map_err(|e| {
        Error::kafka(
            format!("fetching committed offsets of group {group_id:?} for {topic:?}"),
            e,
        )
    })?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}
