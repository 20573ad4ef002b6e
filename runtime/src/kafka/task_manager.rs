//! `TaskManager`: a thread's tasks, created, suspended, resumed and closed
//! as the group's assignment changes, and committed. Under exactly-once each
//! task's transaction commits on a short-lived commit thread while the
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

use super::ThreadMetrics;
use super::assignment::{TopicPlan, tasks_for};
use super::changelog_reader::{ChangelogReader, RestoreTarget};
use super::client_fault::FaultSlot;
use super::client_log::ClientErrorLog;
use super::config::{ProcessingGuarantee, StreamsConfig};
use super::record_collector::{
    CollectorContext, Deferred, DeliveryTracker, KafkaRecordCollector, TaskProducer, TaskSender,
    TxnErrorKind, classify,
};
use crate::TaskId;
use crate::error::{Result, StreamsError};
use crate::record::Headers;
use crate::state::SealedState;
use crate::task::{StreamTask, TaskConfig};
use crate::topology::Topology;

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// One `abort_transaction` attempt, and how long a failing abort is retried
/// before the task is closed and re-created instead.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);
const ABORT_RETRY_FOR: Duration = Duration::from_secs(20);
/// How much a task may hold back while its transaction commits before the
/// stream thread waits for that commit.
const MAX_DEFERRED_BYTES: usize = 32 << 20;

/// Kafka's Java default: murmur2 of the key, so keyed records land where a
/// Java producer would put them (co-partitioning with Java-filled topics).
const PARTITIONER: &str = "murmur2_random";

/// Everything the tasks of all threads share.
pub(crate) struct RuntimeShared {
    pub config: StreamsConfig,
    pub topology: Arc<Topology>,
    pub plan: TopicPlan,
    pub base_client: ClientConfig,
    /// The first client error no retry can fix (see `client_fault.rs`).
    pub faults: Arc<FaultSlot>,
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
    /// A held-back record could not be sent once: from then on this task's
    /// commits are waited for on the stream thread and nothing is held back,
    /// so its records meet the producer (and `production.exception.handler`)
    /// while they are processed.
    no_defer: bool,
}

/// A task's transaction, sealed and handed to a commit thread.
struct InFlight {
    handle: std::thread::JoinHandle<CommitStep<TxnTimings>>,
    started: Instant,
}

impl ActiveTask {
    fn begin(&mut self) -> Result<()> {
        if !self.in_txn {
            self.producer.begin_transaction().map_err(|e| {
                StreamsError::Kafka(format!("begin_transaction for task {}: {e}", self.task.id))
            })?;
            self.in_txn = true;
        }
        Ok(())
    }
}

