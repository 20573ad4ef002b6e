//! The steps of a task's pipelined exactly-once commit and what follows a
//! failed one, apart from the `TaskManager` (`commit.rs` explains the
//! pipelining).
//!
//! Why apart: these functions reach the producer only through
//! `TxnProducer`, the held-back records' producer only through
//! `RecordSink` and the consumer only through `InputSeek`, so unit tests
//! (`commit_tests/`) run them over a real `StreamTask` with fakes that
//! fail any call, and assert what was committed, dropped and rewound.
//! `settle_commit` decides; `TaskManager::complete_commit` carries out
//! what needs the whole thread (re-create a task, hand it back to the
//! group).

use super::*;

pub(super) enum CommitFailure {
    Abortable(String),
    Fenced(String),
    Fatal(StreamsError),
}

pub(super) type CommitStep<T> = std::result::Result<T, CommitFailure>;

/// A failed transaction call `what` of task `id`, by its kind.
pub(super) fn txn_failure(id: TaskId, what: &str, e: TxnError) -> CommitFailure {
    let msg = format!("{what} for task {id}: {e}");
    match e.kind {
        TxnErrorKind::Abortable => CommitFailure::Abortable(msg),
        TxnErrorKind::Fenced => CommitFailure::Fenced(msg),
        TxnErrorKind::Fatal => CommitFailure::Fatal(StreamsError::Kafka(msg)),
    }
}

/// What the commit steps use of a task: borrowed from an `ActiveTask`
/// (`ActiveTask::txn_parts`), or from a unit test's fakes.
pub(super) struct TxnParts<'a, S: RecordSink + ?Sized> {
    pub task: &'a mut StreamTask,
    pub producer: &'a dyn TxnProducer,
    /// Where the held-back records go once the next transaction is open.
    pub sender: &'a S,
    pub deferred: &'a Deferred,
    pub in_txn: &'a mut bool,
    pub no_defer: &'a mut bool,
    pub aborting_since: &'a mut Option<Instant>,
}

/// Opens a transaction unless one is open.
pub(super) fn begin_txn(producer: &dyn TxnProducer, in_txn: &mut bool, id: TaskId) -> Result<()> {
    if !*in_txn {
        producer
            .begin()
            .map_err(|e| StreamsError::Kafka(format!("begin_transaction for task {id}: {e}")))?;
        *in_txn = true;
    }
    Ok(())
}

/// EOS commit, step 1 (stream thread): flush caches, seal; returns the
/// input offsets to commit and the sealed write sets.
pub(super) fn prepare_commit_eos(
    task: &mut StreamTask,
) -> CommitStep<(TopicPartitionList, SealedState)> {
    let sealed = task.prepare_commit_sealed().map_err(|e| match e {
        StreamsError::Kafka(m) => CommitFailure::Abortable(m),
        e if e.is_transaction_aborted() => CommitFailure::Abortable(e.to_string()),
        other => CommitFailure::Fatal(other),
    })?;
    let mut tpl = TopicPartitionList::new();
    crate::kafka::offset_metadata::add_offsets(task, &mut tpl)
        .map_err(|e| CommitFailure::Fatal(StreamsError::Kafka(format!("task {}: {e}", task.id))))?;
    Ok((tpl, sealed))
}

/// EOS commit, step 2 (a commit thread, or the stream thread for a task
/// that does not hold records back): everything the transaction calls need.
pub(super) struct CommitJob {
    pub producer: Arc<dyn TxnProducer>,
    pub tracker: Arc<DeliveryTracker>,
    pub id: TaskId,
    pub tpl: TopicPartitionList,
    pub group: Option<Arc<GroupHandle>>,
    /// The task's sealed write sets, and the call in progress.
    pub shared: Arc<CommitShared>,
    pub retry_for: Duration,
}

/// What a commit thread and the stream thread share while a commit runs.
#[derive(Default)]
pub(super) struct CommitShared {
    /// The task's sealed write sets: taken by the commit thread once the
    /// transaction committed, or by the stream thread if it gives up a
    /// commit that hangs (`abandon`), so the task's stores can close.
    pub sealed: std::sync::Mutex<Option<SealedState>>,
    /// When the transaction call now running started (ms since the epoch);
    /// 0 between calls.
    pub in_call_since: std::sync::atomic::AtomicI64,
}

pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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

    /// Whether `reap_commits` finishes this commit now: when waiting
    /// (`block`), when its thread is done or hangs, and when the task held
    /// back more than `MAX_DEFERRED_BYTES` meanwhile (then it waits for it).
    pub(super) fn due(&self, block: bool, deferred_bytes: usize) -> bool {
        block || self.handle.is_finished() || self.hung() || deferred_bytes > MAX_DEFERRED_BYTES
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
    pub(super) fn run(self) -> CommitStep<TxnTimings> {
        let CommitJob {
            producer,
            tracker,
            id,
            tpl,
            group,
            shared,
            retry_for,
        } = self;
        let mut timings = match commit_txn_eos(
            &*producer,
            id,
            &tpl,
            group.as_deref(),
            retry_for,
            &shared.in_call_since,
        ) {
            Ok(timings) => timings,
            Err(f) => {
                // Not committed: the sealed write sets go now, not when
                // the last holder of `shared` lets go. They hold the task's
                // RocksDB open, and a task re-created after the failure
                // must open it again -- right away when this ran on the
                // stream thread (`no_defer`), where `commit_eos` still
                // holds `shared` while the failure is settled.
                drop(lock(&shared.sealed).take());
                return Err(f);
            }
        };
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
    producer: &dyn TxnProducer,
    id: TaskId,
    tpl: &TopicPartitionList,
    group: Option<&GroupHandle>,
    retry_for: Duration,
    in_call_since: &std::sync::atomic::AtomicI64,
) -> CommitStep<TxnTimings> {
    use std::sync::atomic::Ordering::Relaxed;
    let timed = |call: &dyn Fn() -> TxnResult| {
        in_call_since.store(now_ms(), Relaxed);
        let r = call();
        in_call_since.store(0, Relaxed);
        r
    };
    let started = Instant::now();
    if tpl.count() > 0 {
        let gm = group.ok_or_else(|| {
            CommitFailure::Abortable("no consumer group metadata (not in the group)".into())
        })?;
        retry_retriable("send_offsets_to_transaction", id, retry_for, || {
            timed(&|| producer.send_offsets(tpl, gm))
        })
        .map_err(|e| txn_failure(id, "send_offsets_to_transaction", e))?;
    }
    let offsets = started.elapsed();
    retry_retriable("commit_transaction", id, retry_for, || {
        timed(&|| producer.commit())
    })
    .map_err(|e| txn_failure(id, "commit_transaction", e))?;
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
    pub send_offsets: Duration,
    pub commit: Duration,
    /// Whether the RocksDB part of the sealed write sets was written.
    pub state_written: bool,
}

/// EOS commit, step 3 (stream thread, after the commit): the sealed write
/// sets become local state; the next transaction opens and receives the
/// records held back during the commit.
pub(super) fn finish_commit_eos<S: RecordSink + ?Sized>(
    p: &mut TxnParts<'_, S>,
    state_written: bool,
) -> CommitStep<()> {
    let id = p.task.id;
    *p.in_txn = false;
    p.producer.poll();
    p.task
        .post_commit_with(state_written)
        .map_err(CommitFailure::Fatal)?;
    p.producer
        .begin()
        .map_err(|e| txn_failure(id, "begin_transaction", e))?;
    *p.in_txn = true;
    if let Err(e) = p.deferred.release(p.sender) {
        if e.is_transaction_aborted() {
            // The producer, not the record: abort and reprocess as usual.
            return Err(CommitFailure::Abortable(format!(
                "task {id} could not send its held-back records: {e}"
            )));
        }
        // Reprocessed without holding back, the failing record meets the
        // producer while it is processed, where production.exception.handler
        // decides about it.
        *p.no_defer = true;
        return Err(CommitFailure::Abortable(format!(
            "a record held back while task {id} committed could not be sent ({e}); \
             reprocessing from the last commit without holding records back"
        )));
    }
    Ok(())
}

/// How a task's commit ended, for the `TaskManager` to carry out.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// Committed; the next transaction is open with the held-back records.
    Committed,
    /// Aborted, rewound to the last commit; the next transaction is open.
    Rewound,
    /// Re-create the task with a new producer (fenced, or it could not
    /// abort or begin), for this cause.
    Recreate(String),
    /// The task could not rewind after an abort: close it and hand it back
    /// to the group.
    CloseAndRejoin,
}

/// After a task's transaction calls (`result`): on success the sealed
/// write sets become local state, the next transaction begins and the
/// held-back records go into it; on an abortable failure the held-back
/// records are dropped, the transaction is aborted and the input rewound
/// (`seeker`) to the last commit; a fenced task, or one that cannot abort
/// or begin again, is to be re-created; the rest fails the thread, as do
/// aborts that go on for longer than `task_timeout`.
pub(super) fn settle_commit<S: RecordSink + ?Sized>(
    mut p: TxnParts<'_, S>,
    result: CommitStep<TxnTimings>,
    seeker: &dyn InputSeek,
    task_timeout: Duration,
    metrics: &ThreadMetrics,
) -> Result<Settled> {
    let id = p.task.id;
    match result.and_then(|timings| finish_commit_eos(&mut p, timings.state_written)) {
        Ok(()) => {
            *p.aborting_since = None;
            Ok(Settled::Committed)
        }
        Err(CommitFailure::Abortable(msg)) => {
            tracing::warn!(task = %id, error = %msg, "transaction aborted; rewinding and reprocessing");
            metrics.add_abort();
            p.deferred.discard();
            let since = *p.aborting_since.get_or_insert_with(Instant::now);
            if since.elapsed() > task_timeout {
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
                ABORT_RETRY_FOR.min(task_timeout),
                || p.producer.abort(),
            ) {
                return Ok(Settled::Recreate(format!("abort failed: {e}")));
            }
            *p.in_txn = false;
            let rewound =
                p.task.abort().into_iter().try_for_each(|(topic, part, o)| {
                    seeker.seek_back(&topic, part, o, task_timeout)
                });
            if let Err(e) = rewound {
                // Going on would skip the aborted records: hand the
                // task back to the group, which re-reads from the
                // committed offsets.
                tracing::warn!(task = %id, error = %e, "cannot rewind after an abort; closing the task and rejoining the group");
                return Ok(Settled::CloseAndRejoin);
            }
            if let Err(e) = begin_txn(p.producer, p.in_txn, id) {
                return Ok(Settled::Recreate(e.to_string()));
            }
            Ok(Settled::Rewound)
        }
        // Fenced while the group still gives us the task: most often
        // the transaction coordinator moved (a broker failed) and the
        // new one aborted our open transaction as timed out, bumping
        // the epoch. The task is re-created in place.
        Err(CommitFailure::Fenced(msg)) => Ok(Settled::Recreate(msg)),
        Err(CommitFailure::Fatal(e)) => Err(e),
    }
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
