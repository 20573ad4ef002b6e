//! The messages the member exchanges with the broker: `ApiVersions` (v3),
//! `FindCoordinator` (v4) and `StreamsGroupHeartbeat` (v0, KIP-1071), with
//! the request header v2 and response header v1 of flexible versions.
//!
//! Field order and types follow the message schemas in apache/kafka
//! (`clients/src/main/resources/common/message/*.json`); each struct names
//! its schema. Only what the member reads is decoded; tagged fields are
//! skipped.

use super::codec::{Reader, WireError, WireResult, Writer};

pub(crate) const API_VERSIONS: i16 = 18;
pub(crate) const FIND_COORDINATOR: i16 = 10;
pub(crate) const SASL_HANDSHAKE: i16 = 17;
pub(crate) const SASL_AUTHENTICATE: i16 = 36;
pub(crate) const STREAMS_GROUP_HEARTBEAT: i16 = 88;
pub(crate) const INCREMENTAL_ALTER_CONFIGS: i16 = 44;

/// Broker error codes the member acts on (`Errors.java`).
pub(crate) mod code {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NETWORK_EXCEPTION: i16 = 13;
}

/// Kafka's name of an error code, for messages.
pub(crate) fn error_name(code: i16) -> &'static str {
    match code {
        0 => "NONE",
        7 => "REQUEST_TIMED_OUT",
        13 => "NETWORK_EXCEPTION",
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        25 => "UNKNOWN_MEMBER_ID",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        30 => "GROUP_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        35 => "UNSUPPORTED_VERSION",
        42 => "INVALID_REQUEST",
        58 => "SASL_AUTHENTICATION_FAILED",
        69 => "GROUP_ID_NOT_FOUND",
        81 => "GROUP_MAX_SIZE_REACHED",
        110 => "FENCED_MEMBER_EPOCH",
        111 => "UNRELEASED_INSTANCE_ID",
        113 => "STALE_MEMBER_EPOCH",
        130 => "STREAMS_INVALID_TOPOLOGY",
        131 => "STREAMS_INVALID_TOPOLOGY_EPOCH",
        132 => "STREAMS_TOPOLOGY_FENCED",
        _ => "UNKNOWN_ERROR_CODE",
    }
}

/// Request header v2 (flexible requests) or v1 (`flexible == false`).
pub(crate) fn request_header(
    w: &mut Writer,
    api_key: i16,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    flexible: bool,
) {
    w.i16(api_key);
    w.i16(version);
    w.i32(correlation_id);
    w.legacy_nullable_string(Some(client_id));
    if flexible {
        w.no_tags();
    }
}

/// `ApiVersionsRequest` v3.
pub(crate) fn api_versions_request(w: &mut Writer) {
    w.compact_string("kstreams");
    w.compact_string(env!("CARGO_PKG_VERSION"));
    w.no_tags();
}

/// `ApiVersionsResponse` v3 (its header is v0: no tagged fields).
/// An API a broker offers: (key, min version, max version).
pub(crate) type ApiRange = (i16, i16, i16);

/// Returns the error code and the APIs.
pub(crate) fn api_versions_response(r: &mut Reader<'_>) -> WireResult<(i16, Vec<ApiRange>)> {
    let error = r.i16()?;
    let n = r.compact_array_len()?.unwrap_or(0);
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        let k = r.i16()?;
        let min = r.i16()?;
        let max = r.i16()?;
        r.skip_tags()?;
        keys.push((k, min, max));
    }
    Ok((error, keys))
}

/// `FindCoordinatorRequest` v4 for one group.
pub(crate) fn find_coordinator_request(w: &mut Writer, group: &str) {
    w.i8(0); // key type: group
    w.compact_array_len(Some(1));
    w.compact_string(group);
    w.no_tags();
}

/// The coordinator `FindCoordinatorResponse` v4 names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Coordinator {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub error: i16,
    pub message: Option<String>,
}

pub(crate) fn find_coordinator_response(r: &mut Reader<'_>) -> WireResult<Coordinator> {
    let _throttle = r.i32()?;
    let n = r.compact_array_len()?.unwrap_or(0);
    let mut first = None;
    for _ in 0..n {
        let _key = r.compact_string()?;
        let c = Coordinator {
            node_id: r.i32()?,
            host: r.compact_string()?,
            port: r.i32()?,
            error: r.i16()?,
            message: r.compact_nullable_string()?,
        };
        r.skip_tags()?;
        first.get_or_insert(c);
    }
    r.skip_tags()?;
    first.ok_or_else(|| WireError("FindCoordinator answered no coordinator".into()))
}

