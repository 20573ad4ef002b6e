//! `StreamsProducer`: a task's transactional producer (`transactional.id =
//! <application.id>-<task id>`), created and initialised, and the retry
//! rules of its transaction calls.
//!
//! Why retries live here: librdkafka lets a transactional call that failed
//! with a retriable error (the coordinator moved, the broker is down) be
//! called again, and a broker outage makes every call fail that way for a
//! while. Retrying up to `task.timeout.ms` rides the outage out; past it
//! the caller aborts the transaction or fails the thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

use super::client_fault::FaultSlot;
use super::client_log::ClientErrorLog;
use super::config::StreamsConfig;
use super::record_collector::{CollectorContext, DeliveryTracker, TaskProducer};
use super::task_manager::RuntimeShared;
use crate::TaskId;
use crate::error::{Result, StreamsError};

/// Timeout of one transactional call.
pub(crate) const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// One `abort_transaction` attempt, and how long a failing abort is retried
/// before the task is re-created with a new producer instead.
pub(crate) const ABORT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const ABORT_RETRY_FOR: Duration = Duration::from_secs(20);

/// Kafka's Java default: murmur2 of the key, so keyed records land where a
/// Java producer would put them (co-partitioning with Java-filled topics).
pub(crate) const PARTITIONER: &str = "murmur2_random";

/// The transactional producers' first retry backoff unless configured.
const TXN_RETRY_BACKOFF_MS: &str = "20";

/// A task's transactional producer and its delivery tracker.
pub(crate) type TaskProducerParts = (Arc<TaskProducer>, Arc<DeliveryTracker>);

/// Creates task `id`'s transactional producer (`transactional.id =
/// <application.id>-<task id>`) and calls `init_transactions`, which fences
/// any older producer with that id and aborts its open transaction.
pub(crate) fn transactional_producer(
    shared: &RuntimeShared,
    id: TaskId,
) -> Result<TaskProducerParts> {
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
    let context = CollectorContext {
        tracker: tracker.clone(),
        log: ClientErrorLog::reporting_to(shared.faults.clone()),
    };
    let p: TaskProducer =
        super::priority::created_lowered(cfg.background_nice, || pc.create_with_context(context))
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

/// Retries a transactional call while it keeps failing with a retriable
/// error (e.g. the broker is down), for up to `retry_for`
/// (`task.timeout.ms`). librdkafka allows retrying the same call; past
/// this, the caller aborts the transaction or fails the thread.
pub(crate) fn retry_retriable<E: Retriable>(
    what: &str,
    task: TaskId,
    retry_for: Duration,
    f: impl Fn() -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    retry_retriable_unless(None, what, task, retry_for, f)
}

/// An error that may say the failed call can be made again.
pub(crate) trait Retriable: std::fmt::Display {
    fn is_retriable(&self) -> bool;
}

impl Retriable for rdkafka::error::KafkaError {
    fn is_retriable(&self) -> bool {
        matches!(self, rdkafka::error::KafkaError::Transaction(e) if e.is_retriable())
    }
}

impl Retriable for super::txn_producer::TxnError {
    fn is_retriable(&self) -> bool {
        self.retriable
    }
}

/// [`retry_retriable`] that also gives up once `faults` holds an error no
/// retry can fix (a failed SASL handshake looks retriable to the call).
pub(crate) fn retry_retriable_unless<E: Retriable>(
    faults: Option<&FaultSlot>,
    what: &str,
    task: TaskId,
    retry_for: Duration,
    f: impl Fn() -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let started = Instant::now();
    let mut last_log: Option<Instant> = None;
    loop {
        match f() {
            Err(e)
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
                std::thread::sleep(RETRY_BACKOFF);
            }
            other => return other,
        }
    }
}

/// Pause between two attempts of a retriable transactional call.
#[cfg(not(test))]
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
#[cfg(test)]
const RETRY_BACKOFF: Duration = Duration::from_millis(5);

