//! `dedupe`: drop records whose id was already seen within a time to live.
//!
//! Why: producers retry, upstream systems re-send, and at-least-once
//! consumers re-deliver. Inside an exactly-once task, a store of recently
//! seen ids makes such re-sent input disappear; under at-least-once it turns
//! duplicate deliveries into no-ops.
//!
//! How: the id of each record (`id_extractor(&key, &value)`) is looked up in
//! a TTL store (`StoreBuilder::ttl`, changelogged like any store, so the
//! memory of ids survives restarts and task moves). Time is stream time
//! (the largest record timestamp the task has seen), so results do not
//! depend on processing speed or on when a replay happens:
//! - id present and not expired → the record is dropped and counted as
//!   `duplicate` (`ProcessorContext::record_dropped`);
//! - otherwise → the id is stored, expiring at stream time + ttl, and the
//!   record is forwarded.
//!
//! The window starts when an id is first accepted; duplicates do not extend
//! it. A re-send at or after `ttl` is accepted again (and starts a new
//! window). Expired ids are deleted by a sweep that starts every `ttl / 2`
//! of stream time and reads the store in steps of `SWEEP_STEP` entries:
//! one step at once, the rest on a wall-clock punctuator every
//! `SWEEP_EVERY`, so a store of millions of ids never stalls the task for
//! long (see `TtlStore::start_sweep`).
//!
//! Partitioning: the store is per task, so duplicates are found only if
//! they reach the same task, i.e. if the id follows from the record's
//! partitioning key (e.g. the key is the id). Dedupe before re-keying.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use kstreams_runtime::{
    Processor, ProcessorContext, PunctuationType, PunctuatorId, Record, Result, Serdes,
    StoreBuilder, StreamsError, Sweep, TtlStore,
};

/// Entries one sweep step reads (a few milliseconds of work).
const SWEEP_STEP: usize = 20_000;
/// How often (wall-clock time) a sweep in progress takes its next step.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

use crate::{Deduplicated, KStream};

pub(crate) struct DedupeProcessor<F, I, K, V> {
    store_name: String,
    extractor: Arc<F>,
    purge_every: Duration,
    store: Option<TtlStore<I, ()>>,
    /// The stream-time punctuator that starts a sweep.
    purge_punctuator: Option<PunctuatorId>,
    /// The sweep in progress.
    sweep: Option<Sweep>,
    _types: PhantomData<fn(K, V)>,
}

