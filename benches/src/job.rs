//! A job under test as a child process: start, peak RSS, CPU time, kill -9, SIGTERM.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// User + system CPU seconds of process `pid` (all its threads) so far.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

pub struct Job {
    child: Option<Child>,
    /// When it was spawned.
    pub started: Instant,
    /// Its stderr.
    pub log: PathBuf,
}

impl Job {
    /// Spawns `argv` with stdout discarded and stderr appended to `log`.
    pub fn spawn(argv: &[String], log: &Path) -> Result<Job, String> {
        let err = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("opening {}: {e}", log.display()))?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .env(
                "RUST_LOG",
                std::env::var("KSTREAMS_BENCH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", argv[0]))?;
        Ok(Job {
            child: Some(child),
            started: Instant::now(),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn status_field(&self, field: &str) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        text.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// Peak resident set size so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        self.status_field("VmHWM:").map(|kb| kb as f64 / 1024.0)
    }

    /// User + system CPU seconds of the process (all its threads) so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        process_cpu_secs(self.pid()?)
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own, not yet reaped child.
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL. Returns whether it exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while let Some(c) = self.child.as_mut() {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
                return true;
            }
            if Instant::now() > deadline {
                self.kill9();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// The last `n` lines of the job's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
    }
}