/// `IncrementalAlterConfigsRequest` v1: SET `configs` on group `group`.
pub(crate) fn alter_group_configs_request(
    w: &mut Writer,
    group: &str,
    configs: &[(String, String)],
) {
    w.compact_array_len(Some(1));
    w.i8(32); // resource type: GROUP
    w.compact_string(group);
    w.compact_array_len(Some(configs.len()));
    for (k, v) in configs {
        w.compact_string(k);
        w.i8(0); // SET
        w.compact_nullable_string(Some(v));
        w.no_tags();
    }
    w.no_tags();
    w.bool(false); // validate only
    w.no_tags();
}

/// `IncrementalAlterConfigsResponse` v1: the first resource's error.
pub(crate) fn alter_configs_response(r: &mut Reader<'_>) -> WireResult<(i16, Option<String>)> {
    let _throttle = r.i32()?;
    let n = r.compact_array_len()?.unwrap_or(0);
    let mut first = (0, None);
    for i in 0..n {
        let code = r.i16()?;
        let message = r.compact_nullable_string()?;
        let _type = r.i8()?;
        let _name = r.compact_string()?;
        r.skip_tags()?;
        if i == 0 {
            first = (code, message);
        }
    }
    r.skip_tags()?;
    Ok(first)
}

/// A set of tasks of one sub-topology (`TaskIds`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskIds {
    pub subtopology: String,
    pub partitions: Vec<i32>,
}

/// An internal topic of the topology (`TopicInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicInfo {
    pub name: String,
    /// 0: not enforced (always 0 for changelogs).
    pub partitions: i32,
    /// 0: the broker's default.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// Indices into a sub-topology's topic lists (`CopartitionGroup`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CopartitionGroup {
    pub source_topics: Vec<i16>,
    pub repartition_source_topics: Vec<i16>,
}

/// One sub-topology as the broker sees it (`Subtopology`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SubtopologyInfo {
    pub id: String,
    /// User source topics (not repartition topics).
    pub source_topics: Vec<String>,
    pub changelogs: Vec<TopicInfo>,
    pub repartition_sinks: Vec<String>,
    pub repartition_sources: Vec<TopicInfo>,
    pub copartition_groups: Vec<CopartitionGroup>,
}

/// The topology sent when joining (`Topology`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TopologyInfo {
    pub epoch: i32,
    pub subtopologies: Vec<SubtopologyInfo>,
}

/// A host and port for interactive queries (`Endpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// `StreamsGroupHeartbeatRequest` v0. `None` fields are sent as null,
/// which means "unchanged since the last heartbeat".
#[derive(Debug, Clone, Default)]
pub(crate) struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    /// 0 to join, -1 to leave.
    pub member_epoch: i32,
    pub endpoint_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    pub topology: Option<TopologyInfo>,
    pub active: Option<Vec<TaskIds>>,
    pub standby: Option<Vec<TaskIds>>,
    pub warmup: Option<Vec<TaskIds>>,
    pub process_id: Option<String>,
    pub user_endpoint: Option<Endpoint>,
    /// (sub-topology, partition, offset): changelog offsets of the tasks
    /// this member holds state for.
    pub task_offsets: Option<Vec<(String, i32, i64)>>,
    pub task_end_offsets: Option<Vec<(String, i32, i64)>>,
}

fn strings(w: &mut Writer, v: &[String]) {
    w.compact_array_len(Some(v.len()));
    for s in v {
        w.compact_string(s);
    }
}

fn i16s(w: &mut Writer, v: &[i16]) {
    w.compact_array_len(Some(v.len()));
    for &x in v {
        w.i16(x);
    }
}

fn topic_infos(w: &mut Writer, v: &[TopicInfo]) {
    w.compact_array_len(Some(v.len()));
    for t in v {
        w.compact_string(&t.name);
        w.i32(t.partitions);
        w.i16(t.replication_factor);
        w.compact_array_len(Some(t.configs.len()));
        for (k, v) in &t.configs {
            w.compact_string(k);
            w.compact_string(v);
            w.no_tags();
        }
        w.no_tags();
    }
}

fn task_ids(w: &mut Writer, v: Option<&[TaskIds]>) {
    w.compact_array_len(v.map(<[TaskIds]>::len));
    for t in v.unwrap_or_default() {
        w.compact_string(&t.subtopology);
        w.compact_array_len(Some(t.partitions.len()));
        for &p in &t.partitions {
            w.i32(p);
        }
        w.no_tags();
    }
}

fn task_offsets(w: &mut Writer, v: Option<&[(String, i32, i64)]>) {
    w.compact_array_len(v.map(<[_]>::len));
    for (s, p, o) in v.unwrap_or_default() {
        w.compact_string(s);
        w.i32(*p);
        w.buf.extend_from_slice(&o.to_be_bytes());
        w.no_tags();
    }
}

