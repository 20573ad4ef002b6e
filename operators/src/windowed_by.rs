//! `windowed_by`: group a grouped stream further by time window.
//!
//! Like grouping, windowing adds no node by itself: it returns a handle
//! ([`TimeWindowedKStream`], [`SessionWindowedKStream`],
//! [`SlidingWindowedKStream`]) whose `count` / `reduce` / `aggregate` add the
//! windowed aggregation (after a repartition if the key may have changed).
//! The operators live in `time_window_aggregate.rs`,
//! `session_window_aggregate.rs` and `sliding_window_aggregate.rs`.

use crate::{KGroupedStream, SessionWindows, SlidingWindows, TimeWindows};

/// A window definition [`KGroupedStream::windowed_by`] accepts; its output
/// is the matching windowed-stream handle.
///
/// ```
/// use std::time::Duration;
/// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, TimeWindows};
/// use kstreams_runtime::Serdes;
/// let b = StreamsBuilder::new();
/// let windowed = b
///     .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
///     .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
///     .windowed_by(TimeWindows::of_size_with_grace(Duration::from_secs(60), Duration::from_secs(10)));
/// let _counts = windowed.count(Materialized::as_("clicks-per-minute"));
/// ```
pub trait WindowedBy<K, V> {
    /// The handle `windowed_by` returns.
    type Output;
    /// Wraps `grouped` with these windows.
    fn windowed(self, grouped: &KGroupedStream<K, V>) -> Self::Output;
}

/// A grouped stream cut into [`TimeWindows`] (tumbling or hopping).
///
/// ```
/// use std::time::Duration;
/// use kstreams_operators::{Consumed, Grouped, Materialized, StreamsBuilder, TimeWindows};
/// use kstreams_runtime::Serdes;
/// let b = StreamsBuilder::new();
/// let per_minute = b
///     .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
///     .group_by_key(Grouped::default())
///     .windowed_by(TimeWindows::of_size_with_grace(Duration::from_secs(60), Duration::from_secs(10)))
///     .count(Materialized::as_("clicks-per-minute"));
/// assert_eq!(per_minute.queryable_store_name(), Some("clicks-per-minute"));
/// ```
pub struct TimeWindowedKStream<K, V> {
    pub(crate) grouped: KGroupedStream<K, V>,
    pub(crate) windows: TimeWindows,
}

/// A grouped stream cut into [`SessionWindows`].
///
/// ```
/// use std::time::Duration;
/// use kstreams_operators::{Consumed, Grouped, StreamsBuilder, SessionWindows};
/// use kstreams_runtime::Serdes;
/// let b = StreamsBuilder::new();
/// let _sessions = b
///     .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
///     .group_by_key(Grouped::default())
///     .windowed_by(SessionWindows::with_inactivity_gap_no_grace(Duration::from_secs(300)));
/// ```
pub struct SessionWindowedKStream<K, V> {
    pub(crate) grouped: KGroupedStream<K, V>,
    pub(crate) windows: SessionWindows,
}

/// A grouped stream cut into [`SlidingWindows`].
///
/// ```
/// use std::time::Duration;
/// use kstreams_operators::{Consumed, Grouped, StreamsBuilder, SlidingWindows};
/// use kstreams_runtime::Serdes;
/// let b = StreamsBuilder::new();
/// let _sliding = b
///     .stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
///     .group_by_key(Grouped::default())
///     .windowed_by(SlidingWindows::with_time_difference_and_grace(Duration::from_secs(10), Duration::ZERO));
/// ```
pub struct SlidingWindowedKStream<K, V> {
    pub(crate) grouped: KGroupedStream<K, V>,
    pub(crate) windows: SlidingWindows,
}

fn copy<K: Clone + 'static, V: Clone + 'static>(g: &KGroupedStream<K, V>) -> KGroupedStream<K, V> {
    KGroupedStream {
        stream: g.stream.clone(),
        name: g.name.clone(),
        key_serde: g.key_serde.clone(),
        value_serde: g.value_serde.clone(),
        pre_aggregation: g.pre_aggregation,
    }
}

