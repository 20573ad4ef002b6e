//! Bad input and misconfiguration against the real broker: what reaches the
//! dead-letter topic (and with which headers), what stops a job (with which
//! exit code and message), and what a production error does.
//!
//! The example binaries are the subject: their exit codes are a contract
//! (2: configuration or start-up error, 1: a fatal error while running).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kstreams::runtime::dlq_headers;
use kstreams_testkit::{
    ConsumedRecord, Isolation, TestRecord, committed_offsets, create_topic, produce, read_to_end,
    shared_broker, unique_name,
};
use support::*;

/// Runs an example binary to its end; returns its exit status and stderr.
fn run_to_exit(bin: &str, args: &[String], timeout: Duration) -> (ExitStatus, String) {
    let mut child = Command::new(example_bin(bin))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} {args:?} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn order(id: &str, customer: &str, cents: i64) -> String {
    format!(r#"{{"order_id":"{id}","customer_id":"{customer}","amount_cents":{cents},"ts":0}}"#)
}

fn rec(key: Option<&[u8]>, value: Option<&[u8]>) -> TestRecord {
    TestRecord {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        partition: Some(0),
        timestamp: None,
        headers: vec![],
    }
}

fn header(r: &ConsumedRecord, name: &str) -> String {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        .unwrap_or_else(|| panic!("header {name} missing on {r:?}"))
}

/// Last committed total per customer: (orders, total_cents).
fn totals(bs: &str, topic: &str) -> HashMap<String, (u64, i64)> {
    values_by_key(bs, topic)
        .into_iter()
        .map(|(k, v)| {
            let j: serde_json::Value = serde_json::from_str(v.last().unwrap()).unwrap();
            (
                k,
                (
                    j["orders"].as_u64().unwrap(),
                    j["total_cents"].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

struct OrderTopics {
    bs: String,
    input: String,
    output: String,
    dlq: String,
    app: String,
}

fn order_topics() -> OrderTopics {
    let bs = shared_broker().bootstrap_servers();
    let t = OrderTopics {
        input: unique_name("orders"),
        output: unique_name("totals"),
        app: unique_name("faults-app"),
        dlq: String::new(),
        bs,
    };
    let dlq = format!("{}-dlq", t.output);
    create_topic(&t.bs, &t.input, 1, false).unwrap();
    create_topic(&t.bs, &t.output, 1, false).unwrap();
    create_topic(&t.bs, &dlq, 1, false).unwrap();
    create_topic(&t.bs, &format!("{}-per-minute", t.output), 1, false).unwrap();
    OrderTopics { dlq, ..t }
}

#[test]
fn each_kind_of_bad_input_reaches_the_dlq_under_eos_with_exact_headers() {
    let t = order_topics();
    let big = order("o-big", &"c".repeat(70_000), 1);
    let too_big = format!(
        "malformed order: the order is {} bytes; at most 65536 are accepted",
        big.len()
    );
    let bad: Vec<(TestRecord, &str)> = vec![
        (
            rec(Some(b"b1"), Some(b"\xff\xfe{\"order_id\":\"b1\"}")),
            "malformed order: the order is not UTF-8 text",
        ),
        (
            rec(Some(b"b2"), Some(br#"{"order_id":"b2","customer_id":"#)),
            "malformed order: invalid order JSON: EOF while parsing",
        ),
        (
            rec(
                Some(b"b3"),
                Some(br#"{"order_id":"b3","customer_id":"c1","amount_cents":"12","ts":0}"#),
            ),
            "malformed order: invalid order JSON: invalid type: string \"12\", expected i64",
        ),
        (rec(Some(b"b4"), None), "cannot deserialize the record at"),
        (
            rec(None, Some(order("b5", "c1", 7).as_bytes())),
            "cannot deserialize the record at",
        ),
        (rec(Some(b"b6"), Some(big.as_bytes())), too_big.as_str()),
    ];
    // Good orders around each bad one.
    let mut input = Vec::new();
    let mut expected: HashMap<String, (u64, i64)> = HashMap::new();
    let mut n = 0;
    for (b, _) in &bad {
        for _ in 0..3 {
            let customer = format!("c{}", n % 4);
            let id = format!("o{n}");
            input.push(rec(
                Some(id.as_bytes()),
                Some(order(&id, &customer, 100 + n).as_bytes()),
            ));
            let e = expected.entry(customer).or_default();
            e.0 += 1;
            e.1 += 100 + n;
            n += 1;
        }
        input.push(b.clone());
    }
    produce(&t.bs, &t.input, &input).unwrap();
    // Where each bad record landed: the input is one partition.
    let landed = read_to_end(&t.bs, &t.input, Isolation::ReadUncommitted).unwrap();
    assert_eq!(landed.len(), input.len());

    let work = work_dir("faults-dlq");
    let mut job = Job::new(
        "order_aggregation",
        "orders-dlq",
        job_args(&t.bs, &t.app, &t.input, &t.output, &work.join("state"), &[]),
        &work,
    );
    job.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let dead = read_to_end(&t.bs, &t.dlq, Isolation::ReadCommitted).unwrap();
        if totals(&t.bs, &t.output) == expected && dead.len() >= bad.len() {
            assert_eq!(dead.len(), bad.len(), "{dead:?}");
            for (d, (b, why)) in dead.iter().zip(&bad) {
                let src = landed
                    .iter()
                    .find(|r| r.key == b.key && r.value == b.value)
                    .expect("bad record in the input");
                assert_eq!(d.key, b.key, "original key bytes");
                assert_eq!(d.value, b.value, "original value bytes");
                assert_eq!(header(d, dlq_headers::TOPIC), t.input);
                assert_eq!(header(d, dlq_headers::PARTITION), "0");
                assert_eq!(header(d, dlq_headers::OFFSET), src.offset.to_string());
                assert_eq!(header(d, dlq_headers::APPLICATION_ID), t.app);
                let exception = header(d, dlq_headers::EXCEPTION);
                assert!(exception.contains(why), "want '{why}' in '{exception}'");
                assert!(
                    exception.contains(&format!("{}-0 offset {}", t.input, src.offset)),
                    "{exception}"
                );
            }
            break;
        }
        assert!(job.is_running(), "job died:\n{}", job.log_tail(30));
        assert!(
            Instant::now() < deadline,
            "not done: totals {:?}, dlq {}\n{}",
            totals(&t.bs, &t.output),
            dead.len(),
            job.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(job.terminate(Duration::from_secs(60)).unwrap().success());
}

#[test]
fn log_and_fail_exits_non_zero_naming_topic_partition_and_offset() {
    let t = order_topics();
    let input = vec![
        rec(Some(b"o1"), Some(order("o1", "c1", 5).as_bytes())),
        rec(Some(b"o2"), Some(order("o2", "c1", 6).as_bytes())),
        rec(Some(b"x"), Some(b"{oops")),
        rec(Some(b"o3"), Some(order("o3", "c1", 7).as_bytes())),
    ];
    produce(&t.bs, &t.input, &input).unwrap();
    let work = work_dir("faults-fail");
    let args = job_args(
        &t.bs,
        &t.app,
        &t.input,
        &t.output,
        &work.join("state"),
        &["--config", "processing.exception.handler=log_and_fail"],
    );
    let (status, stderr) = run_to_exit("order_aggregation", &args, Duration::from_secs(90));
    assert_eq!(status.code(), Some(1), "{stderr}");
    let want = format!(
        "order_aggregation: fatal error: processing the record at {}-0 offset 2 failed",
        t.input
    );
    assert!(stderr.contains(&want), "want '{want}' in:\n{stderr}");
    assert!(
        stderr.contains("malformed order: invalid order JSON"),
        "{stderr}"
    );
    // Nothing at or after the bad record was committed: its transaction was
    // not committed, and a restart reads it again (nothing is lost).
    let committed = committed_offsets(&t.bs, &t.app, &t.input).unwrap();
    assert!(
        committed.get(&0).copied().unwrap_or(0) <= 2,
        "{committed:?}"
    );
    if let Some(c1) = totals(&t.bs, &t.output).get("c1") {
        assert!(c1.0 <= 2, "{c1:?}");
    }
    assert!(
        read_to_end(&t.bs, &t.dlq, Isolation::ReadCommitted)
            .unwrap()
            .is_empty()
    );
}

/// An output record larger than the producer's `message.max.bytes`: the
/// production handler fails the job by default, or skips the record.
#[test]
fn oversize_output_goes_through_the_production_handler() {
    // 3 kB orders are valid input, but their repartition records exceed a
    // producer limit of 2000 bytes.
    let big_customer = "k".repeat(3000);
    let input = vec![
        rec(Some(b"o1"), Some(order("o1", "c1", 5).as_bytes())),
        rec(Some(b"o2"), Some(order("o2", &big_customer, 6).as_bytes())),
        rec(Some(b"o3"), Some(order("o3", "c1", 7).as_bytes())),
    ];

    // Default: log_and_fail.
    let t = order_topics();
    produce(&t.bs, &t.input, &input).unwrap();
    let work = work_dir("faults-oversize-fail");
    let args = job_args(
        &t.bs,
        &t.app,
        &t.input,
        &t.output,
        &work.join("state"),
        &["--config", "message.max.bytes=2000"],
    );
    let (status, stderr) = run_to_exit("order_aggregation", &args, Duration::from_secs(90));
    assert_eq!(status.code(), Some(1), "{stderr}");
    let want = format!("processing the record at {}-0 offset 1 failed", t.input);
    assert!(stderr.contains(&want), "want '{want}' in:\n{stderr}");
    assert!(
        stderr.contains("larger than the producer's message.max.bytes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("production.exception.handler=log_and_continue"),
        "{stderr}"
    );

    // log_and_continue: the record is skipped, the rest is exact.
    let t = order_topics();
    produce(&t.bs, &t.input, &input).unwrap();
    let work = work_dir("faults-oversize-skip");
    let mut job = Job::new(
        "order_aggregation",
        "oversize-skip",
        job_args(
            &t.bs,
            &t.app,
            &t.input,
            &t.output,
            &work.join("state"),
            &[
                "--config",
                "message.max.bytes=2000",
                "--config",
                "production.exception.handler=log_and_continue",
            ],
        ),
        &work,
    );
    job.start();
    wait_until(Duration::from_secs(90), "c1 total", || {
        assert!(job.is_running(), "{}", job.log_tail(30));
        totals(&t.bs, &t.output).get("c1") == Some(&(2, 12))
    });
    assert!(job.terminate(Duration::from_secs(60)).unwrap().success());
    assert!(job.log_tail(200).contains("production.exception.handler"));
    assert_eq!(totals(&t.bs, &t.output).len(), 1);
}

/// Starts word_count with `extra` flags against `bs` and expects a
/// start-up failure: exit code 2 and `want` in stderr.
fn expect_startup_error(bs: &str, input: &str, state: &Path, extra: &[&str], want: &str) {
    let args = job_args(
        bs,
        &unique_name("cfg-app"),
        input,
        &unique_name("cfg-out"),
        state,
        extra,
    );
    let (status, stderr) = run_to_exit("word_count", &args, Duration::from_secs(90));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(want), "want '{want}' in:\n{stderr}");
}

#[test]
fn configuration_errors_exit_2_with_a_message_naming_the_fix() {
    let bs = shared_broker().bootstrap_servers();
    let input = unique_name("cfg-in");
    create_topic(&bs, &input, 2, false).unwrap();
    let work = work_dir("faults-config");
    let state = work.join("state");

    // Missing topic (the output topic does not exist).
    expect_startup_error(
        &bs,
        &input,
        &state,
        &[],
        "do not exist. Create them before starting the application",
    );
    // Invalid processing.guarantee.
    expect_startup_error(
        &bs,
        &input,
        &state,
        &["--processing-guarantee", "exactly-once"],
        "processing.guarantee: 'exactly-once' is not valid; use exactly_once or at_least_once",
    );
    // Invalid handler.
    expect_startup_error(
        &bs,
        &input,
        &state,
        &["--config", "processing.exception.handler=ignore"],
        "error handler 'ignore' is not valid; use log_and_continue, log_and_fail or dead_letter:<topic>",
    );
    // A state.dir that is a file.
    let file = work.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    expect_startup_error(
        &bs,
        &input,
        &file,
        &[],
        &format!("state.dir '{}' cannot be created", file.display()),
    );
    expect_startup_error(
        &bs,
        &input,
        &file,
        &[],
        "point state.dir at a writable directory",
    );
    // Unreachable broker: retried for startup.timeout.ms, then a clear error.
    expect_startup_error(
        "127.0.0.1:1",
        &input,
        &state,
        &["--config", "startup.timeout.ms=3000"],
        "startup.timeout.ms",
    );
}

#[test]
fn a_state_dir_in_use_by_another_instance_is_refused() {
    let bs = shared_broker().bootstrap_servers();
    let input = unique_name("lock-in");
    let output = unique_name("lock-out");
    create_topic(&bs, &input, 2, false).unwrap();
    create_topic(&bs, &output, 2, false).unwrap();
    let app = unique_name("lock-app");
    let work = work_dir("faults-lock");
    let state = work.join("state");
    let mut first = Job::new(
        "word_count",
        "lock-first",
        job_args(&bs, &app, &input, &output, &state, &[]),
        &work,
    );
    first.start();
    wait_until(Duration::from_secs(60), "first instance running", || {
        first.log_tail(50).contains("application is running")
    });
    let args = job_args(&bs, &app, &input, &output, &state, &[]);
    let (status, stderr) = run_to_exit("word_count", &args, Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is in use by another running instance"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", first.pid().unwrap())),
        "{stderr}"
    );
    assert!(first.is_running());
    // A kill -9 releases the lock: the next instance starts.
    first.kill9();
    let mut second = Job::new(
        "word_count",
        "lock-second",
        job_args(&bs, &app, &input, &output, &state, &[]),
        &work,
    );
    second.start();
    wait_until(Duration::from_secs(60), "second instance running", || {
        assert!(second.is_running(), "{}", second.log_tail(20));
        second.log_tail(50).contains("application is running")
    });
    assert!(second.terminate(Duration::from_secs(60)).unwrap().success());
}

/// Offsets held by a transaction that does not end (a producer sent offsets
/// for the job's group in a transaction and neither committed nor aborted
/// it: what a hanging transaction looks like to the job). A `read_committed`
/// job cannot read its committed offsets, waits `task.timeout.ms`, then
/// exits 1 naming hanging transactions and the fix; once the transaction is
/// aborted, the same job runs and counts.
#[test]
fn offsets_held_by_an_open_transaction_fail_the_job_with_the_fix_after_task_timeout() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseProducer, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("hang-in"),
        unique_name("hang-out"),
        unique_name("hang-app"),
    );
    create_topic(&bs, &input, 1, false).unwrap();
    create_topic(&bs, &output, 1, false).unwrap();
    produce(&bs, &input, &[TestRecord::kv("l1", b"open transaction")]).unwrap();

    let txn: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("transactional.id", unique_name("hang-txn"))
        .set("transaction.timeout.ms", "300000")
        .create()
        .unwrap();
    txn.init_transactions(Duration::from_secs(30)).unwrap();
    txn.begin_transaction().unwrap();
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bs)
        .set("group.id", &app)
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&input, 0, Offset::Offset(1))
        .unwrap();
    txn.send_offsets_to_transaction(
        &offsets,
        &group.group_metadata().unwrap(),
        Duration::from_secs(30),
    )
    .unwrap();

    let work = work_dir("faults-hanging");
    let args = job_args(
        &bs,
        &app,
        &input,
        &output,
        &work.join("state"),
        &["--config", "task.timeout.ms=5000"],
    );
    let (status, stderr) = run_to_exit("word_count", &args, Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "{stderr}");
    for want in [
        "cannot read the committed offsets of the assigned partitions",
        "hanging transaction",
        "kafka-transactions.sh find-hanging",
    ] {
        assert!(stderr.contains(want), "want '{want}' in:\n{stderr}");
    }
    assert!(values_by_key(&bs, &output).is_empty());

    // The fix: end the transaction. The job then starts where the group's
    // committed offsets say (none: the beginning) and counts.
    txn.abort_transaction(Duration::from_secs(30)).unwrap();
    let mut job = Job::new("word_count", "hang-after", args, &work);
    job.start();
    wait_until(Duration::from_secs(60), "the counts", || {
        let got = values_by_key(&bs, &output);
        ["open", "transaction"]
            .iter()
            .all(|w| got.get(*w).and_then(|v| v.last()).map(String::as_str) == Some("1"))
    });
}

#[test]
fn a_replication_factor_above_the_cluster_fails_start_up_and_creates_nothing() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("rf-in"),
        unique_name("rf-out"),
        unique_name("rf-app"),
    );
    create_topic(&bs, &input, 2, false).unwrap();
    create_topic(&bs, &output, 2, false).unwrap();
    let work = work_dir("faults-rf");
    let args = job_args(
        &bs,
        &app,
        &input,
        &output,
        &work.join("state"),
        &["--config", "replication.factor=3"],
    );
    let (status, stderr) = run_to_exit("word_count", &args, Duration::from_secs(90));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("replication.factor=3 is larger than the cluster, which has 1 broker(s)"),
        "{stderr}"
    );
    let prefix = format!("{app}-");
    let made: Vec<String> = kstreams_testkit::topic_names(&bs)
        .unwrap()
        .into_iter()
        .filter(|t| t.starts_with(&prefix))
        .collect();
    assert!(made.is_empty(), "internal topics were created: {made:?}");
}

#[test]
fn internal_topics_get_kafka_streams_configs_and_topic_overrides() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("tcfg-in"),
        unique_name("tcfg-out"),
        unique_name("tcfg-app"),
    );
    create_topic(&bs, &input, 2, false).unwrap();
    create_topic(&bs, &output, 2, false).unwrap();
    produce(&bs, &input, &[TestRecord::value("a b a")]).unwrap();
    let work = work_dir("faults-topic-configs");
    let mut job = Job::new(
        "word_count",
        "wc",
        job_args(
            &bs,
            &app,
            &input,
            &output,
            &work.join("state"),
            &["--config", "topic.max.message.bytes=2097152"],
        ),
        &work,
    );
    job.start();
    wait_until(Duration::from_secs(120), "a count of 'a'", || {
        values_by_key(&bs, &output).get("a").and_then(|v| v.last()) == Some(&"2".to_string())
    });
    assert!(job.terminate(Duration::from_secs(60)).unwrap().success());
    let changelog =
        kstreams_testkit::topic_config(&bs, &format!("{app}-counts-changelog")).unwrap();
    assert_eq!(changelog["cleanup.policy"], "compact");
    assert_eq!(changelog["message.timestamp.type"], "CreateTime");
    assert_eq!(changelog["max.message.bytes"], "2097152");
    let repartition =
        kstreams_testkit::topic_config(&bs, &format!("{app}-counts-repartition")).unwrap();
    assert_eq!(repartition["cleanup.policy"], "delete");
    assert_eq!(repartition["retention.ms"], "-1");
    assert_eq!(repartition["segment.bytes"], "52428800");
    assert_eq!(repartition["max.message.bytes"], "2097152");
}
