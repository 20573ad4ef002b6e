//! Interactive queries: read a running application's state stores over HTTP.
//!
//! Served on the `metrics.listen` listener (see `http.rs`):
//! - `GET /stores/<store>/<key>`: the key's committed value;
//! - `GET /stores/<store>?prefix=<p>&limit=<n>` or
//!   `GET /stores/<store>?from=<a>&to=<b>&limit=<n>`: a bounded scan of this
//!   instance's tasks of the store, in key byte order (`limit` defaults to
//!   100, at most 10000).
//!
//! Keys in the URL are percent-decoded, then read as JSON if that gives a
//! key of the store's type (`42` for an integer key, `{"id":1}` for a
//! struct), else as a string (`hello`, and `42` for a `String` key); the
//! store's key serde turns them into bytes. Keys and values are answered as JSON,
//! through the store's serdes. A store is queryable once registered with
//! [`crate::KafkaStreams::queryable_store`], which checks the types.
//!
//! **Committed values only.** Under exactly-once a task's RocksDB holds
//! exactly the committed state: the write set of the open transaction is
//! applied only after the transaction commits. Queries read RocksDB through
//! a *secondary* instance (RocksDB's read-only follower of a live database,
//! caught up with the primary before each query), never the task's write
//! set, so they never see uncommitted values and never take a lock on the
//! stream thread. The secondary of a task stays open while the task stays
//! here (suspended and resumed across rebalances); a task created anew gets
//! a new one. A task that is not active here (suspended during a
//! rebalance, or moved away) is not answered from its stale local copy.
//!
//! **Where a key lives.** The key's task is `<sub-topology>_<p>` with `p` =
//! murmur2(serialized key) mod the sub-topology's task count, which is how
//! records reach the store (Kafka's default partitioner). If that task is
//! not active here, the instance that owns it is found through the consumer
//! group and the answer is `307 Temporary Redirect`, with `Location` and a
//! JSON body naming `host` (that instance's `application.server`).
//!
//! **Sharing `application.server` through the group.** Kafka Streams puts it
//! in the member metadata of its own assignor; librdkafka cannot plug in an
//! assignor or add user data to the `range` assignor's metadata. The
//! equivalent used here: each stream thread's consumer carries it in its
//! `client.id` (`<application.id>-StreamThread-<n>-consumer@<host:port>`),
//! which the group coordinator reports for every member alongside its
//! assignment (`DescribeGroups`, `fetch_group_list`). The owner of partition
//! `p` of the sub-topology's source topics is the member whose assignment
//! holds it. This needs no extra topic and is always as fresh as the group
//! itself; during a rebalance (no settled assignment) the answer is `503`
//! with `Retry-After`.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::assignment::TopicPlan;
use super::metrics::{TaskStats, ThreadMetrics};
use crate::error::StreamsError;
use crate::partitioner::partition_for_key;
use crate::serde::SerdeRef;
use crate::topology::Topology;
use crate::{StoreKind, TaskId};

/// The most entries a scan returns.
pub const MAX_SCAN_LIMIT: usize = 10_000;

/// Turns a queryable store's keys and values between bytes and JSON.
pub(crate) trait StoreCodec: Send + Sync {
    /// The bytes of a key given as URL text: JSON if it reads as a `K`,
    /// else the text itself as a JSON string.
    fn key_bytes(&self, raw: &str) -> Result<Vec<u8>, String>;
    fn render(&self, key: &[u8], value: &[u8]) -> Result<(Value, Value), String>;
}

