//! Unit tests of the exactly-once commit's steps (`txn_steps.rs`), with no
//! broker: a real `StreamTask` (source → a processor writing a persistent,
//! changelogged store → sink) whose records go to a fake sink, a fake
//! producer that fails any transaction call with any kind of error, and a
//! fake consumer that records (or refuses) the seeks of a rewind.
//!
//! Why: the failure branches of the pipelined commit (a held-back record
//! that fails on release, `begin_transaction` failing after a commit, a
//! failed abort, a seek failing after an abort, the hold-back cap) are
//! reached end to end only by chance. Each test drives one branch and
//! asserts what the producer saw (offsets committed, records sent, in which
//! transaction), what was dropped and where the input was rewound.
//!
//! The parts that need the whole `TaskManager` and a real consumer
//! (re-creating a task, handing it back to the group) are not run here:
//! the tests assert the `Settled` outcome that asks for them.

use std::cell::RefCell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;
use crate::{ErrorPolicy, Serdes, StoreBuilder};

/// What the fakes saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Begin,
    /// The offsets sent into the transaction.
    SendOffsets(Vec<(String, i32, i64)>),
    Commit,
    Abort,
    /// A record the sink accepted: topic and value.
    Send(String, String),
}

/// A transaction call, to say which one fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Begin,
    SendOffsets,
    Commit,
    Abort,
}

type Log = Arc<Mutex<Vec<Event>>>;

/// A producer that records its calls and fails them as told.
struct FakeProducer {
    log: Log,
    /// Failures, taken in order by the next call of their kind.
    failures: Mutex<Vec<(Call, TxnError)>>,
    /// A call that always fails this way.
    always: Mutex<Option<(Call, TxnError)>>,
}

impl FakeProducer {
    fn answer(&self, call: Call, event: Event) -> TxnResult {
        if let Some((c, e)) = &*lock(&self.always)
            && *c == call
        {
            return Err(e.clone());
        }
        let mut failures = lock(&self.failures);
        if let Some(i) = failures.iter().position(|(c, _)| *c == call) {
            return Err(failures.remove(i).1);
        }
        lock(&self.log).push(event);
        Ok(())
    }
}

impl TxnProducer for FakeProducer {
    fn begin(&self) -> TxnResult {
        self.answer(Call::Begin, Event::Begin)
    }

    fn send_offsets(&self, offsets: &TopicPartitionList, _: &GroupHandle) -> TxnResult {
        let offsets = offsets
            .elements()
            .iter()
            .map(|e| {
                let Offset::Offset(o) = e.offset() else {
                    panic!("not an offset: {:?}", e.offset())
                };
                (e.topic().to_string(), e.partition(), o)
            })
            .collect();
        self.answer(Call::SendOffsets, Event::SendOffsets(offsets))
    }

    fn commit(&self) -> TxnResult {
        self.answer(Call::Commit, Event::Commit)
    }

    fn abort(&self) -> TxnResult {
        self.answer(Call::Abort, Event::Abort)
    }

    fn poll(&self) {}
}

/// Where the task's records go; refuses the record whose value is `refuse`.
struct FakeSink {
    log: Log,
    topics: RefCell<Vec<String>>,
    refuse: RefCell<Option<String>>,
}

impl RecordSink for FakeSink {
    fn topic_id(&self, topic: &str) -> Result<usize> {
        let mut topics = self.topics.borrow_mut();
        if let Some(i) = topics.iter().position(|t| t == topic) {
            return Ok(i);
        }
        topics.push(topic.to_string());
        Ok(topics.len() - 1)
    }

    fn send_to(
        &self,
        id: usize,
        _partition: Option<i32>,
        _key: Option<&[u8]>,
        value: Option<&[u8]>,
        _timestamp: i64,
        _headers: &Headers,
    ) -> Result<()> {
        let topic = self.topics.borrow()[id].clone();
        let value = String::from_utf8_lossy(value.unwrap_or_default()).into_owned();
        if self.refuse.borrow().as_deref() == Some(value.as_str()) {
            return Err(StreamsError::Production {
                topic,
                message: "refused by the fake".to_string(),
            });
        }
        lock(&self.log).push(Event::Send(topic, value));
        Ok(())
    }
}

/// The consumer's seeks; all refused if `refuse`.
#[derive(Default)]
struct FakeConsumer {
    seeks: RefCell<Vec<(String, i32, i64)>>,
    refuse: bool,
}