impl<F, I, K, V> Processor<K, V, K, V> for DedupeProcessor<F, I, K, V>
where
    F: Fn(&K, &V) -> I + 'static,
    I: 'static,
    K: Clone + 'static,
    V: Clone + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<K, V>) -> Result<()> {
        self.store = Some(ctx.ttl_store::<I, ()>(&self.store_name)?);
        self.purge_punctuator = Some(ctx.schedule(self.purge_every, PunctuationType::StreamTime));
        ctx.schedule(SWEEP_EVERY, PunctuationType::WallClockTime);
        Ok(())
    }

    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<K, V>) -> Result<()> {
        let store = self.store.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "dedupe over '{}' received a record before init",
                self.store_name
            ))
        })?;
        let now = ctx.stream_time();
        let id = (self.extractor)(&record.key, &record.value);
        if !store.put_if_absent(&id, &(), now)? {
            ctx.record_dropped("duplicate");
            return Ok(());
        }
        ctx.forward(record)
    }

    fn punctuate(
        &mut self,
        id: PunctuatorId,
        timestamp: i64,
        _ctx: &mut ProcessorContext<K, V>,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        // A sweep still running when the next is due just goes on: it
        // purges at an older time, and the next one catches up.
        if Some(id) == self.purge_punctuator && self.sweep.is_none() {
            self.sweep = Some(store.start_sweep(timestamp));
        }
        if let Some(sweep) = &mut self.sweep
            && store.sweep_step(sweep, SWEEP_STEP)?
        {
            self.sweep = None;
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Drops records whose id (`id_extractor(&key, &value)`) was seen within
    /// the last `ttl` of stream time; counts them as `duplicate`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Deduplicated, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("payments", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .dedupe(|id, _| id.clone(), Deduplicated::with("seen-payments", Serdes::string(), Duration::from_secs(60)))
    ///     .to("unique-payments", Produced::default());
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("payments", Some("p1"), "10 EUR", 1_000).unwrap();
    /// d.pipe_str("payments", Some("p1"), "10 EUR", 2_000).unwrap(); // re-sent
    /// assert_eq!(d.read_output("unique-payments").len(), 1);
    /// let dropped: u64 = d.dropped_records().iter()
    ///     .filter(|((_, reason), _)| reason == "duplicate").map(|(_, n)| n).sum();
    /// assert_eq!(dropped, 1);
    /// ```
    pub fn dedupe<I, F>(&self, id_extractor: F, deduplicated: Deduplicated<I>) -> KStream<K, V>
    where
        I: 'static,
        F: Fn(&K, &V) -> I + Send + Sync + 'static,
    {
        let Deduplicated {
            store_name,
            id_serde,
            ttl,
            persistent,
            name,
        } = deduplicated;
        let name = name.unwrap_or_else(|| self.builder.next_name("KSTREAM-DEDUPE-"));
        if ttl.as_millis() == 0 {
            self.builder.fail(StreamsError::Topology(format!(
                "dedupe '{name}' over store '{store_name}': the ttl must be at least 1 ms"
            )));
        }
        let extractor = Arc::new(id_extractor);
        let purge_every = (ttl / 2).max(Duration::from_millis(1));
        let sn = store_name.clone();
        let out = self.add_child(
            name.clone(),
            move || DedupeProcessor {
                store_name: sn.clone(),
                extractor: extractor.clone(),
                purge_every,
                store: None,
                purge_punctuator: None,
                sweep: None,
                _types: PhantomData,
            },
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.repartition_required,
        );
        let mut store = StoreBuilder::ttl(store_name, id_serde, Serdes::unit(), ttl);
        if !persistent {
            store = store.in_memory();
        }
        self.builder
            .with_topology(|t| t.add_state_store(store, &[&name]).map(|_| ()));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::kstream::test_util::*;
    use crate::{Consumed, Deduplicated, Produced, StreamsBuilder};
    use kstreams_runtime::{Serdes, Topology, TopologyTestDriver};

    use super::{SWEEP_EVERY, SWEEP_STEP};

    /// Records keyed by id; the value is a payload. TTL 10 s.
    fn topology(in_memory: bool) -> Topology {
        let b = StreamsBuilder::new();
        let mut d = Deduplicated::with("seen", Serdes::string(), Duration::from_secs(10));
        if in_memory {
            d = d.in_memory();
        }
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .dedupe(|k, _| k.clone(), d)
            .to("out", Produced::default());
        b.build().unwrap()
    }

    fn duplicates(d: &TopologyTestDriver) -> u64 {
        d.dropped_records()
            .iter()
            .filter(|((node, reason), _)| {
                node == "KSTREAM-DEDUPE-0000000001" && reason == "duplicate"
            })
            .map(|(_, n)| *n)
            .sum()
    }

    #[test]
    fn duplicates_within_the_ttl_are_dropped_and_counted() {
        for in_memory in [false, true] {
            let mut d = driver(topology(in_memory));
            d.pipe_str("in", Some("a"), "1", 1_000).unwrap();
            d.pipe_str("in", Some("b"), "2", 2_000).unwrap();
            d.pipe_str("in", Some("a"), "1 again", 3_000).unwrap();
            d.pipe_str("in", Some("b"), "2 again", 11_999).unwrap();
            assert_eq!(kv(&d.read_output("out")), pairs(&[("a", "1"), ("b", "2")]));
            assert_eq!(duplicates(&d), 2);
        }
    }

    #[test]
    fn an_id_is_accepted_again_once_its_ttl_has_passed_in_stream_time() {
        let mut d = driver(topology(false));
        d.pipe_str("in", Some("a"), "first", 0).unwrap();
        d.pipe_str("in", Some("a"), "dup", 9_999).unwrap();
        // Stream time reaches 10 000 = first sighting + ttl: expired.
        d.pipe_str("in", Some("a"), "again", 10_000).unwrap();
        d.pipe_str("in", Some("a"), "dup of again", 19_999).unwrap();
        d.pipe_str("in", Some("a"), "third", 20_000).unwrap();
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[("a", "first"), ("a", "again"), ("a", "third")])
        );
        assert_eq!(duplicates(&d), 2);
    }

    #[test]
    fn an_abort_rolls_stream_time_back_so_reprocessing_decides_the_same() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .dedupe(
                |id, _| id.clone(),
                Deduplicated::with("seen", Serdes::string(), Duration::from_secs(10)),
            )
            .to("out", Produced::with(Serdes::string(), Serdes::string()));
        let mut d = TopologyTestDriver::builder(b.build().unwrap())
            .commit_every(1000)
            .build()
            .unwrap();
        d.pipe_str("in", Some("o1"), "first", 0).unwrap();
        d.commit().unwrap();
        // Within the TTL: a duplicate. Then stream time jumps past it.
        let uncommitted = |d: &mut TopologyTestDriver| {
            d.pipe_str("in", Some("o1"), "re-sent", 5_000).unwrap();
            d.pipe_str("in", Some("o2"), "other", 20_000).unwrap();
        };
        uncommitted(&mut d);
        let first_pass: Vec<_> = d
            .read_output("out")
            .iter()
            .map(|r| r.key_str().map(String::from))
            .collect();
        d.abort();
        // Processed again after the abort: stream time is back at 0, so
        // the re-sent order is within its TTL again and dropped again.
        uncommitted(&mut d);
        d.commit().unwrap();
        let keys: Vec<_> = d
            .read_output("out")
            .iter()
            .map(|r| r.key_str().map(String::from))
            .collect();
        assert_eq!(first_pass, [Some("o1".to_string()), Some("o2".to_string())]);
        assert_eq!(keys, [Some("o2".to_string())], "after the abort");
    }

    #[test]
    fn ttl_is_measured_in_stream_time_not_record_time() {
        let mut d = driver(topology(false));
        d.pipe_str("in", Some("a"), "first", 0).unwrap();
        d.pipe_str("in", Some("x"), "moves stream time", 30_000)
            .unwrap();
        // A late re-send of "a" (old timestamp): stream time is 30 000, so
        // "a" has expired and is accepted again.
        d.pipe_str("in", Some("a"), "late", 5).unwrap();
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[("a", "first"), ("x", "moves stream time"), ("a", "late")])
        );
    }

    #[test]
    fn expired_ids_are_purged_from_the_store_and_changelog() {
        let mut d = driver(topology(false));
        d.pipe_str("in", Some("a"), "1", 0).unwrap();
        d.pipe_str("in", Some("b"), "2", 1_000).unwrap();
        // The purge punctuator runs every 5 s of stream time; at 15 000
        // both ids (expiring at 10 000 and 11 000) are removed.
        d.pipe_str("in", Some("c"), "3", 15_000).unwrap();
        let changelog = d.all_records("test-app-seen-changelog");
        // One entry per id: a, b and c written, a and b deleted. (Within
        // one commit the order is the write set's.)
        let mut keys: Vec<(Vec<u8>, bool)> = changelog
            .iter()
            .map(|r| (r.key.clone().unwrap(), r.value.is_some()))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                (b"da".to_vec(), false),
                (b"da".to_vec(), true),
                (b"db".to_vec(), false),
                (b"db".to_vec(), true),
                (b"dc".to_vec(), true),
            ],
            "{changelog:?}"
        );
    }

    #[test]
    fn a_large_store_is_swept_in_steps_on_wall_clock_time() {
        let mut d = driver(topology(false));
        let ids = SWEEP_STEP * 2 + 5;
        for i in 0..ids {
            d.pipe_str("in", Some(&format!("id-{i:06}")), "x", 0)
                .unwrap();
        }
        let tombstones = |d: &TopologyTestDriver| {
            d.all_records("test-app-seen-changelog")
                .iter()
                .filter(|r| r.value.is_none())
                .count()
        };
        assert_eq!(tombstones(&d), 0);
        // Stream time 20 000: every id has expired; the sweep starts and
        // takes its first step at once.
        d.pipe_str("in", Some("late"), "y", 20_000).unwrap();
        assert_eq!(tombstones(&d), SWEEP_STEP);
        // An expired id the sweep has not reached yet already counts as
        // gone: it is accepted again (now expiring at 30 000).
        d.pipe_str("in", Some("id-030000"), "again", 20_000)
            .unwrap();
        assert_eq!(d.read_output("out").len(), ids + 2);
        d.advance_wall_clock(SWEEP_EVERY).unwrap();
        // The second step's ids, except the one accepted again.
        assert_eq!(tombstones(&d), SWEEP_STEP * 2 - 1);
        d.advance_wall_clock(SWEEP_EVERY).unwrap();
        // The rest; "late" (written at 20 000) stays.
        assert_eq!(tombstones(&d), ids - 1);
        d.advance_wall_clock(SWEEP_EVERY * 5).unwrap();
        assert_eq!(tombstones(&d), ids - 1, "the sweep is done");
        d.pipe_str("in", Some("id-030000"), "dup", 20_001).unwrap();
        d.pipe_str("in", Some("late"), "dup", 20_001).unwrap();
        assert_eq!(duplicates(&d), 2);
    }

    #[test]
    fn dedupe_is_named_and_keeps_serdes() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .dedupe(
                |_, v| v.clone(),
                Deduplicated::with("ids", Serdes::string(), Duration::from_secs(1))
                    .with_name("drop-dups"),
            )
            .to("out", Produced::default());
        let text = b.build().unwrap().describe().to_string();
        assert!(
            text.contains("Processor: drop-dups (stores: [ids])"),
            "{text}"
        );
    }

    #[test]
    fn zero_ttl_is_an_error() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .dedupe(
                |k, _| k.clone(),
                Deduplicated::with("ids", Serdes::string(), Duration::ZERO),
            );
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("the ttl must be at least 1 ms"), "{err}");
    }
}
