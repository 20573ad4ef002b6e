//! The `Topology`: a graph of source, processor and sink nodes with stores
//! attached to processors, split into sub-topologies.
//!
//! Why sub-topologies: a repartition topic cuts the graph. Everything
//! upstream of it runs in one set of tasks, everything downstream in another,
//! because records must travel through Kafka to land on the partition (and
//! therefore the task) of their new key. Nodes connected by edges or by a
//! shared store form one sub-topology; tasks are named
//! `<sub-topology>_<partition>`.
//!
//! Internal topics (repartition topics) are declared without the
//! application id; the runtime names them `<application.id>-<name>`.

mod describe;
pub(crate) mod nodes;

use std::any::TypeId;
use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;

pub use describe::{NodeDescription, SubtopologyDescription, TopologyDescription};
use nodes::{NodeFactory, ProcessorFactory, SinkFactory, SourceFactory};

use crate::ErrorPolicy;
use crate::error::{Result, StreamsError};
use crate::processor::Processor;
use crate::serde::SerdeRef;
use crate::state::StoreBuilder;
use crate::state::StoreDef;

/// A topic as named in the topology.
///
/// ```
/// let t = kstreams_runtime::TopicRef { name: "lines".into(), internal: false };
/// assert_eq!(t.resolve("any-app"), "lines");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicRef {
    /// The name: full for user topics, without the application id for internal ones.
    pub name: String,
    /// Whether the runtime owns (creates, prefixes) this topic.
    pub internal: bool,
}

