//! Operability against the real broker, through the word_count example
//! binary: the Prometheus endpoint, interactive queries, and queries sent
//! to the wrong instance of a two-instance group.
//!
//! Needs the example binaries: `cargo build --workspace --all-targets`
//! (or `cargo test --workspace`) first.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kstreams::apps::word_count::words;
use kstreams_testkit::{
    TestRecord, committed_offsets, create_topic, produce, shared_broker, unique_name,
};
use support::{
    Job, free_port, http_get, job_args, metric_sum, values_by_key, wait_until, work_dir,
};

const VOCABULARY: [&str; 12] = [
    "kafka", "stream", "table", "state", "store", "commit", "topic", "task", "query", "metric",
    "restore", "lag",
];

/// `n` lines of 1–5 words from the vocabulary, and each word's count.
fn lines(n: usize, seed: u64) -> (Vec<TestRecord>, BTreeMap<String, u64>) {
    let mut rng = support::Rng(seed);
    let mut counts = BTreeMap::new();
    let records = (0..n)
        .map(|i| {
            let line: Vec<&str> = (0..1 + rng.below(5))
                .map(|_| VOCABULARY[rng.below(VOCABULARY.len() as u64) as usize])
                .collect();
            let line = line.join(" ");
            for w in words(&line) {
                *counts.entry(w).or_default() += 1;
            }
            TestRecord::kv(format!("l{seed}-{i}"), line)
        })
        .collect();
    (records, counts)
}

fn committed_total(bs: &str, app: &str, topic: &str) -> i64 {
    committed_offsets(bs, app, topic)
        .map(|o| o.values().sum())
        .unwrap_or(0)
}

fn scrape(addr: &str) -> String {
    http_get(addr, "/metrics")
        .filter(|r| r.status == 200)
        .map(|r| r.body)
        .unwrap_or_default()
}

