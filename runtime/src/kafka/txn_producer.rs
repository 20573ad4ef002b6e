//! `TxnProducer`: the transaction calls of a task's producer (begin, offsets
//! into the transaction, commit, abort, poll), as the exactly-once commit
//! uses them, and their adapter to the rdkafka producer.
//!
//! Why a trait: the failure branches of the pipelined commit (a retriable,
//! abortable, fencing or fatal error at each call) are reached by an
//! end-to-end test only by chance. Behind this trait the commit state
//! machine (`task_manager/txn_steps.rs`) runs against a fake producer in
//! unit tests that inject each error kind at each step
//! (`task_manager/commit_tests/`).
//!
//! Why its own error type: rdkafka's transaction errors (`RDKafkaError`,
//! with their fatal / retriable / abortable flags) cannot be made outside
//! rdkafka. The adapter classifies each error once, here, at the boundary
//! (`classify` and librdkafka's retriable flag); the state machine decides
//! on `TxnError::kind` and `TxnError::retriable` only.
//!
//! Records themselves do not go through this trait: they are sent by
//! `TaskSender` (one `rd_kafka_produceva` per record, no dynamic dispatch).

use std::fmt;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;

use super::record_collector::{TaskProducer, TxnErrorKind, classify};
use super::streams_producer::{
    ABORT_TIMEOUT, TXN_TIMEOUT, abort_polling, flush_promptly, serve_delivery_reports,
};

/// A failed transaction call, classified for the commit protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnError {
    /// What to do once retrying is over (or at once if not `retriable`).
    pub kind: TxnErrorKind,
    /// librdkafka allows the same call again (the coordinator moved, the
    /// broker is down): retried up to `task.timeout.ms`.
    pub retriable: bool,
    pub message: String,
}

impl TxnError {
    /// Classifies an rdkafka error as `classify` and the retry rule do.
    pub fn from_kafka(e: &KafkaError) -> TxnError {
        TxnError {
            kind: classify(e),
            retriable: matches!(e, KafkaError::Transaction(te) if te.is_retriable()),
            message: e.to_string(),
        }
    }

    /// An error of `kind` that is not retriable.
    #[cfg(test)]
    pub fn new(kind: TxnErrorKind, message: &str) -> TxnError {
        TxnError {
            kind,
            retriable: false,
            message: message.to_string(),
        }
    }

    /// A retriable error (abortable once retrying is over, as librdkafka's).
    #[cfg(test)]
    pub fn retriable(message: &str) -> TxnError {
        TxnError {
            kind: TxnErrorKind::Abortable,
            retriable: true,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) type TxnResult = std::result::Result<(), TxnError>;

/// The consumer group a transaction commits input offsets for: rdkafka's
/// group metadata (which only a consumer in the group can give), or, in
/// unit tests, none.
pub(crate) struct GroupHandle {
    metadata: Option<ConsumerGroupMetadata>,
}

impl GroupHandle {
    pub fn new(metadata: ConsumerGroupMetadata) -> GroupHandle {
        GroupHandle {
            metadata: Some(metadata),
        }
    }

    /// A group for a fake producer (the real one refuses it).
    #[cfg(test)]
    pub fn fake() -> GroupHandle {
        GroupHandle { metadata: None }
    }
}

/// A task producer's transaction calls, each with its own timeout.
pub(crate) trait TxnProducer: Send + Sync {
    fn begin(&self) -> TxnResult;
    /// `send_offsets_to_transaction`: the input offsets join the transaction.
    fn send_offsets(&self, offsets: &TopicPartitionList, group: &GroupHandle) -> TxnResult;
    fn commit(&self) -> TxnResult;
    /// `abort_transaction`, serving delivery reports meanwhile.
    fn abort(&self) -> TxnResult;
    /// Serves delivery reports without waiting.
    fn poll(&self);
}

impl TxnProducer for TaskProducer {
    fn begin(&self) -> TxnResult {
        self.begin_transaction()
            .map_err(|e| TxnError::from_kafka(&e))
    }

    fn send_offsets(&self, offsets: &TopicPartitionList, group: &GroupHandle) -> TxnResult {
        let Some(gm) = &group.metadata else {
            return Err(TxnError {
                kind: TxnErrorKind::Fatal,
                retriable: false,
                message: "no consumer group metadata".to_string(),
            });
        };
        self.send_offsets_to_transaction(offsets, gm, TXN_TIMEOUT)
            .map_err(|e| TxnError::from_kafka(&e))
    }

    fn commit(&self) -> TxnResult {
        flush_promptly(self, TXN_TIMEOUT)
            .and_then(|()| self.commit_transaction(TXN_TIMEOUT))
            .map_err(|e| TxnError::from_kafka(&e))
    }

    fn abort(&self) -> TxnResult {
        abort_polling(self, ABORT_TIMEOUT).map_err(|e| TxnError::from_kafka(&e))
    }

    fn poll(&self) {
        serve_delivery_reports(self);
    }
}