impl HeartbeatRequest {
    pub fn encode(&self, w: &mut Writer) {
        w.compact_string(&self.group_id);
        w.compact_string(&self.member_id);
        w.i32(self.member_epoch);
        w.i32(self.endpoint_epoch);
        w.compact_nullable_string(self.instance_id.as_deref());
        w.compact_nullable_string(self.rack_id.as_deref());
        w.i32(self.rebalance_timeout_ms);
        match &self.topology {
            None => w.i8(-1),
            Some(t) => {
                // A nullable struct: 1 = present.
                w.i8(1);
                w.i32(t.epoch);
                w.compact_array_len(Some(t.subtopologies.len()));
                for s in &t.subtopologies {
                    w.compact_string(&s.id);
                    strings(w, &s.source_topics);
                    strings(w, &[]); // source topic regexes
                    topic_infos(w, &s.changelogs);
                    strings(w, &s.repartition_sinks);
                    topic_infos(w, &s.repartition_sources);
                    w.compact_array_len(Some(s.copartition_groups.len()));
                    for g in &s.copartition_groups {
                        i16s(w, &g.source_topics);
                        i16s(w, &[]);
                        i16s(w, &g.repartition_source_topics);
                        w.no_tags();
                    }
                    w.no_tags();
                }
                w.no_tags();
            }
        }
        task_ids(w, self.active.as_deref());
        task_ids(w, self.standby.as_deref());
        task_ids(w, self.warmup.as_deref());
        w.compact_nullable_string(self.process_id.as_deref());
        match &self.user_endpoint {
            None => w.i8(-1),
            Some(e) => {
                w.i8(1);
                w.compact_string(&e.host);
                w.u16(e.port);
                w.no_tags();
            }
        }
        w.compact_array_len(None); // client tags
        task_offsets(w, self.task_offsets.as_deref());
        task_offsets(w, self.task_end_offsets.as_deref());
        w.bool(false); // shutdown application
        w.no_tags();
    }
}

/// A group status the coordinator reports (`Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// 0 stale topology, 1 missing source topics, 2 incorrectly
    /// partitioned topics, 3 missing internal topics, 4 shutdown requested.
    pub code: i8,
    pub detail: String,
}

/// Which endpoint materializes which partitions (`EndpointToPartitions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointPartitions {
    pub endpoint: Endpoint,
    pub active: Vec<(String, Vec<i32>)>,
    pub standby: Vec<(String, Vec<i32>)>,
}

/// `StreamsGroupHeartbeatResponse` v0.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct HeartbeatResponse {
    pub error: i16,
    pub message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    pub acceptable_recovery_lag: i32,
    pub task_offset_interval_ms: i32,
    pub status: Option<Vec<Status>>,
    pub active: Option<Vec<TaskIds>>,
    pub standby: Option<Vec<TaskIds>>,
    pub warmup: Option<Vec<TaskIds>>,
    /// The epoch of the group's endpoint information; the member sends it
    /// back, and gets `endpoints` again only when it changed.
    pub endpoint_epoch: i32,
    pub endpoints: Option<Vec<EndpointPartitions>>,
}

fn read_task_ids(r: &mut Reader<'_>) -> WireResult<Option<Vec<TaskIds>>> {
    let Some(n) = r.compact_array_len()? else {
        return Ok(None);
    };
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let subtopology = r.compact_string()?;
        let partitions = r.compact_i32s()?;
        r.skip_tags()?;
        v.push(TaskIds {
            subtopology,
            partitions,
        });
    }
    Ok(Some(v))
}

fn read_endpoint(r: &mut Reader<'_>) -> WireResult<Endpoint> {
    let e = Endpoint {
        host: r.compact_string()?,
        port: r.u16()?,
    };
    r.skip_tags()?;
    Ok(e)
}

fn read_topic_partitions(r: &mut Reader<'_>) -> WireResult<Vec<(String, Vec<i32>)>> {
    let n = r.compact_array_len()?.unwrap_or(0);
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let topic = r.compact_string()?;
        let parts = r.compact_i32s()?;
        r.skip_tags()?;
        v.push((topic, parts));
    }
    Ok(v)
}

