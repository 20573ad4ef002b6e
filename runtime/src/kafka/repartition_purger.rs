//! `RepartitionPurger`: deletes repartition records once they are consumed.
//!
//! Repartition topics are created with `retention.ms=-1`: time-based
//! retention would delete records by their (event) timestamps, so a job
//! reprocessing old data would lose records before its downstream tasks
//! read them. Instead, like Kafka Streams, each thread deletes what its
//! tasks have committed (`DeleteRecords` up to the committed offset), at
//! most every `repartition.purge.interval.ms` (30 s by default). A failed
//! purge is retried with the next offsets; nothing depends on it.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Result, StreamsError};

pub(crate) struct RepartitionPurger {
    admin: AdminClient<DefaultClientContext>,
    topics: HashSet<String>,
    interval: Duration,
    last: Instant,
    /// What was last asked for, so unchanged offsets are not re-sent.
    purged: BTreeMap<(String, i32), i64>,
}

impl RepartitionPurger {
    /// A purger for `topics` (the resolved repartition topic names); `None`
    /// when the topology has none.
    pub fn new(
        base: &ClientConfig,
        topics: HashSet<String>,
        interval: Duration,
        nice: i32,
    ) -> Result<Option<Self>> {
        if topics.is_empty() {
            return Ok(None);
        }
        let config = super::config::producer_client(base);
        let admin = super::priority::created_lowered(nice, || config.create()).map_err(|e| {
            StreamsError::Kafka(format!("cannot create the repartition purge client: {e}"))
        })?;
        Ok(Some(RepartitionPurger {
            admin,
            topics,
            interval,
            last: Instant::now(),
            purged: BTreeMap::new(),
        }))
    }

    /// After a successful commit: deletes records before the committed
    /// offsets of repartition partitions, if the interval has passed.
    pub fn maybe_purge(&mut self, committed: impl Iterator<Item = (String, i32, i64)>) {
        if self.last.elapsed() < self.interval {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in committed {
            if offset <= 0 || !self.topics.contains(&topic) {
                continue;
            }
            let key = (topic, partition);
            if self.purged.get(&key) == Some(&offset) {
                continue;
            }
            if tpl
                .add_partition_offset(&key.0, partition, Offset::Offset(offset))
                .is_ok()
            {
                self.purged.insert(key, offset);
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // The interval counts from the last request sent, not from the
        // last call that found nothing new.
        self.last = Instant::now();
        tracing::debug!(
            partitions = tpl.count(),
            "purging consumed repartition records"
        );
        // The request is sent now; its result is not awaited (a failed
        // purge is retried with the next offsets).
        drop(self.admin.delete_records(&tpl, &AdminOptions::new()));
    }
}
