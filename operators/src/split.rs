//! `split` / `branch`: route each record to the first branch whose
//! predicate accepts it.
//!
//! Why one splitter node plus one node per branch (as in Kafka Streams):
//! the splitter evaluates the predicates in order and hands the record to
//! exactly one branch with `forward_to`, so a record is never cloned; each
//! branch is a pass-through node whose name is the branch name, which makes
//! `describe()` show the branches by name.
//!
//! Names: the branch named `b` of a split with prefix `p` is `p` + `b`; the
//! prefix is the split's [`Named`] (e.g. `"route-"`), or the splitter's node
//! name followed by `-`. Unnamed branches are numbered from 1 in the order
//! they were added; the default branch is `0` unless named. Records no
//! predicate accepts go to the default branch if there is one, and are
//! dropped otherwise.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kstreams_runtime::{Processor, ProcessorContext, Record, Result};

use crate::{Branched, KStream, Named};

type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Branch predicates, filled in while the program is built and read once
/// per task when the splitter is created.
struct Routes<K, V> {
    branches: Vec<(String, Predicate<K, V>)>,
    default: Option<String>,
}

pub(crate) struct SplitProcessor<K, V> {
    branches: Vec<(String, Predicate<K, V>)>,
    default: Option<String>,
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V, K, V> for SplitProcessor<K, V> {
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<K, V>) -> Result<()> {
        for (child, predicate) in &self.branches {
            if predicate(&record.key, &record.value) {
                return ctx.forward_to(child, record);
            }
        }
        match &self.default {
            Some(child) => ctx.forward_to(child, record),
            None => Ok(()),
        }
    }
}

pub(crate) struct PassThrough;

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, V, K, V> for PassThrough {
    fn process(&mut self, record: Record<K, V>, ctx: &mut ProcessorContext<K, V>) -> Result<()> {
        ctx.forward(record)
    }
}

/// The branches of a [`KStream::split`], added one by one; finish with
/// [`default_branch`](Self::default_branch) or
/// [`no_default_branch`](Self::no_default_branch).
///
/// ```
/// use kstreams_operators::{Branched, Consumed, Named, Produced, StreamsBuilder};
/// use kstreams_runtime::{Serdes, TopologyTestDriver};
/// let b = StreamsBuilder::new();
/// let branches = b
///     .stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
///     .split(Named::as_("size-"))
///     .branch(|_, n| *n >= 100, Branched::as_("large"))
///     .default_branch(Branched::as_("small"));
/// branches["size-large"].to("large", Produced::default());
/// branches["size-small"].to("small", Produced::default());
/// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
/// d.pipe_str("in", Some("a"), "500", 0).unwrap();
/// d.pipe_str("in", Some("b"), "5", 0).unwrap();
/// assert_eq!(d.read_output("large")[0].key_str(), Some("a"));
/// assert_eq!(d.read_output("small")[0].key_str(), Some("b"));
/// ```
pub struct BranchedKStream<K, V> {
    source: KStream<K, V>,
    splitter: String,
    prefix: String,
    routes: Arc<Mutex<Routes<K, V>>>,
    streams: BTreeMap<String, KStream<K, V>>,
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    /// Splits the stream into branches; `name` is the prefix of the branch
    /// names (use [`split_unnamed`](Self::split_unnamed) for generated names).
    ///
    /// ```
    /// use kstreams_operators::{Branched, Consumed, Named, StreamsBuilder};
    /// use kstreams_runtime::Serdes;
    /// let b = StreamsBuilder::new();
    /// let m = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .split(Named::as_("kind-"))
    ///     .branch(|_, v| v.starts_with('{'), Branched::as_("json"))
    ///     .no_default_branch();
    /// assert!(m.contains_key("kind-json"));
    /// ```
    pub fn split(&self, name: Named) -> BranchedKStream<K, V> {
        self.split_impl(Some(name.0))
    }

