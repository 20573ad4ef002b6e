//! The Mermaid pictures of the example topologies (what `--describe-mermaid`
//! prints and the README shows), checked by structure: which sub-topology
//! reads which topic, writes which topic, and owns which store. New
//! branches (e.g. more windows in order_aggregation) may add nodes without
//! breaking these checks; losing or moving one of these parts breaks them.

use std::collections::{HashMap, HashSet};

use kstreams::apps::{order_aggregation, word_count};

/// A Mermaid flowchart as emitted by `TopologyDescription::to_mermaid`.
struct Picture {
    /// Node id → sub-topology number.
    subgraph_of: HashMap<String, u32>,
    /// Sub-topologies declared.
    subgraphs: HashSet<u32>,
    /// `a --> b` edges (ids; shapes stripped).
    flows: HashSet<(String, String)>,
    /// `node -.- store` links: node id → store names.
    stores: HashSet<(String, String)>,
}

/// `topic_x([name])` → ("topic_x", "name"); `n0_a["..."]` → ("n0_a", "");
/// `store_s[(name)]` → ("store_s", "name").
fn node(text: &str) -> (String, String) {
    let text = text.trim();
    match text.find(['[', '(']) {
        Some(i) => {
            let label = text[i..].trim_matches(|c| "[]()\"".contains(c));
            (text[..i].to_string(), label.to_string())
        }
        None => (text.to_string(), String::new()),
    }
}

fn parse(mermaid: &str) -> Picture {
    let mut p = Picture {
        subgraph_of: HashMap::new(),
        subgraphs: HashSet::new(),
        flows: HashSet::new(),
        stores: HashSet::new(),
    };
    let mut current: Option<u32> = None;
    let mut lines = mermaid.lines();
    assert_eq!(
        lines.next().map(str::trim),
        Some("flowchart LR"),
        "{mermaid}"
    );
    for line in lines {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("subgraph sub") {
            let n: u32 = rest.split('[').next().unwrap().parse().unwrap();
            p.subgraphs.insert(n);
            current = Some(n);
        } else if line == "end" {
            current = None;
        } else if let Some((a, b)) = line.split_once(" --> ") {
            let (a, al) = node(a);
            let (b, bl) = node(b);
            // Topics are named by their label.
            let a = if a.starts_with("topic_") {
                format!("topic:{al}")
            } else {
                a
            };
            let b = if b.starts_with("topic_") {
                format!("topic:{bl}")
            } else {
                b
            };
            p.flows.insert((a, b));
        } else if let Some((a, s)) = line.split_once(" -.- ") {
            let (a, _) = node(a);
            let (_, store) = node(s);
            p.stores.insert((a, store));
        } else if let Some(n) = current {
            p.subgraph_of.insert(node(line).0, n);
        }
    }
    p
}

impl Picture {
    fn sub(&self, node: &str) -> u32 {
        *self
            .subgraph_of
            .get(node)
            .unwrap_or_else(|| panic!("node {node} is in no sub-topology"))
    }
    /// Sub-topologies reading `topic`.
    fn readers(&self, topic: &str) -> HashSet<u32> {
        let t = format!("topic:{topic}");
        self.flows
            .iter()
            .filter(|(a, _)| *a == t)
            .map(|(_, b)| self.sub(b))
            .collect()
    }
    /// Sub-topologies writing `topic`.
    fn writers(&self, topic: &str) -> HashSet<u32> {
        let t = format!("topic:{topic}");
        self.flows
            .iter()
            .filter(|(_, b)| *b == t)
            .map(|(a, _)| self.sub(a))
            .collect()
    }
    /// Sub-topologies whose processors use `store`.
    fn store_owners(&self, store: &str) -> HashSet<u32> {
        self.stores
            .iter()
            .filter(|(_, s)| s == store)
            .map(|(a, _)| self.sub(a))
            .collect()
    }
}

fn set(v: &[u32]) -> HashSet<u32> {
    v.iter().copied().collect()
}

