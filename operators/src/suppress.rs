//! `suppress(until_window_closes)`: one final result per window.
//!
//! A windowed aggregation forwards every update of a window. Many consumers
//! want only the final value, once the window can no longer change: when
//! the stream time reaches the window's end plus its grace period. This
//! operator buffers the latest value of each open window and forwards it
//! exactly then, once.
//!
//! The buffer is a key-value store, changelogged like any store, so under
//! exactly-once "exactly one result per window" survives crashes: a
//! window's emission and its removal from the buffer commit in the same
//! Kafka transaction as the input that caused them; if the process dies
//! before that commit, both are rolled back and redone.
//!
//! Layout (bytes in one store):
//! - `b` + window end (8, order-preserving) + windowed key bytes → record
//!   timestamp (8) + value bytes: ordered by window end, so emitting reads
//!   only the windows that closed;
//! - `m` → the operator's stream time (8): the largest record timestamp it
//!   has seen, kept in the store so that a restart does not reset it.
//!
//! A deletion (`None`) from upstream (a session merged away) removes the
//! window from the buffer: it was never emitted, so there is nothing to
//! retract. An update for a window that is already closed cannot come from
//! a windowed aggregation (it drops late records); if it comes anyway it is
//! dropped and counted as `late`, so a window is never emitted twice.

use std::sync::Arc;

use kstreams_runtime::{
    KeyValueStore, Processor, ProcessorContext, Record, Result, SerdeRef, Serdes, StoreBuilder,
    StreamsError, Windowed,
};

use crate::KTable;

/// When a suppressed table forwards: [`Suppressed::until_window_closes`].
///
/// ```
/// let s = kstreams_operators::Suppressed::until_window_closes().with_name("final-counts");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Suppressed {
    name: Option<String>,
}

