//! `TaskManager`: a thread's tasks, created, suspended, resumed and closed
//! as the group's assignment changes, and committed. Under exactly-once each
//! task's transaction commits on a commit worker (`commit_workers.rs`) while the
//! stream thread goes on processing (`commit_eos` explains how a task's
//! work is kept apart from the transaction still committing).
//!
//! Eager rebalancing revokes everything, so a plain implementation would
//! close and re-open (and re-restore) every task on every rebalance. Instead
//! revoked tasks are committed and *suspended*: their stores stay open. When
//! the new assignment comes, suspended tasks that came back are resumed
//! without restoring; the rest are closed, their state kept on disk for
//! later.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};

mod cadence;
mod commit;
#[cfg(test)]
mod commit_tests;
mod commit_workers;
mod lifecycle;
mod reconcile;
mod recovery;
mod standby;
mod txn_steps;

use recovery::*;
use txn_steps::*;

use super::ThreadMetrics;
use super::assignment::{TopicPlan, tasks_for};
use super::changelog_reader::{ChangelogReader, RestoreTarget};
use super::client_fault::FaultSlot;
use super::client_log::ClientErrorLog;
use super::config::{ProcessingGuarantee, StreamsConfig};
use super::record_collector::{
    CollectorContext, Deferred, DeliveryTracker, KafkaRecordCollector, RecordSink, TaskProducer,
    TaskSender, TxnErrorKind,
};
use super::streams_producer::{
    ABORT_RETRY_FOR, PARTITIONER, TaskProducerParts, abort_polling, flush_promptly,
    retry_retriable, serve_delivery_reports, transactional_producer,
};
use super::txn_producer::{GroupHandle, TxnError, TxnProducer, TxnResult};
use crate::TaskId;
use crate::error::{Result, StreamsError};
use crate::record::Headers;
use crate::state::SealedState;
use crate::task::{StreamTask, TaskConfig};
use crate::topology::Topology;

/// How often the stream thread serves its producers' delivery reports
/// (`TaskManager::poll_producers`).
const PRODUCER_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How much a task may hold back while its transaction commits before the
/// stream thread waits for that commit.
const MAX_DEFERRED_BYTES: usize = 32 << 20;

/// Everything the tasks of all threads share.
pub(crate) struct RuntimeShared {
    pub config: StreamsConfig,
    pub topology: Arc<Topology>,
    pub plan: TopicPlan,
    pub base_client: ClientConfig,
    /// The first client error no retry can fix (see `client_fault.rs`).
    pub faults: Arc<FaultSlot>,
    /// `group.protocol=streams`: how each thread's member joins (its
    /// `client_id` is set per thread).
    pub member: Option<super::streams_group::MemberConfig>,
}

struct ActiveTask {
    task: StreamTask,
    producer: Arc<TaskProducer>,
    partitions: Vec<(String, i32)>,
    /// Whether this task's transaction is open (EOS only).
    in_txn: bool,
    /// When the current run of aborted transactions began (none since the
    /// last successful commit: `None`). A run longer than
    /// `task.timeout.ms` means the error is not going away.
    aborting_since: Option<Instant>,
    /// Sends through `producer` by topic handle.
    sender: Rc<TaskSender>,
    /// Records the task emits while its transaction commits (EOS).
    deferred: Rc<Deferred>,
    /// The producer's delivery bookkeeping (changelog checkpoints).
    tracker: Arc<DeliveryTracker>,
    /// The transaction being committed on a commit thread (EOS).
    in_flight: Option<InFlight>,
    /// When this task's last commit began: the next is due a commit
    /// interval later (EOS, `TaskManager::next_commit_due`).
    commit_started: Instant,
    /// A held-back record could not be sent once: from then on this task's
    /// commits are waited for on the stream thread and nothing is held back,
    /// so its records meet the producer (and `production.exception.handler`)
    /// while they are processed.
    no_defer: bool,
    /// The producer left the transaction while the task sent (see
    /// `StreamsError::TransactionAborted`): the task processes nothing more
    /// until `abort_refused` aborts and rewinds it.
    refused: Option<String>,
}

