//! `StreamTask`: one sub-topology instantiated for one partition number.
//!
//! A task owns its nodes, its stores (through the state manager) and its
//! record collector. The Kafka runtime and the test driver both drive tasks
//! through the same calls: `process` for each input record, `punctuate`
//! for wall-clock time, then `prepare_commit` → (the caller commits) →
//! `post_commit`. So users' unit tests run the very code that runs in
//! production.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Result, StreamsError};
use crate::processor::{NodeLifecycle, PunctuationType};
use crate::record::{Headers, RecordMetadata};
use crate::state::StateManager;
use crate::task_context::{RecordCollector, StoreSlot, TaskMetrics, TaskShared};
use crate::topology::nodes::{BuildArgs, RawSource};
use crate::topology::{NodeKind, Subtopology, Topology};
use crate::{ErrorPolicy, TaskId, dlq_headers};

/// Everything needed to create a task.
pub(crate) struct TaskConfig {
    pub application_id: String,
    pub task_id: TaskId,
    pub topology: Arc<Topology>,
    pub subtopology: Subtopology,
    /// `state.dir/<application.id>/<task id>`; required if any store is persistent.
    pub state_dir: Option<PathBuf>,
    pub collector: Box<dyn RecordCollector>,
    pub wall_clock: i64,
    pub lock_wait: Duration,
    pub deserialization_policy: ErrorPolicy,
    pub processing_policy: ErrorPolicy,
    /// What to do with an output record the producer refuses.
    pub production_policy: ErrorPolicy,
    /// Write-set size that triggers an early commit.
    pub max_write_set_bytes: usize,
    /// `cache.max.bytes.buffering` for this task's processors.
    pub cache_max_bytes: usize,
}

pub(crate) struct StreamTask {
    pub id: TaskId,
    pub shared: Rc<TaskShared>,
    pub state: StateManager,
    #[allow(dead_code)]
    pub subtopology: Subtopology,
    sources: HashMap<String, Rc<RefCell<dyn RawSource>>>,
    lifecycles: BTreeMap<usize, Rc<RefCell<dyn NodeLifecycle>>>,
    /// Next offset to read, per input partition, for what was processed.
    consumed: BTreeMap<(String, i32), i64>,
    /// Next offset to read, per input partition, as of the last commit.
    committed: BTreeMap<(String, i32), i64>,
    /// `consumed` when the transaction being committed was sealed: what
    /// `committed` becomes once that commit succeeds.
    sealed: Option<BTreeMap<(String, i32), i64>>,
    /// The largest timestamp read per input partition (partition time).
    partition_time: BTreeMap<(String, i32), i64>,
    /// Stream time, partition times and stream-time punctuation schedules
    /// as of the last commit: an abort returns to them.
    committed_clock: Clock,
    /// The same when the transaction being committed was sealed.
    sealed_clock: Option<Clock>,
    deserialization_policy: ErrorPolicy,
    /// Per-topic overrides of `deserialization_policy` (set per source).
    source_policies: HashMap<String, ErrorPolicy>,
    processing_policy: ErrorPolicy,
    production_policy: ErrorPolicy,
    /// Whether any policy dead-letters, so a record's headers are kept.
    dead_letters: bool,
    max_write_set_bytes: usize,
    initialized: bool,
}

