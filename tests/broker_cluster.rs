//! Production clusters: the example binaries run against a real 3-broker
//! KRaft cluster (replication factor 3, `min.insync.replicas=2`) while
//! brokers are killed with SIGKILL -- the leaders of the input partitions
//! and the transaction coordinators of the jobs' tasks -- or bounced one by
//! one. Input flows all the time (an idempotent producer). At the end the
//! jobs drain the input, are stopped, and only then is the output read
//! `read_committed` and checked for exactness.
//!
//! The two tests each start their own cluster and run one after the other.
//! Each prints what the failures cost the jobs (fenced and re-created tasks,
//! transaction calls given up), from the jobs' logs.
//! `KSTREAMS_CLUSTER_CYCLES` (default 5) sets the kill cycles of the orders test.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kstreams::apps::order_aggregation::per_minute::CustomerMinute;
use kstreams::runtime::partitioner::partition_for_key;
use kstreams_testkit::{
    ClusterOptions, Isolation, KafkaCluster, TestRecord, committed_offsets, partition_count,
    read_to_end, transaction_state_partition,
};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use support::*;

/// One cluster at a time: the machine has 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a killed or stopped broker stays down.
const DOWNTIME: Duration = Duration::from_secs(20);
const PARTITIONS: usize = 6;

// ---------------------------------------------------------------- input feeding

/// Generates the input, chunk by chunk, and knows what the output must be.
trait Source: Send + 'static {
    fn chunk(&mut self) -> Vec<TestRecord>;
    /// The last records, sent once the feeder is told to stop.
    fn finish(&mut self) -> Vec<TestRecord>;
}

#[derive(Default)]
struct Deliveries {
    ok: std::sync::atomic::AtomicUsize,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::SeqCst);
            }
            Err((e, _)) => self.failed.lock().unwrap().push(e.to_string()),
        }
    }
}

/// A background producer writing `source`'s chunks to `topic` until stopped.
/// Idempotent, `acks=all`, with a long delivery timeout: a chunk in flight when
/// a leader dies is retried on the new leader and written exactly once (a
/// duplicated poison order would otherwise reach the dead-letter topic twice).
struct Feeder<S: Source> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(S, usize)>>,
}

impl<S: Source> Feeder<S> {
    fn start(bs: &str, topic: &str, pause: Duration, mut source: S) -> Feeder<S> {
        let stop = Arc::new(AtomicBool::new(false));
        let (bs, topic, st) = (bs.to_string(), topic.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            let producer: BaseProducer<Deliveries> = ClientConfig::new()
                .set("bootstrap.servers", &bs)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("partitioner", "murmur2_random")
                .set("linger.ms", "5")
                .set("message.timeout.ms", "300000")
                .set("reconnect.backoff.max.ms", "500")
                .create_with_context(Deliveries::default())
                .expect("producer");
            let mut sent = 0;
            loop {
                let last = st.load(Ordering::SeqCst);
                let recs = if last {
                    source.finish()
                } else {
                    source.chunk()
                };
                for r in &recs {
                    send(&producer, &topic, r);
                }
                sent += recs.len();
                while producer.flush(Duration::from_secs(1)).is_err() {}
                if last {
                    break;
                }
                std::thread::sleep(pause);
            }
            let ctx = producer.context();
            let failed = ctx.failed.lock().unwrap();
            assert!(failed.is_empty(), "records not delivered: {failed:?}");
            assert_eq!(ctx.ok.load(Ordering::SeqCst), sent);
            (source, sent)
        });
        Feeder {
            stop,
            handle: Some(handle),
        }
    }

    /// Sends the final records and returns the source and the records sent.
    fn finish(mut self) -> (S, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().expect("feeder thread")
    }
}

fn send(producer: &BaseProducer<Deliveries>, topic: &str, r: &TestRecord) {
    let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
    if let Some(k) = &r.key {
        rec = rec.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        rec = rec.payload(v.as_slice());
    }
    if let Some(p) = r.partition {
        rec = rec.partition(p);
    }
    if let Some(ts) = r.timestamp {
        rec = rec.timestamp(ts);
    }
    loop {
        match producer.send(rec) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => panic!("producing to {topic}: {e}"),
        }
    }
}

