//! Support for tests that run the example binaries against the real broker.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kstreams_testkit::{ConsumedRecord, Isolation, committed_offsets, read_to_end};

/// Path of an example binary built by `cargo test` next to this test binary.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "example binary {} not built; run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A running example job (one instance).
pub struct Job {
    pub name: String,
    bin: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    pub log: PathBuf,
    starts: usize,
}

impl Job {
    pub fn new(bin: &str, name: &str, args: Vec<String>, log_dir: &Path) -> Job {
        Job {
            name: name.to_string(),
            bin: example_bin(bin),
            args,
            child: None,
            log: log_dir.join(format!("{name}.log")),
            starts: 0,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        self.starts += 1;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("KSTREAMS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn example");
        self.child = Some(child);
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status();
        }
    }

    /// SIGKILL: no shutdown hook runs.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    pub fn sigstop(&self) {
        self.signal("STOP");
    }

    pub fn sigcont(&self) {
        self.signal("CONT");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        self.wait(timeout)
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let c = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
    }
}

/// Common arguments of the example binaries.
pub fn job_args(
    bootstrap: &str,
    app: &str,
    input: &str,
    output: &str,
    state_dir: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--bootstrap-servers".into(),
        bootstrap.into(),
        "--application-id".into(),
        app.into(),
        "--input-topic".into(),
        input.into(),
        "--output-topic".into(),
        output.into(),
        "--state-dir".into(),
        state_dir.display().to_string(),
        // Short session timeout so a killed instance's tasks move quickly.
        "--config".into(),
        "session.timeout.ms=6000".into(),
        "--config".into(),
        "heartbeat.interval.ms=1000".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Reads `topic` read_committed and groups the values by key, in offset order per partition.
pub fn values_by_key(bootstrap: &str, topic: &str) -> HashMap<String, Vec<String>> {
    let records: Vec<ConsumedRecord> =
        read_to_end(bootstrap, topic, Isolation::ReadCommitted).expect("read output");
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for r in records {
        if let (Some(k), Some(v)) = (r.key_str(), r.value_str()) {
            out.entry(k).or_default().push(v);
        }
    }
    out
}

/// Waits until `check` returns true, or panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// An env-configurable size (so a larger soak can be run by hand).
pub fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A temp dir for state, broker data and job logs: deleted when the test
/// passes (the kill tests leave up to a gigabyte), kept when it fails so the
/// logs can be read. Declare it first in a test, so it is dropped last,
/// after the jobs and brokers that write into it.
pub struct WorkDir(PathBuf);

impl std::ops::Deref for WorkDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for WorkDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed; its work dir is kept: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh [`WorkDir`] named after the test and this process.
pub fn work_dir(name: &str) -> WorkDir {
    let d = std::env::temp_dir().join(format!("kstreams-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    WorkDir(d)
}

/// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An HTTP response as seen by [`http_get`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET http://<addr><path>` with a plain HTTP/1.1 request; `None` if the
/// listener cannot be reached (not up yet, or gone).
pub fn http_get(addr: &str, path: &str) -> Option<HttpResponse> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// The sum of the samples of metric `name` in a Prometheus text exposition
/// whose labels contain every `label="value"` of `filters` (a value ending
/// in `*` matches by prefix). `None` if no sample matched.
pub fn metric_sum(text: &str, name: &str, filters: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (metric, labels) = match series.split_once('{') {
            Some((m, l)) => (m, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let labels: HashMap<&str, &str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let matches = filters.iter().all(|(k, want)| match labels.get(k) {
            Some(v) => match want.strip_suffix('*') {
                Some(prefix) => v.starts_with(prefix),
                None => v == want,
            },
            None => false,
        });
        if matches && let Ok(v) = value.parse::<f64>() {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// `text` without ANSI escape sequences (the example binaries colour their
/// log lines), so log lines can be matched as plain text.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters... final byte in '@'..='~'.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until group `app` has committed `want[p]` records of every
/// partition `p` of `input` and the job (serving `/metrics` on `metrics`)
/// reports no consumer lag on its internal topics, twice in a row: the
/// downstream sub-topologies are done too (the lag is measured from the
/// consumer's position, which moves past commit markers, unlike a committed
/// offset). Fails if the job exits or nothing settles within 180 s.
pub fn wait_drained(
    bs: &str,
    app: &str,
    input: &str,
    want: &[usize],
    job: &mut Job,
    metrics: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut settled = 0;
    while settled < 2 {
        assert!(job.is_running(), "job exited early:\n{}", job.log_tail(40));
        // Right after start the group may have no coordinator yet: ask again.
        let committed = committed_offsets(bs, app, input).unwrap_or_default();
        let input_done = want
            .iter()
            .enumerate()
            .all(|(p, n)| committed.get(&(p as i32)) == Some(&(*n as i64)));
        let text = http_get(metrics, "/metrics")
            .map(|r| r.body)
            .unwrap_or_default();
        let lag = metric_sum(
            &text,
            "kstreams_consumer_lag",
            &[("topic", &format!("{app}-*"))],
        );
        settled = if input_done && lag == Some(0.0) {
            settled + 1
        } else {
            0
        };
        assert!(
            Instant::now() < deadline,
            "not consumed: input committed {committed:?} of {want:?}; internal topics' lag {lag:?}\n{}",
            job.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(1100));
    }
}

/// SIGTERMs `job`, waits for it and asserts a clean exit.
pub fn stop_cleanly(job: &mut Job) {
    let status = job.terminate(Duration::from_secs(60)).expect("job exit");
    assert!(
        status.success(),
        "{} exited with {status}:\n{}",
        job.name,
        job.log_tail(40)
    );
}

/// The samples of `name` summed over the job's `/metrics` at `addr`.
pub fn scrape_sum(addr: &str, name: &str) -> Option<f64> {
    let text = http_get(addr, "/metrics")?.body;
    metric_sum(&text, name, &[])
}

// ---------------------------------------------------------------------
// The crash tests (tests/crash.rs, tests/windows_crash.rs): several jobs
// that serve /metrics, killed and restarted, drained and stopped before
// their outputs are read, with proof that every kill hit a task owner.
// ---------------------------------------------------------------------

/// A loopback `host:port` for a job's `--metrics-listen`.
pub fn metrics_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Every line of `job`'s log (all its runs), without ANSI colours.
pub fn log_lines(job: &Job) -> Vec<String> {
    strip_ansi(&std::fs::read_to_string(&job.log).unwrap_or_default())
        .lines()
        .map(str::to_string)
        .collect()
}

/// The tasks of the last "assignment applied" line of `lines`, e.g.
/// `["0_0", "1_0"]` for `... assignment applied ... tasks=["0_0", "1_0"] ...`
/// (runtime/src/kafka/task_manager/mod.rs); `None` before the first one.
pub fn last_applied_tasks(lines: &[String]) -> Option<Vec<String>> {
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("assignment applied"))?;
    let list = line.split("tasks=[").nth(1)?.split(']').next()?;
    Some(
        list.split(',')
            .map(|t| t.trim().trim_matches('"').to_string())
            .filter(|t| !t.is_empty())
            .collect(),
    )
}

/// The tasks of the "creating task ... task=0_1" lines of `lines`: a task
/// new to its instance, whose producer ran `init_transactions` (fencing
/// any earlier producer of its `transactional.id` and aborting its open
/// transaction) and whose stores were restored from their changelogs.
pub fn created_tasks(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains("creating task"))
        .filter_map(|l| l.rsplit("task=").next())
        .map(|t| t.trim().to_string())
        .collect()
}

/// The samples of metric `name` in a Prometheus text exposition: labels and value.
pub fn metric_samples(text: &str, name: &str) -> Vec<(HashMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, labels) = match series.split_once('{') {
            Some((m, l)) => (m, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let labels = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        out.push((labels, value));
    }
    out
}

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
            // (topic, partition) -> lag, over the live jobs.
            let mut lags: HashMap<(String, i32), f64> = HashMap::new();
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
                for (labels, v) in metric_samples(&text, "kstreams_consumer_lag") {
                    if let (Some(t), Some(p)) = (labels.get("topic"), labels.get("partition"))
                        && t.starts_with(&format!("{app}-"))
                        && let Ok(p) = p.parse::<i32>()
                    {
                        *lags.entry((t.clone(), p)).or_default() += v;
                    }
                }
            }
            let internal: Vec<String> = kstreams_testkit::topic_names(bs)
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.starts_with(&format!("{app}-")) && t.ends_with("-repartition"))
                .collect();
            for t in &internal {
                for (p, e) in kstreams_testkit::end_offsets(bs, t).unwrap_or_default() {
                    match lags.get(&(t.clone(), p)) {
                        _ if e == 0 => {}
                        Some(l) if *l == 0.0 => {}
                        l => why.push(format!("{t}/{p}: lag {l:?}")),
                    }
                }
            }
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

/// Waits until no transaction is open on `topic` (its last stable offset
/// is its end on every partition), so a `read_committed` read sees every
/// committed transaction: a commit's markers land after the producer was
/// told the commit succeeded.
pub fn wait_no_open_transactions(bs: &str, topic: &str) {
    wait_until(
        Duration::from_secs(120),
        &format!("no open transaction on {topic}"),
        || match (
            kstreams_testkit::stable_offsets(bs, topic),
            kstreams_testkit::end_offsets(bs, topic),
        ) {
            (Ok(s), Ok(e)) => !e.is_empty() && s == e,
            _ => false,
        },
    );
}

/// The changelog records restored according to the "restore done ...
/// records=N" lines of `lines` (runtime/src/kafka/changelog_reader.rs).
pub fn restored_records(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter(|l| l.contains("restore done"))
        .filter_map(|l| {
            l.split(" records=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
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
