//! Exactly-once shown, not argued: the example binaries run as child
//! processes against the real broker and are killed with SIGKILL, scaled
//! out and in, stripped of their state, and frozen into zombies. Every
//! check reads the output `read_committed`.
//!
//! Sizes are configurable for a longer soak by hand, e.g.
//! `KSTREAMS_CRASH_LINES=200000 KSTREAMS_CRASH_KILLS=30 cargo test --release --test crash`.

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kstreams_testkit::{
    Isolation, TestRecord, create_topic, end_offsets, read_to_end, shared_broker, stable_offsets,
    unique_name,
};
use support::*;

#[test]
fn word_count_survives_repeated_sigkill_with_exact_counts() {
    let lines_n = size("KSTREAMS_CRASH_LINES", 20_000);
    let kills = size("KSTREAMS_CRASH_KILLS", 10);
    let (bs, input, output, app) = setup_topics(6);
    let (lines, expected) = make_lines(lines_n, 7);
    let mut c = word_count_cluster("wc-kill", 3, &bs, &app, &input, &output, |_| vec![]);
    c.crew.start_all();
    let batches = 40usize;
    let (producer, done) = produce_in_background(
        bs.clone(),
        input.clone(),
        lines,
        lines_n.div_ceil(batches),
        Duration::from_millis(500),
    );
    c.crew.kill_rounds(
        kills,
        99,
        KillPacing {
            down_ms: 300,
            down_jitter_ms: 1000,
            ..KillPacing::default()
        },
    );
    producer.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    drain_stop_and_assert_counts(&mut c, &bs, &app, &input, &output, &expected, true);
    c.crew.assert_kills_hit();
}

#[test]
fn word_count_scales_out_and_in_and_rebuilds_lost_state() {
    let lines_n = size("KSTREAMS_SCALE_LINES", 12_000);
    let (bs, input, output, app) = setup_topics(6);
    let (lines, expected) = make_lines(lines_n, 11);
    let mut c = word_count_cluster("wc-scale", 3, &bs, &app, &input, &output, |_| vec![]);
    c.crew.start(0);
    let (producer, _) = produce_in_background(
        bs.clone(),
        input.clone(),
        lines,
        lines_n / 30,
        Duration::from_millis(400),
    );
    std::thread::sleep(Duration::from_secs(3));
    c.crew.start(1);
    std::thread::sleep(Duration::from_secs(3));
    c.crew.start(2);
    std::thread::sleep(Duration::from_secs(4));
    // Lost state: once instance 1 owns tasks, stop it, delete its state
    // directory, restart it.
    wait_until(Duration::from_secs(120), "instance 1 to own tasks", || {
        c.crew.owned_tasks(1).is_some()
    });
    c.crew.stop(1);
    std::fs::remove_dir_all(&c.dirs[1]).unwrap();
    let wiped_at = log_lines(&c.crew.jobs[1]).len();
    c.crew.start(1);
    std::thread::sleep(Duration::from_secs(4));
    // Scale in to one instance.
    c.crew.stop(0);
    c.crew.stop(2);
    producer.join().unwrap();
    drain_stop_and_assert_counts(&mut c, &bs, &app, &input, &output, &expected, true);
    // The last instance took over every task: 6 per sub-topology.
    let owned = last_applied_tasks(&c.crew.run_log(1)).unwrap_or_default();
    assert_eq!(owned.len(), 12, "instance 1 after the scale-in: {owned:?}");
    // It rebuilt the state it lost from the changelogs.
    let rebuilt = restored_records(&log_lines(&c.crew.jobs[1])[wiped_at..]);
    assert!(
        rebuilt > 0,
        "instance 1 restored nothing after its state was deleted"
    );
}

