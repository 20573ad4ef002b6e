//! Proves the testkit starts a real Kafka broker with working transactions, compacted
//! topics and durable restarts. Run: `cargo test --test broker_harness`.

use std::collections::HashSet;
use std::time::Duration;

use kstreams_testkit::{
    BrokerOptions, Isolation, KafkaBroker, TestRecord, create_topic, partition_count, produce,
    read_to_end, shared_broker, topic_config, unique_name,
};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TIMEOUT: Duration = Duration::from_secs(30);

fn values(records: &[kstreams_testkit::ConsumedRecord]) -> HashSet<String> {
    records.iter().filter_map(|r| r.value_str()).collect()
}

fn send_transaction(producer: &BaseProducer, topic: &str, prefix: &str, commit: bool) {
    producer.begin_transaction().expect("begin_transaction");
    for i in 0..6 {
        let key = format!("k{i}");
        let value = format!("{prefix}-{i}");
        producer
            .send(
                BaseRecord::to(topic)
                    .key(&key)
                    .payload(&value)
                    .partition(i % 3),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(TIMEOUT).expect("flush");
    if commit {
        producer.commit_transaction(TIMEOUT).expect("commit");
    } else {
        producer.abort_transaction(TIMEOUT).expect("abort");
    }
}

#[test]
fn transactions_are_isolated_by_read_committed() {
    let bootstrap = shared_broker().bootstrap_servers();
    let topic = unique_name("txn");
    create_topic(&bootstrap, &topic, 3, false).unwrap();
    assert_eq!(partition_count(&bootstrap, &topic).unwrap(), Some(3));

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", unique_name("txn-producer"))
        .set("enable.idempotence", "true")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    send_transaction(&producer, &topic, "committed", true);
    send_transaction(&producer, &topic, "aborted", false);

    let committed = read_to_end(&bootstrap, &topic, Isolation::ReadCommitted).unwrap();
    let all = read_to_end(&bootstrap, &topic, Isolation::ReadUncommitted).unwrap();

    let want_committed: HashSet<String> = (0..6).map(|i| format!("committed-{i}")).collect();
    let want_aborted: HashSet<String> = (0..6).map(|i| format!("aborted-{i}")).collect();
    assert_eq!(committed.len(), 6, "{committed:?}");
    assert_eq!(values(&committed), want_committed);
    assert_eq!(all.len(), 12, "{all:?}");
    assert_eq!(
        values(&all),
        want_committed.union(&want_aborted).cloned().collect()
    );
    let partitions: HashSet<i32> = committed.iter().map(|r| r.partition).collect();
    assert_eq!(partitions, HashSet::from([0, 1, 2]));
    assert!(
        committed
            .iter()
            .all(|r| r.key.is_some() && r.topic == topic)
    );
}

#[test]
fn plain_produce_round_trips_keys_headers_and_timestamps() {
    let bootstrap = shared_broker().bootstrap_servers();
    let topic = unique_name("plain");
    create_topic(&bootstrap, &topic, 1, false).unwrap();
    produce(
        &bootstrap,
        &topic,
        &[
            TestRecord::kv("a", "1")
                .with_timestamp(1_700_000_000_000)
                .with_header("h", "x"),
            TestRecord::value("line"),
            TestRecord::tombstone("a"),
        ],
    )
    .unwrap();
    let records = read_to_end(&bootstrap, &topic, Isolation::ReadCommitted).unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[0].key_str().as_deref(), Some("a"));
    assert_eq!(records[0].timestamp, Some(1_700_000_000_000));
    assert_eq!(records[0].headers, vec![("h".to_string(), b"x".to_vec())]);
    assert_eq!(records[1].key, None);
    assert_eq!(records[1].value_str().as_deref(), Some("line"));
    assert_eq!(records[2].value, None);
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

#[test]
fn compacted_topic_has_compact_cleanup_policy() {
    let bootstrap = shared_broker().bootstrap_servers();
    let topic = unique_name("changelog");
    create_topic(&bootstrap, &topic, 2, true).unwrap();
    let cfg = topic_config(&bootstrap, &topic).unwrap();
    assert_eq!(
        cfg.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    let plain = unique_name("plain");
    create_topic(&bootstrap, &plain, 1, false).unwrap();
    let cfg = topic_config(&bootstrap, &plain).unwrap();
    assert_eq!(
        cfg.get("cleanup.policy").map(String::as_str),
        Some("delete")
    );
}

#[test]
fn missing_topic_has_no_partitions() {
    let bootstrap = shared_broker().bootstrap_servers();
    assert_eq!(
        partition_count(&bootstrap, &unique_name("missing")).unwrap(),
        None
    );
}

#[test]
fn restart_with_data_dir_keeps_topics_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = KafkaBroker::start(BrokerOptions::default().with_data_dir(dir.path())).unwrap();
    let bootstrap = broker.bootstrap_servers();
    let topic = unique_name("durable");
    create_topic(&bootstrap, &topic, 2, false).unwrap();
    produce(
        &bootstrap,
        &topic,
        &[
            TestRecord::kv("a", "1").with_partition(0),
            TestRecord::kv("b", "2").with_partition(1),
        ],
    )
    .unwrap();

    // Clean stop + restart on the same port and data.
    broker.restart().unwrap();
    assert_eq!(broker.bootstrap_servers(), bootstrap);
    assert_eq!(partition_count(&bootstrap, &topic).unwrap(), Some(2));
    let records = read_to_end(&bootstrap, &topic, Isolation::ReadCommitted).unwrap();
    assert_eq!(values(&records), HashSet::from(["1".into(), "2".into()]));

    // Crash (SIGKILL) + restart: acknowledged (acks=all) records survive too.
    produce(
        &bootstrap,
        &topic,
        &[TestRecord::kv("c", "3").with_partition(0)],
    )
    .unwrap();
    broker.kill().unwrap();
    assert!(!broker.is_running());
    broker.restart().unwrap();
    let records = read_to_end(&bootstrap, &topic, Isolation::ReadCommitted).unwrap();
    assert_eq!(
        values(&records),
        HashSet::from(["1".into(), "2".into(), "3".into()])
    );

    // A fresh broker process on the same (already formatted) directory sees the data.
    drop(broker);
    let again = KafkaBroker::start(BrokerOptions::default().with_data_dir(dir.path())).unwrap();
    let records =
        read_to_end(&again.bootstrap_servers(), &topic, Isolation::ReadCommitted).unwrap();
    assert_eq!(records.len(), 3);
    assert!(
        again
            .log_path()
            .starts_with(dir.path().canonicalize().unwrap())
    );
}

#[test]
fn delete_topic_and_committed_offsets() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};

    let bootstrap = shared_broker().bootstrap_servers();
    let topic = unique_name("offsets");
    kstreams_testkit::create_topic(&bootstrap, &topic, 2, false).unwrap();
    let group = unique_name("group");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 1, Offset::Offset(0))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    let committed = kstreams_testkit::committed_offsets(&bootstrap, &group, &topic).unwrap();
    assert_eq!(committed, [(1, 0)].into_iter().collect());

    kstreams_testkit::delete_topic(&bootstrap, &topic).unwrap();
    assert_eq!(partition_count(&bootstrap, &topic).unwrap(), None);
}
