//! Start-up checks, internal topics, and partitions → tasks.
//!
//! Why there is no custom assignor: librdkafka cannot plug one in. Every
//! member subscribes to the same topics with the eager `range` strategy,
//! which gives a member the same partition numbers of every topic when the
//! partition counts are equal. So co-partitioned topics land in the same
//! task, provided the counts really are equal; that is checked here, before
//! anything runs, and a mismatch stops start-up with an error naming the
//! topics and counts.
//!
//! This module also decides the partition count of every internal topic
//! (repartition topics: the writer's task count unless fixed; changelogs:
//! the owning sub-topology's task count) and creates missing ones, with
//! changelogs compacted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::client_fault::{FaultSlot, ReportingContext};
use crate::TaskId;
use crate::error::{Result, StreamsError};
use crate::topology::{Subtopology, Topology};

/// An internal topic the application needs.
///
/// ```
/// let t = kstreams_runtime::kafka::InternalTopic {
///     name: "app-counts-changelog".into(),
///     partitions: 6,
///     compacted: true,
/// };
/// assert!(t.compacted);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalTopic {
    /// Full name.
    pub name: String,
    /// Partition count.
    pub partitions: usize,
    /// Whether it is compacted (changelogs).
    pub compacted: bool,
}

/// What start-up decided: task counts and internal topics
/// ([`crate::KafkaStreams::topic_plan`]).
///
/// ```
/// let plan = kstreams_runtime::kafka::TopicPlan::default();
/// assert!(plan.internal_topics.is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct TopicPlan {
    /// Number of tasks (partitions) per sub-topology.
    pub tasks_per_subtopology: BTreeMap<u32, usize>,
    /// Internal topics with their partition counts.
    pub internal_topics: Vec<InternalTopic>,
    /// Resolved source topic → sub-topology.
    pub source_topics: HashMap<String, u32>,
}

impl TopicPlan {
    /// The task that processes `partition` of source `topic`.
    ///
    /// ```
    /// let mut plan = kstreams_runtime::kafka::TopicPlan::default();
    /// plan.source_topics.insert("lines".into(), 0);
    /// assert_eq!(plan.task_for("lines", 3).unwrap().to_string(), "0_3");
    /// assert!(plan.task_for("other", 0).is_none());
    /// ```
    pub fn task_for(&self, topic: &str, partition: i32) -> Option<TaskId> {
        self.source_topics.get(topic).map(|&s| TaskId {
            subtopology: s,
            partition,
        })
    }
}

