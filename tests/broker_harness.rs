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

/// A transactional producer with its own `transactional.id`.
fn transactional_producer(bootstrap: &str, transactional_id: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .create()
        .expect("transactional producer")
}

/// `n0` records on partition 0 and `n1` on partition 1, values `<prefix>-<partition>-<i>`.
fn two_partition_batch(prefix: &str, n0: usize, n1: usize) -> Vec<TestRecord> {
    let side = |p: i32, n: usize| {
        (0..n).map(move |i| {
            TestRecord::kv(format!("k{i}"), format!("{prefix}-{p}-{i}")).with_partition(p)
        })
    };
    side(0, n0).chain(side(1, n1)).collect()
}

/// Polls a subscribed consumer until `n` records arrived: (partition, offset, value).
fn poll_records(consumer: &rdkafka::consumer::BaseConsumer, n: usize) -> Vec<(i32, i64, String)> {
    use rdkafka::message::Message;
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} input records consumed: {out:?}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            out.push((m.partition(), m.offset(), value));
        }
    }
    out
}

/// Inside an open transaction: writes each consumed value upper-cased to
/// `output` and adds the next offsets of the consumed records (max offset + 1
/// per partition) to the transaction, with the consumer's group metadata.
/// Returns those offsets by partition.
fn transform_in_transaction(
    producer: &BaseProducer,
    consumer: &rdkafka::consumer::BaseConsumer,
    input: &str,
    output: &str,
    records: &[(i32, i64, String)],
) -> std::collections::HashMap<i32, i64> {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Offset, TopicPartitionList};
    producer.begin_transaction().expect("begin_transaction");
    let mut next = std::collections::HashMap::new();
    for (p, o, v) in records {
        let upper = v.to_uppercase();
        producer
            .send(BaseRecord::<str, str>::to(output).payload(&upper))
            .map_err(|(e, _)| e)
            .expect("send");
        let n = next.entry(*p).or_insert(0);
        *n = (*n).max(o + 1);
    }
    producer.flush(TIMEOUT).expect("flush");
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &next {
        tpl.add_partition_offset(input, *p, Offset::Offset(*o))
            .unwrap();
    }
    let metadata = consumer.group_metadata().expect("consumer group metadata");
    producer
        .send_offsets_to_transaction(&tpl, &metadata, TIMEOUT)
        .expect("send_offsets_to_transaction");
    next
}

fn sorted_values(bootstrap: &str, topic: &str, isolation: Isolation) -> Vec<String> {
    let mut v: Vec<String> = read_to_end(bootstrap, topic, isolation)
        .unwrap()
        .iter()
        .filter_map(|r| r.value_str())
        .collect();
    v.sort();
    v
}

fn upper(records: &[(i32, i64, String)]) -> Vec<String> {
    records.iter().map(|(_, _, v)| v.to_uppercase()).collect()
}

