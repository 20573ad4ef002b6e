//! A real 3-node Kafka cluster (KRaft, every node a combined broker + controller), for
//! tests that kill, stop and restart brokers while jobs run against the others.

mod metadata;
mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use tempfile::TempDir;

use crate::broker::{TEMP_PREFIX, pick_ports, random_cluster_id, sweep_stale_temp_dirs};
use crate::error::{Error, Result};
use crate::process::{find_java, kafka_lib_dir};
pub use metadata::transaction_state_partition;
use metadata::{block_on, client_config, metadata_client, under_replicated};
use node::{Node, Shared};

/// The internal topic holding consumer group offsets.
const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The internal topic holding transaction state; its partition leaders are the
/// transaction coordinators.
const TRANSACTION_TOPIC: &str = "__transaction_state";
/// Timeout of single client requests made by the cluster helpers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How to start a [`KafkaCluster`].
///
/// ```no_run
/// use std::time::Duration;
/// use kstreams_testkit::{ClusterOptions, KafkaCluster};
///
/// let cluster = KafkaCluster::start(
///     ClusterOptions::default()
///         .with_nodes(3)
///         .with_startup_timeout(Duration::from_secs(300))
///         .with_property("log.segment.bytes", "1048576"),
/// )?;
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of nodes (each a broker and a controller voter). Default: 3.
    pub nodes: usize,
    /// How long [`KafkaCluster::start`] and [`KafkaCluster::restart`] wait for brokers to
    /// show in the metadata. Default: 180 s.
    pub startup_timeout: Duration,
    /// Extra `server.properties` entries for every node, written after (and so
    /// overriding) the defaults.
    pub extra_properties: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            startup_timeout: Duration::from_secs(180),
            extra_properties: Vec::new(),
        }
    }
}

impl ClusterOptions {
    /// Sets the number of nodes.
    ///
    /// ```no_run
    /// let opts = kstreams_testkit::ClusterOptions::default().with_nodes(5);
    /// ```
    pub fn with_nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Sets how long to wait for the brokers to become ready.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let opts = kstreams_testkit::ClusterOptions::default()
    ///     .with_startup_timeout(Duration::from_secs(300));
    /// ```
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Adds (or overrides) one `server.properties` entry of every node.
    ///
    /// ```no_run
    /// let opts = kstreams_testkit::ClusterOptions::default()
    ///     .with_property("leader.imbalance.check.interval.seconds", "10");
    /// ```
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_properties.push((key.into(), value.into()));
        self
    }
}

/// A real Apache Kafka cluster of combined broker + controller nodes (KRaft, static
/// `controller.quorum.voters`) on 127.0.0.1, each node a child JVM with its own data
/// directory. Never a mock.
///
/// Node ids are 1..=n. Defaults: `default.replication.factor`, and the replication of
/// `__consumer_offsets` and `__transaction_state`, are min(n, 3); `min.insync.replicas`
/// and `transaction.state.log.min.isr` are min(n, 2); no unclean leader election, no
/// automatic topic creation; a broker is fenced 3 s after its last heartbeat, so its
/// partitions get new leaders within seconds of a `kill -9`.
///
/// Every JVM is killed when this process dies, however it dies (as for
/// [`KafkaBroker`](crate::KafkaBroker)); dropping the cluster kills the nodes (SIGKILL)
/// and deletes their temporary directory, unless the thread is panicking: then the
/// directory (every node's `broker.log`) is kept and its path printed.
///
/// ```no_run
/// use std::time::Duration;
/// use kstreams_testkit::{ClusterOptions, KafkaCluster};
///
/// let cluster = KafkaCluster::start(ClusterOptions::default())?;
/// cluster.create_topic("orders", 6, false)?; // replicated to every node
/// let leaders = cluster.leaders("orders")?; // partition -> node id
/// let victim = leaders[&0];
/// cluster.kill(victim)?;
/// cluster.restart(victim)?;
/// cluster.wait_fully_replicated(Duration::from_secs(120))?;
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub struct KafkaCluster {
    nodes: Vec<Node>,
    shared: Shared,
    startup_timeout: Duration,
    dir: PathBuf,
    /// Last: removed after the nodes are killed.
    temp: TempDir,
}

