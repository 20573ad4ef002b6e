//! The three node kinds a task instantiates: sources (bytes in, typed out),
//! processors (typed in, typed out) and sinks (typed in, bytes out).
//!
//! The topology stores one factory per node with the node's types erased.
//! When a task starts, factories run from the leaves up: each node is given
//! its already-built children, checks their types, and wires them into its
//! context. After that, records move by plain function calls.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashSet;
use std::marker::PhantomData;
use std::rc::Rc;

use crate::error::{Result, StreamsError};
use crate::processor::{
    Child, InputRef, NodeInput, NodeLifecycle, Processor, ProcessorContext, ProcessorNode,
};
use crate::record::{Headers, Record};
use crate::serde::{SerdeRef, deserialize_opt};
use crate::task_context::TaskShared;

pub(crate) struct BuildArgs<'a> {
    pub name: &'a str,
    pub index: usize,
    pub children: Vec<(String, Box<dyn Any>)>,
    pub task: &'a Rc<TaskShared>,
    pub stores: HashSet<String>,
    /// The resolved topic of a sink.
    pub sink_topic: Option<String>,
}

/// A built node: a way to hand its typed input to parents, its life-cycle
/// handle, and for sources the byte-level entry point.
pub(crate) struct BuiltNode {
    pub input: Option<Box<dyn Fn() -> Box<dyn Any>>>,
    pub lifecycle: Option<Rc<RefCell<dyn NodeLifecycle>>>,
    pub source: Option<Rc<RefCell<dyn RawSource>>>,
}

