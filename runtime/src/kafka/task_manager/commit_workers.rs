//! `CommitWorkers`: the threads that run the tasks' transaction calls
//! (`CommitJob::run`) while the stream thread goes on processing.
//!
//! Why a pool of kept threads rather than a thread per commit: a thread per
//! commit meant, with 128 tasks committing every 100 ms, 1,280 thread starts
//! and exits a second (a stack mapped and unmapped, a priority set) on a
//! machine whose cores the broker shares. Here a worker that finished a job
//! waits for the next one, and a new worker starts only when every worker is
//! busy, so the pool grows to the number of commits that run at once and no
//! further. A worker idle for `IDLE_EXIT` exits.
//!
//! A job can hang in librdkafka for ever (see `abandon` in `txn_steps.rs`):
//! its worker is then simply lost to the pool, which starts another when
//! it needs one. A job that panics is reported to its handle as a panic,
//! and the worker goes on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a worker with nothing to do stays.
const IDLE_EXIT: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send>;

/// A thread's pool of commit workers.
pub(crate) struct CommitWorkers {
    name: String,
    nice: i32,
    jobs: Sender<Job>,
    queue: Arc<Mutex<Receiver<Job>>>,
    /// Workers waiting for a job.
    idle: Arc<AtomicUsize>,
}

/// The result of a job handed to the pool.
pub(crate) struct JobHandle<R> {
    slot: Arc<Slot<R>>,
}

struct Slot<R> {
    done: AtomicBool,
    /// `Err` if the job panicked.
    result: Mutex<Option<std::thread::Result<R>>>,
}

impl<R> JobHandle<R> {
    /// Whether the job has finished (or panicked).
    pub fn is_finished(&self) -> bool {
        self.slot.done.load(Ordering::Acquire)
    }

    /// The job's result, waiting for it if need be; `Err` if it panicked.
    pub fn join(self) -> std::thread::Result<R> {
        while !self.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.slot
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| Err(Box::new("the job's result was taken twice")))
    }
}

impl CommitWorkers {
    /// A pool whose workers run at `nice` (`background.threads.nice`).
    /// They are named `kstreams-commit` whatever the stream thread's name:
    /// Linux keeps 15 bytes of a thread's name, and `<application.id>-StreamThread-1-commit`
    /// cut to 15 could not be told from the stream thread in `top` or `perf`.
    pub fn new(nice: i32) -> CommitWorkers {
        let (jobs, queue) = channel();
        CommitWorkers {
            name: "kstreams-commit".to_string(),
            nice,
            jobs,
            queue: Arc::new(Mutex::new(queue)),
            idle: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `job` on an idle worker, or on a new one if all are busy.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> std::io::Result<JobHandle<R>> {
        let slot = Arc::new(Slot {
            done: AtomicBool::new(false),
            result: Mutex::new(None),
        });
        let out = slot.clone();
        let boxed: Job = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(job));
            *out.result
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
            out.done.store(true, Ordering::Release);
        });
        // Claim an idle worker, or start one: a job never waits in the
        // queue behind a busy (or hung) worker.
        let claimed = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !claimed {
            self.spawn()?;
        }
        self.jobs
            .send(boxed)
            .map_err(|_| std::io::Error::other("the commit workers' queue is closed"))?;
        Ok(JobHandle { slot })
    }

    /// Starts a worker that takes the next job from the queue, then waits
    /// for more (counted idle) until `IDLE_EXIT` passes without one.
    fn spawn(&self) -> std::io::Result<()> {
        let queue = self.queue.clone();
        let idle = self.idle.clone();
        let nice = self.nice;
        std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                crate::kafka::priority::lower_this_thread(nice);
                // The first job was queued for this worker by `run`.
                let mut timeout = None;
                loop {
                    let next = {
                        let q = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        match timeout {
                            None => q.recv().map_err(|_| RecvTimeoutError::Disconnected),
                            Some(t) => q.recv_timeout(t),
                        }
                    };
                    match next {
                        Ok(job) => job(),
                        Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => {
                            // Leave unless `run` claimed this idle slot
                            // meanwhile (then a job is coming).
                            if idle
                                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok()
                            {
                                return;
                            }
                            timeout = None;
                            continue;
                        }
                    }
                    idle.fetch_add(1, Ordering::AcqRel);
                    timeout = Some(IDLE_EXIT);
                }
            })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_finished_worker_takes_the_next_job_instead_of_a_new_thread() {
        let pool = CommitWorkers::new(0);
        for i in 0..20 {
            let h = pool.run(move || (i, std::thread::current().id())).unwrap();
            let (v, _) = h.join().unwrap();
            assert_eq!(v, i);
            // Give the worker time to count itself idle again.
            while pool.idle.load(Ordering::Acquire) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let a = pool
            .run(|| std::thread::current().id())
            .unwrap()
            .join()
            .unwrap();
        while pool.idle.load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let b = pool
            .run(|| std::thread::current().id())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(a, b, "one worker served both jobs");
    }

    #[test]
    fn jobs_run_at_once_even_while_a_worker_is_stuck() {
        let pool = CommitWorkers::new(0);
        let (release, stuck) = mpsc::channel::<()>();
        let hung = pool
            .run(move || {
                let _ = stuck.recv();
                1
            })
            .unwrap();
        // Each of these must not wait for the stuck one.
        for i in 0..5 {
            assert_eq!(pool.run(move || i * 10).unwrap().join().unwrap(), i * 10);
        }
        assert!(!hung.is_finished());
        release.send(()).unwrap();
        assert_eq!(hung.join().unwrap(), 1);
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_pool_goes_on() {
        let pool = CommitWorkers::new(0);
        let h = pool.run(|| -> u32 { panic!("boom") }).unwrap();
        assert!(h.join().is_err());
        assert_eq!(pool.run(|| 7).unwrap().join().unwrap(), 7);
    }
}
