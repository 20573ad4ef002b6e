//! The Kafka runtime: runs a [`Topology`] against a real Kafka cluster,
//! exactly-once, across any number of instances.
//!
//! Roles, each in its own file, named after Kafka Streams' internals:
//! - [`KafkaStreams`] (this file): the entry point; start-up, state, shutdown.
//! - `assignment.rs`: start-up checks, internal topics, partitions → tasks.
//! - `thread.rs`: `StreamThread`, one group member and its poll loop.
//! - `task_manager/`: the thread's tasks across rebalances (`mod.rs`), their
//!   commits (`commit.rs`), and fenced or stuck tasks (`recovery.rs`).
//! - `streams_producer.rs`: a task's transactional producer and the retry
//!   rules of its transaction calls.
//! - `record_collector.rs`: what a task sends goes through its producer.
//! - `changelog_reader.rs`: restores stores from their changelogs.
//! - `client_log.rs`, `client_fault.rs`: client errors logged without
//!   floods; the ones no retry can fix stop the application with the fix.
//! - `priority.rs`: the threads around the stream threads yield the CPU
//!   to them.
//!
//! The path of a record: consumer poll (thread) → task by partition (task
//! manager) → the task's nodes (`task.rs`) → sink / store write set → the
//! task's producer (record collector) → commit: offsets + transaction, then
//! the write sets go to RocksDB.

mod assignment;
mod changelog_reader;
mod client_fault;
mod client_log;
mod config;
mod http;
pub mod interactive_queries;
mod metrics;
mod offset_metadata;
pub(crate) mod priority;
mod record_collector;
mod repartition_purger;
mod streams_group;
mod streams_producer;
mod task_manager;
mod thread;
mod txn_producer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;

pub use assignment::{InternalTopic, TopicPlan};
pub use changelog_reader::RestoreStats;
pub use config::{GroupProtocol, ProcessingGuarantee, StreamsConfig, StreamsConfigBuilder};
pub use metrics::{MetricsHandle, MetricsSnapshot, ThreadMetrics};

use crate::error::{Result, StreamsError};
use crate::topology::Topology;
use task_manager::RuntimeShared;
use thread::StreamThread;

/// Connects to `group`'s coordinator the way a `group.protocol=streams`
/// member does (security, `ApiVersions`, `FindCoordinator`) and returns the
/// coordinator's address, or the error start-up would report. `settings`
/// are librdkafka's (`security.protocol`, `sasl.*`, `ssl.*`).
///
/// ```no_run
/// let s = std::collections::BTreeMap::new();
/// let addr = kstreams_runtime::kafka::probe_streams_coordinator("127.0.0.1:9092", &s, "app");
/// ```
#[doc(hidden)]
pub fn probe_streams_coordinator(
    bootstrap: &str,
    settings: &std::collections::BTreeMap<String, String>,
    group: &str,
) -> std::result::Result<String, String> {
    streams_group::check_coordinator(bootstrap, settings, group, Duration::from_secs(10))
        .map_err(|e| e.to_string())
}

/// The life-cycle state of a [`KafkaStreams`] instance.
///
/// ```
/// assert_ne!(kstreams_runtime::StreamsState::Running, kstreams_runtime::StreamsState::Error);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamsState {
    /// Built, not started.
    Created,
    /// Joining the group or moving tasks.
    Rebalancing,
    /// Every thread has its tasks and processes.
    Running,
    /// A thread failed; see [`KafkaStreams::close`]'s error.
    Error,
    /// Shut down.
    Stopped,
}

/// A handle that asks a running [`KafkaStreams`] to stop; cheap to clone
/// and usable from any thread (e.g. a signal handler).
///
/// ```
/// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
/// let streams = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
/// let handle = streams.shutdown_handle();
/// handle.shutdown();
/// ```
#[derive(Clone)]
pub struct ShutdownHandle(Arc<AtomicBool>);