impl InputSeek for FakeConsumer {
    fn seek_back(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        _retry_for: Duration,
    ) -> std::result::Result<(), String> {
        if self.refuse {
            return Err("seek refused by the fake".to_string());
        }
        self.seeks
            .borrow_mut()
            .push((topic.to_string(), partition, offset));
        Ok(())
    }
}

/// Writes each record into store `seen` and forwards it.
struct Remember;

impl Processor<String, String, String, String> for Remember {
    fn process(
        &mut self,
        record: Record<String, String>,
        ctx: &mut ProcessorContext<String, String>,
    ) -> Result<()> {
        ctx.key_value_store::<String, String>("seen")?
            .put(&record.key, &record.value)?;
        ctx.forward(record)
    }
}

const APP: &str = "fake-app";
const IN: &str = "in";
const OUT: &str = "out";
const CHANGELOG: &str = "fake-app-seen-changelog";
/// Where the group's committed offset of `in` [0] is when a test starts.
const START: i64 = 100;

fn topology() -> Arc<Topology> {
    let mut t = Topology::new();
    t.add_source("src", &[IN], Serdes::string(), Serdes::string())
        .unwrap();
    t.add_processor::<String, String, String, String, _, _>("remember", || Remember, &["src"])
        .unwrap();
    t.add_state_store(
        StoreBuilder::key_value("seen", Serdes::string(), Serdes::string()),
        &["remember"],
    )
    .unwrap();
    t.add_sink(
        "sink",
        OUT,
        Serdes::string(),
        Serdes::string(),
        &["remember"],
    )
    .unwrap();
    Arc::new(t)
}

/// A task over the fakes, its transaction open, as `ActiveTask` holds it.
struct Harness {
    dir: PathBuf,
    task: StreamTask,
    log: Log,
    producer: Arc<FakeProducer>,
    sink: Rc<FakeSink>,
    deferred: Rc<Deferred>,
    tracker: Arc<DeliveryTracker>,
    consumer: FakeConsumer,
    metrics: ThreadMetrics,
    in_txn: bool,
    no_defer: bool,
    aborting_since: Option<Instant>,
    task_timeout: Duration,
    retry_for: Duration,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.close();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn id() -> TaskId {
    TaskId {
        subtopology: 0,
        partition: 0,
    }
}

/// Opens task 0_0's stores in `dir`, its records going to `sink`.
fn open_task(
    dir: &std::path::Path,
    sink: Rc<FakeSink>,
    deferred: Rc<Deferred>,
    tracker: Arc<DeliveryTracker>,
) -> Result<StreamTask> {
    let topology = topology();
    let sub = topology.subtopologies().remove(0);
    let mut task = StreamTask::new(TaskConfig {
        application_id: APP.to_string(),
        task_id: id(),
        topology: topology.clone(),
        subtopology: sub,
        state_dir: Some(dir.join(APP).join(id().to_string())),
        collector: Box::new(KafkaRecordCollector {
            sender: sink,
            tracker,
            deferred,
        }),
        wall_clock: 0,
        lock_wait: Duration::from_millis(300),
        deserialization_policy: ErrorPolicy::LogAndFail,
        processing_policy: ErrorPolicy::LogAndFail,
        production_policy: ErrorPolicy::LogAndFail,
        max_write_set_bytes: usize::MAX,
        cache_max_bytes: 0,
    })?;
    task.init()?;
    task.set_committed_offset(IN, 0, START);
    Ok(task)
}

impl Harness {
    fn new() -> Harness {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kstreams-commit-tests-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let log = Log::default();
        let sink = Rc::new(FakeSink {
            log: log.clone(),
            topics: RefCell::default(),
            refuse: RefCell::default(),
        });
        let deferred = Rc::new(Deferred::default());
        let tracker = Arc::new(DeliveryTracker::default());
        let task = open_task(&dir, sink.clone(), deferred.clone(), tracker.clone()).unwrap();
        Harness {
            dir,
            task,
            log: log.clone(),
            producer: Arc::new(FakeProducer {
                log,
                failures: Mutex::default(),
                always: Mutex::default(),
            }),
            sink,
            deferred,
            tracker,
            consumer: FakeConsumer::default(),
            metrics: ThreadMetrics::default(),
            // The transaction was begun when the task was assigned.
            in_txn: true,
            no_defer: false,
            aborting_since: None,
            task_timeout: Duration::from_secs(60),
            retry_for: Duration::from_secs(60),
        }
    }

