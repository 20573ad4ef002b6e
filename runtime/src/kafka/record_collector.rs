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
//! Sends are asynchronous. Delivery reports arrive on `poll`; the
//! `DeliveryTracker` keeps, per partition, the highest acknowledged offset
//! (the changelog checkpoint after a commit) and the first delivery error,
//! which fails the next commit instead of being lost.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Message};

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
            .unwrap()
            .get(topic)
            .and_then(|p| p.get(&partition))
            .copied()
    }

    fn acknowledged(&self, topic: &str, partition: i32, offset: i64) {
        let mut offsets = self.offsets.lock().unwrap();
        if let Some(partitions) = offsets.get_mut(topic) {
            let last = partitions.entry(partition).or_insert(offset);
            *last = (*last).max(offset);
            return;
        }
        offsets.insert(topic.to_string(), HashMap::from([(partition, offset)]));
    }
    pub fn take_error(&self) -> Option<String> {
        self.error.lock().unwrap().take()
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
                let mut err = self.tracker.error.lock().unwrap();
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
#[derive(Default)]
pub(crate) struct Deferred {
    on: Cell<bool>,
    records: RefCell<Vec<OwnedRecord>>,
    bytes: Cell<usize>,
}

struct OwnedRecord {
    topic: String,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    timestamp: i64,
    headers: Headers,
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
    pub fn release(&self, producer: &TaskProducer) -> Result<()> {
        self.on.set(false);
        self.bytes.set(0);
        let records = std::mem::take(&mut *self.records.borrow_mut());
        for r in &records {
            send_now(
                producer,
                &r.topic,
                r.partition,
                r.key.as_deref(),
                r.value.as_deref(),
                r.timestamp,
                &r.headers,
            )?;
        }
        Ok(())
    }

    /// Drops the held-back records (their transaction is aborted) and stops
    /// holding back.
    pub fn discard(&self) {
        self.on.set(false);
        self.bytes.set(0);
        self.records.borrow_mut().clear();
    }
}

/// Sends a task's records through a (shared or per-task) producer.
pub(crate) struct KafkaRecordCollector {
    pub producer: Arc<TaskProducer>,
    pub tracker: Arc<DeliveryTracker>,
    pub deferred: Rc<Deferred>,
}

impl RecordCollector for KafkaRecordCollector {
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
            self.deferred.bytes.set(self.deferred.bytes.get() + size);
            self.deferred.records.borrow_mut().push(OwnedRecord {
                topic: topic.to_string(),
                partition,
                key: key.map(<[u8]>::to_vec),
                value: value.map(<[u8]>::to_vec),
                timestamp,
                headers: headers.clone(),
            });
            return Ok(());
        }
        send_now(
            &self.producer,
            topic,
            partition,
            key,
            value,
            timestamp,
            headers,
        )
    }

    fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.tracker.last_offset(topic, partition)
    }
}

fn send_now(
    producer: &TaskProducer,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    timestamp: i64,
    headers: &Headers,
) -> Result<()> {
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).timestamp(timestamp.max(0));
    if let Some(p) = partition {
        record = record.partition(p);
    }
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    if !headers.is_empty() {
        let mut h = OwnedHeaders::new_with_capacity(headers.0.len());
        for (name, v) in &headers.0 {
            h = h.insert(Header {
                key: name,
                value: Some(v.as_slice()),
            });
        }
        record = record.headers(h);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => {
                let hint = match e.rdkafka_error_code() {
                    Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                        "; the record is larger than the producer's message.max.bytes \
                         (raise it together with the topic's max.message.bytes, or set \
                         production.exception.handler=log_and_continue to skip such records)"
                    }
                    _ => "",
                };
                return Err(StreamsError::Production {
                    topic: topic.to_string(),
                    message: format!("{e}{hint}"),
                });
            }
        }
    }
}

/// Classifies a producer error the way the commit protocol needs it.
#[derive(Debug, PartialEq, Eq)]
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