// ---------------------------------------------------------------- orders

/// Orders for 50 customers, each sent to the input partition its customer
/// is repartitioned to: every downstream task then reads one upstream
/// task's output in order, so the per-minute windows (10 s grace) cannot
/// see late records however far one task falls behind during an outage.
/// 5% are re-sent (deduplicated), 1 in 500 records is malformed (DLQ).
struct Orders {
    rng: Rng,
    next: usize,
    per_chunk: usize,
    base: i64,
    last_ts: i64,
    resend: Vec<TestRecord>,
    bad_keys: Vec<String>,
    totals: HashMap<String, (u64, i64)>,
    windows: BTreeMap<(String, i64), (u64, i64)>,
}

impl Orders {
    fn new(per_chunk: usize) -> Orders {
        // Event times start now: the broker deletes segments older than retention.ms.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let base = now_ms / 60_000 * 60_000;
        Orders {
            rng: Rng(4711),
            next: 0,
            per_chunk,
            base,
            last_ts: base,
            resend: Vec::new(),
            bad_keys: Vec::new(),
            totals: HashMap::new(),
            windows: BTreeMap::new(),
        }
    }

    fn order(customer: &str, order_id: &str, amount: i64, ts: i64) -> TestRecord {
        let json = format!(
            r#"{{"order_id":"{order_id}","customer_id":"{customer}","amount_cents":{amount},"ts":{ts}}}"#
        );
        TestRecord::kv(order_id, json)
            .with_partition(partition_for_key(customer.as_bytes(), PARTITIONS))
            .with_timestamp(ts)
    }
}

impl Source for Orders {
    fn chunk(&mut self) -> Vec<TestRecord> {
        let mut out = Vec::new();
        for _ in 0..self.per_chunk {
            let i = self.next;
            self.next += 1;
            let customer = format!("c{:02}", self.rng.below(50));
            let amount = 100 + self.rng.below(10_000) as i64;
            // 50 ms apart (25 minutes of event time for 30k orders: the
            // broker refuses timestamps more than an hour ahead by default),
            // up to 5 s out of order: always within the grace.
            let ts = self.base + i as i64 * 50 - self.rng.below(5_000) as i64;
            self.last_ts = self.last_ts.max(ts);
            let t = self.totals.entry(customer.clone()).or_default();
            t.0 += 1;
            t.1 += amount;
            let w = self
                .windows
                .entry((customer.clone(), ts.div_euclid(60_000) * 60_000))
                .or_default();
            w.0 += 1;
            w.1 += amount;
            let rec = Orders::order(&customer, &format!("o{i}"), amount, ts);
            if self.rng.below(20) == 0 {
                self.resend.push(rec.clone());
            }
            out.push(rec);
            if !self.resend.is_empty() && self.rng.below(4) == 0 {
                out.push(self.resend.remove(0));
            }
            if self.rng.below(500) == 0 {
                let key = format!("bad{i}");
                out.push(
                    TestRecord::kv(&key, b"{not json".as_slice())
                        .with_partition((i % PARTITIONS) as i32),
                );
                self.bad_keys.push(key);
            }
        }
        out
    }

    /// The remaining re-sends, then one closing order 2 minutes later per
    /// partition, so that every real window closes in every task.
    fn finish(&mut self) -> Vec<TestRecord> {
        let mut out = std::mem::take(&mut self.resend);
        for p in 0..PARTITIONS as i32 {
            let customer = (0..)
                .map(|n| format!("closer-{n}"))
                .find(|c| partition_for_key(c.as_bytes(), PARTITIONS) == p)
                .unwrap();
            let ts = self.last_ts + 120_000;
            out.push(Orders::order(&customer, &customer, 1, ts));
            self.totals.insert(customer, (1, 1));
        }
        out
    }
}