    fn fail(&self, call: Call, e: TxnError) {
        lock(&self.producer.failures).push((call, e));
    }

    /// Processes input offsets `from..to`, value `v<offset>`.
    fn process(&mut self, from: i64, to: i64) {
        for o in from..to {
            let (k, v) = (format!("k{o}"), format!("v{o}"));
            self.task
                .process(
                    IN,
                    0,
                    o,
                    o,
                    Some(k.as_bytes()),
                    Some(v.as_bytes()),
                    Headers::default(),
                )
                .unwrap();
        }
    }

    /// Step 1 (as `commit_eos`): seal, and the job for the commit thread.
    fn prepare(&mut self) -> CommitJob {
        let (tpl, sealed) = prepare_commit_eos(&mut self.task).ok().unwrap();
        let shared = Arc::new(CommitShared::default());
        *lock(&shared.sealed) = Some(sealed);
        CommitJob {
            producer: self.producer.clone(),
            tracker: self.tracker.clone(),
            id: id(),
            tpl,
            group: Some(Arc::new(GroupHandle::fake())),
            shared,
            retry_for: self.retry_for,
        }
    }

    /// Step 3 (as `complete_commit`).
    fn settle(&mut self, result: CommitStep<TxnTimings>) -> Result<Settled> {
        let parts = TxnParts {
            task: &mut self.task,
            producer: &*self.producer,
            sender: &*self.sink,
            deferred: &self.deferred,
            in_txn: &mut self.in_txn,
            no_defer: &mut self.no_defer,
            aborting_since: &mut self.aborting_since,
        };
        settle_commit(
            parts,
            result,
            &self.consumer,
            self.task_timeout,
            &self.metrics,
        )
    }

    /// A pipelined commit: records `START..sealed_to` processed in the open
    /// transaction, sealed; `sealed_to..held_to` processed while it
    /// commits (held back); the transaction calls; then the settling.
    fn pipelined_commit(&mut self, sealed_to: i64, held_to: i64) -> Result<Settled> {
        self.process(START, sealed_to);
        let job = self.prepare();
        self.deferred.hold();
        self.process(sealed_to, held_to);
        let result = job.run();
        self.settle(result)
    }

    fn events(&self) -> Vec<Event> {
        lock(&self.log).clone()
    }

    /// The events, records reduced to those sent to `out`.
    fn txn_events(&self) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| !matches!(e, Event::Send(t, _) if t != OUT))
            .collect()
    }
}

fn out(v: i64) -> Event {
    Event::Send(OUT.to_string(), format!("v{v}"))
}

fn offsets(o: i64) -> Event {
    Event::SendOffsets(vec![(IN.to_string(), 0, o)])
}

fn committed(o: i64) -> Vec<(String, i32, i64)> {
    vec![(IN.to_string(), 0, o)]
}

fn abort_count(h: &Harness) -> u64 {
    h.metrics.aborts()
}

#[test]
fn a_commit_sends_the_consumed_offsets_then_the_held_back_records_into_the_next_transaction() {
    let mut h = Harness::new();
    let settled = h.pipelined_commit(103, 105).unwrap();
    assert_eq!(settled, Settled::Committed);
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            out(102),
            offsets(103),
            Event::Commit,
            Event::Begin,
            out(103),
            out(104),
        ]
    );
    // The store's changelog records of the first transaction went out
    // before its offsets; those of the held-back records after the begin.
    let events = h.events();
    let first_offsets = events.iter().position(|e| *e == offsets(103)).unwrap();
    let changelog_before = events[..first_offsets]
        .iter()
        .filter(|e| matches!(e, Event::Send(t, _) if t == CHANGELOG))
        .count();
    assert_eq!(changelog_before, 3);
    assert_eq!(h.task.committed_offsets(), committed(103));
    assert!(h.in_txn);
    assert!(!h.no_defer);
    assert_eq!(h.aborting_since, None);
    assert_eq!(h.deferred.bytes(), 0);
    assert_eq!(abort_count(&h), 0);
    assert!(h.consumer.seeks.borrow().is_empty());
    // Records processed now go straight out, in the open transaction.
    lock(&h.log).clear();
    h.process(105, 106);
    assert_eq!(h.txn_events(), vec![out(105)]);
}