/// The committed count of `word`, as the last committed output record says.
fn output_count(bs: &str, topic: &str, word: &str) -> Option<u64> {
    values_by_key(bs, topic)
        .get(word)
        .and_then(|v| v.last())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_endpoint_counts_input_commits_and_restores_after_a_restart() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("op-in"),
        unique_name("op-out"),
        unique_name("op-app"),
    );
    create_topic(&bs, &input, 3, false).unwrap();
    create_topic(&bs, &output, 3, false).unwrap();
    let (records, counts) = lines(300, 7);
    let total_words: u64 = counts.values().sum();
    produce(&bs, &input, &records).unwrap();

    let dir = work_dir("metrics");
    let state = dir.join("state");
    let addr = format!("127.0.0.1:{}", free_port());
    let args = job_args(
        &bs,
        &app,
        &input,
        &output,
        &state,
        &["--metrics-listen", &addr, "--log-format", "json"],
    );
    let mut job = Job::new("word_count", "wc-metrics", args, &dir);
    job.start();

    // Per-task figures: sub-topology 0 reads the lines, sub-topology 1 the
    // partial counts from the repartition topic. The count pre-aggregates,
    // so sub-topology 1 reads at least one record per distinct word and at
    // most one per word; how many depends on the commits.
    let final_counts = || -> BTreeMap<String, u64> {
        values_by_key(&bs, &output)
            .into_iter()
            .filter_map(|(w, v)| Some((w, v.last()?.parse().ok()?)))
            .collect()
    };
    let mut text = String::new();
    let (mut sub0, mut sub1) = (None, None);
    wait_until(
        Duration::from_secs(120),
        "every line processed and every count final",
        || {
            text = scrape(&addr);
            sub0 = metric_sum(
                &text,
                "kstreams_task_records_processed_total",
                &[("task", "0_*")],
            );
            sub1 = metric_sum(
                &text,
                "kstreams_task_records_processed_total",
                &[("task", "1_*")],
            );
            // The thread and task figures are published together about once
            // a second; wait for a scrape that has caught up with all of them.
            sub0 == Some(records.len() as f64)
                && sub1.is_some_and(|n| n >= counts.len() as f64)
                && metric_sum(&text, "kstreams_records_processed_total", &[])
                    == sub1.map(|n| records.len() as f64 + n)
                && final_counts() == counts
        },
    );
    let sub1 = sub1.unwrap();
    assert!(
        sub1 <= total_words as f64,
        "{sub1} partial counts for {total_words} words:\n{text}"
    );
    assert_eq!(
        metric_sum(&text, "kstreams_records_processed_total", &[]),
        Some(records.len() as f64 + sub1),
        "thread counter = lines + partial counts:\n{text}"
    );
    assert!(
        metric_sum(&text, "kstreams_commits_total", &[]).unwrap() > 0.0,
        "{text}"
    );
    assert!(metric_sum(&text, "kstreams_commit_seconds_total", &[]).unwrap() > 0.0);
    assert!(metric_sum(&text, "kstreams_rebalances_total", &[]).unwrap() >= 1.0);
    assert_eq!(
        metric_sum(&text, "kstreams_tasks", &[]),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        metric_sum(&text, "kstreams_transaction_aborts_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        metric_sum(&text, "kstreams_restore_records_total", &[]),
        Some(0.0),
        "a fresh start restores nothing"
    );
    // Lag and store figures are published once a second.
    wait_until(Duration::from_secs(30), "lag and store figures", || {
        text = scrape(&addr);
        metric_sum(&text, "kstreams_consumer_lag", &[("topic", &input)]).is_some()
            && metric_sum(&text, "kstreams_store_entries", &[("store", "counts")])
                .is_some_and(|n| n > 0.0)
    });
    wait_until(Duration::from_secs(60), "input committed", || {
        committed_total(&bs, &app, &input) == records.len() as i64
    });
    assert_eq!(
        job.terminate(Duration::from_secs(60)).map(|s| s.success()),
        Some(true),
        "{}",
        job.log_tail(20)
    );

    // Without its state directory, the restarted job rebuilds the counts
    // from the changelog.
    std::fs::remove_dir_all(&state).unwrap();
    job.start();
    wait_until(
        Duration::from_secs(120),
        "restore figures after the restart",
        || {
            text = scrape(&addr);
            metric_sum(&text, "kstreams_restore_records_total", &[])
                .is_some_and(|n| n >= counts.len() as f64)
                && metric_sum(&text, "kstreams_restore_remaining_records", &[]) == Some(0.0)
                && metric_sum(&text, "kstreams_tasks", &[]) == Some(6.0)
        },
    );
    assert!(
        metric_sum(&text, "kstreams_restore_records_total", &[("task", "1_*")]).unwrap()
            >= counts.len() as f64,
        "every word's count comes back from the changelog:\n{text}"
    );
    assert_eq!(
        metric_sum(&text, "kstreams_restore_records_total", &[("task", "0_*")]),
        Some(0.0),
        "sub-topology 0 has no store"
    );
    assert_eq!(
        job.terminate(Duration::from_secs(60)).map(|s| s.success()),
        Some(true)
    );

    // --log-format json: every log line is a JSON object, and the restore's
    // lines carry their task and restore spans.
    let log = std::fs::read_to_string(&job.log).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let span_names = |e: &serde_json::Value| -> Vec<String> {
        e["spans"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "store restored"
                && span_names(e).ends_with(&["task".to_string(), "restore".to_string()])
                && e["span"]["task"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("1_"))),
        "a restore line with its spans:\n{}",
        job.log_tail(30)
    );
    assert!(
        events
            .iter()
            .any(|e| span_names(e).contains(&"rebalance".to_string()))
    );

    // A port in use is a start-up error that names the setting.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().to_string();
    let args = job_args(
        &bs,
        &app,
        &input,
        &output,
        &state,
        &["--metrics-listen", &busy],
    );
    let mut clash = Job::new("word_count", "wc-port-in-use", args, &dir);
    clash.start();
    let status = clash.wait(Duration::from_secs(60)).expect("exits");
    assert_eq!(status.code(), Some(2), "{}", clash.log_tail(10));
    assert!(
        clash.log_tail(10).contains(&format!(
            "metrics.listen {busy}: cannot listen: the address is in use"
        )),
        "{}",
        clash.log_tail(10)
    );
}

