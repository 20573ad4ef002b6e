//! `describe()`: the topology as text, in the layout of Kafka Streams'
//! `TopologyDescription`, so people who know that output can read ours.

use std::fmt;

use super::{NodeKind, Topology};

/// One node of a [`TopologyDescription`].
///
/// ```
/// let mut t = kstreams_runtime::Topology::new();
/// t.add_source("src", &["in"], kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).unwrap();
/// let d = t.describe();
/// assert_eq!(d.subtopologies[0].nodes[0].kind, "Source");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDescription {
    /// `Source`, `Processor` or `Sink`.
    pub kind: &'static str,
    /// The node's name.
    pub name: String,
    /// Topics read (source) or written (sink), resolved when an application id is known.
    pub topics: Vec<String>,
    /// Stores used (processors).
    pub stores: Vec<String>,
    /// Children.
    pub successors: Vec<String>,
    /// Parents.
    pub predecessors: Vec<String>,
}

/// One sub-topology of a [`TopologyDescription`].
///
/// ```
/// let t = kstreams_runtime::Topology::new();
/// assert!(t.describe().subtopologies.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubtopologyDescription {
    /// The sub-topology id.
    pub id: u32,
    /// Its nodes, parents before children.
    pub nodes: Vec<NodeDescription>,
}

/// A printable description of a topology (see [`Topology::describe`]).
///
/// ```
/// let mut t = kstreams_runtime::Topology::new();
/// t.add_source("src", &["in"], kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).unwrap();
/// t.add_sink("out", "copy", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string(), &["src"]).unwrap();
/// let text = t.describe().to_string();
/// assert!(text.contains("Sink: out (topic: copy)"));
/// assert!(text.contains("<-- src"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyDescription {
    /// The sub-topologies.
    pub subtopologies: Vec<SubtopologyDescription>,
}

pub(super) fn describe(t: &Topology) -> TopologyDescription {
    let subtopologies = t
        .subtopologies()
        .into_iter()
        .map(|s| SubtopologyDescription {
            id: s.id,
            nodes: s
                .nodes
                .iter()
                .map(|&i| {
                    let n = &t.nodes[i];
                    let (kind, topics) = match &n.kind {
                        NodeKind::Source { topics } => {
                            ("Source", topics.iter().map(|t| t.name.clone()).collect())
                        }
                        NodeKind::Processor => ("Processor", vec![]),
                        NodeKind::Sink { topic } => ("Sink", vec![topic.name.clone()]),
                    };
                    NodeDescription {
                        kind,
                        name: n.name.clone(),
                        topics,
                        stores: n.stores.iter().cloned().collect(),
                        successors: n
                            .children
                            .iter()
                            .map(|&c| t.nodes[c].name.clone())
                            .collect(),
                        predecessors: n.parents.iter().map(|&p| t.nodes[p].name.clone()).collect(),
                    }
                })
                .collect(),
        })
        .collect();
    TopologyDescription { subtopologies }
}

impl fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Topologies:")?;
        for s in &self.subtopologies {
            writeln!(f, "   Sub-topology: {}", s.id)?;
            for n in &s.nodes {
                match n.kind {
                    "Source" => writeln!(
                        f,
                        "    Source: {} (topics: [{}])",
                        n.name,
                        n.topics.join(", ")
                    )?,
                    "Sink" => writeln!(f, "    Sink: {} (topic: {})", n.name, n.topics.join(", "))?,
                    _ => writeln!(
                        f,
                        "    Processor: {} (stores: [{}])",
                        n.name,
                        n.stores.join(", ")
                    )?,
                }
                if !n.successors.is_empty() {
                    writeln!(f, "      --> {}", n.successors.join(", "))?;
                } else if n.kind != "Sink" {
                    writeln!(f, "      --> none")?;
                }
                if !n.predecessors.is_empty() {
                    writeln!(f, "      <-- {}", n.predecessors.join(", "))?;
                } else {
                    writeln!(f, "      <-- none")?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl TopologyDescription {
    /// The topology as a Mermaid flowchart: one box per sub-topology, topics
    /// as stadium nodes, stores as cylinders.
    ///
    /// ```
    /// let mut t = kstreams_runtime::Topology::new();
    /// t.add_source("src", &["in"], kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).unwrap();
    /// t.add_sink("out", "copy", kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string(), &["src"]).unwrap();
    /// let m = t.describe().to_mermaid();
    /// assert!(m.starts_with("flowchart LR"));
    /// assert!(m.contains("topic_in([in]) --> n0_src"));
    /// ```
    pub fn to_mermaid(&self) -> String {
        fn id(s: &str) -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        }
        let mut out = String::from("flowchart LR\n");
        let mut topics = std::collections::BTreeSet::new();
        let mut stores = std::collections::BTreeSet::new();
        for s in &self.subtopologies {
            out.push_str(&format!(
                "  subgraph sub{}[\"Sub-topology {}\"]\n",
                s.id, s.id
            ));
            for n in &s.nodes {
                out.push_str(&format!(
                    "    n{}_{}[\"{}: {}\"]\n",
                    s.id,
                    id(&n.name),
                    n.kind,
                    n.name
                ));
            }
            out.push_str("  end\n");
        }
        for s in &self.subtopologies {
            for n in &s.nodes {
                let me = format!("n{}_{}", s.id, id(&n.name));
                for c in &n.successors {
                    out.push_str(&format!("  {me} --> n{}_{}\n", s.id, id(c)));
                }
                for t in &n.topics {
                    let tid = format!("topic_{}", id(t));
                    if n.kind == "Source" {
                        out.push_str(&format!("  {tid}([{t}]) --> {me}\n"));
                    } else {
                        out.push_str(&format!("  {me} --> {tid}([{t}])\n"));
                    }
                    topics.insert(tid);
                }
                for st in &n.stores {
                    let sid = format!("store_{}", id(st));
                    out.push_str(&format!("  {me} -.- {sid}[({st})]\n"));
                    stores.insert(sid);
                }
            }
        }
        out
    }
}
