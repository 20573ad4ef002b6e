//! Windowed stream-stream joins: `KStream::join_stream` (inner),
//! `left_join_stream` and `outer_join_stream`, with [`JoinWindows`].
//!
//! A left record at `t` joins every right record of the same key at
//! `t - before ..= t + after` (and symmetrically), whichever arrives first.
//! Each side keeps its recent records in a window store (`<name>-this-store`
//! and `<name>-other-store`, a list of values per key and timestamp),
//! changelogged, kept for before + after + grace. One processor per side:
//! it stores its record, looks up the other side's store, and forwards one
//! joined record per match, with the later of the two timestamps.
//!
//! Time: the join's stream time is the largest timestamp either side has
//! seen (kept in the stores, so it survives restarts). A record whose own
//! window closed (`t + after + grace` before the stream time) is dropped
//! and counted as `late`.
//!
//! Left and outer joins do not emit "no match yet" results eagerly (they
//! would often be followed by a match): a record without a match waits in
//! an *unmatched* store (`<name>-left-unmatched-store`, and for outer joins
//! `<name>-right-unmatched-store`) until its window closes; if a match
//! arrives meanwhile it leaves that store, otherwise it is then forwarded
//! with `None` for the other side, once: when the stream time passes its
//! timestamp plus before + after + grace (no record accepted from then on
//! can join it).
//!
//! Co-partitioning: both processors are connected to all the join's
//! stores, which puts both inputs into one sub-topology; inputs whose key
//! may have changed are repartitioned first (`<name>-left-repartition`,
//! `<name>-right-repartition`).

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{
    Processor, ProcessorContext, Record, Result, Serde, SerdeError, SerdeRef, StoreBuilder,
    StreamsError, WindowStore,
};

use crate::{JoinWindows, KStream};

/// Serdes and a name for a stream-stream join: the key serde, both value
/// serdes (the join's stores hold both sides' records) and the name of the
/// join, which names its stores and repartition topics.
///
/// ```
/// use kstreams_operators::StreamJoined;
/// use kstreams_runtime::Serdes;
/// let j = StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::i64_text()).named("clicks-with-views");
/// ```
pub struct StreamJoined<K, V, VO> {
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) other_value_serde: Option<SerdeRef<VO>>,
    pub(crate) name: Option<String>,
}

impl<K, V, VO> Default for StreamJoined<K, V, VO> {
    fn default() -> Self {
        StreamJoined {
            key_serde: None,
            value_serde: None,
            other_value_serde: None,
            name: None,
        }
    }
}

impl<K, V, VO> StreamJoined<K, V, VO> {
    /// A join with these serdes (key, this side's values, the other side's values).
    ///
    /// ```
    /// let j = kstreams_operators::StreamJoined::with(
    ///     kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// ```
    pub fn with(
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        other_value_serde: SerdeRef<VO>,
    ) -> Self {
        StreamJoined {
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
            other_value_serde: Some(other_value_serde),
            name: None,
        }
    }
    /// Names the join (default `KSTREAM-JOIN-<n>`).
    ///
    /// ```
    /// let j: kstreams_operators::StreamJoined<String, String, String> =
    ///     kstreams_operators::StreamJoined::default().named("impressions-clicks");
    /// ```
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A list of values: for each, its length (4 bytes, big-endian) and bytes.
struct ListSerde<T>(SerdeRef<T>);

impl<T: 'static> Serde<Vec<T>> for ListSerde<T> {
    fn serialize(&self, value: &Vec<T>, out: &mut Vec<u8>) -> std::result::Result<(), SerdeError> {
        for v in value {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            self.0.serialize(v, out)?;
            let n = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&n.to_be_bytes());
        }
        Ok(())
    }
    fn deserialize(&self, mut bytes: &[u8]) -> std::result::Result<Vec<T>, SerdeError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let bad = || SerdeError::new("list", "truncated list entry");
            let n = u32::from_be_bytes(
                bytes
                    .get(..4)
                    .ok_or_else(bad)?
                    .try_into()
                    .map_err(|_| bad())?,
            ) as usize;
            let item = bytes.get(4..4 + n).ok_or_else(bad)?;
            out.push(self.0.deserialize(item)?);
            bytes = &bytes[4 + n..];
        }
        Ok(out)
    }
    fn name(&self) -> &'static str {
        "list"
    }
}

/// A serde for lists of `inner`'s values (also used by sliding windows).
pub(crate) fn list<T: 'static>(inner: SerdeRef<T>) -> SerdeRef<Vec<T>> {
    Arc::new(ListSerde(inner))
}

