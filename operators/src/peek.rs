//! `peek`: look at each record (logging, metrics) and pass it on unchanged.
//!
//! The action sees borrowed key and value. It must not be used to change
//! anything downstream relies on: the record it sees is the one forwarded.

use std::marker::PhantomData;
use std::sync::Arc;

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::KStream;

pub(crate) struct PeekProcessor<F, K, V> {
    action: Arc<F>,
    _types: PhantomData<fn(K, V)>,
}

impl<F, K, V> Processor<K, V, K, V> for PeekProcessor<F, K, V>
where
    F: Fn(&K, &V) + 'static,
    K: Clone + 'static,
    V: Clone + 'static,
{
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<K, V>) -> Result<()> {
        (self.action)(&record.key, &record.value);
        ctx.forward(record)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Calls `action` for each record, then forwards it unchanged.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// use kstreams_operators::{Consumed, StreamsBuilder};
    /// use kstreams_runtime::{Serdes, TopologyTestDriver};
    /// let seen = Arc::new(AtomicU64::new(0));
    /// let counter = seen.clone();
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .peek(move |_, _| { counter.fetch_add(1, Ordering::Relaxed); });
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("k"), "v", 0).unwrap();
    /// assert_eq!(seen.load(Ordering::Relaxed), 1);
    /// ```
    pub fn peek<F>(&self, action: F) -> KStream<K, V>
    where
        F: Fn(&K, &V) + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KSTREAM-PEEK-");
        let action = Arc::new(action);
        self.add_child(
            name,
            move || PeekProcessor {
                action: action.clone(),
                _types: PhantomData,
            },
            self.key_serde.clone(),
            self.value_serde.clone(),
            self.repartition_required,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crate::kstream::test_util::*;
    use crate::{Consumed, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn peek_sees_every_record_and_forwards_it_unchanged() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .peek(move |k, v| log.lock().unwrap().push(format!("{k}={v}")))
            .to("out", Produced::default());
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("a"), "1", 0).unwrap();
        d.pipe_str("in", Some("b"), "2", 0).unwrap();
        assert_eq!(*seen.lock().unwrap(), ["a=1", "b=2"]);
        assert_eq!(kv(&d.read_output("out")), pairs(&[("a", "1"), ("b", "2")]));
    }
}
