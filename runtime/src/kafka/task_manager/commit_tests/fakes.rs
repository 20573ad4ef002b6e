//! The fakes of the commit tests and the task they drive: a producer that
//! records its transaction calls and fails them as told, a record sink that
//! records (or refuses) records, a consumer that records (or refuses) the
//! seeks of a rewind, and a real `StreamTask` over them (`Harness`).

use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::super::*;
use crate::processor::{Processor, ProcessorContext};
use crate::record::Record;
use crate::{ErrorPolicy, Serdes, StoreBuilder};

/// What the fakes saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Event {
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
pub(super) enum Call {
    Begin,
    SendOffsets,
    Commit,
    Abort,
}

pub(super) type Log = Arc<Mutex<Vec<Event>>>;

/// A producer that records its calls and fails them as told.
pub(super) struct FakeProducer {
    pub(super) log: Log,
    /// Failures, taken in order by the next call of their kind.
    pub(super) failures: Mutex<Vec<(Call, TxnError)>>,
    /// A call that always fails this way.
    pub(super) always: Mutex<Option<(Call, TxnError)>>,
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
pub(super) struct FakeSink {
    pub(super) log: Log,
    pub(super) topics: RefCell<Vec<String>>,
    pub(super) refuse: RefCell<Option<String>>,
    /// Refuses every record as librdkafka does once the producer left its
    /// transaction (`_STATE`, see `record_collector::leaves_transaction`).
    pub(super) out_of_txn: Cell<bool>,
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
        if self.out_of_txn.get() {
            return Err(StreamsError::TransactionAborted(
                "Local: Erroneous state (fake)".to_string(),
            ));
        }
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
pub(super) struct FakeConsumer {
    pub(super) seeks: RefCell<Vec<(String, i32, i64)>>,
    pub(super) refuse: bool,
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
pub(super) struct Remember;

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

pub(super) const APP: &str = "fake-app";
pub(super) const IN: &str = "in";
pub(super) const OUT: &str = "out";
pub(super) const CHANGELOG: &str = "fake-app-seen-changelog";
/// Where the group's committed offset of `in` [0] is when a test starts.
pub(super) const START: i64 = 100;

pub(super) fn topology() -> Arc<Topology> {
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
pub(super) struct Harness {
    pub(super) dir: PathBuf,
    pub(super) task: StreamTask,
    pub(super) log: Log,
    pub(super) producer: Arc<FakeProducer>,
    pub(super) sink: Rc<FakeSink>,
    pub(super) deferred: Rc<Deferred>,
    pub(super) tracker: Arc<DeliveryTracker>,
    pub(super) consumer: FakeConsumer,
    pub(super) metrics: ThreadMetrics,
    pub(super) in_txn: bool,
    pub(super) no_defer: bool,
    pub(super) aborting_since: Option<Instant>,
    pub(super) task_timeout: Duration,
    pub(super) retry_for: Duration,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.close();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn id() -> TaskId {
    TaskId {
        subtopology: 0,
        partition: 0,
    }
}

/// Opens task 0_0's stores in `dir`, its records going to `sink`.
pub(super) fn open_task(
    dir: &std::path::Path,
    sink: Rc<FakeSink>,
    deferred: Rc<Deferred>,
    tracker: Arc<DeliveryTracker>,
) -> Result<StreamTask> {
    open_task_with(dir, sink, deferred, tracker, ErrorPolicy::LogAndFail)
}

/// [`open_task`] with this `processing.exception.handler` and
/// `production.exception.handler`.
pub(super) fn open_task_with(
    dir: &std::path::Path,
    sink: Rc<FakeSink>,
    deferred: Rc<Deferred>,
    tracker: Arc<DeliveryTracker>,
    handlers: ErrorPolicy,
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
        processing_policy: handlers.clone(),
        production_policy: handlers,
        max_write_set_bytes: usize::MAX,
        cache_max_bytes: 0,
    })?;
    task.init()?;
    task.set_committed_offset(IN, 0, START);
    Ok(task)
}

impl Harness {
    pub(super) fn new() -> Harness {
        Harness::with_handlers(ErrorPolicy::LogAndFail)
    }

    pub(super) fn with_handlers(policy: ErrorPolicy) -> Harness {
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
            out_of_txn: Cell::new(false),
        });
        let deferred = Rc::new(Deferred::default());
        let tracker = Arc::new(DeliveryTracker::default());
        let task = open_task_with(
            &dir,
            sink.clone(),
            deferred.clone(),
            tracker.clone(),
            policy,
        )
        .unwrap();
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

    pub(super) fn fail(&self, call: Call, e: TxnError) {
        lock(&self.producer.failures).push((call, e));
    }

    /// Processes input offsets `from..to`, value `v<offset>`.
    pub(super) fn process(&mut self, from: i64, to: i64) {
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
    pub(super) fn prepare(&mut self) -> CommitJob {
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
    pub(super) fn settle(&mut self, result: CommitStep<TxnTimings>) -> Result<Settled> {
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
    pub(super) fn pipelined_commit(&mut self, sealed_to: i64, held_to: i64) -> Result<Settled> {
        self.process(START, sealed_to);
        let job = self.prepare();
        self.deferred.hold();
        self.process(sealed_to, held_to);
        let result = job.run();
        self.settle(result)
    }

    pub(super) fn events(&self) -> Vec<Event> {
        lock(&self.log).clone()
    }

    /// The events, records reduced to those sent to `out`.
    pub(super) fn txn_events(&self) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| !matches!(e, Event::Send(t, _) if t != OUT))
            .collect()
    }
}

pub(super) fn out(v: i64) -> Event {
    Event::Send(OUT.to_string(), format!("v{v}"))
}

pub(super) fn offsets(o: i64) -> Event {
    Event::SendOffsets(vec![(IN.to_string(), 0, o)])
}

pub(super) fn committed(o: i64) -> Vec<(String, i32, i64)> {
    vec![(IN.to_string(), 0, o)]
}

pub(super) fn abort_count(h: &Harness) -> u64 {
    h.metrics.aborts()
}