impl std::fmt::Debug for KafkaCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCluster")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        // The nodes are killed when the fields are dropped, after this. A failing test
        // keeps the broker logs to read (until a later run sweeps dirs of dead pids).
        if std::thread::panicking() {
            self.temp.disable_cleanup(true);
            let _ = writeln!(
                std::io::stderr(),
                "a thread panicked; Kafka cluster directory kept: {}",
                self.dir.display()
            );
        }
    }
}

impl KafkaCluster {
    /// Formats and starts every node in parallel, and waits until the metadata shows
    /// all brokers.
    ///
    /// ```no_run
    /// let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn start(options: ClusterOptions) -> Result<KafkaCluster> {
        find_java()?;
        kafka_lib_dir()?;
        sweep_stale_temp_dirs();
        let n = options.nodes.max(1);
        let temp = tempfile::Builder::new()
            .prefix(&format!("{TEMP_PREFIX}{}-cluster-", std::process::id()))
            .tempdir()
            .map_err(|e| Error::io("creating a temporary cluster directory", e))?;
        let dir = temp.path().to_path_buf();
        let mut nodes = Vec::with_capacity(n);
        for id in 1..=n as i32 {
            let (port, cport) = pick_ports(None)?;
            nodes.push(Node::new(id, dir.join(format!("node-{id}")), port, cport)?);
        }
        let voters = nodes
            .iter()
            .map(|nd| format!("{}@127.0.0.1:{}", nd.id, nd.controller_port()))
            .collect::<Vec<_>>()
            .join(",");
        let cluster = KafkaCluster {
            shared: Shared {
                cluster_id: random_cluster_id(),
                voters,
                replication: n.min(3),
                extra_properties: options.extra_properties,
            },
            startup_timeout: options.startup_timeout,
            nodes,
            dir,
            temp,
        };
        let started = Instant::now();
        let shared = &cluster.shared;
        std::thread::scope(|s| {
            let handles: Vec<_> = cluster
                .nodes
                .iter()
                .map(|nd| s.spawn(move || nd.spawn(shared)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("node start thread panicked"))
                .collect::<Result<Vec<()>>>()
        })?;
        let all: BTreeSet<i32> = cluster.node_ids().into_iter().collect();
        cluster.wait_brokers(&cluster.bootstrap_servers(), &all)?;
        tracing::info!(
            bootstrap = %cluster.bootstrap_servers(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Kafka cluster ready"
        );
        Ok(cluster)
    }

    /// The `bootstrap.servers` string listing every node, e.g.
    /// `127.0.0.1:41001,127.0.0.1:41003,127.0.0.1:41005`.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// let bootstrap = cluster.bootstrap_servers();
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn bootstrap_servers(&self) -> String {
        let all: Vec<String> = self.nodes.iter().map(Node::bootstrap).collect();
        all.join(",")
    }

    /// The node ids, `1..=n`.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// assert_eq!(cluster.node_ids(), vec![1, 2, 3]);
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn node(&self, id: i32) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| Error::UnknownNode {
                id,
                nodes: self.node_ids(),
            })
    }

    /// The client port of node `id`.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// let port = cluster.port(1)?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn port(&self, id: i32) -> Result<u16> {
        Ok(self.node(id)?.port())
    }

    /// The directory of node `id`: `server.properties`, `broker.log`, `kafka-logs/`.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// let dir = cluster.data_dir(2)?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn data_dir(&self, id: i32) -> Result<&Path> {
        Ok(&self.node(id)?.dir)
    }

    /// Path of node `id`'s `broker.log` (its JVM's stdout and stderr, appended to
    /// across restarts).
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// let log = std::fs::read_to_string(cluster.log_path(3)?);
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn log_path(&self, id: i32) -> Result<PathBuf> {
        Ok(self.node(id)?.log_path())
    }

    /// Whether node `id`'s JVM is running.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// assert!(cluster.is_running(1)?);
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn is_running(&self, id: i32) -> Result<bool> {
        Ok(self.node(id)?.is_running())
    }

    /// Kills node `id` with SIGKILL (a crash: no controlled shutdown, no log flush).
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// cluster.kill(2)?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn kill(&self, id: i32) -> Result<()> {
        self.node(id)?.signal(libc::SIGKILL)
    }

    /// Stops node `id` cleanly: SIGTERM (controlled shutdown: its leaderships move
    /// first), then SIGKILL if it has not exited within 30 s.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// cluster.stop(1)?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn stop(&self, id: i32) -> Result<()> {
        self.node(id)?.signal(libc::SIGTERM)
    }

    /// Stops node `id` if it runs, starts it again on the same ports with the same data,
    /// and waits until the broker is back (unfenced) in the metadata.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// cluster.kill(3)?;
    /// cluster.restart(3)?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn restart(&self, id: i32) -> Result<()> {
        let node = self.node(id)?;
        node.signal(libc::SIGTERM)?;
        node.wait_ports_free();
        node.spawn(&self.shared)?;
        // Ask the restarted broker itself: it lists itself once it has caught up
        // with the metadata log and the controller has unfenced it.
        self.wait_brokers(&node.bootstrap(), &BTreeSet::from([id]))
    }

    /// Waits until the metadata served via `bootstrap` lists every broker of `want`.
    fn wait_brokers(&self, bootstrap: &str, want: &BTreeSet<i32>) -> Result<()> {
        let deadline = Instant::now() + self.startup_timeout;
        let probe = metadata_client(bootstrap)?;
        loop {
            for node in self.nodes.iter().filter(|n| want.contains(&n.id)) {
                if let Some(status) = node.exit_status() {
                    return Err(node.exited_error(status));
                }
            }
            if let Ok(md) = probe.fetch_metadata(None, Duration::from_millis(1000)) {
                let ids: BTreeSet<i32> = md.brokers().iter().map(|b| b.id()).collect();
                if want.is_subset(&ids) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let first = self.node(*want.first().unwrap_or(&1))?;
                return Err(Error::StartTimeout {
                    bootstrap: bootstrap.to_string(),
                    timeout: self.startup_timeout,
                    log_path: first.log_path(),
                    log_tail: crate::broker::log_tail(&first.log_path()),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates a topic replicated to min(n, 3) nodes and waits until every partition
    /// has a leader and a full ISR. Fails if the topic already exists.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// cluster.create_topic("customers", 4, true)?; // cleanup.policy=compact
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn create_topic(&self, name: &str, partitions: i32, compacted: bool) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = client_config(&self.bootstrap_servers())
            .create()
            .map_err(|e| Error::kafka("creating an admin client", e))?;
        let rf = self.shared.replication as i32;
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(rf));
        if compacted {
            topic = topic.set("cleanup.policy", "compact");
        }
        let opts = AdminOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT * 3))
            .operation_timeout(Some(REQUEST_TIMEOUT * 3));
        let results = block_on(admin.create_topics([&topic], &opts))
            .map_err(|e| Error::kafka(format!("creating topic {name:?}"), e))?;
        for r in results {
            if let Err((t, code)) = r {
                return Err(Error::kafka(
                    format!("creating topic {t:?}"),
                    KafkaError::AdminOp(code),
                ));
            }
        }
        // Every running broker must know the topic: a client that asks another one
        // right after this (e.g. a job checking that its topics exist) must see it too.
        let timeout = REQUEST_TIMEOUT * 6;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let what = format!(
                "topic {name:?} fully replicated (as broker {} sees it)",
                node.id
            );
            self.wait_for_via(&node.bootstrap(), timeout, &what, |md| {
                let t = md.topics().iter().find(|t| t.name() == name);
                match t {
                    Some(t) if t.partitions().len() == partitions as usize => under_replicated(t),
                    _ => Some(format!(
                        "{name} not in metadata with {partitions} partitions"
                    )),
                }
            })?;
        }
        Ok(())
    }

    /// The leader (node id, or -1 if none) of every partition of `topic`, from the
    /// metadata.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// let leaders = cluster.leaders("orders")?;
    /// let led_by_1 = leaders.values().filter(|l| **l == 1).count();
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn leaders(&self, topic: &str) -> Result<BTreeMap<i32, i32>> {
        let md = self.topic_metadata(topic)?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| {
                Error::kafka(
                    format!("metadata of topic {topic:?}"),
                    KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
                )
            })?;
        Ok(t.partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect())
    }

    /// The node that is the transaction coordinator of `transactional_id`: the leader of
    /// partition [`transaction_state_partition`] of `__transaction_state`. Fails if that
    /// topic does not exist yet (no transactional producer has started).
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// let coordinator = cluster.transaction_coordinator("orders-app-0_0")?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn transaction_coordinator(&self, transactional_id: &str) -> Result<i32> {
        let leaders = self.leaders(TRANSACTION_TOPIC)?;
        let p = transaction_state_partition(transactional_id, leaders.len() as i32);
        Ok(leaders[&p])
    }

    /// Waits until every partition of every topic (including `__consumer_offsets` and
    /// `__transaction_state` when they exist) has a leader and an ISR holding all its
    /// replicas. The error names a partition that was not.
    ///
    /// ```no_run
    /// # let cluster = kstreams_testkit::KafkaCluster::start(Default::default())?;
    /// cluster.wait_fully_replicated(std::time::Duration::from_secs(120))?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn wait_fully_replicated(&self, timeout: Duration) -> Result<()> {
        let n = self.nodes.len();
        self.wait_for(timeout, "every partition fully replicated", |md| {
            if md.brokers().len() < n {
                return Some(format!("{} of {n} brokers in metadata", md.brokers().len()));
            }
            md.topics().iter().find_map(under_replicated)
        })
    }

    /// Polls the all-topics metadata (plus the internal topics, asked by name) until
    /// `problem` returns `None`.
    fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        problem: impl FnMut(&Metadata) -> Option<String>,
    ) -> Result<()> {
        self.wait_for_via(&self.bootstrap_servers(), timeout, what, problem)
    }

    /// [`wait_for`](Self::wait_for) with the metadata of the brokers in `bootstrap`.
    fn wait_for_via(
        &self,
        bootstrap: &str,
        timeout: Duration,
        what: &str,
        mut problem: impl FnMut(&Metadata) -> Option<String>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let probe = metadata_client(bootstrap)?;
        let mut last = String::from("no metadata");
        loop {
            if let Ok(md) = probe.fetch_metadata(None, REQUEST_TIMEOUT) {
                let mut ok = true;
                for extra in [OFFSETS_TOPIC, TRANSACTION_TOPIC] {
                    if md.topics().iter().any(|t| t.name() == extra) {
                        continue;
                    }
                    if let Ok(imd) = probe.fetch_metadata(Some(extra), REQUEST_TIMEOUT)
                        && let Some(t) = imd.topics().iter().find(|t| t.name() == extra)
                        && t.error().is_none()
                        && let Some(p) = under_replicated(t)
                    {
                        (ok, last) = (false, p);
                    }
                }
                if ok {
                    match problem(&md) {
                        None => return Ok(()),
                        Some(p) => last = p,
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{what} (last seen: {last})"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn topic_metadata(&self, topic: &str) -> Result<Metadata> {
        let probe = metadata_client(&self.bootstrap_servers())?;
        // Right after a kill the client may first pick the dead broker: retry.
        let deadline = Instant::now() + REQUEST_TIMEOUT * 3;
        loop {
            match probe.fetch_metadata(Some(topic), REQUEST_TIMEOUT) {
                Ok(md) => return Ok(md),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => return Err(Error::kafka(format!("fetching metadata of {topic:?}"), e)),
            }
        }
    }
}