/// Reads the partition count of every topic in the cluster.
///
/// A client error no retry can fix (bad credentials, an untrusted
/// certificate) ends the wait at once with that error.
pub(crate) fn fetch_partition_counts(
    base: &ClientConfig,
    timeout: Duration,
    faults: &Arc<FaultSlot>,
) -> Result<HashMap<String, usize>> {
    let consumer: BaseConsumer<ReportingContext> = super::config::consumer_client(base)
        .create_with_context(ReportingContext::new("metadata client", faults.clone()))
        .map_err(|e| StreamsError::Kafka(format!("cannot create a metadata client: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(200);
    loop {
        // Serves the client's error events (they reach the context only
        // when it is polled), so a failed handshake is seen.
        let _ = consumer.poll(Duration::ZERO);
        if let Some(fault) = faults.error() {
            return Err(fault);
        }
        let attempt_timeout = Duration::from_secs(5).min(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(500)),
        );
        match consumer.fetch_metadata(None, attempt_timeout) {
            Ok(md) => {
                return Ok(md
                    .topics()
                    .iter()
                    .filter(|t| t.error().is_none() || !t.partitions().is_empty())
                    .map(|t| (t.name().to_string(), t.partitions().len()))
                    .collect());
            }
            Err(e) => {
                if Instant::now() >= deadline {
                    let servers = base.get("bootstrap.servers").unwrap_or("?");
                    return Err(StreamsError::Kafka(format!(
                        "cannot reach Kafka at {servers} after {:?}: {e}. Check bootstrap.servers and that the broker is running \
                         (startup.timeout.ms sets how long to retry)",
                        timeout
                    )));
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Kafka not reachable yet; retrying");
                let _ = consumer.poll(backoff);
                if let Some(fault) = faults.error() {
                    return Err(fault);
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Validates the topology against the cluster and plans internal topics.
pub(crate) fn plan(
    topology: &Topology,
    application_id: &str,
    existing: &HashMap<String, usize>,
) -> Result<TopicPlan> {
    let subs = topology.subtopologies();
    let mut plan = TopicPlan::default();
    let mut missing = Vec::new();
    // External sources fix task counts.
    for s in &subs {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for t in s.source_topics.iter().filter(|t| !t.internal) {
            match existing.get(&t.name) {
                Some(&n) => counts.push((t.name.clone(), n)),
                None => missing.push(t.name.clone()),
            }
        }
        if let Some((_, first)) = counts.first() {
            if counts.iter().any(|(_, n)| n != first) {
                return Err(StreamsError::Config(format!(
                    "co-partitioning mismatch in sub-topology {}: {}. Topics read (or joined) together must have the same \
                     number of partitions; repartition one of them or recreate it with a matching count",
                    s.id,
                    counts
                        .iter()
                        .map(|(t, n)| format!("'{t}' has {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            plan.tasks_per_subtopology.insert(s.id, *first);
        }
        for t in &s.source_topics {
            plan.source_topics.insert(t.resolve(application_id), s.id);
        }
    }
    for s in &subs {
        for t in s.sink_topics.iter().filter(|t| !t.internal) {
            if !existing.contains_key(&t.name) && !missing.contains(&t.name) {
                missing.push(t.name.clone());
            }
        }
    }
    if !missing.is_empty() {
        missing.sort();
        return Err(StreamsError::Config(format!(
            "topic(s) {} do not exist. Create them before starting the application, e.g. \
             kafka-topics.sh --create --topic <name> --partitions <n> --bootstrap-server <host:port>",
            missing
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // A repartition topic read beside external topics (e.g. one side of a
    // join) must be co-partitioned with them: it takes their count.
    let external_tasks = plan.tasks_per_subtopology.clone();
    let reader_tasks: HashMap<String, usize> = subs
        .iter()
        .filter_map(|s| external_tasks.get(&s.id).map(|n| (s, *n)))
        .flat_map(|(s, n)| {
            s.source_topics
                .iter()
                .filter(|t| t.internal)
                .map(move |t| (t.name.clone(), n))
        })
        .collect();
    for (name, n) in &reader_tasks {
        if let Some(fixed) = topology.fixed_repartition_partitions(name)
            && fixed != *n
        {
            return Err(StreamsError::Config(format!(
                "co-partitioning mismatch: repartition topic '{}' is set to {fixed} partitions but is \
                 read together with topics of {n} partitions; use {n} partitions or none",
                format_args!("{application_id}-{name}")
            )));
        }
    }
    // Other repartition topics: fixed count, or the writer's task count;
    // iterate because a writer may itself read a repartition topic.
    let mut repartition: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..=subs.len() {
        let mut changed = false;
        for s in &subs {
            let Some(&tasks) = plan.tasks_per_subtopology.get(&s.id) else {
                continue;
            };
            for t in s.sink_topics.iter().filter(|t| t.internal) {
                let n = topology
                    .fixed_repartition_partitions(&t.name)
                    .or_else(|| reader_tasks.get(&t.name).copied())
                    .unwrap_or(tasks);
                if repartition.insert(t.name.clone(), n) != Some(n) {
                    changed = true;
                }
            }
        }
        for s in &subs {
            if plan.tasks_per_subtopology.contains_key(&s.id) {
                continue;
            }
            let counts: Vec<(String, usize)> = s
                .source_topics
                .iter()
                .filter(|t| t.internal)
                .filter_map(|t| {
                    repartition
                        .get(&t.name)
                        .map(|n| (t.resolve(application_id), *n))
                })
                .collect();
            if counts.len() == s.source_topics.len() && !counts.is_empty() {
                if counts.iter().any(|(_, n)| *n != counts[0].1) {
                    return Err(StreamsError::Config(format!(
                        "co-partitioning mismatch in sub-topology {}: {}",
                        s.id,
                        counts
                            .iter()
                            .map(|(t, n)| format!("'{t}' has {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                plan.tasks_per_subtopology.insert(s.id, counts[0].1);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for s in &subs {
        if !plan.tasks_per_subtopology.contains_key(&s.id) {
            return Err(StreamsError::Topology(format!(
                "cannot determine the partition count of sub-topology {} (sources: {:?})",
                s.id,
                s.source_topics
                    .iter()
                    .map(|t| t.name.clone())
                    .collect::<Vec<_>>()
            )));
        }
    }
    for (name, n) in repartition {
        plan.internal_topics.push(InternalTopic {
            name: format!("{application_id}-{name}"),
            partitions: n,
            compacted: false,
        });
    }
    for s in &subs {
        let tasks = plan.tasks_per_subtopology[&s.id];
        for store in &s.stores {
            if let Some(topic) = topology
                .store_def(store)
                .and_then(|d| d.changelog_topic(application_id))
            {
                plan.internal_topics.push(InternalTopic {
                    name: topic,
                    partitions: tasks,
                    compacted: true,
                });
            }
        }
    }
    // Existing internal topics must already have the right counts.
    for t in &plan.internal_topics {
        if let Some(&n) = existing.get(&t.name)
            && n != t.partitions
        {
            return Err(StreamsError::Config(format!(
                "internal topic '{}' has {n} partitions but this topology needs {}. The input partition count changed \
                     or another application uses the same application.id. Delete the internal topic (and the state \
                     directory) to reset the application, or use a new application.id",
                t.name, t.partitions
            )));
        }
    }
    Ok(plan)
}

/// The topic configs Kafka Streams gives its internal topics, before the
/// user's `topic.*` overrides. `min.insync.replicas` is not set: it comes
/// from the broker, as in Kafka Streams.
pub(crate) fn internal_topic_configs(
    topic: &InternalTopic,
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut c: BTreeMap<String, String> = BTreeMap::new();
    c.insert("message.timestamp.type".into(), "CreateTime".into());
    if topic.compacted {
        c.insert("cleanup.policy".into(), "compact".into());
    } else {
        // Repartition topics: no time-based retention (old event
        // timestamps would be deleted before they are read); the
        // RepartitionPurger deletes what was consumed, and small segments
        // let it free space soon.
        c.insert("cleanup.policy".into(), "delete".into());
        c.insert("retention.ms".into(), "-1".into());
        c.insert("segment.bytes".into(), "52428800".into());
    }
    for (k, v) in overrides {
        c.insert(k.clone(), v.clone());
    }
    c
}

/// Creates the internal topics that do not exist yet and waits until the
/// cluster reports them. A `replication.factor` above the number of
/// brokers fails with an error that says so.
pub(crate) fn create_internal_topics(
    base: &ClientConfig,
    plan: &TopicPlan,
    existing: &HashMap<String, usize>,
    config: &super::StreamsConfig,
    timeout: Duration,
    faults: &Arc<FaultSlot>,
) -> Result<()> {
    let replication_factor = config.replication_factor.unwrap_or(-1);
    let to_create: Vec<&InternalTopic> = plan
        .internal_topics
        .iter()
        .filter(|t| !existing.contains_key(&t.name))
        .collect();
    if to_create.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<ReportingContext> = super::config::producer_client(base)
        .create_with_context(ReportingContext::new("admin client", faults.clone()))
        .map_err(|e| StreamsError::Kafka(format!("cannot create an admin client: {e}")))?;
    let configs: Vec<BTreeMap<String, String>> = to_create
        .iter()
        .map(|t| internal_topic_configs(t, &config.internal_topic_overrides))
        .collect();
    let new_topics: Vec<NewTopic<'_>> = to_create
        .iter()
        .zip(&configs)
        .map(|(t, configs)| {
            configs.iter().fold(
                NewTopic::new(
                    &t.name,
                    t.partitions as i32,
                    TopicReplication::Fixed(replication_factor),
                ),
                |nt, (k, v)| nt.set(k, v),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StreamsError::Kafka(format!("cannot start the admin runtime: {e}")))?;
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let results = rt
        .block_on(admin.create_topics(new_topics.iter(), &opts))
        .map_err(|e| StreamsError::Kafka(format!("creating internal topics failed: {e}")))?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created internal topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "internal topic exists")
            }
            Err((name, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                let brokers = admin
                    .inner()
                    .fetch_metadata(None, Duration::from_secs(5))
                    .map(|m| m.brokers().len().to_string())
                    .unwrap_or_else(|_| "fewer".into());
                return Err(StreamsError::Config(format!(
                    "cannot create internal topic '{name}': replication.factor={} is larger than \
                     the cluster, which has {brokers} broker(s). Set replication.factor to at most \
                     the number of brokers (-1 uses the broker's default.replication.factor)",
                    config
                        .replication_factor
                        .map_or("-1 (the broker default)".to_string(), |n| n.to_string())
                )));
            }
            Err((name, code)) => {
                if let Some(fault) = faults.error() {
                    return Err(fault);
                }
                return Err(StreamsError::Kafka(format!(
                    "cannot create internal topic '{name}': {code}"
                )));
            }
        }
    }
    // Wait until metadata shows them with all partitions.
    let deadline = Instant::now() + timeout;
    loop {
        let counts = fetch_partition_counts(base, timeout, faults)?;
        if to_create
            .iter()
            .all(|t| counts.get(&t.name) == Some(&t.partitions))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(StreamsError::Kafka(
                "internal topics were created but do not appear in metadata".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Groups assigned partitions into tasks.
pub(crate) fn tasks_for(
    plan: &TopicPlan,
    partitions: &[(String, i32)],
) -> BTreeMap<TaskId, Vec<(String, i32)>> {
    let mut out: BTreeMap<TaskId, Vec<(String, i32)>> = BTreeMap::new();
    for (t, p) in partitions {
        if let Some(id) = plan.task_for(t, *p) {
            out.entry(id).or_default().push((t.clone(), *p));
        }
    }
    out
}

#[allow(dead_code)]
pub(crate) fn subtopology(subs: &[Subtopology], id: u32) -> Option<&Subtopology> {
    subs.iter().find(|s| s.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(compacted: bool) -> InternalTopic {
        InternalTopic {
            name: "app-x".into(),
            partitions: 3,
            compacted,
        }
    }

    #[test]
    fn internal_topics_get_kafka_streams_configs_and_user_overrides_win() {
        let none = BTreeMap::new();
        let changelog = internal_topic_configs(&topic(true), &none);
        assert_eq!(changelog["cleanup.policy"], "compact");
        assert_eq!(changelog["message.timestamp.type"], "CreateTime");
        assert!(!changelog.contains_key("retention.ms"));
        assert!(!changelog.contains_key("min.insync.replicas"));
        let repartition = internal_topic_configs(&topic(false), &none);
        assert_eq!(repartition["cleanup.policy"], "delete");
        assert_eq!(repartition["retention.ms"], "-1");
        assert_eq!(repartition["segment.bytes"], "52428800");
        let overrides: BTreeMap<String, String> = [
            ("segment.bytes".to_string(), "1048576".to_string()),
            ("min.insync.replicas".to_string(), "2".to_string()),
        ]
        .into();
        let r = internal_topic_configs(&topic(false), &overrides);
        assert_eq!(r["segment.bytes"], "1048576");
        assert_eq!(r["min.insync.replicas"], "2");
        assert_eq!(
            internal_topic_configs(&topic(true), &overrides)["cleanup.policy"],
            "compact"
        );
    }
}
