//! The commits of a thread's tasks: at-least-once (`commit_alos`) and the
//! pipelined exactly-once commit (`commit_eos`, `reap_commits`,
//! `complete_commit`), whose transaction calls run on a commit thread.

use super::*;

impl TaskManager {
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

    /// At-least-once: everything the tasks sent is acknowledged (flush),
    /// then the input offsets are committed, and only then do the stores'
    /// write sets and checkpoints go to disk. In that order a crash between
    /// the steps reprocesses (the changelog is already written) but never
    /// skips input, and local state never runs ahead of the offsets.
    /// Retriable errors (the broker or coordinator is away) are retried up
    /// to `task.timeout.ms`. A record the broker refused, or a commit the
    /// group refuses (a rebalance took the partitions), rewinds the tasks to
    /// their last commit instead: nothing is lost, records are reprocessed.
    fn commit_alos<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<usize> {
        let Some((producer, tracker)) = self.alos_producer.clone() else {
            return Ok(0);
        };
        let mut tpl = TopicPartitionList::new();
        let mut ids = Vec::new();
        for (id, t) in self.active.iter_mut() {
            if !t.task.commit_needed() {
                continue;
            }
            ids.push(*id);
            t.task.prepare_commit()?;
            crate::kafka::offset_metadata::add_offsets(&t.task, &mut tpl)
                .map_err(StreamsError::Kafka)?;
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let retry_for = self.shared.config.task_timeout;
        let started = Instant::now();
        while let Err(e) = producer.flush(Duration::from_secs(5)) {
            if started.elapsed() >= retry_for || self.shared.faults.error().is_some() {
                return Err(self.shared.faults.error().unwrap_or_else(|| {
                    StreamsError::Kafka(format!(
                        "the producer could not deliver the tasks' records for {}s \
                         (task.timeout.ms): {e}",
                        started.elapsed().as_secs()
                    ))
                }));
            }
            tracing::warn!(error = %e, waited_s = started.elapsed().as_secs(), "producer flush not done yet; waiting up to task.timeout.ms");
        }
        if let Some(e) = tracker.take_error() {
            return self.rewind_alos(consumer, &ids, &format!("a record was not delivered: {e}"));
        }
        if tpl.count() > 0 {
            loop {
                match consumer.commit(&tpl, CommitMode::Sync) {
                    Ok(()) => break,
                    Err(e) if is_group_error(&e) => {
                        return self.rewind_alos(
                            consumer,
                            &ids,
                            &format!("the group refused the offset commit: {e}"),
                        );
                    }
                    Err(e) if started.elapsed() < retry_for => {
                        tracing::warn!(error = %e, retrying_for_s = started.elapsed().as_secs(), "offset commit failed; retrying up to task.timeout.ms");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => {
                        return Err(StreamsError::Kafka(format!(
                            "offset commit failed for {}s (task.timeout.ms): {e}",
                            started.elapsed().as_secs()
                        )));
                    }
                }
            }
        }
        for id in &ids {
            if let Some(t) = self.active.get_mut(id) {
                t.task.post_commit()?;
                t.aborting_since = None;
            }
        }
        Ok(ids.len())
    }

    /// At-least-once: drops tasks `ids`' work since their last commit and
    /// seeks their partitions back to it, to be processed again.
    fn rewind_alos<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        ids: &[TaskId],
        cause: &str,
    ) -> Result<usize> {
        tracing::warn!(tasks = ids.len(), error = %cause, "commit not done; reprocessing from the last commit");
        self.metrics.add_abort();
        let retry_for = self.shared.config.task_timeout;
        for id in ids {
            let Some(t) = self.active.get_mut(id) else {
                continue;
            };
            let since = *t.aborting_since.get_or_insert_with(Instant::now);
            if since.elapsed() > retry_for {
                return Err(StreamsError::Kafka(format!(
                    "task {id} has not committed for {}s (task.timeout.ms); last error: {cause}",
                    since.elapsed().as_secs()
                )));
            }
            let rewound = t.task.abort().into_iter().try_for_each(|(topic, p, o)| {
                retry_seek(consumer, &topic, p, Offset::Offset(o), retry_for)
            });
            if let Err(e) = rewound {
                tracing::warn!(task = %id, error = %e, "cannot rewind; closing the task and rejoining the group");
                self.close_and_rejoin(*id);
            }
        }
        Ok(0)
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
            let shared = Arc::new(CommitShared::default());
            let job = match prepare_commit_eos(t) {
                Ok((tpl, sealed)) => {
                    *lock(&shared.sealed) = Some(sealed);
                    CommitJob {
                        producer: t.producer.clone(),
                        tracker: t.tracker.clone(),
                        id,
                        tpl,
                        group_metadata: group_metadata.clone(),
                        shared: shared.clone(),
                        retry_for,
                    }
                }
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
                    crate::kafka::priority::lower_this_thread(nice);
                    job.run()
                })
                .map_err(|e| {
                    StreamsError::IllegalState(format!("cannot start a commit thread: {e}"))
                })?;
            t.in_flight = Some(InFlight {
                handle,
                started: Instant::now(),
                shared,
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
                    block
                        || f.handle.is_finished()
                        || f.hung()
                        || t.deferred.bytes() > MAX_DEFERRED_BYTES
                })
            })
            .map(|(id, _)| *id)
            .collect();
        let mut reaped = false;
        for id in done {
            let Some(t) = self.active.get_mut(&id) else {
                continue;
            };
            // Waiting (a rebalance, a shutdown) for a commit that hangs in
            // librdkafka would wait for ever: it is given up (`abandon`).
            while let Some(f) = t.in_flight.as_mut()
                && !f.handle.is_finished()
                && !f.hung()
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let Some(f) = t.in_flight.take() else {
                continue;
            };
            let started = f.started;
            let result = if f.handle.is_finished() {
                let InFlight { handle, shared, .. } = f;
                let result = handle.join().unwrap_or_else(|_| {
                    Err(CommitFailure::Fatal(StreamsError::IllegalState(format!(
                        "the commit of task {id} panicked"
                    ))))
                });
                // A failed commit leaves its sealed write sets here; they
                // hold the task's RocksDB open, and a task re-created
                // after the failure must be able to open it again.
                drop(lock(&shared.sealed).take());
                result
            } else {
                abandon(id, f)
            };
            if let Ok(timings) = &result {
                self.metrics.add_commit(started.elapsed());
                tracing::debug!(
                    task = %id,
                    send_offsets_ms = timings.send_offsets.as_millis() as u64,
                    commit_ms = timings.commit.as_millis() as u64,
                    reaped_after_ms = started.elapsed().as_millis() as u64,
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
                // restart) is not waited out: the task is re-created with a
                // new producer, whose init_transactions aborts the old
                // transaction.
                if let Err(e) = retry_retriable(
                    "abort_transaction",
                    id,
                    ABORT_RETRY_FOR.min(self.shared.config.task_timeout),
                    || abort_polling(&t.producer, ABORT_TIMEOUT),
                ) {
                    return self.recreate_task(consumer, id, &format!("abort failed: {e}"));
                }
                t.in_txn = false;
                let rewound = t.task.abort().into_iter().try_for_each(|(topic, p, o)| {
                    retry_seek(
                        consumer,
                        &topic,
                        p,
                        Offset::Offset(o),
                        self.shared.config.task_timeout,
                    )
                });
                if let Err(e) = rewound {
                    // Going on would skip the aborted records: hand the
                    // task back to the group, which re-reads from the
                    // committed offsets.
                    tracing::warn!(task = %id, error = %e, "cannot rewind after an abort; closing the task and rejoining the group");
                    self.close_and_rejoin(id);
                    return Ok(());
                }
                if let Err(e) = t.begin() {
                    return self.recreate_task(consumer, id, &e.to_string());
                }
            }
            Err(CommitFailure::Fenced(msg)) => {
                // Fenced while the group still gives us the task: most often
                // the transaction coordinator moved (a broker failed) and the
                // new one aborted our open transaction as timed out, bumping
                // the epoch. The task is re-created in place.
                self.recreate_task(consumer, id, &msg)?;
            }
            Err(CommitFailure::Fatal(e)) => return Err(e),
        }
        Ok(())
    }
}

