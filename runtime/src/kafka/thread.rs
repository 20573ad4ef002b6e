//! `StreamThread`: one consumer-group member and the loop that drives its tasks.
//!
//! The loop is synchronous and hot: poll a record, run it through its task,
//! repeat; every `commit.interval.ms` commit all tasks. librdkafka's own
//! threads do the network I/O underneath.
//!
//! Rebalances: librdkafka reports them inside `poll`, in a callback. The
//! callback only records the event; the loop handles it right after `poll`
//! returns (commit and suspend on revoke, create and restore on assign) and
//! then completes it with `assign`/`unassign`. librdkafka waits for that
//! call, so no record of a revoked partition is processed after its commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};

use super::ThreadMetrics;
use super::streams_group::{Member, MemberEvent, Tasks};
use super::task_manager::{RuntimeShared, TaskManager, now_ms};
use crate::error::{Result, StreamsError};

enum RebalanceEvent {
    Assign(TopicPartitionList),
    Revoke { lost: bool },
}

/// The consumer context: queues rebalance events for the thread's loop.
pub(crate) struct ThreadContext {
    events: Mutex<Vec<RebalanceEvent>>,
    closing: AtomicBool,
    log: super::client_log::ClientErrorLog,
}

impl ClientContext for ThreadContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.log("consumer", &error, reason);
    }
}

impl ConsumerContext for ThreadContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if self.closing.load(Ordering::SeqCst) {
            // Leaving the group: just complete the protocol.
            let _ = consumer.unassign();
            return;
        }
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.events
                    .lock()
                    .unwrap()
                    .push(RebalanceEvent::Assign(tpl.clone()));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                self.events
                    .lock()
                    .unwrap()
                    .push(RebalanceEvent::Revoke { lost });
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; unassigning");
                let _ = consumer.unassign();
            }
        }
    }
}

/// The stream consumer's prefetch per partition unless configured.
const STREAM_QUEUED_MIN_MESSAGES: &str = "20000";
/// How soon the stream consumer fetches again after its queue was full,
/// unless configured (librdkafka: 1000 ms).
const STREAM_FETCH_QUEUE_BACKOFF_MS: &str = "5";

pub(crate) struct StreamThread {
    name: String,
    shared: Arc<RuntimeShared>,
    consumer: BaseConsumer<ThreadContext>,
    tasks: TaskManager,
    shutdown: Arc<AtomicBool>,
    metrics: Arc<ThreadMetrics>,
    /// `group.protocol=streams`: this thread's group member (started by
    /// `run`); `None` under the classic protocol.
    member: Option<Member>,
}

impl StreamThread {
    pub fn new(
        index: usize,
        shared: Arc<RuntimeShared>,
        shutdown: Arc<AtomicBool>,
        metrics: Arc<ThreadMetrics>,
    ) -> Result<Self> {
        let cfg = &shared.config;
        let name = Self::thread_name(&cfg.application_id, index);
        let mut cc = super::config::consumer_client(&shared.base_client);
        cc.set("group.id", &cfg.application_id)
            // Carries application.server to the other instances (see
            // interactive_queries.rs).
            .set(
                "client.id",
                super::interactive_queries::client_id_with_server(
                    &format!("{name}-consumer"),
                    cfg.application_server.as_deref(),
                ),
            )
            .set("partition.assignment.strategy", "range")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                cfg.passthrough
                    .get("auto.offset.reset")
                    .map_or("earliest", String::as_str),
            )
            .set(
                "isolation.level",
                if cfg.guarantee == super::ProcessingGuarantee::ExactlyOnce {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            );
        // librdkafka prefetches up to 100000 records per partition (64 MiB
        // per consumer), all of a pre-loaded input: at 2M orders that was a
        // fifth of the job's memory. A smaller prefetch only stalls the
        // thread if the fetcher waits its default 1 s after finding the
        // queue full, so it checks again after 5 ms (run 41-43 in
        // benches/RESULTS.md: same throughput, 0.79x the peak RSS together
        // with the smaller RocksDB budget). Both can be configured.
        for (key, value) in [
            ("queued.min.messages", STREAM_QUEUED_MIN_MESSAGES),
            ("fetch.queue.backoff.ms", STREAM_FETCH_QUEUE_BACKOFF_MS),
        ] {
            if !cfg.passthrough.contains_key(key) {
                cc.set(key, value);
            }
        }
        let context = ThreadContext {
            events: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            log: super::client_log::ClientErrorLog::reporting_to(shared.faults.clone()),
        };
        let consumer: BaseConsumer<ThreadContext> =
            super::priority::created_lowered(shared.config.background_nice, || {
                cc.create_with_context(context)
            })
            .map_err(|e| StreamsError::Kafka(format!("cannot create the consumer: {e}")))?;
        let tasks = TaskManager::new(shared.clone(), name.clone(), metrics.clone())?;
        Ok(StreamThread {
            name,
            shared,
            consumer,
            tasks,
            shutdown,
            metrics,
            member: None,
        })
    }