/// A task's transaction, sealed and handed to a commit thread.
struct InFlight {
    handle: commit_workers::JobHandle<CommitStep<TxnTimings>>,
    started: Instant,
    /// Shared with the commit thread (`commit.rs`).
    shared: Arc<CommitShared>,
}

impl ActiveTask {
    fn begin(&mut self) -> Result<()> {
        begin_txn(&*self.producer, &mut self.in_txn, self.task.id)
    }

    /// What the commit steps (`txn_steps.rs`) use of this task.
    fn txn_parts(&mut self) -> TxnParts<'_, TaskSender> {
        TxnParts {
            task: &mut self.task,
            producer: &*self.producer,
            sender: &self.sender,
            deferred: &self.deferred,
            in_txn: &mut self.in_txn,
            no_defer: &mut self.no_defer,
            aborting_since: &mut self.aborting_since,
        }
    }
}

pub(crate) struct TaskManager {
    shared: Arc<RuntimeShared>,
    thread_name: String,
    active: BTreeMap<TaskId, ActiveTask>,
    suspended: BTreeMap<TaskId, ActiveTask>,
    /// Standby tasks (`group.protocol=streams`, `standby.rs`).
    standby: BTreeMap<TaskId, standby::StandbyTask>,
    /// When the standbys catch up next.
    standby_due: Instant,
    by_partition: PartitionIndex,
    restore: ChangelogReader,
    alos_producer: Option<(Arc<TaskProducer>, Arc<DeliveryTracker>)>,
    pub metrics: Arc<ThreadMetrics>,
    /// Set when a task was fenced or could not abort: the thread rejoins the group.
    pub rejoin_requested: bool,
    /// Set while revoked tasks commit: a task fenced then is only closed.
    revoking: bool,
    /// When each task was last re-created after a fence (`recovery.rs`).
    recreated_at: HashMap<TaskId, Instant>,
    purger: Option<super::repartition_purger::RepartitionPurger>,
    /// When `poll_producers` last served the delivery reports.
    last_producer_poll: Instant,
    /// The threads that run the tasks' transaction calls (EOS).
    workers: commit_workers::CommitWorkers,
}

impl TaskManager {
    pub fn new(
        shared: Arc<RuntimeShared>,
        thread_name: String,
        metrics: Arc<ThreadMetrics>,
    ) -> Result<TaskManager> {
        let restore = ChangelogReader::new(
            &shared.base_client,
            shared.config.task_timeout,
            shared.faults.clone(),
            shared.config.background_nice,
        )?;
        let alos_producer = if shared.config.guarantee == ProcessingGuarantee::AtLeastOnce {
            let tracker = Arc::new(DeliveryTracker::default());
            let mut cfg = super::config::producer_client(&shared.base_client);
            cfg.set("enable.idempotence", "true")
                .set("partitioner", PARTITIONER)
                .set("client.id", format!("{thread_name}-producer"));
            let context = CollectorContext {
                tracker: tracker.clone(),
                log: ClientErrorLog::reporting_to(shared.faults.clone()),
            };
            let p: TaskProducer =
                super::priority::created_lowered(shared.config.background_nice, || {
                    cfg.create_with_context(context)
                })
                .map_err(|e| StreamsError::Kafka(format!("cannot create the producer: {e}")))?;
            Some((Arc::new(p), tracker))
        } else {
            None
        };
        let repartition_topics = shared
            .plan
            .internal_topics
            .iter()
            .filter(|t| !t.compacted)
            .map(|t| t.name.clone())
            .collect();
        let purger = super::repartition_purger::RepartitionPurger::new(
            &shared.base_client,
            repartition_topics,
            shared.config.repartition_purge_interval,
            shared.config.background_nice,
        )?;
        Ok(TaskManager {
            purger,
            active: BTreeMap::new(),
            suspended: BTreeMap::new(),
            standby: BTreeMap::new(),
            standby_due: Instant::now(),
            by_partition: PartitionIndex::default(),
            restore,
            alos_producer,
            metrics,
            rejoin_requested: false,
            revoking: false,
            recreated_at: HashMap::new(),
            last_producer_poll: Instant::now(),
            workers: commit_workers::CommitWorkers::new(shared.config.background_nice),
            shared,
            thread_name,
        })
    }

