//! The Kafka runtime against a real broker, in-process: exactly-once output,
//! committed offsets, changelogs, restore, and start-up errors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kstreams::runtime::{
    KafkaStreams, Processor, ProcessorContext, Record, Result, Serdes, StoreBuilder, StreamsConfig,
    StreamsState, Topology,
};
use kstreams_testkit::{
    Isolation, TestRecord, committed_offsets, create_topic, produce, read_to_end, shared_broker,
    unique_name,
};

/// Counts values per key (Processor API), through a repartition topic keyed by value.
struct Rekey;
impl Processor<String, String, String, String> for Rekey {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<String, String>,
    ) -> Result<()> {
        let v = r.value.clone();
        ctx.forward(r.with_key(v))
    }
}
struct Count;
impl Processor<String, String, String, u64> for Count {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<String, u64>,
    ) -> Result<()> {
        let s = ctx.key_value_store::<String, u64>("value-counts")?;
        let n = s.get(&r.key)?.unwrap_or(0) + 1;
        s.put(&r.key, &n)?;
        ctx.forward(Record::new(r.key, n, r.timestamp))
    }
}

fn topology(input: &str, output: &str) -> Topology {
    let mut t = Topology::new();
    t.add_source("src", &[input], Serdes::string(), Serdes::string())
        .unwrap();
    t.add_processor::<String, String, String, String, _, _>("rekey", || Rekey, &["src"])
        .unwrap();
    t.add_internal_sink(
        "to-rep",
        "by-value-repartition",
        None,
        Serdes::string(),
        Serdes::string(),
        &["rekey"],
    )
    .unwrap();
    t.add_internal_source(
        "from-rep",
        "by-value-repartition",
        Serdes::string(),
        Serdes::string(),
    )
    .unwrap();
    t.add_processor::<String, String, String, u64, _, _>("count", || Count, &["from-rep"])
        .unwrap();
    t.add_state_store(
        StoreBuilder::key_value("value-counts", Serdes::string(), Serdes::u64_text()),
        &["count"],
    )
    .unwrap();
    t.add_sink(
        "out",
        output,
        Serdes::string(),
        Serdes::u64_text(),
        &["count"],
    )
    .unwrap();
    t
}

fn config(app: &str, bootstrap: &str, state: &std::path::Path, guarantee: &str) -> StreamsConfig {
    config_threads(app, bootstrap, state, guarantee, 1)
}

fn config_threads(
    app: &str,
    bootstrap: &str,
    state: &std::path::Path,
    guarantee: &str,
    threads: usize,
) -> StreamsConfig {
    StreamsConfig::builder(app, bootstrap)
        .set("num.stream.threads", &threads.to_string())
        .set("processing.guarantee", guarantee)
        .set("state.dir", &state.display().to_string())
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        // A kstreams key (internal topics), not a client setting.
        .set("replication.factor", "1")
        .set("repartition.purge.interval.ms", "200")
        .set(
            "commit.interval.ms",
            if guarantee == "exactly_once" {
                "100"
            } else {
                "500"
            },
        )
        .build()
        .unwrap()
}

