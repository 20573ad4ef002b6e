//! A task's start: its producer, its stores restored from the changelogs,
//! its input partitions at their committed offsets. Shared by the classic
//! protocol's eager assignment (`TaskManager::on_assign`) and the Streams
//! protocol's incremental one (`reconcile.rs`).

use super::*;

impl TaskManager {
    /// The configuration of task `id`'s `StreamTask`, writing through
    /// `collector` (an active task's producer, or a standby's nothing).
    pub(super) fn task_config(
        &self,
        id: TaskId,
        collector: Box<dyn crate::task_context::RecordCollector>,
        cache_max_bytes: usize,
    ) -> Result<TaskConfig> {
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
        Ok(TaskConfig {
            application_id: cfg.application_id.clone(),
            task_id: id,
            topology: self.shared.topology.clone(),
            subtopology: sub,
            state_dir: Some(self.state_dir(id)),
            collector,
            wall_clock: now_ms(),
            lock_wait: Duration::from_secs(60),
            deserialization_policy: cfg.deserialization_policy.clone(),
            processing_policy: cfg.processing_policy.clone(),
            production_policy: cfg.production_policy.clone(),
            max_write_set_bytes: 64 << 20,
            cache_max_bytes,
        })
    }

    pub(super) fn create_task(
        &self,
        id: TaskId,
        partitions: Vec<(String, i32)>,
        made: Option<Result<TaskProducerParts>>,
    ) -> Result<ActiveTask> {
        let (producer, tracker) = match (&self.alos_producer, made) {
            (Some((p, t)), _) => (p.clone(), t.clone()),
            (None, Some(made)) => made?,
            (None, None) => transactional_producer(&self.shared, id)?,
        };
        let deferred = Rc::new(Deferred::default());
        let sender = Rc::new(TaskSender::new(producer.clone()));
        let collector = Box::new(KafkaRecordCollector {
            sender: sender.clone(),
            tracker: tracker.clone(),
            deferred: deferred.clone(),
        });
        let task = StreamTask::new(self.task_config(
            id,
            collector,
            self.shared.config.cache_max_bytes,
        )?)?;
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
            commit_started: Instant::now(),
            no_defer: false,
            refused: None,
        })
    }

    /// Creates (or resumes) and restores the tasks of `wanted`, then
    /// returns where their partitions start: the committed offsets, read
    /// with retries, or `auto.offset.reset`. `tpl` holds exactly the
    /// partitions of `wanted`.
    pub(super) fn start_tasks<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        wanted: BTreeMap<TaskId, Partitions>,
        tpl: &TopicPartitionList,
    ) -> Result<TopicPartitionList> {
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
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
                Some(c) => {
                    // Where the partition starts, to rewind after an abort,
                    // and its time as of that commit.
                    if let Some(id) = self.by_partition.get(topic, *p)
                        && let Some(t) = self.active.get_mut(id)
                    {
                        t.task.set_committed_offset(topic, *p, c.offset);
                        if let Some(time) = c.time {
                            t.task.set_committed_partition_time(topic, *p, time);
                        }
                    }
                    Offset::Offset(c.offset)
                }
                None => reset,
            };
            start
                .add_partition_offset(topic, *p, offset)
                .map_err(|e| StreamsError::Kafka(format!("assign failed: {e}")))?;
        }
        Ok(start)
    }
}
