//! A task's producer fenced while its instance still owns the task. This is
//! what a broker failure does to a job on a real cluster: the transaction
//! coordinator moves, and the new coordinator aborts the open transaction
//! as timed out and bumps the producer epoch. Here the fence is made
//! directly, and made the same way every run: the test itself calls
//! `init_transactions` with two tasks' `transactional.id`s while the job
//! runs. The job must re-create those tasks in place, without a rebalance,
//! and its output must stay exact.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kstreams_testkit::{TestRecord, create_topic, produce, shared_broker, unique_name};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use support::*;

const WORDS: [&str; 5] = ["oak", "pine", "yew", "larch", "alder"];

/// `n` lines over `partitions` partitions; their words are added to `expected`.
fn lines(
    rng: &mut Rng,
    n: usize,
    partitions: usize,
    expected: &mut HashMap<String, u64>,
    per_partition: &mut [usize],
) -> Vec<TestRecord> {
    (0..n)
        .map(|i| {
            let words: Vec<&str> = (0..1 + rng.below(4))
                .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                .collect();
            for w in &words {
                *expected.entry(w.to_string()).or_default() += 1;
            }
            let p = i % partitions;
            per_partition[p] += 1;
            TestRecord::value(words.join(" ")).with_partition(p as i32)
        })
        .collect()
}

/// Fences the producer of `transactional_id` the way a new owner would.
fn fence(bs: &str, transactional_id: &str) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bs)
        .set("transactional.id", transactional_id)
        .create()
        .expect("fencing producer");
    p.init_transactions(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("init_transactions({transactional_id}): {e}"));
}

#[test]
fn a_fenced_task_is_re_created_in_place_without_a_rebalance_and_stays_exact() {
    let bs = shared_broker().bootstrap_servers();
    let (input, output, app) = (
        unique_name("fence-lines"),
        unique_name("fence-counts"),
        unique_name("fence-wc"),
    );
    create_topic(&bs, &input, 2, false).unwrap();
    create_topic(&bs, &output, 2, false).unwrap();
    let mut rng = Rng(4711);
    let mut expected = HashMap::new();
    let mut sizes = vec![0usize; 2];
    produce(
        &bs,
        &input,
        &lines(&mut rng, 2000, 2, &mut expected, &mut sizes),
    )
    .unwrap();

    let work = work_dir("fencing");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut job = Job::new(
        "word_count",
        "wc",
        job_args(
            &bs,
            &app,
            &input,
            &output,
            &work.join("state"),
            &["--metrics-listen", &metrics],
        ),
        &work,
    );
    job.start();
    wait_drained(&bs, &app, &input, &sizes, &mut job, &metrics);
    let rebalances = scrape_sum(&metrics, "kstreams_rebalances_total");
    assert_eq!(
        scrape_sum(&metrics, "kstreams_producer_fences_total"),
        Some(0.0)
    );
    let tasks = scrape_sum(&metrics, "kstreams_tasks");
    assert_eq!(
        tasks,
        Some(4.0),
        "the job owns all 4 tasks before the fence"
    );

    // The input task of partition 0 and the counting task of partition 1.
    for task in ["0_0", "1_1"] {
        fence(&bs, &format!("{app}-{task}"));
    }
    produce(
        &bs,
        &input,
        &lines(&mut rng, 2000, 2, &mut expected, &mut sizes),
    )
    .unwrap();
    wait_drained(&bs, &app, &input, &sizes, &mut job, &metrics);
    let fences = scrape_sum(&metrics, "kstreams_producer_fences_total").unwrap_or(0.0);
    let rebalances_after = scrape_sum(&metrics, "kstreams_rebalances_total");
    stop_cleanly(&mut job);

    let log = strip_ansi(&std::fs::read_to_string(&job.log).unwrap());
    for task in ["0_0", "1_1"] {
        assert!(
            log.lines()
                .any(|l| l.contains("task re-created; reprocessing") && l.contains(task)),
            "task {task} was not re-created after its fence:\n{}",
            job.log_tail(60)
        );
    }
    assert!(fences >= 2.0, "fences counted: {fences}");
    assert_eq!(
        rebalances_after, rebalances,
        "a fenced task must not cost a rebalance"
    );
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
