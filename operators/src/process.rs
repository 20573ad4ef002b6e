//! `process`: run a custom [`Processor`] as a step of a DSL program.
//!
//! The escape hatch from the DSL to the Processor API: anything the DSL has
//! no operator for (parsing with error accounting, punctuation, custom
//! state) is a small processor. Stores it uses are declared with
//! [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)
//! and named here. The processor may forward any key, so the result is
//! marked for repartitioning before a grouping.

use kstreams_runtime::Processor;

use crate::{KStream, Named};

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Adds the processor made by `supplier` (called once per task), with
    /// access to `stores`; returns the stream of what it forwards.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Produced, StreamsBuilder};
    /// use kstreams_runtime::{Processor, ProcessorContext, Record, Result, Serdes, TopologyTestDriver};
    ///
    /// /// Parses numbers; counts and drops what is not one.
    /// struct Parse;
    /// impl Processor<String, String, String, i64> for Parse {
    ///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<String, i64>) -> Result<()> {
    ///         match r.value.trim().parse::<i64>() {
    ///             Ok(n) => ctx.forward(r.with_value(n)),
    ///             Err(_) => { ctx.record_dropped("malformed"); Ok(()) }
    ///         }
    ///     }
    /// }
    ///
    /// let b = StreamsBuilder::new();
    /// b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .process(|| Parse, &[])
    ///     .to("numbers", Produced::with(Serdes::string(), Serdes::i64_text()));
    /// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
    /// d.pipe_str("in", Some("a"), "12", 0).unwrap();
    /// d.pipe_str("in", Some("b"), "x", 0).unwrap();
    /// assert_eq!(d.read_output("numbers").len(), 1);
    /// assert_eq!(d.dropped_records().values().sum::<u64>(), 1);
    /// ```
    pub fn process<KO, VO, P, F>(&self, supplier: F, stores: &[&str]) -> KStream<KO, VO>
    where
        KO: Clone + 'static,
        VO: Clone + 'static,
        P: Processor<K, V, KO, VO>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let name = self.builder.next_name("KSTREAM-PROCESSOR-");
        self.process_impl(name, supplier, stores)
    }

    /// Like [`process`](Self::process), with a name for the node.
    ///
    /// ```
    /// use kstreams_operators::{Consumed, Named, StreamsBuilder};
    /// use kstreams_runtime::{Processor, ProcessorContext, Record, Result, Serdes};
    /// struct Id;
    /// impl Processor<String, String, String, String> for Id {
    ///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<String, String>) -> Result<()> { ctx.forward(r) }
    /// }
    /// let b = StreamsBuilder::new();
    /// let s = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .process_named(|| Id, &[], Named::as_("identity"));
    /// assert_eq!(s.node_name(), "identity");
    /// ```
    pub fn process_named<KO, VO, P, F>(
        &self,
        supplier: F,
        stores: &[&str],
        named: Named,
    ) -> KStream<KO, VO>
    where
        KO: Clone + 'static,
        VO: Clone + 'static,
        P: Processor<K, V, KO, VO>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.process_impl(named.0, supplier, stores)
    }

    fn process_impl<KO, VO, P, F>(
        &self,
        name: String,
        supplier: F,
        stores: &[&str],
    ) -> KStream<KO, VO>
    where
        KO: Clone + 'static,
        VO: Clone + 'static,
        P: Processor<K, V, KO, VO>,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let out = self.add_child(name, supplier, None, None, true);
        for store in stores {
            let node = out.node.clone();
            self.builder
                .with_topology(|t| t.connect_processor_and_store(&node, store).map(|_| ()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Consumed, Produced, StreamsBuilder};
    use kstreams_runtime::{
        Processor, ProcessorContext, PunctuationType, PunctuatorId, Record, Result, Serdes,
        StoreBuilder,
    };

    /// Emits a running total per key, and every 10 ms of stream time a
    /// `("total", sum of all)` record.
    struct RunningTotal;
    impl Processor<String, i64, String, i64> for RunningTotal {
        fn init(&mut self, ctx: &mut ProcessorContext<String, i64>) -> Result<()> {
            ctx.schedule(
                std::time::Duration::from_millis(10),
                PunctuationType::StreamTime,
            );
            Ok(())
        }
        fn process(
            &mut self,
            r: Record<String, i64>,
            ctx: &mut ProcessorContext<String, i64>,
        ) -> Result<()> {
            let store = ctx.key_value_store::<String, i64>("totals")?;
            let total = store.get(&r.key)?.unwrap_or(0) + r.value;
            store.put(&r.key, &total)?;
            ctx.forward(r.with_value(total))
        }
        fn punctuate(
            &mut self,
            _: PunctuatorId,
            ts: i64,
            ctx: &mut ProcessorContext<String, i64>,
        ) -> Result<()> {
            let store = ctx.key_value_store::<String, i64>("totals")?;
            let sum = store.all()?.into_iter().map(|(_, v)| v).sum();
            ctx.forward(Record::new("total".to_string(), sum, ts))
        }
    }

    #[test]
    fn custom_processor_uses_its_store_and_punctuates() {
        let b = StreamsBuilder::new();
        b.add_state_store(
            StoreBuilder::key_value("totals", Serdes::string(), Serdes::i64_be()).in_memory(),
        );
        let out = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
            .process(|| RunningTotal, &["totals"]);
        assert!(out.repartition_required());
        out.to("out", Produced::with(Serdes::string(), Serdes::i64_text()));
        let t = b.build().unwrap();
        assert!(
            t.describe()
                .to_string()
                .contains("Processor: KSTREAM-PROCESSOR-0000000001 (stores: [totals])")
        );
        let mut d = driver(t);
        d.pipe_str("in", Some("a"), "1", 0).unwrap();
        d.pipe_str("in", Some("b"), "2", 5).unwrap();
        d.pipe_str("in", Some("a"), "3", 12).unwrap();
        assert_eq!(
            kv(&d.read_output("out")),
            pairs(&[
                ("a", "1"),
                ("total", "1"),
                ("b", "2"),
                ("a", "4"),
                ("total", "6")
            ])
        );
        assert_eq!(d.all_records("test-app-totals-changelog").len(), 3);
    }

    #[test]
    fn unknown_store_is_an_error() {
        let b = StreamsBuilder::new();
        b.stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
            .process(|| RunningTotal, &["nope"]);
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("store 'nope' does not exist"), "{err}");
    }

    /// Panics in `punctuate` (stream time) or in `flush`, as chosen.
    struct Panicky {
        in_flush: bool,
    }
    impl Processor<String, i64, String, i64> for Panicky {
        fn init(&mut self, ctx: &mut ProcessorContext<String, i64>) -> Result<()> {
            ctx.schedule(
                std::time::Duration::from_millis(10),
                PunctuationType::StreamTime,
            );
            Ok(())
        }
        fn process(
            &mut self,
            r: Record<String, i64>,
            ctx: &mut ProcessorContext<String, i64>,
        ) -> Result<()> {
            ctx.forward(r)
        }
        fn punctuate(
            &mut self,
            _: PunctuatorId,
            ts: i64,
            _: &mut ProcessorContext<String, i64>,
        ) -> Result<()> {
            if !self.in_flush && ts >= 20 {
                panic!("punctuate exploded at {ts}");
            }
            Ok(())
        }
        fn flush(&mut self, _: &mut ProcessorContext<String, i64>) -> Result<()> {
            if self.in_flush {
                panic!("flush exploded");
            }
            Ok(())
        }
    }

    #[test]
    fn a_panic_in_punctuate_or_flush_is_an_error_naming_it() {
        for in_flush in [false, true] {
            let b = StreamsBuilder::new();
            b.stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
                .process(move || Panicky { in_flush }, &[])
                .to("out", Produced::with(Serdes::string(), Serdes::i64_text()));
            let mut d = driver(b.build().unwrap());
            let err = if in_flush {
                // The driver commits (and so flushes) after every record.
                d.pipe_str("in", Some("a"), "1", 0).unwrap_err()
            } else {
                d.pipe_str("in", Some("a"), "1", 0).unwrap();
                d.pipe_str("in", Some("a"), "2", 25).unwrap_err()
            }
            .to_string();
            let want = if in_flush {
                "a processor's flush panicked: flush exploded"
            } else {
                "a punctuator panicked: punctuate exploded at 25"
            };
            assert!(err.contains(want), "{err}");
        }
    }
}