fn assert_orders_exact(bs: &str, output: &str, o: &Orders) {
    let parse = |v: &str| -> (u64, i64) {
        let j: serde_json::Value = serde_json::from_str(v).expect("output JSON");
        (
            j["orders"].as_u64().unwrap(),
            j["total_cents"].as_i64().unwrap(),
        )
    };
    let got = values_by_key(bs, output);
    let wrong: Vec<String> = o
        .totals
        .iter()
        .filter(|(c, want)| got.get(*c).and_then(|v| v.last()).map(|v| parse(v)) != Some(**want))
        .map(|(c, want)| format!("{c}: want {want:?} got {:?}", got.get(c).map(|v| v.last())))
        .collect();
    assert!(wrong.is_empty(), "customer totals not exact: {wrong:?}");
    let unexpected: Vec<&String> = got.keys().filter(|c| !o.totals.contains_key(*c)).collect();
    assert!(
        unexpected.is_empty(),
        "totals for unknown customers {unexpected:?}"
    );
    for (c, (orders, _)) in &o.totals {
        let seq: Vec<u64> = got[c].iter().map(|v| parse(v).0).collect();
        assert!(
            seq.windows(2).all(|p| p[0] < p[1]),
            "{c}: committed order counts not strictly increasing: {seq:?}"
        );
        assert!(
            seq.iter().all(|n| n <= orders),
            "{c}: counted a re-sent order: {seq:?}"
        );
        let v: serde_json::Value = serde_json::from_str(got[c].last().unwrap()).unwrap();
        assert_eq!(v["customer_id"], serde_json::Value::String(c.clone()));
    }

    // Every window exactly once, exact.
    type Emitted = BTreeMap<(String, i64), Vec<(u64, i64, i64)>>;
    let mut emitted = Emitted::new();
    let per_minute = format!("{output}-per-minute");
    for r in read_to_end(bs, &per_minute, Isolation::ReadCommitted).expect("per-minute") {
        let m: CustomerMinute =
            serde_json::from_str(&r.value_str().unwrap_or_default()).expect("per-minute JSON");
        assert_eq!(r.key_str().as_deref(), Some(m.customer_id.as_str()));
        emitted
            .entry((m.customer_id, m.window_start))
            .or_default()
            .push((m.orders, m.revenue_cents, m.window_end));
    }
    let dups: Vec<_> = emitted
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .take(3)
        .collect();
    let missing: Vec<_> = o
        .windows
        .keys()
        .filter(|k| !emitted.contains_key(*k))
        .take(3)
        .collect();
    let extra: Vec<_> = emitted
        .keys()
        .filter(|k| !o.windows.contains_key(*k))
        .take(3)
        .collect();
    assert_eq!(
        emitted.len(),
        o.windows.len(),
        "windows emitted; duplicates {dups:?}, missing {missing:?}, unexpected {extra:?}"
    );
    for (key, (orders, revenue)) in &o.windows {
        assert_eq!(
            emitted.get(key),
            Some(&vec![(*orders, *revenue, key.1 + 60_000)]),
            "{key:?}: exactly one final result, exact"
        );
    }

    // Each malformed order reached the dead-letter topic exactly once.
    let mut dead: Vec<String> = read_to_end(bs, &format!("{output}-dlq"), Isolation::ReadCommitted)
        .expect("dlq")
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).to_string())
        .collect();
    dead.sort();
    let mut bad = o.bad_keys.clone();
    bad.sort();
    assert_eq!(dead, bad, "dead-letter topic");
}

// ---------------------------------------------------------------- words

const WORDS: &[&str] = &[
    "kafka", "stream", "state", "store", "commit", "offset", "broker", "leader", "replica",
    "straße", "東京", "42",
];

struct Lines {
    rng: Rng,
    chunk: usize,
    per_chunk: usize,
    counts: HashMap<String, u64>,
}

impl Source for Lines {
    fn chunk(&mut self) -> Vec<TestRecord> {
        let c = self.chunk;
        self.chunk += 1;
        (0..self.per_chunk)
            .map(|i| {
                let n = 1 + self.rng.below(6) as usize;
                let words: Vec<&str> = (0..n)
                    .map(|_| WORDS[self.rng.below(WORDS.len() as u64) as usize])
                    .collect();
                for w in &words {
                    *self.counts.entry(w.to_string()).or_default() += 1;
                }
                TestRecord::kv(format!("{c}-{i}"), words.join(" "))
            })
            .collect()
    }

    fn finish(&mut self) -> Vec<TestRecord> {
        Vec::new()
    }
}