    /// Splits the stream into branches named `KSTREAM-BRANCH-<n>-<branch>`.
    ///
    /// ```
    /// use kstreams_operators::{Branched, Consumed, StreamsBuilder};
    /// use kstreams_runtime::Serdes;
    /// let b = StreamsBuilder::new();
    /// let m = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .split_unnamed()
    ///     .branch(|_, v| v.is_empty(), Branched::default())
    ///     .default_branch(Branched::default());
    /// assert_eq!(m.keys().collect::<Vec<_>>(), ["KSTREAM-BRANCH-0000000001-0", "KSTREAM-BRANCH-0000000001-1"]);
    /// ```
    pub fn split_unnamed(&self) -> BranchedKStream<K, V> {
        self.split_impl(None)
    }

    fn split_impl(&self, prefix: Option<String>) -> BranchedKStream<K, V> {
        let splitter = self.builder.next_name("KSTREAM-BRANCH-");
        let prefix = prefix.unwrap_or_else(|| format!("{splitter}-"));
        let routes = Arc::new(Mutex::new(Routes {
            branches: Vec::new(),
            default: None,
        }));
        let r = routes.clone();
        self.builder.add_processor::<K, V, K, V, _, _>(
            &splitter,
            move || {
                let routes = r.lock().unwrap_or_else(|e| e.into_inner());
                SplitProcessor {
                    branches: routes.branches.clone(),
                    default: routes.default.clone(),
                }
            },
            &[&self.node],
        );
        BranchedKStream {
            source: self.clone(),
            splitter,
            prefix,
            routes,
            streams: BTreeMap::new(),
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> BranchedKStream<K, V> {
    fn add_branch(&mut self, name: String) {
        let stream = KStream {
            builder: self.source.builder.clone(),
            node: name.clone(),
            key_serde: self.source.key_serde.clone(),
            value_serde: self.source.value_serde.clone(),
            repartition_required: self.source.repartition_required,
        };
        self.source.builder.add_processor::<K, V, K, V, _, _>(
            &name,
            || PassThrough,
            &[&self.splitter],
        );
        self.streams.insert(name, stream);
    }

    /// Adds a branch for the records `predicate` accepts (and no earlier
    /// branch did).
    ///
    /// ```
    /// use kstreams_operators::{Branched, Consumed, Named, StreamsBuilder};
    /// use kstreams_runtime::Serdes;
    /// let b = StreamsBuilder::new();
    /// let m = b.stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
    ///     .split(Named::as_("sign-"))
    ///     .branch(|_, n| *n < 0, Branched::as_("negative"))
    ///     .branch(|_, n| *n == 0, Branched::as_("zero"))
    ///     .no_default_branch();
    /// assert_eq!(m.len(), 2);
    /// ```
    pub fn branch<F>(mut self, predicate: F, branched: Branched) -> Self
    where
        F: Fn(&K, &V) -> bool + Send + Sync + 'static,
    {
        let index = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .branches
            .len()
            + 1;
        let name = format!(
            "{}{}",
            self.prefix,
            branched.name.unwrap_or_else(|| index.to_string())
        );
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .branches
            .push((name.clone(), Arc::new(predicate)));
        self.add_branch(name);
        self
    }

    /// Adds a branch for the records no predicate accepted, and returns all
    /// branches by name.
    ///
    /// ```
    /// use kstreams_operators::{Branched, Consumed, Named, StreamsBuilder};
    /// use kstreams_runtime::Serdes;
    /// let b = StreamsBuilder::new();
    /// let m = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .split(Named::as_("s-"))
    ///     .branch(|k, _| k == "vip", Branched::as_("vip"))
    ///     .default_branch(Branched::as_("rest"));
    /// assert_eq!(m.keys().collect::<Vec<_>>(), ["s-rest", "s-vip"]);
    /// ```
    pub fn default_branch(mut self, branched: Branched) -> BTreeMap<String, KStream<K, V>> {
        let name = format!(
            "{}{}",
            self.prefix,
            branched.name.unwrap_or_else(|| "0".into())
        );
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .default = Some(name.clone());
        self.add_branch(name);
        self.streams
    }

    /// Returns all branches by name; records no predicate accepted are dropped.
    ///
    /// ```
    /// use kstreams_operators::{Branched, Consumed, Named, StreamsBuilder};
    /// use kstreams_runtime::Serdes;
    /// let b = StreamsBuilder::new();
    /// let m = b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
    ///     .split(Named::as_("s-"))
    ///     .branch(|k, _| k == "vip", Branched::as_("vip"))
    ///     .no_default_branch();
    /// assert_eq!(m.len(), 1);
    /// ```
    pub fn no_default_branch(self) -> BTreeMap<String, KStream<K, V>> {
        self.streams
    }
}

#[cfg(test)]
mod tests {
    use crate::kstream::test_util::*;
    use crate::{Branched, Consumed, Named, Produced, StreamsBuilder};
    use kstreams_runtime::Serdes;

    #[test]
    fn first_matching_branch_wins_and_default_gets_the_rest() {
        let b = StreamsBuilder::new();
        let m = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
            .split(Named::as_("n-"))
            .branch(|_, n| n % 3 == 0, Branched::as_("three"))
            .branch(|_, n| n % 2 == 0, Branched::as_("two"))
            .default_branch(Branched::default());
        assert_eq!(m.keys().collect::<Vec<_>>(), ["n-0", "n-three", "n-two"]);
        for (branch, topic) in [("n-three", "t3"), ("n-two", "t2"), ("n-0", "rest")] {
            m[branch].to(topic, Produced::default());
        }
        let t = b.build().unwrap();
        let text = t.describe().to_string();
        assert!(text.contains("--> n-three, n-two, n-0"), "{text}");
        let mut d = driver(t);
        for n in 1..=7 {
            d.pipe_str("in", Some(&format!("k{n}")), &n.to_string(), 0)
                .unwrap();
        }
        assert_eq!(kv(&d.read_output("t3")), pairs(&[("k3", "3"), ("k6", "6")]));
        assert_eq!(kv(&d.read_output("t2")), pairs(&[("k2", "2"), ("k4", "4")]));
        assert_eq!(
            kv(&d.read_output("rest")),
            pairs(&[("k1", "1"), ("k5", "5"), ("k7", "7")])
        );
    }

    #[test]
    fn without_default_unmatched_records_are_dropped() {
        let b = StreamsBuilder::new();
        let m = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .split_unnamed()
            .branch(|_, v| v == "yes", Branched::default())
            .no_default_branch();
        m["KSTREAM-BRANCH-0000000001-1"].to("out", Produced::default());
        let mut d = driver(b.build().unwrap());
        d.pipe_str("in", Some("a"), "no", 0).unwrap();
        d.pipe_str("in", Some("b"), "yes", 0).unwrap();
        assert_eq!(kv(&d.read_output("out")), pairs(&[("b", "yes")]));
    }

    #[test]
    fn duplicate_branch_names_are_an_error() {
        let b = StreamsBuilder::new();
        let _ = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
            .split(Named::as_("x-"))
            .branch(|_, _| true, Branched::as_("a"))
            .branch(|_, _| true, Branched::as_("a"))
            .no_default_branch();
        let err = b.build().unwrap_err().to_string();
        assert!(err.contains("a node named 'x-a' already exists"), "{err}");
    }

    #[test]
    fn branches_then_merge_restore_the_whole_stream() {
        let b = StreamsBuilder::new();
        let m = b
            .stream("in", Consumed::with(Serdes::string(), Serdes::i64_text()))
            .split(Named::as_("p-"))
            .branch(|_, n| *n > 0, Branched::as_("pos"))
            .default_branch(Branched::as_("other"));
        let negated = m["p-other"].map_values(|n| -n);
        m["p-pos"].merge(&negated).to(
            "abs",
            Produced::default().with_value_serde(Serdes::i64_text()),
        );
        let mut d = driver(b.build().unwrap());
        for (k, n) in [("a", "3"), ("b", "-4"), ("c", "0"), ("d", "5")] {
            d.pipe_str("in", Some(k), n, 0).unwrap();
        }
        assert_eq!(
            kv(&d.read_output("abs")),
            pairs(&[("a", "3"), ("b", "4"), ("c", "0"), ("d", "5")])
        );
    }
}