impl StreamTask {
    pub fn new(cfg: TaskConfig) -> Result<StreamTask> {
        let TaskConfig {
            application_id,
            task_id,
            topology,
            subtopology,
            state_dir,
            collector,
            wall_clock,
            lock_wait,
            deserialization_policy,
            processing_policy,
            production_policy,
            max_write_set_bytes,
            cache_max_bytes,
        } = cfg;
        let defs: Vec<_> = subtopology
            .stores
            .iter()
            .map(|s| {
                topology
                    .store_def(s)
                    .cloned()
                    .ok_or_else(|| StreamsError::UnknownStore(s.clone()))
            })
            .collect::<Result<_>>()?;
        let state = StateManager::open(
            &defs,
            &application_id,
            state_dir,
            task_id.partition,
            lock_wait,
        )?;
        let mut slots = HashMap::new();
        for ms in &state.stores {
            slots.insert(
                ms.def.name.clone(),
                StoreSlot {
                    store: ms.store.clone(),
                    key_serde: ms.def.key_serde.clone(),
                    value_serde: ms.def.value_serde.clone(),
                    ttl_ms: match ms.def.kind {
                        crate::StoreKind::Ttl { ttl_ms } => Some(ttl_ms),
                        crate::StoreKind::KeyValue => None,
                    },
                },
            );
        }
        let shared = Rc::new(TaskShared {
            task_id,
            application_id: application_id.clone(),
            metadata: RefCell::new(None),
            stream_time: Cell::new(i64::MIN),
            wall_clock: Cell::new(wall_clock),
            punctuations: RefCell::new(Vec::new()),
            next_punctuator_id: Cell::new(0),
            collector: RefCell::new(collector),
            stores: RefCell::new(slots),
            commit_requested: Cell::new(false),
            metrics: TaskMetrics::default(),
            cache_max_bytes,
            production_policy: production_policy.clone(),
        });

        // Build leaves first, so every node gets its built children.
        let mut inputs: HashMap<usize, Box<dyn Fn() -> Box<dyn std::any::Any>>> = HashMap::new();
        let mut sources = HashMap::new();
        let mut source_policies: HashMap<String, ErrorPolicy> = HashMap::new();
        let mut lifecycles = BTreeMap::new();
        for &idx in subtopology.nodes.iter().rev() {
            let def = &topology.nodes[idx];
            let children = def
                .children
                .iter()
                .map(|c| {
                    let make = inputs.get(c).ok_or_else(|| {
                        StreamsError::Topology(format!(
                            "child {} of '{}' was not built",
                            topology.nodes[*c].name, def.name
                        ))
                    })?;
                    Ok((topology.nodes[*c].name.clone(), make()))
                })
                .collect::<Result<Vec<_>>>()?;
            let sink_topic = match &def.kind {
                NodeKind::Sink { topic } => Some(topic.resolve(&application_id)),
                _ => None,
            };
            let built = def.factory.build(BuildArgs {
                name: &def.name,
                index: idx,
                children,
                task: &shared,
                stores: def.stores.iter().cloned().collect::<HashSet<_>>(),
                sink_topic,
            })?;
            if let Some(input) = built.input {
                inputs.insert(idx, input);
            }
            if let Some(l) = built.lifecycle {
                lifecycles.insert(idx, l);
            }
            if let (Some(src), NodeKind::Source { topics }) = (built.source, &def.kind) {
                for t in topics {
                    sources.insert(t.resolve(&application_id), src.clone());
                    if let Some(p) = topology.deserialization_policy(&def.name) {
                        source_policies.insert(t.resolve(&application_id), p.clone());
                    }
                }
            }
        }
        let dead_letters = [
            &deserialization_policy,
            &processing_policy,
            &production_policy,
        ]
        .into_iter()
        .chain(source_policies.values())
        .any(|p| matches!(p, ErrorPolicy::DeadLetter(_)));
        Ok(StreamTask {
            id: task_id,
            shared,
            state,
            subtopology,
            sources,
            lifecycles,
            consumed: BTreeMap::new(),
            committed: BTreeMap::new(),
            sealed: None,
            partition_time: BTreeMap::new(),
            committed_clock: Clock::default(),
            sealed_clock: None,
            deserialization_policy,
            source_policies,
            processing_policy,
            dead_letters,
            production_policy,
            max_write_set_bytes,
            initialized: false,
        })
    }

