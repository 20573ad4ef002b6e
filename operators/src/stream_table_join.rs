//! Stream-table joins: `KStream::join` (inner) and `KStream::left_join`.
//!
//! Each stream record looks up its key in the table's store *as of now*
//! (the table's latest value when the record is processed) and forwards
//! `joiner(value, table value)`. Inner joins drop records whose key is not
//! in the table; left joins forward them with `None`. Table updates trigger
//! nothing by themselves: a stream-table join enriches stream records.
//!
//! Co-partitioning: the join processor is connected to the table's store,
//! which puts the stream's source and the table's source in one
//! sub-topology; the runtime checks at start-up that the topics of one
//! sub-topology have the same partition count, and the range assignment
//! then gives one task partition `p` of both. A stream whose key may have
//! changed (`select_key`, `map`, ...) is first sent through a repartition
//! topic (`<Joined name>-repartition`, else `<join node>-repartition`), as
//! grouping does, so records meet the table partition holding their key.
//! The runtime gives a repartition topic read beside external topics their
//! partition count, so it is co-partitioned with the table's topic.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{
    KeyValueStore, Processor, ProcessorContext, Record, Result, SerdeRef, StreamsError,
};

use crate::{KStream, KTable};

/// How a stream is joined: the serdes of the repartition topic (needed only
/// if the stream's key may have changed and the stream does not know them)
/// and its name (`<name>-repartition`).
///
/// ```
/// use kstreams_operators::Joined;
/// use kstreams_runtime::Serdes;
/// let j = Joined::with(Serdes::string(), Serdes::string()).named("orders-by-customer");
/// let k: Joined<String, String> = Joined::as_("orders-by-customer");
/// ```
pub struct Joined<K, V> {
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Joined<K, V> {
    fn default() -> Self {
        Joined {
            key_serde: None,
            value_serde: None,
            name: None,
        }
    }
}

impl<K, V> Joined<K, V> {
    /// Joins with these serdes for the stream side.
    ///
    /// ```
    /// let j = kstreams_operators::Joined::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string());
    /// ```
    pub fn with(key_serde: SerdeRef<K>, value_serde: SerdeRef<V>) -> Self {
        Joined {
            key_serde: Some(key_serde),
            value_serde: Some(value_serde),
            name: None,
        }
    }
    /// Names the join (and its repartition topic, `<name>-repartition`).
    ///
    /// ```
    /// let j: kstreams_operators::Joined<String, String> = kstreams_operators::Joined::as_("enrich");
    /// ```
    pub fn as_(name: impl Into<String>) -> Self {
        Joined {
            name: Some(name.into()),
            ..Self::default()
        }
    }
    /// Names the join.
    ///
    /// ```
    /// let j = kstreams_operators::Joined::with(kstreams_runtime::Serdes::string(), kstreams_runtime::Serdes::string()).named("enrich");
    /// ```
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

pub(crate) struct StreamTableJoinProcessor<K, V, VT, VR, F> {
    store_name: String,
    joiner: Arc<F>,
    store: Option<KeyValueStore<K, VT>>,
    _types: PhantomData<fn(V, VR)>,
}

impl<K, V, VT, VR, F> Processor<K, V, K, VR> for StreamTableJoinProcessor<K, V, VT, VR, F>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VT: 'static,
    VR: Clone + 'static,
    F: Fn(&V, Option<&VT>) -> Option<VR> + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<K, VR>) -> Result<()> {
        self.store = Some(ctx.key_value_store::<K, VT>(&self.store_name)?);
        Ok(())
    }

    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<K, VR>) -> Result<()> {
        let store = self.store.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "join with table '{}' received a record before init",
                self.store_name
            ))
        })?;
        let other = store.get(&record.key)?;
        if let Some(joined) = (self.joiner)(&record.value, other.as_ref()) {
            ctx.forward(Record {
                key: record.key,
                value: joined,
                timestamp: record.timestamp,
                headers: record.headers,
            })?;
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// The stream to join: this one, or its repartitioned copy if its key
    /// may have changed.
    pub(crate) fn join_input(&self, join_name: &str, joined: &Joined<K, V>) -> KStream<K, V> {
        if !self.repartition_required {
            return self.clone();
        }
        let name = joined.name.clone().unwrap_or_else(|| join_name.to_string());
        let hint = "Joined::with(key_serde, value_serde)";
        let what = format!("the repartition topic '{name}-repartition' of a join");
        let ks = self.resolve_serde(joined.key_serde.clone(), &self.key_serde, &what, hint);
        let vs = self.resolve_serde(joined.value_serde.clone(), &self.value_serde, &what, hint);
        match (ks, vs) {
            (Some(ks), Some(vs)) => self.builder.repartition_through(self, &name, ks, vs, None),
            _ => self.clone(),
        }
    }

    fn stream_table_join<VT, VR, F>(
        &self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V>,
        op: &str,
    ) -> KStream<K, VR>
    where
        VT: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync + 'static,
    {
        let name = joined
            .name
            .clone()
            .unwrap_or_else(|| self.builder.next_name("KSTREAM-JOIN-"));
        let input = self.join_input(&name, &joined);
        let out = KStream {
            builder: self.builder.clone(),
            node: name.clone(),
            key_serde: input.key_serde.clone(),
            value_serde: None,
            repartition_required: false,
        };
        if !self.builder.same_as(&table.builder) {
            self.builder.fail(StreamsError::Topology(format!(
                "{op} '{name}': the table comes from another StreamsBuilder"
            )));
            return out;
        }
        let Some(store) = table.store_name.clone() else {
            self.builder.fail(StreamsError::Topology(format!(
                "{op} '{name}': the table after node '{}' is not materialized; join a table from \
                 StreamsBuilder::table or an aggregation",
                table.node
            )));
            return out;
        };
        let joiner = Arc::new(joiner);
        let sn = store.clone();
        let added = self.builder.add_processor::<K, V, K, VR, _, _>(
            &name,
            move || StreamTableJoinProcessor {
                store_name: sn.clone(),
                joiner: joiner.clone(),
                store: None,
                _types: PhantomData,
            },
            &[&input.node],
        );
        if added {
            self.builder
                .with_topology(|t| t.connect_processor_and_store(&name, &store).map(|_| ()));
        }
        out
    }

    /// Inner stream-table join: each record whose key is in the table is
    /// forwarded as `joiner(&value, &table_value)`; others are dropped.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Joined, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// let names = b.table("names", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("names"));
    /// b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .join(&names, |page: &String, name: &String| format!("{name} saw {page}"), Joined::default())
    ///     .to("named-clicks", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("clicks", Some("u1"), "/home", 0).unwrap(); // no name yet: dropped
    /// d.pipe_str("names", Some("u1"), "Ann", 1).unwrap();
    /// d.pipe_str("clicks", Some("u1"), "/cart", 2).unwrap();
    /// let out = d.read_output("named-clicks");
    /// assert_eq!((out.len(), out[0].value_str()), (1, Some("Ann saw /cart")));
    /// ```
    pub fn join<VT, VR, F>(
        &self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V>,
    ) -> KStream<K, VR>
    where
        VT: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(&V, &VT) -> VR + Send + Sync + 'static,
    {
        self.stream_table_join(
            table,
            move |v: &V, t: Option<&VT>| t.map(|t| joiner(v, t)),
            joined,
            "join",
        )
    }

    /// Left stream-table join: every record is forwarded, as
    /// `joiner(&value, Some(&table_value))` or `joiner(&value, None)`.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Joined, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// let names = b.table("names", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("names"));
    /// b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .left_join(&names, |page: &String, name: Option<&String>| {
    ///         format!("{} saw {page}", name.map(String::as_str).unwrap_or("someone"))
    ///     }, Joined::default())
    ///     .to("named-clicks", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("clicks", Some("u1"), "/home", 0).unwrap();
    /// assert_eq!(d.read_output("named-clicks")[0].value_str(), Some("someone saw /home"));
    /// ```
    pub fn left_join<VT, VR, F>(
        &self,
        table: &KTable<K, VT>,
        joiner: F,
        joined: Joined<K, V>,
    ) -> KStream<K, VR>
    where
        VT: Clone + 'static,
        VR: Clone + 'static,
        F: Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    {
        self.stream_table_join(
            table,
            move |v: &V, t: Option<&VT>| Some(joiner(v, t)),
            joined,
            "left_join",
        )
    }
}
