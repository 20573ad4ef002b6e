//! Table-table joins: `KTable::join` (inner), `left_join` and `outer_join`.
//!
//! The result is a table keyed like both inputs whose value for a key is
//! `joiner(left value, right value)` while the join condition holds: both
//! present (inner), the left one present (left), either present (outer).
//! Either side changing updates it: one processor per side receives that
//! side's changes and looks the key up in the *other* side's store (so both
//! tables must be materialized: from `StreamsBuilder::table` or an
//! aggregation). When a change makes the result disappear, a tombstone
//! (`None`) is forwarded; a change that leaves no result before or after
//! forwards nothing. Both sides then flow into one pass-through node, the
//! result table's node.
//!
//! Co-partitioning: each side's processor is connected to the other side's
//! store, which puts both tables' sources into one sub-topology, checked at
//! start-up for equal partition counts.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{KeyValueStore, Processor, ProcessorContext, Record, Result, StreamsError};

use crate::KTable;

/// One side of a table-table join.
pub(crate) struct TableJoinSideProcessor<K, VT, VO, VR, F> {
    other_store: String,
    /// Whether this side must be present for a result.
    need_this: bool,
    /// Whether the other side must be present for a result.
    need_other: bool,
    joiner: Arc<F>,
    store: Option<KeyValueStore<K, VO>>,
    _types: PhantomData<fn(VT, VR)>,
}

impl<K, VT, VO, VR, F> Processor<K, Option<VT>, K, Option<VR>>
    for TableJoinSideProcessor<K, VT, VO, VR, F>
where
    K: Clone + 'static,
    VT: 'static,
    VO: 'static,
    VR: Clone + 'static,
    F: Fn(Option<&VT>, Option<&VO>) -> Option<VR> + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<K, Option<VR>>) -> Result<()> {
        self.store = Some(ctx.key_value_store::<K, VO>(&self.other_store)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, Option<VT>>,
        ctx: &mut ProcessorContext<K, Option<VR>>,
    ) -> Result<()> {
        let store = self.store.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "table join with '{}' received a record before init",
                self.other_store
            ))
        })?;
        let other = store.get(&record.key)?;
        let holds = |this: bool, other: bool| {
            (this || !self.need_this) && (other || !self.need_other) && (this || other)
        };
        let value = match &record.value {
            Some(v) if holds(true, other.is_some()) => {
                match (self.joiner)(Some(v), other.as_ref()) {
                    Some(r) => Some(r),
                    None => return Ok(()),
                }
            }
            Some(_) => return Ok(()),
            None if holds(false, other.is_some()) => match (self.joiner)(None, other.as_ref()) {
                Some(r) => Some(r),
                None => return Ok(()),
            },
            // The deleted row had a result: retract it.
            None if holds(true, other.is_some()) => None,
            None => return Ok(()),
        };
        ctx.forward(Record {
            key: record.key,
            value,
            timestamp: record.timestamp,
            headers: record.headers,
        })
    }
}