impl ShutdownHandle {
    /// Requests a clean shutdown.
    ///
    /// ```no_run
    /// # fn f(h: kstreams_runtime::kafka::ShutdownHandle) { h.shutdown(); }
    /// ```
    pub fn shutdown(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs a topology against Kafka.
///
/// ```no_run
/// use kstreams_runtime::{KafkaStreams, StreamsConfig, Topology, Serdes};
/// let mut t = Topology::new();
/// t.add_source("src", &["in"], Serdes::string(), Serdes::string())?;
/// t.add_sink("out", "out", Serdes::string(), Serdes::string(), &["src"])?;
/// let cfg = StreamsConfig::builder("copy-app", "127.0.0.1:9092").build()?;
/// let streams = KafkaStreams::new(t, cfg)?;
/// streams.run_until_signal()?; // SIGINT/SIGTERM → clean shutdown
/// # Ok::<(), kstreams_runtime::StreamsError>(())
/// ```
pub struct KafkaStreams {
    topology: Option<Topology>,
    config: StreamsConfig,
    shutdown: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<Result<()>>)>,
    metrics: Arc<Vec<Arc<ThreadMetrics>>>,
    /// Stores registered for interactive queries, with their codecs.
    queryable: std::collections::HashMap<String, Arc<dyn interactive_queries::StoreCodec>>,
    /// The `metrics.listen` HTTP listener, while running.
    http: Option<http::HttpServer>,
    state: Arc<Mutex<StreamsState>>,
    plan: Option<TopicPlan>,
    /// The lock on `state.dir/<application.id>/.lock`, held while running.
    state_lock: Option<std::fs::File>,
}

impl KafkaStreams {
    /// Prepares an application; nothing connects until [`Self::start`].
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
    /// let s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// assert_eq!(s.state(), kstreams_runtime::StreamsState::Created);
    /// ```
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        let metrics = (0..config.num_threads)
            .map(|i| {
                Arc::new(ThreadMetrics::named(StreamThread::thread_name(
                    &config.application_id,
                    i,
                )))
            })
            .collect();
        Ok(KafkaStreams {
            topology: Some(topology),
            config,
            shutdown: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            metrics: Arc::new(metrics),
            queryable: Default::default(),
            http: None,
            state: Arc::new(Mutex::new(StreamsState::Created)),
            plan: None,
            state_lock: None,
        })
    }

