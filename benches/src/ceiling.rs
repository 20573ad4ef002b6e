//! The ceiling: a raw rdkafka consume → produce pass-through with
//! transactions and the same commit interval as the jobs, and no state.
//! Every input record is copied (key, value, timestamp) to the same
//! partition of the output topic; input offsets commit in the transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Options of `kstreams-bench ceiling` (the example binaries' flags).
#[derive(clap::Args, Debug)]
pub struct CeilingArgs {
    #[arg(long)]
    pub bootstrap_servers: String,
    #[arg(long)]
    pub application_id: String,
    #[arg(long)]
    pub input_topic: String,
    #[arg(long)]
    pub output_topic: String,
    /// Ignored (the ceiling has no state); accepted for a uniform command line.
    #[arg(long)]
    pub state_dir: Option<String>,
    /// Ignored: the ceiling is always transactional.
    #[arg(long, default_value = "exactly_once")]
    pub processing_guarantee: String,
    #[arg(long, default_value_t = 100)]
    pub commit_interval_ms: u64,
    /// key=value passed to both librdkafka clients. Repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
}

pub fn run(a: CeilingArgs) -> Result<(), String> {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    let mut extra = Vec::new();
    for kv in &a.config {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--config '{kv}' is not key=value"))?;
        extra.push((k.to_string(), v.to_string()));
    }
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &a.bootstrap_servers)
        .set("group.id", &a.application_id)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set_log_level(RDKafkaLogLevel::Warning);
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", &a.bootstrap_servers)
        .set("transactional.id", format!("{}-ceiling", a.application_id))
        .set("enable.idempotence", "true")
        .set("transaction.timeout.ms", "10000")
        // As kstreams' task producers (and the Java client) do: retry the
        // next transaction's CONCURRENT_TRANSACTIONS after 20 ms, not 100.
        .set("retry.backoff.ms", "20")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in &extra {
        cc.set(k, v);
        pc.set(k, v);
    }
    let consumer: BaseConsumer = cc.create().map_err(|e| format!("consumer: {e}"))?;
    let producer: BaseProducer = pc.create().map_err(|e| format!("producer: {e}"))?;
    let t = Duration::from_secs(30);
    producer
        .init_transactions(t)
        .map_err(|e| format!("init_transactions: {e}"))?;
    consumer
        .subscribe(&[&a.input_topic])
        .map_err(|e| format!("subscribe: {e}"))?;
    let interval = Duration::from_millis(a.commit_interval_ms);
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut last_commit = Instant::now();
    let mut stats = CommitStats::default();
    producer
        .begin_transaction()
        .map_err(|e| format!("begin_transaction: {e}"))?;
    while !STOP.load(Ordering::SeqCst) {
        if let Some(res) = consumer.poll(Duration::from_millis(50)) {
            let m = res.map_err(|e| format!("consume: {e}"))?;
            let mut rec: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&a.output_topic).partition(m.partition());
            if let Some(k) = m.key() {
                rec = rec.key(k);
            }
            if let Some(v) = m.payload() {
                rec = rec.payload(v);
            }
            if let Some(ts) = m.timestamp().to_millis() {
                rec = rec.timestamp(ts);
            }
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        producer.poll(Duration::from_millis(5));
                        rec = r;
                    }
                    Err((e, _)) => return Err(format!("produce: {e}")),
                }
            }
            next.insert(m.partition(), m.offset() + 1);
        }
        producer.poll(Duration::ZERO);
        if last_commit.elapsed() >= interval {
            commit(&consumer, &producer, &a.input_topic, &mut next, &mut stats)?;
            last_commit = Instant::now();
        }
    }
    commit(&consumer, &producer, &a.input_topic, &mut next, &mut stats)?;
    let n = stats.commits.max(1) as f64;
    eprintln!(
        "ceiling: {} commits; mean send_offsets_to_transaction {:.1} ms, commit_transaction {:.1} ms, begin_transaction {:.2} ms",
        stats.commits,
        stats.send_offsets.as_secs_f64() * 1e3 / n,
        stats.commit.as_secs_f64() * 1e3 / n,
        stats.begin.as_secs_f64() * 1e3 / n
    );
    flush_promptly(&producer, t)?;
    producer
        .commit_transaction(t)
        .map_err(|e| format!("commit_transaction: {e}"))
}

/// Waits until nothing is in flight, checking every millisecond. rdkafka
/// 0.39's `flush` (which `commit_transaction` calls first) polls in steps
/// of 100 ms that always run to their end, so a commit with a record in
/// flight took 100 ms; the runtime flushes the same way
/// (`streams_producer::flush_promptly`), so the ceiling does too.
fn flush_promptly(producer: &BaseProducer, timeout: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match producer.flush(Duration::ZERO) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                if started.elapsed() < timeout =>
            {
                producer.poll(Duration::from_millis(1));
            }
            Err(e) => return Err(format!("flush: {e}")),
        }
    }
}

/// Time spent in the transactional calls (reported on exit, to compare
/// with the jobs' commit times).
#[derive(Default)]
struct CommitStats {
    commits: u64,
    send_offsets: Duration,
    commit: Duration,
    begin: Duration,
}

/// Commits the open transaction with the consumed offsets and opens the next.
fn commit(
    consumer: &BaseConsumer,
    producer: &BaseProducer,
    topic: &str,
    next: &mut HashMap<i32, i64>,
    stats: &mut CommitStats,
) -> Result<(), String> {
    let t = Duration::from_secs(30);
    let started = Instant::now();
    if !next.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next.drain() {
            tpl.add_partition_offset(topic, p, Offset::Offset(o))
                .map_err(|e| format!("offsets: {e}"))?;
        }
        let meta = consumer
            .group_metadata()
            .ok_or("no consumer group metadata")?;
        producer
            .send_offsets_to_transaction(&tpl, &meta, t)
            .map_err(|e| format!("send_offsets_to_transaction: {e}"))?;
    }
    let offsets_done = Instant::now();
    flush_promptly(producer, t)?;
    producer
        .commit_transaction(t)
        .map_err(|e| format!("commit_transaction: {e}"))?;
    let commit_done = Instant::now();
    producer
        .begin_transaction()
        .map_err(|e| format!("begin_transaction: {e}"))?;
    stats.commits += 1;
    stats.send_offsets += offsets_done - started;
    stats.commit += commit_done - offsets_done;
    stats.begin += commit_done.elapsed();
    Ok(())
}