    pub fn thread_name(application_id: &str, index: usize) -> String {
        format!("{application_id}-StreamThread-{}", index + 1)
    }

    fn handle_events(&mut self) -> Result<bool> {
        if let Some(member) = &self.member {
            let events = member.take_events();
            let had = !events.is_empty();
            let _span =
                had.then(|| tracing::info_span!("rebalance", thread = %self.name).entered());
            for ev in events {
                match ev {
                    MemberEvent::Assigned(tasks) => {
                        self.metrics.rebalance_started();
                        let owned = self.tasks.on_tasks_assigned(&self.consumer, &tasks)?;
                        member.report_owned(owned);
                        self.metrics.rebalance_finished();
                    }
                    MemberEvent::Lost(why) => {
                        tracing::warn!(thread = %self.name, reason = %why, "membership lost; closing every task without committing");
                        self.tasks.on_tasks_lost(&self.consumer);
                        member.report_owned(Tasks::default());
                    }
                    MemberEvent::Fatal(why) => {
                        return Err(StreamsError::Kafka(format!(
                            "group membership failed: {why}"
                        )));
                    }
                }
            }
            return Ok(had);
        }
        let events: Vec<RebalanceEvent> =
            std::mem::take(&mut *self.consumer.context().events.lock().unwrap());
        let had = !events.is_empty();
        let _span = had.then(|| tracing::info_span!("rebalance", thread = %self.name).entered());
        for ev in events {
            match ev {
                RebalanceEvent::Revoke { lost } => {
                    self.metrics.rebalance_started();
                    self.tasks.on_revoke(&self.consumer, lost)?;
                }
                RebalanceEvent::Assign(tpl) => {
                    self.tasks.on_assign(&self.consumer, &tpl)?;
                    self.metrics.rebalance_finished();
                }
            }
        }
        Ok(had)
    }

