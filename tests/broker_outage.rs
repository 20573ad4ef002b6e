//! A broker outage mid-run: while a producer keeps writing lines and the job
//! is busy counting them, the broker crashes, stays down for a while and
//! comes back with its data. (The job is frozen just before the crash until
//! the broker has aborted its open transactions: see the comment there.) The job keeps running and the final counts are exact, read
//! `read_committed`. Uses its own broker, since it restarts it.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kstreams_testkit::{
    BrokerOptions, KafkaBroker, TransactionListing, create_topic, end_offsets, list_transactions,
};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use support::*;

const WORDS: [&str; 6] = ["kafka", "stream", "state", "store", "commit", "offset"];
/// Lines per chunk of the background producer.
const CHUNK: usize = 100;
/// Chunks the producer still writes once the broker is back.
const CHUNKS_AFTER_RESTART: usize = 10;

/// Counts delivery reports: successes, and the text of every failure.
#[derive(Default)]
struct Deliveries {
    ok: AtomicUsize,
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

/// What the background producer did.
struct Produced {
    /// The true count of every word over all delivered lines.
    expected: HashMap<String, u64>,
    lines: usize,
    /// (start, end) of each chunk's send + flush.
    chunks: Vec<(Instant, Instant)>,
}

/// Produces chunks of `CHUNK` lines, flushing each, until `CHUNKS_AFTER_RESTART`
/// chunks were started after `restarted` was set. The producer is idempotent
/// with a long `message.timeout.ms`: a chunk sent while the broker is down
/// waits (librdkafka retries) and is written exactly once when it is back.
fn produce_through_outage(
    bs: String,
    restarted: Arc<AtomicBool>,
    chunks_done: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Produced> {
    std::thread::spawn(move || {
        let producer: BaseProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", &bs)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "300000")
            .set("reconnect.backoff.max.ms", "500")
            .create_with_context(Deliveries::default())
            .expect("producer");
        let mut produced = Produced {
            expected: HashMap::new(),
            lines: 0,
            chunks: Vec::new(),
        };
        let mut after_restart = 0;
        let mut chunk = 0usize;
        while after_restart < CHUNKS_AFTER_RESTART {
            if restarted.load(Ordering::SeqCst) {
                after_restart += 1;
            }
            let start = Instant::now();
            for i in 0..CHUNK {
                let n = chunk * CHUNK + i;
                let (a, b) = (WORDS[n % WORDS.len()], WORDS[(n * 7 + n / 6) % WORDS.len()]);
                *produced.expected.entry(a.to_string()).or_default() += 1;
                *produced.expected.entry(b.to_string()).or_default() += 1;
                let (key, line) = (format!("{chunk}-{i}"), format!("{a} {b}"));
                let mut rec = BaseRecord::to("lines").key(&key).payload(&line);
                loop {
                    match producer.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            rec = r;
                            producer.poll(Duration::from_millis(50));
                        }
                        Err((e, _)) => panic!("producing line {n}: {e}"),
                    }
                }
            }
            // Blocks while the broker is down; the messages time out only
            // after 300 s, far beyond the outage.
            while producer.flush(Duration::from_secs(1)).is_err() {}
            produced.chunks.push((start, Instant::now()));
            produced.lines += CHUNK;
            chunk += 1;
            chunks_done.store(chunk, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
        }
        let ctx = producer.context();
        let failed = ctx.failed.lock().unwrap();
        assert!(failed.is_empty(), "lines not delivered: {failed:?}");
        assert_eq!(ctx.ok.load(Ordering::SeqCst), produced.lines);
        produced
    })
}

fn scrape(addr: &str) -> String {
    http_get(addr, "/metrics")
        .filter(|r| r.status == 200)
        .map(|r| r.body)
        .unwrap_or_default()
}

/// One broker at a time: each test starts and kills its own.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn word_count_survives_a_broker_outage_with_exact_counts() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let outage = Duration::from_secs(size("KSTREAMS_OUTAGE_SECS", 30) as u64);
    let work = work_dir("outage");
    let broker =
        KafkaBroker::start(BrokerOptions::default().with_data_dir(work.join("broker-data")))
            .expect("broker");
    let bs = broker.bootstrap_servers();
    create_topic(&bs, "lines", 3, false).unwrap();
    create_topic(&bs, "counts", 3, false).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut job = Job::new(
        "word_count",
        "outage-wc",
        job_args(
            &bs,
            "outage-app",
            "lines",
            "counts",
            &work.join("state"),
            &["--metrics-listen", &addr],
        ),
        &work,
    );
    job.start();
    let restarted = Arc::new(AtomicBool::new(false));
    let chunks_done = Arc::new(AtomicUsize::new(0));
    let producer = produce_through_outage(bs.clone(), restarted.clone(), chunks_done.clone());

