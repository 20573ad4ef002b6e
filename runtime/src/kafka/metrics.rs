//! Metrics: counters of each stream thread and each task, and their
//! Prometheus exposition.
//!
//! Why it is built this way:
//! - The per-record hot path touches only atomics (`ThreadMetrics::add_processed`),
//!   never a lock or an allocation. Per-task figures live in the task itself
//!   (plain `Cell`s, the task is single-threaded) and are *published* by the
//!   stream thread into [`TaskStats`] about once a second, together with the
//!   figures that are too costly to keep per record: consumer lag (from the
//!   consumer's cached watermarks, no broker round-trip), store entries and
//!   size (RocksDB properties).
//! - A scrape reads these atomics and encodes them with `prometheus-client`
//!   as a [`Collector`], so nothing is formatted by hand and nothing is
//!   computed unless someone scrapes.
//!
//! Names (all prefixed `kstreams_`), labels `thread`, `task`, and where it
//! applies `topic`, `partition`, `store`, `reason`:
//! - per thread: `records_processed_total`, `records_per_second`,
//!   `commits_total`, `commit_seconds_total`, `commit_latency_seconds`
//!   (last), `transaction_aborts_total`, `producer_fences_total`, `rebalances_total`,
//!   `rebalance_seconds_total`, `rebalancing`, `tasks`;
//! - per task: `task_records_processed_total`, `task_records_per_second`,
//!   `task_records_dropped_total{reason}`, `task_records_late_total`,
//!   `task_records_skipped_total` (undeserializable),
//!   `task_processing_errors_total`, `task_production_errors_total`,
//!   `task_dead_letter_records_total`,
//!   `restore_records_total`, `restore_remaining_records`,
//!   `restore_records_per_second`, `consumer_lag{topic,partition}`,
//!   `store_entries{store}`, `store_size_bytes{store}`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::TaskId;
use crate::state::Backend;
use crate::task::StreamTask;

const R: Ordering = Ordering::Relaxed;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An `f64` kept in an `AtomicU64` (its bits).
#[derive(Default, Debug)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), R);
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(R))
    }
}

/// Counters of one stream thread.
///
/// Written by the thread (atomics only on the per-record path), read by
/// [`crate::KafkaStreams::metrics`] and by the metrics endpoint.
///
/// ```
/// let m = kstreams_runtime::kafka::ThreadMetrics::default();
/// assert_eq!(format!("{m:?}").is_empty(), false);
/// ```
#[derive(Default, Debug)]
pub struct ThreadMetrics {
    name: String,
    processed: AtomicU64,
    restored: AtomicU64,
    commits: AtomicU64,
    commit_nanos: AtomicU64,
    last_commit_nanos: AtomicU64,
    aborts: AtomicU64,
    fences: AtomicU64,
    rebalances: AtomicU64,
    rebalance_nanos: AtomicU64,
    rebalance_started_nanos: AtomicU64,
    pub(crate) in_rebalance: AtomicBool,
    pub(crate) assigned: AtomicBool,
    records_per_sec: AtomicF64,
    epoch: Option<Instant>,
    /// The thread's tasks (active and suspended); touched when tasks are
    /// created or closed and once a second, never per record.
    tasks: Mutex<BTreeMap<TaskId, Arc<TaskStats>>>,
    last_publish: Mutex<Option<(Instant, u64)>>,
    /// Standby tasks: (task, lag at the last catch-up, records applied).
    standbys: Mutex<Vec<(TaskId, u64, u64)>>,
}