pub(super) enum CommitFailure {
    Abortable(String),
    Fenced(String),
    Fatal(StreamsError),
}

pub(super) type CommitStep<T> = std::result::Result<T, CommitFailure>;

pub(super) fn kafka_failure(
    id: TaskId,
    what: &str,
    e: rdkafka::error::KafkaError,
) -> CommitFailure {
    let msg = format!("{what} for task {id}: {e}");
    match classify(&e) {
        TxnErrorKind::Abortable => CommitFailure::Abortable(msg),
        TxnErrorKind::Fenced => CommitFailure::Fenced(msg),
        TxnErrorKind::Fatal => CommitFailure::Fatal(StreamsError::Kafka(msg)),
    }
}

/// EOS commit, step 1 (stream thread): flush caches, seal; returns the
/// input offsets to commit and the sealed write sets.
pub(super) fn prepare_commit_eos(
    t: &mut ActiveTask,
) -> CommitStep<(TopicPartitionList, SealedState)> {
    let sealed = t.task.prepare_commit_sealed().map_err(|e| match e {
        StreamsError::Kafka(m) => CommitFailure::Abortable(m),
        other => CommitFailure::Fatal(other),
    })?;
    let mut tpl = TopicPartitionList::new();
    crate::kafka::offset_metadata::add_offsets(&t.task, &mut tpl).map_err(|e| {
        CommitFailure::Fatal(StreamsError::Kafka(format!("task {}: {e}", t.task.id)))
    })?;
    Ok((tpl, sealed))
}

