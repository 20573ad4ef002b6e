//! The crash tests (tests/crash.rs, tests/windows_crash.rs): several jobs
//! that serve /metrics, killed and restarted, drained and stopped before
//! their outputs are read, with proof that every kill hit a task owner.

use std::time::{Duration, Instant};

use kstreams_testkit::committed_offsets;

use super::*;

/// A SIGKILL that hit: the victim and the tasks it owned just before, and
/// how many lines every job's log had then (what comes after is later).
#[derive(Debug, Clone)]
pub struct Kill {
    pub victim: usize,
    pub tasks: Vec<String>,
    pub marks: Vec<usize>,
}

/// Jobs of one application that each serve `/metrics`, with the
/// bookkeeping the crash tests need: where each job's current run starts
/// in its log, which jobs are meant to be running, and the kills so far.
pub struct Crew {
    pub jobs: Vec<Job>,
    pub metrics: Vec<String>,
    run_start: Vec<usize>,
    live: Vec<bool>,
    pub kills: Vec<Kill>,
}

impl Crew {
    /// `jobs[i]` must have been given `--metrics-listen metrics[i]`.
    pub fn new(jobs: Vec<Job>, metrics: Vec<String>) -> Crew {
        assert_eq!(jobs.len(), metrics.len());
        let n = jobs.len();
        Crew {
            jobs,
            metrics,
            run_start: vec![0; n],
            live: vec![false; n],
            kills: Vec::new(),
        }
    }

    pub fn start(&mut self, i: usize) {
        self.run_start[i] = log_lines(&self.jobs[i]).len();
        self.jobs[i].start();
        self.live[i] = true;
    }

    pub fn start_all(&mut self) {
        for i in 0..self.jobs.len() {
            self.start(i);
        }
    }

    /// The log lines of job `i`'s current (or last) run.
    pub fn run_log(&self, i: usize) -> Vec<String> {
        let mut lines = log_lines(&self.jobs[i]);
        lines.drain(..self.run_start[i].min(lines.len()));
        lines
    }

    /// How many lines each job's log has now.
    pub fn marks(&self) -> Vec<usize> {
        self.jobs.iter().map(|j| log_lines(j).len()).collect()
    }

    /// The tasks job `i` owns if it is settled: its metrics say it holds
    /// tasks and is not in a rebalance, and its current run's last
    /// "assignment applied" line lists at least one task.
    pub fn owned_tasks(&self, i: usize) -> Option<Vec<String>> {
        let text = http_get(&self.metrics[i], "/metrics")?.body;
        let tasks = metric_sum(&text, "kstreams_tasks", &[])?;
        let rebalancing = metric_sum(&text, "kstreams_rebalancing", &[])?;
        if tasks < 1.0 || rebalancing != 0.0 {
            return None;
        }
        last_applied_tasks(&self.run_log(i)).filter(|t| !t.is_empty())
    }

