//! A job under test as a child process: start, peak RSS, CPU time, kill -9,
//! SIGTERM; and a [`Sampler`] of its `/proc/<pid>/status` (peak RSS and
//! thread count while it runs).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
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

/// The highest values seen in a process's `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcPeaks {
    /// Peak `VmHWM` (the kernel's own high-water mark of the RSS), KiB.
    pub hwm_kib: u64,
    /// Peak `VmRSS` sampled, KiB.
    pub rss_kib: u64,
    /// Peak `Threads`.
    pub threads: u64,
    /// Status texts that had at least one of those fields.
    pub samples: u64,
}

/// The value of `field` (e.g. `VmHWM`) in a `/proc/<pid>/status` text: the
/// first number after `field:` (kB for the memory fields).
fn status_value(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

impl ProcPeaks {
    /// Folds one `/proc/<pid>/status` text in.
    pub fn add(&mut self, status: &str) {
        let hwm = status_value(status, "VmHWM");
        let rss = status_value(status, "VmRSS");
        let threads = status_value(status, "Threads");
        if hwm.is_none() && rss.is_none() && threads.is_none() {
            return;
        }
        self.samples += 1;
        self.hwm_kib = self.hwm_kib.max(hwm.unwrap_or(0));
        self.rss_kib = self.rss_kib.max(rss.unwrap_or(0));
        self.threads = self.threads.max(threads.unwrap_or(0));
    }

    /// Peak RSS in MiB: the larger of the peak VmHWM and the peak VmRSS seen.
    pub fn rss_mib(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.hwm_kib.max(self.rss_kib) as f64 / 1024.0)
    }

    /// Peak thread count.
    pub fn peak_threads(&self) -> Option<u64> {
        (self.samples > 0 && self.threads > 0).then_some(self.threads)
    }
}

/// Reads `/proc/<pid>/status` every interval on a thread of its own until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ProcPeaks>,
}

impl Sampler {
    pub fn start(pid: u32, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            let mut peaks = ProcPeaks::default();
            let sample = |peaks: &mut ProcPeaks| {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    peaks.add(&text);
                }
            };
            while !flag.load(Ordering::SeqCst) {
                sample(&mut peaks);
                std::thread::sleep(every);
            }
            // VmHWM covers the time since the last sample; Threads does not.
            sample(&mut peaks);
            peaks
        });
        Sampler { stop, thread }
    }

    /// Stops sampling (after one last sample) and returns the peaks.
    pub fn stop(self) -> ProcPeaks {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tword_count\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t 1234567 kB\nVmHWM:\t  150000 kB\nVmRSS:\t  140000 kB\n\
        RssAnon:\t  100000 kB\nThreads:\t53\nSigQ:\t0/94000\n";

    #[test]
    fn status_fields_are_read_by_exact_name() {
        assert_eq!(status_value(STATUS, "VmHWM"), Some(150_000));
        assert_eq!(status_value(STATUS, "VmRSS"), Some(140_000));
        assert_eq!(status_value(STATUS, "Threads"), Some(53));
        // `RssAnon` is not `Rss`, and a missing field is None.
        assert_eq!(status_value(STATUS, "Rss"), None);
        assert_eq!(status_value(STATUS, "VmSwap"), None);
    }

    #[test]
    fn peaks_keep_the_highest_of_every_sample() {
        let mut p = ProcPeaks::default();
        assert_eq!((p.rss_mib(), p.peak_threads()), (None, None));
        p.add(STATUS);
        p.add("VmHWM:\t 100 kB\nVmRSS:\t 307200 kB\nThreads:\t611\n");
        // A zombie's status has no memory lines and one thread.
        p.add("Name:\tword_count\nState:\tZ (zombie)\nThreads:\t1\n");
        p.add("not a status file");
        assert_eq!(
            p,
            ProcPeaks {
                hwm_kib: 150_000,
                rss_kib: 307_200,
                threads: 611,
                samples: 3
            }
        );
        assert_eq!(p.rss_mib(), Some(300.0));
        assert_eq!(p.peak_threads(), Some(611));
    }

    #[test]
    fn the_sampler_reads_this_process() {
        let s = Sampler::start(std::process::id(), Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(50));
        let p = s.stop();
        assert!(p.samples >= 1, "{p:?}");
        // The test harness thread, this one and the sampler's.
        assert!(p.peak_threads().unwrap() >= 2, "{p:?}");
        assert!(p.rss_mib().unwrap() > 0.0, "{p:?}");
    }
}
