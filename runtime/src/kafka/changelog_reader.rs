//! `ChangelogReader`: brings tasks' stores up to the end of their
//! changelogs before the tasks process anything.
//!
//! Why it is cheap after a crash: the local RocksDB holds exactly the last
//! committed state and the changelog offset it corresponds to (the
//! checkpoint), so only the records after the checkpoint are replayed. No
//! checkpoint (new machine, deleted state directory) means a full restore.
//!
//! Why it restores everything at once: an assignment usually brings several
//! tasks, each with one or more changelogged stores. Restoring them one
//! partition after another costs a broker round trip (and, for an empty or
//! caught-up changelog, a whole fetch wait) per store, which made start-up
//! and fail-over grow with the number of tasks. Instead every changelog
//! partition of the assignment is assigned to the one restore consumer in
//! the same round, a store whose checkpoint already equals the end of its
//! changelog is skipped without a fetch, and the fetches of all partitions
//! run together. The only limit: librdkafka reports the end of a partition
//! by partition number alone, so one round holds at most one changelog per
//! partition number (two stores of the same task go in two rounds).
//!
//! Why two threads: fetching and decoding records (the consumer) and
//! writing them into RocksDB (the stores, which are single-threaded) are
//! both CPU work. A scoped poll thread fills per-partition batches while
//! the calling thread writes the previous batches, so the two overlap.
//!
//! Restore reads `read_committed` (aborted writes of a crashed predecessor
//! are never applied) until the end of each partition as it stood when the
//! restore started, in large batches each written atomically with the new
//! checkpoint, and logs its progress.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::client_fault::FaultSlot;
use super::metrics::TaskStats;
use crate::error::{Result, StreamsError};
use crate::task::StreamTask;

const BATCH: usize = 20_000;

type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// What a restore did, for logs and metrics.
///
/// ```
/// let s = kstreams_runtime::kafka::RestoreStats::default();
/// assert_eq!(s.records, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RestoreStats {
    /// Changelog records applied.
    pub records: u64,
    /// Time spent.
    pub elapsed: Duration,
}

/// The restore consumer's context: end-of-partition is how a restore
/// finishes, not an error worth logging.
#[derive(Default)]
pub(crate) struct RestoreContext {
    log: super::client_log::ClientErrorLog,
}

impl RestoreContext {
    fn reporting_to(faults: Arc<FaultSlot>) -> Self {
        RestoreContext {
            log: super::client_log::ClientErrorLog::reporting_to(faults),
        }
    }
}

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            self.log.log("restore consumer", &error, reason);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

/// A task to restore, and where its restore progress is published.
pub(crate) struct RestoreTarget<'a> {
    pub task: &'a mut StreamTask,
    pub progress: &'a TaskStats,
}

/// One changelogged store of one task: a changelog partition to replay.
struct Job {
    target: usize,
    store: usize,
    name: String,
    topic: String,
    partition: i32,
    /// The offset the store is at (the next changelog record to apply).
    checkpoint: Option<i64>,
    /// Whether a checkpoint outside the changelog already forced a full restore.
    wiped_for_range: bool,
    to_restore: u64,
    applied: u64,
    done: bool,
}

/// What the poll thread hands to the writing thread.
enum Event {
    /// Records of job `job` up to (excluding) `next_offset`; `end` when the
    /// partition's end was reached with them.
    Batch {
        job: usize,
        records: Batch,
        next_offset: Option<i64>,
        end: bool,
    },
    /// A fetch position outside the changelog (topic recreated or truncated).
    OutOfRange,
    Failed(StreamsError),
}

pub(crate) struct ChangelogReader {
    consumer: BaseConsumer<RestoreContext>,
    poll_timeout: Duration,
    stall_timeout: Duration,
    faults: Arc<FaultSlot>,
    /// Standby updates (`restore_all_quietly`) log at debug level: they
    /// run every commit interval.
    quiet: std::sync::atomic::AtomicBool,
    /// Standby rounds stop here (and go on at the next round from their
    /// checkpoints), so a standby far behind never holds up its thread.
    budget_until: std::sync::Mutex<Option<Instant>>,
}