fn wait_committed(bootstrap: &str, app: &str, topic: &str, total: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // A busy broker can time out an offset fetch: that is "not yet".
        let sum: i64 = match committed_offsets(bootstrap, app, topic) {
            Ok(offsets) => offsets.values().sum(),
            Err(e) => {
                eprintln!("fetching committed offsets failed (retrying): {e}");
                -1
            }
        };
        if sum >= total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {sum} of {total} offsets of {topic} committed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the low watermark of some partition of `topic` moved past 0.
fn wait_until_purged(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lows: Vec<i64> = (0..partitions)
            .map(|p| {
                c.fetch_watermarks(topic, p, Duration::from_secs(5))
                    .map(|(low, _)| low)
                    .unwrap_or(0)
            })
            .collect();
        if lows.iter().any(|l| *l > 0) {
            return;
        }
        assert!(Instant::now() < deadline, "{topic} never purged: {lows:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn latest(bootstrap: &str, topic: &str) -> HashMap<String, Vec<u64>> {
    let mut m: HashMap<String, Vec<u64>> = HashMap::new();
    for r in read_to_end(bootstrap, topic, Isolation::ReadCommitted).unwrap() {
        m.entry(r.key_str().unwrap())
            .or_default()
            .push(r.value_str().unwrap().parse().unwrap());
    }
    m
}

fn run_case(guarantee: &str, threads: usize) {
    let broker = shared_broker();
    let bs = broker.bootstrap_servers();
    let input = unique_name("in");
    let output = unique_name("out");
    let app = unique_name("app");
    create_topic(&bs, &input, 3, false).unwrap();
    create_topic(&bs, &output, 3, false).unwrap();
    let state = tempfile::tempdir().unwrap();
    let colors = ["red", "green", "blue", "cyan", "magenta"];
    let records: Vec<TestRecord> = (0..300)
        .map(|i| TestRecord::kv(format!("k{i}"), colors[i % 5]))
        .collect();
    produce(&bs, &input, &records).unwrap();

    let mut streams = KafkaStreams::new(
        topology(&input, &output),
        config_threads(&app, &bs, state.path(), guarantee, threads),
    )
    .unwrap();
    streams.start().unwrap();
    let plan = streams.topic_plan().unwrap().clone();
    assert_eq!(
        plan.tasks_per_subtopology
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![3, 3]
    );
    let rep = format!("{app}-by-value-repartition");
    let changelog = format!("{app}-value-counts-changelog");
    assert_eq!(
        kstreams_testkit::partition_count(&bs, &rep).unwrap(),
        Some(3)
    );
    assert_eq!(
        kstreams_testkit::partition_count(&bs, &changelog).unwrap(),
        Some(3)
    );
    assert_eq!(
        kstreams_testkit::topic_config(&bs, &changelog)
            .unwrap()
            .get("cleanup.policy")
            .map(String::as_str),
        Some("compact")
    );
    assert_eq!(
        kstreams_testkit::topic_config(&bs, &rep)
            .unwrap()
            .get("retention.ms")
            .map(String::as_str),
        Some("-1"),
        "repartition topics keep records until they are consumed"
    );
    wait_committed(&bs, &app, &input, 300);
    wait_committed(&bs, &app, &rep, 300);
    // Consumed repartition records are deleted (the low watermark moves).
    wait_until_purged(&bs, &rep, 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while streams.state() != StreamsState::Running && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(streams.state(), StreamsState::Running);
    streams.close().unwrap();
    assert_eq!(streams.state(), StreamsState::Stopped);

    let out = latest(&bs, &output);
    for c in colors {
        let values = &out[c];
        assert_eq!(*values.last().unwrap(), 60, "{c}: {values:?}");
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "{c} not strictly increasing: {values:?}"
        );
    }
    // The changelog holds the final counts.
    let mut cl: HashMap<String, u64> = HashMap::new();
    for r in read_to_end(&bs, &changelog, Isolation::ReadCommitted).unwrap() {
        cl.insert(
            r.key_str().unwrap(),
            r.value_str().unwrap().parse().unwrap(),
        );
    }
    assert_eq!(cl.len(), 5);
    assert!(cl.values().all(|v| *v == 60));

    // Restart with the state directory deleted: state comes back from the
    // changelog, and new input continues the counts.
    drop(state);
    let state2 = tempfile::tempdir().unwrap();
    let more: Vec<TestRecord> = (0..50)
        .map(|i| TestRecord::kv(format!("m{i}"), colors[i % 5]))
        .collect();
    produce(&bs, &input, &more).unwrap();
    let mut streams = KafkaStreams::new(
        topology(&input, &output),
        config(&app, &bs, state2.path(), guarantee),
    )
    .unwrap();
    streams.start().unwrap();
    wait_committed(&bs, &app, &input, 350);
    wait_committed(&bs, &app, &rep, 350);
    std::thread::sleep(Duration::from_millis(500));
    let m = streams.metrics();
    streams.close().unwrap();
    assert!(m.records_restored >= 5, "restored {}", m.records_restored);
    assert!(m.commits > 0);
    let out = latest(&bs, &output);
    for c in colors {
        assert_eq!(*out[c].last().unwrap(), 70, "{c}: {:?}", out[c]);
    }
}

#[test]
fn exactly_once_counts_through_a_repartition_topic_and_restores_lost_state() {
    run_case("exactly_once", 1);
}

#[test]
fn exactly_once_with_two_stream_threads_in_one_process() {
    run_case("exactly_once", 2);
}

#[test]
fn at_least_once_counts_through_a_repartition_topic() {
    run_case("at_least_once", 1);
}

#[test]
fn missing_input_topic_is_a_clear_startup_error() {
    let bs = shared_broker().bootstrap_servers();
    let state = tempfile::tempdir().unwrap();
    let missing = unique_name("missing");
    let output = unique_name("out");
    create_topic(&bs, &output, 1, false).unwrap();
    let mut s = KafkaStreams::new(
        topology(&missing, &output),
        config(&unique_name("app"), &bs, state.path(), "exactly_once"),
    )
    .unwrap();
    let err = s.start().unwrap_err().to_string();
    assert!(
        err.contains(&format!("topic(s) '{missing}' do not exist")),
        "{err}"
    );
    assert!(err.contains("kafka-topics.sh --create"), "{err}");
}

#[test]
fn co_partitioning_mismatch_is_a_clear_startup_error() {
    let bs = shared_broker().bootstrap_servers();
    let (a, b, out) = (unique_name("a"), unique_name("b"), unique_name("out"));
    create_topic(&bs, &a, 2, false).unwrap();
    create_topic(&bs, &b, 3, false).unwrap();
    create_topic(&bs, &out, 1, false).unwrap();
    let mut t = Topology::new();
    t.add_source("src", &[&a, &b], Serdes::string(), Serdes::string())
        .unwrap();
    t.add_sink("sink", &out, Serdes::string(), Serdes::string(), &["src"])
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut s = KafkaStreams::new(
        t,
        config(&unique_name("app"), &bs, state.path(), "exactly_once"),
    )
    .unwrap();
    let err = s.start().unwrap_err().to_string();
    assert!(err.contains("co-partitioning mismatch"), "{err}");
    assert!(
        err.contains(&format!("'{a}' has 2")) && err.contains(&format!("'{b}' has 3")),
        "{err}"
    );
}

#[test]
fn unreachable_broker_fails_after_the_startup_timeout() {
    let state = tempfile::tempdir().unwrap();
    let cfg = StreamsConfig::builder("app-unreachable", "127.0.0.1:1")
        .set("state.dir", &state.path().display().to_string())
        .set("startup.timeout.ms", "2000")
        .build()
        .unwrap();
    let mut s = KafkaStreams::new(topology("in", "out"), cfg).unwrap();
    let started = Instant::now();
    let err = s.start().unwrap_err().to_string();
    assert!(err.contains("cannot reach Kafka at 127.0.0.1:1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A join side that is repartitioned (orders re-keyed by customer) is
/// co-partitioned with the table it joins, whatever the orders topic's own
/// partition count: the repartition topic takes the table's count.
#[test]
fn a_repartitioned_join_side_takes_the_partition_count_of_the_table() {
    use kstreams::apps::order_enrichment;
    let bs = shared_broker().bootstrap_servers();
    let (orders, customers, out) = (
        unique_name("orders"),
        unique_name("customers"),
        unique_name("enriched"),
    );
    create_topic(&bs, &orders, 2, false).unwrap();
    create_topic(&bs, &customers, 3, true).unwrap();
    create_topic(&bs, &out, 2, false).unwrap();
    let n_customers = 30;
    let customer_recs: Vec<TestRecord> = (0..n_customers)
        .map(|i| {
            TestRecord::kv(
                format!("c{i}"),
                format!(
                    r#"{{"customer_id":"c{i}","name":"name-{i}","tier":"t{}"}}"#,
                    i % 3
                ),
            )
        })
        .collect();
    produce(&bs, &customers, &customer_recs).unwrap();
    let app = unique_name("enrich-app");
    let state = tempfile::tempdir().unwrap();
    let mut s = KafkaStreams::new(
        order_enrichment::topology(&orders, &customers, &out).unwrap(),
        config(&app, &bs, state.path(), "exactly_once"),
    )
    .unwrap();
    s.start().unwrap();
    let repartition = format!("{app}-{}-repartition", order_enrichment::BY_CUSTOMER);
    assert_eq!(
        kstreams_testkit::partition_count(&bs, &repartition).unwrap(),
        Some(3),
        "the repartition topic must match the customers topic"
    );
    // Orders only after the table is loaded (its offsets committed), so
    // every lookup finds its customer.
    wait_committed(&bs, &app, &customers, n_customers as i64);
    let order_recs: Vec<TestRecord> = (0..120)
        .map(|i| {
            let c = i % n_customers;
            TestRecord::kv(
                format!("o{i}"),
                format!(r#"{{"order_id":"o{i}","customer_id":"c{c}","amount_cents":{i},"ts":0}}"#),
            )
        })
        .collect();
    produce(&bs, &orders, &order_recs).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = read_to_end(&bs, &out, Isolation::ReadCommitted).unwrap();
        if got.len() >= order_recs.len() {
            assert_eq!(got.len(), order_recs.len());
            for r in &got {
                let v: serde_json::Value =
                    serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
                let c = v["customer_id"].as_str().unwrap().to_string();
                assert_eq!(
                    v["customer_name"].as_str(),
                    Some(format!("name-{}", &c[1..]).as_str()),
                    "order joined with the wrong or no customer: {v}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} enriched orders",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    s.close().unwrap();
}
