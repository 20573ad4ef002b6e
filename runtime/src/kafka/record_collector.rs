//! `RecordCollector` for Kafka: a task's outputs and changelog records go
//! through its producer.
//!
//! Under exactly-once each task has its own transactional producer, so its
//! records, its changelog writes and its input offsets commit together.
//! Under at-least-once a thread's tasks share one idempotent producer.
//!
//! Sends are asynchronous. Delivery reports arrive on `poll`; the
//! `DeliveryTracker` keeps, per partition, the highest acknowledged offset
//! (the changelog checkpoint after a commit) and the first delivery error,
//! which fails the next commit instead of being lost.

use std::collections::HashMap;
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
#[derive(Default)]
pub(crate) struct DeliveryTracker {
    offsets: Mutex<HashMap<(String, i32), i64>>,
    error: Mutex<Option<String>>,
}

impl DeliveryTracker {
    pub fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets
            .lock()
            .unwrap()
            .get(&(topic.to_string(), partition))
            .copied()
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
            Ok(m) => {
                let mut offsets = self.tracker.offsets.lock().unwrap();
                let key = (m.topic().to_string(), m.partition());
                let e = offsets.entry(key).or_insert(-1);
                if m.offset() > *e {
                    *e = m.offset();
                }
            }
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

/// Sends a task's records through a (shared or per-task) producer.
pub(crate) struct KafkaRecordCollector {
    pub producer: Arc<TaskProducer>,
    pub tracker: Arc<DeliveryTracker>,
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
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).timestamp(timestamp.max(0));
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
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
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

    fn last_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.tracker.last_offset(topic, partition)
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