    // Stop the broker only once the job runs all its tasks and is busy
    // counting what the producer keeps sending.
    let mut before = String::new();
    wait_until(Duration::from_secs(120), "the job to process input", || {
        before = scrape(&addr);
        metric_sum(&before, "kstreams_tasks", &[]) == Some(6.0)
            && metric_sum(&before, "kstreams_rebalancing", &[]) == Some(0.0)
            && metric_sum(&before, "kstreams_records_processed_total", &[]).is_some_and(|n| n > 0.0)
    });
    let processed_before = metric_sum(&before, "kstreams_records_processed_total", &[]).unwrap();
    let chunks_before_stop = chunks_done.load(Ordering::SeqCst);
    // What this test measures is the job riding out an outage, not the
    // single broker's recovery of a transaction it was completing when it
    // crashed (the 3-broker tests of tests/broker_cluster.rs kill
    // coordinators mid-transaction). So the job is frozen first, and the
    // broker is killed only once its transaction coordinator lists none of
    // the job's transactions as open: it aborted them itself
    // (transaction.timeout.ms = 10 s). Then the job runs on through the
    // whole outage: failing commits, a lost session, fenced tasks,
    // reconnects.
    job.sigstop();
    let frozen = Instant::now();
    let ours = |t: &TransactionListing| t.transactional_id.starts_with("outage-app-");
    let at_freeze = list_transactions(&bs).expect("ListTransactions");
    assert!(
        at_freeze.iter().filter(|t| ours(t)).count() == 6,
        "the broker should list the transactions of all 6 tasks: {at_freeze:?}"
    );
    let mut open = at_freeze.clone();
    wait_until(
        Duration::from_secs(90),
        "the broker to end the frozen job's open transactions",
        || {
            open = list_transactions(&bs)
                .map(|l| l.into_iter().filter(|t| ours(t) && t.is_open()).collect())
                .unwrap_or(open.clone());
            open.is_empty()
        },
    );
    eprintln!(
        "job frozen with {} of its transactions open; none open after {:?}",
        at_freeze.iter().filter(|t| ours(t) && t.is_open()).count(),
        frozen.elapsed()
    );
    broker.kill().expect("kill broker");
    job.sigcont();
    std::thread::sleep(outage);
    // The broker has been down for the whole outage up to here.
    let outage_end = Instant::now();
    assert!(
        job.is_running(),
        "the job died during the outage:\n{}",
        job.log_tail(40)
    );
    broker.restart().expect("restart broker");
    let restart_at = Instant::now();
    restarted.store(true, Ordering::SeqCst);
    let produced = producer.join().expect("producer thread");