impl ThreadMetrics {
    /// The thread's standby tasks after a catch-up round: (task, records it
    /// was behind the changelogs' ends, records applied so far).
    pub(crate) fn set_standbys(&self, v: Vec<(TaskId, u64, u64)>) {
        *lock(&self.standbys) = v;
    }
    pub(crate) fn named(name: String) -> ThreadMetrics {
        ThreadMetrics {
            name,
            epoch: Some(Instant::now()),
            ..Default::default()
        }
    }
    fn nanos_since_epoch(&self) -> u64 {
        self.epoch
            .map(|e| e.elapsed().as_nanos() as u64)
            .unwrap_or(0)
    }
    pub(crate) fn add_processed(&self, n: u64) {
        self.processed.fetch_add(n, R);
    }
    pub(crate) fn add_restored(&self, n: u64) {
        self.restored.fetch_add(n, R);
    }
    pub(crate) fn add_commit(&self, d: Duration) {
        let nanos = d.as_nanos() as u64;
        self.commits.fetch_add(1, R);
        self.commit_nanos.fetch_add(nanos, R);
        self.last_commit_nanos.store(nanos, R);
    }
    pub(crate) fn add_abort(&self) {
        self.aborts.fetch_add(1, R);
    }
    /// Transactions aborted so far.
    #[cfg(test)]
    pub(crate) fn aborts(&self) -> u64 {
        self.aborts.load(R)
    }
    pub(crate) fn add_fence(&self) {
        self.fences.fetch_add(1, R);
    }
    pub(crate) fn rebalance_started(&self) {
        if !self.in_rebalance.swap(true, R) {
            self.rebalance_started_nanos
                .store(self.nanos_since_epoch(), R);
        }
    }
    pub(crate) fn rebalance_finished(&self) {
        if self.in_rebalance.load(R) {
            let started = self.rebalance_started_nanos.load(R);
            self.rebalance_nanos
                .fetch_add(self.nanos_since_epoch().saturating_sub(started), R);
        }
        self.rebalances.fetch_add(1, R);
        self.in_rebalance.store(false, R);
        self.assigned.store(true, R);
    }

    /// The stats of task `id`, created if this thread did not have it.
    pub(crate) fn task(&self, id: TaskId) -> Arc<TaskStats> {
        lock(&self.tasks).entry(id).or_default().clone()
    }

    /// Starts new stats for task `id` (a task created anew, not resumed).
    pub(crate) fn reset_task(&self, id: TaskId) {
        lock(&self.tasks).insert(id, Arc::default());
    }

    /// Marks exactly `ids` as the thread's active tasks (others suspended).
    pub(crate) fn set_active<'a>(&self, ids: impl Iterator<Item = &'a TaskId>) {
        let ids: Vec<TaskId> = ids.copied().collect();
        for (id, s) in lock(&self.tasks).iter() {
            s.active.store(ids.contains(id), R);
        }
    }

    /// The thread's tasks and their stats.
    pub(crate) fn tasks(&self) -> Vec<(TaskId, Arc<TaskStats>)> {
        lock(&self.tasks)
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect()
    }

    fn add_to(&self, m: &mut MetricsSnapshot) {
        m.records_processed += self.processed.load(R);
        m.records_restored += self.restored.load(R);
        m.commits += self.commits.load(R);
        m.commit_time += Duration::from_nanos(self.commit_nanos.load(R));
        m.transaction_aborts += self.aborts.load(R);
        m.producer_fences += self.fences.load(R);
        m.rebalances += self.rebalances.load(R);
        m.rebalance_time += Duration::from_nanos(self.rebalance_nanos.load(R));
        for (_, t) in self.tasks() {
            m.restore_remaining += t.restore_remaining.load(R);
            m.records_dropped += t.dropped_total();
            m.records_late += t.late.load(R);
            m.records_dead_lettered += t.dead_lettered.load(R);
            m.consumer_lag += lock(&t.lag)
                .iter()
                .map(|l| l.lag.max(0) as u64)
                .sum::<u64>();
        }
    }
}