fn readme_mermaid_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .split("```mermaid\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

/// `counts-combine` (the count's pre-aggregation) in sub-topology 0, fed
/// by the flat_map and feeding the repartition sink.
fn has_word_count_combiner(p: &Picture) -> bool {
    let combine = "n0_counts_combine";
    p.subgraph_of.get(combine) == Some(&0)
        && p.flows
            .iter()
            .any(|(a, b)| b == combine && a.starts_with("n0_KSTREAM_FLATMAP_"))
        && p.flows.contains(&(
            combine.to_string(),
            "n0_counts_repartition_sink".to_string(),
        ))
}

#[test]
fn word_count_picture_has_its_subtopologies_topics_and_store() {
    let t = word_count::topology("lines", "word-counts").unwrap();
    let p = parse(&t.describe().to_mermaid());
    assert_eq!(p.subgraphs, set(&[0, 1]));
    assert_eq!(p.readers("lines"), set(&[0]));
    assert_eq!(p.writers("counts-repartition"), set(&[0]));
    assert_eq!(p.readers("counts-repartition"), set(&[1]));
    assert_eq!(p.store_owners(word_count::COUNTS_STORE), set(&[1]));
    assert_eq!(p.writers("word-counts"), set(&[1]));
    // The count's pre-aggregation sits in front of the repartition sink.
    assert!(has_word_count_combiner(&p), "{:?}", p.flows);
    // Every flow stays inside a sub-topology or goes through a topic.
    for (a, b) in &p.flows {
        if !a.starts_with("topic:") && !b.starts_with("topic:") {
            assert_eq!(p.sub(a), p.sub(b), "{a} --> {b} crosses sub-topologies");
        }
    }
}

#[test]
fn order_aggregation_picture_has_its_subtopologies_topics_and_stores() {
    let t = order_aggregation::topology(
        "orders",
        "customer-totals",
        order_aggregation::DEFAULT_DEDUPE_TTL,
    )
    .unwrap();
    let p = parse(&t.describe().to_mermaid());
    assert!(p.subgraphs.is_superset(&set(&[0, 1])), "{:?}", p.subgraphs);
    assert_eq!(p.readers("orders"), set(&[0]));
    assert_eq!(
        p.store_owners(order_aggregation::SEEN_ORDERS_STORE),
        set(&[0])
    );
    let rep = format!("{}-repartition", order_aggregation::BY_CUSTOMER);
    assert_eq!(p.writers(&rep), set(&[0]));
    assert_eq!(p.readers(&rep), set(&[1]));
    assert_eq!(
        p.store_owners(order_aggregation::CUSTOMER_TOTALS_STORE),
        set(&[1])
    );
    assert_eq!(p.writers("customer-totals"), set(&[1]));
    for (a, b) in &p.flows {
        if !a.starts_with("topic:") && !b.starts_with("topic:") {
            assert_eq!(p.sub(a), p.sub(b), "{a} --> {b} crosses sub-topologies");
        }
    }
}

#[test]
fn the_readme_shows_both_pictures() {
    let blocks: Vec<Picture> = readme_mermaid_blocks().iter().map(|b| parse(b)).collect();
    assert!(
        blocks.iter().any(|p| p.readers("lines") == set(&[0])
            && p.store_owners(word_count::COUNTS_STORE) == set(&[1])
            && p.writers("word-counts") == set(&[1])
            && has_word_count_combiner(p)),
        "the README shows the word_count diagram, with its combine node"
    );
    assert!(
        blocks.iter().any(|p| p.readers("orders") == set(&[0])
            && p.store_owners(order_aggregation::SEEN_ORDERS_STORE) == set(&[0])
            && p.store_owners(order_aggregation::CUSTOMER_TOTALS_STORE) == set(&[1])
            && p.writers("customer-totals") == set(&[1])),
        "the README shows the order_aggregation diagram"
    );
}