impl HeartbeatResponse {
    pub fn decode(r: &mut Reader<'_>) -> WireResult<HeartbeatResponse> {
        let _throttle = r.i32()?;
        let mut out = HeartbeatResponse {
            error: r.i16()?,
            message: r.compact_nullable_string()?,
            member_id: r.compact_string()?,
            member_epoch: r.i32()?,
            heartbeat_interval_ms: r.i32()?,
            acceptable_recovery_lag: r.i32()?,
            task_offset_interval_ms: r.i32()?,
            ..Default::default()
        };
        if let Some(n) = r.compact_array_len()? {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let code = r.i8()?;
                let detail = r.compact_string()?;
                r.skip_tags()?;
                v.push(Status { code, detail });
            }
            out.status = Some(v);
        }
        out.active = read_task_ids(r)?;
        out.standby = read_task_ids(r)?;
        out.warmup = read_task_ids(r)?;
        out.endpoint_epoch = r.i32()?;
        if let Some(n) = r.compact_array_len()? {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let endpoint = read_endpoint(r)?;
                let active = read_topic_partitions(r)?;
                let standby = read_topic_partitions(r)?;
                r.skip_tags()?;
                v.push(EndpointPartitions {
                    endpoint,
                    active,
                    standby,
                });
            }
            out.endpoints = Some(v);
        }
        r.skip_tags()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_request_encodes_its_topology_field_by_field() {
        let req = HeartbeatRequest {
            group_id: "g".into(),
            member_id: "m".into(),
            member_epoch: 0,
            rebalance_timeout_ms: 300,
            topology: Some(TopologyInfo {
                epoch: 0,
                subtopologies: vec![SubtopologyInfo {
                    id: "0".into(),
                    source_topics: vec!["in".into()],
                    ..Default::default()
                }],
            }),
            active: Some(vec![]),
            standby: Some(vec![]),
            warmup: Some(vec![]),
            process_id: Some("p".into()),
            ..Default::default()
        };
        let mut w = Writer::default();
        req.encode(&mut w);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            2, b'g', 2, b'm', 0, 0, 0, 0, /* endpoint epoch */ 0, 0, 0, 0,
            0, 0, /* rebalance timeout */ 0, 0, 1, 44,
            1, /* topology epoch */ 0, 0, 0, 0, /* 1 subtopology */ 2,
            2, b'0', 2, 3, b'i', b'n', /* regexes, changelogs, sinks, sources, groups */ 1, 1, 1, 1, 1,
            /* subtopology tags */ 0,
            /* topology tags */ 0,
            1, 1, 1, /* process id */ 2, b'p', /* endpoint */ 0xff, /* client tags */ 0,
            0, 0, /* shutdown */ 0, /* tags */ 0,
        ];
        assert_eq!(w.buf, expected);
    }

    #[test]
    fn a_response_with_an_assignment_and_endpoints_decodes() {
        let mut w = Writer::default();
        w.i32(0); // throttle
        w.i16(0);
        w.compact_nullable_string(None);
        w.compact_string("m");
        w.i32(3);
        w.i32(5000);
        w.i32(10_000);
        w.i32(60_000);
        w.compact_array_len(Some(1));
        w.i8(3);
        w.compact_string("missing internal topics");
        w.no_tags();
        // active: 0 -> [1, 2]
        w.compact_array_len(Some(1));
        w.compact_string("0");
        w.compact_array_len(Some(2));
        w.i32(1);
        w.i32(2);
        w.no_tags();
        w.compact_array_len(Some(0)); // standby
        w.compact_array_len(None); // warm-up
        w.i32(7); // endpoint epoch
        w.compact_array_len(Some(1));
        w.compact_string("h");
        w.u16(8080);
        w.no_tags();
        w.compact_array_len(Some(1));
        w.compact_string("in");
        w.compact_array_len(Some(1));
        w.i32(1);
        w.no_tags();
        w.compact_array_len(Some(0));
        w.no_tags();
        // A tagged field the member does not know is skipped.
        w.uvarint(1);
        w.uvarint(7);
        w.uvarint(2);
        w.buf.extend_from_slice(&[9, 9]);
        let got = HeartbeatResponse::decode(&mut Reader::new(&w.buf)).unwrap();
        assert_eq!(got.member_epoch, 3);
        assert_eq!(got.heartbeat_interval_ms, 5000);
        assert_eq!(got.status.as_ref().unwrap()[0].code, 3);
        assert_eq!(
            got.active,
            Some(vec![TaskIds {
                subtopology: "0".into(),
                partitions: vec![1, 2]
            }])
        );
        assert_eq!(got.standby, Some(vec![]));
        assert_eq!(got.warmup, None);
        assert_eq!(got.endpoint_epoch, 7);
        let e = &got.endpoints.unwrap()[0];
        assert_eq!(e.endpoint.port, 8080);
        assert_eq!(e.active, vec![("in".to_string(), vec![1])]);
        // Every prefix of the frame is an error, never a panic.
        for cut in 0..w.buf.len() - 1 {
            assert!(HeartbeatResponse::decode(&mut Reader::new(&w.buf[..cut])).is_err());
        }
    }
}
