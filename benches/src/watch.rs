//! Watching a job's output `read_committed` until its final result is visible.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::data::OrderTotals;

/// The marker word of warm-up lines (never in the generated vocabulary, which has no digits).
pub const WARMUP: &str = "warmup0";

/// What "done" means for an output topic.
pub enum Expect {
    /// Word counts: every word's latest committed count equals (or, if
    /// `at_least`, reaches) the expected count.
    Counts {
        expected: HashMap<String, u64>,
        at_least: bool,
    },
    /// Order totals: every customer's latest `(orders, total_cents)` equals the expected one.
    Totals(OrderTotals),
    /// Pass-through: this many records (warm-up records not counted).
    Records(u64),
    /// Any record whose key or value is this word (warm-up probes, markers).
    Key(String),
}

/// What the watch saw.
#[derive(Debug, Default, Clone)]
pub struct Watched {
    /// When the first output record (other than warm-up) was seen.
    pub first: Option<Instant>,
    /// When the expected final result became visible.
    pub done: Option<Instant>,
    /// Output records read.
    pub records: u64,
    /// How many expected keys were satisfied at the end (progress on timeout).
    pub satisfied: usize,
    /// How many were expected.
    pub wanted: usize,
    /// End-to-end latencies (visible time − record timestamp), ms, if asked for.
    pub latencies_ms: Vec<i64>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The partition count of an existing topic.
fn partitions_of(bootstrap: &str, topic: &str) -> Result<i32, String> {
    match kstreams_testkit::partition_count(bootstrap, topic) {
        Ok(Some(n)) => Ok(n as i32),
        Ok(None) => Err(format!("topic {topic} does not exist")),
        Err(e) => Err(format!("partitions of {topic}: {e}")),
    }
}

/// A read_committed consumer assigned to every partition of `topic` from the beginning.
pub fn committed_reader(bootstrap: &str, topic: &str) -> Result<BaseConsumer, String> {
    let partitions = partitions_of(bootstrap, topic)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kstreams-bench-watch-unused")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .set("enable.partition.eof", "false")
        .set_log_level(RDKafkaLogLevel::Error)
        .create()
        .map_err(|e| format!("creating a reader of {topic}: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| format!("assigning {topic}-{p}: {e}"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assigning {topic}: {e}"))?;
    Ok(consumer)
}

/// Reads `topic` read_committed until `expect` holds, `timeout` passes, or
/// `alive()` returns false (checked twice a second). With `latency`, records
/// every output record's end-to-end latency (warm-up records excluded).
pub fn watch(
    bootstrap: &str,
    topic: &str,
    expect: &Expect,
    timeout: Duration,
    latency: bool,
    mut alive: impl FnMut() -> bool,
) -> Result<Watched, String> {
    let consumer = committed_reader(bootstrap, topic)?;
    let deadline = Instant::now() + timeout;
    let mut w = Watched::default();
    let mut counts: HashMap<String, bool> = HashMap::new();
    let mut last_alive_check = Instant::now();
    w.wanted = match expect {
        Expect::Counts { expected, .. } => expected.len(),
        Expect::Totals(t) => t.len(),
        Expect::Records(n) => *n as usize,
        Expect::Key(_) => 1,
    };
    loop {
        if w.satisfied >= w.wanted {
            w.done = Some(Instant::now());
            return Ok(w);
        }
        if Instant::now() > deadline {
            return Ok(w);
        }
        if last_alive_check.elapsed() > Duration::from_millis(500) {
            last_alive_check = Instant::now();
            if !alive() {
                return Err("the job exited before its output was complete".into());
            }
        }
        let Some(res) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = res.map_err(|e| format!("reading {topic}: {e}"))?;
        let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
        let value = m.payload().unwrap_or_default();
        let warmup = key == WARMUP || value == WARMUP.as_bytes();
        if let Expect::Key(k) = expect {
            if key == k.as_str() || value == k.as_bytes() {
                w.satisfied = 1;
                w.first.get_or_insert_with(Instant::now);
            }
            continue;
        }
        if warmup {
            continue;
        }
        w.records += 1;
        w.first.get_or_insert_with(Instant::now);
        if latency && let Some(ts) = m.timestamp().to_millis() {
            w.latencies_ms.push(now_ms() - ts);
        }
        let ok = match expect {
            Expect::Counts { expected, at_least } => {
                let Some(want) = expected.get(key.as_ref()) else {
                    continue;
                };
                let got: u64 = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if *at_least {
                    got >= *want
                } else {
                    got == *want
                }
            }
            Expect::Totals(expected) => {
                let Some(want) = expected.get(key.as_ref()) else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
                (v["orders"].as_u64(), v["total_cents"].as_i64()) == (Some(want.0), Some(want.1))
            }
            Expect::Records(_) => {
                w.satisfied += 1;
                continue;
            }
            Expect::Key(_) => unreachable!(),
        };
        let was = counts.insert(key.into_owned(), ok).unwrap_or(false);
        match (was, ok) {
            (false, true) => w.satisfied += 1,
            (true, false) => w.satisfied -= 1,
            _ => {}
        }
    }
}

/// Reads every record of `topic` read_committed (all partitions, from the
/// beginning up to the end offsets at the start); returns (records, seconds).
pub fn raw_consume(bootstrap: &str, topic: &str) -> Result<(u64, f64), String> {
    let partitions = partitions_of(bootstrap, topic)?;
    // The same fetch sizes as the kstreams restore consumer.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kstreams-bench-raw-unused")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.max.messages.kbytes", "262144")
        .set_log_level(RDKafkaLogLevel::Error)
        .create()
        .map_err(|e| format!("creating a reader of {topic}: {e}"))?;
    let started = Instant::now();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| format!("assigning {topic}-{p}: {e}"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assigning {topic}: {e}"))?;
    let mut eof = 0;
    let mut n = 0u64;
    let mut bytes = 0usize;
    while eof < partitions {
        match consumer.poll(Duration::from_secs(10)) {
            None => return Err(format!("reading {topic}: no progress for 10 s")),
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload_len();
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eof += 1,
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
        }
    }
    std::hint::black_box(bytes);
    Ok((n, started.elapsed().as_secs_f64()))
}