impl<K: Clone + 'static, V: Clone + 'static> WindowedBy<K, V> for TimeWindows {
    type Output = TimeWindowedKStream<K, V>;
    fn windowed(self, grouped: &KGroupedStream<K, V>) -> Self::Output {
        TimeWindowedKStream {
            grouped: copy(grouped),
            windows: self,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> WindowedBy<K, V> for SessionWindows {
    type Output = SessionWindowedKStream<K, V>;
    fn windowed(self, grouped: &KGroupedStream<K, V>) -> Self::Output {
        SessionWindowedKStream {
            grouped: copy(grouped),
            windows: self,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> WindowedBy<K, V> for SlidingWindows {
    type Output = SlidingWindowedKStream<K, V>;
    fn windowed(self, grouped: &KGroupedStream<K, V>) -> Self::Output {
        SlidingWindowedKStream {
            grouped: copy(grouped),
            windows: self,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    /// Windows the grouped stream: [`TimeWindows`] (tumbling, hopping),
    /// [`SessionWindows`] or [`SlidingWindows`]. Aggregating the result
    /// gives a `KTable<Windowed<K>, _>`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, TimeWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_no_grace(Duration::from_millis(10)))
    ///     .count(Materialized::as_("per-10ms"))
    ///     .to_stream()
    ///     .map(|w: Windowed<String>, n: u64| (w.key.clone(), format!("{}..{}={n}", w.start, w.end)))
    ///     .to("counts", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// for ts in [1, 5, 12] { d.pipe_str("clicks", Some("ann"), "x", ts).unwrap(); }
    /// let out: Vec<_> = d.read_output("counts").iter().map(|r| r.value_str().unwrap().to_string()).collect();
    /// assert_eq!(out, ["0..10=1", "0..10=2", "10..20=1"]);
    /// ```
    pub fn windowed_by<W: WindowedBy<K, V>>(&self, windows: W) -> W::Output {
        windows.windowed(self)
    }
}

/// What every windowed aggregation (time, session, sliding) sets up the
/// same way: its node and store names, its input (repartitioned if the key
/// changed), the store's serdes and the table it returns.
pub(crate) struct WindowedAggregation<K, V, VA> {
    pub builder: crate::StreamsBuilder,
    pub name: String,
    pub store_name: String,
    pub input: crate::KStream<K, V>,
    pub key_serde: Option<kstreams_runtime::SerdeRef<K>>,
    pub value_serde: Option<kstreams_runtime::SerdeRef<VA>>,
    pub table: crate::KTable<crate::Windowed<K>, VA>,
}

/// Builds the [`WindowedAggregation`] of `g` for operator `op` (`count`,
/// `reduce`, `aggregate`) of the given `kind` (`windowed`, `session`, ...).
pub(crate) fn windowed_aggregation<K, V, VA>(
    g: &KGroupedStream<K, V>,
    prefix: &str,
    kind: &str,
    op: &str,
    materialized: &crate::Materialized<K, VA>,
    default_value_serde: Option<kstreams_runtime::SerdeRef<VA>>,
) -> WindowedAggregation<K, V, VA>
where
    K: Clone + Send + Sync + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
{
    let builder = g.stream.builder.clone();
    let name = builder.next_name(prefix);
    let store_name = materialized
        .name
        .clone()
        .unwrap_or_else(|| builder.next_name(&format!("{prefix}STATE-STORE-")));
    let input = g.input(&store_name);
    let what = format!("{kind} {op}() into store '{store_name}'");
    let key_serde = g.stream.resolve_serde(
        g.store_key_serde(materialized.key_serde.clone()),
        &None,
        &what,
        "Materialized::with_key_serde or Grouped::with",
    );
    let value_serde = g.stream.resolve_serde(
        materialized.value_serde.clone().or(default_value_serde),
        &None,
        &what,
        "Materialized::with_value_serde",
    );
    let table = crate::KTable {
        builder: builder.clone(),
        node: name.clone(),
        store_name: Some(store_name.clone()),
        key_serde: key_serde.clone().map(crate::Windowed::serde),
        value_serde: value_serde.clone(),
    };
    WindowedAggregation {
        builder,
        name,
        store_name,
        input,
        key_serde,
        value_serde,
        table,
    }
}
