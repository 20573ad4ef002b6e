//! State one task shares with all of its nodes: time, record metadata,
//! punctuation schedules, stores and the record collector.
//!
//! Everything in a task runs on one thread, so this uses `Cell`/`RefCell`
//! and `Rc` rather than locks.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use crate::TaskId;
use crate::error::Result;
use crate::processor::{PunctuationType, PunctuatorId};
use crate::record::{Headers, RecordMetadata};
use crate::state::TxnStore;

/// Where a task's output goes: Kafka (through the task's producer) or the
/// test driver's in-memory topics.
pub(crate) trait RecordCollector {
    /// Sends a record. `partition` is explicit for changelogs; for sinks it is
    /// `None` and the collector partitions by key (murmur2, like Kafka's
    /// default partitioner, so Java producers agree with us).
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: &Headers,
    ) -> Result<()>;
    /// The offset of the last record written to `topic`/`partition` by this
    /// collector and acknowledged, if any.
    fn last_offset(&self, topic: &str, partition: i32) -> Option<i64>;
}

#[derive(Clone)]
pub(crate) struct StoreSlot {
    pub store: Rc<RefCell<TxnStore>>,
    pub key_serde: Arc<dyn Any + Send + Sync>,
    pub value_serde: Arc<dyn Any + Send + Sync>,
    pub ttl_ms: Option<i64>,
}

pub(crate) struct Punctuation {
    pub node: usize,
    pub id: PunctuatorId,
    pub interval_ms: i64,
    pub kind: PunctuationType,
    pub next: i64,
}

/// Per-task counters, read by the runtime's metrics and by the test driver.
#[derive(Default)]
pub(crate) struct TaskMetrics {
    pub processed: Cell<u64>,
    pub skipped_deserialization: Cell<u64>,
    pub processing_errors: Cell<u64>,
    pub production_errors: Cell<u64>,
    pub dead_lettered: Cell<u64>,
    pub dropped: RefCell<BTreeMap<(String, String), u64>>,
}

impl TaskMetrics {
    pub fn record_dropped(&self, node: &str, reason: &str) {
        *self
            .dropped
            .borrow_mut()
            .entry((node.to_string(), reason.to_string()))
            .or_default() += 1;
    }
}

pub(crate) struct TaskShared {
    pub task_id: TaskId,
    pub application_id: String,
    pub metadata: RefCell<Option<RecordMetadata>>,
    pub stream_time: Cell<i64>,
    pub wall_clock: Cell<i64>,
    pub punctuations: RefCell<Vec<Punctuation>>,
    pub next_punctuator_id: Cell<u64>,
    pub collector: RefCell<Box<dyn RecordCollector>>,
    pub stores: RefCell<HashMap<String, StoreSlot>>,
    pub commit_requested: Cell<bool>,
    pub metrics: TaskMetrics,
    pub cache_max_bytes: usize,
    /// `production.exception.handler`, applied by sink nodes to records
    /// emitted outside of processing an input record (cache flushes,
    /// punctuators); during processing the task applies it.
    pub production_policy: crate::ErrorPolicy,
}