/// A snapshot of the application's counters, summed over threads and tasks.
///
/// ```
/// let m = kstreams_runtime::kafka::MetricsSnapshot::default();
/// assert_eq!(m.records_processed, 0);
/// assert_eq!(m.restore_remaining, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Input records processed (every source topic, repartition topics included).
    pub records_processed: u64,
    /// Changelog records restored.
    pub records_restored: u64,
    /// Changelog records still to restore (as of the last restore step).
    pub restore_remaining: u64,
    /// Commits.
    pub commits: u64,
    /// Total time spent committing.
    pub commit_time: Duration,
    /// Aborted transactions.
    pub transaction_aborts: u64,
    /// Task producers fenced (or failed for good) and re-created.
    pub producer_fences: u64,
    /// Completed rebalances.
    pub rebalances: u64,
    /// Total time spent in rebalances (from revocation to the applied assignment).
    pub rebalance_time: Duration,
    /// Records dropped by processors, every reason (`late` included).
    pub records_dropped: u64,
    /// Records dropped because they arrived after their window closed.
    pub records_late: u64,
    /// Records sent to a dead-letter topic.
    pub records_dead_lettered: u64,
    /// Consumer lag summed over the assigned input partitions (approximate:
    /// from the consumer's last fetch, refreshed about once a second).
    pub consumer_lag: u64,
}

impl MetricsSnapshot {
    pub(crate) fn of(threads: &[Arc<ThreadMetrics>]) -> MetricsSnapshot {
        let mut m = MetricsSnapshot::default();
        for t in threads {
            t.add_to(&mut m);
        }
        m
    }
}

/// A cloneable, thread-safe view of a [`crate::KafkaStreams`]'s counters,
/// e.g. for a progress display on another thread while `run_until_signal`
/// runs.
///
/// ```
/// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
/// let streams = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
/// let handle = streams.metrics_handle();
/// std::thread::spawn(move || println!("{:?}", handle.snapshot())).join().unwrap();
/// ```
#[derive(Clone)]
pub struct MetricsHandle(pub(crate) Arc<Vec<Arc<ThreadMetrics>>>);

impl MetricsHandle {
    /// The counters now, summed over threads and tasks.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
    /// # let streams = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// assert_eq!(streams.metrics_handle().snapshot().commits, 0);
    /// ```
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot::of(&self.0)
    }
}

/// Lag of one input partition.
#[derive(Clone, Debug)]
pub(crate) struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// Approximate size of one store.
#[derive(Clone, Debug)]
pub(crate) struct StoreStat {
    pub store: String,
    pub entries: u64,
    pub size_bytes: u64,
}

/// Figures of one task, published by its stream thread.
#[derive(Default, Debug)]
pub(crate) struct TaskStats {
    /// Whether the task is active (processing) rather than suspended.
    pub active: AtomicBool,
    processed: AtomicU64,
    records_per_sec: AtomicF64,
    dropped: Mutex<Vec<(String, u64)>>,
    late: AtomicU64,
    skipped: AtomicU64,
    processing_errors: AtomicU64,
    production_errors: AtomicU64,
    dead_lettered: AtomicU64,
    pub restored: AtomicU64,
    pub restore_remaining: AtomicU64,
    restore_rate: AtomicF64,
    stores: Mutex<Vec<StoreStat>>,
    lag: Mutex<Vec<PartitionLag>>,
    last_publish: Mutex<Option<(Instant, u64)>>,
}

impl TaskStats {
    fn dropped_total(&self) -> u64 {
        lock(&self.dropped).iter().map(|(_, n)| n).sum()
    }

    /// Restore progress of this task: `applied` records so far at `rate`
    /// records/s, `remaining` still to go.
    pub fn restore_progress(&self, applied_now: u64, remaining: u64, rate: f64) {
        self.restored.fetch_add(applied_now, R);
        self.restore_remaining.store(remaining, R);
        self.restore_rate.set(rate);
    }
}

/// What the stream thread shows of one of its tasks when publishing.
pub(crate) struct TaskView<'a> {
    pub id: TaskId,
    pub task: &'a StreamTask,
    pub active: bool,
}