#[test]
fn interactive_queries_answer_committed_counts_during_and_after_a_run() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("iq-in"),
        unique_name("iq-out"),
        unique_name("iq-app"),
    );
    create_topic(&bs, &input, 3, false).unwrap();
    create_topic(&bs, &output, 3, false).unwrap();
    let dir = work_dir("iq");
    let addr = format!("127.0.0.1:{}", free_port());
    let args = job_args(
        &bs,
        &app,
        &input,
        &output,
        &dir.join("state"),
        &["--metrics-listen", &addr],
    );
    let mut job = Job::new("word_count", "wc-iq", args, &dir);
    job.start();

    let (first, first_counts) = lines(200, 11);
    produce(&bs, &input, &first).unwrap();
    wait_until(
        Duration::from_secs(120),
        "the first batch committed",
        || {
            committed_total(&bs, &app, &input) == first.len() as i64
                && first_counts
                    .iter()
                    .all(|(w, n)| output_count(&bs, &output, w) == Some(*n))
        },
    );
    // Idle and committed: the store answers exactly the committed counts.
    for (w, n) in &first_counts {
        let r = http_get(&addr, &format!("/stores/counts/{w}")).expect("listener");
        assert_eq!(r.status, 200, "{w}: {}", r.body);
        let j = r.json();
        assert_eq!(j["key"], serde_json::json!(w));
        assert_eq!(j["value"], serde_json::json!(n), "{w}");
    }
    let missing = http_get(&addr, "/stores/counts/zebra").unwrap();
    assert_eq!(missing.status, 404, "{}", missing.body);
    let unknown = http_get(&addr, "/stores/nope/x").unwrap();
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("not queryable"), "{}", unknown.body);
    let scan = http_get(&addr, "/stores/counts?prefix=st&limit=10")
        .unwrap()
        .json();
    let scanned: BTreeMap<String, u64> = scan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                e["value"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, u64> = first_counts
        .iter()
        .filter(|(w, _)| w.starts_with("st"))
        .map(|(w, n)| (w.clone(), *n))
        .collect();
    assert_eq!(scanned, expected);
    assert_eq!(scan["complete"], serde_json::json!(true));
    let range = http_get(&addr, "/stores/counts?from=state&to=table&limit=2")
        .unwrap()
        .json();
    assert_eq!(range["entries"].as_array().unwrap().len(), 2);
    assert_eq!(range["entries"][0]["key"], serde_json::json!("state"));
    assert_eq!(range["truncated"], serde_json::json!(true));

    // While the second batch is processed, every answer is a count that
    // was committed (it shows up in the committed output), and moves forward.
    // While the job runs, more input arrives in chunks. After each chunk the
    // store answers exactly the count committed so far; every answer on the
    // way is a count that was committed (it is in the committed output) and
    // counts only move forward.
    let word = "kafka";
    let mut expected = first_counts[word];
    let mut seen = vec![expected];
    for chunk in 0..4 {
        let (more, more_counts) = lines(500, 100 + chunk);
        produce(&bs, &input, &more).unwrap();
        expected += more_counts.get(word).copied().unwrap_or(0);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                std::time::Instant::now() < deadline && job.is_running(),
                "chunk {chunk}: the count did not reach {expected} (seen {seen:?}):\n{}",
                job.log_tail(20)
            );
            if let Some(r) = http_get(&addr, &format!("/stores/counts/{word}")) {
                assert_eq!(r.status, 200, "{}", r.body);
                let n = r.json()["value"].as_u64().unwrap();
                assert!(
                    n >= *seen.last().unwrap() && n <= expected,
                    "counts only move forward, up to {expected}: {seen:?} then {n}"
                );
                if n != *seen.last().unwrap() {
                    seen.push(n);
                }
                if n == expected {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let final_count = expected;
    assert!(seen.len() >= 5, "an answer per chunk at least: {seen:?}");
    let committed: Vec<u64> = values_by_key(&bs, &output)[word]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    for n in &seen {
        assert!(
            committed.contains(n),
            "answered {n}, which was never committed (committed: {committed:?})"
        );
    }
    assert_eq!(committed.last(), Some(&final_count));
    assert_eq!(
        job.terminate(Duration::from_secs(60)).map(|s| s.success()),
        Some(true)
    );
}

#[test]
fn a_query_to_the_wrong_instance_points_to_the_right_one() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("iq2-in"),
        unique_name("iq2-out"),
        unique_name("iq2-app"),
    );
    create_topic(&bs, &input, 4, false).unwrap();
    create_topic(&bs, &output, 4, false).unwrap();
    let dir = work_dir("iq2");
    let addrs = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let mut jobs: Vec<Job> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let args = job_args(
                &bs,
                &app,
                &input,
                &output,
                &dir.join(format!("state-{i}")),
                &["--metrics-listen", a, "--application-server", a],
            );
            Job::new("word_count", &format!("wc-iq2-{i}"), args, &dir)
        })
        .collect();
    for j in &mut jobs {
        j.start();
    }
    let (records, counts) = lines(400, 21);
    produce(&bs, &input, &records).unwrap();
    wait_until(
        Duration::from_secs(120),
        "input committed by the group",
        || {
            committed_total(&bs, &app, &input) == records.len() as i64
                && counts
                    .iter()
                    .all(|(w, n)| output_count(&bs, &output, w) == Some(*n))
        },
    );
    // Both members hold tasks once the group has settled.
    wait_until(
        Duration::from_secs(60),
        "both instances to hold tasks",
        || {
            addrs.iter().all(|a| {
                let t = scrape(a);
                metric_sum(&t, "kstreams_tasks", &[]).is_some_and(|n| n > 0.0)
                    && metric_sum(&t, "kstreams_rebalancing", &[]) == Some(0.0)
            })
        },
    );
    let mut redirects = HashMap::new();
    for (w, n) in &counts {
        let mut answers = Vec::new();
        wait_until(
            Duration::from_secs(30),
            "a settled answer from both",
            || {
                answers = addrs
                    .iter()
                    .map(|a| http_get(a, &format!("/stores/counts/{w}")).expect("listener"))
                    .collect();
                answers.iter().all(|r| r.status != 503)
            },
        );
        let owners: Vec<usize> = (0..2).filter(|i| answers[*i].status == 200).collect();
        assert_eq!(
            owners.len(),
            1,
            "{w}: exactly one instance holds it: {answers:?}"
        );
        let (owner, other) = (owners[0], 1 - owners[0]);
        assert_eq!(answers[owner].json()["value"], serde_json::json!(n), "{w}");
        let moved = &answers[other];
        assert_eq!(moved.status, 307, "{w}: {}", moved.body);
        assert_eq!(moved.json()["host"], serde_json::json!(addrs[owner]));
        let location = &moved.headers["location"];
        assert_eq!(
            location,
            &format!("http://{}/stores/counts/{w}", addrs[owner])
        );
        // Following the redirect gives the owner's answer.
        let path = location.trim_start_matches(&format!("http://{}", addrs[owner]));
        let followed = http_get(&addrs[owner], path).unwrap();
        assert_eq!(followed.json()["value"], serde_json::json!(n));
        *redirects.entry(owner).or_insert(0) += 1;
    }
    assert_eq!(
        redirects.len(),
        2,
        "both instances own some words: {redirects:?}"
    );
    for j in &mut jobs {
        assert_eq!(
            j.terminate(Duration::from_secs(60)).map(|s| s.success()),
            Some(true)
        );
    }
}

