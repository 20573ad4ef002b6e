//! The Processor API end to end through the test driver: custom processors,
//! stores, punctuators, named children, sub-topologies, error policies.

use std::time::Duration;

use kstreams_runtime::*;

/// Counts words per key in a store; emits the running count; on a
/// wall-clock punctuation emits a "tick" record to the child "ticks".
struct Counter;
impl Processor<String, String, String, u64> for Counter {
    fn init(&mut self, ctx: &mut ProcessorContext<String, u64>) -> Result<()> {
        ctx.schedule(Duration::from_secs(10), PunctuationType::WallClockTime);
        Ok(())
    }
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<String, u64>,
    ) -> Result<()> {
        let store = ctx.key_value_store::<String, u64>("counts")?;
        let n = store.get(&r.key)?.unwrap_or(0) + 1;
        store.put(&r.key, &n)?;
        let meta = ctx.record_metadata().expect("metadata while processing");
        assert_eq!(meta.topic, "words");
        ctx.forward_to("out", Record::new(r.key, n, r.timestamp))
    }
    fn punctuate(
        &mut self,
        _id: PunctuatorId,
        ts: i64,
        ctx: &mut ProcessorContext<String, u64>,
    ) -> Result<()> {
        assert!(ctx.record_metadata().is_none());
        let total = ctx
            .key_value_store::<String, u64>("counts")?
            .all()?
            .iter()
            .map(|(_, v)| v)
            .sum();
        ctx.forward_to("ticks", Record::new(format!("tick@{ts}"), total, ts))
    }
}

fn topology() -> Topology {
    let mut t = Topology::new();
    t.add_source("words-src", &["words"], Serdes::string(), Serdes::string())
        .unwrap();
    t.add_processor::<String, String, String, u64, _, _>("counter", || Counter, &["words-src"])
        .unwrap();
    t.add_state_store(
        StoreBuilder::key_value("counts", Serdes::string(), Serdes::u64_text()),
        &["counter"],
    )
    .unwrap();
    t.add_sink(
        "out",
        "counts-out",
        Serdes::string(),
        Serdes::u64_text(),
        &["counter"],
    )
    .unwrap();
    t.add_sink(
        "ticks",
        "ticks-out",
        Serdes::string(),
        Serdes::u64_text(),
        &["counter"],
    )
    .unwrap();
    t
}

#[test]
fn processor_with_store_named_children_and_wall_clock_punctuation() {
    let mut d = TopologyTestDriver::new(topology()).unwrap();
    d.pipe_str("words", Some("a"), "x", 5).unwrap();
    d.pipe_str("words", Some("b"), "x", 6).unwrap();
    d.pipe_str("words", Some("a"), "x", 7).unwrap();
    let out = d
        .read_output_as("counts-out", &Serdes::string(), &Serdes::u64_text())
        .unwrap();
    assert_eq!(out, vec![("a".into(), 1), ("b".into(), 1), ("a".into(), 2)]);
    assert!(d.read_output("ticks-out").is_empty());
    d.advance_wall_clock(Duration::from_secs(10)).unwrap();
    let ticks = d
        .read_output_as("ticks-out", &Serdes::string(), &Serdes::u64_text())
        .unwrap();
    assert_eq!(ticks, vec![("tick@10000".into(), 3)]);
    // Store contents and its changelog (one record per key per commit).
    assert_eq!(
        d.key_value_store_all::<String, u64>("counts").unwrap(),
        vec![("a".into(), 2), ("b".into(), 1)]
    );
    let cl: Vec<(String, String)> = d
        .all_records("test-app-counts-changelog")
        .iter()
        .map(|r| {
            (
                r.key_str().unwrap().to_string(),
                r.value_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        cl,
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "1".into()),
            ("a".into(), "2".into())
        ]
    );
}

#[test]
fn describe_shows_nodes_topics_and_stores() {
    let text = topology().describe().to_string();
    let expected = "Topologies:
   Sub-topology: 0
    Source: words-src (topics: [words])
      --> counter
      <-- none
    Processor: counter (stores: [counts])
      --> out, ticks
      <-- words-src
    Sink: out (topic: counts-out)
      <-- counter
    Sink: ticks (topic: ticks-out)
      <-- counter

";
    assert_eq!(text, expected);
}

