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
//! How, without touching any thread that is not the runtime's: on Linux a
//! new thread starts with the nice value of the thread that created it.
//! So the runtime creates each of its Kafka clients on a short-lived
//! thread that runs at `background.threads.nice` (`created_lowered`):
//! every thread librdkafka starts for that client, then and later (its
//! broker threads are started by its own main thread), inherits the value.
//! RocksDB's flush and compaction threads are started by the first store
//! that opens, which the runtime also opens that way; they are RocksDB's
//! process-wide pool, so an application that opens its own RocksDB after
//! kstreams shares them (one opened before keeps its own). A commit thread
//! lowers itself when it starts. No thread is ever reniced from outside:
//! the application's own clients and threads keep their priority. Only on
//! Linux; elsewhere, and with 0, nothing changes. Raising a nice value
//! needs no privilege.

use std::sync::atomic::{AtomicI32, Ordering};

/// The nice value stores open with (`created_lowered` around RocksDB's
/// open): set when an application starts, 0 (off) before, e.g. in the test
/// driver. Like RocksDB's block cache, process-wide.
static STORE_OPEN_NICE: AtomicI32 = AtomicI32::new(0);

/// Sets the nice value that stores open with from now on.
pub(crate) fn set_store_open_nice(nice: i32) {
    STORE_OPEN_NICE.store(nice.max(0), Ordering::Relaxed);
}

/// The nice value stores open with.
pub(crate) fn store_open_nice() -> i32 {
    STORE_OPEN_NICE.load(Ordering::Relaxed)
}

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

/// Runs `create` on a new thread at nice value `nice`, so the threads it
/// starts (a Kafka client's, RocksDB's pool) inherit that value; with 0 it
/// runs here. Returns what `create` returns (a panic in it is resumed here).
pub(crate) fn created_lowered<T: Send>(nice: i32, create: impl FnOnce() -> T + Send) -> T {
    if nice <= 0 || !cfg!(target_os = "linux") {
        return create();
    }
    let slot = std::sync::Mutex::new(Some(create));
    let take = |slot: &std::sync::Mutex<Option<_>>| {
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    };
    let ran = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("kstreams-create".into())
            .spawn_scoped(s, || {
                lower_this_thread(nice);
                take(&slot).map(|f| f())
            })
            .map(|h| h.join())
    });
    match ran {
        Ok(Ok(Some(made))) => made,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // No thread could start: create here, at this thread's priority.
        _ => match take(&slot) {
            Some(f) => f(),
            None => unreachable!("the creating thread ran and returned"),
        },
    }
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
    use std::collections::HashSet;
    use std::time::Duration;

    /// The client test counts threads by name: not while another test of
    /// this module starts some.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn nice_of(tid: u32) -> i32 {
        // SAFETY: a plain syscall.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) }
    }

    /// The ids of this process's threads whose name starts with `prefix`.
    fn threads(prefix: &str) -> HashSet<u32> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|n| n.starts_with(prefix))
            })
            .filter_map(|t| t.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// librdkafka's threads once no new one started for 300 ms (a client's
    /// main thread may start broker threads after its creation returned).
    fn settled_rdk_threads() -> HashSet<u32> {
        let mut seen = threads("rdk:");
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(300));
            let now = threads("rdk:");
            if now == seen {
                break;
            }
            seen = now;
        }
        seen
    }

    fn client() -> rdkafka::producer::BaseProducer {
        rdkafka::config::ClientConfig::new()
            // Nothing listens there: the client only starts its threads.
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap()
    }

    #[test]
    fn a_client_created_lowered_runs_all_its_threads_lowered_others_are_untouched() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // The application's own client, made before and after ours.
        let before = threads("rdk:");
        let app_client = client();
        let app_threads: HashSet<u32> =
            settled_rdk_threads().difference(&before).copied().collect();
        assert!(!app_threads.is_empty());
        let before = threads("rdk:");
        let ours = created_lowered(7, client);
        let our_threads: HashSet<u32> =
            settled_rdk_threads().difference(&before).copied().collect();
        assert!(
            our_threads.len() >= 2,
            "a client starts a main and broker threads: {our_threads:?}"
        );
        for tid in &our_threads {
            assert!(
                nice_of(*tid) >= 7,
                "thread {tid} of our client: {}",
                nice_of(*tid)
            );
        }
        for tid in &app_threads {
            assert_eq!(
                nice_of(*tid),
                0,
                "the application's client thread {tid} was reniced"
            );
        }
        // The creating thread is gone; the caller keeps its own priority.
        // SAFETY: gettid has no preconditions.
        assert_eq!(nice_of(unsafe { libc::gettid() } as u32), 0);
        drop((ours, app_client));
    }

    #[test]
    fn created_lowered_returns_what_it_made_and_zero_runs_here() {
        // SAFETY: gettid has no preconditions.
        let here = unsafe { libc::gettid() } as u32;
        let (tid, nice) = created_lowered(5, || {
            // SAFETY: as above.
            let t = unsafe { libc::gettid() } as u32;
            (t, nice_of(t))
        });
        assert_ne!(tid, here);
        assert!(nice >= 5);
        let (tid, _) = created_lowered(0, || (unsafe { libc::gettid() } as u32, ()));
        assert_eq!(tid, here);
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