fn assert_counts_exact(bs: &str, output: &str, expected: &HashMap<String, u64>) {
    let got = values_by_key(bs, output);
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(w, n)| got.get(*w).and_then(|v| v.last()) != Some(&n.to_string()))
        .map(|(w, n)| format!("{w}: want {n}, got {:?}", got.get(w).and_then(|v| v.last())))
        .collect();
    assert!(wrong.is_empty(), "final counts not exact: {wrong:?}");
    assert_eq!(got.len(), expected.len(), "counted words: {:?}", got.keys());
    for (w, n) in expected {
        let seq: Vec<u64> = got[w].iter().map(|v| v.parse().unwrap()).collect();
        assert!(
            seq.windows(2).all(|p| p[0] < p[1]),
            "{w}: committed counts not strictly increasing: {seq:?}"
        );
        assert!(
            seq.iter().all(|v| v <= n),
            "{w}: a count beyond the true one: {seq:?}"
        );
    }
}

// ---------------------------------------------------------------- jobs

fn start_jobs(
    bin: &str,
    n: usize,
    bs: &str,
    app: &str,
    input: &str,
    output: &str,
    work: &std::path::Path,
) -> Vec<Job> {
    (0..n)
        .map(|i| {
            let mut j = Job::new(
                bin,
                &format!("{bin}-{i}"),
                job_args(
                    bs,
                    app,
                    input,
                    output,
                    &work.join(format!("state-{i}")),
                    &["--config", "replication.factor=3"],
                ),
                work,
            );
            j.start();
            j
        })
        .collect()
}

fn dump(jobs: &[Job], cluster: &KafkaCluster) {
    for j in jobs {
        eprintln!(
            "--- {} log tail ---\n{}",
            j.name,
            strip_ansi(&j.log_tail(40))
        );
    }
    for id in cluster.node_ids() {
        let log = std::fs::read_to_string(cluster.log_path(id).unwrap()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "--- broker {id} log tail ---\n{}",
            lines[lines.len().saturating_sub(15)..].join("\n")
        );
    }
}

fn assert_running(jobs: &mut [Job], cluster: &KafkaCluster) {
    let dead: Vec<String> = jobs
        .iter_mut()
        .filter_map(|j| (!j.is_running()).then(|| j.name.clone()))
        .collect();
    if !dead.is_empty() {
        dump(jobs, cluster);
        // The reasons go in the panic message, the last thing printed: CI
        // shows only the head and the tail of a long failure output.
        let reasons: Vec<String> = jobs
            .iter()
            .filter(|j| dead.contains(&j.name))
            .map(|j| format!("{}: {}", j.name, j.error_lines(6).join("\n    ")))
            .collect();
        panic!("jobs exited: {dead:?}\n{}", reasons.join("\n"));
    }
}