/// Appends `v` to the list stored for `key` at `ts`.
fn append<K: 'static, T: Clone + 'static>(
    store: &WindowStore<K, Vec<T>>,
    key: &K,
    ts: i64,
    v: &T,
) -> Result<()> {
    let mut values = store.get(key, ts, ts)?.unwrap_or_default();
    values.push(v.clone());
    store.put(key, ts, ts, &values)
}

/// One side of a stream-stream join. `T` is this side's value type, `O`
/// the other's. `before`/`after` are seen from this side: other records at
/// `t - before ..= t + after` match.
pub(crate) struct StreamJoinSideProcessor<K, T, O, VR, F> {
    this_store: String,
    other_store: String,
    this_unmatched: Option<String>,
    other_unmatched: Option<String>,
    before: i64,
    after: i64,
    grace: i64,
    joiner: Arc<F>,
    stores: Option<SideStores<K, T, O>>,
    _types: PhantomData<fn(VR)>,
}

struct SideStores<K, T, O> {
    this: WindowStore<K, Vec<T>>,
    other: WindowStore<K, Vec<O>>,
    this_unmatched: Option<WindowStore<K, Vec<T>>>,
    other_unmatched: Option<WindowStore<K, Vec<O>>>,
}

impl<K, T, O, VR, F> Processor<K, T, K, VR> for StreamJoinSideProcessor<K, T, O, VR, F>
where
    K: Clone + 'static,
    T: Clone + 'static,
    O: Clone + 'static,
    VR: Clone + 'static,
    F: Fn(Option<&T>, Option<&O>) -> Option<VR> + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<K, VR>) -> Result<()> {
        self.stores = Some(SideStores {
            this: ctx.window_store(&self.this_store)?,
            other: ctx.window_store(&self.other_store)?,
            this_unmatched: match &self.this_unmatched {
                Some(n) => Some(ctx.window_store(n)?),
                None => None,
            },
            other_unmatched: match &self.other_unmatched {
                Some(n) => Some(ctx.window_store(n)?),
                None => None,
            },
        });
        Ok(())
    }

    fn process(&mut self, record: Record<K, T>, ctx: &mut ProcessorContext<K, VR>) -> Result<()> {
        let s = self.stores.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "join over '{}' received a record before init",
                self.this_store
            ))
        })?;
        let t = record.timestamp;
        let now = t
            .max(s.this.observed_stream_time()?)
            .max(s.other.observed_stream_time()?);
        // Unmatched records that no future record can match any more: a
        // record of either side is accepted while t + its window's far end +
        // grace >= stream time, so past this limit nothing can join them.
        // Emitted before the stores move on (which may drop old segments).
        let limit = now
            .saturating_sub(self.before)
            .saturating_sub(self.after)
            .saturating_sub(self.grace)
            .saturating_sub(1);
        if let Some(u) = &s.this_unmatched {
            for (w, values) in u.fetch_all(i64::MIN, limit)? {
                u.delete(&w.key, w.start, w.end)?;
                for v in &values {
                    if let Some(r) = (self.joiner)(Some(v), None) {
                        ctx.forward(Record::new(w.key.clone(), r, w.start))?;
                    }
                }
            }
        }
        if let Some(u) = &s.other_unmatched {
            for (w, values) in u.fetch_all(i64::MIN, limit)? {
                u.delete(&w.key, w.start, w.end)?;
                for o in &values {
                    if let Some(r) = (self.joiner)(None, Some(o)) {
                        ctx.forward(Record::new(w.key.clone(), r, w.start))?;
                    }
                }
            }
        }
        s.this.advance(now)?;
        s.other.advance(now)?;
        if let Some(u) = &s.this_unmatched {
            u.advance(now)?;
        }
        if let Some(u) = &s.other_unmatched {
            u.advance(now)?;
        }
        if t.saturating_add(self.after).saturating_add(self.grace) < now {
            ctx.record_dropped("late");
            return Ok(());
        }
        append(&s.this, &record.key, t, &record.value)?;
        let from = t.saturating_sub(self.before);
        let to = t.saturating_add(self.after);
        let matches = s.other.fetch(&record.key, from, to)?;
        for (ts, _, values) in &matches {
            for o in values {
                if let Some(v) = (self.joiner)(Some(&record.value), Some(o)) {
                    ctx.forward(Record {
                        key: record.key.clone(),
                        value: v,
                        timestamp: t.max(*ts),
                        headers: record.headers.clone(),
                    })?;
                }
            }
        }
        if matches.is_empty() {
            if let Some(u) = &s.this_unmatched {
                append(u, &record.key, t, &record.value)?;
            }
        } else if let Some(u) = &s.other_unmatched {
            // Those other records have a match now: they will not be
            // emitted alone.
            for (ts, _, _) in u.fetch(&record.key, from, to)? {
                u.delete(&record.key, ts, ts)?;
            }
        }
        Ok(())
    }
}

