//! The Processor API: the trait users implement and the context it runs in.
//!
//! A [`Processor`] receives one typed record at a time and forwards zero or
//! more records to its children through its [`ProcessorContext`]. Forwarding
//! is a direct, synchronous call into the child (depth-first, like Kafka
//! Streams), so a record travels the whole sub-topology before the next input
//! record is read. There is no queue between nodes and no per-hop allocation:
//! a record is moved to a single child and cloned only for fan-out.
//!
//! The context is passed into every call rather than stored in the processor,
//! which keeps processors free of self-references and lifetimes.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use crate::TaskId;
use crate::error::{Result, StreamsError};
use crate::record::{Record, RecordMetadata};
use crate::state::{KeyValueStore, TtlStore, WindowKeySlot, WindowStore};
use crate::task_context::{Punctuation, TaskShared};

/// A node of the topology that transforms records.
///
/// `KIn`/`VIn` are the types it receives, `KOut`/`VOut` the types it forwards.
///
/// ```
/// use kstreams_runtime::{Processor, ProcessorContext, Record, Result};
///
/// /// Forwards each word of a line, keyed by the word.
/// struct Split;
/// impl Processor<(), String, String, ()> for Split {
///     fn process(&mut self, r: Record<(), String>, ctx: &mut ProcessorContext<String, ()>) -> Result<()> {
///         for w in r.value.split_whitespace() {
///             ctx.forward(Record::new(w.to_string(), (), r.timestamp))?;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Processor<KIn, VIn, KOut, VOut>: 'static {
    /// Called once when the task starts, before any record. Look up stores
    /// and schedule punctuators here.
    fn init(&mut self, _ctx: &mut ProcessorContext<KOut, VOut>) -> Result<()> {
        Ok(())
    }
    /// Processes one record.
    fn process(
        &mut self,
        record: Record<KIn, VIn>,
        ctx: &mut ProcessorContext<KOut, VOut>,
    ) -> Result<()>;
    /// Called when a punctuator scheduled with [`ProcessorContext::schedule`] fires.
    fn punctuate(
        &mut self,
        _id: PunctuatorId,
        _timestamp: i64,
        _ctx: &mut ProcessorContext<KOut, VOut>,
    ) -> Result<()> {
        Ok(())
    }
    /// Called before every commit. A processor that buffers records (a cache)
    /// must forward them here, so they are part of the commit.
    fn flush(&mut self, _ctx: &mut ProcessorContext<KOut, VOut>) -> Result<()> {
        Ok(())
    }
    /// Called after a transaction was aborted: drop anything buffered since
    /// the last commit, because the input will be re-processed.
    fn discard(&mut self) {}
    /// Called once when the task closes.
    fn close(&mut self) {}
}

/// When a punctuator fires.
///
/// ```
/// let t = kstreams_runtime::PunctuationType::StreamTime;
/// assert_ne!(t, kstreams_runtime::PunctuationType::WallClockTime);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PunctuationType {
    /// Driven by the task's stream time (the largest record timestamp seen).
    StreamTime,
    /// Driven by the wall clock (or the test driver's simulated clock).
    WallClockTime,
}

/// Identifies a scheduled punctuator, to tell several apart or cancel one.
///
/// ```
/// let id = kstreams_runtime::PunctuatorId(3);
/// assert_eq!(id.0, 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PunctuatorId(pub u64);

/// The typed input of a node: what a parent forwards into.
pub(crate) trait NodeInput<K, V> {
    fn process(&mut self, record: Record<K, V>) -> Result<()>;
}

pub(crate) type InputRef<K, V> = Rc<RefCell<dyn NodeInput<K, V>>>;

pub(crate) struct Child<K, V> {
    pub name: String,
    pub input: InputRef<K, V>,
}

/// Life-cycle calls the task makes on a node, independent of its types.
pub(crate) trait NodeLifecycle {
    fn init(&mut self) -> Result<()>;
    fn punctuate(&mut self, id: PunctuatorId, timestamp: i64) -> Result<()>;
    fn flush(&mut self) -> Result<()>;
    fn discard(&mut self);
    fn close(&mut self);
}

/// What a processor sees of its task: children, stores, time, metadata.
///
/// ```
/// use kstreams_runtime::{Processor, ProcessorContext, Record, Result};
/// struct Tag;
/// impl Processor<String, String, String, String> for Tag {
///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<String, String>) -> Result<()> {
///         let offset = ctx.record_metadata().map(|m| m.offset).unwrap_or(-1);
///         ctx.forward(r.clone().with_value(format!("{}@{}", r.value, offset)))
///     }
/// }
/// ```
pub struct ProcessorContext<K, V> {
    node_name: String,
    node_index: usize,
    children: Vec<Child<K, V>>,
    task: Rc<TaskShared>,
    stores: HashSet<String>,
}

