//! Every compression codec a producer may use: input written with gzip,
//! snappy, lz4 and zstd (one codec per input partition, as when several
//! producers with different settings share a topic) is processed exactly
//! once by the example jobs, which themselves write compressed outputs and
//! changelogs. The broker's stored batches are read back to show that each
//! partition really holds batches of its codec.

mod support;

use std::collections::HashMap;

use kstreams_testkit::{
    Isolation, TestRecord, create_topic, produce_with, read_to_end, shared_broker,
    stored_batch_codecs, unique_name,
};
use support::*;

const CODECS: [&str; 4] = ["gzip", "snappy", "lz4", "zstd"];

/// Produces `by_partition[p]` to partition `p` with codec `CODECS[p]` and
/// checks that the broker stored only batches of that codec there.
fn produce_one_codec_per_partition(bs: &str, topic: &str, by_partition: &[Vec<TestRecord>]) {
    for (p, records) in by_partition.iter().enumerate() {
        let records: Vec<TestRecord> = records
            .iter()
            .cloned()
            .map(|r| r.with_partition(p as i32))
            .collect();
        // Several batches per partition: linger and batch size keep them small.
        for chunk in records.chunks(200) {
            produce_with(bs, topic, chunk, &[("compression.type", CODECS[p])])
                .unwrap_or_else(|e| panic!("producing with {}: {e}", CODECS[p]));
        }
        // librdkafka sends a batch uncompressed when compressing it would
        // not make it smaller (a batch of one short record, say): "none"
        // batches may appear beside the codec's, no other codec may.
        let stored = stored_batch_codecs(shared_broker().data_dir(), topic, p as i32).unwrap();
        let of_codec = stored.iter().filter(|c| **c == CODECS[p]).count();
        assert!(
            of_codec * 2 > stored.len() && stored.iter().all(|c| *c == CODECS[p] || *c == "none"),
            "partition {p} should hold {} batches (and perhaps a few uncompressed), holds {stored:?}",
            CODECS[p]
        );
    }
}

/// Drains the input, stops the job, and checks that no codec failed: outputs
/// are read only after that.
fn consume_all_then_stop(
    bs: &str,
    app: &str,
    input: &str,
    want: &[usize],
    job: &mut Job,
    metrics: &str,
) {
    wait_drained(bs, app, input, want, job, metrics);
    stop_cleanly(job);
    let log = std::fs::read_to_string(&job.log).unwrap();
    assert!(
        !log.contains("Decompression") && !log.contains("Not implemented"),
        "a codec failed:\n{}",
        job.log_tail(40)
    );
}

#[test]
fn word_count_reads_every_codec_exactly_once() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("codec-lines"),
        unique_name("codec-counts"),
        unique_name("codec-wc"),
    );
    create_topic(&bs, &input, 4, false).unwrap();
    create_topic(&bs, &output, 4, false).unwrap();
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut rng = Rng(99);
    let words = ["ash", "birch", "cedar", "douglas", "elm", "fir", "gum"];
    let by_partition: Vec<Vec<TestRecord>> = CODECS
        .iter()
        .map(|codec| {
            (0..1500)
                .map(|_| {
                    let mut line = vec![codec.to_string()];
                    for _ in 0..1 + rng.below(5) {
                        line.push(words[rng.below(words.len() as u64) as usize].to_string());
                    }
                    for w in &line {
                        *expected.entry(w.clone()).or_default() += 1;
                    }
                    TestRecord::value(line.join(" "))
                })
                .collect()
        })
        .collect();
    produce_one_codec_per_partition(&bs, &input, &by_partition);

    let work = work_dir("codecs-wc");
    // The job's own outputs and changelogs are compressed too.
    let metrics = format!("127.0.0.1:{}", free_port());
    let extra = [
        "--config",
        "compression.type=zstd",
        "--metrics-listen",
        &metrics,
    ];
    let mut job = Job::new(
        "word_count",
        "wc",
        job_args(&bs, &app, &input, &output, &work.join("state"), &extra),
        &work,
    );
    job.start();
    let sizes: Vec<usize> = by_partition.iter().map(Vec::len).collect();
    consume_all_then_stop(&bs, &app, &input, &sizes, &mut job, &metrics);

    let got = values_by_key(&bs, &output);
    for (word, n) in &expected {
        assert_eq!(
            got.get(word).and_then(|v| v.last()),
            Some(&n.to_string()),
            "count of '{word}'"
        );
    }
    assert_eq!(got.len(), expected.len(), "unexpected words: {got:?}");
}

#[test]
fn order_aggregation_reads_every_codec_exactly_once() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("codec-orders"),
        unique_name("codec-totals"),
        unique_name("codec-orders-app"),
    );
    create_topic(&bs, &input, 4, false).unwrap();
    create_topic(&bs, &output, 4, false).unwrap();
    let dlq = format!("{output}-dlq");
    create_topic(&bs, &dlq, 1, false).unwrap();
    create_topic(&bs, &format!("{output}-per-minute"), 4, false).unwrap();
    let mut rng = Rng(5);
    let mut expected: HashMap<String, (u64, i64)> = HashMap::new();
    let mut poison: Vec<String> = Vec::new();
    let mut by_partition: Vec<Vec<TestRecord>> = vec![Vec::new(); 4];
    for i in 0..4000usize {
        let p = i % 4;
        let (customer, amount) = (format!("c{}", rng.below(20)), 100 + rng.below(900) as i64);
        let id = format!("o{i}");
        let json = format!(
            r#"{{"order_id":"{id}","customer_id":"{customer}","amount_cents":{amount},"ts":{}}}"#,
            1_700_000_000_000i64 + i as i64 * 10
        );
        let e = expected.entry(customer).or_default();
        e.0 += 1;
        e.1 += amount;
        let rec = TestRecord::kv(&id, &json);
        // A resent order (the same id again) must be dropped by dedupe.
        if i % 50 == 0 {
            by_partition[p].push(rec.clone());
        }
        by_partition[p].push(rec);
        if i % 400 == 7 {
            poison.push(format!("bad{i}"));
            by_partition[p].push(TestRecord::kv(format!("bad{i}"), "{not json"));
        }
    }
    produce_one_codec_per_partition(&bs, &input, &by_partition);

    let work = work_dir("codecs-orders");
    let metrics = format!("127.0.0.1:{}", free_port());
    let extra = [
        "--config",
        "compression.type=lz4",
        "--metrics-listen",
        &metrics,
    ];
    let mut job = Job::new(
        "order_aggregation",
        "orders",
        job_args(&bs, &app, &input, &output, &work.join("state"), &extra),
        &work,
    );
    job.start();
    let sizes: Vec<usize> = by_partition.iter().map(Vec::len).collect();
    consume_all_then_stop(&bs, &app, &input, &sizes, &mut job, &metrics);

    let got = values_by_key(&bs, &output);
    for (customer, want) in &expected {
        let last: serde_json::Value =
            serde_json::from_str(got[customer].last().expect("a total")).unwrap();
        assert_eq!(
            (
                last["orders"].as_u64().unwrap(),
                last["total_cents"].as_i64().unwrap()
            ),
            *want,
            "totals of {customer}"
        );
    }
    let mut dead: Vec<String> = read_to_end(&bs, &dlq, Isolation::ReadCommitted)
        .unwrap()
        .iter()
        .filter_map(|r| r.key_str())
        .collect();
    dead.sort();
    poison.sort();
    assert_eq!(dead, poison, "each poison order in the DLQ exactly once");
}