#[test]
fn retriable_send_offsets_is_retried_and_the_commit_goes_through() {
    let mut h = Harness::new();
    h.fail(Call::SendOffsets, TxnError::retriable("coordinator moved"));
    h.fail(Call::SendOffsets, TxnError::retriable("coordinator moved"));
    h.fail(Call::Commit, TxnError::retriable("broker down"));
    let settled = h.pipelined_commit(102, 103).unwrap();
    assert_eq!(settled, Settled::Committed);
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            offsets(102),
            Event::Commit,
            Event::Begin,
            out(102)
        ]
    );
    assert_eq!(h.task.committed_offsets(), committed(102));
    assert_eq!(abort_count(&h), 0);
}

#[test]
fn a_retriable_error_past_the_retry_time_aborts() {
    let mut h = Harness::new();
    h.retry_for = Duration::from_millis(30);
    *lock(&h.producer.always) = Some((Call::Commit, TxnError::retriable("broker down")));
    let job = {
        h.process(START, 102);
        h.prepare()
    };
    let result = job.run();
    *lock(&h.producer.always) = None;
    assert_eq!(h.settle(result).unwrap(), Settled::Rewound);
    assert_eq!(
        h.txn_events(),
        vec![out(100), out(101), offsets(102), Event::Abort, Event::Begin]
    );
    assert_eq!(*h.consumer.seeks.borrow(), committed(START));
    assert_eq!(h.task.committed_offsets(), committed(START));
}

#[test]
fn abortable_send_offsets_aborts_drops_the_held_back_records_and_rewinds_to_the_last_commit() {
    let mut h = Harness::new();
    h.fail(
        Call::SendOffsets,
        TxnError::new(TxnErrorKind::Abortable, "group rebalancing"),
    );
    let settled = h.pipelined_commit(103, 105).unwrap();
    assert_eq!(settled, Settled::Rewound);
    // No commit; the held-back 103 and 104 were never sent.
    assert_eq!(
        h.txn_events(),
        vec![out(100), out(101), out(102), Event::Abort, Event::Begin]
    );
    assert_eq!(*h.consumer.seeks.borrow(), committed(START));
    assert_eq!(h.task.committed_offsets(), committed(START));
    assert_eq!(h.deferred.bytes(), 0);
    assert!(h.in_txn);
    assert!(!h.no_defer);
    assert!(h.aborting_since.is_some());
    assert_eq!(abort_count(&h), 1);

    // Reprocessed from the rewind, the next commit takes everything and
    // ends the run of aborts.
    lock(&h.log).clear();
    h.process(START, 105);
    let job = h.prepare();
    let result = job.run();
    assert_eq!(h.settle(result).unwrap(), Settled::Committed);
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            out(102),
            out(103),
            out(104),
            offsets(105),
            Event::Commit,
            Event::Begin
        ]
    );
    assert_eq!(h.task.committed_offsets(), committed(105));
    assert_eq!(h.aborting_since, None);
}

#[test]
fn a_fenced_commit_asks_for_the_task_to_be_recreated() {
    let mut h = Harness::new();
    h.fail(
        Call::Commit,
        TxnError::new(TxnErrorKind::Fenced, "producer fenced"),
    );
    let settled = h.pipelined_commit(102, 104).unwrap();
    assert_eq!(
        settled,
        Settled::Recreate("commit_transaction for task 0_0: producer fenced".to_string())
    );
    // Neither aborted nor rewound here: the new producer's
    // init_transactions aborts, the re-created task reads from the group's
    // offsets. The held-back records were not sent.
    assert_eq!(h.txn_events(), vec![out(100), out(101), offsets(102)]);
    assert!(h.consumer.seeks.borrow().is_empty());
    assert_eq!(h.task.committed_offsets(), committed(START));
    assert_eq!(abort_count(&h), 0);
}

#[test]
fn a_fatal_commit_error_fails_the_thread() {
    let mut h = Harness::new();
    h.fail(
        Call::Commit,
        TxnError::new(TxnErrorKind::Fatal, "unknown topic"),
    );
    let err = h.pipelined_commit(102, 103).unwrap_err();
    assert_eq!(
        err.to_string(),
        StreamsError::Kafka("commit_transaction for task 0_0: unknown topic".into()).to_string()
    );
    assert_eq!(h.txn_events(), vec![out(100), out(101), offsets(102)]);
    assert!(h.consumer.seeks.borrow().is_empty());
}

