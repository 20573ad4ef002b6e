//! Tasks that move without stopping the world (`group.protocol=streams`,
//! KIP-1071): instances come and go while input flows, and the tasks that
//! stay where they are keep committing all the while. Under the classic
//! protocol every rebalance revokes every task, so this test fails there
//! (`KSTREAMS_REBALANCE_PROTOCOL=classic` runs it that way).
//!
//! Commits are watched from outside: a client polls the group's committed
//! offsets of the input topic (tasks `0_p`) and of the repartition topic
//! (tasks `1_p`) every few tens of milliseconds; a task committed when its
//! partition's committed offset moved.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::*;

type Sample = (Instant, HashMap<String, i64>);

/// Samples every task's committed input offset until stopped.
struct CommitWatch {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CommitWatch {
    /// `topics`: (topic, sub-topology that reads it, partitions).
    fn start(bs: &str, app: &str, topics: Vec<(String, u32, i32)>) -> CommitWatch {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bs)
            .set("group.id", app)
            .set("enable.auto.commit", "false")
            // Offsets of committed transactions only, without waiting for
            // the pending ones (require_stable=false): there always are.
            .set("isolation.level", "read_uncommitted")
            .create()
            .expect("offsets client");
        let mut tpl = TopicPartitionList::new();
        let mut task_of = HashMap::new();
        for (topic, sub, n) in &topics {
            for p in 0..*n {
                tpl.add_partition(topic, p);
                task_of.insert((topic.clone(), p), format!("{sub}_{p}"));
            }
        }
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                if let Ok(c) = consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
                    let at = Instant::now();
                    let offsets = c
                        .elements()
                        .iter()
                        .filter_map(|e| match e.offset() {
                            Offset::Offset(o) => {
                                Some((task_of[&(e.topic().to_string(), e.partition())].clone(), o))
                            }
                            _ => None,
                        })
                        .collect();
                    s.lock().unwrap().push((at, offsets));
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        CommitWatch {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn samples_between(&self, from: Instant, to: Instant) -> usize {
        let samples = self.samples.lock().unwrap();
        samples
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .count()
    }

    /// The longest time in `[from, to]` during which `task`'s committed
    /// offset did not move, and how often it moved then.
    fn longest_pause(&self, task: &str, from: Instant, to: Instant) -> (Duration, usize) {
        let samples = self.samples.lock().unwrap();
        let mut last_move = from;
        let mut prev: Option<i64> = None;
        let mut longest = Duration::ZERO;
        let mut moves = 0;
        for (at, offsets) in samples.iter() {
            let o = offsets.get(task).copied();
            if *at >= from && *at <= to && o.is_some() && prev.is_some() && o != prev {
                longest = longest.max(*at - last_move);
                last_move = *at;
                moves += 1;
            }
            prev = o.or(prev);
        }
        (longest.max(to - last_move), moves)
    }
}

/// Task → the instance that owns it, once every instance in `live` owns
/// tasks and all `tasks` are owned exactly once.
fn settled_owners(c: &Cluster, live: &[usize], tasks: usize) -> BTreeMap<String, usize> {
    let mut owners = BTreeMap::new();
    wait_until(Duration::from_secs(120), "the assignment to settle", || {
        owners.clear();
        for &i in live {
            let Some(t) = c.crew.owned_tasks(i) else {
                return false;
            };
            for task in t {
                if owners.insert(task, i).is_some() {
                    return false;
                }
            }
        }
        owners.len() == tasks
    });
    owners
}

#[test]
fn tasks_that_stay_keep_committing_while_instances_come_and_go() {
    let protocol =
        std::env::var("KSTREAMS_REBALANCE_PROTOCOL").unwrap_or_else(|_| "streams".into());
    let lines_n = size("KSTREAMS_REBALANCE_LINES", 36_000);
    let partitions = 6;
    let (bs, input, output, app) = setup_topics(partitions);
    let (lines, expected) = make_lines(lines_n, 17);
    let setting: &'static str = Box::leak(format!("group.protocol={protocol}").into_boxed_str());
    let mut c = word_count_cluster("rebalance", 5, &bs, &app, &input, &output, |_| {
        vec!["--config", setting]
    });
    for i in 0..3 {
        c.crew.start(i);
    }
    let tasks = 2 * partitions as usize;
    settled_owners(&c, &[0, 1, 2], tasks);
    let mut watch = CommitWatch::start(
        &bs,
        &app,
        vec![
            (input.clone(), 0, partitions),
            (format!("{app}-counts-repartition"), 1, partitions),
        ],
    );
    // A steady 1,000 lines/s, for about 36 s.
    let (producer, done) = produce_in_background(
        bs.clone(),
        input.clone(),
        lines,
        100,
        Duration::from_millis(100),
    );
    std::thread::sleep(Duration::from_secs(3));
    // 3 → 4 → 5 → 3.
    let steps: [(&str, &[usize], &[usize]); 3] = [
        ("3 -> 4", &[3], &[0, 1, 2, 3]),
        ("4 -> 5", &[4], &[0, 1, 2, 3, 4]),
        ("5 -> 3", &[], &[0, 1, 2]),
    ];
    let mut windows = Vec::new();
    for (name, start, live) in steps {
        let before = settled_owners(&c, &c_live(live, start), tasks);
        let from = Instant::now();
        if start.is_empty() {
            c.crew.stop(3);
            c.crew.stop(4);
        } else {
            c.crew.start(start[0]);
        }
        let after = settled_owners(&c, live, tasks);
        // Some more commits after the move.
        std::thread::sleep(Duration::from_secs(2));
        windows.push((name, from, Instant::now(), before, after));
    }
    producer.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    std::thread::sleep(Duration::from_secs(1));
    watch.stop();
    drain_stop_and_assert_counts(&mut c, &bs, &app, &input, &output, &expected, true);
    let mut report = Vec::new();
    let mut slow = Vec::new();
    for (name, from, to, before, after) in &windows {
        let moved: Vec<&String> = before
            .iter()
            .filter(|(t, i)| after.get(*t) != Some(i))
            .map(|(t, _)| t)
            .collect();
        let stayed: Vec<&String> = before
            .iter()
            .filter(|(t, i)| after.get(*t) == Some(i))
            .map(|(t, _)| t)
            .collect();
        // The adversity: tasks really moved, and some stayed to watch.
        assert!(
            !moved.is_empty(),
            "{name}: no task moved ({before:?} -> {after:?})"
        );
        assert!(
            !stayed.is_empty(),
            "{name}: every task moved ({before:?} -> {after:?})"
        );
        for t in &stayed {
            let (pause, moves) = watch.longest_pause(t, *from, *to);
            report.push(format!(
                "{name} {t}: longest pause {} ms, {moves} commits",
                pause.as_millis()
            ));
            assert!(
                moves >= 3,
                "{name}: task {t} committed only {moves} times in its window of {} ms ({} samples)",
                (*to - *from).as_millis(),
                watch.samples_between(*from, *to)
            );
            if pause > Duration::from_secs(1) {
                slow.push(format!(
                    "{name}: task {t} did not commit for {} ms",
                    pause.as_millis()
                ));
            }
        }
        report.push(format!("{name}: moved {moved:?}, stayed {stayed:?}"));
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        slow.is_empty(),
        "tasks that did not move paused (protocol {protocol}): {slow:?}\n{}",
        report.join("\n")
    );
}

/// The instances live before a step: `live` without the one it starts, or
/// (scale-in) all five.
fn c_live(live: &[usize], start: &[usize]) -> Vec<usize> {
    if start.is_empty() {
        vec![0, 1, 2, 3, 4]
    } else {
        live.iter()
            .copied()
            .filter(|i| !start.contains(i))
            .collect()
    }
}
