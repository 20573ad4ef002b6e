//! `RecordCollector` for Kafka: a task's outputs and changelog records go
//! through its producer.
//!
//! Under exactly-once each task has its own transactional producer, so its
//! records, its changelog writes and its input offsets commit together.
//! Under at-least-once a thread's tasks share one idempotent producer.
//!
//! While a task's previous transaction is still committing (on a commit
//! thread), the task goes on processing but may not send into its producer:
//! the next transaction is not open yet. Its records wait in `Deferred`
//! and are sent, in order, once the commit is done and the next transaction
//! has begun; if the commit fails they are dropped with the rest of the
//! task's uncommitted work.
//!
//! A task's records go out through its `TaskSender`, which keeps one
//! librdkafka topic handle per topic and produces by handle
//! (`rd_kafka_produceva`): the by-name path of rdkafka's `send` copied the
//! name into a C string and looked the topic up under the client's lock on
//! every record.
//!
//! Sends are asynchronous. Delivery reports arrive on `poll`; the
//! `DeliveryTracker` keeps, per partition, the highest acknowledged offset
//! (the changelog checkpoint after a commit) and the first delivery error,
//! which fails the next commit instead of being lost.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::ffi::{CString, c_int, c_void};

use rdkafka::bindings as rdsys;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};

use crate::FastHashMap;
use crate::error::{Result, StreamsError};
use crate::record::Headers;
use crate::task_context::RecordCollector;

/// Delivery bookkeeping shared between a producer's context and its collectors.
/// Offsets are kept per topic, then per partition, so a delivery report
/// (one per record sent) finds its slot without allocating.
#[derive(Default)]
pub(crate) struct DeliveryTracker {
    offsets: Mutex<HashMap<String, HashMap<i32, i64>>>,
    error: Mutex<Option<String>>,
}

impl DeliveryTracker {
    pub fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .and_then(|p| p.get(&partition))
            .copied()
    }

    fn acknowledged(&self, topic: &str, partition: i32, offset: i64) {
        let mut offsets = self
            .offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(partitions) = offsets.get_mut(topic) {
            let last = partitions.entry(partition).or_insert(offset);
            *last = (*last).max(offset);
            return;
        }
        offsets.insert(topic.to_string(), HashMap::from([(partition, offset)]));
    }
    pub fn take_error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// The producer context: routes delivery reports to the tracker.
pub(crate) struct CollectorContext {
    pub tracker: Arc<DeliveryTracker>,
    pub log: super::client_log::ClientErrorLog,
}

impl ClientContext for CollectorContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.log.log("producer", &error, reason);
    }
}

impl ProducerContext for CollectorContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => self
                .tracker
                .acknowledged(m.topic(), m.partition(), m.offset()),
            Err((e, m)) => {
                // Runs inside librdkafka's callback: a panic here would unwind
                // across the FFI boundary, so a poisoned lock is taken as is.
                let mut err = self
                    .tracker
                    .error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if err.is_none() {
                    *err = Some(format!(
                        "delivery to {}-{} failed: {e}",
                        m.topic(),
                        m.partition()
                    ));
                }
            }
        }
    }
}

pub(crate) type TaskProducer = BaseProducer<CollectorContext>;

/// Records held back while the task's previous transaction commits.
///
/// Their keys and values are copied one after another into one buffer,
/// which is kept (up to `KEEP_HELD_BYTES`) for the next commit: holding a
/// record back costs a copy, not allocations.
#[derive(Default)]
pub(crate) struct Deferred {
    on: Cell<bool>,
    held: RefCell<Held>,
    bytes: Cell<usize>,
}

#[derive(Default)]
struct Held {
    records: Vec<HeldRecord>,
    data: Vec<u8>,
}

/// A held-back record; its key and value are ranges of `Held::data`.
struct HeldRecord {
    topic: usize,
    partition: Option<i32>,
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    timestamp: i64,
    headers: Headers,
}

/// Buffer capacity kept between commits.
const KEEP_HELD_BYTES: usize = 4 << 20;

impl Held {
    fn push(&mut self, bytes: Option<&[u8]>) -> Option<(usize, usize)> {
        bytes.map(|b| {
            let start = self.data.len();
            self.data.extend_from_slice(b);
            (start, start + b.len())
        })
    }

    fn get(&self, range: Option<(usize, usize)>) -> Option<&[u8]> {
        range.map(|(from, to)| &self.data[from..to])
    }

    fn clear(&mut self) {
        self.records.clear();
        self.data.clear();
        if self.data.capacity() > KEEP_HELD_BYTES {
            self.data = Vec::new();
            self.records = Vec::new();
        }
    }
}