pub(crate) trait NodeFactory: Send + Sync {
    fn build(&self, args: BuildArgs<'_>) -> Result<BuiltNode>;
}

fn typed_children<K: 'static, V: 'static>(
    node: &str,
    children: Vec<(String, Box<dyn Any>)>,
) -> Result<Vec<Child<K, V>>> {
    children
        .into_iter()
        .map(|(name, any)| match any.downcast::<InputRef<K, V>>() {
            Ok(input) => Ok(Child {
                name,
                input: *input,
            }),
            Err(_) => Err(StreamsError::Topology(format!(
                "node '{node}' forwards ({}, {}) but its child '{name}' accepts other types",
                std::any::type_name::<K>(),
                std::any::type_name::<V>()
            ))),
        })
        .collect()
}

/// Byte-level entry of a source node.
pub(crate) trait RawSource {
    fn process_raw(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<()>;
}

pub(crate) struct SourceFactory<K, V> {
    pub key_serde: SerdeRef<K>,
    pub value_serde: SerdeRef<V>,
}

struct SourceNode<K, V> {
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    ctx: ProcessorContext<K, V>,
    task: Rc<TaskShared>,
}

impl<K: Clone + 'static, V: Clone + 'static> RawSource for SourceNode<K, V> {
    fn process_raw(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: i64,
        headers: Headers,
    ) -> Result<()> {
        let decoded = deserialize_opt(&*self.key_serde, key)
            .and_then(|k| deserialize_opt(&*self.value_serde, value).map(|v| (k, v)));
        match decoded {
            Ok((key, value)) => self.ctx.forward(Record {
                key,
                value,
                timestamp,
                headers,
            }),
            Err(source) => {
                let m = self
                    .task
                    .metadata
                    .borrow()
                    .clone()
                    .unwrap_or(crate::RecordMetadata {
                        topic: String::new(),
                        partition: -1,
                        offset: -1,
                    });
                Err(StreamsError::Deserialization {
                    topic: m.topic,
                    partition: m.partition,
                    offset: m.offset,
                    source,
                })
            }
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> NodeFactory for SourceFactory<K, V> {
    fn build(&self, args: BuildArgs<'_>) -> Result<BuiltNode> {
        let children = typed_children::<K, V>(args.name, args.children)?;
        let ctx = ProcessorContext::new(
            args.name.to_string(),
            args.index,
            children,
            args.task.clone(),
            args.stores,
        );
        let node = SourceNode {
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            ctx,
            task: args.task.clone(),
        };
        Ok(BuiltNode {
            input: None,
            lifecycle: None,
            source: Some(Rc::new(RefCell::new(node))),
        })
    }
}

pub(crate) struct ProcessorFactory<KIn, VIn, KOut, VOut, F> {
    pub supplier: F,
    pub _types: PhantomData<fn(KIn, VIn, KOut, VOut)>,
}

impl<KIn, VIn, KOut, VOut, P, F> NodeFactory for ProcessorFactory<KIn, VIn, KOut, VOut, F>
where
    KIn: 'static,
    VIn: 'static,
    KOut: Clone + 'static,
    VOut: Clone + 'static,
    P: Processor<KIn, VIn, KOut, VOut>,
    F: Fn() -> P + Send + Sync,
{
    fn build(&self, args: BuildArgs<'_>) -> Result<BuiltNode> {
        let children = typed_children::<KOut, VOut>(args.name, args.children)?;
        let ctx = ProcessorContext::new(
            args.name.to_string(),
            args.index,
            children,
            args.task.clone(),
            args.stores,
        );
        let node = Rc::new(RefCell::new(ProcessorNode {
            processor: (self.supplier)(),
            ctx,
            _in: PhantomData,
        }));
        let input: InputRef<KIn, VIn> = node.clone();
        let lifecycle: Rc<RefCell<dyn NodeLifecycle>> = node;
        Ok(BuiltNode {
            input: Some(Box::new(move || Box::new(input.clone()) as Box<dyn Any>)),
            lifecycle: Some(lifecycle),
            source: None,
        })
    }
}

pub(crate) struct SinkFactory<K, V> {
    pub key_serde: SerdeRef<K>,
    pub value_serde: SerdeRef<V>,
}

struct SinkNode<K, V> {
    name: String,
    topic: String,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    task: Rc<TaskShared>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl<K: 'static, V: 'static> NodeInput<K, V> for SinkNode<K, V> {
    fn process(&mut self, record: Record<K, V>) -> Result<()> {
        match self.send(record) {
            Err(e @ StreamsError::Production { .. })
                if self.task.metadata.borrow().is_none()
                    && self.task.production_policy != crate::ErrorPolicy::LogAndFail =>
            {
                // Emitted by a cache flush or a punctuator: there is no
                // input record to dead-letter, so the record is skipped.
                tracing::warn!(
                    task = %self.task.task_id, node = %self.name, error = %e,
                    "skipping an output record the producer refused (production.exception.handler)"
                );
                let m = &self.task.metrics.production_errors;
                m.set(m.get() + 1);
                Ok(())
            }
            other => other,
        }
    }
}

impl<K: 'static, V: 'static> SinkNode<K, V> {
    /// Serializes and hands the record to the collector. Failing either
    /// is a production error, for the `production.exception.handler`.
    fn send(&mut self, record: Record<K, V>) -> Result<()> {
        self.key_buf.clear();
        self.value_buf.clear();
        let err = |e: crate::SerdeError, what: &str| StreamsError::Production {
            topic: self.topic.clone(),
            message: format!("cannot serialize the {what} (sink '{}'): {e}", self.name),
        };
        self.key_serde
            .serialize(&record.key, &mut self.key_buf)
            .map_err(|e| err(e, "key"))?;
        self.value_serde
            .serialize(&record.value, &mut self.value_buf)
            .map_err(|e| err(e, "value"))?;
        let key = (!self.key_serde.is_null(&record.key)).then_some(self.key_buf.as_slice());
        let value = (!self.value_serde.is_null(&record.value)).then_some(self.value_buf.as_slice());
        self.task.collector.borrow_mut().send(
            &self.topic,
            None,
            key,
            value,
            record.timestamp,
            &record.headers,
        )
    }
}

impl<K: 'static, V: 'static> NodeFactory for SinkFactory<K, V> {
    fn build(&self, args: BuildArgs<'_>) -> Result<BuiltNode> {
        let topic = args.sink_topic.clone().unwrap_or_default();
        let node: InputRef<K, V> = Rc::new(RefCell::new(SinkNode {
            name: args.name.to_string(),
            topic,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            task: args.task.clone(),
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }));
        Ok(BuiltNode {
            input: Some(Box::new(move || Box::new(node.clone()) as Box<dyn Any>)),
            lifecycle: None,
            source: None,
        })
    }
}
