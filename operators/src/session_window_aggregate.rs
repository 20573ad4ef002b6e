//! Session window aggregation: `count`, `reduce` and `aggregate` on a
//! [`SessionWindowedKStream`].
//!
//! A session of a key is a run of its records with no gap longer than the
//! inactivity gap; its window is `[first, last]` (both ends included). For
//! each record at `t` the processor:
//! 1. moves the store's clock to `t` (the operator's stream time, kept in
//!    the changelogged store, so it survives restarts);
//! 2. finds the key's sessions that `t` touches (end ≥ `t - gap` and
//!    start ≤ `t + gap`) and merges them with the record into one session;
//! 3. if that merged session is closed (its end + gap + grace is before the
//!    stream time) the record is dropped and counted as `late`; otherwise
//!    the merged-away sessions are deleted and forwarded as tombstones
//!    (`None`), and the merged session is stored and forwarded.
//!
//! A session can grow until the stream time passes its end plus the gap;
//! the grace is counted from there. A closed session is final: a late
//! record that would have bridged it into a newer session starts or joins
//! that newer one only (and if the result is closed too, it is dropped), so
//! a final result already emitted by `suppress` is never revised. So `suppress(until_window_closes)` on a
//! session table emits a session once the stream time reaches
//! `end + gap + grace + 1`.
//!
//! Sessions live in a window store (`StoreBuilder::window`) keyed by key,
//! start and end, segmented by end, kept for gap + grace (or longer with
//! [`Materialized::with_retention`]).

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{
    Processor, ProcessorContext, Record, Result, SerdeRef, Serdes, StoreBuilder, StreamsError,
    WindowStore, Windowed,
};

use crate::{KTable, Materialized, SessionWindowedKStream, SessionWindows};

pub(crate) struct SessionWindowAggregateProcessor<K, V, VA, A, M> {
    store_name: String,
    windows: SessionWindows,
    aggregator: Arc<A>,
    merger: Arc<M>,
    store: Option<WindowStore<K, VA>>,
    _types: PhantomData<fn(V)>,
}

impl<K, V, VA, A, M> Processor<K, V, Windowed<K>, Option<VA>>
    for SessionWindowAggregateProcessor<K, V, VA, A, M>
where
    K: Clone + 'static,
    V: 'static,
    VA: Clone + 'static,
    A: Fn(&K, V, Option<VA>) -> VA + 'static,
    M: Fn(&K, VA, VA) -> VA + 'static,
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
                "session aggregation over '{}' received a record before init",
                self.store_name
            ))
        })?;
        let Record {
            key,
            value,
            timestamp: ts,
            headers,
        } = record;
        let gap = self.windows.gap_ms;
        store.advance(ts)?;
        let stream_time = store.observed_stream_time()?;
        let touching: Vec<(i64, i64, VA)> = store
            .fetch(&key, ts.saturating_sub(gap), i64::MAX)?
            .into_iter()
            .filter(|(start, end, _)| {
                // Closed sessions are final: never merged again.
                *start <= ts.saturating_add(gap)
                    && end
                        .saturating_add(gap)
                        .saturating_add(self.windows.grace_ms)
                        >= stream_time
            })
            .collect();
        let start = touching.iter().map(|(s, _, _)| *s).fold(ts, i64::min);
        let end = touching.iter().map(|(_, e, _)| *e).fold(ts, i64::max);
        let close = end
            .saturating_add(gap)
            .saturating_add(self.windows.grace_ms);
        if close < stream_time {
            ctx.record_dropped("late");
            return Ok(());
        }
        let mut agg: Option<VA> = None;
        for (s, e, v) in touching {
            agg = Some(match agg {
                Some(a) => (self.merger)(&key, a, v),
                None => v,
            });
            if (s, e) != (start, end) {
                store.delete(&key, s, e)?;
                ctx.forward(Record {
                    key: Windowed::new(key.clone(), s, e),
                    value: None,
                    timestamp: ts,
                    headers: headers.clone(),
                })?;
            }
        }
        let agg = (self.aggregator)(&key, value, agg);
        store.put(&key, start, end, &agg)?;
        ctx.forward(Record {
            key: Windowed::new(key, start, end),
            value: Some(agg),
            timestamp: ts,
            headers,
        })
    }
}