impl Deferred {
    /// From now on, sends are held back.
    pub fn hold(&self) {
        self.on.set(true);
    }

    /// About how many bytes are held back.
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// Sends the held-back records, in order, and stops holding back. On an
    /// error the records not yet sent are dropped (the caller aborts).
    pub fn release<S: RecordSink + ?Sized>(&self, sender: &S) -> Result<()> {
        self.on.set(false);
        self.bytes.set(0);
        let mut held = self.held.borrow_mut();
        let sent = held.records.iter().try_for_each(|r| {
            sender.send_to(
                r.topic,
                r.partition,
                held.get(r.key),
                held.get(r.value),
                r.timestamp,
                &r.headers,
            )
        });
        held.clear();
        sent
    }

    /// Drops the held-back records (their transaction is aborted) and stops
    /// holding back.
    pub fn discard(&self) {
        self.on.set(false);
        self.bytes.set(0);
        self.held.borrow_mut().clear();
    }
}

/// Where a task's records go: its producer (`TaskSender`), or a fake in
/// unit tests. A collector is generic over it, so a record's send is a
/// direct call.
pub(crate) trait RecordSink {
    /// A small id for `topic`, for [`send_to`](Self::send_to).
    fn topic_id(&self, topic: &str) -> Result<usize>;

    /// Sends one record to the topic of `id`.
    fn send_to(
        &self,
        id: usize,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> Result<()>;

    /// Sends one record to `topic`.
    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> Result<()> {
        let id = self.topic_id(topic)?;
        self.send_to(id, partition, key, value, timestamp, headers)
    }
}

impl RecordSink for TaskSender {
    #[inline]
    fn topic_id(&self, topic: &str) -> Result<usize> {
        TaskSender::topic_id(self, topic)
    }

    #[inline]
    fn send_to(
        &self,
        id: usize,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> Result<()> {
        TaskSender::send_to(self, id, partition, key, value, timestamp, headers)
    }

    #[inline]
    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> Result<()> {
        TaskSender::send(self, topic, partition, key, value, timestamp, headers)
    }
}

/// Sends a task's records through a (shared or per-task) producer.
pub(crate) struct KafkaRecordCollector<S: RecordSink = TaskSender> {
    pub sender: Rc<S>,
    pub tracker: Arc<DeliveryTracker>,
    pub deferred: Rc<Deferred>,
}

impl<S: RecordSink> RecordCollector for KafkaRecordCollector<S> {
    fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> Result<()> {
        if self.deferred.on.get() {
            let size = topic.len()
                + key.map_or(0, <[u8]>::len)
                + value.map_or(0, <[u8]>::len)
                + headers
                    .0
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
                + 96;
            let topic = self.sender.topic_id(topic)?;
            self.deferred.bytes.set(self.deferred.bytes.get() + size);
            let mut held = self.deferred.held.borrow_mut();
            let key = held.push(key);
            let value = held.push(value);
            held.records.push(HeldRecord {
                topic,
                partition,
                key,
                value,
                timestamp,
                headers: headers.clone(),
            });
            return Ok(());
        }
        self.sender
            .send(topic, partition, key, value, timestamp, headers)
    }

    fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.tracker.last_offset(topic, partition)
    }
}

/// librdkafka's "let the partitioner choose" partition.
const PARTITION_UNASSIGNED: i32 = -1;

/// A task's producer, with a native handle per topic it sends to.
///
/// Why: librdkafka's by-name produce call looks the topic up under the
/// client's lock, and rdkafka's `send` copies the name into a C string
/// first, on every record. A task sends to a handful of topics, so it keeps
/// one handle per topic and produces by handle.
pub(crate) struct TaskSender {
    // Before `producer`: fields drop in order, and librdkafka wants every
    // topic handle destroyed before its client.
    topics: RefCell<Topics>,
    producer: Arc<TaskProducer>,
}

/// The topics a task sends to: a small id per name, and per id its name
/// and handle.
#[derive(Default)]
struct Topics {
    ids: FastHashMap<Box<str>, usize>,
    handles: Vec<(Box<str>, TopicHandle)>,
}

/// An application reference to a librdkafka topic of one producer.
struct TopicHandle(*mut rdsys::rd_kafka_topic_t);

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from rd_kafka_topic_new and is destroyed
        // once, here, while its producer still lives (see TaskSender).
        unsafe { rdsys::rd_kafka_topic_destroy(self.0) }
    }
}