impl<K: Clone + 'static, V: Clone + 'static> ProcessorContext<K, V> {
    pub(crate) fn new(
        node_name: String,
        node_index: usize,
        children: Vec<Child<K, V>>,
        task: Rc<TaskShared>,
        stores: HashSet<String>,
    ) -> Self {
        ProcessorContext {
            node_name,
            node_index,
            children,
            task,
            stores,
        }
    }

    /// Forwards a record to every child.
    ///
    /// ```no_run
    /// # use kstreams_runtime::{ProcessorContext, Record};
    /// # fn f(ctx: &mut ProcessorContext<String, u64>) -> kstreams_runtime::Result<()> {
    /// ctx.forward(Record::new("k".to_string(), 1, 0))
    /// # }
    /// ```
    pub fn forward(&mut self, record: Record<K, V>) -> Result<()> {
        match self.children.len() {
            0 => Ok(()),
            1 => self.children[0].input.borrow_mut().process(record),
            n => {
                for child in &self.children[..n - 1] {
                    child.input.borrow_mut().process(record.clone())?;
                }
                self.children[n - 1].input.borrow_mut().process(record)
            }
        }
    }

    /// Forwards a record to the child named `child` only.
    ///
    /// ```no_run
    /// # use kstreams_runtime::{ProcessorContext, Record};
    /// # fn f(ctx: &mut ProcessorContext<String, u64>) -> kstreams_runtime::Result<()> {
    /// ctx.forward_to("errors", Record::new("k".to_string(), 1, 0))
    /// # }
    /// ```
    pub fn forward_to(&mut self, child: &str, record: Record<K, V>) -> Result<()> {
        match self.children.iter().find(|c| c.name == child) {
            Some(c) => c.input.borrow_mut().process(record),
            None => Err(StreamsError::processing(
                &self.node_name,
                format!(
                    "no child named '{child}'; children are: {:?}",
                    self.children
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                ),
            )),
        }
    }

    /// Names of the children, in the order they were connected.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) {
    /// for name in ctx.child_names() { println!("{name}"); }
    /// # }
    /// ```
    pub fn child_names(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }
}