    /// Waits until job `i` owns tasks (see [`Crew::owned_tasks`]), then
    /// kills it with SIGKILL and records the kill. Fails if it exits or
    /// owns nothing within 180 s.
    pub fn kill9_owner(&mut self, i: usize) -> Kill {
        let deadline = Instant::now() + Duration::from_secs(180);
        let tasks = loop {
            assert!(
                self.jobs[i].is_running(),
                "{} exited before its kill:\n{}",
                self.jobs[i].name,
                self.jobs[i].log_tail(40)
            );
            if let Some(t) = self.owned_tasks(i) {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "{} owned no tasks within 180 s, so a kill would not hit:\n{}",
                self.jobs[i].name,
                self.jobs[i].log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        self.jobs[i].kill9();
        self.live[i] = false;
        // After the kill: the victim's log is complete, so its next run
        // and the other jobs' lines from here on are all later.
        let kill = Kill {
            victim: i,
            tasks,
            marks: self.marks(),
        };
        self.kills.push(kill.clone());
        kill
    }

    /// SIGTERMs job `i`, waits for it and asserts a clean exit.
    pub fn stop(&mut self, i: usize) {
        stop_cleanly(&mut self.jobs[i]);
        self.live[i] = false;
    }

    /// SIGTERMs every running job at once, waits for them all and asserts
    /// that each exited successfully.
    pub fn stop_all(&mut self) {
        let mut first = Vec::new();
        for (i, j) in self.jobs.iter_mut().enumerate() {
            // Sends SIGTERM; waits for nothing.
            first.push(if self.live[i] {
                Some(j.terminate(Duration::ZERO))
            } else {
                None
            });
        }
        for (i, status) in first.into_iter().enumerate() {
            let Some(status) = status else { continue };
            let j = &mut self.jobs[i];
            let status = status
                .or_else(|| j.wait(Duration::from_secs(90)))
                .unwrap_or_else(|| panic!("{} did not exit after SIGTERM", j.name));
            assert!(
                status.success(),
                "{} exited with {status}:\n{}",
                j.name,
                j.log_tail(40)
            );
            self.live[i] = false;
        }
    }

    /// Waits until the live jobs have consumed everything: group `app`
    /// committed the end offset of every partition of each of `inputs`
    /// (produced without transactions, so the end is the last record), no
    /// live job is in a rebalance, and every partition with records of the
    /// application's repartition topics is read by a task of a live job
    /// whose `kstreams_consumer_lag` there is 0 -- twice in a row. Fails
    /// if a live job exits or nothing settles within 240 s.
    pub fn wait_drained(&mut self, bs: &str, app: &str, inputs: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut settled = 0;
        while settled < 2 {
            let mut why: Vec<String> = Vec::new();
            for (i, j) in self.jobs.iter_mut().enumerate() {
                if self.live[i] {
                    assert!(j.is_running(), "{} exited:\n{}", j.name, j.log_tail(40));
                }
            }
            for input in inputs {
                let ends = kstreams_testkit::end_offsets(bs, input).unwrap_or_default();
                let committed = committed_offsets(bs, app, input).unwrap_or_default();
                let behind: Vec<_> = ends
                    .iter()
                    .filter(|(p, e)| **e > 0 && committed.get(*p) != Some(*e))
                    .collect();
                if ends.is_empty() || !behind.is_empty() {
                    why.push(format!("{input}: committed {committed:?} of ends {ends:?}"));
                }
            }
            let mut texts = Vec::new();
            for (i, addr) in self.metrics.iter().enumerate() {
                if !self.live[i] {
                    continue;
                }
                let Some(text) = http_get(addr, "/metrics").map(|r| r.body) else {
                    why.push(format!("{}: no /metrics", self.jobs[i].name));
                    continue;
                };
                if metric_sum(&text, "kstreams_rebalancing", &[]) != Some(0.0) {
                    why.push(format!("{}: rebalancing", self.jobs[i].name));
                }
                texts.push(text);
            }
            why.extend(internal_lag_gaps(bs, app, &texts));
            settled = if why.is_empty() { settled + 1 } else { 0 };
            if Instant::now() > deadline {
                for j in &self.jobs {
                    eprintln!("--- {} ---\n{}", j.name, j.log_tail(40));
                }
                panic!("not drained within 240 s: {why:?}");
            }
            std::thread::sleep(Duration::from_millis(1100));
        }
    }

    /// Asserts that every kill hit: each task the victim owned was created
    /// anew after the kill, by another job or by the victim's next run (a
    /// new producer of the task's `transactional.id`, which fences the
    /// dead one and aborts its open transaction; the task's stores restored
    /// from their changelogs). Call it after the jobs stopped.
    pub fn assert_kills_hit(&self) {
        let logs: Vec<Vec<String>> = self.jobs.iter().map(log_lines).collect();
        for (k, kill) in self.kills.iter().enumerate() {
            assert!(!kill.tasks.is_empty(), "kill {k} hit no task: {kill:?}");
            let mut report = Vec::new();
            for task in &kill.tasks {
                let by: Vec<&str> = logs
                    .iter()
                    .enumerate()
                    .filter(|(j, lines)| {
                        created_tasks(&lines[kill.marks[*j].min(lines.len())..]).contains(task)
                    })
                    .map(|(j, _)| self.jobs[j].name.as_str())
                    .collect();
                assert!(
                    !by.is_empty(),
                    "kill {k} of {} (tasks {:?}): task {task} was never created again",
                    self.jobs[kill.victim].name,
                    kill.tasks
                );
                report.push(format!("{task} by {}", by.join("+")));
            }
            eprintln!(
                "kill {} of {}: created again: {}",
                k + 1,
                self.jobs[kill.victim].name,
                report.join(", ")
            );
        }
    }
}

impl Crew {
    /// Waits until the live jobs other than the victim of `kill` have
    /// created every task it owned (its session expired and the group gave
    /// its tasks to the survivors); fails after 120 s.
    pub fn wait_taken_over(&self, kill: &Kill) {
        wait_until(
            Duration::from_secs(120),
            &format!(
                "the survivors to take over {:?} of {}",
                kill.tasks, self.jobs[kill.victim].name
            ),
            || {
                let created: Vec<String> = (0..self.jobs.len())
                    .filter(|j| *j != kill.victim && self.live[*j])
                    .flat_map(|j| {
                        let lines = log_lines(&self.jobs[j]);
                        created_tasks(&lines[kill.marks[j].min(lines.len())..])
                    })
                    .collect();
                kill.tasks.iter().all(|t| created.contains(t))
            },
        );
    }
}

/// How [`Crew::kill_rounds`] paces its kills: before each kill a pause of
/// `pause_ms` plus up to `pause_jitter_ms`; before the victim's restart a
/// pause of `down_ms` plus up to `down_jitter_ms`.
pub struct KillPacing {
    pub pause_ms: u64,
    pub pause_jitter_ms: u64,
    pub down_ms: u64,
    pub down_jitter_ms: u64,
}

impl Default for KillPacing {
    fn default() -> Self {
        KillPacing {
            pause_ms: 1500,
            pause_jitter_ms: 1500,
            down_ms: 200,
            down_jitter_ms: 800,
        }
    }
}

impl Crew {
    /// Kills job `i` with SIGKILL once it owns tasks, and reports it. Every
    /// third kill waits until the other jobs took over the victim's tasks
    /// before it restarts; otherwise it is back before its session expires
    /// and usually gets its own tasks again.
    pub fn kill_owner(&mut self, i: usize) {
        let kill = self.kill9_owner(i);
        eprintln!(
            "kill {}: {} owned {:?}",
            self.kills.len(),
            self.jobs[i].name,
            kill.tasks
        );
        if self.kills.len().is_multiple_of(3) {
            self.wait_taken_over(&kill);
        }
    }

    /// `kills` rounds of: pause, [`Crew::kill_owner`] of a job picked by
    /// `seed`'s random sequence, pause, restart it. The pauses are pacing
    /// only: each kill waits for its victim to own tasks.
    pub fn kill_rounds(&mut self, kills: usize, seed: u64, pacing: KillPacing) {
        let mut rng = Rng(seed);
        let n = self.jobs.len() as u64;
        for _ in 0..kills {
            std::thread::sleep(Duration::from_millis(
                pacing.pause_ms + rng.below(pacing.pause_jitter_ms.max(1)),
            ));
            let i = rng.below(n) as usize;
            self.kill_owner(i);
            std::thread::sleep(Duration::from_millis(
                pacing.down_ms + rng.below(pacing.down_jitter_ms.max(1)),
            ));
            self.start(i);
        }
    }
}

/// Produces `records` to `topic` from a background thread in `chunks`
/// batches, 400 ms apart, so kills land while input still arrives.
pub fn produce_paced(
    bs: &str,
    topic: &str,
    records: Vec<kstreams_testkit::TestRecord>,
    chunks: usize,
) -> std::thread::JoinHandle<()> {
    let (bs, topic) = (bs.to_string(), topic.to_string());
    std::thread::spawn(move || {
        for chunk in records.chunks(records.len().div_ceil(chunks).max(1)) {
            kstreams_testkit::produce(&bs, &topic, chunk).expect("produce");
            std::thread::sleep(Duration::from_millis(400));
        }
    })
}