impl<K: Clone + Send + Sync + 'static, V: Clone + 'static> SessionWindowedKStream<K, V> {
    fn aggregate_impl<VA, A, M>(
        &self,
        aggregator: A,
        merger: M,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        op: &str,
    ) -> KTable<Windowed<K>, VA>
    where
        VA: Clone + 'static,
        A: Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
        M: Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
    {
        let prefix = "KSTREAM-SESSION-AGGREGATE-";
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
            "session",
            op,
            &materialized,
            default_value_serde,
        );
        let windows = self.windows;
        // A session [start, end] can grow until end + gap; it is final one
        // grace period later.
        let open_for = windows.gap_ms.saturating_add(windows.grace_ms);
        builder.set_window_grace(&name, open_for.saturating_add(1));
        let (Some(ks), Some(vs)) = (key_serde, value_serde) else {
            return table;
        };
        let (aggregator, merger) = (Arc::new(aggregator), Arc::new(merger));
        let sn = store_name.clone();
        let added = builder.add_processor::<K, V, Windowed<K>, Option<VA>, _, _>(
            &name,
            move || SessionWindowAggregateProcessor {
                store_name: sn.clone(),
                windows,
                aggregator: aggregator.clone(),
                merger: merger.clone(),
                store: None,
                _types: PhantomData,
            },
            &[&input.node],
        );
        if added {
            let needed = open_for.saturating_add(1);
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

    /// Counts the records of each session.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, SessionWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::with_inactivity_gap_no_grace(Duration::from_millis(10)))
    ///     // Keep closed sessions queryable for a minute (default: gap + grace).
    ///     .count(Materialized::as_("sessions").with_retention(Duration::from_secs(60)));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// for ts in [0, 5, 30] { d.pipe_str("clicks", Some("ann"), "x", ts).unwrap(); }
    /// let store = d.window_store::<String, u64>("sessions").unwrap();
    /// assert_eq!(store.all().unwrap(), vec![
    ///     (Windowed::new("ann".to_string(), 0, 5), 2),
    ///     (Windowed::new("ann".to_string(), 30, 30), 1),
    /// ]);
    /// ```
    pub fn count(&self, materialized: Materialized<K, u64>) -> KTable<Windowed<K>, u64> {
        self.aggregate_impl(
            |_: &K, _: V, n: Option<u64>| n.unwrap_or(0) + 1,
            |_: &K, a: u64, b: u64| a + b,
            materialized,
            Some(Serdes::u64_be()),
            "count",
        )
    }

    /// Combines the values of each session: `reducer(aggregate, value)`;
    /// merging sessions combines their aggregates the same way.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, SessionWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("pages", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::with_inactivity_gap_no_grace(Duration::from_millis(10)))
    ///     .reduce(|a, b| format!("{a}>{b}"), Materialized::as_("paths"));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// for (p, ts) in [("/", 0), ("/cart", 4)] { d.pipe_str("pages", Some("ann"), p, ts).unwrap(); }
    /// let store = d.window_store::<String, String>("paths").unwrap();
    /// assert_eq!(store.all().unwrap(), vec![(Windowed::new("ann".to_string(), 0, 4), "/>/cart".to_string())]);
    /// ```
    pub fn reduce<R>(&self, reducer: R, materialized: Materialized<K, V>) -> KTable<Windowed<K>, V>
    where
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let reducer = Arc::new(reducer);
        let r = reducer.clone();
        let serde = self.grouped.grouped_value_serde();
        self.aggregate_impl(
            move |_: &K, v: V, agg: Option<V>| match agg {
                Some(a) => r(a, v),
                None => v,
            },
            move |_: &K, a: V, b: V| reducer(a, b),
            materialized,
            serde,
            "reduce",
        )
    }

    /// Folds the values of each session: `initializer()` for a new session,
    /// `aggregator(&key, value, aggregate)` per record, and
    /// `merger(&key, a, b)` when a record bridges two sessions.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, SessionWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("sales", Consumed::with(Serdes::string(), Serdes::i64_text()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(SessionWindows::with_inactivity_gap_and_grace(Duration::from_millis(10), Duration::from_millis(10)))
    ///     .aggregate(|| 0i64, |_, v, s| s + v, |_, a, b| a + b,
    ///         Materialized::as_("revenue").with_value_serde(Serdes::i64_be()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// // 10 arrives late but within grace and bridges the two sessions.
    /// for (v, ts) in [("5", 0), ("7", 20), ("1", 10)] { d.pipe_str("sales", Some("shop"), v, ts).unwrap(); }
    /// let store = d.window_store::<String, i64>("revenue").unwrap();
    /// assert_eq!(store.all().unwrap(), vec![(Windowed::new("shop".to_string(), 0, 20), 13)]);
    /// ```
    pub fn aggregate<VA, I, A, M>(
        &self,
        initializer: I,
        aggregator: A,
        merger: M,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA>
    where
        VA: Clone + 'static,
        I: Fn() -> VA + Send + Sync + 'static,
        A: Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        M: Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
    {
        self.aggregate_impl(
            move |k: &K, v: V, agg: Option<VA>| aggregator(k, v, agg.unwrap_or_else(&initializer)),
            merger,
            materialized,
            None,
            "aggregate",
        )
    }
}
