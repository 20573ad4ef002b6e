//! Exactly-once shown, not argued: the example binaries run as child
//! processes against the real broker and are killed with SIGKILL, scaled
//! out and in, stripped of their state, and frozen into zombies. Every
//! check reads the output `read_committed`.
//!
//! Sizes are configurable for a longer soak by hand, e.g.
//! `KSTREAMS_CRASH_LINES=200000 KSTREAMS_CRASH_KILLS=30 cargo test --release --test crash`.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kstreams_testkit::{
    Isolation, TestRecord, create_topic, produce, read_to_end, shared_broker, unique_name,
};
use support::*;

const VOCAB: &[&str] = &[
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "Ünïcode",
    "straße",
    "東京",
    "42",
];

/// Lines with 1..8 words drawn from VOCAB, mixed case and punctuation.
fn make_lines(n: usize, seed: u64) -> (Vec<String>, HashMap<String, u64>) {
    let mut rng = Rng(seed);
    let mut expected: HashMap<String, u64> = HashMap::new();
    let lines = (0..n)
        .map(|_| {
            let k = 1 + rng.below(8) as usize;
            let mut parts = Vec::new();
            for _ in 0..k {
                let w = VOCAB[rng.below(VOCAB.len() as u64) as usize];
                // Upper-casing is not always reversible ("straße" → "STRASSE" → "strasse"),
                // so count what is actually sent.
                let token = if rng.below(3) == 0 {
                    w.to_uppercase()
                } else {
                    w.to_string()
                };
                *expected.entry(token.to_lowercase()).or_default() += 1;
                parts.push(token);
            }
            parts.join(if rng.below(2) == 0 { " " } else { ", " })
        })
        .collect();
    (lines, expected)
}

struct Cluster {
    jobs: Vec<Job>,
    dirs: Vec<std::path::PathBuf>,
    /// Last, so it is dropped after the jobs that write into it.
    _work: WorkDir,
}

fn word_count_cluster(
    name: &str,
    instances: usize,
    bs: &str,
    app: &str,
    input: &str,
    output: &str,
    extra: &[&str],
) -> Cluster {
    let work = work_dir(name);
    let mut jobs = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..instances {
        let state = work.join(format!("state-{i}"));
        jobs.push(Job::new(
            "word_count",
            &format!("{name}-{i}"),
            job_args(bs, app, input, output, &state, extra),
            &work,
        ));
        dirs.push(state);
    }
    Cluster {
        jobs,
        dirs,
        _work: work,
    }
}

/// Produces `lines` in batches from a background thread, slowly enough that
/// instance failures happen mid-stream.
fn produce_in_background(
    bs: String,
    topic: String,
    lines: Vec<String>,
    batch: usize,
    pause: Duration,
) -> (std::thread::JoinHandle<()>, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let h = std::thread::spawn(move || {
        for (bi, chunk) in lines.chunks(batch).enumerate() {
            let recs: Vec<TestRecord> = chunk
                .iter()
                .enumerate()
                .map(|(i, l)| TestRecord::kv(format!("{bi}-{i}"), l.as_bytes()))
                .collect();
            produce(&bs, &topic, &recs).expect("produce");
            std::thread::sleep(pause);
        }
        d.store(true, Ordering::SeqCst);
    });
    (h, done)
}