    fn eos(&self) -> bool {
        self.shared.config.guarantee == ProcessingGuarantee::ExactlyOnce
    }

    fn state_dir(&self, id: TaskId) -> PathBuf {
        self.shared
            .config
            .state_dir
            .join(&self.shared.config.application_id)
            .join(id.to_string())
    }

    /// A new assignment: resume, create and restore tasks, then assign the
    /// partitions to the consumer at their committed offsets.
    pub fn on_assign<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) -> Result<()> {
        let started = Instant::now();
        // Normally nothing is committing here (a revocation waited for it).
        self.reap_commits(consumer, true)?;
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let wanted = tasks_for(&self.shared.plan, &parts);
        // Close suspended tasks that did not come back; their state stays on disk.
        let gone: Vec<TaskId> = self
            .suspended
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(mut t) = self.suspended.remove(&id) {
                tracing::info!(thread = %self.thread_name, task = %id, "closing task that moved to another member");
                t.task.close();
                if self.eos() && t.in_txn {
                    let _ = abort_polling(&t.producer, Duration::from_secs(5));
                }
            }
        }
        self.by_partition.clear();
        let start = self.start_tasks(consumer, wanted, tpl)?;
        consumer
            .assign(&start)
            .map_err(|e| StreamsError::Kafka(format!("assign failed: {e}")))?;
        self.metrics.set_active(self.active.keys());
        tracing::info!(thread = %self.thread_name, tasks = ?self.active.keys().map(|t| t.to_string()).collect::<Vec<_>>(),
            elapsed_ms = started.elapsed().as_millis() as u64, "assignment applied");
        Ok(())
    }

    /// Partitions revoked: commit (unless they were lost), suspend, unassign.
    pub fn on_revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        lost: bool,
    ) -> Result<()> {
        if lost {
            tracing::warn!(thread = %self.thread_name, "partitions lost (this member was out of the group); closing tasks without commit");
            self.close_all_dirty();
        } else {
            self.revoking = true;
            let committed = self.commit_all(consumer, true);
            self.revoking = false;
            committed?;
            // Every transaction was committed; nothing is open.
            let active = std::mem::take(&mut self.active);
            self.suspended.extend(active);
        }
        self.metrics.set_active(std::iter::empty());
        self.by_partition.clear();
        let _ = consumer.unassign();
        Ok(())
    }

    fn close_all_dirty(&mut self) {
        let eos = self.eos();
        for (_, mut t) in std::mem::take(&mut self.active)
            .into_iter()
            .chain(std::mem::take(&mut self.suspended))
        {
            join_in_flight(&mut t);
            t.task.close();
            if eos && t.in_txn {
                let _ = abort_polling(&t.producer, Duration::from_secs(5));
            }
        }
        for id in self.standby_ids() {
            self.close_standby(id);
        }
        self.by_partition.clear();
    }

    /// Runs one input record through its task.
    pub fn process(&mut self, m: &BorrowedMessage<'_>) -> Result<()> {
        // Once: rdkafka measures and checks the name as UTF-8 on each call.
        let topic = m.topic();
        let Some(id) = self.by_partition.get(topic, m.partition()) else {
            // A partition whose task was fenced or closed: skip; the next
            // assignment re-reads from the committed offset.
            return Ok(());
        };
        let eos = self.eos();
        let Some(t) = self.active.get_mut(id) else {
            return Ok(());
        };
        if t.refused.is_some() {
            // Re-read after the abort, from the last commit.
            return Ok(());
        }
        let ts = match m.timestamp() {
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
            Timestamp::NotAvailable => now_ms(),
        };
        let headers = match m.headers() {
            None => Headers::default(),
            Some(h) => Headers(
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(|v| v.to_vec()).unwrap_or_default(),
                        )
                    })
                    .collect(),
            ),
        };
        let result = t.task.process(
            topic,
            m.partition(),
            m.offset(),
            ts,
            m.key(),
            m.payload(),
            headers,
        );
        match result {
            Ok(()) => self.metrics.add_processed(1),
            Err(e) if eos && e.is_transaction_aborted() => t.refused = Some(e.to_string()),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Publishes the tasks' figures for metrics and interactive queries
    /// (about once a second; never per record).
    pub fn publish_metrics<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        fn view<'a>(id: &TaskId, t: &'a ActiveTask, active: bool) -> super::metrics::TaskView<'a> {
            super::metrics::TaskView {
                id: *id,
                task: &t.task,
                active,
            }
        }
        super::metrics::publish(
            &self.metrics,
            consumer,
            self.active
                .iter()
                .map(|(id, t)| view(id, t, true))
                .chain(self.suspended.iter().map(|(id, t)| view(id, t, false))),
        );
    }

    pub fn has_tasks(&self) -> bool {
        !self.active.is_empty()
    }

    pub fn commit_requested(&self) -> bool {
        self.active
            .values()
            .any(|t| t.in_flight.is_none() && t.task.commit_requested())
    }

    /// Whether any task's transaction is being committed right now.
    pub fn commits_in_flight(&self) -> bool {
        self.active.values().any(|t| t.in_flight.is_some())
    }

    pub fn punctuate(&mut self, now: i64) -> Result<()> {
        let eos = self.eos();
        for t in self.active.values_mut().filter(|t| t.refused.is_none()) {
            match t.task.punctuate_wall_clock(now) {
                Err(e) if eos && e.is_transaction_aborted() => t.refused = Some(e.to_string()),
                other => other?,
            }
        }
        Ok(())
    }

    /// Serves producer delivery reports, at most every
    /// `PRODUCER_POLL_INTERVAL`.
    ///
    /// Why not on every turn of the thread's loop: with 128 tasks that was
    /// 128 `rd_kafka_poll` calls per turn, each reading the clock a few
    /// times; `clock_gettime` under `poll_producers` was 11.7% of the
    /// process's samples in the 64-partition word count. Nothing waits on
    /// these reports between commits (a commit serves them itself, in
    /// `flush_promptly`); polling only keeps the queue of served reports,
    /// and the records they pin, short.
    pub fn poll_producers(&mut self) {
        if self.last_producer_poll.elapsed() < PRODUCER_POLL_INTERVAL {
            return;
        }
        self.last_producer_poll = Instant::now();
        if let Some((p, _)) = &self.alos_producer {
            serve_delivery_reports(&**p);
        } else {
            for t in self.active.values() {
                serve_delivery_reports(&*t.producer);
            }
        }
    }

    /// Clean shutdown: commit and close everything.
    pub fn shutdown<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let result = self.commit_all(consumer, true);
        for (_, mut t) in std::mem::take(&mut self.active)
            .into_iter()
            .chain(std::mem::take(&mut self.suspended))
        {
            t.task.close();
        }
        for id in self.standby_ids() {
            self.close_standby(id);
        }
        if let Some((p, _)) = &self.alos_producer {
            let _ = p.flush(Duration::from_secs(30));
        }
        result
    }

    pub fn close_dirty(&mut self) {
        self.close_all_dirty();
    }
}

/// Input partition → task, looked up per record without allocating.
#[derive(Default)]
struct PartitionIndex(HashMap<String, HashMap<i32, TaskId>>);

impl PartitionIndex {
    fn get(&self, topic: &str, partition: i32) -> Option<&TaskId> {
        self.0.get(topic)?.get(&partition)
    }
    fn insert(&mut self, (topic, partition): (String, i32), id: TaskId) {
        self.0.entry(topic).or_default().insert(partition, id);
    }
    fn remove(&mut self, (topic, partition): &(String, i32)) {
        if let Some(m) = self.0.get_mut(topic) {
            m.remove(partition);
        }
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A task's input partitions.
type Partitions = Vec<(String, i32)>;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