#[test]
fn a_frozen_zombie_is_fenced_and_produces_no_duplicates() {
    let lines_n = size("KSTREAMS_ZOMBIE_LINES", 6_000);
    let (bs, input, output, app) = setup_topics(4);
    let (lines, expected) = make_lines(lines_n, 23);
    // The zombie-to-be commits only every 30 s and has no record cache, so
    // each count update goes to its producer at once: from its first update
    // on, each of its counting tasks (1_<p>, the only writer of output
    // partition p: a word's partition is the same in the repartition and
    // output topics) holds an open transaction with records, and a freeze
    // leaves it for the new owner to abort and for the zombie to be fenced
    // on. (With the cache, word_count produces only while it commits.)
    let mut c = word_count_cluster("wc-zombie", 2, &bs, &app, &input, &output, |i| {
        if i == 0 {
            vec![
                "--commit-interval-ms",
                "30000",
                "--config",
                "cache.max.bytes.buffering=0",
            ]
        } else {
            vec![]
        }
    });
    c.crew.start_all();
    // Joining and the first rebalances can take several seconds.
    wait_until(
        Duration::from_secs(120),
        "both instances to own tasks",
        || (0..2).all(|i| c.crew.owned_tasks(i).is_some()),
    );
    let (producer, _) = produce_in_background(
        bs.clone(),
        input.clone(),
        lines,
        lines_n / 20,
        Duration::from_millis(300),
    );
    // Freeze it, mid-stream, once one of its counting tasks wrote into an
    // open transaction: the output partition's end is above its last
    // stable offset.
    let mut zombie_tasks = Vec::new();
    wait_until(
        Duration::from_secs(120),
        "the zombie to write into an open transaction",
        || {
            let Some(tasks) = c.crew.owned_tasks(0) else {
                return false;
            };
            zombie_tasks = tasks;
            open_transaction_partitions(&bs, &output)
                .iter()
                .any(|p| zombie_tasks.contains(&format!("1_{p}")))
        },
    );
    let marks = c.crew.marks();
    // Frozen past its session timeout (6 s): its tasks move to instance 1,
    // whose new producers fence the zombie's.
    c.crew.jobs[0].sigstop();
    wait_until(
        Duration::from_secs(120),
        "instance 1 to take over the frozen zombie's tasks",
        || {
            let created = created_tasks(&log_lines(&c.crew.jobs[1])[marks[1]..]);
            zombie_tasks.iter().all(|t| created.contains(t))
        },
    );
    c.crew.jobs[0].sigcont();
    producer.join().unwrap();
    // The zombie keeps running: it rejoins after it was fenced.
    drain_stop_and_assert_counts(&mut c, &bs, &app, &input, &output, &expected, true);
    let after_freeze = log_lines(&c.crew.jobs[0]).split_off(marks[0]);
    let fenced: Vec<&String> = after_freeze
        .iter()
        .filter(|l| {
            l.contains("fenced by a newer instance")
                || l.contains("task fenced or its producer failed")
                || l.to_lowercase().contains("old epoch")
        })
        .collect();
    assert!(
        !fenced.is_empty(),
        "the zombie (tasks {zombie_tasks:?} when frozen, taken over by instance 1) \
         logged no fencing error after it was thawed:\n{}",
        after_freeze.join("\n")
    );
    eprintln!("zombie fenced: {}", fenced[0]);
}

/// The partitions of `topic` where an open transaction holds records
/// (the end is above the last stable offset).
fn open_transaction_partitions(bs: &str, topic: &str) -> Vec<i32> {
    let (Ok(stable), Ok(end)) = (stable_offsets(bs, topic), end_offsets(bs, topic)) else {
        return Vec::new();
    };
    end.iter()
        .filter(|(p, e)| stable.get(*p).is_some_and(|s| s < *e))
        .map(|(p, _)| *p)
        .collect()
}

#[test]
fn at_least_once_loses_nothing_under_sigkill() {
    let lines_n = size("KSTREAMS_ALOS_LINES", 8_000);
    let (bs, input, output, app) = setup_topics(4);
    let (lines, expected) = make_lines(lines_n, 31);
    let mut c = word_count_cluster("wc-alos", 2, &bs, &app, &input, &output, |_| {
        vec![
            "--processing-guarantee",
            "at_least_once",
            "--commit-interval-ms",
            "500",
        ]
    });
    c.crew.start_all();
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
        c.crew.kill_owner(i);
        c.crew.start(i);
    }
    producer.join().unwrap();
    drain_stop_and_assert_counts(&mut c, &bs, &app, &input, &output, &expected, false);
    c.crew.assert_kills_hit();
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
    let metrics: Vec<String> = (0..3).map(|_| metrics_addr()).collect();
    let jobs: Vec<Job> = (0..3)
        .map(|i| {
            let state = work.join(format!("state-{i}"));
            Job::new(
                "order_aggregation",
                &format!("orders-{i}"),
                job_args(
                    &bs,
                    &app,
                    &input,
                    &output,
                    &state,
                    &["--metrics-listen", &metrics[i]],
                ),
                &work,
            )
        })
        .collect();
    let mut crew = Crew::new(jobs, metrics);
    crew.start_all();
    let producer = produce_paced(&bs, &input, records, 30);
    crew.kill_rounds(kills, 77, KillPacing::default());
    producer.join().unwrap();
    crew.wait_drained(&bs, &app, &[&input]);
    crew.stop_all();
    wait_no_open_transactions(&bs, &output);
    wait_no_open_transactions(&bs, &dlq);
    let parse = |v: &str| -> (u64, i64) {
        let j: serde_json::Value = serde_json::from_str(v).expect("output JSON");
        (
            j["orders"].as_u64().unwrap(),
            j["total_cents"].as_i64().unwrap(),
        )
    };
    let got = values_by_key(&bs, &output);
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(c, want)| got.get(*c).and_then(|v| v.last()).map(|v| parse(v)) != Some(**want))
        .map(|(c, want)| {
            format!(
                "{c}: want {want:?} got {:?}",
                got.get(c).and_then(|v| v.last())
            )
        })
        .collect();
    assert!(wrong.is_empty(), "totals not exact: {wrong:?}");
    assert_eq!(got.len(), expected.len(), "customers with totals");
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
    crew.assert_kills_hit();
}