fn assert_word_counts(
    bs: &str,
    output: &str,
    expected: &HashMap<String, u64>,
    exactly_once: bool,
    jobs: &[Job],
) {
    let check = || {
        let got = values_by_key(bs, output);
        expected.iter().all(|(w, n)| {
            got.get(w)
                .and_then(|v| v.last())
                .map(|v| v == &n.to_string())
                .unwrap_or(false)
        }) || (!exactly_once
            && expected.iter().all(|(w, n)| {
                got.get(w)
                    .and_then(|v| v.last())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|v| v >= *n)
                    .unwrap_or(false)
            }))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while !check() {
        if std::time::Instant::now() > deadline {
            let got = values_by_key(bs, output);
            let wrong: Vec<String> = expected
                .iter()
                .filter(|(w, n)| got.get(*w).and_then(|v| v.last()) != Some(&n.to_string()))
                .map(|(w, n)| format!("{w}: want {n}, got {:?}", got.get(w).and_then(|v| v.last())))
                .collect();
            for j in jobs {
                eprintln!("--- {} log tail ---\n{}", j.name, j.log_tail(40));
            }
            panic!("final counts not reached: {wrong:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let got = values_by_key(bs, output);
    for (w, n) in expected {
        let values: Vec<u64> = got[w].iter().map(|v| v.parse().unwrap()).collect();
        if exactly_once {
            assert_eq!(*values.last().unwrap(), *n, "{w}");
            assert!(
                values.windows(2).all(|p| p[0] < p[1]),
                "{w}: committed counts not strictly increasing: {values:?}"
            );
            assert!(
                values.iter().all(|v| v <= n),
                "{w}: a committed count beyond the true count: {values:?}"
            );
        } else {
            assert!(
                *values.last().unwrap() >= *n,
                "{w}: lost updates under at-least-once: {values:?} < {n}"
            );
        }
    }
}

fn setup_topics(partitions: i32) -> (String, String, String, String) {
    let bs = shared_broker().bootstrap_servers();
    let input = unique_name("lines");
    let output = unique_name("counts");
    create_topic(&bs, &input, partitions, false).unwrap();
    create_topic(&bs, &output, partitions, false).unwrap();
    (bs, input, output, unique_name("wc"))
}

#[test]
fn word_count_survives_repeated_sigkill_with_exact_counts() {
    let lines_n = size("KSTREAMS_CRASH_LINES", 20_000);
    let kills = size("KSTREAMS_CRASH_KILLS", 10);
    let (bs, input, output, app) = setup_topics(6);
    let (lines, expected) = make_lines(lines_n, 7);
    let mut c = word_count_cluster("wc-kill", 3, &bs, &app, &input, &output, &[]);
    for j in &mut c.jobs {
        j.start();
    }
    let batches = 40usize;
    let (producer, done) = produce_in_background(
        bs.clone(),
        input.clone(),
        lines,
        lines_n.div_ceil(batches),
        Duration::from_millis(500),
    );
    let mut rng = Rng(99);
    let mut killed = 0;
    while killed < kills {
        std::thread::sleep(Duration::from_millis(1500 + rng.below(1500)));
        let i = rng.below(3) as usize;
        c.jobs[i].kill9();
        killed += 1;
        std::thread::sleep(Duration::from_millis(300 + rng.below(1000)));
        c.jobs[i].start();
    }
    producer.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    assert_word_counts(&bs, &output, &expected, true, &c.jobs);
    for j in &mut c.jobs {
        let st = j
            .terminate(Duration::from_secs(60))
            .expect("clean exit after SIGTERM");
        assert!(
            st.success(),
            "{} exited with {st}: {}",
            j.name,
            j.log_tail(20)
        );
    }
}

#[test]
fn word_count_scales_out_and_in_and_rebuilds_lost_state() {
    let lines_n = size("KSTREAMS_SCALE_LINES", 12_000);
    let (bs, input, output, app) = setup_topics(6);
    let (lines, expected) = make_lines(lines_n, 11);
    let mut c = word_count_cluster("wc-scale", 3, &bs, &app, &input, &output, &[]);
    c.jobs[0].start();
    let (producer, _) = produce_in_background(
        bs.clone(),
        input.clone(),
        lines,
        lines_n / 30,
        Duration::from_millis(400),
    );
    std::thread::sleep(Duration::from_secs(3));
    c.jobs[1].start();
    std::thread::sleep(Duration::from_secs(3));
    c.jobs[2].start();
    std::thread::sleep(Duration::from_secs(4));
    // Lost state: stop instance 1, delete its state directory, restart it.
    assert!(
        c.jobs[1]
            .terminate(Duration::from_secs(60))
            .expect("exit")
            .success()
    );
    std::fs::remove_dir_all(&c.dirs[1]).unwrap();
    c.jobs[1].start();
    std::thread::sleep(Duration::from_secs(4));
    // Scale in to one instance.
    assert!(
        c.jobs[0]
            .terminate(Duration::from_secs(60))
            .expect("exit")
            .success()
    );
    assert!(
        c.jobs[2]
            .terminate(Duration::from_secs(60))
            .expect("exit")
            .success()
    );
    producer.join().unwrap();
    assert_word_counts(&bs, &output, &expected, true, &c.jobs);
    assert!(
        c.jobs[1]
            .terminate(Duration::from_secs(60))
            .expect("exit")
            .success()
    );
}

#[test]
fn a_frozen_zombie_is_fenced_and_produces_no_duplicates() {
    let lines_n = size("KSTREAMS_ZOMBIE_LINES", 6_000);
    let (bs, input, output, app) = setup_topics(4);
    let (lines, expected) = make_lines(lines_n, 23);
    let mut c = word_count_cluster("wc-zombie", 2, &bs, &app, &input, &output, &[]);
    c.jobs[0].start();
    c.jobs[1].start();
    // Joining and the first rebalances can take several seconds: freeze
    // instance 0 only once it owns tasks, and while it is busy with input.
    wait_until(
        Duration::from_secs(120),
        "both instances to own tasks",
        || {
            c.jobs
                .iter()
                .all(|j| last_assigned_tasks(j).is_some_and(|t| t.contains('_')))
        },
    );
    let (producer, _) = produce_in_background(
        bs.clone(),
        input.clone(),
        lines,
        lines_n / 20,
        Duration::from_millis(300),
    );
    std::thread::sleep(Duration::from_secs(4));
    let zombie_tasks = last_assigned_tasks(&c.jobs[0]).unwrap_or_default();
    let log_lines_before_freeze = c.jobs[0].log_tail(usize::MAX).lines().count();
    // Freeze instance 0 well past its session timeout (6 s): its tasks move to instance 1.
    c.jobs[0].sigstop();
    std::thread::sleep(Duration::from_secs(12));
    c.jobs[0].sigcont();
    producer.join().unwrap();
    assert_word_counts(&bs, &output, &expected, true, &c.jobs);
    // The zombie either rejoined and keeps running, or exited cleanly.
    if c.jobs[0].is_running() {
        let st = c.jobs[0].terminate(Duration::from_secs(60)).expect("exit");
        assert!(st.success(), "{}", c.jobs[0].log_tail(30));
    } else {
        let st = c.jobs[0].wait(Duration::from_secs(1)).expect("status");
        assert!(
            st.success(),
            "zombie exited with {st}: {}",
            c.jobs[0].log_tail(30)
        );
    }
    assert!(
        c.jobs[1]
            .terminate(Duration::from_secs(60))
            .expect("exit")
            .success()
    );
    // The zombie really lost its tasks: its log says it was fenced (the
    // runtime's "task was fenced: ..."), that its partitions were lost, or
    // that it rejoined the group (runtime/src/kafka/{task_manager,thread}.rs).
    let zombie_log = strip_ansi(&c.jobs[0].log_tail(usize::MAX));
    let lost_tasks: Vec<&str> = zombie_log
        .lines()
        .skip(log_lines_before_freeze)
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("fenced") || l.contains("partitions lost") || l.contains("rejoining")
        })
        .collect();
    assert!(
        !lost_tasks.is_empty(),
        "the zombie (tasks {zombie_tasks} when frozen) logged no lost tasks \
         (fenced / partitions lost / rejoining) after it was frozen:\n{}",
        c.jobs[0].log_tail(60)
    );
}

/// The tasks of the last "assignment applied" line of `job`'s log, e.g.
/// `["0_0", "1_0"]`; `None` before its first assignment.
fn last_assigned_tasks(job: &Job) -> Option<String> {
    let log = strip_ansi(&job.log_tail(usize::MAX));
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("assignment applied"))?;
    let tasks = line.split("tasks=").nth(1)?;
    Some(tasks.split(']').next()?.to_string() + "]")
}