impl TaskSender {
    pub fn new(producer: Arc<TaskProducer>) -> TaskSender {
        TaskSender {
            topics: RefCell::default(),
            producer,
        }
    }

    /// The topic's id, its handle made on first use.
    pub fn topic_id(&self, topic: &str) -> Result<usize> {
        if let Some(&id) = self.topics.borrow().ids.get(topic) {
            return Ok(id);
        }
        let failed = |message: String| StreamsError::Production {
            topic: topic.to_string(),
            message,
        };
        let name = CString::new(topic)
            .map_err(|_| failed("the topic name contains a NUL byte".to_string()))?;
        // SAFETY: a live client and a NUL-terminated name; a null config
        // means the producer's defaults.
        let rkt = unsafe {
            rdsys::rd_kafka_topic_new(
                self.producer.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        if rkt.is_null() {
            // SAFETY: reads this thread's last librdkafka error.
            let code = RDKafkaErrorCode::from(unsafe { rdsys::rd_kafka_last_error() });
            return Err(failed(format!("librdkafka refused the topic: {code}")));
        }
        let mut topics = self.topics.borrow_mut();
        let id = topics.handles.len();
        topics.handles.push((topic.into(), TopicHandle(rkt)));
        topics.ids.insert(topic.into(), id);
        Ok(id)
    }

    /// Sends one record (waiting while the producer's queue is full).
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> Result<()> {
        let id = self.topic_id(topic)?;
        self.send_to(id, partition, key, value, timestamp, headers)
    }

    /// Sends one record to the topic of `id` (from
    /// [`topic_id`](Self::topic_id)), waiting while the producer's queue is
    /// full.
    pub fn send_to(
        &self,
        id: usize,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> Result<()> {
        let rkt = self.topics.borrow().handles[id].1.0;
        loop {
            let code = match self.produce(rkt, partition, key, value, timestamp, headers) {
                Ok(()) => return Ok(()),
                Err(code) => code,
            };
            if code == RDKafkaErrorCode::QueueFull {
                self.producer.poll(Duration::from_millis(10));
                continue;
            }
            if leaves_transaction(code) {
                return Err(StreamsError::TransactionAborted(format!(
                    "the producer refuses records ({}); a delivery of this transaction \
                     failed or the producer was fenced",
                    KafkaError::MessageProduction(code)
                )));
            }
            let hint = match code {
                RDKafkaErrorCode::MessageSizeTooLarge => {
                    "; the record is larger than the producer's message.max.bytes \
                     (raise it together with the topic's max.message.bytes, or set \
                     production.exception.handler=log_and_continue to skip such records)"
                }
                _ => "",
            };
            return Err(StreamsError::Production {
                topic: self.topics.borrow().handles[id].0.to_string(),
                message: format!("{}{hint}", KafkaError::MessageProduction(code)),
            });
        }
    }

    /// One `rd_kafka_produceva` call: the record is copied into librdkafka.
    fn produce(
        &self,
        rkt: *mut rdsys::rd_kafka_topic_t,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> std::result::Result<(), RDKafkaErrorCode> {
        use rdsys::rd_kafka_vtype_t as T;
        use rdsys::rd_kafka_vu_s__bindgen_ty_1 as U;
        fn vu(vtype: T, u: U) -> rdsys::rd_kafka_vu_t {
            rdsys::rd_kafka_vu_t { vtype, u }
        }
        fn mem(bytes: Option<&[u8]>) -> U {
            let (ptr, size) = bytes.map_or((std::ptr::null_mut(), 0), |b| {
                (b.as_ptr() as *mut c_void, b.len())
            });
            U {
                mem: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr, size },
            }
        }
        let mut hdrs = std::ptr::null_mut();
        if !headers.is_empty() {
            // SAFETY: a new list; each name and value is copied by
            // rd_kafka_header_add with its exact length.
            unsafe {
                hdrs = rdsys::rd_kafka_headers_new(headers.0.len());
                for (name, v) in &headers.0 {
                    rdsys::rd_kafka_header_add(
                        hdrs,
                        name.as_ptr().cast(),
                        name.len() as isize,
                        v.as_ptr().cast(),
                        v.len() as isize,
                    );
                }
            }
        }
        let vus = [
            vu(T::RD_KAFKA_VTYPE_RKT, U { rkt }),
            vu(
                T::RD_KAFKA_VTYPE_PARTITION,
                U {
                    i32_: partition.unwrap_or(PARTITION_UNASSIGNED),
                },
            ),
            vu(
                T::RD_KAFKA_VTYPE_MSGFLAGS,
                U {
                    i: rdsys::RD_KAFKA_MSG_F_COPY as c_int,
                },
            ),
            vu(T::RD_KAFKA_VTYPE_VALUE, mem(value)),
            vu(T::RD_KAFKA_VTYPE_KEY, mem(key)),
            vu(
                T::RD_KAFKA_VTYPE_TIMESTAMP,
                U {
                    i64_: timestamp.max(0),
                },
            ),
            vu(T::RD_KAFKA_VTYPE_HEADERS, U { headers: hdrs }),
        ];
        let count = if hdrs.is_null() {
            vus.len() - 1
        } else {
            vus.len()
        };
        // SAFETY: the producer lives, `rkt` is its topic handle, key and
        // value are copied (MSG_F_COPY) before the call returns; on success
        // librdkafka owns the headers, on failure they are still ours. No
        // opaque: the delivery callback's opaque type is `()`.
        let error = unsafe {
            rdsys::rd_kafka_produceva(self.producer.client().native_ptr(), vus.as_ptr(), count)
        };
        if error.is_null() {
            return Ok(());
        }
        // SAFETY: `error` is a live error we own, destroyed once; the
        // headers were not taken.
        unsafe {
            let code = RDKafkaErrorCode::from(rdsys::rd_kafka_error_code(error));
            rdsys::rd_kafka_error_destroy(error);
            if !hdrs.is_null() {
                rdsys::rd_kafka_headers_destroy(hdrs);
            }
            Err(code)
        }
    }
}

/// Whether a refused record means the producer left its transaction, not
/// that the record is at fault: librdkafka refuses every record outside
/// the `InTransaction` state (`_STATE`: after a failed delivery it waits
/// for an abort) and after a fatal error (`_FATAL`, e.g. fenced).
pub(crate) fn leaves_transaction(code: RDKafkaErrorCode) -> bool {
    // `Fenced`: another instance took the task (its `init_transactions`
    // bumped the epoch) while this one was frozen or cut off; the task is
    // closed and given back, never a fatal processing error.
    matches!(
        code,
        RDKafkaErrorCode::State
            | RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// Classifies a producer error the way the commit protocol needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnErrorKind {
    /// Abort the transaction, rewind, reprocess.
    Abortable,
    /// The task moved to another instance (or the producer is unusable).
    Fenced,
    /// Other errors.
    Fatal,
}

pub(crate) fn classify(e: &KafkaError) -> TxnErrorKind {
    if let KafkaError::Transaction(te) = e {
        if matches!(
            te.code(),
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        ) {
            return TxnErrorKind::Fenced;
        }
        if te.is_fatal() {
            return TxnErrorKind::Fenced;
        }
        if te.txn_requires_abort() || te.is_retriable() {
            return TxnErrorKind::Abortable;
        }
    }
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch,
        ) => TxnErrorKind::Fenced,
        _ => TxnErrorKind::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_producer_out_of_its_transaction_refuses_for_the_transaction() {
        assert!(leaves_transaction(RDKafkaErrorCode::State));
        assert!(leaves_transaction(RDKafkaErrorCode::Fatal));
        assert!(leaves_transaction(RDKafkaErrorCode::Fenced));
        // The record's own fault: the production handler decides.
        assert!(!leaves_transaction(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(!leaves_transaction(RDKafkaErrorCode::UnknownTopic));
    }

    #[test]
    fn held_keys_and_values_share_one_buffer_kept_between_commits() {
        let mut held = Held::default();
        let k = held.push(Some(b"key-1"));
        let v = held.push(Some(b"value-1"));
        let none = held.push(None);
        let empty = held.push(Some(b""));
        assert_eq!(held.get(k), Some(&b"key-1"[..]));
        assert_eq!(held.get(v), Some(&b"value-1"[..]));
        assert_eq!(held.get(none), None);
        assert_eq!(held.get(empty), Some(&b""[..]));
        assert_eq!(held.data.len(), 12);
        // Cleared after a commit: empty again, the buffer kept for the next.
        let capacity = held.data.capacity();
        held.clear();
        assert!(held.data.is_empty());
        assert_eq!(held.data.capacity(), capacity);
        // A buffer that grew past KEEP_HELD_BYTES is given back.
        let big = vec![7u8; KEEP_HELD_BYTES + 1];
        let r = held.push(Some(&big));
        assert_eq!(held.get(r).map(<[u8]>::len), Some(KEEP_HELD_BYTES + 1));
        held.clear();
        assert_eq!(held.data.capacity(), 0);
    }
}