#[test]
fn begin_failing_abortably_after_a_commit_drops_the_held_back_records_and_begins_again() {
    let mut h = Harness::new();
    h.fail(
        Call::Begin,
        TxnError::new(TxnErrorKind::Abortable, "abortable state"),
    );
    let settled = h.pipelined_commit(102, 104).unwrap();
    assert_eq!(settled, Settled::Rewound);
    // Committed; the begin failed, so the held-back 102 and 103 are
    // dropped and reprocessed from the offsets just committed.
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            offsets(102),
            Event::Commit,
            Event::Abort,
            Event::Begin
        ]
    );
    assert_eq!(h.task.committed_offsets(), committed(102));
    assert_eq!(*h.consumer.seeks.borrow(), committed(102));
    assert!(h.in_txn);
    assert_eq!(h.deferred.bytes(), 0);
}

#[test]
fn begin_failing_fenced_or_fatal_after_a_commit() {
    let mut h = Harness::new();
    h.fail(
        Call::Begin,
        TxnError::new(TxnErrorKind::Fenced, "fatal error"),
    );
    assert_eq!(
        h.pipelined_commit(102, 104).unwrap(),
        Settled::Recreate("begin_transaction for task 0_0: fatal error".to_string())
    );
    assert_eq!(h.task.committed_offsets(), committed(102));
    assert!(!h.in_txn);

    let mut h = Harness::new();
    h.fail(
        Call::Begin,
        TxnError::new(TxnErrorKind::Fatal, "Operation not valid in state Ready"),
    );
    let err = h.pipelined_commit(102, 104).unwrap_err();
    assert!(
        err.to_string()
            .contains("begin_transaction for task 0_0: Operation not valid"),
        "{err}"
    );
}

#[test]
fn a_failed_abort_asks_for_the_task_to_be_recreated() {
    let mut h = Harness::new();
    h.fail(Call::Commit, TxnError::new(TxnErrorKind::Abortable, "x"));
    h.fail(Call::Abort, TxnError::retriable("timed out"));
    h.fail(
        Call::Abort,
        TxnError::new(TxnErrorKind::Fatal, "abort refused"),
    );
    let settled = h.pipelined_commit(102, 103).unwrap();
    assert_eq!(
        settled,
        Settled::Recreate("abort failed: abort refused".to_string())
    );
    assert!(h.consumer.seeks.borrow().is_empty());
    assert_eq!(h.txn_events(), vec![out(100), out(101), offsets(102)]);
    assert_eq!(abort_count(&h), 1);

    // A retriable abort is retried.
    let mut h = Harness::new();
    h.fail(Call::Commit, TxnError::new(TxnErrorKind::Abortable, "x"));
    h.fail(Call::Abort, TxnError::retriable("timed out"));
    assert_eq!(h.pipelined_commit(102, 103).unwrap(), Settled::Rewound);
    assert_eq!(*h.consumer.seeks.borrow(), committed(START));
}

#[test]
fn a_seek_failing_after_an_abort_closes_the_task_and_rejoins() {
    let mut h = Harness::new();
    h.consumer.refuse = true;
    h.fail(
        Call::SendOffsets,
        TxnError::new(TxnErrorKind::Abortable, "x"),
    );
    let settled = h.pipelined_commit(102, 104).unwrap();
    assert_eq!(settled, Settled::CloseAndRejoin);
    // Aborted, not begun again: the task is to be closed.
    assert_eq!(h.txn_events(), vec![out(100), out(101), Event::Abort]);
    assert!(!h.in_txn);
}

#[test]
fn a_held_back_record_failing_on_release_aborts_and_stops_holding_back() {
    let mut h = Harness::new();
    *h.sink.refuse.borrow_mut() = Some("v104".to_string());
    let settled = h.pipelined_commit(102, 106).unwrap();
    assert_eq!(settled, Settled::Rewound);
    // The first transaction committed; of the held-back records 102 and
    // 103 went into the next one, 104 failed, 105 was dropped; that
    // transaction is aborted and the input rewound to the commit.
    assert_eq!(
        h.txn_events(),
        vec![
            out(100),
            out(101),
            offsets(102),
            Event::Commit,
            Event::Begin,
            out(102),
            out(103),
            Event::Abort,
            Event::Begin
        ]
    );
    assert_eq!(h.task.committed_offsets(), committed(102));
    assert_eq!(*h.consumer.seeks.borrow(), committed(102));
    assert!(h.no_defer, "the task no longer holds records back");
    assert!(h.in_txn);
    assert_eq!(h.deferred.bytes(), 0);
    assert_eq!(abort_count(&h), 1);
}

