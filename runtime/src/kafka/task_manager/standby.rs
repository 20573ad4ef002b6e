//! Standby tasks (`num.standby.replicas`, `group.protocol=streams`): a task's
//! stores kept close to its changelogs' ends on an instance that does not
//! process it, so that when the task moves there it replays only the lag,
//! never its whole store.
//!
//! A standby is a [`StreamTask`] that is never initialized and never
//! processes: no producer (its `transactional.id` belongs to the active
//! owner), no input partitions. Its stores are caught up from the
//! changelogs, read `read_committed`, by the thread's `ChangelogReader` at
//! most once per commit interval; each round writes the records and the
//! changelog checkpoint to RocksDB, as a restore does. When the coordinator
//! makes it active here, the standby is closed and the active task opens the
//! same stores; its restore starts at the standby's checkpoint.

use std::collections::BTreeSet;

use super::*;
use crate::task_context::RecordCollector;

/// The collector of a standby: it never processes, so nothing is sent.
struct NoOutput;

impl RecordCollector for NoOutput {
    fn send(
        &mut self,
        topic: &str,
        _partition: Option<i32>,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        _timestamp: i64,
        _headers: &Headers,
    ) -> Result<()> {
        Err(StreamsError::IllegalState(format!(
            "a standby task sent a record to '{topic}'; standbys only restore"
        )))
    }
    fn last_offset(&self, _topic: &str, _partition: i32) -> Option<i64> {
        None
    }
}

pub(super) struct StandbyTask {
    task: StreamTask,
    /// Restore figures of this standby (not the task's active metrics).
    progress: Arc<super::super::metrics::TaskStats>,
    /// Changelog records applied in the last update round: how far behind
    /// the changelogs' ends the standby was then.
    last_lag: u64,
    /// Records applied since it was created.
    applied: u64,
}

impl TaskManager {
    fn create_standby(&self, id: TaskId) -> Result<StandbyTask> {
        // No record cache: a standby never processes.
        let task = StreamTask::new(self.task_config(id, Box::new(NoOutput), 0)?)?;
        Ok(StandbyTask {
            task,
            progress: Arc::default(),
            last_lag: 0,
            applied: 0,
        })
    }

    /// Makes the thread's standbys exactly `wanted` (minus the tasks it
    /// runs as active): closes the others, creates the new ones (caught up
    /// at the next [`TaskManager::update_standbys`]).
    pub(super) fn set_standbys(&mut self, wanted: &BTreeSet<TaskId>) -> Result<()> {
        let gone: Vec<TaskId> = self
            .standby
            .keys()
            .filter(|id| !wanted.contains(id) || self.active.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            self.close_standby(id);
        }
        for &id in wanted {
            if self.active.contains_key(&id) || self.standby.contains_key(&id) {
                continue;
            }
            tracing::info!(thread = %self.thread_name, task = %id, "creating standby task");
            let s = self.create_standby(id)?;
            self.standby.insert(id, s);
        }
        self.standby_due = Instant::now();
        Ok(())
    }

    /// Closes standby `id` (if any); its stores stay on disk, checkpointed.
    pub(super) fn close_standby(&mut self, id: TaskId) -> bool {
        match self.standby.remove(&id) {
            Some(mut s) => {
                tracing::info!(thread = %self.thread_name, task = %id, applied = s.applied, "closing standby task");
                s.task.close();
                true
            }
            None => false,
        }
    }

    /// The standby tasks this thread holds.
    pub fn standby_ids(&self) -> BTreeSet<TaskId> {
        self.standby.keys().copied().collect()
    }

    /// Catches every standby up with its changelogs, at most once per
    /// commit interval.
    pub fn update_standbys(&mut self) -> Result<()> {
        if self.standby.is_empty() || Instant::now() < self.standby_due {
            return Ok(());
        }
        let mut targets: Vec<RestoreTarget<'_>> = Vec::new();
        let mut ids = Vec::new();
        let progress: Vec<_> = self.standby.values().map(|s| s.progress.clone()).collect();
        for ((id, s), p) in self.standby.iter_mut().zip(&progress) {
            ids.push(*id);
            targets.push(RestoreTarget {
                task: &mut s.task,
                progress: p,
            });
        }
        // At most a commit interval per round: a standby far behind (new,
        // or its instance restarted) catches up over several rounds while
        // the active tasks go on.
        let budget = self
            .shared
            .config
            .commit_interval
            .max(Duration::from_millis(50));
        let stats = match self.restore.restore_all_quietly(&mut targets, budget) {
            Ok(s) => s,
            Err(e) => {
                // A standby that cannot catch up must not stop the active
                // tasks: try again in a while.
                drop(targets);
                tracing::warn!(thread = %self.thread_name, error = %e, "standby tasks could not catch up; retrying in 5 s");
                self.standby_due = Instant::now() + Duration::from_secs(5);
                return Ok(());
            }
        };
        drop(targets);
        let mut lags = Vec::new();
        for (id, st) in ids.into_iter().zip(stats) {
            if let Some(s) = self.standby.get_mut(&id) {
                s.last_lag = st.records;
                s.applied += st.records;
                lags.push((id, s.last_lag, s.applied));
            }
        }
        self.metrics.set_standbys(lags);
        self.standby_due = Instant::now()
            + self
                .shared
                .config
                .commit_interval
                .max(Duration::from_millis(100));
        Ok(())
    }
}