    /// Leaves and re-joins the group (after a task was fenced), so the
    /// group decides again who owns which task.
    fn rejoin(&mut self) -> Result<()> {
        tracing::warn!(thread = %self.name, "rejoining the consumer group");
        self.tasks.rejoin_requested = false;
        if let Some(member) = &self.member {
            self.tasks.on_tasks_lost(&self.consumer);
            member.rejoin();
            return Ok(());
        }
        self.consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(50)) {
                self.tasks.process(&m)?;
            }
            self.handle_events()?;
            if !self.tasks.has_tasks()
                && self
                    .consumer
                    .assignment()
                    .map(|a| a.count() == 0)
                    .unwrap_or(true)
            {
                break;
            }
        }
        let topics: Vec<String> = self.shared.plan.source_topics.keys().cloned().collect();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topic_refs)
            .map_err(|e| StreamsError::Kafka(format!("subscribe failed: {e}")))
    }

    /// Runs until shutdown is requested or a fatal error happens.
    pub fn run(mut self) -> Result<()> {
        let topics: Vec<String> = self.shared.plan.source_topics.keys().cloned().collect();
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Some(cfg) = &self.shared.member {
            let mut cfg = cfg.clone();
            cfg.client_id = format!("{}-consumer", self.name);
            self.member = Some(Member::start(cfg).map_err(|e| {
                StreamsError::IllegalState(format!("cannot spawn the heartbeat thread: {e}"))
            })?);
        } else {
            self.consumer
                .subscribe(&topic_refs)
                .map_err(|e| StreamsError::Kafka(format!("subscribe failed: {e}")))?;
        }
        tracing::info!(thread = %self.name, topics = ?topics, "started");
        // Joining the group is the first rebalance.
        self.metrics.rebalance_started();
        let result = self.run_loop();
        // Leave the group cleanly in every case.
        match &result {
            Ok(()) => {
                if let Err(e) = self.tasks.shutdown(&self.consumer) {
                    tracing::error!(thread = %self.name, error = %e, "commit during shutdown failed");
                }
            }
            Err(_) => self.tasks.close_dirty(),
        }
        if let Some(member) = self.member.take() {
            // A leaving heartbeat: the coordinator moves the tasks at once.
            member.close();
            let _ = self.consumer.unassign();
            tracing::info!(thread = %self.name, "stopped");
            return result;
        }
        self.consumer
            .context()
            .closing
            .store(true, Ordering::SeqCst);
        self.consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && !self
                .consumer
                .assignment()
                .map(|a| a.count() == 0)
                .unwrap_or(true)
        {
            let _ = self.consumer.poll(Duration::from_millis(50));
        }
        tracing::info!(thread = %self.name, "stopped");
        result
    }

    fn run_loop(&mut self) -> Result<()> {
        let commit_interval = self.shared.config.commit_interval;
        let eos = self.shared.config.guarantee == super::ProcessingGuarantee::ExactlyOnce;
        let mut last_commit = Instant::now();
        let mut last_punctuate = Instant::now();
        let mut last_publish = Instant::now();
        let errors = super::client_log::ErrorThrottle::default();
        while !self.shutdown.load(Ordering::SeqCst) {
            let mut polled = 0usize;
            // A finished commit releases its task's held-back records: do
            // not sleep long in poll while one is running, nor past the next
            // task's commit deadline.
            let mut timeout = if self.tasks.commits_in_flight() {
                Duration::from_millis(2)
            } else {
                let idle = Duration::from_millis(50);
                match (eos, self.tasks.next_commit_due()) {
                    (true, Some(due)) => {
                        whole_millis(due.saturating_duration_since(Instant::now())).min(idle)
                    }
                    _ => idle,
                }
            };
            while polled < 1000 {
                match self.consumer.poll(timeout) {
                    None => break,
                    Some(Ok(m)) => {
                        self.tasks.process(&m)?;
                        polled += 1;
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) if self.shared.faults.check("consumer", &e, "") => break,
                    Some(Err(e)) if self.consumer.client().fatal_error().is_some() => {
                        // librdkafka will not recover this consumer (e.g. its
                        // group.instance.id was taken over): stop the thread.
                        let (code, reason) = self
                            .consumer
                            .client()
                            .fatal_error()
                            .map(|(c, r)| (format!("{c:?}"), r))
                            .unwrap_or_default();
                        return Err(StreamsError::Kafka(format!(
                            "the consumer failed for good ({code}: {reason}; last error: {e}). \
                             If another instance uses the same group.instance.id, give each \
                             instance its own"
                        )));
                    }
                    Some(Err(e)) => {
                        // During a broker outage librdkafka reports the same
                        // few errors many times a second; log each kind once
                        // per interval.
                        let text = e.to_string();
                        if let Some(repeated) = errors.admit(&text) {
                            tracing::warn!(thread = %self.name, error = %text, repeated, "consumer error (librdkafka keeps retrying)");
                        }
                        break;
                    }
                }
                timeout = Duration::ZERO;
                if !self.consumer.context().events.lock().unwrap().is_empty() {
                    break;
                }
            }
            // A client error no retry can fix (bad credentials, an
            // untrusted certificate, a missing ACL, a codec the build
            // lacks): stop without committing, rather than warn for ever.
            if let Some(fault) = self.shared.faults.error() {
                return Err(fault);
            }
            if self.handle_events()? {
                last_commit = Instant::now();
            }
            if self.tasks.rejoin_requested {
                self.rejoin()?;
                last_commit = Instant::now();
            }
            if last_punctuate.elapsed() >= Duration::from_millis(100) {
                self.tasks.punctuate(now_ms())?;
                last_punctuate = Instant::now();
            }
            if last_publish.elapsed() >= Duration::from_secs(1) {
                self.tasks.publish_metrics(&self.consumer);
                last_publish = Instant::now();
            }
            self.tasks.poll_producers();
            self.tasks.update_standbys()?;
            self.tasks.abort_refused(&self.consumer)?;
            self.tasks.reap_commits(&self.consumer, false)?;
            // Exactly-once: each task commits on its own deadline
            // (`TaskManager::next_commit_due`); at-least-once: all of them,
            // once per interval.
            let due = if eos {
                self.tasks
                    .next_commit_due()
                    .is_some_and(|d| d <= Instant::now())
            } else {
                last_commit.elapsed() >= commit_interval || self.tasks.commit_requested()
            };
            if due {
                self.tasks.commit_all(&self.consumer, false)?;
                last_commit = Instant::now();
            }
        }
        Ok(())
    }
}

/// `d` rounded up to whole milliseconds.
///
/// Why: rdkafka hands librdkafka a poll's remaining time in whole
/// milliseconds, rounded down, and polls again until the time is up, so a
/// poll for 1.6 ms blocks for 1 ms and then spins for the rest; a wait of
/// less than 1 ms spun whole. Whole milliseconds block throughout.
fn whole_millis(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::whole_millis;
    use std::time::Duration;

    #[test]
    fn poll_timeouts_are_whole_milliseconds_rounded_up() {
        assert_eq!(whole_millis(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            whole_millis(Duration::from_micros(1)),
            Duration::from_millis(1)
        );
        assert_eq!(
            whole_millis(Duration::from_micros(1600)),
            Duration::from_millis(2)
        );
        assert_eq!(
            whole_millis(Duration::from_millis(7)),
            Duration::from_millis(7)
        );
    }
}