/// The result table's node: forwards both sides' results.
pub(crate) struct TableJoinMergeProcessor<K, V>(PhantomData<fn(K, V)>);

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Option<V>, K, Option<V>>
    for TableJoinMergeProcessor<K, V>
{
    fn process(
        &mut self,
        record: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<K, Option<V>>,
    ) -> Result<()> {
        ctx.forward(record)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    fn table_join<VO, VR, F>(
        &self,
        other: &KTable<K, VO>,
        joiner: F,
        need: (bool, bool),
        op: &str,
    ) -> KTable<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(Option<&V>, Option<&VO>) -> Option<VR> + Send + Sync + 'static,
    {
        let b = self.builder.clone();
        let name = b.next_name("KTABLE-MERGE-");
        let out = KTable {
            builder: b.clone(),
            node: name.clone(),
            store_name: None,
            key_serde: self.key_serde.clone(),
            value_serde: None,
        };
        if !b.same_as(&other.builder) {
            b.fail(StreamsError::Topology(format!(
                "{op}: the other table comes from another StreamsBuilder"
            )));
            return out;
        }
        let (Some(this_store), Some(other_store)) =
            (self.store_name.clone(), other.store_name.clone())
        else {
            b.fail(StreamsError::Topology(format!(
                "{op} of the tables after nodes '{}' and '{}': both tables must be materialized \
                 (from StreamsBuilder::table or an aggregation)",
                self.node, other.node
            )));
            return out;
        };
        let left_name = b.next_name("KTABLE-JOINTHIS-");
        let right_name = b.next_name("KTABLE-JOINOTHER-");
        let joiner = Arc::new(joiner);
        let (j1, j2) = (joiner.clone(), joiner);
        let (need_left, need_right) = need;
        let os = other_store.clone();
        let mut ok = b.add_processor::<K, Option<V>, K, Option<VR>, _, _>(
            &left_name,
            move || TableJoinSideProcessor {
                other_store: os.clone(),
                need_this: need_left,
                need_other: need_right,
                joiner: j1.clone(),
                store: None,
                _types: PhantomData,
            },
            &[&self.node],
        );
        let ts = this_store.clone();
        ok &= b.add_processor::<K, Option<VO>, K, Option<VR>, _, _>(
            &right_name,
            move || {
                let j = j2.clone();
                TableJoinSideProcessor {
                    other_store: ts.clone(),
                    need_this: need_right,
                    need_other: need_left,
                    joiner: Arc::new(move |r: Option<&VO>, l: Option<&V>| j(l, r)),
                    store: None,
                    _types: PhantomData,
                }
            },
            &[&other.node],
        );
        ok &= b.add_processor::<K, Option<VR>, K, Option<VR>, _, _>(
            &name,
            || TableJoinMergeProcessor(PhantomData),
            &[&left_name, &right_name],
        );
        if ok {
            b.with_topology(|t| {
                t.connect_processor_and_store(&left_name, &other_store)?;
                t.connect_processor_and_store(&right_name, &this_store)?;
                Ok(())
            });
        }
        out
    }

    /// Inner table-table join: a key has a result while both tables hold it.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// let names = b.table("names", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("names"));
    /// let cities = b.table("cities", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("cities"));
    /// names.join(&cities, |n: &String, c: &String| format!("{n} in {c}"))
    ///     .to_stream()
    ///     .to("people", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("names", Some("u1"), "Ann", 0).unwrap();
    /// d.pipe_str("cities", Some("u1"), "Oslo", 1).unwrap();
    /// assert_eq!(d.read_output("people")[0].value_str(), Some("Ann in Oslo"));
    /// ```
    pub fn join<VO, VR, F>(&self, other: &KTable<K, VO>, joiner: F) -> KTable<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(&V, &VO) -> VR + Send + Sync + 'static,
    {
        self.table_join(
            other,
            move |l: Option<&V>, r: Option<&VO>| match (l, r) {
                (Some(l), Some(r)) => Some(joiner(l, r)),
                _ => None,
            },
            (true, true),
            "join",
        )
    }

    /// Left table-table join: a key has a result while the left table holds it.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// let names = b.table("names", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("names"));
    /// let cities = b.table("cities", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("cities"));
    /// names.left_join(&cities, |n: &String, c: Option<&String>| format!("{n} in {}", c.map(String::as_str).unwrap_or("?")))
    ///     .to_stream()
    ///     .to("people", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("names", Some("u1"), "Ann", 0).unwrap();
    /// assert_eq!(d.read_output("people")[0].value_str(), Some("Ann in ?"));
    /// ```
    pub fn left_join<VO, VR, F>(&self, other: &KTable<K, VO>, joiner: F) -> KTable<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.table_join(
            other,
            move |l: Option<&V>, r: Option<&VO>| l.map(|l| joiner(l, r)),
            (true, false),
            "left_join",
        )
    }

    /// Outer table-table join: a key has a result while either table holds it.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// let names = b.table("names", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("names"));
    /// let cities = b.table("cities", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("cities"));
    /// names.outer_join(&cities, |n: Option<&String>, c: Option<&String>| format!("{n:?}/{c:?}"))
    ///     .to_stream()
    ///     .to("people", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("cities", Some("u1"), "Oslo", 0).unwrap();
    /// assert_eq!(d.read_output("people")[0].value_str(), Some(r#"None/Some("Oslo")"#));
    /// ```
    pub fn outer_join<VO, VR, F>(&self, other: &KTable<K, VO>, joiner: F) -> KTable<K, VR>
    where
        VO: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    {
        self.table_join(
            other,
            move |l: Option<&V>, r: Option<&VO>| Some(joiner(l, r)),
            (false, false),
            "outer_join",
        )
    }
}