pub(crate) struct TaskManager {
    shared: Arc<RuntimeShared>,
    thread_name: String,
    active: BTreeMap<TaskId, ActiveTask>,
    suspended: BTreeMap<TaskId, ActiveTask>,
    by_partition: PartitionIndex,
    restore: ChangelogReader,
    alos_producer: Option<(Arc<TaskProducer>, Arc<DeliveryTracker>)>,
    pub metrics: Arc<ThreadMetrics>,
    /// Set when a task was fenced or could not abort: the thread rejoins the group.
    pub rejoin_requested: bool,
    purger: Option<super::repartition_purger::RepartitionPurger>,
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
        )?;
        let alos_producer = if shared.config.guarantee == ProcessingGuarantee::AtLeastOnce {
            let tracker = Arc::new(DeliveryTracker::default());
            let mut cfg = super::config::producer_client(&shared.base_client);
            cfg.set("enable.idempotence", "true")
                .set("partitioner", PARTITIONER)
                .set("client.id", format!("{thread_name}-producer"));
            let p: TaskProducer = cfg
                .create_with_context(CollectorContext {
                    tracker: tracker.clone(),
                    log: ClientErrorLog::reporting_to(shared.faults.clone()),
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
        )?;
        Ok(TaskManager {
            purger,
            shared,
            thread_name,
            active: BTreeMap::new(),
            suspended: BTreeMap::new(),
            by_partition: PartitionIndex::default(),
            restore,
            alos_producer,
            metrics,
            rejoin_requested: false,
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

    fn create_task(
        &self,
        id: TaskId,
        partitions: Vec<(String, i32)>,
        made: Option<Result<TaskProducerParts>>,
    ) -> Result<ActiveTask> {
        let cfg = &self.shared.config;
        let sub = self
            .shared
            .topology
            .subtopologies()
            .into_iter()
            .find(|s| s.id == id.subtopology)
            .ok_or_else(|| {
                StreamsError::IllegalState(format!("no sub-topology {}", id.subtopology))
            })?;
        let (producer, tracker) = match (&self.alos_producer, made) {
            (Some((p, t)), _) => (p.clone(), t.clone()),
            (None, Some(made)) => made?,
            (None, None) => transactional_producer(&self.shared, id)?,
        };
        let deferred = Rc::new(Deferred::default());
        let sender = Rc::new(TaskSender::new(producer.clone()));
        let task = StreamTask::new(TaskConfig {
            application_id: cfg.application_id.clone(),
            task_id: id,
            topology: self.shared.topology.clone(),
            subtopology: sub,
            state_dir: Some(self.state_dir(id)),
            collector: Box::new(KafkaRecordCollector {
                sender: sender.clone(),
                tracker: tracker.clone(),
                deferred: deferred.clone(),
            }),
            wall_clock: now_ms(),
            lock_wait: Duration::from_secs(60),
            deserialization_policy: cfg.deserialization_policy.clone(),
            processing_policy: cfg.processing_policy.clone(),
            production_policy: cfg.production_policy.clone(),
            max_write_set_bytes: 64 << 20,
            cache_max_bytes: cfg.cache_max_bytes,
        })?;
        Ok(ActiveTask {
            task,
            producer,
            partitions,
            in_txn: false,
            aborting_since: None,
            sender,
            deferred,
            tracker,
            in_flight: None,
            no_defer: false,
        })
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
        // New tasks' transactional producers are created and initialized
        // at once: each `init_transactions` is a broker round trip (and
        // may wait for a predecessor's transaction to be aborted).
        let mut made: HashMap<TaskId, Result<TaskProducerParts>> = HashMap::new();
        let new_ids: Vec<TaskId> = wanted
            .keys()
            .filter(|id| !self.suspended.contains_key(id))
            .copied()
            .collect();
        if self.eos() && new_ids.len() > 1 {
            let shared = &*self.shared;
            made = std::thread::scope(|s| {
                let running: Vec<_> = new_ids
                    .iter()
                    .map(|&id| (id, s.spawn(move || transactional_producer(shared, id))))
                    .collect();
                running
                    .into_iter()
                    .map(|(id, h)| {
                        let r = h.join().unwrap_or_else(|_| {
                            Err(StreamsError::IllegalState(format!(
                                "creating the producer of task {id} panicked"
                            )))
                        });
                        (id, r)
                    })
                    .collect()
            });
        }
        // Create (or resume) every task first, then restore all their
        // stores together: one restore round for the whole assignment
        // instead of one per store.
        let mut ready: Vec<(TaskId, Partitions, ActiveTask)> = Vec::new();
        for (id, partitions) in wanted {
            let _task_span = tracing::info_span!("task", task = %id).entered();
            let t = match self.suspended.remove(&id) {
                Some(t) => {
                    tracing::info!(thread = %self.thread_name, task = %id, "resuming suspended task");
                    t
                }
                None => {
                    tracing::info!(thread = %self.thread_name, task = %id, "creating task");
                    // Fresh figures (and a fresh identity for the query layer's
                    // read handle on the task's state).
                    self.metrics.reset_task(id);
                    self.create_task(id, partitions.clone(), made.remove(&id))?
                }
            };
            ready.push((id, partitions, t));
        }
        // Always catch up with the changelogs: a no-op for a task that did
        // not move, the tail for one that crashed, everything for a new
        // machine.
        let progress: Vec<_> = ready
            .iter()
            .map(|(id, _, _)| self.metrics.task(*id))
            .collect();
        let stats = {
            let mut targets: Vec<RestoreTarget<'_>> = ready
                .iter_mut()
                .zip(&progress)
                .map(|((_, _, t), p)| RestoreTarget {
                    task: &mut t.task,
                    progress: p,
                })
                .collect();
            self.restore.restore_all(&mut targets)?
        };
        for ((id, partitions, mut t), stats) in ready.into_iter().zip(stats) {
            let _task_span = tracing::info_span!("task", task = %id).entered();
            self.metrics.add_restored(stats.records);
            if stats.records > 0 && t.task.is_initialized() {
                // A resumed task whose stores just changed under it: drop
                // whatever its processors buffered or cached.
                t.task.abort();
            }
            t.task.init()?;
            t.partitions = partitions.clone();
            if self.eos() {
                t.begin()?;
            }
            for p in &partitions {
                self.by_partition.insert(p.clone(), id);
            }
            self.active.insert(id, t);
        }
        // The partitions are assigned at explicit offsets (the committed
        // ones, read here with retries) rather than left for librdkafka to
        // look up: after a broker restart its own lookup can fail once at the
        // request level (e.g. NOT_COORDINATOR) and then never retries, and
        // the partition is never fetched -- the job runs but reads nothing.
        let committed = fetch_committed_offsets(
            consumer,
            tpl,
            self.shared.config.task_timeout,
            &self.thread_name,
        )?;
        let reset = offset_reset(&self.shared.config);
        let mut start = TopicPartitionList::new();
        for (topic, p) in &parts {
            let offset = match committed.get(&(topic.clone(), *p)) {
                Some(&o) => {
                    // Where the partition starts, to rewind after an abort.
                    if let Some(id) = self.by_partition.get(topic, *p)
                        && let Some(t) = self.active.get_mut(id)
                    {
                        t.task.set_committed_offset(topic, *p, o);
                    }
                    Offset::Offset(o)
                }
                None => reset,
            };
            start
                .add_partition_offset(topic, *p, offset)
                .map_err(|e| StreamsError::Kafka(format!("assign failed: {e}")))?;
        }
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
            self.commit_all(consumer, true)?;
            for (id, mut t) in std::mem::take(&mut self.active) {
                if self.eos() {
                    // The transaction was committed; nothing is open.
                    let _ = &mut t;
                }
                self.suspended.insert(id, t);
            }
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
        let Some(t) = self.active.get_mut(id) else {
            return Ok(());
        };
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
        t.task.process(
            topic,
            m.partition(),
            m.offset(),
            ts,
            m.key(),
            m.payload(),
            headers,
        )?;
        self.metrics.add_processed(1);
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
        for t in self.active.values_mut() {
            t.task.punctuate_wall_clock(now)?;
        }
        Ok(())
    }

    /// Serves producer delivery reports.
    pub fn poll_producers(&self) {
        if let Some((p, _)) = &self.alos_producer {
            p.poll(Duration::ZERO);
        } else {
            for t in self.active.values() {
                t.producer.poll(Duration::ZERO);
            }
        }
    }

    /// Commits every active task that has something to commit. Under
    /// exactly-once the transactions are handed to commit threads and this
    /// returns at once unless `wait` (rebalance, shutdown): the tasks go on
    /// processing while they commit (see `commit_eos`).
    pub fn commit_all<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        wait: bool,
    ) -> Result<()> {
        let _span = tracing::info_span!("commit", thread = %self.thread_name).entered();
        let started = Instant::now();
        if self.eos() {
            self.commit_eos(consumer, wait)?;
        } else if self.commit_alos(consumer)? > 0 {
            self.metrics.add_commit(started.elapsed());
        }
        // Also when nothing was committed: the last commits of a finished
        // input may have completed after the previous purge.
        self.maybe_purge();
        Ok(())
    }

    /// Deletes repartition records below the committed offsets (at most
    /// every `repartition.purge.interval.ms`).
    fn maybe_purge(&mut self) {
        if let Some(p) = &mut self.purger {
            p.maybe_purge(
                self.active
                    .values()
                    .flat_map(|t| t.task.committed_offsets()),
            );
        }
    }

    fn commit_alos<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<usize> {
        let Some((producer, tracker)) = self.alos_producer.clone() else {
            return Ok(0);
        };
        let mut tpl = TopicPartitionList::new();
        let mut n = 0;
        for t in self.active.values_mut() {
            if !t.task.commit_needed() {
                continue;
            }
            n += 1;
            t.task.prepare_commit()?;
            for (topic, p, o) in t.task.offsets_to_commit() {
                let _ = tpl.add_partition_offset(&topic, p, Offset::Offset(o));
            }
        }
        if n == 0 {
            return Ok(0);
        }
        producer
            .flush(Duration::from_secs(60))
            .map_err(|e| StreamsError::Kafka(format!("producer flush failed: {e}")))?;
        if let Some(e) = tracker.take_error() {
            return Err(StreamsError::Kafka(e));
        }
        for t in self.active.values_mut() {
            t.task.post_commit()?;
        }
        if tpl.count() > 0 {
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| StreamsError::Kafka(format!("offset commit failed: {e}")))?;
        }
        Ok(n)
    }

    /// Starts the commit of every task that needs one and is not already
    /// committing.
    ///
    /// Why the stream thread does not wait: a transaction's
    /// `send_offsets_to_transaction` + `commit_transaction` is mostly waiting
    /// on the broker (~100 ms here), as long as the commit interval itself.
    /// Waiting for it left the thread idle two thirds of the time. So each
    /// task, on this thread, flushes its caches, sends its changelog records
    /// and seals its write sets and input offsets (`StreamTask::prepare_commit`);
    /// then a commit thread runs the transaction calls while this thread goes
    /// on processing. A committing task's new records are held back
    /// (`Deferred`), its new writes go to fresh write sets on top of the
    /// sealed ones. After the commit the commit thread writes the sealed
    /// write sets into RocksDB; `reap_commits` then finishes the commit on
    /// this thread: the sealed layers are dropped, the next transaction
    /// begins and the held-back records are sent into it. A failed commit drops both
    /// transactions' work and rewinds to the last committed offsets, exactly
    /// as before. A task has at most one transaction committing.
    fn commit_eos<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        wait: bool,
    ) -> Result<usize> {
        if wait {
            self.reap_commits(consumer, true)?;
        }
        let retry_for = self.shared.config.task_timeout;
        let round_started = Instant::now();
        let ids: Vec<TaskId> = self
            .active
            .iter()
            .filter(|(_, t)| t.in_flight.is_none() && t.task.commit_needed())
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let group_metadata = consumer.group_metadata().map(Arc::new);
        for &id in &ids {
            let Some(t) = self.active.get_mut(&id) else {
                continue;
            };
            let job = match prepare_commit_eos(t) {
                Ok((tpl, sealed)) => CommitJob {
                    producer: t.producer.clone(),
                    tracker: t.tracker.clone(),
                    id,
                    tpl,
                    group_metadata: group_metadata.clone(),
                    sealed,
                    retry_for,
                },
                Err(f) => {
                    self.complete_commit(consumer, id, Err(f))?;
                    continue;
                }
            };
            if t.no_defer {
                let r = job.run();
                self.complete_commit(consumer, id, r)?;
                continue;
            }
            t.deferred.hold();
            let nice = self.shared.config.background_nice;
            let handle = std::thread::Builder::new()
                .name(format!("{}-commit-{id}", self.thread_name))
                .spawn(move || {
                    super::priority::lower_this_thread(nice);
                    job.run()
                })
                .map_err(|e| {
                    StreamsError::IllegalState(format!("cannot start a commit thread: {e}"))
                })?;
            t.in_flight = Some(InFlight {
                handle,
                started: Instant::now(),
            });
        }
        tracing::debug!(
            tasks = ids.len(),
            prepare_ms = round_started.elapsed().as_millis() as u64,
            "commit round handed off"
        );
        if wait {
            self.reap_commits(consumer, true)?;
        }
        Ok(ids.len())
    }

    /// Finishes the commits whose threads are done (all of them, waiting,
    /// if `block`). A task that held back more than `MAX_DEFERRED_BYTES`
    /// (a commit that takes long, e.g. retried during a broker outage) is
    /// waited for: held-back records stay bounded.
    pub fn reap_commits<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        block: bool,
    ) -> Result<()> {
        if !self.commits_in_flight() {
            return Ok(());
        }
        let done: Vec<TaskId> = self
            .active
            .iter()
            .filter(|(_, t)| {
                t.in_flight.as_ref().is_some_and(|f| {
                    block || f.handle.is_finished() || t.deferred.bytes() > MAX_DEFERRED_BYTES
                })
            })
            .map(|(id, _)| *id)
            .collect();
        let mut reaped = false;
        for id in done {
            let Some(f) = self.active.get_mut(&id).and_then(|t| t.in_flight.take()) else {
                continue;
            };
            let result = f.handle.join().unwrap_or_else(|_| {
                Err(CommitFailure::Fatal(StreamsError::IllegalState(format!(
                    "the commit of task {id} panicked"
                ))))
            });
            if let Ok(timings) = &result {
                self.metrics.add_commit(f.started.elapsed());
                tracing::debug!(
                    task = %id,
                    send_offsets_ms = timings.send_offsets.as_millis() as u64,
                    commit_ms = timings.commit.as_millis() as u64,
                    reaped_after_ms = f.started.elapsed().as_millis() as u64,
                    "transaction committed"
                );
            }
            let finish_started = Instant::now();
            self.complete_commit(consumer, id, result)?;
            tracing::debug!(task = %id, finish_ms = finish_started.elapsed().as_millis() as u64, "commit finished");
            reaped = true;
        }
        if reaped {
            self.maybe_purge();
        }
        Ok(())
    }

    /// After a task's transaction calls: on success the sealed write sets
    /// become local state, the next transaction begins and the held-back
    /// records go into it; on failure the task aborts and rewinds, or is
    /// closed (fenced), or the thread fails.
    fn complete_commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        id: TaskId,
        result: CommitStep<TxnTimings>,
    ) -> Result<()> {
        let Some(t) = self.active.get_mut(&id) else {
            return Ok(());
        };
        match result.and_then(|timings| finish_commit_eos(t, timings.state_written)) {
            Ok(()) => t.aborting_since = None,
            Err(CommitFailure::Abortable(msg)) => {
                tracing::warn!(task = %id, error = %msg, "transaction aborted; rewinding and reprocessing");
                self.metrics.add_abort();
                t.deferred.discard();
                let since = *t.aborting_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.shared.config.task_timeout {
                    return Err(StreamsError::Kafka(format!(
                        "task {id} has not committed for {}s (task.timeout.ms): every transaction \
                         was aborted and reprocessing fails the same way. Last error: {msg}",
                        since.elapsed().as_secs()
                    )));
                }
                // An abort that cannot finish (e.g. in-flight records of a
                // producer the coordinator already fenced after a broker
                // restart) is not waited out: the task is handed back to
                // the group and re-created with a new producer, whose
                // init_transactions aborts the old transaction.
                if let Err(e) = retry_retriable(
                    "abort_transaction",
                    id,
                    ABORT_RETRY_FOR.min(self.shared.config.task_timeout),
                    || abort_polling(&t.producer, ABORT_TIMEOUT),
                ) {
                    tracing::warn!(task = %id, error = %e, "abort failed; closing the task and rejoining the group");
                    self.close_and_rejoin(id);
                    return Ok(());
                }
                t.in_txn = false;
                let rewound = t.task.abort().into_iter().try_for_each(|(topic, p, o)| {
                    retry_seek(consumer, &topic, p, o, self.shared.config.task_timeout)
                });
                if let Err(e) = rewound {
                    // Going on would skip the aborted records: hand the
                    // task back to the group, which re-reads from the
                    // committed offsets.
                    tracing::warn!(task = %id, error = %e, "cannot rewind after an abort; closing the task and rejoining the group");
                    self.close_and_rejoin(id);
                    return Ok(());
                }
                t.begin()?;
            }
            Err(CommitFailure::Fenced(msg)) => {
                tracing::warn!(task = %id, error = %msg, "task was fenced: another instance owns it now; closing it without commit");
                // Our partitions may still be assigned to us; a rejoin
                // lets the group decide who owns the task now.
                self.close_and_rejoin(id);
            }
            Err(CommitFailure::Fatal(e)) => return Err(e),
        }
        Ok(())
    }

    /// Closes a task without committing and asks the thread to rejoin.
    fn close_and_rejoin(&mut self, id: TaskId) {
        if let Some(mut t) = self.active.remove(&id) {
            join_in_flight(&mut t);
            t.task.close();
            for p in &t.partitions {
                self.by_partition.remove(p);
            }
        }
        self.rejoin_requested = true;
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

enum CommitFailure {
    Abortable(String),
    Fenced(String),
    Fatal(StreamsError),
}

/// A task's input partitions.
type Partitions = Vec<(String, i32)>;

/// The transactional producers' first retry backoff unless configured.
const TXN_RETRY_BACKOFF_MS: &str = "20";

/// A task's transactional producer and its delivery tracker.
type TaskProducerParts = (Arc<TaskProducer>, Arc<DeliveryTracker>);

/// Creates task `id`'s transactional producer (`transactional.id =
/// <application.id>-<task id>`) and calls `init_transactions`, which fences
/// any older producer with that id and aborts its open transaction.
fn transactional_producer(shared: &RuntimeShared, id: TaskId) -> Result<TaskProducerParts> {
    let (cfg, base) = (&shared.config, &shared.base_client);
    let tracker = Arc::new(DeliveryTracker::default());
    let mut pc = super::config::producer_client(base);
    pc.set("transactional.id", format!("{}-{id}", cfg.application_id))
        .set("enable.idempotence", "true")
        .set("partitioner", PARTITIONER)
        .set(
            "transaction.timeout.ms",
            cfg.passthrough
                .get("transaction.timeout.ms")
                .cloned()
                .unwrap_or_else(|| default_transaction_timeout_ms(cfg).to_string()),
        )
        .set("client.id", format!("{}-{id}-producer", cfg.application_id));
    // Right after a commit the coordinator is still writing the markers,
    // and the next transaction's first AddPartitionsToTxn is answered
    // CONCURRENT_TRANSACTIONS. librdkafka retries it after
    // `retry.backoff.ms` (default 100 ms), which put a 100 ms stall into
    // every commit interval; the Java client uses 20 ms for this case, so
    // do we unless configured.
    if !cfg.passthrough.contains_key("retry.backoff.ms") {
        pc.set("retry.backoff.ms", TXN_RETRY_BACKOFF_MS);
    }
    let p: TaskProducer = pc
        .create_with_context(CollectorContext {
            tracker: tracker.clone(),
            log: ClientErrorLog::reporting_to(shared.faults.clone()),
        })
        .map_err(|e| {
            StreamsError::Kafka(format!("cannot create the producer of task {id}: {e}"))
        })?;
    let retry_for = cfg.task_timeout;
    retry_retriable_unless(
        Some(&shared.faults),
        "init_transactions",
        id,
        retry_for,
        || p.init_transactions(TXN_TIMEOUT),
    )
    .map_err(|e| match shared.faults.error() {
        Some(fault) => fault,
        None => StreamsError::Kafka(format!("init_transactions for task {id} failed: {e}")),
    })?;
    Ok((Arc::new(p), tracker))
}

type CommitStep<T> = std::result::Result<T, CommitFailure>;

fn kafka_failure(id: TaskId, what: &str, e: rdkafka::error::KafkaError) -> CommitFailure {
    let msg = format!("{what} for task {id}: {e}");
    match classify(&e) {
        TxnErrorKind::Abortable => CommitFailure::Abortable(msg),
        TxnErrorKind::Fenced => CommitFailure::Fenced(msg),
        TxnErrorKind::Fatal => CommitFailure::Fatal(StreamsError::Kafka(msg)),
    }
}

/// EOS commit, step 1 (stream thread): flush caches, seal; returns the
/// input offsets to commit and the sealed write sets.
fn prepare_commit_eos(t: &mut ActiveTask) -> CommitStep<(TopicPartitionList, SealedState)> {
    let sealed = t.task.prepare_commit_sealed().map_err(|e| match e {
        StreamsError::Kafka(m) => CommitFailure::Abortable(m),
        other => CommitFailure::Fatal(other),
    })?;
    let mut tpl = TopicPartitionList::new();
    for (topic, p, o) in t.task.offsets_to_commit() {
        let _ = tpl.add_partition_offset(&topic, p, Offset::Offset(o));
    }
    Ok((tpl, sealed))
}

/// EOS commit, step 2 (a commit thread, or the stream thread for a task
/// that does not hold records back): everything the transaction calls need.
struct CommitJob {
    producer: Arc<TaskProducer>,
    tracker: Arc<DeliveryTracker>,
    id: TaskId,
    tpl: TopicPartitionList,
    group_metadata: Option<Arc<rdkafka::consumer::ConsumerGroupMetadata>>,
    /// The task's sealed write sets.
    sealed: SealedState,
    retry_for: Duration,
}

impl CommitJob {
    /// Offsets into the transaction, commit; then the RocksDB stores' sealed
    /// write sets go
    /// into RocksDB with their changelog checkpoints (only after the commit:
    /// local state never runs ahead of Kafka).
    fn run(self) -> CommitStep<TxnTimings> {
        let CommitJob {
            producer,
            tracker,
            id,
            tpl,
            group_metadata,
            sealed,
            retry_for,
        } = self;
        let mut timings =
            commit_txn_eos(&producer, id, &tpl, group_metadata.as_deref(), retry_for)?;
        timings.state_written = sealed
            .write(&|topic, p| tracker.last_offset(topic, p))
            .map_err(CommitFailure::Fatal)?;
        Ok(timings)
    }
}

/// Offsets into the transaction, commit.
fn commit_txn_eos(
    producer: &TaskProducer,
    id: TaskId,
    tpl: &TopicPartitionList,
    group_metadata: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    retry_for: Duration,
) -> CommitStep<TxnTimings> {
    let started = Instant::now();
    if tpl.count() > 0 {
        let gm = group_metadata.ok_or_else(|| {
            CommitFailure::Abortable("no consumer group metadata (not in the group)".into())
        })?;
        retry_retriable("send_offsets_to_transaction", id, retry_for, || {
            producer.send_offsets_to_transaction(tpl, gm, TXN_TIMEOUT)
        })
        .map_err(|e| kafka_failure(id, "send_offsets_to_transaction", e))?;
    }
    let offsets = started.elapsed();
    retry_retriable("commit_transaction", id, retry_for, || {
        producer.commit_transaction(TXN_TIMEOUT)
    })
    .map_err(|e| kafka_failure(id, "commit_transaction", e))?;
    Ok(TxnTimings {
        send_offsets: offsets,
        commit: started.elapsed() - offsets,
        state_written: false,
    })
}

/// How long a task's `send_offsets_to_transaction` and
/// `commit_transaction` took (for the commit round's debug line).
#[derive(Clone, Copy, Default)]
struct TxnTimings {
    send_offsets: Duration,
    commit: Duration,
    /// Whether the RocksDB part of the sealed write sets was written.
    state_written: bool,
}

/// EOS commit, step 3 (stream thread, after the commit): the sealed write
/// sets become local state; the next transaction opens and receives the
/// records held back during the commit.
fn finish_commit_eos(t: &mut ActiveTask, state_written: bool) -> CommitStep<()> {
    let id = t.task.id;
    t.in_txn = false;
    t.producer.poll(Duration::ZERO);
    t.task
        .post_commit_with(state_written)
        .map_err(CommitFailure::Fatal)?;
    t.producer
        .begin_transaction()
        .map_err(|e| kafka_failure(id, "begin_transaction", e))?;
    t.in_txn = true;
    if let Err(e) = t.deferred.release(&t.sender) {
        // Reprocessed without holding back, the failing record meets the
        // producer while it is processed, where production.exception.handler
        // decides about it.
        t.no_defer = true;
        return Err(CommitFailure::Abortable(format!(
            "a record held back while task {id} committed could not be sent ({e}); \
             reprocessing from the last commit without holding records back"
        )));
    }
    Ok(())
}

/// Waits for a task's commit thread, if any, ignoring its result (the task
/// is being closed without commit).
fn join_in_flight(t: &mut ActiveTask) {
    if let Some(f) = t.in_flight.take() {
        let _ = f.handle.join();
    }
    t.deferred.discard();
}

/// Retries a transactional call while it keeps failing with a retriable
/// error (e.g. the broker is down), for up to `retry_for`
/// (`task.timeout.ms`). librdkafka allows retrying the same call; past
/// this, the caller aborts the transaction or fails the thread.
fn retry_retriable(
    what: &str,
    task: TaskId,
    retry_for: Duration,
    f: impl Fn() -> rdkafka::error::KafkaResult<()>,
) -> rdkafka::error::KafkaResult<()> {
    retry_retriable_unless(None, what, task, retry_for, f)
}

/// [`retry_retriable`] that also gives up once `faults` holds an error no
/// retry can fix (a failed SASL handshake looks retriable to the call).
fn retry_retriable_unless(
    faults: Option<&FaultSlot>,
    what: &str,
    task: TaskId,
    retry_for: Duration,
    f: impl Fn() -> rdkafka::error::KafkaResult<()>,
) -> rdkafka::error::KafkaResult<()> {
    let started = Instant::now();
    let mut last_log: Option<Instant> = None;
    loop {
        match f() {
            Err(rdkafka::error::KafkaError::Transaction(e))
                if e.is_retriable()
                    && started.elapsed() < retry_for
                    && faults.is_none_or(|f| f.error().is_none()) =>
            {
                if last_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        task = %task, error = %e, retrying_for_s = started.elapsed().as_secs(),
                        "{what} failed with a retriable error; retrying up to task.timeout.ms"
                    );
                    last_log = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// `abort_transaction` while a second thread serves the producer's delivery
/// reports. An abort purges the transaction's unsent records and waits until
/// their (failed) delivery reports have been served, which takes `poll`: after
/// a broker outage, an abort without it timed out ("the event queue must be
/// polled") on every retry, and each task took 20 s to be given up.
fn abort_polling(p: &TaskProducer, timeout: Duration) -> rdkafka::error::KafkaResult<()> {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                p.poll(Duration::from_millis(20));
            }
        });
        let r = p.abort_transaction(timeout);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    })
}