#[test]
fn consume_transform_produce_commits_offsets_only_with_the_transaction() {
    use rdkafka::Offset;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let bootstrap = shared_broker().bootstrap_servers();
    let input = unique_name("ctp-in");
    let output = unique_name("ctp-out");
    let group = unique_name("ctp-group");
    create_topic(&bootstrap, &input, 2, false).unwrap();
    create_topic(&bootstrap, &output, 1, false).unwrap();
    let committed = || kstreams_testkit::committed_offsets(&bootstrap, &group, &input).unwrap();
    let read = |isolation| sorted_values(&bootstrap, &output, isolation);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&input]).unwrap();
    let producer = transactional_producer(&bootstrap, &unique_name("ctp-txn"));
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");

    // Transaction 1 (committed): 4 + 3 input records.
    produce(&bootstrap, &input, &two_partition_batch("a", 4, 3)).unwrap();
    let a = poll_records(&consumer, 7);
    let next = transform_in_transaction(&producer, &consumer, &input, &output, &a);
    assert_eq!(next, [(0, 4), (1, 3)].into_iter().collect());
    // Open transaction: its output is written but not visible read_committed.
    assert_eq!(read(Isolation::ReadCommitted), Vec::<String>::new());
    assert_eq!(read(Isolation::ReadUncommitted).len(), 7);
    producer.commit_transaction(TIMEOUT).expect("commit");
    assert_eq!(committed(), next, "offsets after the first commit");
    let mut want = upper(&a);
    want.sort();
    assert_eq!(read(Isolation::ReadCommitted), want);

    // Transaction 2 (aborted): 3 + 2 more input records.
    produce(&bootstrap, &input, &two_partition_batch("b", 3, 2)).unwrap();
    let b = poll_records(&consumer, 5);
    let next_b = transform_in_transaction(&producer, &consumer, &input, &output, &b);
    assert_eq!(next_b, [(0, 7), (1, 5)].into_iter().collect());
    producer.abort_transaction(TIMEOUT).expect("abort");
    assert_eq!(
        committed(),
        next,
        "an aborted transaction moved the offsets"
    );
    assert_eq!(
        read(Isolation::ReadCommitted),
        want,
        "aborted output visible"
    );
    assert_eq!(read(Isolation::ReadUncommitted).len(), 12);

    // Transaction 3 (committed): rewind to the committed offsets and process
    // the same records again.
    for (p, o) in &next {
        consumer
            .seek(&input, *p, Offset::Offset(*o), TIMEOUT)
            .expect("seek");
    }
    let again = poll_records(&consumer, 5);
    let key = |r: &[(i32, i64, String)]| {
        let mut v = r.to_vec();
        v.sort();
        v
    };
    assert_eq!(key(&again), key(&b), "reprocessed records differ");
    let next_again = transform_in_transaction(&producer, &consumer, &input, &output, &again);
    assert_eq!(
        read(Isolation::ReadCommitted),
        want,
        "output visible before commit"
    );
    producer.commit_transaction(TIMEOUT).expect("commit");
    assert_eq!(committed(), next_again);
    assert_eq!(committed(), [(0, 7), (1, 5)].into_iter().collect());
    want.extend(upper(&b));
    want.sort();
    assert_eq!(
        read(Isolation::ReadCommitted),
        want,
        "each input exactly once"
    );
    assert_eq!(read(Isolation::ReadUncommitted).len(), 17);
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    let bootstrap = shared_broker().bootstrap_servers();
    let topic = unique_name("fence");
    create_topic(&bootstrap, &topic, 1, false).unwrap();
    let transactional_id = unique_name("fence-txn");
    let send = |producer: &BaseProducer, value: &str| {
        producer
            .send(BaseRecord::<str, str>::to(&topic).payload(value))
            .map_err(|(e, _)| e)
    };

    let zombie = transactional_producer(&bootstrap, &transactional_id);
    zombie
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    zombie.begin_transaction().expect("begin_transaction");
    send(&zombie, "zombie-open").expect("send");
    zombie.flush(TIMEOUT).expect("flush");

    // The successor bumps the producer epoch; the zombie's open transaction is
    // aborted by the coordinator.
    let successor = transactional_producer(&bootstrap, &transactional_id);
    successor
        .init_transactions(TIMEOUT)
        .expect("successor init_transactions");

    // The zombie's next transactional operation fails, fatally.
    let sent = send(&zombie, "zombie-after-fence");
    let err = match sent {
        Err(e) => e,
        Ok(()) => zombie
            .commit_transaction(TIMEOUT)
            .expect_err("a fenced producer committed its transaction"),
    };
    let code = err.rdkafka_error_code();
    assert!(
        matches!(
            code,
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
            )
        ),
        "not a fencing error: {err:?} ({code:?})"
    );
    if let KafkaError::Transaction(e) = &err {
        assert!(e.is_fatal(), "fencing is not fatal: {e:?}");
    }

    // The successor works normally.
    successor.begin_transaction().expect("begin_transaction");
    send(&successor, "successor").expect("send");
    successor.commit_transaction(TIMEOUT).expect("commit");

    assert_eq!(
        sorted_values(&bootstrap, &topic, Isolation::ReadCommitted),
        ["successor"],
        "something the zombie wrote is visible read_committed"
    );
    let all = sorted_values(&bootstrap, &topic, Isolation::ReadUncommitted);
    assert!(all.contains(&"zombie-open".to_string()), "{all:?}");
}