pub(crate) struct TypedCodec<K, V> {
    pub key: SerdeRef<K>,
    pub value: SerdeRef<V>,
    pub _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> StoreCodec for TypedCodec<K, V>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + 'static,
{
    fn key_bytes(&self, raw: &str) -> Result<Vec<u8>, String> {
        let k: K = serde_json::from_str(raw)
            .or_else(|_| serde_json::from_value(Value::String(raw.to_string())))
            .map_err(|e| {
                format!(
                    "the key '{raw}' is not a {}: {e}",
                    std::any::type_name::<K>()
                )
            })?;
        let mut out = Vec::new();
        self.key
            .serialize(&k, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
    fn render(&self, key: &[u8], value: &[u8]) -> Result<(Value, Value), String> {
        let k = self.key.deserialize(key).map_err(|e| e.to_string())?;
        let v = self.value.deserialize(value).map_err(|e| e.to_string())?;
        Ok((
            serde_json::to_value(&k).map_err(|e| e.to_string())?,
            serde_json::to_value(&v).map_err(|e| e.to_string())?,
        ))
    }
}

/// The codec of store `name` with key type `K` and value type `V`, if
/// those are the store's types.
pub(crate) fn codec_for<K, V>(topology: &Topology, name: &str) -> crate::Result<Arc<dyn StoreCodec>>
where
    K: Serialize + DeserializeOwned + 'static,
    V: Serialize + 'static,
{
    let def = topology
        .store_def(name)
        .ok_or_else(|| StreamsError::UnknownStore(name.to_string()))?;
    if def.kind != StoreKind::KeyValue {
        return Err(StreamsError::Config(format!(
            "store '{name}' is a {:?} store; only key-value stores can be queried",
            def.kind
        )));
    }
    if !def.persistent {
        return Err(StreamsError::Config(format!(
            "store '{name}' is in memory; only persistent (RocksDB) stores can be queried"
        )));
    }
    let wrong = |what: &str, ty: &str| {
        StreamsError::Config(format!(
            "store '{name}' does not hold {what}s of type {ty}; pass the store's own key and value types to queryable_store"
        ))
    };
    let key = def
        .key_serde
        .downcast_ref::<SerdeRef<K>>()
        .ok_or_else(|| wrong("key", std::any::type_name::<K>()))?
        .clone();
    let value = def
        .value_serde
        .downcast_ref::<SerdeRef<V>>()
        .ok_or_else(|| wrong("value", std::any::type_name::<V>()))?
        .clone();
    Ok(Arc::new(TypedCodec {
        key,
        value,
        _types: PhantomData,
    }))
}

/// Finds the sub-topology, task count and source topics of each registered store.
pub(crate) fn locate_stores(
    topology: &Topology,
    plan: &TopicPlan,
    codecs: &HashMap<String, Arc<dyn StoreCodec>>,
) -> crate::Result<HashMap<String, QueryableStore>> {
    let subs = topology.subtopologies();
    let mut out = HashMap::new();
    for (name, codec) in codecs {
        let sub = subs
            .iter()
            .find(|s| s.stores.contains(name))
            .ok_or_else(|| StreamsError::UnknownStore(name.clone()))?;
        let tasks = plan
            .tasks_per_subtopology
            .get(&sub.id)
            .copied()
            .unwrap_or(0);
        let mut source_topics: Vec<String> = plan
            .source_topics
            .iter()
            .filter(|(_, s)| **s == sub.id)
            .map(|(t, _)| t.clone())
            .collect();
        source_topics.sort();
        out.insert(
            name.clone(),
            QueryableStore {
                name: name.clone(),
                codec: codec.clone(),
                subtopology: sub.id,
                tasks,
                source_topics,
            },
        );
    }
    Ok(out)
}

/// A registered store and where its tasks are.
pub(crate) struct QueryableStore {
    pub name: String,
    pub codec: Arc<dyn StoreCodec>,
    pub subtopology: u32,
    pub tasks: usize,
    pub source_topics: Vec<String>,
}

/// An HTTP answer: status, JSON body, and for a redirect the location.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Value,
    pub location: Option<String>,
}

impl Answer {
    fn new(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            location: None,
        }
    }
    fn error(status: u16, msg: impl Into<String>) -> Answer {
        Answer::new(status, json!({ "error": msg.into() }))
    }
}

/// Scan bounds from the query string.
#[derive(Debug, Default)]
pub(crate) struct ScanParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub prefix: Option<String>,
    pub limit: Option<String>,
}

