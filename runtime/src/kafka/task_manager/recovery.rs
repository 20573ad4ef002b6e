//! What a thread does when a task cannot go on as it is: a fenced task is
//! re-created in place, a task that cannot rewind is handed back to the
//! group; and where a task (re)starts reading, from the group's committed
//! offsets.

use super::*;

impl TaskManager {
    /// Closes a task without committing and asks the thread to rejoin.
    pub(super) fn close_and_rejoin(&mut self, id: TaskId) {
        if let Some(mut t) = self.active.remove(&id) {
            join_in_flight(&mut t);
            t.task.close();
            for p in &t.partitions {
                self.by_partition.remove(p);
            }
        }
        self.rejoin_requested = true;
    }

    /// Re-creates task `id` in place after its producer was fenced or
    /// failed (`cause`): the task is closed without commit (its stores
    /// keep only committed state), a new producer is created, whose
    /// `init_transactions` aborts the old transaction, the stores catch up
    /// with their changelogs and the task's partitions are rewound to the
    /// group's committed offsets. The consumer keeps its assignment; other
    /// tasks go on. A revoking task is only closed (the group is moving it
    /// anyway); a task whose partitions are no longer assigned, or one that
    /// was re-created moments ago, is handed back to the group instead.
    pub(super) fn recreate_task<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        id: TaskId,
        cause: &str,
    ) -> Result<()> {
        let Some(mut old) = self.active.remove(&id) else {
            return Ok(());
        };
        self.metrics.add_fence();
        join_in_flight(&mut old);
        old.task.close();
        let partitions = std::mem::take(&mut old.partitions);
        for p in &partitions {
            self.by_partition.remove(p);
        }
        drop(old);
        if self.revoking {
            tracing::warn!(task = %id, error = %cause, "task fenced or its producer failed while revoked; closed without commit");
            return Ok(());
        }
        let assigned: Vec<(String, i32)> = consumer
            .assignment()
            .map(|a| {
                a.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect()
            })
            .unwrap_or_default();
        // A member that was out of the group (frozen past its session, say)
        // still holds its old assignment until librdkafka revokes it as
        // lost: then the fence was a new owner's, and this task is not ours.
        let still_ours =
            !consumer.assignment_lost() && partitions.iter().all(|p| assigned.contains(p));
        let recent = self
            .recreated_at
            .get(&id)
            .is_some_and(|at| at.elapsed() < RECREATE_AT_MOST_EVERY);
        if !still_ours || recent {
            tracing::warn!(task = %id, error = %cause, still_ours, recent,
                "task fenced or its producer failed; closed without commit, rejoining the group");
            self.rejoin_requested = true;
            return Ok(());
        }
        tracing::warn!(task = %id, error = %cause,
            "task fenced or its producer failed; re-creating it with a new producer and rewinding to the last commit");
        self.recreated_at.insert(id, Instant::now());
        let mut t = match self.create_task(id, partitions.clone(), None) {
            Ok(t) => t,
            Err(e) if self.shared.faults.error().is_some() => return Err(e),
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "cannot re-create the task; rejoining the group");
                self.rejoin_requested = true;
                return Ok(());
            }
        };
        let progress = self.metrics.task(id);
        let stats = self.restore.restore_all(&mut [RestoreTarget {
            task: &mut t.task,
            progress: &progress,
        }])?;
        self.metrics
            .add_restored(stats.iter().map(|s| s.records).sum());
        t.task.init()?;
        t.partitions = partitions.clone();
        t.begin()?;
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in &partitions {
            tpl.add_partition(topic, *p);
        }
        let committed = fetch_committed_offsets(
            consumer,
            &tpl,
            self.shared.config.task_timeout,
            &self.thread_name,
        )?;
        let reset = offset_reset(&self.shared.config);
        for (topic, p) in &partitions {
            let offset = match committed.get(&(topic.clone(), *p)) {
                Some(c) => {
                    t.task.set_committed_offset(topic, *p, c.offset);
                    if let Some(time) = c.time {
                        t.task.set_committed_partition_time(topic, *p, time);
                    }
                    Offset::Offset(c.offset)
                }
                None => reset,
            };
            if let Err(e) = retry_seek(consumer, topic, *p, offset, self.shared.config.task_timeout)
            {
                tracing::warn!(task = %id, error = %e, "cannot rewind the re-created task; rejoining the group");
                t.task.close();
                self.rejoin_requested = true;
                return Ok(());
            }
        }
        for p in &partitions {
            self.by_partition.insert(p.clone(), id);
        }
        self.active.insert(id, t);
        tracing::info!(task = %id, "task re-created; reprocessing from the last commit");
        Ok(())
    }
}

/// A committed offset and the partition time committed with it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Committed {
    pub offset: i64,
    pub time: Option<i64>,
}

/// A task fenced again within this time of its re-creation is handed back
/// to the group instead: another instance may really own it now.
const RECREATE_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// The group's committed offsets of `tpl`'s partitions (stable ones: a
/// `read_committed` consumer waits for pending transactional offsets),
/// retried while the coordinator cannot answer, for up to `retry_for`
/// (`task.timeout.ms`). A partition without a committed offset is absent.
/// With each offset comes the partition time committed with it, if any
/// (`offset_metadata.rs`).
pub(super) fn fetch_committed_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    retry_for: Duration,
    thread: &str,
) -> Result<HashMap<(String, i32), Committed>> {
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
                        let time = crate::kafka::offset_metadata::decode(
                            &crate::kafka::offset_metadata::text_of(&e),
                        );
                        offsets.insert(
                            (e.topic().to_string(), e.partition()),
                            Committed { offset: o, time },
                        );
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
pub(super) fn offset_reset(cfg: &StreamsConfig) -> Offset {
    match cfg.passthrough.get("auto.offset.reset").map(String::as_str) {
        Some("latest" | "largest" | "end") => Offset::End,
        // `error`: let librdkafka look the offset up and report it.
        Some("error") => Offset::Invalid,
        _ => Offset::Beginning,
    }
}

/// Where an aborted task's input partitions are rewound to its last
/// commit: the consumer, or a fake in unit tests (`commit_tests/`).
pub(super) trait InputSeek {
    /// Seeks `topic`/`partition` to `offset`, retrying for up to `retry_for`.
    fn seek_back(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        retry_for: Duration,
    ) -> std::result::Result<(), String>;
}

impl<C: ConsumerContext> InputSeek for BaseConsumer<C> {
    fn seek_back(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        retry_for: Duration,
    ) -> std::result::Result<(), String> {
        retry_seek(self, topic, partition, Offset::Offset(offset), retry_for)
            .map_err(|e| e.to_string())
    }
}

/// Seeks an input partition back to `offset` after an abort, retrying for
/// up to `retry_for` (the broker may be briefly unreachable).
pub(super) fn retry_seek<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    offset: Offset,
    retry_for: Duration,
) -> rdkafka::error::KafkaResult<()> {
    let started = Instant::now();
    loop {
        match consumer.seek(topic, partition, offset, Duration::from_secs(10)) {
            Err(e) if started.elapsed() < retry_for => {
                tracing::warn!(topic, partition, offset = ?offset, error = %e, "seek failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}