/// The group's committed offsets of `tpl`'s partitions (stable ones: a
/// `read_committed` consumer waits for pending transactional offsets),
/// retried while the coordinator cannot answer, for up to `retry_for`
/// (`task.timeout.ms`). A partition without a committed offset is absent.
fn fetch_committed_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    retry_for: Duration,
    thread: &str,
) -> Result<HashMap<(String, i32), i64>> {
    let started = Instant::now();
    let mut last_log: Option<Instant> = None;
    loop {
        let failure = match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(list) => {
                let mut offsets = HashMap::new();
                let mut failed = None;
                for e in list.elements() {
                    if let Err(err) = e.error() {
                        failed = Some(format!("{} [{}]: {err}", e.topic(), e.partition()));
                        break;
                    }
                    if let Offset::Offset(o) = e.offset() {
                        offsets.insert((e.topic().to_string(), e.partition()), o);
                    }
                }
                match failed {
                    None => return Ok(offsets),
                    Some(f) => f,
                }
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= retry_for {
            return Err(StreamsError::Kafka(format!(
                "cannot read the committed offsets of the assigned partitions for {}s \
                 (task.timeout.ms): {failure}. Check that the broker is up. If it is, a \
                 transaction holding offsets of this group is open and not ending (a hanging \
                 transaction, e.g. after a single broker was stopped while it committed one): \
                 find it with `kafka-transactions.sh find-hanging` and abort it with \
                 `kafka-transactions.sh abort` on every partition it lists, then restart",
                started.elapsed().as_secs()
            )));
        }
        if last_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            // A read_committed consumer gets no offset while a transaction
            // that committed offsets for the group is still open: normally
            // for moments, until the previous owner's transaction is
            // aborted. If this lasts, see "hanging transactions" in the
            // README's limits.
            tracing::warn!(thread, error = %failure, retrying_for_s = started.elapsed().as_secs(),
                "reading the committed offsets failed (the broker is unreachable, or a transaction \
                 holding offsets of this group is still open); retrying up to task.timeout.ms");
            last_log = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Where a partition without a committed offset starts
/// (`auto.offset.reset`, default `earliest`, as in Kafka Streams).
fn offset_reset(cfg: &StreamsConfig) -> Offset {
    match cfg.passthrough.get("auto.offset.reset").map(String::as_str) {
        Some("latest" | "largest" | "end") => Offset::End,
        // `error`: let librdkafka look the offset up and report it.
        Some("error") => Offset::Invalid,
        _ => Offset::Beginning,
    }
}

/// Seeks an input partition back to `offset` after an abort, retrying for
/// up to `retry_for` (the broker may be briefly unreachable).
fn retry_seek<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
    retry_for: Duration,
) -> rdkafka::error::KafkaResult<()> {
    let started = Instant::now();
    loop {
        match consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            Err(e) if started.elapsed() < retry_for => {
                tracing::warn!(topic, partition, offset, error = %e, "seek after abort failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// A transaction stays open for a commit interval, so its timeout must be
/// well above it: 10 s, or three commit intervals when those are longer
/// (at most the broker's default `transaction.max.timeout.ms`, 15 min).
fn default_transaction_timeout_ms(cfg: &StreamsConfig) -> u64 {
    let three_intervals = cfg.commit_interval.as_millis() as u64 * 3;
    three_intervals.clamp(10_000, 900_000)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
