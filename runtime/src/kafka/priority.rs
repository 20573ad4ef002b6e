//! Background threads yield the CPU to the stream threads.
//!
//! Why: a stream thread runs its tasks' records one after another, so its
//! CPU time sets the job's throughput. Around it run librdkafka's threads
//! (a few per client, one client per task under exactly-once), RocksDB's
//! flush and compaction threads and the commit threads. On a busy machine
//! (in the benchmarks the broker shares the same two cores) the scheduler
//! gives every runnable thread the same weight, and the stream thread spent
//! as long waiting for a core as running on one (benches/RESULTS.md,
//! session 8). The background work is batched and can wait a few
//! milliseconds; the stream thread's cannot. So background threads run at
//! a higher nice value, `background.threads.nice` (default 10): when both
//! want a core the stream thread gets about ten times their share, and
//! they still run whenever it does not. Measured on the orders job: 1.2×
//! the throughput at 0.87× the CPU.
//!
//! How: a commit thread lowers itself when it starts. librdkafka's and
//! RocksDB's threads, which kstreams does not start itself, are found by
//! their names (`rdk:*`, `rocksdb:*`) in `/proc/self/task`, about once a
//! second, and lowered once each. Only on Linux; elsewhere, and with 0,
//! nothing changes. Raising a thread's nice value needs no privilege;
//! lowering it back would, so a thread is never reset, and a thread whose
//! nice value is already at least the setting is left alone.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the process's threads are looked at.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// Name prefixes of the threads that librdkafka and RocksDB start.
const BACKGROUND_PREFIXES: [&str; 2] = ["rdk:", "rocksdb:"];

/// Threads already lowered (by thread id), and when the last scan ran.
static SCANNED: Mutex<Option<(HashSet<u32>, Instant)>> = Mutex::new(None);

/// Gives the calling thread the nice value `nice` (if it is higher than
/// the thread's own; 0 does nothing).
pub(crate) fn lower_this_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        lower(tid as u32, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Lowers librdkafka's and RocksDB's threads of this process to `nice`, at
/// most once per [`SCAN_EVERY`] (any stream thread may call it each loop).
pub(crate) fn lower_background_threads(nice: i32) {
    if nice <= 0 {
        return;
    }
    let mut scanned = SCANNED.lock().unwrap_or_else(|e| e.into_inner());
    if scanned
        .as_ref()
        .is_some_and(|(_, at)| at.elapsed() < SCAN_EVERY)
    {
        return;
    }
    let (lowered, at) = scanned.get_or_insert_with(|| (HashSet::new(), Instant::now()));
    *at = Instant::now();
    lower_named(nice, lowered);
}

/// One scan of `/proc/self/task`: lowers every background thread not in
/// `lowered`, and forgets threads that are gone.
fn lower_named(nice: i32, lowered: &mut HashSet<u32>) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    let mut alive = HashSet::new();
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        alive.insert(tid);
        if lowered.contains(&tid) {
            continue;
        }
        let Ok(name) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if BACKGROUND_PREFIXES.iter().any(|p| name.starts_with(p)) {
            lower(tid, nice);
            lowered.insert(tid);
        }
    }
    lowered.retain(|tid| alive.contains(tid));
}

/// Sets thread `tid`'s nice value to `nice` unless it is already that high.
#[cfg(target_os = "linux")]
fn lower(tid: u32, nice: i32) {
    // SAFETY: plain syscalls on a thread id; errors are reported in errno
    // (getpriority's -1 is a valid value, so errno is cleared first).
    unsafe {
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        if current >= nice && *libc::__errno_location() == 0 {
            return;
        }
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) != 0 {
            tracing::debug!(
                tid,
                nice,
                error = %std::io::Error::last_os_error(),
                "could not lower a background thread's priority"
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower(_tid: u32, _nice: i32) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn nice_of(tid: u32) -> i32 {
        // SAFETY: a plain syscall.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) }
    }

    /// Starts a thread with this name that reports its id and waits.
    fn parked(name: &str) -> (u32, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
                let _ = stop_rx.recv();
            })
            .unwrap();
        (tid_rx.recv().unwrap(), stop_tx, h)
    }

    #[test]
    fn background_threads_are_found_by_name_and_lowered_once_others_are_not() {
        let (rocks, stop_rocks, h1) = parked("rocksdb:test");
        let (rdk, stop_rdk, h2) = parked("rdk:test");
        let (mine, stop_mine, h3) = parked("stream-test");
        let before = nice_of(mine);
        let mut lowered = HashSet::new();
        lower_named(7, &mut lowered);
        assert_eq!(
            (nice_of(rocks), nice_of(rdk)),
            (before.max(7), before.max(7))
        );
        assert_eq!(
            nice_of(mine),
            before,
            "a thread of another name is left alone"
        );
        assert!(lowered.contains(&rocks) && lowered.contains(&rdk));
        assert!(!lowered.contains(&mine));
        // Never lowered twice, never raised back: a lower setting leaves
        // an already lowered thread as it is.
        let (rocks2, stop_rocks2, h4) = parked("rocksdb:later");
        lower_named(3, &mut lowered);
        assert_eq!(
            (nice_of(rocks), nice_of(rocks2)),
            (before.max(7), before.max(3))
        );
        // Threads that ended are forgotten.
        for (stop, h) in [
            (stop_rocks, h1),
            (stop_rdk, h2),
            (stop_mine, h3),
            (stop_rocks2, h4),
        ] {
            stop.send(()).unwrap();
            h.join().unwrap();
        }
        lower_named(3, &mut lowered);
        assert!(!lowered.contains(&rocks) && !lowered.contains(&rdk));
    }

    #[test]
    fn a_thread_lowers_itself_and_zero_changes_nothing() {
        let got = std::thread::spawn(|| {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            let before = nice_of(tid);
            lower_this_thread(0);
            let after_zero = nice_of(tid);
            lower_this_thread(5);
            (before, after_zero, nice_of(tid))
        })
        .join()
        .unwrap();
        assert_eq!(got.1, got.0);
        assert_eq!(got.2, got.0.max(5));
    }
}
