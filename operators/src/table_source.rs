//! `StreamsBuilder::table`: a topic read as a table (latest value per key).
//!
//! Two nodes: a source reading the topic (a null value, a tombstone,
//! becomes `None`), and a processor that materializes the table into a
//! key-value store and forwards each change: `Some(v)` for an insert or
//! update, `None` for the deletion of a key the table held (a tombstone for
//! an unknown key changes nothing and is not forwarded).
//!
//! The store is changelogged by default like every store, so a restarted
//! or moved task restores the table from the changelog and from its local
//! RocksDB state, and joins (`stream_table_join.rs`,
//! `table_table_join.rs`) look values up in it. A record whose key cannot
//! be read (e.g. a null key) fails in the source's deserializer and goes
//! through the deserialization handler (skipped and counted by default).

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{
    KeyValueStore, Processor, ProcessorContext, Record, Result, Serde, SerdeError, SerdeRef,
    StoreBuilder, StreamsError,
};

use crate::{Consumed, KTable, Materialized, StreamsBuilder};

/// `inner` with Kafka null as `None`.
pub(crate) fn nullable<T: 'static>(inner: SerdeRef<T>) -> SerdeRef<Option<T>> {
    Arc::new(Nullable(inner))
}

struct Nullable<T>(SerdeRef<T>);

impl<T: 'static> Serde<Option<T>> for Nullable<T> {
    fn serialize(
        &self,
        value: &Option<T>,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), SerdeError> {
        match value {
            Some(v) => self.0.serialize(v, out),
            None => Ok(()),
        }
    }
    fn deserialize(&self, bytes: &[u8]) -> std::result::Result<Option<T>, SerdeError> {
        self.0.deserialize(bytes).map(Some)
    }
    fn deserialize_null(&self) -> std::result::Result<Option<T>, SerdeError> {
        Ok(None)
    }
    fn is_null(&self, value: &Option<T>) -> bool {
        value.is_none()
    }
    fn name(&self) -> &'static str {
        self.0.name()
    }
}

pub(crate) struct TableSourceProcessor<K, V> {
    store_name: String,
    store: Option<KeyValueStore<K, V>>,
    _types: PhantomData<fn(K, V)>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Option<V>, K, Option<V>>
    for TableSourceProcessor<K, V>
{
    fn init(&mut self, ctx: &mut ProcessorContext<K, Option<V>>) -> Result<()> {
        self.store = Some(ctx.key_value_store::<K, V>(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<K, Option<V>>,
        ctx: &mut ProcessorContext<K, Option<V>>,
    ) -> Result<()> {
        let store = self.store.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "table '{}' received a record before init",
                self.store_name
            ))
        })?;
        match &record.value {
            Some(v) => store.put(&record.key, v)?,
            None => {
                if store.get(&record.key)?.is_none() {
                    return Ok(());
                }
                store.delete(&record.key)?;
            }
        }
        ctx.forward(record)
    }
}

impl StreamsBuilder {
    /// The records of `topic` as a table: the latest value per key, a null
    /// value deleting the key. The table is materialized in a store
    /// (`materialized`'s name, else `<topic>-STATE-STORE-<n>`), which joins
    /// and queries read.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Materialized, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.table("customers", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("customers-store"))
    ///     .to_stream_with_tombstones()
    ///     .to("changes", Produced::with(Serdes::string(), Serdes::optional(Serdes::string())));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("customers", Some("c1"), "Ann", 0).unwrap();
    /// d.pipe_input("customers", Some(b"c1"), None, 1).unwrap(); // tombstone
    /// d.pipe_input("customers", Some(b"c2"), None, 2).unwrap(); // unknown key: no change
    /// let out = d.read_output("changes");
    /// assert_eq!(out.len(), 2);
    /// assert_eq!((out[0].value_str(), out[1].value.as_ref()), (Some("Ann"), None));
    /// assert!(d.key_value_store_all::<String, String>("customers-store").unwrap().is_empty());
    /// ```
    pub fn table<K: Clone + 'static, V: Clone + 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let source = consumed
            .name
            .clone()
            .unwrap_or_else(|| self.next_name("KSTREAM-SOURCE-"));
        let node = self.next_name("KTABLE-SOURCE-");
        let store_name = materialized
            .name
            .clone()
            .unwrap_or_else(|| self.next_name(&format!("{topic}-STATE-STORE-")));
        let key_serde = materialized
            .key_serde
            .clone()
            .unwrap_or_else(|| consumed.key_serde.clone());
        let value_serde = materialized
            .value_serde
            .clone()
            .unwrap_or_else(|| consumed.value_serde.clone());
        let table = KTable {
            builder: self.clone(),
            node: node.clone(),
            store_name: Some(store_name.clone()),
            key_serde: Some(key_serde.clone()),
            value_serde: Some(value_serde.clone()),
        };
        if !self.add_source(
            &source,
            &[topic],
            consumed.key_serde.clone(),
            nullable(consumed.value_serde.clone()),
        ) {
            return table;
        }
        self.set_source_policy(&source, consumed.deserialization_policy.clone());
        let sn = store_name.clone();
        let added = self.add_processor::<K, Option<V>, K, Option<V>, _, _>(
            &node,
            move || TableSourceProcessor {
                store_name: sn.clone(),
                store: None,
                _types: PhantomData,
            },
            &[&source],
        );
        if added {
            let mut store = StoreBuilder::key_value(store_name, key_serde, value_serde);
            if !materialized.persistent {
                store = store.in_memory();
            }
            if !materialized.logged {
                store = store.with_logging_disabled();
            }
            self.with_topology(|t| t.add_state_store(store, &[&node]).map(|_| ()));
        }
        table
    }
}
