//! Incremental assignment (`group.protocol=streams`): the coordinator says
//! which tasks this thread should own, and only the difference moves.
//!
//! Why it is its own path: under the classic protocol every rebalance
//! revokes everything (`on_revoke`, then `on_assign`). Here a task that stays
//! is not touched at all: it keeps processing, and its commits keep their
//! own deadlines. A task that goes is committed and closed, its partitions
//! leave the consumer (`incremental_unassign`); a task that comes is created,
//! restored and its partitions join the consumer at their committed offsets
//! (`incremental_assign`). The coordinator hands a task to its new owner
//! only after the old one reported it released, and a task's input
//! partitions always come together, since they are one task.

use std::collections::BTreeSet;

use super::*;
use crate::kafka::streams_group::Tasks;

impl TaskManager {
    /// The partitions of task `id`: partition `id.partition` of every source
    /// topic of its sub-topology.
    fn partitions_of(&self, id: TaskId) -> Partitions {
        let mut v: Partitions = self
            .shared
            .plan
            .source_topics
            .iter()
            .filter(|(_, s)| **s == id.subtopology)
            .map(|(t, _)| (t.clone(), id.partition))
            .collect();
        v.sort();
        v
    }

    /// Applies the coordinator's assignment and returns the tasks this
    /// thread owns afterwards (to report in the next heartbeat). Warm-up
    /// tasks are kept like standbys.
    pub fn on_tasks_assigned<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        assigned: &Tasks,
    ) -> Result<Tasks> {
        let started = Instant::now();
        let standbys: BTreeSet<TaskId> = assigned
            .standby
            .iter()
            .chain(&assigned.warmup)
            .filter(|id| self.is_task(**id))
            .copied()
            .collect();
        let wanted = &assigned.active;
        let known: Vec<TaskId> = wanted
            .iter()
            .filter(|id| {
                let ok = self.is_task(**id);
                if !ok {
                    tracing::error!(thread = %self.thread_name, task = %id, "the coordinator assigned a task this topology does not have; ignoring it");
                }
                ok
            })
            .copied()
            .collect();
        let wanted: BTreeSet<TaskId> = known.into_iter().collect();
        let revoked: Vec<TaskId> = self
            .active
            .keys()
            .filter(|id| !wanted.contains(id))
            .copied()
            .collect();
        if !revoked.is_empty() {
            self.release(consumer, &revoked)?;
        }
        let added: BTreeMap<TaskId, Partitions> = wanted
            .iter()
            .filter(|id| !self.active.contains_key(id))
            .map(|&id| (id, self.partitions_of(id)))
            .collect();
        // A standby made active here: close it, so the active task opens
        // its stores and restores only from the standby's checkpoint.
        for id in added.keys() {
            if self.close_standby(*id) {
                tracing::info!(thread = %self.thread_name, task = %id, "promoting standby task");
            }
        }
        if !added.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in added.values().flatten() {
                tpl.add_partition(t, *p);
            }
            let ids: Vec<String> = added.keys().map(ToString::to_string).collect();
            let start = self.start_tasks(consumer, added, &tpl)?;
            consumer
                .incremental_assign(&start)
                .map_err(|e| StreamsError::Kafka(format!("assign failed: {e}")))?;
            tracing::info!(thread = %self.thread_name, tasks = ?ids, "tasks started");
        }
        self.set_standbys(&standbys)?;
        self.metrics.set_active(self.active.keys());
        tracing::info!(thread = %self.thread_name,
            standby = ?self.standby.keys().map(ToString::to_string).collect::<Vec<_>>(),
            revoked = ?revoked.iter().map(ToString::to_string).collect::<Vec<_>>(),
            tasks = ?self.active.keys().map(ToString::to_string).collect::<Vec<_>>(),
            elapsed_ms = started.elapsed().as_millis() as u64, "assignment applied");
        let warmup = self
            .standby
            .keys()
            .filter(|id| assigned.warmup.contains(id))
            .copied()
            .collect();
        Ok(Tasks {
            active: self.active.keys().copied().collect(),
            standby: self
                .standby
                .keys()
                .filter(|id| !assigned.warmup.contains(id))
                .copied()
                .collect(),
            warmup,
        })
    }

    /// Whether `id` is a task of this topology.
    fn is_task(&self, id: TaskId) -> bool {
        self.shared
            .plan
            .tasks_per_subtopology
            .get(&id.subtopology)
            .is_some_and(|&n| id.partition >= 0 && (id.partition as usize) < n)
    }

    /// Commits and closes `ids`, and takes their partitions off the
    /// consumer. The other tasks are set aside meanwhile, so their
    /// transactions (and any commit they have in flight) are not touched.
    fn release<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        ids: &[TaskId],
    ) -> Result<()> {
        let mut staying = std::mem::take(&mut self.active);
        for id in ids {
            if let Some(t) = staying.remove(id) {
                self.active.insert(*id, t);
            }
        }
        self.revoking = true;
        let committed = self.commit_all(consumer, true);
        self.revoking = false;
        let leaving = std::mem::replace(&mut self.active, staying);
        let mut tpl = TopicPartitionList::new();
        for (id, mut t) in leaving {
            for p in &t.partitions {
                self.by_partition.remove(p);
                tpl.add_partition(&p.0, p.1);
            }
            join_in_flight(&mut t);
            if committed.is_err() && self.eos() && t.in_txn {
                let _ = abort_polling(&t.producer, Duration::from_secs(5));
            }
            tracing::info!(thread = %self.thread_name, task = %id, "task released to another member");
            t.task.close();
        }
        if tpl.count() > 0 {
            consumer
                .incremental_unassign(&tpl)
                .map_err(|e| StreamsError::Kafka(format!("unassign failed: {e}")))?;
        }
        // A failed commit of a released task is that task's affair: its
        // new owner resumes from the last commit that did succeed.
        if let Err(e) = committed {
            tracing::warn!(thread = %self.thread_name, error = %e, "committing released tasks failed; their new owner resumes from the last commit");
        }
        Ok(())
    }

    /// The coordinator fenced this member: every task is closed without
    /// committing (its new owner resumes from the last commit), and every
    /// partition leaves the consumer.
    pub fn on_tasks_lost<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        self.close_all_dirty();
        self.metrics.set_active(std::iter::empty());
        let _ = consumer.unassign();
    }
}