impl<K, V> ProcessorContext<K, V> {
    /// This node's name.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) { let _ = ctx.node_name(); }
    /// ```
    pub fn node_name(&self) -> &str {
        &self.node_name
    }
    /// The task running this node, e.g. `0_3`.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) { println!("{}", ctx.task_id()); }
    /// ```
    pub fn task_id(&self) -> TaskId {
        self.task.task_id
    }
    /// The `application.id`.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) { let _ = ctx.application_id(); }
    /// ```
    pub fn application_id(&self) -> &str {
        &self.task.application_id
    }
    /// Topic, partition and offset of the input record being processed; `None`
    /// inside a punctuator.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) { let _ = ctx.record_metadata(); }
    /// ```
    pub fn record_metadata(&self) -> Option<RecordMetadata> {
        self.task.metadata.borrow().clone()
    }
    /// The task's stream time: the largest record timestamp seen so far.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) { let _ = ctx.stream_time(); }
    /// ```
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time.get()
    }
    /// The current wall-clock time in epoch millis (simulated in the test driver).
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) { let _ = ctx.wall_clock_time(); }
    /// ```
    pub fn wall_clock_time(&self) -> i64 {
        self.task.wall_clock.get()
    }
    /// The record-cache budget of this task (`cache.max.bytes.buffering`).
    /// Processors that buffer updates (aggregations) forward them at
    /// [`Processor::flush`] and whenever their buffer exceeds this size; 0
    /// means forward every update at once.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) { let _ = ctx.cache_max_bytes(); }
    /// ```
    pub fn cache_max_bytes(&self) -> usize {
        self.task.cache_max_bytes
    }
    /// Asks the runtime to commit as soon as the current record is done.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) { ctx.request_commit(); }
    /// ```
    pub fn request_commit(&self) {
        self.task.commit_requested.set(true);
    }
    /// Counts a record this node dropped on purpose (late, duplicate, invalid),
    /// under `reason`. Shown in metrics and by the test driver.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) { ctx.record_dropped("duplicate"); }
    /// ```
    pub fn record_dropped(&self, reason: &str) {
        self.task.metrics.record_dropped(&self.node_name, reason);
    }

    /// Schedules [`Processor::punctuate`] every `interval`, on stream time or
    /// wall-clock time.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use kstreams_runtime::PunctuationType;
    /// # fn f(ctx: &mut kstreams_runtime::ProcessorContext<String, u64>) {
    /// let id = ctx.schedule(Duration::from_secs(10), PunctuationType::WallClockTime);
    /// # let _ = id; }
    /// ```
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> PunctuatorId {
        let id = PunctuatorId(self.task.next_punctuator_id.get());
        self.task.next_punctuator_id.set(id.0 + 1);
        let interval_ms = (interval.as_millis() as i64).max(1);
        let now = match kind {
            PunctuationType::StreamTime => self.task.stream_time.get(),
            PunctuationType::WallClockTime => self.task.wall_clock.get(),
        };
        let next = if now == i64::MIN {
            i64::MIN
        } else {
            now + interval_ms
        };
        self.task.punctuations.borrow_mut().push(Punctuation {
            node: self.node_index,
            id,
            interval_ms,
            kind,
            next,
        });
        id
    }

    /// Cancels a punctuator.
    ///
    /// ```no_run
    /// # fn f(ctx: &mut kstreams_runtime::ProcessorContext<String, u64>, id: kstreams_runtime::PunctuatorId) {
    /// ctx.cancel(id);
    /// # }
    /// ```
    pub fn cancel(&mut self, id: PunctuatorId) {
        self.task.punctuations.borrow_mut().retain(|p| p.id != id);
    }

    /// The key-value store `name`, which must be attached to this processor.
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) -> kstreams_runtime::Result<()> {
    /// let counts = ctx.key_value_store::<String, u64>("counts")?;
    /// counts.put(&"a".to_string(), &1)?;
    /// # Ok(()) }
    /// ```
    pub fn key_value_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStore<SK, SV>> {
        let slot = self.store_slot(name)?;
        let key_serde = downcast_serde::<SK>(&*slot.key_serde, name)?;
        let value_serde = downcast_serde::<SV>(&*slot.value_serde, name)?;
        Ok(KeyValueStore::new(
            slot.store.clone(),
            key_serde,
            value_serde,
        ))
    }

    /// The TTL store `name` (see [`crate::StoreBuilder::ttl`]).
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) -> kstreams_runtime::Result<()> {
    /// let seen = ctx.ttl_store::<String, ()>("seen-ids")?;
    /// # Ok(()) }
    /// ```
    pub fn ttl_store<SK: 'static, SV: 'static>(&self, name: &str) -> Result<TtlStore<SK, SV>> {
        let slot = self.store_slot(name)?;
        let ttl_ms = slot
            .ttl_ms
            .ok_or_else(|| StreamsError::StoreType(name.to_string()))?;
        let key_serde = downcast_serde::<SK>(&*slot.key_serde, name)?;
        let value_serde = downcast_serde::<SV>(&*slot.value_serde, name)?;
        Ok(TtlStore::new(
            slot.store.clone(),
            key_serde,
            value_serde,
            ttl_ms,
        ))
    }

    /// The window store `name` (see [`crate::StoreBuilder::window`]).
    ///
    /// ```no_run
    /// # fn f(ctx: &kstreams_runtime::ProcessorContext<String, u64>) -> kstreams_runtime::Result<()> {
    /// let per_minute = ctx.window_store::<String, u64>("clicks-per-minute")?;
    /// per_minute.put(&"alice".to_string(), 0, 60_000, &1)?;
    /// # Ok(()) }
    /// ```
    pub fn window_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStore<SK, SV>> {
        let slot = self.store_slot(name)?;
        let key = slot
            .key_serde
            .downcast_ref::<WindowKeySlot<SK>>()
            .ok_or_else(|| StreamsError::StoreType(name.to_string()))?;
        let value_serde = downcast_serde::<SV>(&*slot.value_serde, name)?;
        Ok(WindowStore::new(
            slot.store.clone(),
            key.key_serde.clone(),
            value_serde,
            key.spec,
        ))
    }

    fn store_slot(&self, name: &str) -> Result<crate::task_context::StoreSlot> {
        if !self.stores.contains(name) {
            return Err(StreamsError::UnknownStore(name.to_string()));
        }
        self.task
            .stores
            .borrow()
            .get(name)
            .cloned()
            .ok_or_else(|| StreamsError::UnknownStore(name.to_string()))
    }
}

fn downcast_serde<T: 'static>(
    any: &(dyn Any + Send + Sync),
    store: &str,
) -> Result<crate::serde::SerdeRef<T>> {
    any.downcast_ref::<crate::serde::SerdeRef<T>>()
        .cloned()
        .ok_or_else(|| StreamsError::StoreType(store.to_string()))
}

/// A processor wired to its context: the node the task actually calls.
pub(crate) struct ProcessorNode<P, KIn, VIn, KOut, VOut> {
    pub processor: P,
    pub ctx: ProcessorContext<KOut, VOut>,
    pub _in: std::marker::PhantomData<fn(KIn, VIn)>,
}

impl<P, KIn, VIn, KOut, VOut> NodeInput<KIn, VIn> for ProcessorNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
{
    fn process(&mut self, record: Record<KIn, VIn>) -> Result<()> {
        self.processor.process(record, &mut self.ctx)
    }
}

impl<P, KIn, VIn, KOut, VOut> NodeLifecycle for ProcessorNode<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
{
    fn init(&mut self) -> Result<()> {
        self.processor.init(&mut self.ctx)
    }
    fn punctuate(&mut self, id: PunctuatorId, timestamp: i64) -> Result<()> {
        self.processor.punctuate(id, timestamp, &mut self.ctx)
    }
    fn flush(&mut self) -> Result<()> {
        self.processor.flush(&mut self.ctx)
    }
    fn discard(&mut self) {
        self.processor.discard()
    }
    fn close(&mut self) {
        self.processor.close()
    }
}
