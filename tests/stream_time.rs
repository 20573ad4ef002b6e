//! Stream time survives a crash: it is committed with the input offsets
//! (in their metadata, as Kafka Streams does) and read back when a task
//! starts. The dedupe TTL of order_aggregation runs on stream time, so a
//! re-sent order that arrives after a kill -9 is judged by the stream time
//! the job had reached, not by a clock that starts again from nothing.

mod support;

use std::time::Duration;

use kstreams_testkit::{
    TestRecord, committed_offsets, create_topic, produce, shared_broker, unique_name,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};
use support::*;

const T0: i64 = 1_700_000_000_000;

fn order(id: &str, customer: &str, ts: i64) -> TestRecord {
    TestRecord::kv(
        id,
        format!(r#"{{"order_id":"{id}","customer_id":"{customer}","amount_cents":100,"ts":{ts}}}"#),
    )
    .with_timestamp(ts)
}

/// The metadata the group committed with `topic`'s partition 0.
fn committed_metadata(bs: &str, group: &str, topic: &str) -> String {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()[0].metadata().to_string()
}

#[test]
fn a_resent_order_after_a_kill_is_judged_by_the_committed_stream_time() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("st-orders"),
        unique_name("st-totals"),
        unique_name("st-app"),
    );
    create_topic(&bs, &input, 1, false).unwrap();
    create_topic(&bs, &output, 1, false).unwrap();
    create_topic(&bs, &format!("{output}-dlq"), 1, false).unwrap();
    let work = work_dir("stream-time");
    let metrics = format!("127.0.0.1:{}", free_port());
    let args = job_args(
        &bs,
        &app,
        &input,
        &output,
        &work.join("state"),
        &[
            "--dedupe-ttl-ms",
            "10000",
            "--per-minute",
            "false",
            "--metrics-listen",
            &metrics,
        ],
    );
    // o1 at T0; then o2 twenty seconds of event time later: stream time
    // passes o1's TTL (10 s).
    produce(
        &bs,
        &input,
        &[order("o1", "c1", T0), order("o2", "c2", T0 + 20_000)],
    )
    .unwrap();
    let mut job = Job::new("order_aggregation", "st-1", args.clone(), &work);
    job.start();
    wait_drained(&bs, &app, &input, &[2], &mut job, &metrics);
    assert_eq!(scrape_sum(&metrics, "kstreams_tasks"), Some(2.0));
    // The partition time went into the commit, in Kafka Streams' format.
    let meta = committed_metadata(&bs, &app, &input);
    assert_eq!(
        meta, "AQAAAYvP5bYg",
        "committed metadata {meta:?} (version 1, T0 + 20 s)"
    );
    job.kill9();
    assert!(!job.is_running());

    // o1 again, re-sent with an older timestamp (T0 + 5 s). Stream time is
    // T0 + 20 s, so its TTL has passed: it counts as a new order. With a
    // stream time restarted from nothing it would be T0 + 5 s, inside the
    // TTL, and the order would be dropped as a duplicate.
    produce(&bs, &input, &[order("o1", "c1", T0 + 5_000)]).unwrap();
    let mut job = Job::new("order_aggregation", "st-2", args, &work);
    job.start();
    wait_drained(&bs, &app, &input, &[3], &mut job, &metrics);
    stop_cleanly(&mut job);
    assert_eq!(
        committed_offsets(&bs, &app, &input).unwrap().get(&0),
        Some(&3)
    );

    let got = values_by_key(&bs, &output);
    let orders = |c: &str| -> u64 {
        let last: serde_json::Value =
            serde_json::from_str(got[c].last().expect("a total")).unwrap();
        last["orders"].as_u64().unwrap()
    };
    assert_eq!(orders("c2"), 1);
    assert_eq!(
        orders("c1"),
        2,
        "the re-sent order past its TTL in stream time must count: {:?}",
        got.get("c1")
    );
}