/// Publishes the thread's and its tasks' figures (about once a second, from
/// the stream thread, off the per-record path). Tasks no longer held are
/// forgotten.
pub(crate) fn publish<'a, C: ConsumerContext>(
    metrics: &ThreadMetrics,
    consumer: &BaseConsumer<C>,
    tasks: impl Iterator<Item = TaskView<'a>>,
) {
    let now = Instant::now();
    {
        let processed = metrics.processed.load(R);
        let mut last = lock(&metrics.last_publish);
        if let Some((t, n)) = *last {
            let secs = now.duration_since(t).as_secs_f64().max(1e-3);
            metrics
                .records_per_sec
                .set(processed.saturating_sub(n) as f64 / secs);
        }
        *last = Some((now, processed));
    }
    let positions = consumer.position().ok();
    let mut seen = Vec::new();
    for v in tasks {
        let stats = metrics.task(v.id);
        seen.push(v.id);
        stats.active.store(v.active, R);
        let processed = v.task.processed();
        stats.processed.store(processed, R);
        {
            let mut last = lock(&stats.last_publish);
            if let Some((t, n)) = *last {
                let secs = now.duration_since(t).as_secs_f64().max(1e-3);
                stats
                    .records_per_sec
                    .set(processed.saturating_sub(n) as f64 / secs);
            }
            *last = Some((now, processed));
        }
        let dropped: Vec<(String, u64)> = {
            let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
            for ((_, reason), n) in v.task.dropped() {
                *by_reason.entry(reason).or_default() += n;
            }
            by_reason.into_iter().collect()
        };
        stats.late.store(
            dropped
                .iter()
                .filter(|(r, _)| r.contains("late"))
                .map(|(_, n)| n)
                .sum(),
            R,
        );
        *lock(&stats.dropped) = dropped;
        stats.skipped.store(v.task.skipped_deserialization(), R);
        stats.processing_errors.store(v.task.processing_errors(), R);
        stats.production_errors.store(v.task.production_errors(), R);
        stats.dead_lettered.store(v.task.dead_lettered(), R);
        let stores: Vec<StoreStat> = v
            .task
            .state
            .stores
            .iter()
            .map(|s| {
                let store = s.store.borrow();
                let size_bytes = match &store.backend {
                    Backend::Rocks { db, cf } => db.approximate_size_bytes(cf),
                    Backend::Memory(_) => 0,
                };
                StoreStat {
                    store: s.def.name.clone(),
                    entries: store.approximate_len(),
                    size_bytes,
                }
            })
            .collect();
        *lock(&stats.stores) = stores;
        if v.active {
            let mut lags = Vec::new();
            for (topic, partition, consumed) in v.task.offsets_to_commit() {
                let position = positions
                    .as_ref()
                    .and_then(|p| p.find_partition(&topic, partition))
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(consumed);
                if let Some(high) = cached_high_watermark(consumer, &topic, partition) {
                    lags.push(PartitionLag {
                        topic,
                        partition,
                        lag: (high - position).max(0),
                    });
                }
            }
            *lock(&stats.lag) = lags;
        } else {
            lock(&stats.lag).clear();
        }
    }
    lock(&metrics.tasks).retain(|id, _| seen.contains(id));
}

/// The partition's high watermark as librdkafka last saw it in a fetch
/// response: no request to the broker.
fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime, the
    // topic is a NUL-terminated string, and the out-pointers are to locals.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// Encodes every thread's and task's figures on each scrape.
#[derive(Debug)]
pub(crate) struct StreamsCollector {
    pub threads: Arc<Vec<Arc<ThreadMetrics>>>,
}

