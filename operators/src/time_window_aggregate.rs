//! Tumbling and hopping window aggregation: `count`, `reduce` and
//! `aggregate` on a [`TimeWindowedKStream`].
//!
//! For each record the processor:
//! 1. moves the window store's clock to the record's timestamp (the store
//!    keeps the largest timestamp this operator has seen, *its* stream
//!    time, and keeps it across restarts because the clock is part of the
//!    changelogged store); this also drops expired time segments;
//! 2. for each window `[start, end)` containing the timestamp
//!    ([`TimeWindows::windows_for`]): if the window is closed (`end + grace
//!    <= stream time`) the record is dropped for that window and counted as
//!    `late`; otherwise the window's aggregate is read, folded, written back
//!    and forwarded as `(Windowed<K>, Some(aggregate))`.
//!
//! Every update is forwarded (no record cache): windowed results are
//! usually followed by `suppress(until_window_closes)`, which keeps only the
//! final one. The store (`StoreBuilder::window`) keeps windows for the
//! window size plus the grace period (or [`Materialized::with_retention`]
//! if longer), and drops older ones a segment at a time.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{
    Processor, ProcessorContext, Record, Result, SerdeRef, Serdes, StoreBuilder, StreamsError,
    WindowStore, Windowed,
};

use crate::{KTable, Materialized, TimeWindowedKStream, TimeWindows};

pub(crate) struct TimeWindowAggregateProcessor<K, V, VA, F> {
    store_name: String,
    windows: TimeWindows,
    aggregator: Arc<F>,
    store: Option<WindowStore<K, VA>>,
    _types: PhantomData<fn(V)>,
}