    // The producer really wrote before, during and after the outage: whole
    // chunks before the stop, a chunk waiting across the outage, and
    // chunks started after the restart.
    assert!(chunks_before_stop > 0, "nothing produced before the outage");
    assert!(
        produced
            .chunks
            .iter()
            .any(|(start, end)| *start < outage_end && *end > outage_end),
        "no chunk was in flight during the outage"
    );
    assert!(
        produced
            .chunks
            .iter()
            .filter(|(start, _)| *start > restart_at)
            .count()
            >= CHUNKS_AFTER_RESTART,
        "too few chunks produced after the restart"
    );
    let expected = produced.expected;

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = values_by_key(&bs, "counts");
        let exact = expected
            .iter()
            .all(|(w, n)| got.get(w).and_then(|v| v.last()) == Some(&n.to_string()));
        if exact {
            for (w, n) in &expected {
                let seq: Vec<u64> = got[w].iter().map(|v| v.parse().unwrap()).collect();
                assert!(seq.windows(2).all(|p| p[0] < p[1]), "{w}: {seq:?}");
                assert!(seq.iter().all(|v| v <= n), "{w}: {seq:?}");
            }
            break;
        }
        assert!(
            job.is_running(),
            "the job died after the outage:\n{}",
            job.log_tail(40)
        );
        assert!(
            Instant::now() < deadline,
            "counts not exact after the outage ({} lines): {got:?}\n{}",
            produced.lines,
            job.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // What the outage did to the job, as its metrics say.
    let after = scrape(&addr);
    let m = |text: &str, name: &str| metric_sum(text, name, &[]).unwrap_or(0.0);
    let processed_after = m(&after, "kstreams_records_processed_total");
    assert!(processed_after > processed_before, "{after}");
    let (aborts_before, aborts_after) = (
        m(&before, "kstreams_transaction_aborts_total"),
        m(&after, "kstreams_transaction_aborts_total"),
    );
    let (rebalances_before, rebalances_after) = (
        m(&before, "kstreams_rebalances_total"),
        m(&after, "kstreams_rebalances_total"),
    );
    // The job was frozen past both the session timeout (6 s) and the
    // transaction timeout (10 s): the broker dropped the member from the
    // group and aborted its open transactions by bumping the producer
    // epochs, so once the job runs again its tasks are fenced and it rejoins
    // the group. That is a rebalance (counted), not an abort (the fenced
    // tasks are closed).
    assert!(
        rebalances_after > rebalances_before,
        "no rebalance counted for the outage: rebalances {rebalances_before} -> \
         {rebalances_after}, aborts {aborts_before} -> {aborts_after}\n{}",
        job.log_tail(40)
    );
    eprintln!(
        "{} lines; rebalances {rebalances_before} -> {rebalances_after}, \
         transaction aborts {aborts_before} -> {aborts_after}",
        produced.lines
    );
    let st = job.terminate(Duration::from_secs(60)).expect("exit");
    assert!(st.success(), "{}", job.log_tail(20));
}

/// At-least-once through a longer outage: the job neither stops nor loses
/// a line. Its commit waits on the producer's flush while the broker is
/// away (retried up to `task.timeout.ms`), then its tasks rewind or are
/// closed as lost; the counts may come out too high (at-least-once
/// reprocesses what a restored changelog already holds), never too low.
#[test]
fn word_count_at_least_once_loses_nothing_through_a_broker_outage() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Longer than the 60 s a single producer flush used to be given, and
    // longer than the session timeout below: the commit retries its flush
    // through the outage, then the group refuses the offsets (the member
    // was dropped) and the tasks rewind instead of the thread stopping.
    let outage = Duration::from_secs(size("KSTREAMS_ALOS_OUTAGE_SECS", 70) as u64);
    let work = work_dir("outage-alos");
    let broker =
        KafkaBroker::start(BrokerOptions::default().with_data_dir(work.join("broker-data")))
            .expect("broker");
    let bs = broker.bootstrap_servers();
    create_topic(&bs, "lines", 3, false).unwrap();
    create_topic(&bs, "counts", 3, false).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let app = "outage-alos-app";
    let mut job = Job::new(
        "word_count",
        "outage-alos-wc",
        job_args(
            &bs,
            app,
            "lines",
            "counts",
            &work.join("state"),
            &[
                "--metrics-listen",
                &addr,
                "--config",
                "processing.guarantee=at_least_once",
                "--config",
                "commit.interval.ms=1000",
                "--config",
                "session.timeout.ms=45000",
            ],
        ),
        &work,
    );
    job.start();
    let restarted = Arc::new(AtomicBool::new(false));
    let chunks_done = Arc::new(AtomicUsize::new(0));
    let producer = produce_through_outage(bs.clone(), restarted.clone(), chunks_done.clone());
    let mut before = String::new();
    wait_until(Duration::from_secs(120), "the job to process input", || {
        before = scrape(&addr);
        metric_sum(&before, "kstreams_tasks", &[]) == Some(6.0)
            && metric_sum(&before, "kstreams_commits_total", &[]).is_some_and(|n| n > 0.0)
    });
    // No transactions here: the broker crashes while the job is busy.
    broker.kill().expect("kill broker");
    let killed = Instant::now();
    let commits_at_kill = metric_sum(&scrape(&addr), "kstreams_commits_total", &[]);
    std::thread::sleep(outage);
    assert!(
        job.is_running(),
        "the job died during the outage:\n{}",
        job.log_tail(40)
    );
    // Nothing committed while the broker was down (the adversity was real).
    assert_eq!(
        metric_sum(&scrape(&addr), "kstreams_commits_total", &[]),
        commits_at_kill,
        "commits went on for {:?} of the outage",
        killed.elapsed()
    );
    broker.restart().expect("restart broker");
    restarted.store(true, Ordering::SeqCst);
    let produced = producer.join().expect("producer thread");
    let ends = end_offsets(&bs, "lines").unwrap();
    let want: Vec<usize> = (0..3)
        .map(|p| ends.get(&p).copied().unwrap_or(0) as usize)
        .collect();
    assert_eq!(want.iter().sum::<usize>(), produced.lines);
    wait_drained(&bs, app, "lines", &want, &mut job, &addr);
    let log = strip_ansi(&std::fs::read_to_string(&job.log).unwrap());
    stop_cleanly(&mut job);
    assert!(
        log.contains("waiting up to task.timeout.ms"),
        "the job never retried a flush through the outage:\n{}",
        job.log_tail(40)
    );
    assert!(
        log.contains("commit not done; reprocessing from the last commit")
            || log.contains("partitions lost"),
        "the tasks were neither rewound nor closed after the outage:\n{}",
        job.log_tail(40)
    );
    let got = values_by_key(&bs, "counts");
    for (w, n) in &produced.expected {
        let last: u64 = got
            .get(w)
            .and_then(|v| v.last())
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        assert!(last >= *n, "'{w}' lost records: counted {last} of {n}");
    }
    eprintln!(
        "{} lines, counts {:?}",
        produced.lines,
        got.iter().map(|(w, v)| (w, v.last())).collect::<Vec<_>>()
    );
}