/// Forwards both sides' results.
pub(crate) struct StreamJoinMergeProcessor<K, V>(PhantomData<fn(K, V)>);

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V, K, V>
    for StreamJoinMergeProcessor<K, V>
{
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<K, V>) -> Result<()> {
        ctx.forward(record)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    #[allow(clippy::too_many_arguments)]
    fn stream_stream_join<VO, VR, F>(
        &self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
        left_unmatched: bool,
        right_unmatched: bool,
        op: &str,
    ) -> KStream<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(Option<&V>, Option<&VO>) -> Option<VR> + Send + Sync + 'static,
    {
        let b = self.builder.clone();
        let name = joined
            .name
            .clone()
            .unwrap_or_else(|| b.next_name("KSTREAM-JOIN-"));
        let out = KStream {
            builder: b.clone(),
            node: name.clone(),
            key_serde: joined.key_serde.clone().or_else(|| self.key_serde.clone()),
            value_serde: None,
            repartition_required: false,
        };
        if !b.same_as(&other.builder) {
            b.fail(StreamsError::Topology(format!(
                "{op} '{name}': the other stream comes from another StreamsBuilder"
            )));
            return out;
        }
        let hint = "StreamJoined::with(key_serde, value_serde, other_value_serde)";
        let what = format!("{op} '{name}' (its stores)");
        let ks = self.resolve_serde(joined.key_serde.clone(), &self.key_serde, &what, hint);
        let vs = self.resolve_serde(joined.value_serde.clone(), &self.value_serde, &what, hint);
        let os = other.resolve_serde(
            joined.other_value_serde.clone(),
            &other.value_serde,
            &what,
            hint,
        );
        let (Some(ks), Some(vs), Some(os)) = (ks, vs, os) else {
            return out;
        };
        let left = self.join_input(
            &format!("{name}-left"),
            &crate::Joined::with(ks.clone(), vs.clone()),
        );
        let right = other.join_input(
            &format!("{name}-right"),
            &crate::Joined::with(ks.clone(), os.clone()),
        );
        let this_store = format!("{name}-this-store");
        let other_store = format!("{name}-other-store");
        let left_u = left_unmatched.then(|| format!("{name}-left-unmatched-store"));
        let right_u = right_unmatched.then(|| format!("{name}-right-unmatched-store"));
        let retention = windows
            .before_ms
            .saturating_add(windows.after_ms)
            .saturating_add(windows.grace_ms)
            .saturating_add(1);
        let retention = std::time::Duration::from_millis(retention.max(1) as u64);
        let left_name = format!("{name}-this");
        let right_name = format!("{name}-other");
        let joiner = Arc::new(joiner);
        let (j1, j2) = (joiner.clone(), joiner);
        let (ts1, os1, lu1, ru1) = (
            this_store.clone(),
            other_store.clone(),
            left_u.clone(),
            right_u.clone(),
        );
        let mut ok = b.add_processor::<K, V, K, VR, _, _>(
            &left_name,
            move || StreamJoinSideProcessor {
                this_store: ts1.clone(),
                other_store: os1.clone(),
                this_unmatched: lu1.clone(),
                other_unmatched: ru1.clone(),
                before: windows.before_ms,
                after: windows.after_ms,
                grace: windows.grace_ms,
                joiner: j1.clone(),
                stores: None,
                _types: PhantomData,
            },
            &[&left.node],
        );
        let (ts2, os2, lu2, ru2) = (
            this_store.clone(),
            other_store.clone(),
            left_u.clone(),
            right_u.clone(),
        );
        ok &= b.add_processor::<K, VO, K, VR, _, _>(
            &right_name,
            move || {
                let j = j2.clone();
                StreamJoinSideProcessor {
                    this_store: os2.clone(),
                    other_store: ts2.clone(),
                    this_unmatched: ru2.clone(),
                    other_unmatched: lu2.clone(),
                    before: windows.after_ms,
                    after: windows.before_ms,
                    grace: windows.grace_ms,
                    joiner: Arc::new(move |o: Option<&VO>, v: Option<&V>| j(v, o)),
                    stores: None,
                    _types: PhantomData,
                }
            },
            &[&right.node],
        );
        ok &= b.add_processor::<K, VR, K, VR, _, _>(
            &name,
            || StreamJoinMergeProcessor(PhantomData),
            &[&left_name, &right_name],
        );
        if ok {
            let nodes = [left_name.as_str(), right_name.as_str()];
            b.with_topology(|t| {
                t.add_state_store(
                    StoreBuilder::window(&this_store, ks.clone(), list(vs.clone()), retention),
                    &nodes,
                )?;
                t.add_state_store(
                    StoreBuilder::window(&other_store, ks.clone(), list(os.clone()), retention),
                    &nodes,
                )?;
                if let Some(n) = &left_u {
                    t.add_state_store(
                        StoreBuilder::window(n, ks.clone(), list(vs.clone()), retention),
                        &nodes,
                    )?;
                }
                if let Some(n) = &right_u {
                    t.add_state_store(
                        StoreBuilder::window(n, ks.clone(), list(os.clone()), retention),
                        &nodes,
                    )?;
                }
                Ok(())
            });
        }
        out
    }

    /// Inner windowed join with another stream: for each pair of records of
    /// one key within the join window, `joiner(&value, &other_value)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// let views = b.stream("views", Consumed::with(Serdes::string(), Serdes::string()));
    /// let clicks = b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// views.join_stream(&clicks, |v: &String, c: &String| format!("{v}->{c}"),
    ///         JoinWindows::of_time_difference_no_grace(Duration::from_millis(10)), StreamJoined::default())
    ///     .to("clicked-views", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("views", Some("ad1"), "view", 100).unwrap();
    /// d.pipe_str("clicks", Some("ad1"), "click", 105).unwrap();
    /// d.pipe_str("clicks", Some("ad1"), "click-too-late", 120).unwrap();
    /// let out = d.read_output("clicked-views");
    /// assert_eq!((out.len(), out[0].value_str(), out[0].timestamp), (1, Some("view->click"), 105));
    /// ```
    pub fn join_stream<VO, VR, F>(
        &self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        self.stream_stream_join(
            other,
            move |v: Option<&V>, o: Option<&VO>| match (v, o) {
                (Some(v), Some(o)) => Some(joiner(v, o)),
                _ => None,
            },
            windows,
            joined,
            false,
            false,
            "join_stream",
        )
    }

    /// Left windowed join: like [`KStream::join_stream`], plus each record
    /// of this stream that found no match by the time its window closed,
    /// as `joiner(&value, None)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// let views = b.stream("views", Consumed::with(Serdes::string(), Serdes::string()));
    /// let clicks = b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// views.left_join_stream(&clicks, |v: &String, c: Option<&String>| format!("{v}->{c:?}"),
    ///         JoinWindows::of_time_difference_no_grace(Duration::from_millis(10)), StreamJoined::default())
    ///     .to("views-out", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("views", Some("ad1"), "view", 100).unwrap();
    /// d.pipe_str("views", Some("ad2"), "later", 121).unwrap(); // no click can join ad1's view any more
    /// assert_eq!(d.read_output("views-out")[0].value_str(), Some("view->None"));
    /// ```
    pub fn left_join_stream<VO, VR, F>(
        &self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.stream_stream_join(
            other,
            move |v: Option<&V>, o: Option<&VO>| v.map(|v| joiner(v, o)),
            windows,
            joined,
            true,
            false,
            "left_join_stream",
        )
    }

    /// Outer windowed join: matches, plus unmatched records of either
    /// stream once their window closed, with `None` for the other side.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, JoinWindows, Produced, StreamJoined, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// let views = b.stream("views", Consumed::with(Serdes::string(), Serdes::string()));
    /// let clicks = b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()));
    /// views.outer_join_stream(&clicks, |v: Option<&String>, c: Option<&String>| format!("{v:?}->{c:?}"),
    ///         JoinWindows::of_time_difference_no_grace(Duration::from_millis(10)), StreamJoined::default())
    ///     .to("out", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("clicks", Some("ad1"), "click", 100).unwrap();
    /// d.pipe_str("views", Some("ad2"), "x", 200).unwrap();
    /// assert_eq!(d.read_output("out")[0].value_str(), Some(r#"None->Some("click")"#));
    /// ```
    pub fn outer_join_stream<VO, VR, F>(
        &self,
        other: &KStream<K, VO>,
        joiner: F,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.stream_stream_join(
            other,
            move |v: Option<&V>, o: Option<&VO>| Some(joiner(v, o)),
            windows,
            joined,
            true,
            true,
            "outer_join_stream",
        )
    }
}