impl<K, V, VA, F> Processor<K, V, Windowed<K>, Option<VA>>
    for TimeWindowAggregateProcessor<K, V, VA, F>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<Windowed<K>, Option<VA>>) -> Result<()> {
        self.store = Some(ctx.window_store::<K, VA>(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, V>,
        ctx: &mut ProcessorContext<Windowed<K>, Option<VA>>,
    ) -> Result<()> {
        let store = self.store.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "windowed aggregation over '{}' received a record before init",
                self.store_name
            ))
        })?;
        let ts = record.timestamp;
        store.advance(ts)?;
        let stream_time = store.observed_stream_time()?;
        let close_before = stream_time.saturating_sub(self.windows.grace_ms);
        for (start, end) in self.windows.windows_for(ts) {
            if end <= close_before {
                ctx.record_dropped("late");
                continue;
            }
            let old = store.get(&record.key, start, end)?;
            let new = (self.aggregator)(&record.key, record.value.clone(), old);
            store.put(&record.key, start, end, &new)?;
            ctx.forward(Record {
                key: Windowed::new(record.key.clone(), start, end),
                value: Some(new),
                timestamp: ts,
                headers: record.headers.clone(),
            })?;
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> TimeWindowedKStream<K, V> {
    fn aggregate_impl<VA, F>(
        &self,
        prefix: &str,
        aggregator: F,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        op: &str,
    ) -> KTable<Windowed<K>, VA>
    where
        K: Send + Sync,
        VA: Clone + 'static,
        F: Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
    {
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
            "windowed",
            op,
            &materialized,
            default_value_serde,
        );
        builder.set_window_grace(&name, self.windows.grace_ms);
        let (Some(ks), Some(vs)) = (key_serde, value_serde) else {
            return table;
        };
        let windows = self.windows;
        let aggregator = Arc::new(aggregator);
        let sn = store_name.clone();
        let added = builder.add_processor::<K, V, Windowed<K>, Option<VA>, _, _>(
            &name,
            move || TimeWindowAggregateProcessor {
                store_name: sn.clone(),
                windows,
                aggregator: aggregator.clone(),
                store: None,
                _types: PhantomData,
            },
            &[&input.node],
        );
        if added {
            let needed = windows.size_ms.saturating_add(windows.grace_ms);
            let retention = materialized.retention_ms().unwrap_or(needed).max(needed);
            let mut store = StoreBuilder::window(
                store_name,
                ks,
                vs,
                std::time::Duration::from_millis(retention as u64),
            );
            if !materialized.persistent {
                store = store.in_memory();
            }
            if !materialized.logged {
                store = store.with_logging_disabled();
            }
            builder.with_topology(|t| t.add_state_store(store, &[&name]).map(|_| ()));
        }
        table
    }

    /// Counts the records of each key per window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, TimeWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_no_grace(Duration::from_secs(60)))
    ///     .count(Materialized::as_("per-minute"));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("clicks", Some("ann"), "x", 1_000).unwrap();
    /// d.pipe_str("clicks", Some("ann"), "x", 2_000).unwrap();
    /// let store = d.window_store::<String, u64>("per-minute").unwrap();
    /// assert_eq!(store.all().unwrap(), vec![(Windowed::new("ann".to_string(), 0, 60_000), 2)]);
    /// ```
    pub fn count(&self, materialized: Materialized<K, u64>) -> KTable<Windowed<K>, u64>
    where
        K: Send + Sync,
    {
        self.aggregate_impl(
            "KSTREAM-AGGREGATE-",
            |_: &K, _: V, old: Option<u64>| old.unwrap_or(0) + 1,
            materialized,
            Some(Serdes::u64_be()),
            "count",
        )
    }

    /// Combines the values of each key per window: `reducer(aggregate, value)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, TimeWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("temps", Consumed::with(Serdes::string(), Serdes::i64_text()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_no_grace(Duration::from_millis(100)))
    ///     .reduce(|a, b| a.max(b), Materialized::as_("max"));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// for (t, ts) in [("3", 1), ("9", 2), ("4", 3)] { d.pipe_str("temps", Some("oslo"), t, ts).unwrap(); }
    /// let store = d.window_store::<String, i64>("max").unwrap();
    /// assert_eq!(store.all().unwrap(), vec![(Windowed::new("oslo".to_string(), 0, 100), 9)]);
    /// ```
    pub fn reduce<R>(&self, reducer: R, materialized: Materialized<K, V>) -> KTable<Windowed<K>, V>
    where
        K: Send + Sync,
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let serde = self.grouped.grouped_value_serde();
        self.aggregate_impl(
            "KSTREAM-REDUCE-",
            move |_: &K, v: V, old: Option<V>| match old {
                Some(agg) => reducer(agg, v),
                None => v,
            },
            materialized,
            serde,
            "reduce",
        )
    }

    /// Folds the values of each key per window: `initializer()` for a new
    /// window, then `aggregator(&key, value, aggregate)`. The store needs a
    /// value serde ([`Materialized::with_value_serde`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, TimeWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("sales", Consumed::with(Serdes::string(), Serdes::i64_text()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_no_grace(Duration::from_millis(100)))
    ///     .aggregate(|| 0i64, |_, v, sum| sum + v, Materialized::as_("revenue").with_value_serde(Serdes::i64_be()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// for (v, ts) in [("3", 1), ("9", 150)] { d.pipe_str("sales", Some("shop"), v, ts).unwrap(); }
    /// let store = d.window_store::<String, i64>("revenue").unwrap();
    /// assert_eq!(store.fetch(&"shop".into(), 0, 1000).unwrap(), vec![(0, 100, 3), (100, 200, 9)]);
    /// ```
    pub fn aggregate<VA, I, A>(
        &self,
        initializer: I,
        aggregator: A,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        K: Send + Sync,
        VA: Clone + 'static,
        I: Fn() -> VA + Send + Sync + 'static,
        A: Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    {
        self.aggregate_impl(
            "KSTREAM-AGGREGATE-",
            move |k: &K, v: V, old: Option<VA>| aggregator(k, v, old.unwrap_or_else(&initializer)),
            materialized,
            None,
            "aggregate",
        )
    }
}