/// EOS commit, step 2 (a commit thread, or the stream thread for a task
/// that does not hold records back): everything the transaction calls need.
pub(super) struct CommitJob {
    producer: Arc<TaskProducer>,
    tracker: Arc<DeliveryTracker>,
    id: TaskId,
    tpl: TopicPartitionList,
    group_metadata: Option<Arc<rdkafka::consumer::ConsumerGroupMetadata>>,
    /// The task's sealed write sets, and the call in progress.
    shared: Arc<CommitShared>,
    retry_for: Duration,
}

/// What a commit thread and the stream thread share while a commit runs.
#[derive(Default)]
pub(super) struct CommitShared {
    /// The task's sealed write sets: taken by the commit thread once the
    /// transaction committed, or by the stream thread if it gives up a
    /// commit that hangs (`abandon`), so the task's stores can close.
    sealed: std::sync::Mutex<Option<SealedState>>,
    /// When the transaction call now running started (ms since the epoch);
    /// 0 between calls.
    in_call_since: std::sync::atomic::AtomicI64,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A transaction call that has not returned after this (its own timeout is
/// `TXN_TIMEOUT`) hangs in librdkafka: the commit is given up.
const HUNG_AFTER: Duration = Duration::from_secs(45);

impl InFlight {
    /// Whether the commit is stuck inside one transaction call for longer
    /// than `HUNG_AFTER` (retries between calls do not count).
    pub(super) fn hung(&self) -> bool {
        let since = self
            .shared
            .in_call_since
            .load(std::sync::atomic::Ordering::Relaxed);
        since != 0 && now_ms().saturating_sub(since) > HUNG_AFTER.as_millis() as i64
    }
}

/// Gives up a commit whose transaction call hangs in librdkafka (issues
/// 5456 and 5511: `send_offsets_to_transaction` can wait for ever for a
/// group coordinator that left): its sealed write sets are taken back and
/// dropped, and its thread is left behind with the old producer, which the
/// task's next producer fences (`init_transactions`). The task is then
/// re-created like a fenced one. What the hung transaction did is aborted,
/// or, if it did commit after all, restored from the changelog.
pub(super) fn abandon(id: TaskId, f: InFlight) -> CommitStep<TxnTimings> {
    drop(lock(&f.shared.sealed).take());
    let since = f
        .shared
        .in_call_since
        .load(std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(task = %id, hung_s = now_ms().saturating_sub(since) / 1000,
        "a transaction call of this task never returned (librdkafka); giving the commit up, the thread is left behind");
    drop(f.handle);
    Err(CommitFailure::Fenced(format!(
        "a transaction call of task {id} did not return for {}s",
        now_ms().saturating_sub(since) / 1000
    )))
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
            shared,
            retry_for,
        } = self;
        let mut timings = commit_txn_eos(
            &producer,
            id,
            &tpl,
            group_metadata.as_deref(),
            retry_for,
            &shared.in_call_since,
        )?;
        let Some(sealed) = lock(&shared.sealed).take() else {
            // Given up by the stream thread meanwhile (`abandon`).
            return Err(CommitFailure::Fenced(format!(
                "the commit of task {id} was given up"
            )));
        };
        timings.state_written = sealed
            .write(&|topic, p| tracker.last_offset(topic, p))
            .map_err(CommitFailure::Fatal)?;
        Ok(timings)
    }
}

/// Offsets into the transaction, commit.
pub(super) fn commit_txn_eos(
    producer: &TaskProducer,
    id: TaskId,
    tpl: &TopicPartitionList,
    group_metadata: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
    retry_for: Duration,
    in_call_since: &std::sync::atomic::AtomicI64,
) -> CommitStep<TxnTimings> {
    use std::sync::atomic::Ordering::Relaxed;
    let timed = |call: &dyn Fn() -> rdkafka::error::KafkaResult<()>| {
        in_call_since.store(now_ms(), Relaxed);
        let r = call();
        in_call_since.store(0, Relaxed);
        r
    };
    let started = Instant::now();
    if tpl.count() > 0 {
        let gm = group_metadata.ok_or_else(|| {
            CommitFailure::Abortable("no consumer group metadata (not in the group)".into())
        })?;
        retry_retriable("send_offsets_to_transaction", id, retry_for, || {
            timed(&|| producer.send_offsets_to_transaction(tpl, gm, TXN_TIMEOUT))
        })
        .map_err(|e| kafka_failure(id, "send_offsets_to_transaction", e))?;
    }
    let offsets = started.elapsed();
    retry_retriable("commit_transaction", id, retry_for, || {
        timed(&|| producer.commit_transaction(TXN_TIMEOUT))
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
pub(super) struct TxnTimings {
    send_offsets: Duration,
    commit: Duration,
    /// Whether the RocksDB part of the sealed write sets was written.
    state_written: bool,
}

/// EOS commit, step 3 (stream thread, after the commit): the sealed write
/// sets become local state; the next transaction opens and receives the
/// records held back during the commit.
pub(super) fn finish_commit_eos(t: &mut ActiveTask, state_written: bool) -> CommitStep<()> {
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
pub(super) fn join_in_flight(t: &mut ActiveTask) {
    while let Some(f) = t.in_flight.as_mut()
        && !f.handle.is_finished()
        && !f.hung()
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(f) = t.in_flight.take() {
        if f.handle.is_finished() {
            let _ = f.handle.join();
        } else {
            let _ = abandon(t.task.id, f);
        }
    }
    t.deferred.discard();
}

/// Whether an offset commit failed because this member's generation is
/// over (a rebalance is on, or the member was removed): its partitions
/// are being taken away, not a reason to stop.
pub(super) fn is_group_error(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::RebalanceInProgress
                | C::IllegalGeneration
                | C::UnknownMemberId
                | C::StaleMemberEpoch
                | C::FencedMemberEpoch
        )
    ) || matches!(
        e,
        rdkafka::error::KafkaError::ConsumerCommit(C::AssignmentLost | C::State)
    )
}