impl TopicRef {
    /// The topic's real name for `application_id`.
    ///
    /// ```
    /// use kstreams_runtime::TopicRef;
    /// let t = TopicRef { name: "by-customer-repartition".into(), internal: true };
    /// assert_eq!(t.resolve("orders-app"), "orders-app-by-customer-repartition");
    /// ```
    pub fn resolve(&self, application_id: &str) -> String {
        if self.internal {
            format!("{application_id}-{}", self.name)
        } else {
            self.name.clone()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Source { topics: Vec<TopicRef> },
    Processor,
    Sink { topic: TopicRef },
}

pub(crate) struct NodeDef {
    pub name: String,
    pub kind: NodeKind,
    pub parents: Vec<usize>,
    pub children: Vec<usize>,
    pub stores: BTreeSet<String>,
    #[allow(dead_code)]
    in_type: Option<(TypeId, &'static str)>,
    out_type: Option<(TypeId, &'static str)>,
    pub factory: Arc<dyn NodeFactory>,
}

/// A sub-topology: the nodes, topics and stores one task runs.
///
/// ```
/// use kstreams_runtime::{Serdes, Topology};
/// let mut t = Topology::new();
/// t.add_source("in", &["lines"], Serdes::string(), Serdes::string()).unwrap();
/// t.add_sink("out", "copies", Serdes::string(), Serdes::string(), &["in"]).unwrap();
/// let subs = t.subtopologies();
/// assert_eq!(subs.len(), 1);
/// assert_eq!(subs[0].source_topics[0].name, "lines");
/// assert_eq!(subs[0].sink_topics[0].name, "copies");
/// ```
#[derive(Clone, Debug)]
pub struct Subtopology {
    /// Its id, the first half of a task id.
    pub id: u32,
    /// Node indices, in creation order (parents before children).
    pub(crate) nodes: Vec<usize>,
    /// Topics it reads.
    pub source_topics: Vec<TopicRef>,
    /// Topics it writes.
    pub sink_topics: Vec<TopicRef>,
    /// Stores its processors use.
    pub stores: Vec<String>,
}

/// A processing graph, built with the Processor API or by the DSL.
///
/// ```
/// use kstreams_runtime::{Topology, Serdes, Processor, ProcessorContext, Record, Result};
///
/// struct Upper;
/// impl Processor<String, String, String, String> for Upper {
///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<String, String>) -> Result<()> {
///         let v = r.value.to_uppercase();
///         ctx.forward(r.with_value(v))
///     }
/// }
///
/// let mut t = Topology::new();
/// t.add_source("in", &["lines"], Serdes::string(), Serdes::string()).unwrap();
/// t.add_processor::<String, String, String, String, _, _>("upper", || Upper, &["in"]).unwrap();
/// t.add_sink("out", "upper-lines", Serdes::string(), Serdes::string(), &["upper"]).unwrap();
/// assert!(t.describe().to_string().contains("Sub-topology: 0"));
/// ```
#[derive(Default)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: Vec<StoreDef>,
    names: HashMap<String, usize>,
    repartition_partitions: HashMap<String, usize>,
    /// Per-source deserialization policies (by source node name), which
    /// override `default.deserialization.exception.handler`.
    source_policies: HashMap<String, ErrorPolicy>,
}

fn type_of<K: 'static, V: 'static>() -> (TypeId, &'static str) {
    (TypeId::of::<(K, V)>(), std::any::type_name::<(K, V)>())
}

impl Topology {
    /// An empty topology.
    ///
    /// ```
    /// assert!(kstreams_runtime::Topology::new().describe().subtopologies.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how records of the source node `source` that cannot be
    /// deserialized are handled, overriding the application's
    /// `default.deserialization.exception.handler` for its topics.
    ///
    /// ```
    /// use kstreams_runtime::{ErrorPolicy, Serdes, Topology};
    /// let mut t = Topology::new();
    /// t.add_source("numbers", &["in"], Serdes::string(), Serdes::u64_text()).unwrap();
    /// t.set_deserialization_policy("numbers", ErrorPolicy::DeadLetter("in-dlq".into())).unwrap();
    /// assert_eq!(t.dead_letter_topics(), vec!["in-dlq".to_string()]);
    /// let err = t.set_deserialization_policy("nope", ErrorPolicy::LogAndFail).unwrap_err();
    /// assert!(err.to_string().contains("no source node 'nope'"));
    /// ```
    pub fn set_deserialization_policy(
        &mut self,
        source: &str,
        policy: ErrorPolicy,
    ) -> Result<&mut Self> {
        match self.names.get(source).map(|&i| &self.nodes[i].kind) {
            Some(NodeKind::Source { .. }) => {
                self.source_policies.insert(source.to_string(), policy);
                Ok(self)
            }
            _ => Err(StreamsError::Topology(format!(
                "no source node '{source}' to set a deserialization policy on"
            ))),
        }
    }

    /// The per-source deserialization policy of the source node `source`,
    /// if one was set.
    ///
    /// ```
    /// # use kstreams_runtime::{ErrorPolicy, Serdes, Topology};
    /// let mut t = Topology::new();
    /// t.add_source("s", &["in"], Serdes::string(), Serdes::string()).unwrap();
    /// assert_eq!(t.deserialization_policy("s"), None);
    /// ```
    pub fn deserialization_policy(&self, source: &str) -> Option<&ErrorPolicy> {
        self.source_policies.get(source)
    }

    /// The dead-letter topics named by per-source policies (they must exist
    /// when the application starts).
    ///
    /// ```
    /// assert!(kstreams_runtime::Topology::new().dead_letter_topics().is_empty());
    /// ```
    pub fn dead_letter_topics(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .source_policies
            .values()
            .filter_map(|p| match p {
                ErrorPolicy::DeadLetter(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(StreamsError::Topology(
                "node names must not be empty".into(),
            ));
        }
        if self.names.contains_key(name) {
            return Err(StreamsError::Topology(format!(
                "a node named '{name}' already exists"
            )));
        }
        Ok(())
    }

    fn resolve_parents(
        &self,
        name: &str,
        parents: &[&str],
        in_type: (TypeId, &'static str),
    ) -> Result<Vec<usize>> {
        if parents.is_empty() {
            return Err(StreamsError::Topology(format!(
                "node '{name}' needs at least one parent"
            )));
        }
        let mut out = Vec::new();
        for p in parents {
            let idx = *self.names.get(*p).ok_or_else(|| {
                StreamsError::Topology(format!(
                    "node '{name}': parent '{p}' does not exist (add parents first)"
                ))
            })?;
            let parent = &self.nodes[idx];
            match parent.out_type {
                None => {
                    return Err(StreamsError::Topology(format!(
                        "node '{name}': parent '{p}' is a sink and has no children"
                    )));
                }
                Some(t) if t.0 != in_type.0 => {
                    return Err(StreamsError::Topology(format!(
                        "node '{name}' accepts {} but parent '{p}' forwards {}",
                        in_type.1, t.1
                    )));
                }
                _ => {}
            }
            out.push(idx);
        }
        Ok(out)
    }

    fn push(&mut self, mut def: NodeDef) -> usize {
        let idx = self.nodes.len();
        for &p in &def.parents {
            self.nodes[p].children.push(idx);
        }
        def.children.clear();
        self.names.insert(def.name.clone(), idx);
        self.nodes.push(def);
        idx
    }

    fn add_source_impl<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topics: Vec<TopicRef>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> Result<&mut Self> {
        self.check_new_name(name)?;
        if topics.is_empty() {
            return Err(StreamsError::Topology(format!(
                "source '{name}' needs at least one topic"
            )));
        }
        for t in &topics {
            if t.name.is_empty() {
                return Err(StreamsError::Topology(format!(
                    "source '{name}': empty topic name"
                )));
            }
            for n in &self.nodes {
                if let NodeKind::Source { topics: other } = &n.kind
                    && other.contains(t)
                {
                    return Err(StreamsError::Topology(format!(
                        "topic '{}' is already read by source '{}'; a topic can have one source only",
                        t.name, n.name
                    )));
                }
            }
        }
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Source { topics },
            parents: vec![],
            children: vec![],
            stores: BTreeSet::new(),
            in_type: None,
            out_type: Some(type_of::<K, V>()),
            factory: Arc::new(SourceFactory {
                key_serde,
                value_serde,
            }),
        });
        Ok(self)
    }

    /// Adds a source node reading `topics` with the given serdes.
    ///
    /// ```
    /// let mut t = kstreams_runtime::Topology::new();
    /// t.add_source("src", &["in"], kstreams_runtime::Serdes::unit(), kstreams_runtime::Serdes::string()).unwrap();
    /// assert!(t.add_source("src", &["other"], kstreams_runtime::Serdes::unit(), kstreams_runtime::Serdes::string()).is_err());
    /// ```
    pub fn add_source<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topics: &[&str],
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> Result<&mut Self> {
        let topics = topics
            .iter()
            .map(|t| TopicRef {
                name: t.to_string(),
                internal: false,
            })
            .collect();
        self.add_source_impl(name, topics, key_serde, value_serde)
    }

    /// Adds a source reading an internal (repartition) topic, named
    /// `<application.id>-<topic>` at run time.
    ///
    /// ```
    /// let mut t = kstreams_runtime::Topology::new();
    /// t.add_internal_source("src", "words-repartition", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).unwrap();
    /// ```
    pub fn add_internal_source<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topic: &str,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> Result<&mut Self> {
        self.add_source_impl(
            name,
            vec![TopicRef {
                name: topic.to_string(),
                internal: true,
            }],
            key_serde,
            value_serde,
        )
    }

    /// Adds a processor created by `supplier` (called once per task), as a
    /// child of `parents`. Type parameters are input key/value, output
    /// key/value; parents must forward exactly the input types.
    ///
    /// ```
    /// use kstreams_runtime::{Topology, Serdes, Processor, ProcessorContext, Record, Result};
    /// struct Id;
    /// impl Processor<(), String, (), String> for Id {
    ///     fn process(&mut self, r: Record<(), String>, ctx: &mut ProcessorContext<(), String>) -> Result<()> { ctx.forward(r) }
    /// }
    /// let mut t = Topology::new();
    /// t.add_source("src", &["in"], Serdes::unit(), Serdes::string()).unwrap();
    /// t.add_processor::<(), String, (), String, _, _>("id", || Id, &["src"]).unwrap();
    /// // A parent of the wrong type is refused with a clear error:
    /// t.add_source("nums", &["n"], Serdes::unit(), Serdes::i64_be()).unwrap();
    /// let err = t.add_processor::<(), String, (), String, _, _>("id2", || Id, &["nums"]).unwrap_err();
    /// assert!(err.to_string().contains("parent 'nums' forwards"));
    /// ```
    pub fn add_processor<KIn, VIn, KOut, VOut, P, F>(
        &mut self,
        name: &str,
        supplier: F,
        parents: &[&str],
    ) -> Result<&mut Self>
    where
        KIn: 'static,
        VIn: 'static,
        KOut: Clone + 'static,
        VOut: Clone + 'static,
        P: Processor<KIn, VIn, KOut, VOut>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.check_new_name(name)?;
        let in_type = type_of::<KIn, VIn>();
        let parents = self.resolve_parents(name, parents, in_type)?;
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Processor,
            parents,
            children: vec![],
            stores: BTreeSet::new(),
            in_type: Some(in_type),
            out_type: Some(type_of::<KOut, VOut>()),
            factory: Arc::new(ProcessorFactory::<KIn, VIn, KOut, VOut, F> {
                supplier,
                _types: PhantomData,
            }),
        });
        Ok(self)
    }

    fn add_sink_impl<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: TopicRef,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        self.check_new_name(name)?;
        if topic.name.is_empty() {
            return Err(StreamsError::Topology(format!(
                "sink '{name}': empty topic name"
            )));
        }
        let in_type = type_of::<K, V>();
        let parents = self.resolve_parents(name, parents, in_type)?;
        self.push(NodeDef {
            name: name.to_string(),
            kind: NodeKind::Sink { topic },
            parents,
            children: vec![],
            stores: BTreeSet::new(),
            in_type: Some(in_type),
            out_type: None,
            factory: Arc::new(SinkFactory {
                key_serde,
                value_serde,
            }),
        });
        Ok(self)
    }