    /// The resolved input topics of this task.
    pub fn input_topics(&self) -> Vec<String> {
        let mut v: Vec<String> = self.sources.keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether `init` ran (the task was created earlier and is being resumed).
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// Calls `init` on every processor (after restore, before the first record).
    pub fn init(&mut self) -> Result<()> {
        if self.initialized {
            return Ok(());
        }
        for l in self.lifecycles.values() {
            l.borrow_mut().init()?;
        }
        self.initialized = true;
        Ok(())
    }

    /// Sets an input partition's time as of the last commit (read back from
    /// the committed offset's metadata): stream time resumes from the
    /// largest of them after a restart or a move, instead of from nothing.
    pub fn set_committed_partition_time(&mut self, topic: &str, partition: i32, time: i64) {
        let key = (topic.to_string(), partition);
        let pt = self.partition_time.entry(key.clone()).or_insert(time);
        *pt = (*pt).max(time);
        let pt = *pt;
        self.committed_clock.partition_time.insert(key, pt);
        if pt > self.shared.stream_time.get() {
            self.shared.stream_time.set(pt);
        }
        self.committed_clock.stream_time = self.committed_clock.stream_time.max(pt);
    }

    /// The partition times to commit with the offsets (as sealed, if a
    /// commit is being prepared).
    pub fn partition_times_to_commit(&self) -> Vec<(String, i32, i64)> {
        self.sealed_clock
            .as_ref()
            .map_or(&self.partition_time, |c| &c.partition_time)
            .iter()
            .map(|((t, p), time)| (t.clone(), *p, *time))
            .collect()
    }

    fn clock(&self) -> Clock {
        Clock {
            stream_time: self.shared.stream_time.get(),
            partition_time: self.partition_time.clone(),
            punctuations: self
                .shared
                .punctuations
                .borrow()
                .iter()
                .filter(|p| p.kind == PunctuationType::StreamTime)
                .map(|p| (p.id, p.next))
                .collect(),
        }
    }

    /// Sets where reading starts for an input partition (the committed offset).
    pub fn set_committed_offset(&mut self, topic: &str, partition: i32, offset: i64) {
        self.committed
            .insert((topic.to_string(), partition), offset);
        self.consumed.insert((topic.to_string(), partition), offset);
    }

    /// Processes one input record.
    #[allow(clippy::too_many_arguments)]
    pub fn process(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Headers,
    ) -> Result<()> {
        let source = self
            .sources
            .get(topic)
            .ok_or_else(|| {
                StreamsError::IllegalState(format!(
                    "task {} has no source for topic '{topic}'",
                    self.id
                ))
            })?
            .clone();
        {
            // Reuse the metadata's topic string: no allocation per record.
            let mut meta = self.shared.metadata.borrow_mut();
            match meta.as_mut() {
                Some(m) => {
                    if m.topic != topic {
                        m.topic.clear();
                        m.topic.push_str(topic);
                    }
                    m.partition = partition;
                    m.offset = offset;
                }
                None => {
                    *meta = Some(RecordMetadata {
                        topic: topic.to_string(),
                        partition,
                        offset,
                    });
                }
            }
        }
        if timestamp > self.shared.stream_time.get() {
            self.shared.stream_time.set(timestamp);
        }
        // A task reads few partitions: a scan avoids a String per record.
        match self
            .partition_time
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic)
        {
            Some((_, pt)) => *pt = (*pt).max(timestamp),
            None => {
                self.partition_time
                    .insert((topic.to_string(), partition), timestamp);
            }
        }
        // The original headers are kept for a dead-letter record; cloned
        // only when a dead-letter policy is configured.
        let dlq_headers = self.dead_letters.then(|| headers.clone());
        // A panicking user closure must not take the thread down silently:
        // it becomes a processing error and goes through the policy.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            source
                .borrow_mut()
                .process_raw(key, value, timestamp, headers)
        }))
        .unwrap_or_else(|panic| {
            Err(StreamsError::processing(
                "<panic>",
                format!("a processor panicked: {}", panic_message(&*panic)),
            ))
        });
        if let Err(e) = result {
            // The producer left the transaction: no record is at fault and
            // no handler decides; the task manager aborts and rewinds.
            if e.is_transaction_aborted() {
                return Err(e);
            }
            // Which handler decides: a bad input record, a record the
            // producer refused, or anything else an operator reported.
            let (policy, counter, handler) = match e {
                StreamsError::Deserialization { .. } => (
                    self.source_policies
                        .get(topic)
                        .unwrap_or(&self.deserialization_policy),
                    &self.shared.metrics.skipped_deserialization,
                    "default.deserialization.exception.handler",
                ),
                StreamsError::Production { .. } => (
                    &self.production_policy,
                    &self.shared.metrics.production_errors,
                    "production.exception.handler",
                ),
                _ => (
                    &self.processing_policy,
                    &self.shared.metrics.processing_errors,
                    "processing.exception.handler",
                ),
            };
            let e = if matches!(e, StreamsError::Deserialization { .. }) {
                e
            } else {
                StreamsError::AtRecord {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    source: Box::new(e),
                }
            };
            match policy.clone() {
                ErrorPolicy::LogAndContinue => {
                    tracing::warn!(task = %self.id, error = %e, handler, "skipping a record that failed (log_and_continue)");
                    counter.set(counter.get() + 1);
                }
                ErrorPolicy::LogAndFail => return Err(e),
                ErrorPolicy::DeadLetter(dlq) => {
                    let mut h = dlq_headers.unwrap_or_default();
                    h.add(dlq_headers::TOPIC, topic.as_bytes().to_vec());
                    h.add(dlq_headers::PARTITION, partition.to_string().into_bytes());
                    h.add(dlq_headers::OFFSET, offset.to_string().into_bytes());
                    h.add(dlq_headers::EXCEPTION, e.to_string().into_bytes());
                    h.add(
                        dlq_headers::APPLICATION_ID,
                        self.shared.application_id.as_bytes().to_vec(),
                    );
                    self.shared
                        .collector
                        .borrow_mut()
                        .send(&dlq, None, key, value, timestamp, &h)?;
                    tracing::warn!(task = %self.id, error = %e, dlq = %dlq, "sent a failed record to the dead-letter topic");
                    let m = &self.shared.metrics.dead_lettered;
                    m.set(m.get() + 1);
                }
            }
        }
        let m = &self.shared.metrics.processed;
        m.set(m.get() + 1);
        // A task reads few partitions: a scan avoids a String per record.
        match self
            .consumed
            .iter_mut()
            .find(|((t, p), _)| *p == partition && t == topic)
        {
            Some((_, o)) => *o = offset + 1,
            None => {
                // The first record of this partition since the task
                // started: if no committed offset is known, this is where
                // an abort must rewind to.
                self.committed
                    .entry((topic.to_string(), partition))
                    .or_insert(offset);
                self.consumed
                    .insert((topic.to_string(), partition), offset + 1);
            }
        }
        self.punctuate_kind(PunctuationType::StreamTime, self.shared.stream_time.get())?;
        if self.state.write_set_bytes() > self.max_write_set_bytes {
            self.shared.commit_requested.set(true);
        }
        Ok(())
    }

    /// Advances the wall clock and fires due wall-clock punctuators.
    pub fn punctuate_wall_clock(&mut self, now: i64) -> Result<()> {
        self.shared.wall_clock.set(now);
        self.punctuate_kind(PunctuationType::WallClockTime, now)
    }

    fn punctuate_kind(&mut self, kind: PunctuationType, now: i64) -> Result<()> {
        if now == i64::MIN {
            return Ok(());
        }
        let due: Vec<(usize, crate::PunctuatorId)> = {
            let mut ps = self.shared.punctuations.borrow_mut();
            let mut due = Vec::new();
            for p in ps.iter_mut().filter(|p| p.kind == kind) {
                if p.next == i64::MIN {
                    p.next = now;
                }
                if p.next <= now {
                    due.push((p.node, p.id));
                    let missed = (now - p.next) / p.interval_ms;
                    p.next += (missed + 1) * p.interval_ms;
                }
            }
            due
        };
        for (node, id) in due {
            if let Some(l) = self.lifecycles.get(&node) {
                let saved = self.shared.metadata.borrow_mut().take();
                // A panicking punctuator stops the thread with an error
                // naming it, as Kafka Streams fails on a punctuation
                // exception, instead of unwinding through the stream thread.
                let result = caught("a punctuator", || l.borrow_mut().punctuate(id, now));
                *self.shared.metadata.borrow_mut() = saved;
                result?;
            }
        }
        Ok(())
    }

    /// Whether there is anything to commit.
    pub fn commit_needed(&self) -> bool {
        self.consumed != self.committed
            || self.shared.commit_requested.get()
            || self
                .state
                .stores
                .iter()
                .any(|s| !s.store.borrow().write_set().is_empty())
    }

    /// Whether a processor asked for a commit.
    pub fn commit_requested(&self) -> bool {
        self.shared.commit_requested.get()
    }

    /// Commit, step 1: flush processor caches downstream, send the stores'
    /// changelog records, then seal the transaction's write sets and input
    /// offsets. Processing may go on before `post_commit`: its writes go to
    /// new write sets, its offsets into the next commit.
    pub fn prepare_commit(&mut self) -> Result<()> {
        self.flush_processors()?;
        self.send_changelogs()?;
        self.seal();
        Ok(())
    }

    /// Commit, step 1, for a commit thread: `prepare_commit`, returning the
    /// sealed write sets for the commit thread to write into RocksDB after
    /// the commit (`SealedState`).
    pub fn prepare_commit_sealed(&mut self) -> Result<crate::state::SealedState> {
        self.prepare_commit()?;
        Ok(self.state.sealed_state())
    }

    fn seal(&mut self) {
        self.state.seal();
        self.sealed = Some(self.consumed.clone());
        self.sealed_clock = Some(self.clock());
        self.shared.commit_requested.set(false);
    }

    /// Lets every processor forward what it buffered.
    pub fn flush_processors(&mut self) -> Result<()> {
        // No input record is being processed during a flush.
        let saved = self.shared.metadata.borrow_mut().take();
        let result = self
            .lifecycles
            .values()
            .try_for_each(|l| caught("a processor's flush", || l.borrow_mut().flush()));
        *self.shared.metadata.borrow_mut() = saved;
        result
    }

    /// Sends the stores' write sets to their changelogs.
    pub fn send_changelogs(&mut self) -> Result<()> {
        let ts = self.shared.stream_time.get().max(0);
        let mut collector = self.shared.collector.borrow_mut();
        self.state.send_changelogs(&mut **collector, ts)
    }

    /// The input offsets of the last successful commit.
    pub fn committed_offsets(&self) -> Vec<(String, i32, i64)> {
        self.committed
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect()
    }

    /// The offsets to commit for this task's input partitions (what was
    /// processed so far; right after `prepare_commit`, what it sealed).
    pub fn offsets_to_commit(&self) -> Vec<(String, i32, i64)> {
        self.consumed
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect()
    }

    /// Commit, step 3 (after the caller committed): the sealed write sets
    /// become local state and the sealed offsets the committed ones (a
    /// caller that did not call `prepare_commit` commits everything).
    pub fn post_commit(&mut self) -> Result<()> {
        self.post_commit_with(false)
    }

    /// `post_commit`; with `rocks_written`, the RocksDB part of the sealed
    /// write sets was already written by the commit thread
    /// (`StateManager::sealed_batch`).
    pub fn post_commit_with(&mut self, rocks_written: bool) -> Result<()> {
        if self.sealed.is_none() {
            self.seal();
        }
        {
            let collector = self.shared.collector.borrow();
            self.state
                .apply_committed_with(&**collector, rocks_written)?;
        }
        // Merged, not replaced: a partition first read after the seal has
        // its rewind position in `committed` already.
        if let Some(sealed) = self.sealed.take() {
            self.committed.extend(sealed);
        }
        if let Some(clock) = self.sealed_clock.take() {
            self.committed_clock = clock;
        }
        Ok(())
    }

    /// After an aborted transaction: drop all uncommitted work. Returns the
    /// offsets to rewind the input partitions to.
    pub fn abort(&mut self) -> Vec<(String, i32, i64)> {
        for l in self.lifecycles.values() {
            l.borrow_mut().discard();
        }
        self.state.discard();
        self.sealed = None;
        self.sealed_clock = None;
        // Stream time is part of the transaction: decisions on it (a TTL,
        // a window closing, a stream-time punctuation) come out the same
        // when the aborted records are processed again.
        let clock = self.committed_clock.clone();
        self.shared.stream_time.set(clock.stream_time);
        self.partition_time = clock.partition_time;
        for p in self.shared.punctuations.borrow_mut().iter_mut() {
            if p.kind == PunctuationType::StreamTime {
                // Scheduled after the last commit: as if never run.
                p.next = clock
                    .punctuations
                    .iter()
                    .find(|(id, _)| *id == p.id)
                    .map_or(i64::MIN, |(_, next)| *next);
            }
        }
        // Every partition read since the last commit has an entry in
        // `committed`: the committed offset, or the first offset read.
        let rewind: Vec<(String, i32, i64)> = self
            .committed
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect();
        self.consumed = self.committed.clone();
        self.shared.commit_requested.set(false);
        rewind
    }

    /// Closes the processors. Uncommitted state is dropped.
    pub fn close(&mut self) {
        for l in self.lifecycles.values() {
            l.borrow_mut().close();
        }
        self.state.discard();
    }

    pub fn processed(&self) -> u64 {
        self.shared.metrics.processed.get()
    }

    pub fn skipped_deserialization(&self) -> u64 {
        self.shared.metrics.skipped_deserialization.get()
    }

    pub fn processing_errors(&self) -> u64 {
        self.shared.metrics.processing_errors.get()
    }

    pub fn production_errors(&self) -> u64 {
        self.shared.metrics.production_errors.get()
    }

    pub fn dead_lettered(&self) -> u64 {
        self.shared.metrics.dead_lettered.get()
    }

    pub fn dropped(&self) -> BTreeMap<(String, String), u64> {
        self.shared.metrics.dropped.borrow().clone()
    }
}

/// The text of a caught panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs user code outside `process` (`what`: a punctuator, a flush); a
/// panic becomes an error that names it.
fn caught(what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(StreamsError::processing(
            "<panic>",
            format!("{what} panicked: {}", panic_message(&*panic)),
        ))
    })
}

/// What stream time is made of at one point (see `StreamTask::abort`).
#[derive(Clone, Debug)]
struct Clock {
    stream_time: i64,
    partition_time: BTreeMap<(String, i32), i64>,
    /// The next due time of each stream-time punctuation.
    punctuations: Vec<(crate::PunctuatorId, i64)>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            stream_time: i64::MIN,
            partition_time: BTreeMap::new(),
            punctuations: Vec::new(),
        }
    }
}
