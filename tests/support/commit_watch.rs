//! Tasks' commits watched from outside: a client polls the group's
//! committed offsets of each sub-topology's input (tasks `<sub>_<p>`) every
//! few tens of milliseconds; a task committed when its partition's
//! committed offset moved.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::*;

type Sample = (Instant, HashMap<String, i64>);

/// Samples every task's committed input offset until stopped.
pub struct CommitWatch {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CommitWatch {
    /// `topics`: (topic, sub-topology that reads it, partitions).
    pub fn start(bs: &str, app: &str, topics: Vec<(String, u32, i32)>) -> CommitWatch {
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

    /// The word count's tasks: `0_p` read `input`, `1_p` its repartition
    /// topic.
    pub fn word_count(bs: &str, app: &str, input: &str, partitions: i32) -> CommitWatch {
        CommitWatch::start(
            bs,
            app,
            vec![
                (input.to_string(), 0, partitions),
                (format!("{app}-counts-repartition"), 1, partitions),
            ],
        )
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    pub fn samples_between(&self, from: Instant, to: Instant) -> usize {
        let samples = self.samples.lock().unwrap();
        samples
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .count()
    }

    /// The longest time in `[from, to]` during which `task`'s committed
    /// offset did not move, and how often it moved then.
    pub fn longest_pause(&self, task: &str, from: Instant, to: Instant) -> (Duration, usize) {
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

    /// When `task`'s committed offset first moved after `after`.
    pub fn first_commit_after(&self, task: &str, after: Instant) -> Option<Instant> {
        let samples = self.samples.lock().unwrap();
        let base = samples
            .iter()
            .rev()
            .find(|(at, o)| *at <= after && o.contains_key(task))
            .and_then(|(_, o)| o.get(task).copied());
        samples
            .iter()
            .filter(|(at, _)| *at > after)
            .find(|(_, o)| o.get(task).copied() != base && o.contains_key(task))
            .map(|(at, _)| *at)
    }
}

/// Task → the instance that owns it, once every instance in `live` owns
/// tasks and all `tasks` are owned exactly once.
pub fn settled_owners(c: &Cluster, live: &[usize], tasks: usize) -> BTreeMap<String, usize> {
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