type SecondaryCache = HashMap<TaskId, (Arc<TaskStats>, Arc<rocksdb::DB>)>;

/// Answers queries for the registered stores of one application instance.
pub(crate) struct InteractiveQueries {
    pub application_id: String,
    pub state_dir: PathBuf,
    pub application_server: Option<String>,
    pub stores: HashMap<String, QueryableStore>,
    pub threads: Arc<Vec<Arc<ThreadMetrics>>>,
    pub base_client: ClientConfig,
    group_client: Mutex<Option<Arc<BaseConsumer<DefaultConsumerContext>>>>,
    /// `group.protocol=streams`: the coordinator's endpoint map, which
    /// replaces describing the classic group.
    pub endpoints: Option<super::streams_group::EndpointMap>,
    secondaries: Mutex<SecondaryCache>,
    secondary_root: PathBuf,
}

impl InteractiveQueries {
    pub fn new(
        application_id: String,
        state_dir: PathBuf,
        application_server: Option<String>,
        stores: HashMap<String, QueryableStore>,
        threads: Arc<Vec<Arc<ThreadMetrics>>>,
        base_client: ClientConfig,
    ) -> InteractiveQueries {
        let secondary_root = std::env::temp_dir().join(format!(
            "kstreams-iq-{}-{application_id}",
            std::process::id()
        ));
        InteractiveQueries {
            application_id,
            state_dir,
            application_server,
            stores,
            threads,
            base_client,
            group_client: Mutex::new(None),
            endpoints: None,
            secondaries: Mutex::new(HashMap::new()),
            secondary_root,
        }
    }

    fn store(&self, name: &str) -> Result<&QueryableStore, Answer> {
        self.stores.get(name).ok_or_else(|| {
            let mut known: Vec<&String> = self.stores.keys().collect();
            known.sort();
            Answer::error(
                404,
                format!(
                    "store '{name}' is not queryable here (queryable: {known:?}); register it with KafkaStreams::queryable_store"
                ),
            )
        })
    }

    /// The stats of `id` if it is an active task of this instance.
    fn local_active(&self, id: TaskId) -> Option<Arc<TaskStats>> {
        self.threads.iter().find_map(|t| {
            t.tasks()
                .into_iter()
                .find(|(tid, s)| *tid == id && s.active.load(std::sync::atomic::Ordering::Relaxed))
                .map(|(_, s)| s)
        })
    }