type Labels = Vec<(&'static str, String)>;

struct Family {
    name: &'static str,
    help: &'static str,
    counter: bool,
    samples: Vec<(Labels, f64)>,
}

impl Family {
    fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            counter: true,
            samples: Vec::new(),
        }
    }
    fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            counter: false,
            ..Family::counter(name, help)
        }
    }
    fn add(&mut self, labels: Labels, v: f64) {
        self.samples.push((labels, v));
    }
    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.counter {
            let mut e = encoder.encode_descriptor(
                self.name,
                self.help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (labels, v) in &self.samples {
                ConstCounter::new(*v).encode(e.encode_family(labels)?)?;
            }
        } else {
            let mut e = encoder.encode_descriptor(
                self.name,
                self.help,
                None,
                ConstGauge::new(0i64).metric_type(),
            )?;
            for (labels, v) in &self.samples {
                ConstGauge::new(*v).encode(e.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

impl Collector for StreamsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use Family as F;
        let mut processed = F::counter(
            "kstreams_records_processed",
            "Input records processed by the thread.",
        );
        let mut rate = F::gauge(
            "kstreams_records_per_second",
            "Records processed per second over the last second.",
        );
        let mut commits = F::counter("kstreams_commits", "Commits of the thread's tasks.");
        let mut commit_secs = F::counter(
            "kstreams_commit_seconds",
            "Time spent committing, in seconds.",
        );
        let mut commit_last = F::gauge(
            "kstreams_commit_latency_seconds",
            "Duration of the last commit, in seconds.",
        );
        let mut aborts = F::counter(
            "kstreams_transaction_aborts",
            "Aborted transactions (the tasks reprocessed from their last commit).",
        );
        let mut fences = F::counter(
            "kstreams_producer_fences",
            "Task producers fenced or failed for good, their tasks re-created or handed back.",
        );
        let mut rebalances = F::counter("kstreams_rebalances", "Completed rebalances.");
        let mut rebalance_secs = F::counter(
            "kstreams_rebalance_seconds",
            "Time spent in rebalances (revocation to applied assignment), in seconds.",
        );
        let mut rebalancing = F::gauge(
            "kstreams_rebalancing",
            "1 while the thread is in a rebalance.",
        );
        let mut task_count = F::gauge("kstreams_tasks", "Tasks held by the thread.");
        let mut t_processed = F::counter(
            "kstreams_task_records_processed",
            "Input records processed by the task.",
        );
        let mut t_rate = F::gauge(
            "kstreams_task_records_per_second",
            "Records processed per second by the task over the last second.",
        );
        let mut t_dropped = F::counter(
            "kstreams_task_records_dropped",
            "Records dropped by the task's processors, by reason.",
        );
        let mut t_late = F::counter(
            "kstreams_task_records_late",
            "Records dropped because their window had closed.",
        );
        let mut t_skipped = F::counter(
            "kstreams_task_records_skipped",
            "Input records that could not be deserialized and were skipped.",
        );
        let mut t_errors = F::counter(
            "kstreams_task_processing_errors",
            "Records whose processing failed and was skipped by the error policy.",
        );
        let mut t_production_errors = F::counter(
            "kstreams_task_production_errors",
            "Output records the producer refused that the production handler skipped.",
        );
        let mut t_dlq = F::counter(
            "kstreams_task_dead_letter_records",
            "Records sent to a dead-letter topic.",
        );
        let mut restored = F::counter(
            "kstreams_restore_records",
            "Changelog records restored into the task's stores.",
        );
        let mut remaining = F::gauge(
            "kstreams_restore_remaining_records",
            "Changelog records still to restore.",
        );
        let mut restore_rate = F::gauge(
            "kstreams_restore_records_per_second",
            "Restore rate of the task's last restore step.",
        );
        let mut lag = F::gauge(
            "kstreams_consumer_lag",
            "Records between the task's position and the partition's end (from the last fetch).",
        );
        let mut entries = F::gauge(
            "kstreams_store_entries",
            "Approximate entries of the store (RocksDB estimate-num-keys).",
        );
        let mut size = F::gauge(
            "kstreams_store_size_bytes",
            "Approximate bytes of the store (SST files and memtables).",
        );
        let mut standby_lag = F::gauge(
            "kstreams_standby_lag_records",
            "Changelog records the standby task was behind when it last caught up (once per commit interval).",
        );
        let mut standby_applied = F::counter(
            "kstreams_standby_records",
            "Changelog records the standby task applied to its stores.",
        );
        for t in self.threads.iter() {
            for (id, lag, applied) in lock(&t.standbys).iter() {
                let l = vec![("thread", t.name.clone()), ("task", id.to_string())];
                standby_lag.add(l.clone(), *lag as f64);
                standby_applied.add(l, *applied as f64);
            }
        }
        for t in self.threads.iter() {
            let th = || vec![("thread", t.name.clone())];
            processed.add(th(), t.processed.load(R) as f64);
            rate.add(th(), t.records_per_sec.get());
            commits.add(th(), t.commits.load(R) as f64);
            commit_secs.add(th(), t.commit_nanos.load(R) as f64 / 1e9);
            commit_last.add(th(), t.last_commit_nanos.load(R) as f64 / 1e9);
            aborts.add(th(), t.aborts.load(R) as f64);
            fences.add(th(), t.fences.load(R) as f64);
            rebalances.add(th(), t.rebalances.load(R) as f64);
            rebalance_secs.add(th(), t.rebalance_nanos.load(R) as f64 / 1e9);
            rebalancing.add(th(), if t.in_rebalance.load(R) { 1.0 } else { 0.0 });
            let tasks = t.tasks();
            task_count.add(th(), tasks.len() as f64);
            for (id, s) in tasks {
                let tl = || vec![("thread", t.name.clone()), ("task", id.to_string())];
                let with = |k: &'static str, v: String| {
                    let mut l = tl();
                    l.push((k, v));
                    l
                };
                t_processed.add(tl(), s.processed.load(R) as f64);
                t_rate.add(tl(), s.records_per_sec.get());
                for (reason, n) in lock(&s.dropped).iter() {
                    t_dropped.add(with("reason", reason.clone()), *n as f64);
                }
                t_late.add(tl(), s.late.load(R) as f64);
                t_skipped.add(tl(), s.skipped.load(R) as f64);
                t_errors.add(tl(), s.processing_errors.load(R) as f64);
                t_production_errors.add(tl(), s.production_errors.load(R) as f64);
                t_dlq.add(tl(), s.dead_lettered.load(R) as f64);
                restored.add(tl(), s.restored.load(R) as f64);
                remaining.add(tl(), s.restore_remaining.load(R) as f64);
                restore_rate.add(tl(), s.restore_rate.get());
                for l in lock(&s.lag).iter() {
                    let mut labels = with("topic", l.topic.clone());
                    labels.push(("partition", l.partition.to_string()));
                    lag.add(labels, l.lag as f64);
                }
                for st in lock(&s.stores).iter() {
                    entries.add(with("store", st.store.clone()), st.entries as f64);
                    size.add(with("store", st.store.clone()), st.size_bytes as f64);
                }
            }
        }
        for f in [
            processed,
            rate,
            commits,
            commit_secs,
            commit_last,
            aborts,
            fences,
            rebalances,
            rebalance_secs,
            rebalancing,
            task_count,
            t_processed,
            t_rate,
            t_dropped,
            t_late,
            t_skipped,
            t_errors,
            t_production_errors,
            t_dlq,
            restored,
            remaining,
            restore_rate,
            lag,
            entries,
            size,
            standby_lag,
            standby_applied,
        ] {
            f.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// The text exposition of `threads`' metrics (OpenMetrics, which Prometheus reads).
pub(crate) fn encode_text(threads: &Arc<Vec<Arc<ThreadMetrics>>>) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(StreamsCollector {
        threads: threads.clone(),
    }));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_thread_and_task_families() {
        let t = Arc::new(ThreadMetrics::named("app-StreamThread-1".into()));
        t.add_processed(5);
        t.add_commit(Duration::from_millis(3));
        t.rebalance_started();
        t.rebalance_finished();
        let s = t.task(TaskId {
            subtopology: 0,
            partition: 2,
        });
        s.restore_progress(7, 3, 100.0);
        let text = encode_text(&Arc::new(vec![t.clone()]));
        assert!(
            text.contains("kstreams_records_processed_total{thread=\"app-StreamThread-1\"} 5"),
            "{text}"
        );
        assert!(text.contains("kstreams_commits_total{thread=\"app-StreamThread-1\"} 1"));
        assert!(text.contains(
            "kstreams_restore_records_total{thread=\"app-StreamThread-1\",task=\"0_2\"} 7"
        ));
        assert!(text.contains(
            "kstreams_restore_remaining_records{thread=\"app-StreamThread-1\",task=\"0_2\"} 3"
        ));
        assert!(text.trim_end().ends_with("# EOF"));
        let snap = MetricsSnapshot::of(&[t]);
        assert_eq!(snap.records_processed, 5);
        assert_eq!(snap.restore_remaining, 3);
        assert_eq!(snap.rebalances, 1);
    }
}