impl Suppressed {
    /// Forward each window's latest value once, when stream time reaches
    /// the window's end plus its grace period. The buffer is unbounded (it
    /// holds one entry per open window) and changelogged.
    ///
    /// ```
    /// let s = kstreams_operators::Suppressed::until_window_closes();
    /// ```
    pub fn until_window_closes() -> Self {
        Suppressed { name: None }
    }
    /// Names the node; its buffer store is `<name>-store`.
    ///
    /// ```
    /// let s = kstreams_operators::Suppressed::until_window_closes().with_name("final");
    /// ```
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

fn op(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

const META: &[u8] = b"m";

pub(crate) struct SuppressProcessor<K, V> {
    store_name: String,
    grace_ms: i64,
    key_serde: SerdeRef<Windowed<K>>,
    value_serde: SerdeRef<V>,
    buffer: Option<KeyValueStore<Vec<u8>, Vec<u8>>>,
}

impl<K: Clone + 'static, V: Clone + 'static> SuppressProcessor<K, V> {
    fn err(&self, e: impl std::fmt::Display) -> StreamsError {
        StreamsError::store(self.store_name.clone(), e.to_string())
    }
}

impl<K: Clone + 'static, V: Clone + 'static>
    Processor<Windowed<K>, Option<V>, Windowed<K>, Option<V>> for SuppressProcessor<K, V>
{
    fn init(&mut self, ctx: &mut ProcessorContext<Windowed<K>, Option<V>>) -> Result<()> {
        self.buffer = Some(ctx.key_value_store::<Vec<u8>, Vec<u8>>(&self.store_name)?);
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<Windowed<K>, Option<V>>,
        ctx: &mut ProcessorContext<Windowed<K>, Option<V>>,
    ) -> Result<()> {
        let buffer = self.buffer.clone().ok_or_else(|| {
            StreamsError::IllegalState(format!(
                "suppress over '{}' received a record before init",
                self.store_name
            ))
        })?;
        let meta = META.to_vec();
        let before = match buffer.get(&meta)? {
            Some(b) if b.len() == 8 => i64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8])),
            Some(_) => return Err(self.err("corrupt suppress clock")),
            None => i64::MIN,
        };
        let w = &record.key;
        let mut bkey = Vec::with_capacity(32);
        bkey.push(b'b');
        bkey.extend_from_slice(&op(w.end));
        self.key_serde
            .serialize(w, &mut bkey)
            .map_err(|e| self.err(e))?;
        let now = before.max(record.timestamp);
        if w.end.saturating_add(self.grace_ms) <= before {
            ctx.record_dropped("late");
        } else {
            match &record.value {
                Some(v) => {
                    let mut bv = record.timestamp.to_be_bytes().to_vec();
                    self.value_serde
                        .serialize(v, &mut bv)
                        .map_err(|e| self.err(e))?;
                    buffer.put(&bkey, &bv)?;
                }
                None => buffer.delete(&bkey)?,
            }
        }
        if now > before {
            buffer.put(&meta, &now.to_be_bytes().to_vec())?;
        }
        // Emit every window with end + grace <= now, oldest end first.
        let limit_ts = now.saturating_sub(self.grace_ms);
        let limit = op(limit_ts);
        let mut hi = vec![b'b'];
        hi.extend_from_slice(&op(limit_ts.saturating_add(1)));
        let closed = buffer.range(&b"b".to_vec(), &hi)?;
        for (k, v) in closed {
            if k.len() < 9 || k[1..9] > limit[..] || v.len() < 8 {
                continue;
            }
            let key = self
                .key_serde
                .deserialize(&k[9..])
                .map_err(|e| self.err(e))?;
            let timestamp = i64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]));
            let value = self
                .value_serde
                .deserialize(&v[8..])
                .map_err(|e| self.err(e))?;
            buffer.delete(&k)?;
            ctx.forward(Record::new(key, Some(value), timestamp))?;
        }
        Ok(())
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<Windowed<K>, V> {
    /// Forwards only the final value of each window, once, when the window
    /// closes (stream time ≥ window end + grace). The table must come from
    /// a windowed aggregation (directly or through `filter`/`map_values`),
    /// which says what the grace is.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, Suppressed, TimeWindows, Windowed};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let b = StreamsBuilder::new();
    /// b.stream("clicks", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .group_by_key(Grouped::default())
    ///     .windowed_by(TimeWindows::of_size_with_grace(Duration::from_millis(10), Duration::from_millis(5)))
    ///     .count(Materialized::as_("counts"))
    ///     .suppress(Suppressed::until_window_closes())
    ///     .to_stream()
    ///     .map(|w: Windowed<String>, n: u64| (w.key, format!("[{},{})={n}", w.start, w.end)))
    ///     .to("final-counts", Produced::with(Serdes::string(), Serdes::string()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// for ts in [1, 2, 12] { d.pipe_str("clicks", Some("ann"), "x", ts).unwrap(); }
    /// assert!(d.read_output("final-counts").is_empty()); // [0,10) closes at 15
    /// d.pipe_str("clicks", Some("bob"), "x", 15).unwrap();
    /// let out = d.read_output("final-counts");
    /// assert_eq!((out.len(), out[0].value_str()), (1, Some("[0,10)=2")));
    /// ```
    pub fn suppress(&self, suppressed: Suppressed) -> KTable<Windowed<K>, V> {
        let builder = self.builder.clone();
        let name = suppressed
            .name
            .clone()
            .unwrap_or_else(|| builder.next_name("KTABLE-SUPPRESS-"));
        let store_name = match &suppressed.name {
            Some(n) => format!("{n}-store"),
            None => builder.next_name("KTABLE-SUPPRESS-STATE-STORE-"),
        };
        let out = KTable {
            builder: builder.clone(),
            node: name.clone(),
            store_name: None,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        };
        let Some(grace_ms) = builder.window_grace(&self.node) else {
            builder.fail(StreamsError::Topology(format!(
                "suppress(until_window_closes) after node '{}': the table is not the result of a windowed \
                 aggregation, so its windows and grace period are unknown",
                self.node
            )));
            return out;
        };
        builder.set_window_grace(&name, grace_ms);
        let (Some(ks), Some(vs)) = (self.key_serde.clone(), self.value_serde.clone()) else {
            builder.fail(StreamsError::Topology(format!(
                "suppress after node '{}' needs the table's key and value serdes; pass them to the \
                 aggregation with Materialized::with_key_serde / with_value_serde",
                self.node
            )));
            return out;
        };
        let (sn, pks, pvs) = (store_name.clone(), ks.clone(), vs.clone());
        let added = builder.add_processor::<Windowed<K>, Option<V>, Windowed<K>, Option<V>, _, _>(
            &name,
            move || SuppressProcessor {
                store_name: sn.clone(),
                grace_ms,
                key_serde: pks.clone(),
                value_serde: Arc::clone(&pvs),
                buffer: None,
            },
            &[&self.node],
        );
        if added {
            let store = StoreBuilder::key_value(store_name, Serdes::bytes(), Serdes::bytes());
            builder.with_topology(|t| t.add_state_store(store, &[&name]).map(|_| ()));
        }
        out
    }
}
