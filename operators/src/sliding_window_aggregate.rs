//! Sliding window aggregation: `count`, `reduce` and `aggregate` on a
//! [`SlidingWindowedKStream`].
//!
//! Sliding windows have a fixed size `D` (the time difference) and include
//! both ends, `[start, start + D]`. As in Kafka Streams, only windows whose
//! set of records is distinct exist: for each record at `r`, its *left*
//! window `[r - D, r]` and, once a later record falls within `D` of it, its
//! *right* window `[r + 1, r + 1 + D]`.
//!
//! How: the operator keeps the key's raw records of the last `D + grace`
//! in a window store (`<store>-records`, a list of values per timestamp)
//! and, for each record at `t`, recomputes the windows that changed: its
//! left window, the left windows of records at `t ..= t + D` and the right
//! windows of records at `t - D - 1 ..= t - 1` (these contain `t`), plus
//! the right window of `t` if it is new. Each is folded from the raw
//! records in timestamp order, stored in the table's window store and
//! forwarded. Recomputing costs the records of one window per update and
//! keeps the operator obviously right.
//!
//! Late records: a record whose own left window has closed (`t + grace`
//! before the stream time) is dropped and counted as `late`; windows that
//! closed are never updated. `suppress(until_window_closes)` emits a
//! window once the stream time reaches `end + grace + 1`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kstreams_runtime::{
    Processor, ProcessorContext, Record, Result, SerdeRef, Serdes, StoreBuilder, StreamsError,
    WindowStore, Windowed,
};

use crate::{KTable, Materialized, SlidingWindowedKStream, SlidingWindows};

/// The raw records (a list per timestamp) and the windows' aggregates.
type Stores<K, V, VA> = (WindowStore<K, Vec<V>>, WindowStore<K, VA>);

pub(crate) struct SlidingWindowAggregateProcessor<K, V, VA, F> {
    store_name: String,
    records_name: String,
    windows: SlidingWindows,
    aggregator: Arc<F>,
    stores: Option<Stores<K, V, VA>>,
}

impl<K, V, VA, F> Processor<K, V, Windowed<K>, Option<VA>>
    for SlidingWindowAggregateProcessor<K, V, VA, F>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<Windowed<K>, Option<VA>>) -> Result<()> {
        self.stores = Some((
            ctx.window_store(&self.records_name)?,
            ctx.window_store(&self.store_name)?,
        ));
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<Windowed<K>, Option<VA>>,
    ) -> Result<()> {
        let (raw, aggs) = self.stores.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "sliding aggregation over '{}' received a record before init",
                self.store_name
            ))
        })?;
        let (d, grace) = (self.windows.difference_ms, self.windows.grace_ms);
        let t = record.timestamp;
        raw.advance(t)?;
        aggs.advance(t)?;
        let now = raw.observed_stream_time()?;
        if t.saturating_add(grace) < now {
            ctx.record_dropped("late");
            return Ok(());
        }
        let key = &record.key;
        let mut at_t = raw.get(key, t, t)?.unwrap_or_default();
        at_t.push(record.value.clone());
        raw.put(key, t, t, &at_t)?;
        // Records near t: ts -> values, in timestamp order.
        let near: BTreeMap<i64, Vec<V>> = raw
            .fetch(
                key,
                t.saturating_sub(2 * d + 1),
                t.saturating_add(2 * d + 1),
            )?
            .into_iter()
            .map(|(ts, _, vs)| (ts, vs))
            .collect();
        // Window starts whose content changed (they contain t) ...
        let mut starts: Vec<i64> = vec![t.saturating_sub(d)];
        for &r in near.keys() {
            if r >= t && r <= t.saturating_add(d) {
                starts.push(r.saturating_sub(d)); // left window of r
            }
            if r >= t.saturating_sub(d + 1) && r < t {
                starts.push(r.saturating_add(1)); // right window of r
            }
        }
        // ... and the right window of t, if a later record falls in it.
        let right_of_t = t.saturating_add(1);
        let has_later = near
            .keys()
            .any(|&r| r > t && r <= right_of_t.saturating_add(d));
        if has_later
            && aggs
                .get(key, right_of_t, right_of_t.saturating_add(d))?
                .is_none()
        {
            starts.push(right_of_t);
        }
        starts.sort_unstable();
        starts.dedup();
        for start in starts {
            let end = start.saturating_add(d);
            if end.saturating_add(grace) < now {
                continue; // closed: never updated again
            }
            let mut agg: Option<VA> = None;
            for (_, values) in near.range(start..=end) {
                for v in values {
                    agg = Some((self.aggregator)(key, v.clone(), agg));
                }
            }
            let Some(agg) = agg else { continue };
            aggs.put(key, start, end, &agg)?;
            ctx.forward(Record {
                key: Windowed::new(key.clone(), start, end),
                value: Some(agg),
                timestamp: t,
                headers: record.headers.clone(),
            })?;
        }
        Ok(())
    }
}

