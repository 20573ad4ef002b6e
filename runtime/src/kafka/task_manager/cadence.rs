//! When each task commits (exactly-once): on its own deadline, a commit
//! interval after its previous commit began (see
//! `TaskManager::next_commit_due` for why).

use super::*;

impl TaskManager {
    /// When the next exactly-once commit is due: the earliest deadline of
    /// the tasks with something to commit and no commit running, each a
    /// commit interval after that task's previous commit began (now, for a
    /// task whose processor asked to commit).
    ///
    /// Why each task keeps its own deadline rather than the thread ticking
    /// once per interval for all of them: a task still committing at the
    /// thread's tick waited for the next tick, up to a whole interval more,
    /// before its held-back records went out. Measured while commits still
    /// took ~100 ms (before `flush_promptly`): word count at 50,000 lines/s,
    /// p50 / p99 587 / 963 ms with the tick, 436 / 776 ms with deadlines
    /// (one run). Now a task commits again as soon as its commit is reaped
    /// and its interval has passed, and the tasks' commits spread out
    /// instead of all starting at once.
    pub fn next_commit_due(&self) -> Option<Instant> {
        let interval = self.shared.config.commit_interval;
        let now = Instant::now();
        self.active
            .values()
            .filter_map(|t| t.commit_deadline(interval, now))
            .min()
    }
}

impl ActiveTask {
    /// When this task's next exactly-once commit is due (see
    /// `TaskManager::next_commit_due`); `None` while it commits or has
    /// nothing to commit.
    pub(super) fn commit_deadline(&self, interval: Duration, now: Instant) -> Option<Instant> {
        commit_deadline(
            self.in_flight.is_some(),
            self.task.commit_needed(),
            self.task.commit_requested(),
            self.commit_started,
            interval,
            now,
        )
    }
}

/// A commit interval after the previous commit began; at once if a
/// processor asked to commit; never while a commit runs or with nothing to
/// commit.
fn commit_deadline(
    committing: bool,
    needed: bool,
    requested: bool,
    started: Instant,
    interval: Duration,
    now: Instant,
) -> Option<Instant> {
    if committing || !needed {
        None
    } else if requested {
        Some(now)
    } else {
        Some(started + interval)
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    #[test]
    fn a_task_whose_commit_outlasted_the_interval_is_due_again_at_once() {
        let now = Instant::now();
        // Its previous commit began 150 ms ago and has just been reaped: due
        // 50 ms ago, so the thread commits it now, not at a later tick.
        let started = now - Duration::from_millis(150);
        let due = commit_deadline(false, true, false, started, INTERVAL, now).unwrap();
        assert!(due <= now);
        assert_eq!(now - due, Duration::from_millis(50));
    }

    #[test]
    fn a_task_that_began_committing_recently_waits_out_its_own_interval() {
        let now = Instant::now();
        let started = now - Duration::from_millis(30);
        let due = commit_deadline(false, true, false, started, INTERVAL, now).unwrap();
        assert_eq!(due - now, Duration::from_millis(70));
    }

    #[test]
    fn committing_or_idle_tasks_have_no_deadline_and_a_requested_commit_is_due_now() {
        let now = Instant::now();
        let long_ago = now - Duration::from_secs(10);
        assert_eq!(
            commit_deadline(true, true, true, long_ago, INTERVAL, now),
            None
        );
        assert_eq!(
            commit_deadline(false, false, false, long_ago, INTERVAL, now),
            None
        );
        assert_eq!(
            commit_deadline(false, true, true, now, INTERVAL, now),
            Some(now)
        );
    }
}