    fn secondary(&self, id: TaskId, stats: &Arc<TaskStats>) -> Result<Arc<rocksdb::DB>, String> {
        let mut cache = self.secondaries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, db)) = cache.get(&id)
            && Arc::ptr_eq(s, stats)
        {
            return Ok(db.clone());
        }
        let primary = self
            .state_dir
            .join(&self.application_id)
            .join(id.to_string());
        let secondary = self.secondary_root.join(id.to_string());
        std::fs::create_dir_all(&secondary)
            .map_err(|e| format!("cannot create {}: {e}", secondary.display()))?;
        let mut opts = rocksdb::Options::default();
        opts.set_max_open_files(-1);
        let cfs = rocksdb::DB::list_cf(&opts, &primary)
            .map_err(|e| format!("cannot list the stores of task {id}: {e}"))?;
        let db = rocksdb::DB::open_cf_as_secondary(&opts, &primary, &secondary, cfs)
            .map_err(|e| format!("cannot open the state of task {id} for reading: {e}"))?;
        let db = Arc::new(db);
        cache.insert(id, (stats.clone(), db.clone()));
        Ok(db)
    }

    fn read_local<T>(
        &self,
        id: TaskId,
        stats: &Arc<TaskStats>,
        f: impl FnOnce(&rocksdb::DB) -> Result<T, String>,
    ) -> Result<T, String> {
        let db = self.secondary(id, stats)?;
        db.try_catch_up_with_primary()
            .map_err(|e| format!("cannot catch up with task {id}'s state: {e}"))?;
        f(&db)
    }

    fn group_client(&self) -> Result<Arc<BaseConsumer<DefaultConsumerContext>>, String> {
        let mut c = self.group_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = &*c {
            return Ok(c.clone());
        }
        let consumer: BaseConsumer<DefaultConsumerContext> =
            super::config::consumer_client(&self.base_client)
                .create()
                .map_err(|e| format!("cannot create the group client: {e}"))?;
        let consumer = Arc::new(consumer);
        *c = Some(consumer.clone());
        Ok(consumer)
    }

    /// The `application.server` of the member that owns partition
    /// `partition` of `topics`, if the group has a settled assignment.
    fn owner(&self, topics: &[String], partition: i32) -> Result<Option<String>, String> {
        if let Some(map) = &self.endpoints {
            let map = map.lock().unwrap_or_else(|e| e.into_inner());
            return Ok(map
                .as_deref()
                .and_then(|m| super::streams_group::endpoint_owning(m, topics, partition)));
        }
        let client = self.group_client()?;
        let groups = client
            .fetch_group_list(Some(&self.application_id), Duration::from_secs(5))
            .map_err(|e| format!("cannot describe the consumer group: {e}"))?;
        for g in groups.groups() {
            if g.name() != self.application_id || g.state() != "Stable" {
                continue;
            }
            for m in g.members() {
                let Some(assignment) = m.assignment() else {
                    continue;
                };
                let owns = parse_assignment(assignment)
                    .unwrap_or_default()
                    .iter()
                    .any(|(t, ps)| topics.contains(t) && ps.contains(&partition));
                if owns {
                    return Ok(Some(
                        server_of_client_id(m.client_id())
                            .map(str::to_string)
                            .unwrap_or_default(),
                    ));
                }
            }
        }
        Ok(None)
    }

    /// `GET /stores/<store>/<key>`.
    pub fn get(&self, store: &str, raw_key: &str) -> Answer {
        let s = match self.store(store) {
            Ok(s) => s,
            Err(a) => return a,
        };
        let key_bytes = match s.codec.key_bytes(raw_key) {
            Ok(b) => b,
            Err(e) => return Answer::error(400, e),
        };
        let id = TaskId {
            subtopology: s.subtopology,
            partition: partition_for_key(&key_bytes, s.tasks),
        };
        if let Some(stats) = self.local_active(id) {
            let read = self.read_local(id, &stats, |db| {
                let cf = db
                    .cf_handle(&s.name)
                    .ok_or_else(|| format!("task {id} has no store '{}'", s.name))?;
                db.get_cf(cf, &key_bytes).map_err(|e| e.to_string())
            });
            return match read {
                Ok(Some(v)) => match s.codec.render(&key_bytes, &v) {
                    Ok((k, v)) => Answer::new(
                        200,
                        json!({ "store": s.name, "key": k, "value": v, "task": id.to_string() }),
                    ),
                    Err(e) => Answer::error(500, format!("cannot render the stored value: {e}")),
                },
                Ok(None) => Answer::new(
                    404,
                    json!({ "store": s.name, "key": raw_key, "task": id.to_string(), "error": "no such key" }),
                ),
                Err(e) => Answer::error(500, e),
            };
        }
        self.elsewhere(
            s,
            id,
            &format!("/stores/{}/{}", s.name, percent_encode(raw_key)),
        )
    }

    /// The answer for a task that is not active here.
    fn elsewhere(&self, s: &QueryableStore, id: TaskId, path: &str) -> Answer {
        match self.owner(&s.source_topics, id.partition) {
            Ok(Some(host))
                if !host.is_empty() && Some(&host) != self.application_server.as_ref() =>
            {
                Answer {
                    status: 307,
                    location: Some(format!("http://{host}{path}")),
                    body: json!({
                        "error": "the key is held by another instance",
                        "host": host,
                        "store": s.name,
                        "task": id.to_string(),
                    }),
                }
            }
            Ok(Some(host)) if host.is_empty() => Answer::error(
                503,
                format!(
                    "task {id} is owned by an instance without application.server; set application.server on every instance"
                ),
            ),
            Ok(_) => Answer {
                status: 503,
                location: None,
                body: json!({
                    "error": "the group is rebalancing; retry shortly",
                    "store": s.name,
                    "task": id.to_string(),
                }),
            },
            Err(e) => Answer::error(503, e),
        }
    }

    /// `GET /stores/<store>?from&to&prefix&limit`: this instance's part.
    pub fn scan(&self, store: &str, p: &ScanParams) -> Answer {
        let s = match self.store(store) {
            Ok(s) => s,
            Err(a) => return a,
        };
        let limit = match p.limit.as_deref().map(str::parse::<usize>) {
            None => 100,
            Some(Ok(n)) if (1..=MAX_SCAN_LIMIT).contains(&n) => n,
            Some(_) => {
                return Answer::error(400, format!("limit must be 1..={MAX_SCAN_LIMIT}"));
            }
        };
        let bytes = |v: &Option<String>| -> Result<Option<Vec<u8>>, Answer> {
            v.as_deref()
                .map(|raw| s.codec.key_bytes(raw))
                .transpose()
                .map_err(|e| Answer::error(400, e))
        };
        let (from, to, prefix) = match (bytes(&p.from), bytes(&p.to), bytes(&p.prefix)) {
            (Ok(f), Ok(t), Ok(pr)) => (f, t, pr),
            (Err(a), _, _) | (_, Err(a), _) | (_, _, Err(a)) => return a,
        };
        if prefix.is_some() && (from.is_some() || to.is_some()) {
            return Answer::error(400, "use either prefix or from/to, not both");
        }
        let start = prefix.clone().or(from);
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut tasks = Vec::new();
        for partition in 0..s.tasks as i32 {
            let id = TaskId {
                subtopology: s.subtopology,
                partition,
            };
            let Some(stats) = self.local_active(id) else {
                continue;
            };
            tasks.push(id.to_string());
            let read = self.read_local(id, &stats, |db| {
                let cf = db
                    .cf_handle(&s.name)
                    .ok_or_else(|| format!("task {id} has no store '{}'", s.name))?;
                let mode = match &start {
                    Some(b) => rocksdb::IteratorMode::From(b, rocksdb::Direction::Forward),
                    None => rocksdb::IteratorMode::Start,
                };
                let mut out = Vec::new();
                for item in db.iterator_cf(cf, mode) {
                    let (k, v) = item.map_err(|e| e.to_string())?;
                    let inside = match (&prefix, &to) {
                        (Some(pr), _) => k.starts_with(pr),
                        (None, Some(t)) => k.as_ref() <= t.as_slice(),
                        (None, None) => true,
                    };
                    if !inside || out.len() >= limit {
                        break;
                    }
                    out.push((k.into_vec(), v.into_vec()));
                }
                Ok(out)
            });
            match read {
                Ok(mut e) => entries.append(&mut e),
                Err(e) => return Answer::error(500, e),
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let truncated = entries.len() > limit;
        entries.truncate(limit);
        let mut rendered = Vec::with_capacity(entries.len());
        for (k, v) in &entries {
            match s.codec.render(k, v) {
                Ok((k, v)) => rendered.push(json!({ "key": k, "value": v })),
                Err(e) => return Answer::error(500, format!("cannot render a stored entry: {e}")),
            }
        }
        Answer::new(
            200,
            json!({
                "store": s.name,
                "entries": rendered,
                "tasks": tasks,
                "complete": tasks.len() == s.tasks,
                "truncated": truncated,
            }),
        )
    }
}

impl Drop for InteractiveQueries {
    fn drop(&mut self) {
        self.secondaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let _ = std::fs::remove_dir_all(&self.secondary_root);
    }
}

/// The `application.server` a stream thread's consumer carries in its
/// `client.id` (`...-consumer@host:port`).
///
/// ```
/// use kstreams_runtime::kafka::interactive_queries::{client_id_with_server, server_of_client_id};
/// let id = client_id_with_server("wc-StreamThread-1-consumer", Some("10.0.0.5:9464"));
/// assert_eq!(server_of_client_id(&id), Some("10.0.0.5:9464"));
/// assert_eq!(server_of_client_id("wc-StreamThread-1-consumer"), None);
/// ```
pub fn server_of_client_id(client_id: &str) -> Option<&str> {
    client_id
        .rsplit_once('@')
        .map(|(_, s)| s)
        .filter(|s| !s.is_empty())
}

/// A consumer `client.id` carrying `application.server` (see the module docs).
///
/// ```
/// use kstreams_runtime::kafka::interactive_queries::client_id_with_server;
/// assert_eq!(client_id_with_server("c", None), "c");
/// assert_eq!(client_id_with_server("c", Some("h:1")), "c@h:1");
/// ```
pub fn client_id_with_server(base: &str, server: Option<&str>) -> String {
    match server {
        Some(s) => format!("{base}@{s}"),
        None => base.to_string(),
    }
}

/// Parses a member's assignment (Kafka's ConsumerProtocol `Assignment`:
/// version, `[topic [partition]]`, user data) into topics and partitions.
fn parse_assignment(b: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = b.get(pos..pos + n)?;
        pos += n;
        Some(s)
    };
    let _version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    let topics = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let topic = String::from_utf8(take(len.max(0) as usize)?.to_vec()).ok()?;
        let n = i32::from_be_bytes(take(4)?.try_into().ok()?);
        // The count comes from the broker: never reserve more than the
        // bytes left could hold (4 per partition).
        let mut parts = Vec::with_capacity((n.max(0) as usize).min(b.len() / 4));
        for _ in 0..n.max(0) {
            parts.push(i32::from_be_bytes(take(4)?.try_into().ok()?));
        }
        out.push((topic, parts));
    }
    Some(out)
}