struct Upper;
impl Processor<String, String, String, String> for Upper {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<String, String>,
    ) -> Result<()> {
        let v = r.value.to_uppercase();
        ctx.forward(r.with_value(v))
    }
}

#[test]
fn repartition_topic_splits_subtopologies_and_records_flow_through_it() {
    let mut t = Topology::new();
    t.add_source("src", &["in"], Serdes::string(), Serdes::string())
        .unwrap();
    t.add_internal_sink(
        "to-rep",
        "upper-repartition",
        None,
        Serdes::string(),
        Serdes::string(),
        &["src"],
    )
    .unwrap();
    t.add_internal_source(
        "from-rep",
        "upper-repartition",
        Serdes::string(),
        Serdes::string(),
    )
    .unwrap();
    t.add_processor::<String, String, String, String, _, _>("upper", || Upper, &["from-rep"])
        .unwrap();
    t.add_sink("out", "out", Serdes::string(), Serdes::string(), &["upper"])
        .unwrap();
    let subs = t.subtopologies();
    assert_eq!(subs.len(), 2);
    assert_eq!(
        subs[1].source_topics[0].resolve("app"),
        "app-upper-repartition"
    );
    let mut d = TopologyTestDriver::builder(t)
        .application_id("app")
        .build()
        .unwrap();
    d.pipe_str("in", Some("k"), "hello", 1).unwrap();
    assert_eq!(
        d.all_records("app-upper-repartition")[0].value_str(),
        Some("hello")
    );
    assert_eq!(d.read_output("out")[0].value_str(), Some("HELLO"));
}

#[test]
fn deserialization_errors_follow_the_policy() {
    let mk = || {
        let mut t = Topology::new();
        t.add_source("src", &["in"], Serdes::string(), Serdes::i64_be())
            .unwrap();
        t.add_sink("out", "out", Serdes::string(), Serdes::i64_be(), &["src"])
            .unwrap();
        t
    };
    let mut d = TopologyTestDriver::new(mk()).unwrap();
    d.pipe_input("in", Some(b"k"), Some(&[1, 2, 3]), 0).unwrap();
    d.pipe_input("in", Some(b"k"), Some(&7i64.to_be_bytes()), 0)
        .unwrap();
    assert_eq!(d.skipped_records(), 1);
    assert_eq!(
        d.read_output_as("out", &Serdes::string(), &Serdes::i64_be())
            .unwrap(),
        vec![("k".into(), 7)]
    );

    let mut d = TopologyTestDriver::builder(mk())
        .deserialization_policy(DeserializationErrorPolicy::LogAndFail)
        .build()
        .unwrap();
    d.pipe_input("in", Some(b"k"), Some(&7i64.to_be_bytes()), 0)
        .unwrap();
    let err = d
        .pipe_input("in", Some(&[0xff]), Some(&[1]), 0)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot deserialize the record at in-0 offset 1: string: invalid UTF-8: invalid utf-8 sequence of 1 bytes from index 0"
    );
}

#[test]
fn topology_errors_are_clear() {
    let mut t = Topology::new();
    t.add_source("src", &["in"], Serdes::string(), Serdes::string())
        .unwrap();
    let e = t
        .add_sink("out", "o", Serdes::string(), Serdes::string(), &["missing"])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid topology: node 'out': parent 'missing' does not exist (add parents first)"
    );
    let e = t
        .add_source("src2", &["in"], Serdes::string(), Serdes::string())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("topic 'in' is already read by source 'src'")
    );
    let e = t
        .add_state_store(
            StoreBuilder::key_value("bad name", Serdes::string(), Serdes::string()),
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains("store name 'bad name' is not valid"));
    // A processor asking for a store it is not connected to.
    struct Sneaky;
    impl Processor<String, String, String, String> for Sneaky {
        fn init(&mut self, ctx: &mut ProcessorContext<String, String>) -> Result<()> {
            ctx.key_value_store::<String, String>("other").map(|_| ())
        }
        fn process(
            &mut self,
            _: Record<String, String>,
            _: &mut ProcessorContext<String, String>,
        ) -> Result<()> {
            Ok(())
        }
    }
    t.add_processor::<String, String, String, String, _, _>("sneaky", || Sneaky, &["src"])
        .unwrap();
    t.add_state_store(
        StoreBuilder::key_value("other", Serdes::string(), Serdes::string()),
        &[],
    )
    .unwrap();
    let e = TopologyTestDriver::new(t).err().unwrap();
    assert!(
        e.to_string()
            .contains("state store 'other' is not connected to this processor"),
        "{e}"
    );
}