/// Drops some records as late, fails some into the dead-letter topic,
/// forwards the rest.
struct Judge;
impl kstreams::Processor<String, String, String, String> for Judge {
    fn process(
        &mut self,
        r: kstreams::Record<String, String>,
        ctx: &mut kstreams::ProcessorContext<String, String>,
    ) -> kstreams::Result<()> {
        match r.value.as_str() {
            "late" => {
                ctx.record_dropped("late");
                Ok(())
            }
            "dup" => {
                ctx.record_dropped("duplicate");
                Ok(())
            }
            "bad" => Err(kstreams::StreamsError::processing("judge", "a bad record")),
            _ => ctx.forward(r),
        }
    }
}

#[test]
fn dropped_late_skipped_and_dead_lettered_records_are_counted_per_task() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, dlq, app) = (
        unique_name("dr-in"),
        unique_name("dr-out"),
        unique_name("dr-dlq"),
        unique_name("dr-app"),
    );
    create_topic(&bs, &input, 2, false).unwrap();
    create_topic(&bs, &output, 2, false).unwrap();
    create_topic(&bs, &dlq, 1, false).unwrap();
    let mut t = kstreams::Topology::new();
    t.add_source(
        "src",
        &[input.as_str()],
        kstreams::Serdes::string(),
        kstreams::Serdes::string(),
    )
    .unwrap();
    t.add_processor::<String, String, String, String, _, _>("judge", || Judge, &["src"])
        .unwrap();
    t.add_sink(
        "out",
        output.as_str(),
        kstreams::Serdes::string(),
        kstreams::Serdes::string(),
        &["judge"],
    )
    .unwrap();
    // 10 late, 4 duplicates, 3 bad (dead-lettered), 2 undeserializable
    // (skipped: not UTF-8), 20 good.
    let mut records = Vec::new();
    for (value, n) in [("late", 10), ("dup", 4), ("bad", 3), ("ok", 20)] {
        for i in 0..n {
            records.push(TestRecord::kv(format!("{value}{i}"), value));
        }
    }
    for i in 0..2 {
        records.push(TestRecord::kv(format!("raw{i}"), [0xff, 0xfe]));
    }
    produce(&bs, &input, &records).unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = kstreams::StreamsConfig::builder(&app, &bs)
        .set("state.dir", &state.path().display().to_string())
        .set("metrics.listen", "127.0.0.1:0")
        .set(
            "processing.exception.handler",
            &format!("dead_letter:{dlq}"),
        )
        .set("session.timeout.ms", "6000")
        .build()
        .unwrap();
    let mut streams = kstreams::KafkaStreams::new(t, config).unwrap();
    streams.start().unwrap();
    let addr = streams.http_address().expect("listening").to_string();
    let mut text = String::new();
    wait_until(Duration::from_secs(90), "every record counted", || {
        text = scrape(&addr);
        metric_sum(&text, "kstreams_task_records_processed_total", &[])
            == Some(records.len() as f64)
    });
    let count = |name: &str, filters: &[(&str, &str)]| metric_sum(&text, name, filters);
    assert_eq!(
        count("kstreams_task_records_late_total", &[]),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        count("kstreams_task_records_dropped_total", &[("reason", "late")]),
        Some(10.0)
    );
    assert_eq!(
        count(
            "kstreams_task_records_dropped_total",
            &[("reason", "duplicate")]
        ),
        Some(4.0)
    );
    assert_eq!(
        count("kstreams_task_dead_letter_records_total", &[]),
        Some(3.0)
    );
    assert_eq!(count("kstreams_task_records_skipped_total", &[]), Some(2.0));
    assert_eq!(count("kstreams_tasks", &[]), Some(2.0));
    // The same figures through the API.
    let m = streams.metrics();
    assert_eq!(m.records_processed, records.len() as u64);
    assert_eq!(m.records_late, 10);
    assert_eq!(m.records_dropped, 14);
    assert_eq!(m.records_dead_lettered, 3);
    assert_eq!(m.restore_remaining, 0);
    assert!(m.rebalances >= 1);
    assert_eq!(m, streams.metrics_handle().snapshot());
    streams.close().unwrap();
    assert!(
        http_get(&addr, "/metrics").is_none(),
        "the listener stops with the application"
    );
    let dead = kstreams_testkit::read_to_end(&bs, &dlq, kstreams_testkit::Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(dead.len(), 3);
}