/// Percent-decodes a URL component (`+` stays `+`; invalid escapes are kept).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes everything but unreserved URL characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_claiming_more_partitions_than_it_holds_is_rejected() {
        let mut b = Vec::new();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.push(b't');
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        b.extend_from_slice(&7i32.to_be_bytes());
        assert_eq!(parse_assignment(&b), None);
    }

    #[test]
    fn assignment_bytes_parse() {
        let mut b = Vec::new();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&(5i16).to_be_bytes());
        b.extend_from_slice(b"lines");
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
        assert_eq!(
            parse_assignment(&b).unwrap(),
            vec![("lines".to_string(), vec![0, 2])]
        );
        assert!(parse_assignment(&b[..7]).is_none());
    }

    #[test]
    fn url_keys_round_trip() {
        assert_eq!(percent_decode("a%20b%2Fc%zz"), "a b/c%zz");
        assert_eq!(percent_decode(&percent_encode("été/ü x")), "été/ü x");
        let strings = TypedCodec::<String, u64> {
            key: crate::Serdes::string(),
            value: crate::Serdes::u64_be(),
            _types: PhantomData,
        };
        assert_eq!(strings.key_bytes("hello").unwrap(), b"hello");
        assert_eq!(strings.key_bytes("42").unwrap(), b"42");
        let numbers = TypedCodec::<i64, u64> {
            key: crate::Serdes::i64_be(),
            value: crate::Serdes::u64_be(),
            _types: PhantomData,
        };
        assert_eq!(numbers.key_bytes("256").unwrap(), 256i64.to_be_bytes());
        assert!(numbers.key_bytes("x").is_err());
        let (k, v) = strings.render(b"a", &7u64.to_be_bytes()).unwrap();
        assert_eq!((k, v), (json!("a"), json!(7)));
    }
}