#[test]
fn at_least_once_loses_nothing_under_sigkill() {
    let lines_n = size("KSTREAMS_ALOS_LINES", 8_000);
    let (bs, input, output, app) = setup_topics(4);
    let (lines, expected) = make_lines(lines_n, 31);
    let mut c = word_count_cluster(
        "wc-alos",
        2,
        &bs,
        &app,
        &input,
        &output,
        &[
            "--processing-guarantee",
            "at_least_once",
            "--commit-interval-ms",
            "500",
        ],
    );
    for j in &mut c.jobs {
        j.start();
    }
    let (producer, _) = produce_in_background(
        bs.clone(),
        input.clone(),
        lines,
        lines_n / 20,
        Duration::from_millis(300),
    );
    let mut rng = Rng(5);
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(1500 + rng.below(1000)));
        let i = rng.below(2) as usize;
        c.jobs[i].kill9();
        c.jobs[i].start();
    }
    producer.join().unwrap();
    assert_word_counts(&bs, &output, &expected, false, &c.jobs);
    for j in &mut c.jobs {
        assert!(
            j.terminate(Duration::from_secs(60))
                .expect("exit")
                .success()
        );
    }
}

#[test]
fn order_aggregation_survives_sigkill_with_exact_totals_despite_resends() {
    let orders_n = size("KSTREAMS_CRASH_ORDERS", 8_000);
    let kills = size("KSTREAMS_CRASH_ORDER_KILLS", 6);
    let bs = shared_broker().bootstrap_servers();
    let input = unique_name("orders");
    let output = unique_name("totals");
    let app = unique_name("orders-app");
    create_topic(&bs, &input, 6, false).unwrap();
    create_topic(&bs, &output, 6, false).unwrap();
    let dlq = format!("{output}-dlq");
    create_topic(&bs, &dlq, 1, false).unwrap();
    create_topic(&bs, &format!("{output}-per-minute"), 6, false).unwrap();
    // Orders for 50 customers; 5% are re-sent later; a few records are malformed.
    let mut bad_keys: Vec<String> = Vec::new();
    let mut rng = Rng(1234);
    let mut expected: HashMap<String, (u64, i64)> = HashMap::new();
    let mut records: Vec<TestRecord> = Vec::new();
    let mut resend: Vec<TestRecord> = Vec::new();
    for i in 0..orders_n {
        let customer = format!("c{:02}", rng.below(50));
        let amount = 100 + rng.below(10_000) as i64;
        let order_id = format!("o{i}");
        let json = format!(
            r#"{{"order_id":"{order_id}","customer_id":"{customer}","amount_cents":{amount},"ts":{}}}"#,
            1_700_000_000_000i64 + i as i64
        );
        let e = expected.entry(customer).or_default();
        e.0 += 1;
        e.1 += amount;
        let rec = TestRecord::kv(order_id.as_bytes(), json.as_bytes());
        if rng.below(20) == 0 {
            resend.push(rec.clone());
        }
        records.push(rec);
        if !resend.is_empty() && rng.below(10) == 0 {
            records.push(resend.remove(0));
        }
        if rng.below(500) == 0 {
            bad_keys.push(format!("bad{i}"));
            records.push(TestRecord::kv(
                format!("bad{i}").as_bytes(),
                b"{not json".as_slice(),
            ));
        }
    }
    records.append(&mut resend);
    let work = work_dir("orders-kill");
    let mut jobs: Vec<Job> = (0..3)
        .map(|i| {
            let state = work.join(format!("state-{i}"));
            Job::new(
                "order_aggregation",
                &format!("orders-{i}"),
                job_args(&bs, &app, &input, &output, &state, &[]),
                &work,
            )
        })
        .collect();
    for j in &mut jobs {
        j.start();
    }
    let producer = {
        let (bs, input) = (bs.clone(), input.clone());
        std::thread::spawn(move || {
            for chunk in records.chunks(records.len().div_ceil(30)) {
                produce(&bs, &input, chunk).expect("produce");
                std::thread::sleep(Duration::from_millis(400));
            }
        })
    };
    let mut krng = Rng(77);
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(1500 + krng.below(1500)));
        let i = krng.below(3) as usize;
        jobs[i].kill9();
        std::thread::sleep(Duration::from_millis(200 + krng.below(800)));
        jobs[i].start();
    }
    producer.join().unwrap();
    let parse = |v: &str| -> (u64, i64) {
        let j: serde_json::Value = serde_json::from_str(v).expect("output JSON");
        (
            j["orders"].as_u64().unwrap(),
            j["total_cents"].as_i64().unwrap(),
        )
    };
    let exact = || {
        let got = values_by_key(&bs, &output);
        expected.iter().all(|(c, want)| {
            got.get(c)
                .and_then(|v| v.last())
                .map(|v| parse(v) == *want)
                .unwrap_or(false)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while !exact() {
        if std::time::Instant::now() > deadline {
            let got = values_by_key(&bs, &output);
            for j in &jobs {
                eprintln!("--- {} ---\n{}", j.name, j.log_tail(30));
            }
            let wrong: Vec<String> = expected
                .iter()
                .filter(|(c, want)| {
                    got.get(*c).and_then(|v| v.last()).map(|v| parse(v)) != Some(**want)
                })
                .map(|(c, want)| {
                    format!(
                        "{c}: want {want:?} got {:?}",
                        got.get(c).and_then(|v| v.last())
                    )
                })
                .collect();
            panic!("totals not exact: {wrong:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let got = values_by_key(&bs, &output);
    for (c, (orders, _)) in &expected {
        let seq: Vec<u64> = got[c].iter().map(|v| parse(v).0).collect();
        assert!(
            seq.windows(2).all(|p| p[0] < p[1]),
            "{c}: committed order counts not strictly increasing: {seq:?}"
        );
        assert!(
            seq.iter().all(|n| n <= orders),
            "{c}: counted a re-sent order: {seq:?}"
        );
        let v: serde_json::Value = serde_json::from_str(got[c].last().unwrap()).unwrap();
        assert_eq!(v["customer_id"], serde_json::Value::String(c.clone()));
    }
    // Each malformed order reached the dead-letter topic exactly once,
    // despite the kills: the DLQ write is part of the task's transaction.
    let mut dead: Vec<String> = read_to_end(&bs, &dlq, Isolation::ReadCommitted)
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).to_string())
        .collect();
    dead.sort();
    bad_keys.sort();
    assert_eq!(dead, bad_keys);
    for j in &mut jobs {
        assert!(
            j.terminate(Duration::from_secs(60))
                .expect("exit")
                .success(),
            "{}",
            j.log_tail(20)
        );
    }
}