/// `abort_transaction` while a second thread serves the producer's delivery
/// reports. An abort purges the transaction's unsent records and waits until
/// their (failed) delivery reports have been served, which takes `poll`: after
/// a broker outage, an abort without it timed out ("the event queue must be
/// polled") on every retry, and each task took 20 s to be given up.
pub(crate) fn abort_polling(
    p: &TaskProducer,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<()> {
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

/// Waits until the producer has no record left unacknowledged, serving its
/// delivery reports, for at most `timeout`; a commit calls it right before
/// `commit_transaction`, whose own flush then finds nothing to wait for.
///
/// Why not rdkafka's `flush`: `BaseProducer::flush` (rdkafka 0.39) checks
/// once, then polls in steps of 100 ms, and `BaseProducer::poll(t)` returns
/// only once all of `t` has passed, however soon the last delivery report
/// came. So every flush that found one record in flight took 100 ms, and
/// `commit_transaction` flushes first: a task's commit took ~100 ms even on
/// an idle broker, a commit interval, in each of a word count's two
/// sub-topologies (see benches/RESULTS.md).
///
/// Why it sleeps between checks rather than polling with a short timeout:
/// rdkafka turns a poll's remaining time into whole milliseconds, rounding
/// down, so `poll(1 ms)` never blocks: it spins for the whole millisecond.
/// A flush built on it spun a core for as long as the broker took to
/// acknowledge, and with 128 tasks committing at once those spinning commit
/// threads took a quarter of the process's CPU from the stream thread and
/// the broker (64-partition word count, `perf`). Here the check
/// (`rd_kafka_flush` with no wait, which also sends lingering batches at
/// once) follows the served reports, then a nap that starts at
/// `FLUSH_NAP_MIN` and doubles up to `FLUSH_NAP_MAX`: a quick flush is seen
/// done within a fraction of a millisecond, a slow one costs a few dozen
/// wake-ups.
pub(crate) fn flush_promptly<C: ProducerContext>(
    p: &BaseProducer<C>,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<()> {
    let started = std::time::Instant::now();
    let mut nap = FLUSH_NAP_MIN;
    loop {
        match Producer::flush(p, Duration::ZERO) {
            Err(rdkafka::error::KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                if started.elapsed() < timeout =>
            {
                serve_delivery_reports(p);
                if p.in_flight_count() > 0 {
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(FLUSH_NAP_MAX);
                }
            }
            other => return other,
        }
    }
}

/// The first and the longest wait between two checks of `flush_promptly`.
const FLUSH_NAP_MIN: Duration = Duration::from_micros(100);
const FLUSH_NAP_MAX: Duration = Duration::from_millis(4);

/// Serves every delivery report queued now, without waiting.
///
/// `BaseProducer::poll(ZERO)` serves at most one event (one batch of
/// reports), so this goes on while an event shrank the producer's
/// out-queue (`rd_kafka_outq_len`: records not yet acknowledged plus
/// reports not yet served), and stops at the first poll that found nothing.
pub(crate) fn serve_delivery_reports<C: ProducerContext>(p: &BaseProducer<C>) {
    let mut left = p.in_flight_count();
    // Bounded: reports that keep coming are left for the next call.
    for _ in 0..4096 {
        if left <= 0 {
            return;
        }
        p.poll(Duration::ZERO);
        let now = p.in_flight_count();
        if now >= left {
            return;
        }
        left = now;
    }
}

/// A transaction stays open for a commit interval, so its timeout must be
/// well above it: 10 s, or three commit intervals when those are longer
/// (at most the broker's default `transaction.max.timeout.ms`, 15 min).
pub(crate) fn default_transaction_timeout_ms(cfg: &StreamsConfig) -> u64 {
    let three_intervals = cfg.commit_interval.as_millis() as u64 * 3;
    three_intervals.clamp(10_000, 900_000)
}