#[test]
fn aborts_beyond_task_timeout_fail_the_thread() {
    let mut h = Harness::new();
    h.task_timeout = Duration::from_millis(50);
    h.aborting_since = Some(Instant::now() - Duration::from_millis(100));
    h.fail(
        Call::SendOffsets,
        TxnError::new(TxnErrorKind::Abortable, "still rebalancing"),
    );
    let err = h.pipelined_commit(102, 103).unwrap_err().to_string();
    assert!(err.contains("task 0_0 has not committed for"), "{err}");
    assert!(err.contains("(task.timeout.ms)"), "{err}");
    assert!(
        err.contains("send_offsets_to_transaction for task 0_0: still rebalancing"),
        "{err}"
    );
    // Within task.timeout.ms an abort is retried by reprocessing.
    let mut h = Harness::new();
    h.task_timeout = Duration::from_secs(60);
    h.aborting_since = Some(Instant::now() - Duration::from_millis(100));
    h.fail(
        Call::SendOffsets,
        TxnError::new(TxnErrorKind::Abortable, "x"),
    );
    assert_eq!(h.pipelined_commit(102, 103).unwrap(), Settled::Rewound);
}

#[test]
fn the_hold_back_cap_makes_reap_commits_wait() {
    let h = Harness::new();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let _ = wait.recv();
        Ok(TxnTimings::default())
    });
    let f = InFlight {
        handle,
        started: Instant::now(),
        shared: Arc::new(CommitShared::default()),
    };
    h.deferred.hold();
    // Not due while it runs and little is held back.
    assert!(!f.due(false, h.deferred.bytes()));
    assert!(f.due(true, h.deferred.bytes()));
    // One record held back past the cap: due although still running.
    let mut h = h;
    let big = "x".repeat(MAX_DEFERRED_BYTES);
    h.task
        .process(
            IN,
            0,
            START,
            0,
            Some(b"k"),
            Some(big.as_bytes()),
            Headers::default(),
        )
        .unwrap();
    assert!(h.deferred.bytes() > MAX_DEFERRED_BYTES);
    assert!(!f.handle.is_finished());
    assert!(f.due(false, h.deferred.bytes()));
    release.send(()).unwrap();
    while !f.handle.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(f.due(false, 0));
}

#[test]
fn a_failed_commit_run_on_the_stream_thread_lets_go_of_the_task_s_store() {
    // A task that no longer holds records back (`no_defer`) runs its
    // commit job on the stream thread; `commit_eos` keeps the job's shared
    // part while the failure is settled, and a fenced task is re-created
    // then, which must reopen its RocksDB.
    let mut h = Harness::new();
    h.no_defer = true;
    h.fail(
        Call::Commit,
        TxnError::new(TxnErrorKind::Fenced, "producer fenced"),
    );
    h.process(START, 102);
    let job = h.prepare();
    let shared = job.shared.clone();
    let result = job.run();
    let settled = h.settle(result).unwrap();
    assert!(matches!(settled, Settled::Recreate(_)));
    // As `recreate_task`: close and drop the old task (the harness gets a
    // stand-in in another directory), open a new one on its state.
    let stand_in = open_task(
        &h.dir.join("stand-in"),
        h.sink.clone(),
        Rc::new(Deferred::default()),
        Arc::new(DeliveryTracker::default()),
    )
    .unwrap();
    let mut old = std::mem::replace(&mut h.task, stand_in);
    old.close();
    drop(old);
    let reopened = open_task(
        &h.dir,
        h.sink.clone(),
        Rc::new(Deferred::default()),
        Arc::new(DeliveryTracker::default()),
    );
    drop(shared);
    let mut reopened = reopened.unwrap_or_else(|e| {
        panic!("the re-created task could not open its store while the failed commit's job was kept: {e}")
    });
    reopened.close();
}
