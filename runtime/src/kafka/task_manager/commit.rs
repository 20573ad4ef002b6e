//! The commits of a thread's tasks: at-least-once (`commit_alos`) and the
//! pipelined exactly-once commit (`commit_eos`, `reap_commits`,
//! `complete_commit`), whose transaction calls run on a commit thread. The
//! steps of a task's commit and what follows a failed one are in
//! `txn_steps.rs`.

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
        while let Err(e) = flush_promptly(&producer, Duration::from_secs(5)) {
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
        let interval = self.shared.config.commit_interval;
        let round_started = Instant::now();
        let ids: Vec<TaskId> = self
            .active
            .iter()
            .filter(|(_, t)| {
                t.commit_deadline(interval, round_started)
                    .is_some_and(|due| wait || due <= round_started)
            })
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let group = consumer
            .group_metadata()
            .map(|m| Arc::new(GroupHandle::new(m)));
        for &id in &ids {
            let Some(t) = self.active.get_mut(&id) else {
                continue;
            };
            t.commit_started = Instant::now();
            let shared = Arc::new(CommitShared::default());
            let job = match prepare_commit_eos(&mut t.task) {
                Ok((tpl, sealed)) => {
                    *lock(&shared.sealed) = Some(sealed);
                    CommitJob {
                        producer: t.producer.clone(),
                        tracker: t.tracker.clone(),
                        id,
                        tpl,
                        group: group.clone(),
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
            let handle = self.workers.run(move || job.run()).map_err(|e| {
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

    /// Aborts and rewinds the tasks whose producer refused a record because
    /// it left the transaction (`ActiveTask::refused`), as a failed commit
    /// would: their work since the last commit is dropped and reprocessed
    /// in a new transaction (a task whose producer cannot abort is
    /// re-created). A task whose commit is still running is left to it:
    /// that commit fails the same way, and its failure aborts.
    pub fn abort_refused<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let refused: Vec<(TaskId, String)> = self
            .active
            .iter_mut()
            .filter(|(_, t)| t.in_flight.is_none())
            .filter_map(|(id, t)| Some((*id, t.refused.take()?)))
            .collect();
        for (id, cause) in refused {
            self.complete_commit(consumer, id, Err(CommitFailure::Abortable(cause)))?;
        }
        Ok(())
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
                t.in_flight
                    .as_ref()
                    .is_some_and(|f| f.due(block, t.deferred.bytes()))
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
                // A commit thread that panicked leaves its sealed write
                // sets here (a failed commit drops them itself); they hold
                // the task's RocksDB open, and a task re-created after the
                // failure must be able to open it again.
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
        let settled = settle_commit(
            t.txn_parts(),
            result,
            consumer,
            self.shared.config.task_timeout,
            &self.metrics,
        )?;
        match settled {
            Settled::Committed | Settled::Rewound => {}
            Settled::Recreate(cause) => self.recreate_task(consumer, id, &cause)?,
            Settled::CloseAndRejoin => self.close_and_rejoin(id),
        }
        Ok(())
    }
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
