//! Our topology as the group coordinator wants it in the joining heartbeat.
//!
//! Sub-topology ids are our numbers as strings, so the coordinator's task
//! `("0", 3)` is our task `0_3`. Every source topic of a sub-topology is in
//! one co-partition group: a task reads partition p of all of them. Internal
//! topics carry the counts and configs start-up already chose and created
//! (`assignment.rs`), so the coordinator finds them as it would create them.

use std::collections::BTreeMap;

use super::messages::{CopartitionGroup, SubtopologyInfo, TopicInfo, TopologyInfo};
use crate::kafka::assignment::{TopicPlan, internal_topic_configs};
use crate::topology::Topology;

pub(crate) fn topology_info(
    topology: &Topology,
    plan: &TopicPlan,
    application_id: &str,
    replication_factor: Option<i32>,
    overrides: &BTreeMap<String, String>,
) -> TopologyInfo {
    let internal: BTreeMap<&str, _> = plan
        .internal_topics
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let info = |name: &str| -> TopicInfo {
        let t = internal.get(name);
        TopicInfo {
            name: name.to_string(),
            // The coordinator wants 0 for changelogs (it derives them).
            partitions: t
                .filter(|t| !t.compacted)
                .map_or(0, |t| t.partitions as i32),
            replication_factor: replication_factor.map_or(0, |r| r as i16),
            configs: t
                .map(|t| internal_topic_configs(t, overrides).into_iter().collect())
                .unwrap_or_default(),
        }
    };
    let mut subtopologies = Vec::new();
    for s in topology.subtopologies() {
        let mut out = SubtopologyInfo {
            id: s.id.to_string(),
            ..Default::default()
        };
        for t in &s.source_topics {
            let name = t.resolve(application_id);
            if t.internal {
                out.repartition_sources.push(info(&name));
            } else {
                out.source_topics.push(name);
            }
        }
        for t in s.sink_topics.iter().filter(|t| t.internal) {
            out.repartition_sinks.push(t.resolve(application_id));
        }
        for store in &s.stores {
            if let Some(topic) = topology
                .store_def(store)
                .and_then(|d| d.changelog_topic(application_id))
                && !out.changelogs.iter().any(|c| c.name == topic)
            {
                out.changelogs.push(info(&topic));
            }
        }
        if out.source_topics.len() + out.repartition_sources.len() > 1 {
            out.copartition_groups.push(CopartitionGroup {
                source_topics: (0..out.source_topics.len() as i16).collect(),
                repartition_source_topics: (0..out.repartition_sources.len() as i16).collect(),
            });
        }
        out.source_topics.sort();
        subtopologies.push(out);
    }
    TopologyInfo {
        epoch: 0,
        subtopologies,
    }
}