impl ChangelogReader {
    pub fn new(
        base: &ClientConfig,
        stall_timeout: Duration,
        faults: Arc<FaultSlot>,
        nice: i32,
    ) -> Result<ChangelogReader> {
        let mut cfg = super::config::consumer_client(base);
        cfg.set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "10485760")
            .set("queued.max.messages.kbytes", "262144")
            // The end of a caught-up partition is known after one fetch;
            // don't let the broker hold that fetch for the default 500 ms.
            .set("fetch.wait.max.ms", "10")
            .set("group.id", "kstreams-restore-unused");
        let context = RestoreContext::reporting_to(faults.clone());
        let consumer: BaseConsumer<RestoreContext> =
            super::priority::created_lowered(nice, || cfg.create_with_context(context)).map_err(
                |e| StreamsError::Kafka(format!("cannot create the restore consumer: {e}")),
            )?;
        Ok(ChangelogReader {
            consumer,
            poll_timeout: Duration::from_millis(200),
            stall_timeout,
            faults,
            quiet: std::sync::atomic::AtomicBool::new(false),
            budget_until: std::sync::Mutex::new(None),
        })
    }

    fn quiet(&self) -> bool {
        self.quiet.load(Ordering::Relaxed)
    }

    /// [`Self::restore_all`] for standby tasks' frequent catch-up rounds:
    /// the same work, logged at debug level, and stopped after `budget`
    /// (each applied batch is checkpointed, so the next round goes on
    /// from there).
    pub fn restore_all_quietly(
        &self,
        targets: &mut [RestoreTarget<'_>],
        budget: Duration,
    ) -> Result<Vec<RestoreStats>> {
        self.quiet.store(true, Ordering::Relaxed);
        *self.budget_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + budget);
        let r = self.restore_all(targets);
        *self.budget_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.quiet.store(false, Ordering::Relaxed);
        r
    }

    fn over_budget(&self) -> bool {
        self.budget_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|d| Instant::now() >= d)
    }

    /// Restores every changelogged store of every target, all changelog
    /// partitions at once. Returns one [`RestoreStats`] per target, in order.
    pub fn restore_all(&self, targets: &mut [RestoreTarget<'_>]) -> Result<Vec<RestoreStats>> {
        let _span = tracing::info_span!("restore", tasks = targets.len()).entered();
        let started = Instant::now();
        let mut jobs = Vec::new();
        for (t, target) in targets.iter().enumerate() {
            for (i, s) in target.task.state.stores.iter().enumerate() {
                let Some(topic) = s.store.borrow().changelog.clone() else {
                    continue;
                };
                jobs.push(Job {
                    target: t,
                    store: i,
                    name: s.def.name.clone(),
                    topic,
                    partition: target.task.id.partition,
                    checkpoint: None,
                    wiped_for_range: false,
                    to_restore: 0,
                    applied: 0,
                    done: false,
                });
            }
        }
        for job in &mut jobs {
            job.checkpoint = targets[job.target].task.state.checkpoint(job.store)?;
        }
        // Rounds: at most one changelog partition per partition number.
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        let mut rounds = 0;
        while !pending.is_empty() && !self.over_budget() {
            let mut numbers = HashSet::new();
            let (round, rest): (Vec<usize>, Vec<usize>) = pending
                .into_iter()
                .partition(|&j| numbers.insert(jobs[j].partition));
            self.run_round(&mut jobs, &round, targets)?;
            pending = rest;
            rounds += 1;
        }
        let elapsed = started.elapsed();
        let records: u64 = jobs.iter().map(|j| j.applied).sum();
        if !jobs.is_empty() {
            let secs = elapsed.as_secs_f64().max(1e-3);
            if !self.quiet() {
                tracing::info!(
                    stores = jobs.len(),
                    tasks = targets.len(),
                    rounds,
                    records,
                    rate = (records as f64 / secs) as u64,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "restore done"
                );
            }
        }
        Ok(targets
            .iter()
            .enumerate()
            .map(|(t, _)| RestoreStats {
                records: jobs
                    .iter()
                    .filter(|j| j.target == t)
                    .map(|j| j.applied)
                    .sum(),
                elapsed,
            })
            .collect())
    }

    /// Restores the jobs of one round (distinct partition numbers).
    fn run_round(
        &self,
        jobs: &mut [Job],
        round: &[usize],
        targets: &mut [RestoreTarget<'_>],
    ) -> Result<()> {
        loop {
            // Where each changelog ends now: caught-up stores need no fetch,
            // and a checkpoint outside the changelog means a full restore.
            for &j in round {
                let job = &mut jobs[j];
                if job.done {
                    continue;
                }
                let marks = self
                    .consumer
                    .fetch_watermarks(&job.topic, job.partition, Duration::from_secs(5))
                    .ok();
                if let (Some((low, high)), Some(c)) = (marks, job.checkpoint)
                    && (c < low || c > high)
                    && !job.wiped_for_range
                {
                    tracing::warn!(task = %targets[job.target].task.id, store = %job.name,
                        checkpoint = c, low, high,
                        "checkpoint is outside the changelog (topic recreated or truncated?); doing a full restore");
                    job.checkpoint = None;
                    job.wiped_for_range = true;
                }
                let task = &mut targets[job.target].task;
                if job.checkpoint.is_none() {
                    task.state.wipe(job.store)?;
                }
                match (marks, job.checkpoint) {
                    (Some((_, high)), Some(c)) if c >= high => job.done = true,
                    (Some((low, high)), None) if low == high => {
                        // Empty changelog: record that the store is at its start.
                        task.state.apply_restored(job.store, &[], high)?;
                        job.checkpoint = Some(high);
                        job.done = true;
                    }
                    (Some((low, high)), c) => {
                        job.to_restore = (high - c.unwrap_or(low)).max(0) as u64
                    }
                    (None, _) => job.to_restore = 0,
                }
            }
            let active: Vec<usize> = round.iter().copied().filter(|&j| !jobs[j].done).collect();
            if active.is_empty() {
                return Ok(());
            }
            for (t, target) in targets.iter().enumerate() {
                target
                    .progress
                    .restore_progress(0, remaining_of(jobs, t), 0.0);
            }
            let mut tpl = TopicPartitionList::new();
            for &j in &active {
                let job = &jobs[j];
                let offset = job
                    .checkpoint
                    .map(Offset::Offset)
                    .unwrap_or(Offset::Beginning);
                tpl.add_partition_offset(&job.topic, job.partition, offset)
                    .map_err(|e| {
                        StreamsError::Kafka(format!(
                            "restore of {}-{}: {e}",
                            job.topic, job.partition
                        ))
                    })?;
                if !self.quiet() {
                    tracing::info!(task = %targets[job.target].task.id, store = %job.name,
                        changelog = %job.topic, from = ?offset, records = job.to_restore, "restoring");
                }
            }
            self.consumer
                .assign(&tpl)
                .map_err(|e| StreamsError::Kafka(format!("restore assign {tpl:?}: {e}")))?;
            let outcome = self.poll_and_apply(jobs, &active, targets);
            let _ = self.consumer.unassign();
            match outcome? {
                RoundEnd::Finished => return Ok(()),
                RoundEnd::OutOfRange => {
                    // Find which checkpoint fell outside; the next pass of
                    // the loop re-checks the watermarks and restarts those.
                    let mut any = false;
                    for &j in &active {
                        let job = &jobs[j];
                        if job.done || job.wiped_for_range {
                            continue;
                        }
                        if let (Ok((low, high)), Some(c)) = (
                            self.consumer.fetch_watermarks(
                                &job.topic,
                                job.partition,
                                Duration::from_secs(5),
                            ),
                            job.checkpoint,
                        ) && (c < low || c > high)
                        {
                            any = true;
                        }
                    }
                    if !any {
                        return Err(StreamsError::Kafka(
                            "restore: the broker answered offset out of range, but every \
                             checkpoint is inside its changelog; retry, or delete the task's \
                             state directory to force a full restore"
                                .into(),
                        ));
                    }
                }
            }
        }
    }

    /// Polls the assigned changelog partitions on a scoped thread and
    /// writes the batches into the stores on this one.
    fn poll_and_apply(
        &self,
        jobs: &mut [Job],
        active: &[usize],
        targets: &mut [RestoreTarget<'_>],
    ) -> Result<RoundEnd> {
        let by_partition: HashMap<i32, (usize, String)> = active
            .iter()
            .map(|&j| (jobs[j].partition, (j, jobs[j].topic.clone())))
            .collect();
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let (tx, rx) = mpsc::sync_channel::<Event>(4);
        std::thread::scope(|s| {
            let stop = &stop;
            s.spawn(move || self.poll_loop(by_partition, tx, stop));
            let mut last_log = Instant::now();
            let result = (|| {
                let mut remaining = active.len();
                while remaining > 0 {
                    let Ok(event) = rx.recv() else {
                        return Err(StreamsError::IllegalState(
                            "the restore poll thread stopped early".into(),
                        ));
                    };
                    match event {
                        Event::Batch {
                            job: j,
                            records,
                            next_offset,
                            end,
                        } => {
                            let job = &mut jobs[j];
                            let task = &mut targets[job.target].task;
                            if let Some(n) = next_offset
                                && (!records.is_empty() || job.checkpoint != Some(n))
                            {
                                task.state.apply_restored(job.store, &records, n)?;
                                job.checkpoint = Some(n);
                            } else if end && job.checkpoint.is_none() {
                                task.state.apply_restored(job.store, &[], 0)?;
                                job.checkpoint = Some(0);
                            }
                            job.applied += records.len() as u64;
                            if !end && self.over_budget() {
                                return Ok(RoundEnd::Finished);
                            }
                            if end {
                                job.done = true;
                                remaining -= 1;
                                let secs = started.elapsed().as_secs_f64().max(1e-3);
                                let _task = tracing::info_span!("task", task = %task.id).entered();
                                let _restore =
                                    tracing::info_span!("restore", task = %task.id).entered();
                                if !self.quiet() {
                                    tracing::info!(task = %task.id, store = %job.name,
                                        records = job.applied, rate = (job.applied as f64 / secs) as u64,
                                        elapsed_ms = started.elapsed().as_millis() as u64,
                                        "store restored");
                                }
                            }
                            let target = job.target;
                            let rate = active.iter().map(|&j| jobs[j].applied).sum::<u64>() as f64
                                / started.elapsed().as_secs_f64().max(1e-3);
                            targets[target].progress.restore_progress(
                                records.len() as u64,
                                remaining_of(jobs, target),
                                rate,
                            );
                            if last_log.elapsed() > Duration::from_secs(5) {
                                let applied: u64 = active.iter().map(|&j| jobs[j].applied).sum();
                                if !self.quiet() {
                                    tracing::info!(
                                        stores = active.len(),
                                        records = applied,
                                        rate = rate as u64,
                                        "restore progress"
                                    );
                                }
                                last_log = Instant::now();
                            }
                        }
                        Event::OutOfRange => return Ok(RoundEnd::OutOfRange),
                        Event::Failed(e) => return Err(e),
                    }
                }
                Ok(RoundEnd::Finished)
            })();
            stop.store(true, Ordering::Relaxed);
            drop(rx);
            result
        })
    }

    /// The poll thread: batches per partition, handed over when full and at
    /// each partition's end.
    fn poll_loop(
        &self,
        by_partition: HashMap<i32, (usize, String)>,
        tx: mpsc::SyncSender<Event>,
        stop: &AtomicBool,
    ) {
        let mut batches: HashMap<i32, (Batch, Option<i64>)> = HashMap::new();
        let mut ended: HashSet<i32> = HashSet::new();
        let mut last_progress = Instant::now();
        let errors = super::client_log::ErrorThrottle::default();
        while !stop.load(Ordering::Relaxed) && ended.len() < by_partition.len() {
            // Bad credentials or an untrusted certificate: no retry helps.
            if let Some(fault) = self.faults.error() {
                let _ = tx.send(Event::Failed(fault));
                return;
            }
            match self.consumer.poll(self.poll_timeout) {
                None => {
                    if last_progress.elapsed() > self.stall_timeout {
                        let _ = tx.send(Event::Failed(StreamsError::Kafka(format!(
                            "restore of {} changelog partition(s) made no progress for {:?} \
                             (task.timeout.ms); is the broker reachable?",
                            by_partition.len() - ended.len(),
                            self.stall_timeout
                        ))));
                        return;
                    }
                }
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    let p = m.partition();
                    let Some((job, topic)) = by_partition.get(&p) else {
                        continue;
                    };
                    if ended.contains(&p) || m.topic() != topic.as_str() {
                        continue;
                    }
                    let (batch, next) = batches
                        .entry(p)
                        .or_insert_with(|| (Vec::with_capacity(1024), None));
                    *next = Some(m.offset() + 1);
                    if let Some(k) = m.key() {
                        batch.push((k.to_vec(), m.payload().map(|v| v.to_vec())));
                    }
                    if batch.len() >= BATCH {
                        let records = std::mem::replace(batch, Vec::with_capacity(BATCH));
                        let event = Event::Batch {
                            job: *job,
                            records,
                            next_offset: *next,
                            end: false,
                        };
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    last_progress = Instant::now();
                    let Some((job, topic)) = by_partition.get(&p) else {
                        continue;
                    };
                    if !ended.insert(p) {
                        continue;
                    }
                    let (records, mut next) = batches.remove(&p).unwrap_or_default();
                    if next.is_none() {
                        // Nothing read (only markers or aborted records):
                        // the store is at the consumer's position.
                        next = self
                            .consumer
                            .position()
                            .ok()
                            .and_then(|pos| {
                                pos.find_partition(topic, p)
                                    .and_then(|e| e.offset().to_raw())
                            })
                            .filter(|o| *o >= 0);
                    }
                    let event = Event::Batch {
                        job: *job,
                        records,
                        next_offset: next,
                        end: true,
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                Some(Err(e))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange) =>
                {
                    let _ = tx.send(Event::OutOfRange);
                    return;
                }
                Some(Err(e)) if self.faults.check("restore consumer", &e, "") => {}
                Some(Err(e)) => {
                    // The restore consumer idles between restores, and while
                    // the broker is away librdkafka queues an error for every
                    // failed reconnect; they all arrive at the next poll.
                    // Log each kind once per interval.
                    let text = e.to_string();
                    if let Some(repeated) = errors.admit(&text) {
                        tracing::warn!(error = %text, repeated, "restore consumer error; retrying");
                    }
                    if last_progress.elapsed() > self.stall_timeout {
                        let _ = tx.send(Event::Failed(StreamsError::Kafka(format!(
                            "restore failed: {e}"
                        ))));
                        return;
                    }
                }
            }
        }
    }
}

/// Changelog records task `target` still has to apply.
fn remaining_of(jobs: &[Job], target: usize) -> u64 {
    jobs.iter()
        .filter(|j| j.target == target && !j.done)
        .map(|j| j.to_restore.saturating_sub(j.applied))
        .sum()
}

enum RoundEnd {
    Finished,
    OutOfRange,
}