struct Picky;
impl Processor<String, String, String, String> for Picky {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<String, String>,
    ) -> Result<()> {
        match r.value.as_str() {
            "panic" => panic!("user closure exploded"),
            "error" => Err(StreamsError::processing(
                "picky",
                "value 'error' is not allowed",
            )),
            _ => ctx.forward(r),
        }
    }
}

fn picky_topology() -> Topology {
    let mut t = Topology::new();
    t.add_source("src", &["in"], Serdes::string(), Serdes::string())
        .unwrap();
    t.add_processor::<String, String, String, String, _, _>("picky", || Picky, &["src"])
        .unwrap();
    t.add_sink("out", "out", Serdes::string(), Serdes::string(), &["picky"])
        .unwrap();
    t
}

#[test]
fn processing_errors_and_panics_fail_by_default_naming_the_record() {
    let mut d = TopologyTestDriver::new(picky_topology()).unwrap();
    d.pipe_str("in", Some("k"), "ok", 0).unwrap();
    let err = d.pipe_str("in", Some("k"), "panic", 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "processing the record at in-0 offset 1 failed: processing failed in node '<panic>': a processor panicked: user closure exploded"
    );
    let err = d.pipe_str("in", Some("k"), "error", 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "processing the record at in-0 offset 2 failed: processing failed in node 'picky': value 'error' is not allowed"
    );
}

#[test]
fn processing_errors_can_be_skipped_or_dead_lettered_with_headers() {
    let mut d = TopologyTestDriver::builder(picky_topology())
        .processing_policy(ErrorPolicy::LogAndContinue)
        .build()
        .unwrap();
    for v in ["a", "panic", "b", "error", "c"] {
        d.pipe_str("in", Some("k"), v, 0).unwrap();
    }
    assert_eq!(d.processing_errors(), 2);
    let values: Vec<String> = d
        .read_output("out")
        .iter()
        .map(|r| r.value_str().unwrap().to_string())
        .collect();
    assert_eq!(values, ["a", "b", "c"]);

    let mut d = TopologyTestDriver::builder(picky_topology())
        .application_id("app")
        .processing_policy(ErrorPolicy::DeadLetter("in-dlq".into()))
        .deserialization_policy(ErrorPolicy::DeadLetter("in-dlq".into()))
        .build()
        .unwrap();
    d.pipe_str("in", Some("k1"), "a", 0).unwrap();
    d.pipe_str("in", Some("k2"), "error", 7).unwrap();
    d.pipe_input("in", Some(b"k3"), Some(&[0xc3, 0x28]), 8)
        .unwrap();
    d.pipe_str("in", Some("k4"), "b", 9).unwrap();
    assert_eq!(d.dead_lettered_records(), 2);
    let dlq = d.read_output("in-dlq");
    assert_eq!(dlq.len(), 2);
    assert_eq!(
        (dlq[0].key_str(), dlq[0].value_str(), dlq[0].timestamp),
        (Some("k2"), Some("error"), 7)
    );
    let h = &dlq[0].headers;
    assert_eq!(h.get(dlq_headers::TOPIC), Some(&b"in"[..]));
    assert_eq!(h.get(dlq_headers::PARTITION), Some(&b"0"[..]));
    assert_eq!(h.get(dlq_headers::OFFSET), Some(&b"1"[..]));
    assert_eq!(h.get(dlq_headers::APPLICATION_ID), Some(&b"app"[..]));
    assert!(
        String::from_utf8_lossy(h.get(dlq_headers::EXCEPTION).unwrap())
            .contains("value 'error' is not allowed")
    );
    // The undeserializable record keeps its exact original bytes.
    assert_eq!(dlq[1].value.as_deref(), Some(&[0xc3, 0x28][..]));
    assert_eq!(dlq[1].headers.get(dlq_headers::OFFSET), Some(&b"2"[..]));
    assert!(
        String::from_utf8_lossy(dlq[1].headers.get(dlq_headers::EXCEPTION).unwrap())
            .contains("invalid UTF-8")
    );
    let values: Vec<String> = d
        .read_output("out")
        .iter()
        .map(|r| r.value_str().unwrap().to_string())
        .collect();
    assert_eq!(values, ["a", "b"]);
}