    /// Adds a sink writing to `topic`, partitioned by the serialized key.
    ///
    /// ```
    /// let mut t = kstreams_runtime::Topology::new();
    /// t.add_source("src", &["in"], kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).unwrap();
    /// t.add_sink("out", "copy", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string(), &["src"]).unwrap();
    /// ```
    pub fn add_sink<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: &str,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        self.add_sink_impl(
            name,
            TopicRef {
                name: topic.to_string(),
                internal: false,
            },
            key_serde,
            value_serde,
            parents,
        )
    }

    /// Adds a sink writing to an internal (repartition) topic. `partitions`
    /// fixes its partition count; by default it has as many partitions as the
    /// writing sub-topology has tasks.
    ///
    /// ```
    /// let mut t = kstreams_runtime::Topology::new();
    /// t.add_source("src", &["in"], kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).unwrap();
    /// t.add_internal_sink("to-rep", "x-repartition", None, kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string(), &["src"]).unwrap();
    /// ```
    pub fn add_internal_sink<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: &str,
        partitions: Option<usize>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        if let Some(p) = partitions {
            if p == 0 {
                return Err(StreamsError::Topology(format!(
                    "repartition topic '{topic}' needs at least one partition"
                )));
            }
            self.repartition_partitions.insert(topic.to_string(), p);
        }
        self.add_sink_impl(
            name,
            TopicRef {
                name: topic.to_string(),
                internal: true,
            },
            key_serde,
            value_serde,
            parents,
        )
    }

    /// Adds a state store and connects it to `processors`.
    ///
    /// ```
    /// use kstreams_runtime::{Topology, StoreBuilder, Serdes};
    /// let mut t = Topology::new();
    /// t.add_state_store(StoreBuilder::key_value("counts", Serdes::string(), Serdes::u64_be()), &[]).unwrap();
    /// assert!(t.add_state_store(StoreBuilder::key_value("counts", Serdes::string(), Serdes::u64_be()), &[]).is_err());
    /// ```
    pub fn add_state_store<K: 'static, V: 'static>(
        &mut self,
        builder: StoreBuilder<K, V>,
        processors: &[&str],
    ) -> Result<&mut Self> {
        let name = builder.name().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(StreamsError::Topology(format!(
                "store name '{name}' is not valid: use ASCII letters, digits, '.', '_' and '-' (it becomes part of a topic name)"
            )));
        }
        if self.stores.iter().any(|s| s.name == name) {
            return Err(StreamsError::Topology(format!(
                "a store named '{name}' already exists"
            )));
        }
        self.stores.push(builder.into_def());
        for p in processors {
            self.connect_processor_and_store(p, &name)?;
        }
        Ok(self)
    }

    /// Gives processor `processor` access to store `store`.
    ///
    /// ```
    /// use kstreams_runtime::{Topology, StoreBuilder, Serdes};
    /// let mut t = Topology::new();
    /// t.add_state_store(StoreBuilder::key_value("s", Serdes::string(), Serdes::u64_be()), &[]).unwrap();
    /// assert!(t.connect_processor_and_store("nope", "s").is_err());
    /// ```
    pub fn connect_processor_and_store(
        &mut self,
        processor: &str,
        store: &str,
    ) -> Result<&mut Self> {
        if !self.stores.iter().any(|s| s.name == store) {
            return Err(StreamsError::Topology(format!(
                "store '{store}' does not exist; add it with add_state_store first"
            )));
        }
        let idx = *self.names.get(processor).ok_or_else(|| {
            StreamsError::Topology(format!("processor '{processor}' does not exist"))
        })?;
        if self.nodes[idx].kind != NodeKind::Processor {
            return Err(StreamsError::Topology(format!(
                "'{processor}' is not a processor; only processors can use stores"
            )));
        }
        self.nodes[idx].stores.insert(store.to_string());
        Ok(self)
    }

    /// Whether a node named `name` exists.
    ///
    /// ```
    /// assert!(!kstreams_runtime::Topology::new().has_node("x"));
    /// ```
    pub fn has_node(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Whether a store named `name` exists.
    ///
    /// ```
    /// assert!(!kstreams_runtime::Topology::new().has_store("x"));
    /// ```
    pub fn has_store(&self, name: &str) -> bool {
        self.stores.iter().any(|s| s.name == name)
    }

    /// Splits the graph into sub-topologies (see the module docs).
    ///
    /// ```
    /// let mut t = kstreams_runtime::Topology::new();
    /// t.add_source("a", &["x"], kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).unwrap();
    /// t.add_source("b", &["y"], kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).unwrap();
    /// assert_eq!(t.subtopologies().len(), 2);
    /// ```
    pub fn subtopologies(&self) -> Vec<Subtopology> {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            let mut c = x;
            while p[c] != r {
                let next = p[c];
                p[c] = r;
                c = next;
            }
            r
        }
        let union = |p: &mut Vec<usize>, a: usize, b: usize| {
            let (ra, rb) = (find(p, a), find(p, b));
            if ra != rb {
                let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
                p[hi] = lo;
            }
        };
        for (i, node) in self.nodes.iter().enumerate() {
            for &c in &node.children {
                union(&mut parent, i, c);
            }
        }
        let mut store_owner: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for s in &node.stores {
                if let Some(&o) = store_owner.get(s.as_str()) {
                    union(&mut parent, o, i);
                } else {
                    store_owner.insert(s, i);
                }
            }
        }
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for i in 0..n {
            let r = find(&mut parent, i);
            match groups.iter_mut().find(|(root, _)| *root == r) {
                Some((_, v)) => v.push(i),
                None => groups.push((r, vec![i])),
            }
        }
        groups.sort_by_key(|(_, v)| v[0]);
        groups
            .into_iter()
            .enumerate()
            .map(|(id, (_, nodes))| {
                let mut source_topics = Vec::new();
                let mut sink_topics = Vec::new();
                let mut stores = BTreeSet::new();
                for &i in &nodes {
                    match &self.nodes[i].kind {
                        NodeKind::Source { topics } => source_topics.extend(topics.iter().cloned()),
                        NodeKind::Sink { topic } => {
                            if !sink_topics.contains(topic) {
                                sink_topics.push(topic.clone())
                            }
                        }
                        NodeKind::Processor => {}
                    }
                    stores.extend(self.nodes[i].stores.iter().cloned());
                }
                Subtopology {
                    id: id as u32,
                    nodes,
                    source_topics,
                    sink_topics,
                    stores: stores.into_iter().collect(),
                }
            })
            .collect()
    }

    /// Internal topics written by this topology and the partition count
    /// fixed for them, if any.
    pub(crate) fn fixed_repartition_partitions(&self, topic: &str) -> Option<usize> {
        self.repartition_partitions.get(topic).copied()
    }

    pub(crate) fn store_def(&self, name: &str) -> Option<&StoreDef> {
        self.stores.iter().find(|s| s.name == name)
    }

    /// A description of the sub-topologies, nodes, topics and stores, in the
    /// style of Kafka Streams' `TopologyDescription`.
    ///
    /// ```
    /// let mut t = kstreams_runtime::Topology::new();
    /// t.add_source("src", &["in"], kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).unwrap();
    /// assert!(t.describe().to_string().contains("Source: src (topics: [in])"));
    /// ```
    pub fn describe(&self) -> TopologyDescription {
        describe::describe(self)
    }
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}