    fn base_client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("log_level", "4");
        for (k, v) in &self.config.passthrough {
            c.set(k, v);
        }
        c
    }

    /// How the threads join under `group.protocol=streams`.
    fn member_config(
        &self,
        topology: &Topology,
        plan: &TopicPlan,
        endpoints: streams_group::EndpointMap,
    ) -> Result<streams_group::MemberConfig> {
        let c = &self.config;
        let endpoint = match &c.application_server {
            Some(s) => {
                let (host, port) = s.rsplit_once(':').unwrap_or((s, "0"));
                Some(streams_group::Endpoint {
                    host: host.to_string(),
                    port: port.parse().unwrap_or(0),
                })
            }
            None => None,
        };
        let rebalance_ms: u64 = c
            .passthrough
            .get("max.poll.interval.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300_000);
        Ok(streams_group::MemberConfig {
            group_id: c.application_id.clone(),
            bootstrap: c.bootstrap_servers.clone(),
            security: streams_group::Security::from_settings(&c.passthrough)
                .map_err(|e| StreamsError::Config(format!("group.protocol=streams: {e}")))?,
            client_id: c.application_id.clone(),
            process_id: streams_group::random_id(),
            topology: streams_group::topology_info(
                topology,
                plan,
                &c.application_id,
                c.replication_factor,
                &c.internal_topic_overrides,
            ),
            endpoint,
            endpoints,
            rebalance_timeout: Duration::from_millis(rebalance_ms),
            give_up_after: c.task_timeout,
            request_timeout: Duration::from_secs(10),
        })
    }

    /// Connects, validates topics, creates internal topics, starts the threads.
    /// Errors here (unreachable broker, missing topic, co-partitioning
    /// mismatch) say what to fix.
    ///
    /// ```no_run
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9092").build().unwrap();
    /// let mut s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// s.start().unwrap();
    /// ```
    pub fn start(&mut self) -> Result<()> {
        let topology = self.topology.take().ok_or_else(|| {
            StreamsError::IllegalState("KafkaStreams can be started only once".into())
        })?;
        priority::set_store_open_nice(self.config.background_nice);
        if topology.subtopologies().is_empty() {
            return Err(StreamsError::Topology(
                "the topology is empty: add at least one source".into(),
            ));
        }
        std::fs::create_dir_all(self.config.state_dir.join(&self.config.application_id)).map_err(
            |e| {
                StreamsError::Config(format!(
                    "state.dir '{}' cannot be created ({e}); point state.dir at a writable directory",
                    self.config.state_dir.display()
                ))
            },
        )?;
        let probe = self
            .config
            .state_dir
            .join(&self.config.application_id)
            .join(".write-test");
        std::fs::write(&probe, b"ok").map_err(|e| {
            StreamsError::Config(format!(
                "state.dir '{}' is not writable ({e}); point state.dir at a writable directory",
                self.config.state_dir.display()
            ))
        })?;
        let _ = std::fs::remove_file(&probe);
        crate::state::set_shared_memory(
            self.config.rocksdb_memtables_bytes,
            self.config.rocksdb_block_cache_bytes,
        );
        self.state_lock = Some(lock_state_dir(
            &self.config.state_dir,
            &self.config.application_id,
        )?);
        let base = self.base_client();
        let faults = Arc::new(client_fault::FaultSlot::default());
        let existing =
            assignment::fetch_partition_counts(&base, self.config.startup_timeout, &faults)?;
        let plan = assignment::plan(&topology, &self.config.application_id, &existing)?;
        let mut missing_dlq: Vec<String> = self
            .config
            .dead_letter_topics()
            .into_iter()
            .chain(topology.dead_letter_topics())
            .filter(|t| !existing.contains_key(t))
            .collect();
        missing_dlq.sort();
        missing_dlq.dedup();
        if !missing_dlq.is_empty() {
            return Err(StreamsError::Config(format!(
                "dead-letter topic(s) {missing_dlq:?} do not exist; create them before starting the application"
            )));
        }
        assignment::create_internal_topics(
            &base,
            &plan,
            &existing,
            &self.config,
            Duration::from_secs(30),
            &faults,
        )?;
        if self.config.group_protocol == GroupProtocol::Streams {
            let coordinator = streams_group::check_coordinator(
                &self.config.bootstrap_servers,
                &self.config.passthrough,
                &self.config.application_id,
                self.config.startup_timeout,
            )
            .map_err(|e| StreamsError::Kafka(format!("group.protocol=streams: {e}")))?;
            tracing::info!(%coordinator, "group coordinator reachable (Streams rebalance protocol)");
            if let Some(n) = self.config.num_standby_replicas {
                streams_group::set_group_configs(
                    &self.config.bootstrap_servers,
                    &self.config.passthrough,
                    &self.config.application_id,
                    &[("streams.num.standby.replicas".into(), n.to_string())],
                    Duration::from_secs(10),
                )
                .map_err(|e| {
                    StreamsError::Config(format!(
                        "num.standby.replicas={n}: the broker refused it for group '{}' ({e}); \
                         it allows at most group.streams.max.standby.replicas",
                        self.config.application_id
                    ))
                })?;
            }
        }
        self.plan = Some(plan.clone());
        if self.config.metrics_listen.is_none() && !self.queryable.is_empty() {
            tracing::warn!(
                stores = ?self.queryable.keys().collect::<Vec<_>>(),
                "queryable stores are registered but metrics.listen is not set; set it to serve queries over HTTP"
            );
        }
        let endpoints: streams_group::EndpointMap = Arc::default();
        if let Some(addr) = self.config.metrics_listen {
            let mut queries = interactive_queries::InteractiveQueries::new(
                self.config.application_id.clone(),
                self.config.state_dir.clone(),
                self.config.application_server.clone(),
                interactive_queries::locate_stores(&topology, &plan, &self.queryable)?,
                self.metrics.clone(),
                base.clone(),
            );
            if self.config.group_protocol == GroupProtocol::Streams {
                queries.endpoints = Some(endpoints.clone());
            }
            self.http = Some(http::serve(
                addr,
                http::HttpState {
                    threads: self.metrics.clone(),
                    queries: Arc::new(queries),
                },
            )?);
        }
        let member = (self.config.group_protocol == GroupProtocol::Streams)
            .then(|| self.member_config(&topology, &plan, endpoints.clone()))
            .transpose()?;
        let shared = Arc::new(RuntimeShared {
            config: self.config.clone(),
            topology: Arc::new(topology),
            plan,
            base_client: base,
            faults,
            member,
        });
        *self.state.lock().unwrap() = StreamsState::Rebalancing;
        for i in 0..self.config.num_threads {
            let metrics = self.metrics[i].clone();
            let name = StreamThread::thread_name(&self.config.application_id, i);
            let state = self.state.clone();
            let shutdown = self.shutdown.clone();
            let shared = shared.clone();
            let m = metrics.clone();
            // Tasks hold `Rc`s and stay on their thread, so the thread
            // object is created on the thread that runs it.
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let thread = match StreamThread::new(i, shared, shutdown.clone(), m) {
                        Ok(t) => {
                            let _ = ready_tx.send(Ok(()));
                            t
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            let _ = ready_tx.send(Err(e));
                            return Err(StreamsError::IllegalState(msg));
                        }
                    };
                    let r = thread.run();
                    if let Err(e) = &r {
                        tracing::error!(error = %e, "stream thread failed; stopping the application");
                        *state.lock().unwrap() = StreamsState::Error;
                        shutdown.store(true, Ordering::SeqCst);
                    }
                    r
                })
                .map_err(|e| StreamsError::IllegalState(format!("cannot spawn a stream thread: {e}")))?;
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.shutdown.store(true, Ordering::SeqCst);
                    let _ = handle.join();
                    return Err(e);
                }
                Err(_) => {
                    return Err(StreamsError::IllegalState(
                        "stream thread died while starting".into(),
                    ));
                }
            }
            self.threads.push((name, handle));
        }
        Ok(())
    }

    /// The current state.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
    /// # let s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// println!("{:?}", s.state());
    /// ```
    pub fn state(&self) -> StreamsState {
        let s = *self.state.lock().unwrap();
        match s {
            StreamsState::Rebalancing | StreamsState::Running => {
                let settled = self.metrics.iter().all(|m| {
                    m.assigned.load(Ordering::Relaxed) && !m.in_rebalance.load(Ordering::Relaxed)
                });
                if settled {
                    StreamsState::Running
                } else {
                    StreamsState::Rebalancing
                }
            }
            other => other,
        }
    }

    /// The topic plan decided at start-up (task counts, internal topics).
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
    /// # let s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// assert!(s.topic_plan().is_none());
    /// ```
    pub fn topic_plan(&self) -> Option<&TopicPlan> {
        self.plan.as_ref()
    }

    /// Counters summed over all threads.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
    /// # let s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// assert_eq!(s.metrics().commits, 0);
    /// ```
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot::of(&self.metrics)
    }

    /// A cloneable handle to the counters, for another thread (e.g. a
    /// progress display while [`Self::run_until_signal`] runs).
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
    /// # let s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// let h = s.metrics_handle();
    /// assert_eq!(h.snapshot().records_processed, 0);
    /// ```
    pub fn metrics_handle(&self) -> MetricsHandle {
        MetricsHandle(self.metrics.clone())
    }

    /// The address the `metrics.listen` HTTP listener is bound to, once
    /// started (useful with port 0).
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
    /// # let s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// assert!(s.http_address().is_none());
    /// ```
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(|h| h.local_addr)
    }

    /// Makes the key-value store `name` queryable over HTTP
    /// (`GET /stores/<name>/<key>`, see [`interactive_queries`]), with keys
    /// of type `K` and values of type `V` rendered as JSON through the
    /// store's serdes. Call it before [`Self::start`]; the types must be
    /// the store's.
    ///
    /// ```
    /// use kstreams_runtime::{KafkaStreams, Processor, ProcessorContext, Record, Serdes, StoreBuilder, StreamsConfig, Topology};
    /// struct Pass;
    /// impl Processor<String, String, String, String> for Pass {
    ///     fn process(&mut self, r: Record<String, String>, ctx: &mut ProcessorContext<String, String>) -> kstreams_runtime::Result<()> {
    ///         ctx.forward(r)
    ///     }
    /// }
    /// let mut t = Topology::new();
    /// t.add_source("src", &["in"], Serdes::string(), Serdes::string())?;
    /// t.add_processor::<String, String, String, String, _, _>("p", || Pass, &["src"])?;
    /// t.add_state_store(StoreBuilder::key_value("counts", Serdes::string(), Serdes::u64_be()), &["p"])?;
    /// let cfg = StreamsConfig::builder("app", "127.0.0.1:9092").set("metrics.listen", "127.0.0.1:9464").build()?;
    /// let mut streams = KafkaStreams::new(t, cfg)?;
    /// streams.queryable_store::<String, u64>("counts")?;
    /// assert!(streams.queryable_store::<String, String>("counts").is_err()); // wrong value type
    /// assert!(streams.queryable_store::<String, u64>("nope").is_err());
    /// # Ok::<(), kstreams_runtime::StreamsError>(())
    /// ```
    pub fn queryable_store<K, V>(&mut self, name: &str) -> Result<()>
    where
        K: serde::Serialize + serde::de::DeserializeOwned + 'static,
        V: serde::Serialize + 'static,
    {
        let topology = self.topology.as_ref().ok_or_else(|| {
            StreamsError::IllegalState(
                "register queryable stores before KafkaStreams::start".into(),
            )
        })?;
        let codec = interactive_queries::codec_for::<K, V>(topology, name)?;
        self.queryable.insert(name.to_string(), codec);
        Ok(())
    }

    /// A handle to request shutdown from elsewhere.
    ///
    /// ```
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9").build().unwrap();
    /// # let s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// let h = s.shutdown_handle();
    /// # drop(h);
    /// ```
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Whether any thread has stopped (failed or shut down).
    fn any_thread_finished(&self) -> bool {
        self.threads.iter().any(|(_, h)| h.is_finished())
    }

    /// Stops every thread: commits, closes tasks, writes checkpoints, leaves
    /// the group. Returns the first thread error, if any.
    ///
    /// ```no_run
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9092").build().unwrap();
    /// # let mut s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// s.start()?;
    /// s.close()?;
    /// # Ok::<(), kstreams_runtime::StreamsError>(())
    /// ```
    pub fn close(&mut self) -> Result<()> {
        self.shutdown.store(true, Ordering::SeqCst);
        let mut first_err = None;
        for (name, h) in self.threads.drain(..) {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(StreamsError::IllegalState(format!(
                        "stream thread {name} panicked"
                    )));
                }
            }
        }
        self.state_lock = None;
        self.http = None;
        let mut st = self.state.lock().unwrap();
        match first_err {
            Some(e) => {
                *st = StreamsState::Error;
                Err(e)
            }
            None => {
                *st = StreamsState::Stopped;
                Ok(())
            }
        }
    }

    /// Starts the application and runs it until SIGINT or SIGTERM (then
    /// shuts down cleanly and returns `Ok`), or until a thread fails (then
    /// returns its error). If [`Self::start`] was already called (to tell
    /// start-up errors apart), it just runs.
    ///
    /// ```no_run
    /// # let cfg = kstreams_runtime::StreamsConfig::builder("app", "127.0.0.1:9092").build().unwrap();
    /// let s = kstreams_runtime::KafkaStreams::new(kstreams_runtime::Topology::new(), cfg).unwrap();
    /// s.run_until_signal().unwrap();
    /// ```
    pub fn run_until_signal(mut self) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                StreamsError::IllegalState(format!("cannot start the control runtime: {e}"))
            })?;
        let handle = self.shutdown_handle();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        rt.spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot install the SIGTERM handler");
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            }
            stop2.store(true, Ordering::SeqCst);
            handle.shutdown();
        });
        if self.topology.is_some() {
            self.start()?;
        }
        let started = Instant::now();
        let mut logged_running = false;
        rt.block_on(async {
            while !stop.load(Ordering::SeqCst) && !self.any_thread_finished() {
                if !logged_running && self.state() == StreamsState::Running {
                    tracing::info!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "application is running"
                    );
                    logged_running = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        self.close()
    }
}

/// Takes the instance lock of `state.dir/<application.id>`: two instances of
/// one application must not share a state directory (their tasks' RocksDB
/// instances would collide). Released when the process ends, even by kill -9.
fn lock_state_dir(state_dir: &std::path::Path, app: &str) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = state_dir.join(app).join(".lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StreamsError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = write!(file, "{}", std::process::id());
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(StreamsError::Config(format!(
                "state.dir '{}' is in use by another running instance of application '{app}' \
                 (pid {}, lock file {}); give each instance on this machine its own state.dir",
                state_dir.display(),
                if holder.trim().is_empty() {
                    "unknown"
                } else {
                    holder.trim()
                },
                path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StreamsError::Io {
            path: path.display().to_string(),
            source: e,
        }),
    }
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.close();
        }
    }
}
