//! Support for tests that run the example binaries against the real broker.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kstreams_testkit::{ConsumedRecord, Isolation, read_to_end};

mod commit_watch;
mod crew;
mod metrics;
mod word_count;
#[allow(unused_imports)]
pub use commit_watch::*;
#[allow(unused_imports)]
pub use crew::*;
pub use metrics::*;
#[allow(unused_imports)]
pub use word_count::*;

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

    /// The last `n` lines of the log at ERROR level or from the binary's
    /// own exit message (`Error: ...`): why a job that stopped stopped.
    pub fn error_lines(&self, n: usize) -> Vec<String> {
        let errors: Vec<String> = log_lines(self)
            .into_iter()
            .filter(|l| l.contains(" ERROR ") || l.starts_with("Error") || l.contains("panicked"))
            .collect();
        errors[errors.len().saturating_sub(n)..].to_vec()
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
    // KSTREAMS_TEST_GROUP_PROTOCOL=classic|streams runs every example job
    // of the suite on that group protocol.
    if let Ok(p) = std::env::var("KSTREAMS_TEST_GROUP_PROTOCOL") {
        v.push("--config".into());
        v.push(format!("group.protocol={p}"));
    }
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
