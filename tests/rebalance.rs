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

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::*;

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
    let mut watch = CommitWatch::word_count(&bs, &app, &input, partitions);
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
