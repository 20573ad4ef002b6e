//! `ChangelogReader`: brings a task's stores up to the end of their
//! changelogs before the task processes anything.
//!
//! Why it is cheap after a crash: the local RocksDB holds exactly the last
//! committed state and the changelog offset it corresponds to (the
//! checkpoint), so only the records after the checkpoint are replayed. No
//! checkpoint (new machine, deleted state directory) means a full restore.
//!
//! Restore reads `read_committed` (aborted writes of a crashed predecessor
//! are never applied) until the end of the partition as it stood when the
//! restore started, in large batches written atomically with the new
//! checkpoint, and logs its progress.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::metrics::TaskStats;
use crate::error::{Result, StreamsError};
use crate::task::StreamTask;

const BATCH: usize = 20_000;

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

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            self.log.log("restore consumer", &error, reason);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

pub(crate) struct ChangelogReader {
    consumer: BaseConsumer<RestoreContext>,
    poll_timeout: Duration,
    stall_timeout: Duration,
}

impl ChangelogReader {
    pub fn new(base: &ClientConfig, stall_timeout: Duration) -> Result<ChangelogReader> {
        let mut cfg = base.clone();
        cfg.set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error")
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", "10485760")
            .set("queued.max.messages.kbytes", "262144")
            .set("group.id", "kstreams-restore-unused");
        let consumer: BaseConsumer<RestoreContext> = cfg
            .create_with_context(RestoreContext::default())
            .map_err(|e| StreamsError::Kafka(format!("cannot create the restore consumer: {e}")))?;
        Ok(ChangelogReader {
            consumer,
            poll_timeout: Duration::from_millis(500),
            stall_timeout,
        })
    }

    /// Restores every changelogged store of `task`.
    /// Progress goes to `progress` (restored, remaining, rate) for metrics.
    pub fn restore(&self, task: &mut StreamTask, progress: &TaskStats) -> Result<RestoreStats> {
        let _span = tracing::info_span!("restore", task = %task.id).entered();
        let mut total = RestoreStats::default();
        let start = Instant::now();
        for i in 0..task.state.stores.len() {
            let Some(topic) = task.state.stores[i].store.borrow().changelog.clone() else {
                continue;
            };
            let records = self.restore_store(task, i, &topic, progress)?;
            total.records += records;
        }
        total.elapsed = start.elapsed();
        Ok(total)
    }

    fn restore_store(
        &self,
        task: &mut StreamTask,
        index: usize,
        topic: &str,
        progress: &TaskStats,
    ) -> Result<u64> {
        let partition = task.id.partition;
        let store_name = task.state.stores[index].def.name.clone();
        let mut checkpoint = task.state.checkpoint(index)?;
        let mut wiped_for_range = false;
        'restart: loop {
            let start_offset = match checkpoint {
                Some(c) => Offset::Offset(c),
                None => {
                    task.state.wipe(index)?;
                    Offset::Beginning
                }
            };
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, start_offset)
                .map_err(|e| StreamsError::Kafka(format!("restore of {topic}-{partition}: {e}")))?;
            self.consumer.assign(&tpl).map_err(|e| {
                StreamsError::Kafka(format!("restore assign {topic}-{partition}: {e}"))
            })?;
            // How far the changelog goes now, for the remaining-records metric.
            let end = self
                .consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(5))
                .ok();
            let to_restore = match (end, checkpoint) {
                (Some((_, high)), Some(c)) => (high - c).max(0) as u64,
                (Some((low, high)), None) => (high - low).max(0) as u64,
                (None, _) => 0,
            };
            progress.restore_progress(0, to_restore, 0.0);
            let started = Instant::now();
            let mut last_log = Instant::now();
            let mut last_progress = Instant::now();
            let mut applied: u64 = 0;
            let mut batch: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::with_capacity(BATCH);
            let mut next_offset: Option<i64> = None;
            tracing::info!(task = %task.id, store = %store_name, changelog = topic, from = ?start_offset, "restoring");
            loop {
                match self.consumer.poll(self.poll_timeout) {
                    None => {
                        if last_progress.elapsed() > self.stall_timeout {
                            return Err(StreamsError::Kafka(format!(
                                "restore of {topic}-{partition} made no progress for {:?} (task.timeout.ms); is the broker reachable?",
                                self.stall_timeout
                            )));
                        }
                    }
                    Some(Ok(m)) => {
                        last_progress = Instant::now();
                        let key = match m.key() {
                            Some(k) => k.to_vec(),
                            None => continue,
                        };
                        batch.push((key, m.payload().map(|v| v.to_vec())));
                        next_offset = Some(m.offset() + 1);
                        if batch.len() >= BATCH {
                            applied += batch.len() as u64;
                            task.state
                                .apply_restored(index, &batch, next_offset.unwrap())?;
                            let secs = started.elapsed().as_secs_f64().max(1e-3);
                            progress.restore_progress(
                                batch.len() as u64,
                                to_restore.saturating_sub(applied),
                                applied as f64 / secs,
                            );
                            batch.clear();
                        }
                        if last_log.elapsed() > Duration::from_secs(5) {
                            let secs = started.elapsed().as_secs_f64().max(1e-3);
                            tracing::info!(task = %task.id, store = %store_name, records = applied, rate = (applied as f64 / secs) as u64, "restore progress");
                            last_log = Instant::now();
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange)
                            && !wiped_for_range =>
                    {
                        tracing::warn!(task = %task.id, store = %store_name, "checkpoint is outside the changelog (topic recreated or truncated?); doing a full restore");
                        checkpoint = None;
                        wiped_for_range = true;
                        continue 'restart;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(task = %task.id, store = %store_name, error = %e, "restore consumer error; retrying");
                        if last_progress.elapsed() > self.stall_timeout {
                            return Err(StreamsError::Kafka(format!(
                                "restore of {topic}-{partition} failed: {e}"
                            )));
                        }
                    }
                }
            }
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            progress.restore_progress(
                batch.len() as u64,
                0,
                (applied + batch.len() as u64) as f64 / secs,
            );
            if let Some(n) = next_offset {
                applied += batch.len() as u64;
                task.state.apply_restored(index, &batch, n)?;
            } else if checkpoint.is_none() {
                // Empty changelog: record that we are at its start.
                let pos = self
                    .consumer
                    .position()
                    .ok()
                    .and_then(|p| {
                        p.find_partition(topic, partition)
                            .and_then(|e| e.offset().to_raw())
                    })
                    .filter(|o| *o >= 0)
                    .unwrap_or(0);
                task.state.apply_restored(index, &[], pos)?;
            }
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                task = %task.id, store = %store_name, records = applied,
                rate = (applied as f64 / secs) as u64, elapsed_ms = started.elapsed().as_millis() as u64,
                "restore done"
            );
            let _ = self.consumer.unassign();
            return Ok(applied);
        }
    }
}
