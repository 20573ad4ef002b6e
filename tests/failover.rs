//! Failover with a standby (`group.protocol=streams`,
//! `num.standby.replicas=1`): three word-count instances hold a large state;
//! the one that owns the most tasks is killed with SIGKILL while input
//! flows. Its tasks move to the instances holding their standbys, which
//! replay only the standby's lag, never the whole store; the counts stay
//! exact.
//!
//! Figures (printed): the time from the kill to the moved tasks' first
//! commit, minus the session timeout (6 s, the test broker's
//! `group.streams.session.timeout.ms`), and the records each moved task
//! replayed. Sizes: `KSTREAMS_FAILOVER_KEYS` (distinct keys of state,
//! default 200,000; 1,000,000 for the figure in benches/RESULTS.md) and
//! `KSTREAMS_FAILOVER_STANDBYS` (default 1; 0 gives the figure without
//! standbys and skips the bounds that need one).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kstreams_testkit::{TestRecord, end_offsets, produce};
use support::*;

/// The broker's `group.streams.session.timeout.ms` (testkit/src/broker.rs).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

#[test]
fn a_killed_instance_s_tasks_resume_from_their_standbys_replaying_only_the_lag() {
    let keys = size("KSTREAMS_FAILOVER_KEYS", 200_000);
    let standbys = size("KSTREAMS_FAILOVER_STANDBYS", 1);
    let partitions = 6;
    let tasks = 2 * partitions as usize;
    let (bs, input, output, app) = setup_topics(partitions);
    // The state: `keys` distinct words, ten to a line, counted once each.
    let mut expected: HashMap<String, u64> = HashMap::new();
    let preload: Vec<TestRecord> = (0..keys.div_ceil(10))
        .map(|l| {
            let words: Vec<String> = (l * 10..((l + 1) * 10).min(keys))
                .map(|k| format!("k{k:07}"))
                .collect();
            for w in &words {
                expected.insert(w.clone(), 1);
            }
            TestRecord::kv(format!("p{l}"), words.join(" ").as_bytes())
        })
        .collect();
    for chunk in preload.chunks(5_000) {
        produce(&bs, &input, chunk).expect("produce the state");
    }
    let standby_setting: &'static str =
        Box::leak(format!("num.standby.replicas={standbys}").into_boxed_str());
    let mut c = word_count_cluster("failover", 3, &bs, &app, &input, &output, |_| {
        vec![
            "--config",
            "group.protocol=streams",
            "--config",
            standby_setting,
        ]
    });
    c.crew.start_all();
    c.crew.wait_drained(&bs, &app, &[&input]);
    let changelog = format!("{app}-counts-changelog");
    let changelog_records: i64 = end_offsets(&bs, &changelog).unwrap().values().sum();
    assert!(
        changelog_records >= keys as i64,
        "changelog has {changelog_records} records"
    );
    if standbys > 0 {
        // Every stateful task (the counting tasks 1_p) has a standby,
        // caught up with its changelogs.
        wait_until(Duration::from_secs(300), "the standbys to catch up", || {
            let mut applied = 0.0;
            let mut with_standby = std::collections::BTreeSet::new();
            for addr in &c.crew.metrics {
                let Some(text) = http_get(addr, "/metrics").map(|r| r.body) else {
                    return false;
                };
                for (labels, v) in metric_samples(&text, "kstreams_standby_records_total") {
                    with_standby.insert(labels.get("task").cloned().unwrap_or_default());
                    applied += v;
                }
            }
            with_standby.len() == partitions as usize && applied >= 0.99 * changelog_records as f64
        });
    }
    // Input flows through the kill: 200 lines/s of a small vocabulary.
    let (lines, steady) = make_lines(size("KSTREAMS_FAILOVER_LINES", 5_000), 31);
    for (w, n) in steady {
        *expected.entry(w).or_default() += n;
    }
    let mut watch = CommitWatch::word_count(&bs, &app, &input, partitions);
    let (producer, _) = produce_in_background(
        bs.clone(),
        input.clone(),
        lines,
        20,
        Duration::from_millis(100),
    );
    std::thread::sleep(Duration::from_secs(3));
    let owners = settled_owners(&c, &[0, 1, 2], tasks);
    let mut held: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (t, i) in &owners {
        held.entry(*i).or_default().push(t.clone());
    }
    let victim = *held
        .iter()
        .max_by_key(|(_, t)| t.len())
        .map(|(i, _)| i)
        .unwrap();
    let kill = c.crew.kill9_owner(victim);
    let killed_at = Instant::now();
    let moved = kill.tasks.clone();
    assert!(!moved.is_empty(), "the victim owned no tasks");
    // Wait until every moved task committed on its new owner.
    let mut firsts: BTreeMap<String, Duration> = BTreeMap::new();
    wait_until(
        Duration::from_secs(120),
        "the moved tasks to commit",
        || {
            for t in &moved {
                if let Some(at) = watch.first_commit_after(t, killed_at) {
                    firsts.insert(t.clone(), at - killed_at);
                }
            }
            firsts.len() == moved.len()
        },
    );
    let takeover = firsts.values().max().copied().unwrap();
    // What each moved task replayed when it started on its new owner.
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let mut replayed: BTreeMap<String, f64> = BTreeMap::new();
    for &i in &survivors {
        let text = http_get(&c.crew.metrics[i], "/metrics").unwrap().body;
        for (labels, v) in metric_samples(&text, "kstreams_restore_records_total") {
            let task = labels.get("task").cloned().unwrap_or_default();
            if moved.contains(&task) {
                *replayed.entry(task).or_default() += v;
            }
        }
    }
    // The adversity: the survivors restored after the kill, and the moved
    // counting tasks' new owners held their standbys when it came.
    let after = settled_owners(&c, &survivors, tasks);
    let restores_after_kill: usize = survivors
        .iter()
        .map(|&i| {
            log_lines(&c.crew.jobs[i])[kill.marks[i]..]
                .iter()
                .filter(|l| l.contains("restore done"))
                .count()
        })
        .sum();
    let standby_before = |i: usize| -> Vec<String> {
        log_lines(&c.crew.jobs[i])[..kill.marks[i]]
            .iter()
            .rev()
            .find(|l| l.contains("assignment applied"))
            .and_then(|l| {
                let l = strip_ansi(l);
                let list = l.split("standby=[").nth(1)?.split(']').next()?.to_string();
                Some(
                    list.split(',')
                        .map(|t| t.trim().trim_matches('"').to_string())
                        .filter(|t| !t.is_empty())
                        .collect(),
                )
            })
            .unwrap_or_default()
    };
    let from_standby: Vec<&String> = moved
        .iter()
        .filter(|t| t.starts_with("1_"))
        .filter(|t| {
            after
                .get(*t)
                .is_some_and(|&i| standby_before(i).contains(t))
        })
        .collect();
    producer.join().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    watch.stop();
    let store_per_task = keys as f64 / partitions as f64;
    eprintln!(
        "failover (keys {keys}, standbys {standbys}): victim {} owned {moved:?}; first commit of the \
         moved tasks after the kill: {} ms (minus the {} s session timeout: {} ms); per task: {firsts:?}; \
         replayed per moved task: {replayed:?}; moved onto their standby: {from_standby:?}; \
         restores after the kill: {restores_after_kill}",
        kill.victim,
        takeover.as_millis(),
        SESSION_TIMEOUT.as_secs(),
        takeover.saturating_sub(SESSION_TIMEOUT).as_millis(),
    );
    drain_stop_and_assert_counts(&mut c, &bs, &app, &input, &output, &expected, true);
    c.crew.assert_kills_hit();
    if standbys > 0 {
        // The moved counting tasks (1_p) hold the state: each replayed at
        // most 1% of its store (a standby's lag is a few commit intervals).
        for t in moved.iter().filter(|t| t.starts_with("1_")) {
            let r = replayed.get(t).copied().unwrap_or(0.0);
            assert!(
                r <= 0.01 * store_per_task,
                "task {t} replayed {r} records of a store of about {store_per_task}"
            );
        }
        assert!(
            restores_after_kill > 0,
            "no survivor restored a task after the kill"
        );
        let stateful = moved.iter().filter(|t| t.starts_with("1_")).count();
        assert!(stateful > 0, "the victim owned no counting task");
        assert_eq!(
            from_standby.len(),
            stateful,
            "moved counting tasks that did not land on their standby: {moved:?} -> {after:?}"
        );
        assert!(
            takeover.saturating_sub(SESSION_TIMEOUT) <= Duration::from_secs(2),
            "the moved tasks first committed {} ms after the kill ({} s session timeout)",
            takeover.as_millis(),
            SESSION_TIMEOUT.as_secs()
        );
    }
}