/// The last offsets group `group` committed for `topic`, ignoring the
/// offsets of transactions still open (`committed_offsets` asks for stable
/// offsets, as a `read_committed` consumer does, and so waits while the
/// jobs keep committing: use this while input flows).
fn stable_offsets(bs: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let Ok(Some(n)) = partition_count(bs, topic) else {
        return HashMap::new();
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .set("group.id", group)
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .create()
        .expect("offsets client");
    let mut tpl = TopicPartitionList::new();
    for p in 0..n as i32 {
        tpl.add_partition(topic, p);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(c) => c
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// The offset after the last record of every non-empty partition of `topic`
/// (read `read_committed`: what the group must have consumed).
fn end_offsets(bs: &str, topic: &str) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for r in read_to_end(bs, topic, Isolation::ReadCommitted).expect("read to end") {
        ends.insert(r.partition, r.offset + 1);
    }
    ends
}

/// Waits until group `app` has committed every record of `topics` (in
/// topology order: the input first, then the repartition topic it feeds).
fn wait_consumed(bs: &str, app: &str, topics: &[String], jobs: &mut [Job], c: &KafkaCluster) {
    for topic in topics {
        let ends = end_offsets(bs, topic);
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let committed = committed_offsets(bs, app, topic).unwrap_or_default();
            let behind: Vec<String> = ends
                .iter()
                .filter(|(p, end)| committed.get(p).is_none_or(|o| o < end))
                .map(|(p, end)| format!("{p}: {:?}/{end}", committed.get(p)))
                .collect();
            if behind.is_empty() {
                break;
            }
            assert_running(jobs, c);
            if Instant::now() > deadline {
                dump(jobs, c);
                panic!("group {app} did not consume {topic}: {behind:?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// How often each kind of recovery shows in the jobs' logs.
fn recoveries(jobs: &[Job]) -> String {
    let logs: String = jobs
        .iter()
        .map(|j| strip_ansi(&j.log_tail(usize::MAX)))
        .collect();
    [
        (
            "tasks re-created after a fence",
            "re-creating it with a new producer",
        ),
        ("transaction calls given up", "never returned"),
        ("aborted transactions", "transaction aborted; rewinding"),
        ("lost assignments", "partitions lost"),
    ]
    .iter()
    .map(|(what, needle)| format!("{what}: {}", logs.matches(needle).count()))
    .collect::<Vec<_>>()
    .join(", ")
}

fn stop_jobs(jobs: &mut [Job]) {
    for j in jobs.iter_mut() {
        let st = j
            .terminate(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{} did not exit after SIGTERM", j.name));
        assert!(
            st.success(),
            "{} exited with {st}: {}",
            j.name,
            j.log_tail(20)
        );
    }
}

/// Job log lines (all jobs) since `from[i]` lines that mention broker
/// trouble: for the report of each cycle.
fn trouble_lines(jobs: &[Job], from: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    for (j, skip) in jobs.iter().zip(from) {
        let log = strip_ansi(&j.log_tail(usize::MAX));
        for l in log.lines().skip(*skip) {
            let lower = l.to_lowercase();
            if [
                "retr",
                "coordinator",
                "abort",
                "fenced",
                "not_leader",
                "leader",
                "disconnect",
            ]
            .iter()
            .any(|w| lower.contains(w))
            {
                out.push(format!("{}: {l}", j.name));
            }
        }
    }
    out
}

fn log_lens(jobs: &[Job]) -> Vec<usize> {
    jobs.iter()
        .map(|j| j.log_tail(usize::MAX).lines().count())
        .collect()
}

/// Polls `moved` through the downtime of a broker killed at `down`; returns
/// when (after the kill) it first held, then sleeps out the rest of the downtime.
fn during_outage(down: Instant, mut moved: impl FnMut() -> bool) -> Option<Duration> {
    let mut when = None;
    while down.elapsed() < DOWNTIME {
        if when.is_none() && moved() {
            when = Some(down.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    when
}

/// Restarts node `id` and waits until every partition is fully replicated;
/// returns how long each step took.
fn restart_and_replicate(cluster: &KafkaCluster, id: i32) -> (Duration, Duration) {
    let t0 = Instant::now();
    cluster.restart(id).expect("restart broker");
    let restart = t0.elapsed();
    cluster
        .wait_fully_replicated(Duration::from_secs(120))
        .expect("fully replicated");
    (restart, t0.elapsed() - restart)
}

/// The transaction coordinator (node id) of each transactional id, from one
/// metadata request (the leaders of `__transaction_state`).
fn coordinators(cluster: &KafkaCluster, ids: &[String]) -> Option<BTreeMap<String, i32>> {
    let leaders = cluster.leaders("__transaction_state").ok()?;
    ids.iter()
        .map(|id| {
            let p = transaction_state_partition(id, leaders.len() as i32);
            Some((id.clone(), *leaders.get(&p)?))
        })
        .collect()
}

// ---------------------------------------------------------------- tests

#[test]
fn order_aggregation_is_exact_when_leaders_and_transaction_coordinators_are_killed() {
    let _serial = serial();
    let cycles = size("KSTREAMS_CLUSTER_CYCLES", 5);
    let started = Instant::now();
    let work = work_dir("cluster-orders");
    // Event time runs ahead of the clock (see Orders): allow more than the
    // default hour ahead, for longer runs with KSTREAMS_CLUSTER_CYCLES.
    let cluster = KafkaCluster::start(
        ClusterOptions::default().with_property("log.message.timestamp.after.max.ms", "86400000"),
    )
    .expect("cluster");
    let bs = cluster.bootstrap_servers();
    let (input, output, app) = ("orders", "totals", "orders-app");
    cluster
        .create_topic(input, PARTITIONS as i32, false)
        .unwrap();
    cluster
        .create_topic(output, PARTITIONS as i32, false)
        .unwrap();
    cluster
        .create_topic(&format!("{output}-per-minute"), PARTITIONS as i32, false)
        .unwrap();
    cluster
        .create_topic(&format!("{output}-dlq"), 1, false)
        .unwrap();
    eprintln!("cluster up in {:?}: {bs}", started.elapsed());

    let mut jobs = start_jobs("order_aggregation", 3, &bs, app, input, output, &work);
    let feeder = Feeder::start(&bs, input, Duration::from_millis(400), Orders::new(40));
    let repartition = format!("{app}-orders-by-customer-repartition");
    // Every task has committed at least once: its transactional producer is live.
    wait_until(Duration::from_secs(180), "every task to commit", || {
        assert_running(&mut jobs, &cluster);
        [input.to_string(), repartition.clone()]
            .iter()
            .all(|t| stable_offsets(&bs, app, t).len() == PARTITIONS)
    });
    assert_eq!(
        partition_count(&bs, &repartition).unwrap(),
        Some(PARTITIONS)
    );
    cluster
        .wait_fully_replicated(Duration::from_secs(120))
        .unwrap();
    let tasks: Vec<String> = (0..2)
        .flat_map(|s| (0..PARTITIONS).map(move |p| format!("{app}-{s}_{p}")))
        .collect();
    eprintln!("jobs running after {:?}", started.elapsed());

    for cycle in 1..=cycles {
        let t0 = Instant::now();
        // 1. The broker leading the most input partitions crashes.
        let leaders = cluster.leaders(input).unwrap();
        let victim = cluster
            .node_ids()
            .into_iter()
            .max_by_key(|id| leaders.values().filter(|l| *l == id).count())
            .unwrap();
        let led: Vec<i32> = leaders
            .iter()
            .filter(|(_, l)| **l == victim)
            .map(|(p, _)| *p)
            .collect();
        assert!(
            !led.is_empty(),
            "broker {victim} leads no input partition: {leaders:?}"
        );
        let marks = log_lens(&jobs);
        let offsets_before = stable_offsets(&bs, app, input);
        cluster.kill(victim).unwrap();
        let down = Instant::now();
        let moved = during_outage(down, || {
            cluster.leaders(input).is_ok_and(|l| {
                led.iter()
                    .all(|p| l.get(p).is_some_and(|n| *n >= 0 && *n != victim))
            })
        });
        let offsets_during = stable_offsets(&bs, app, input);
        assert_running(&mut jobs, &cluster);
        let moved = moved.unwrap_or_else(|| {
            dump(&jobs, &cluster);
            panic!("leadership of input partitions {led:?} never left broker {victim}")
        });
        let (restart, replicated) = restart_and_replicate(&cluster, victim);
        let progressed =
            offsets_during.values().sum::<i64>() - offsets_before.values().sum::<i64>();
        eprintln!(
            "cycle {cycle}: killed broker {victim} (leader of input partitions {led:?}); \
             leaders moved after {moved:?}; {progressed} input records committed while it was \
             down; restarted in {restart:?}, fully replicated {replicated:?} later; {} job log \
             lines about broker trouble",
            trouble_lines(&jobs, &marks).len()
        );

        // 2. A transaction coordinator of live tasks crashes.
        let coord = coordinators(&cluster, &tasks).unwrap();
        assert_eq!(
            cluster.transaction_coordinator(&tasks[0]).ok(),
            coord.get(&tasks[0]).copied()
        );
        let by_node = |id: i32| -> Vec<String> {
            coord
                .iter()
                .filter(|(_, c)| **c == id)
                .map(|(t, _)| t.clone())
                .collect()
        };
        let victim2 = cluster
            .node_ids()
            .into_iter()
            .filter(|id| !by_node(*id).is_empty())
            .max_by_key(|id| (*id != victim, by_node(*id).len()))
            .expect("a coordinator");
        let coordinated = by_node(victim2);
        assert!(!coordinated.is_empty());
        let marks = log_lens(&jobs);
        cluster.kill(victim2).unwrap();
        let down = Instant::now();
        let moved = during_outage(down, || {
            coordinators(&cluster, &coordinated)
                .is_some_and(|now| now.values().all(|c| *c >= 0 && *c != victim2))
        });
        assert_running(&mut jobs, &cluster);
        let moved = moved.unwrap_or_else(|| {
            dump(&jobs, &cluster);
            panic!("the coordinator of {coordinated:?} never left broker {victim2}")
        });
        let (restart, replicated) = restart_and_replicate(&cluster, victim2);
        let trouble = trouble_lines(&jobs, &marks);
        eprintln!(
            "cycle {cycle}: killed broker {victim2} (transaction coordinator of {} tasks: \
             {coordinated:?}); coordinators moved after {moved:?}; restarted in {restart:?}, \
             fully replicated {replicated:?} later; {} job log lines about broker trouble, \
             e.g. {:?}",
            coordinated.len(),
            trouble.len(),
            trouble.first()
        );
        eprintln!("cycle {cycle} took {:?}", t0.elapsed());
    }

    let (orders, sent) = feeder.finish();
    let t0 = Instant::now();
    wait_consumed(
        &bs,
        app,
        &[input.to_string(), repartition],
        &mut jobs,
        &cluster,
    );
    stop_jobs(&mut jobs);
    eprintln!("recoveries: {}", recoveries(&jobs));
    eprintln!(
        "{sent} input records ({} orders, {} malformed) drained in {:?}",
        orders.next,
        orders.bad_keys.len(),
        t0.elapsed()
    );
    assert_orders_exact(&bs, output, &orders);
    eprintln!("orders test took {:?}", started.elapsed());
}

#[test]
fn word_count_is_exact_through_a_rolling_bounce_of_all_brokers() {
    let _serial = serial();
    let started = Instant::now();
    let work = work_dir("cluster-words");
    let cluster = KafkaCluster::start(ClusterOptions::default()).expect("cluster");
    let bs = cluster.bootstrap_servers();
    let (input, output, app) = ("lines", "counts", "wc-app");
    cluster
        .create_topic(input, PARTITIONS as i32, false)
        .unwrap();
    cluster
        .create_topic(output, PARTITIONS as i32, false)
        .unwrap();
    let mut jobs = start_jobs("word_count", 2, &bs, app, input, output, &work);
    let lines = Lines {
        rng: Rng(31337),
        chunk: 0,
        per_chunk: 100,
        counts: HashMap::new(),
    };
    let feeder = Feeder::start(&bs, input, Duration::from_millis(300), lines);
    let repartition = format!("{app}-counts-repartition");
    wait_until(Duration::from_secs(180), "every task to commit", || {
        assert_running(&mut jobs, &cluster);
        [input.to_string(), repartition.clone()]
            .iter()
            .all(|t| stable_offsets(&bs, app, t).len() == PARTITIONS)
    });
    cluster
        .wait_fully_replicated(Duration::from_secs(120))
        .unwrap();

    for id in cluster.node_ids() {
        let t0 = Instant::now();
        let leaders = cluster.leaders(input).unwrap();
        let led: BTreeSet<i32> = leaders
            .iter()
            .filter(|(_, l)| **l == id)
            .map(|(p, _)| *p)
            .collect();
        cluster.stop(id).unwrap();
        let stopped = t0.elapsed();
        // A controlled shutdown hands its leaderships over before it exits.
        let after = cluster.leaders(input).unwrap();
        assert!(
            led.iter()
                .all(|p| after.get(p).is_some_and(|n| *n >= 0 && *n != id)),
            "broker {id} stopped but still leads some of {led:?}: {after:?}"
        );
        assert_running(&mut jobs, &cluster);
        let (restart, replicated) = restart_and_replicate(&cluster, id);
        eprintln!(
            "bounce of broker {id} (leader of input partitions {led:?}, stopped in {stopped:?}, \
             restarted in {restart:?}, fully replicated {replicated:?} later) took {:?}",
            t0.elapsed()
        );
    }

    let (lines, sent) = feeder.finish();
    wait_consumed(
        &bs,
        app,
        &[input.to_string(), repartition],
        &mut jobs,
        &cluster,
    );
    stop_jobs(&mut jobs);
    eprintln!("{sent} lines; recoveries: {}", recoveries(&jobs));
    assert_counts_exact(&bs, output, &lines.counts);
    eprintln!("word count test took {:?}", started.elapsed());
}