impl<K: Clone + Send + Sync + 'static, V: Clone + 'static> SlidingWindowedKStream<K, V> {
    fn aggregate_impl<VA, F>(
        &self,
        aggregator: F,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        op: &str,
    ) -> KTable<Windowed<K>, VA>
    where
        VA: Clone + 'static,
        F: Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
    {
        let prefix = "KSTREAM-SLIDING-AGGREGATE-";
        let crate::windowed_by::WindowedAggregation {
            builder,
            name,
            store_name,
            input,
            key_serde,
            value_serde,
            table,
        } = crate::windowed_by::windowed_aggregation(
            &self.grouped,
            prefix,
            "sliding",
            op,
            &materialized,
            default_value_serde,
        );
        let records_name = format!("{store_name}-records");
        let g = &self.grouped;
        let record_serde = g.stream.resolve_serde(
            g.grouped_value_serde(),
            &None,
            &format!("sliding {op}() into store '{store_name}' (its records)"),
            "Grouped::with",
        );
        let windows = self.windows;
        // Inclusive ends: a window is final once stream time > end + grace.
        builder.set_window_grace(&name, windows.grace_ms.saturating_add(1));
        let (Some(ks), Some(vs), Some(rs)) = (key_serde, value_serde, record_serde) else {
            return table;
        };
        let aggregator = Arc::new(aggregator);
        let (sn, rn) = (store_name.clone(), records_name.clone());
        let added = builder.add_processor::<K, V, Windowed<K>, Option<VA>, _, _>(
            &name,
            move || SlidingWindowAggregateProcessor {
                store_name: sn.clone(),
                records_name: rn.clone(),
                windows,
                aggregator: aggregator.clone(),
                stores: None,
            },
            &[&input.node],
        );
        if added {
            let needed = windows
                .difference_ms
                .saturating_add(windows.grace_ms)
                .saturating_add(1);
            let retention = materialized.retention_ms().unwrap_or(needed).max(needed);
            let retention = std::time::Duration::from_millis(retention as u64);
            let mut aggs = StoreBuilder::window(store_name, ks.clone(), vs, retention);
            let mut records = StoreBuilder::window(
                records_name,
                ks,
                crate::stream_stream_join::list(rs),
                retention,
            );
            if !materialized.persistent {
                aggs = aggs.in_memory();
                records = records.in_memory();
            }
            if !materialized.logged {
                aggs = aggs.with_logging_disabled();
                records = records.with_logging_disabled();
            }
            builder.with_topology(|t| {
                t.add_state_store(aggs, &[&name])?;
                t.add_state_store(records, &[&name])?;
                Ok(())
            });
        }
        table
    }

    /// Counts the records of each sliding window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, SlidingWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SlidingWindows::with_time_difference_and_grace(Duration::from_millis(10), Duration::ZERO))
    ///     .count(Materialized::as_("sliding"));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// for ts in [10, 15] { d.pipe_str("clicks", Some("ann"), "x", ts).unwrap(); }
    /// let store = d.window_store::<String, u64>("sliding").unwrap();
    /// assert_eq!(store.all().unwrap(), vec![
    ///     (Windowed::new("ann".to_string(), 0, 10), 1),
    ///     (Windowed::new("ann".to_string(), 5, 15), 2),
    ///     (Windowed::new("ann".to_string(), 11, 21), 1),
    /// ]);
    /// ```
    pub fn count(&self, materialized: Materialized<K, u64>) -> KTable<Windowed<K>, u64> {
        self.aggregate_impl(
            |_: &K, _: V, n: Option<u64>| n.unwrap_or(0) + 1,
            materialized,
            Some(Serdes::u64_be()),
            "count",
        )
    }

    /// Combines the values of each sliding window, in timestamp order.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, SlidingWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("temps", Consumed::with(Serdes::string(), Serdes::i64_text()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SlidingWindows::with_time_difference_and_grace(Duration::from_millis(10), Duration::ZERO))
    ///     .reduce(|a, b| a.max(b), Materialized::as_("max"));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("temps", Some("oslo"), "7", 3).unwrap();
    /// let store = d.window_store::<String, i64>("max").unwrap();
    /// assert_eq!(store.all().unwrap(), vec![(Windowed::new("oslo".to_string(), -7, 3), 7)]);
    /// ```
    pub fn reduce<R>(&self, reducer: R, materialized: Materialized<K, V>) -> KTable<Windowed<K>, V>
    where
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let serde = self.grouped.grouped_value_serde();
        self.aggregate_impl(
            move |_: &K, v: V, agg: Option<V>| match agg {
                Some(a) => reducer(a, v),
                None => v,
            },
            materialized,
            serde,
            "reduce",
        )
    }

    /// Folds the values of each sliding window, in timestamp order:
    /// `initializer()`, then `aggregator(&key, value, aggregate)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, SlidingWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("sales", Consumed::with(Serdes::string(), Serdes::i64_text()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SlidingWindows::with_time_difference_and_grace(Duration::from_millis(10), Duration::ZERO))
    ///     .aggregate(|| 0i64, |_, v, s| s + v, Materialized::as_("sum").with_value_serde(Serdes::i64_be()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// for (v, ts) in [("5", 10), ("7", 12)] { d.pipe_str("sales", Some("shop"), v, ts).unwrap(); }
    /// let store = d.window_store::<String, i64>("sum").unwrap();
    /// assert_eq!(store.fetch(&"shop".into(), 12, 12).unwrap(), vec![(2, 12, 12)]);
    /// ```
    pub fn aggregate<VA, I, A>(
        &self,
        initializer: I,
        aggregator: A,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        VA: Clone + 'static,
        I: Fn() -> VA + Send + Sync + 'static,
        A: Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    {
        self.aggregate_impl(
            move |k: &K, v: V, agg: Option<VA>| aggregator(k, v, agg.unwrap_or_else(&initializer)),
            materialized,
            None,
            "aggregate",
        )
    }
}
