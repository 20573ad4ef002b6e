//! Starting, stopping and restarting a real single-node Kafka broker (KRaft combined mode).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::process::{classpath, find_java, kafka_lib_dir, spawn_guarded};

/// The main class of the broker.
pub(crate) const KAFKA_MAIN: &str = "kafka.Kafka";
/// The main class that formats KRaft storage (`kafka-storage.sh format`) in Kafka 4.x.
pub(crate) const STORAGE_TOOL_MAIN: &str = "kafka.tools.StorageTool";
/// Prefix of temporary broker directories (followed by the owning pid).
pub(crate) const TEMP_PREFIX: &str = "kstreams-broker-";
/// How long [`KafkaBroker::stop`] waits after SIGTERM before sending SIGKILL.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Heap and GC flags of the broker JVM.
const JVM_FLAGS: &[&str] = &[
    "-Xmx1g",
    "-Xms256m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];

pub(crate) const LOG4J2_PROPERTIES: &str = "\
# Written by kstreams-testkit. stdout of the JVM goes to broker.log.
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
";

/// How to start a [`KafkaBroker`].
///
/// ```no_run
/// use kstreams_testkit::{BrokerOptions, KafkaBroker};
///
/// let broker = KafkaBroker::start(
///     BrokerOptions::default()
///         .with_port(9092)
///         .with_data_dir("/var/tmp/kstreams-demo-kafka")
///         .with_property("log.cleaner.backoff.ms", "1000"),
/// )?;
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Port of the client (PLAINTEXT) listener on 127.0.0.1; a free port if `None`.
    pub port: Option<u16>,
    /// Directory for the broker's data, config and `broker.log`. Kept across
    /// restarts and formatted only if not formatted yet. If `None`, a temporary
    /// directory is used and deleted when the broker is dropped.
    pub data_dir: Option<PathBuf>,
    /// How long [`KafkaBroker::start`] waits for the broker to answer a metadata request.
    /// Default: 120 s.
    pub startup_timeout: Duration,
    /// Extra `server.properties` entries, written after (and so overriding) the defaults.
    pub extra_properties: Vec<(String, String)>,
    /// Extra client listeners on 127.0.0.1 besides PLAINTEXT, as `(name, security
    /// protocol, port)`: added to `listeners`, `advertised.listeners` and
    /// `listener.security.protocol.map`. Their TLS/SASL settings go in
    /// [`extra_properties`](Self::extra_properties). Default: none.
    pub extra_listeners: Vec<(String, String, u16)>,
    /// Extra arguments of `kafka-storage format` (used only when the storage is
    /// formatted), e.g. `--add-scram` credentials. Default: none.
    pub storage_format_args: Vec<String>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            port: None,
            data_dir: None,
            startup_timeout: Duration::from_secs(120),
            extra_properties: Vec::new(),
            extra_listeners: Vec::new(),
            storage_format_args: Vec::new(),
        }
    }
}

impl BrokerOptions {
    /// Sets the client listener port.
    ///
    /// ```no_run
    /// let opts = kstreams_testkit::BrokerOptions::default().with_port(19092);
    /// ```
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Sets a persistent data directory (kept across restarts and runs).
    ///
    /// ```no_run
    /// let opts = kstreams_testkit::BrokerOptions::default().with_data_dir("/tmp/kafka-data");
    /// ```
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Sets how long to wait for the broker to become ready.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let opts = kstreams_testkit::BrokerOptions::default()
    ///     .with_startup_timeout(Duration::from_secs(300));
    /// ```
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Adds (or overrides) one `server.properties` entry.
    ///
    /// ```no_run
    /// let opts = kstreams_testkit::BrokerOptions::default()
    ///     .with_property("transaction.max.timeout.ms", "60000");
    /// ```
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_properties.push((key.into(), value.into()));
        self
    }

    /// Adds a client listener `name` with `protocol` (e.g. `SSL`, `SASL_SSL`) on
    /// `127.0.0.1:port`; configure it with [`with_property`](Self::with_property).
    ///
    /// ```no_run
    /// let opts = kstreams_testkit::BrokerOptions::default()
    ///     .with_listener("SSL", "SSL", 19093)
    ///     .with_property("ssl.keystore.type", "PEM")
    ///     .with_property("ssl.keystore.location", "/tmp/server.keystore.pem");
    /// ```
    pub fn with_listener(
        mut self,
        name: impl Into<String>,
        protocol: impl Into<String>,
        port: u16,
    ) -> Self {
        self.extra_listeners
            .push((name.into(), protocol.into(), port));
        self
    }

    /// Adds an argument to `kafka-storage format` (run only on unformatted storage).
    ///
    /// ```no_run
    /// let opts = kstreams_testkit::BrokerOptions::default()
    ///     .with_storage_format_arg("--add-scram")
    ///     .with_storage_format_arg("SCRAM-SHA-512=[name=alice,password=alice-secret]");
    /// ```
    pub fn with_storage_format_arg(mut self, arg: impl Into<String>) -> Self {
        self.storage_format_args.push(arg.into());
        self
    }
}

pub(crate) struct State {
    pub(crate) child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) controller_port: u16,
    /// Keeps the temporary directory alive across restarts; removes it on drop.
    pub(crate) temp: Option<TempDir>,
}

/// A real Apache Kafka broker (KRaft combined broker+controller, single node) running as a
/// child JVM on 127.0.0.1. Never a mock.
///
/// The JVM is killed when this process dies, however it dies (see the spawner in
/// `process.rs`), and stopped cleanly when the value is dropped.
///
/// ```no_run
/// use kstreams_testkit::{BrokerOptions, KafkaBroker};
///
/// let broker = KafkaBroker::start(BrokerOptions::default())?;
/// println!("bootstrap.servers={}", broker.bootstrap_servers());
/// broker.kill()?; // simulate a crash
/// broker.restart()?; // same port, same data
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub struct KafkaBroker {
    dir: PathBuf,
    port_fixed: bool,
    startup_timeout: Duration,
    extra_properties: Vec<(String, String)>,
    extra_listeners: Vec<(String, String, u16)>,
    storage_format_args: Vec<String>,
    state: Mutex<State>,
}

impl std::fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBroker")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl KafkaBroker {
    /// Starts a broker and waits until it answers a metadata request.
    ///
    /// Fetches the Kafka jars first (`tools/kafka/fetch.sh`, or `$KSTREAMS_KAFKA_HOME`)
    /// if they are missing, and formats the storage directory if it is not formatted.
    /// Typical start time is 5-8 s (storage format ~2 s + broker start ~4 s).
    ///
    /// ```no_run
    /// let broker = kstreams_testkit::KafkaBroker::start(Default::default())?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn start(options: BrokerOptions) -> Result<KafkaBroker> {
        find_java()?;
        kafka_lib_dir()?;
        sweep_stale_temp_dirs();

        let (dir, temp) = match &options.data_dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating data dir {}", dir.display()), e))?;
                let dir = fs::canonicalize(dir)
                    .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
                (dir, None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
                    .tempdir()
                    .map_err(|e| Error::io("creating a temporary broker directory", e))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };

        let (port, controller_port) = pick_ports(options.port)?;
        let broker = KafkaBroker {
            dir,
            port_fixed: options.port.is_some(),
            startup_timeout: options.startup_timeout,
            extra_properties: options.extra_properties,
            extra_listeners: options.extra_listeners,
            storage_format_args: options.storage_format_args,
            state: Mutex::new(State {
                child: None,
                port,
                controller_port,
                temp,
            }),
        };
        broker.launch_with_retries()?;
        Ok(broker)
    }

    /// The `bootstrap.servers` string for clients, e.g. `127.0.0.1:41234`.
    ///
    /// ```no_run
    /// let bootstrap = kstreams_testkit::shared_broker().bootstrap_servers();
    /// ```
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The client listener port.
    ///
    /// ```no_run
    /// let port = kstreams_testkit::shared_broker().port();
    /// ```
    pub fn port(&self) -> u16 {
        self.lock().port
    }

    /// The broker's directory: `server.properties`, `broker.log` and `kafka-logs/`.
    ///
    /// ```no_run
    /// let dir = kstreams_testkit::shared_broker().data_dir();
    /// ```
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `broker.log`, the JVM's stdout and stderr (appended to across restarts).
    ///
    /// ```no_run
    /// let log = std::fs::read_to_string(kstreams_testkit::shared_broker().log_path());
    /// ```
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    /// The pid of the broker JVM, if it is running.
    ///
    /// ```no_run
    /// let pid = kstreams_testkit::shared_broker().pid();
    /// ```
    pub fn pid(&self) -> Option<u32> {
        let mut st = self.lock();
        reap(&mut st);
        st.child.as_ref().map(|c| c.id())
    }

    /// Whether the broker JVM is running.
    ///
    /// ```no_run
    /// assert!(kstreams_testkit::shared_broker().is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Stops the broker cleanly: SIGTERM, then SIGKILL if it has not exited within 30 s.
    /// Does nothing if it is not running.
    ///
    /// ```no_run
    /// let broker = kstreams_testkit::KafkaBroker::start(Default::default())?;
    /// broker.stop()?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn stop(&self) -> Result<()> {
        let mut st = self.lock();
        terminate(&mut st, libc::SIGTERM, STOP_TIMEOUT)
    }

    /// Kills the broker with SIGKILL (a crash: no controlled shutdown, no log flush).
    ///
    /// ```no_run
    /// let broker = kstreams_testkit::KafkaBroker::start(Default::default())?;
    /// broker.kill()?;
    /// broker.restart()?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn kill(&self) -> Result<()> {
        let mut st = self.lock();
        terminate(&mut st, libc::SIGKILL, STOP_TIMEOUT)
    }

    /// Stops the broker if it runs, then starts it again on the same port with the same
    /// data, and waits until it is ready. Use after [`stop`](Self::stop) or
    /// [`kill`](Self::kill) to end a simulated outage.
    ///
    /// ```no_run
    /// let broker = kstreams_testkit::KafkaBroker::start(Default::default())?;
    /// broker.stop()?;
    /// broker.restart()?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        let st = self.lock();
        let ports = [st.port, st.controller_port];
        drop(st);
        // The old JVM is gone, but give the kernel a moment if a port is still held.
        let deadline = Instant::now() + Duration::from_secs(10);
        while ports.iter().any(|p| !port_is_free(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut st = self.lock();
        self.launch(&mut st)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn launch_with_retries(&self) -> Result<()> {
        let mut st = self.lock();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let log_start = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
            match self.launch(&mut st) {
                // Another process may have grabbed an automatically chosen port between
                // our probe and the JVM's bind: pick new ports and try again. (The bind
                // error may be far above the log tail, so search this attempt's log.)
                Err(Error::BrokerExited { .. })
                    if attempt < 3
                        && self.log_since(log_start).contains("Address already in use") =>
                {
                    let (port, controller_port) =
                        pick_ports(if self.port_fixed { Some(st.port) } else { None })?;
                    st.port = port;
                    st.controller_port = controller_port;
                }
                other => return other,
            }
        }
    }

    fn log_since(&self, offset: u64) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = File::open(self.log_path())
            && f.seek(SeekFrom::Start(offset)).is_ok()
        {
            let _ = f.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn launch(&self, st: &mut State) -> Result<()> {
        let java = find_java()?;
        let lib = kafka_lib_dir()?;
        let cp = classpath(&lib);
        let props = self.dir.join("server.properties");
        let log4j = self.dir.join("log4j2.properties");
        let log_dirs = self.dir.join("kafka-logs");
        let log_path = self.log_path();

        write_file(&props, &self.server_properties(st, &log_dirs))?;
        write_file(&log4j, LOG4J2_PROPERTIES)?;
        let log4j_flag = format!("-Dlog4j2.configurationFile={}", log4j.display());

        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;

        if !log_dirs.join("meta.properties").exists() {
            self.format_storage(&java, &cp, &log4j_flag, &props, &log_dirs)?;
        }

        let _ = writeln!(
            log,
            "===== kstreams-testkit: starting Kafka on 127.0.0.1:{} (controller {}) =====",
            st.port, st.controller_port
        );
        let stderr = log
            .try_clone()
            .map_err(|e| Error::io("duplicating the broker log handle", e))?;
        let mut cmd = Command::new(&java);
        cmd.args(JVM_FLAGS)
            .arg(&log4j_flag)
            .arg(format!("-Dkafka.logs.dir={}", self.dir.display()))
            .arg("-cp")
            .arg(&cp)
            .arg(KAFKA_MAIN)
            .arg(&props)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let started = Instant::now();
        let child =
            spawn_guarded(cmd).map_err(|e| Error::io(format!("starting {}", java.display()), e))?;
        st.child = Some(child);

        let bootstrap = format!("127.0.0.1:{}", st.port);
        match self.wait_ready(st, &bootstrap) {
            Ok(()) => {
                tracing::info!(
                    bootstrap = %bootstrap,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Kafka broker ready"
                );
                Ok(())
            }
            Err(e) => {
                let _ = terminate(st, libc::SIGKILL, STOP_TIMEOUT);
                Err(e)
            }
        }
    }

    fn server_properties(&self, st: &State, log_dirs: &Path) -> String {
        let (port, cport) = (st.port, st.controller_port);
        let mut s = format!(
            "# Written by kstreams-testkit on every start; edits are overwritten.\n\
             node.id=1\n\
             process.roles=broker,controller\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             controller.quorum.voters=1@127.0.0.1:{cport}\n\
             log.dirs={}\n\
             num.partitions=1\n\
             auto.create.topics.enable=false\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=4\n\
             transaction.abort.timed.out.transaction.cleanup.interval.ms=1000\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             group.streams.min.session.timeout.ms=3000\n\
             group.streams.session.timeout.ms=6000\n\
             group.streams.min.heartbeat.interval.ms=100\n\
             group.streams.heartbeat.interval.ms=250\n",
            log_dirs.display()
        );
        if !self.extra_listeners.is_empty() {
            // Later keys win in a .properties file: these replace the three above.
            let list = |f: &dyn Fn(&(String, String, u16)) -> String| {
                self.extra_listeners
                    .iter()
                    .map(f)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let addrs = list(&|(n, _, p)| format!("{n}://127.0.0.1:{p}"));
            let map = list(&|(n, proto, _)| format!("{n}:{proto}"));
            s.push_str(&format!(
                "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport},{addrs}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port},{addrs}\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,{map}\n"
            ));
        }
        for (k, v) in &self.extra_properties {
            s.push_str(&format!("{k}={v}\n"));
        }
        s
    }

    fn format_storage(
        &self,
        java: &Path,
        cp: &std::ffi::OsStr,
        log4j_flag: &str,
        props: &Path,
        log_dirs: &Path,
    ) -> Result<()> {
        let mut cmd = Command::new(java);
        cmd.args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg(log4j_flag)
            .arg("-cp")
            .arg(cp)
            .arg(STORAGE_TOOL_MAIN)
            .arg("format")
            .arg("--ignore-formatted")
            .arg("-t")
            .arg(random_cluster_id())
            .arg("-c")
            .arg(props)
            .args(&self.storage_format_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child =
            spawn_guarded(cmd).map_err(|e| Error::io(format!("starting {}", java.display()), e))?;
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io("waiting for the Kafka storage tool", e))?;
        if !out.status.success() {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            return Err(Error::FormatFailed {
                dir: log_dirs.to_path_buf(),
                status: out.status,
                output: tail_lines(&text, 40),
            });
        }
        Ok(())
    }

    fn wait_ready(&self, st: &mut State, bootstrap: &str) -> Result<()> {
        let deadline = Instant::now() + self.startup_timeout;
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "200")
            .set("socket.connection.setup.timeout.ms", "1000")
            .set_log_level(RDKafkaLogLevel::Emerg)
            .create()
            .map_err(|e| Error::kafka("creating a metadata probe client", e))?;
        loop {
            if let Some(child) = st.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                st.child = None;
                return Err(Error::BrokerExited {
                    status,
                    log_path: self.log_path(),
                    log_tail: log_tail(&self.log_path()),
                });
            }
            if let Ok(md) = probe.fetch_metadata(None, Duration::from_millis(500))
                && !md.brokers().is_empty()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::StartTimeout {
                    bootstrap: bootstrap.to_string(),
                    timeout: self.startup_timeout,
                    log_path: self.log_path(),
                    log_tail: log_tail(&self.log_path()),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// At process exit: SIGKILL the JVM and delete the temporary directory.
    fn kill_and_cleanup_at_exit(&self) {
        if let Ok(mut st) = self.state.try_lock() {
            let _ = terminate(&mut st, libc::SIGKILL, Duration::from_secs(5));
            drop(st.temp.take());
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let mut st = self.lock();
        if let Err(e) = terminate(&mut st, libc::SIGTERM, STOP_TIMEOUT) {
            tracing::warn!("stopping the Kafka broker: {e}");
        }
        // `st.temp` (if any) is dropped with the struct, deleting the directory.
    }
}

/// Clears `st.child` if the process has exited.
pub(crate) fn reap(st: &mut State) {
    if let Some(child) = st.child.as_mut()
        && !matches!(child.try_wait(), Ok(None))
    {
        st.child = None;
    }
}

/// Sends `signal`, waits up to `timeout`, then SIGKILLs and waits.
pub(crate) fn terminate(st: &mut State, signal: libc::c_int, timeout: Duration) -> Result<()> {
    let Some(mut child) = st.child.take() else {
        return Ok(());
    };
    if let Ok(Some(_)) = child.try_wait() {
        return Ok(());
    }
    // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(Error::io("waiting for the Kafka broker to exit", e)),
        }
    }
    tracing::warn!("Kafka broker did not exit within {timeout:?}; sending SIGKILL");
    let _ = child.kill();
    child
        .wait()
        .map_err(|e| Error::io("waiting for the killed Kafka broker", e))?;
    Ok(())
}

pub(crate) fn write_file(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The client port (given or free) and a distinct free controller port.
pub(crate) fn pick_ports(port: Option<u16>) -> Result<(u16, u16)> {
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("finding a free port on 127.0.0.1", e))
    };
    // Ports already handed out in this process (to brokers started concurrently from
    // other threads) are never handed out again.
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    // Hold all listeners at once so the ports are distinct.
    let mut held = Vec::new();
    let mut free = Vec::new();
    while free.len() < 2 {
        let l = bind()?;
        let p = l
            .local_addr()
            .map_err(|e| Error::io("reading port", e))?
            .port();
        if !taken.contains(&p) && Some(p) != port {
            free.push(p);
        }
        held.push(l);
        if held.len() > 50 {
            return Err(Error::io(
                "finding a free port on 127.0.0.1",
                std::io::Error::other("no unused ephemeral port found"),
            ));
        }
    }
    taken.extend_from_slice(&free);
    let (pa, pb) = (free[0], free[1]);
    Ok(match port {
        Some(p) => (p, pb),
        None => (pa, pb),
    })
}

/// A random KRaft cluster id: 16 random bytes, base64url without padding (22 chars).
pub(crate) fn random_cluster_id() -> String {
    let bytes: Vec<u8> = [crate::random_u64(), crate::random_u64()]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    // An id starting with '-' is parsed as an option by kafka-storage's
    // argument parser ("expected one argument"): start with a letter.
    if out.starts_with(['-', '_']) {
        out.replace_range(0..1, "A");
    }
    out
}

/// The last lines of the broker log (reads at most the last 64 KiB).
pub(crate) fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => tail_lines(&text, 40),
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes `kstreams-broker-<pid>-*` temp dirs whose owning process no longer exists
/// (left behind by test binaries that were SIGKILLed; their JVMs died with them).
pub(crate) fn sweep_stale_temp_dirs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            // SAFETY: kill with signal 0 only checks for existence.
            let gone = unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if gone {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    });
}

static SHARED: OnceLock<Result<KafkaBroker, String>> = OnceLock::new();

/// The broker shared by all tests of this test binary: started on first use (thread-safe,
/// exactly once), never stopped by tests. At process exit it is killed and its temporary
/// directory removed.
///
/// Panics with the start error (which says how to fix it) if the broker cannot start.
/// Tests sharing it must use unique topic names and group ids, see [`unique_name`](crate::unique_name).
///
/// ```no_run
/// let bootstrap = kstreams_testkit::shared_broker().bootstrap_servers();
/// ```
pub fn shared_broker() -> &'static KafkaBroker {
    let res = SHARED.get_or_init(|| {
        let res = KafkaBroker::start(BrokerOptions::default()).map_err(|e| e.to_string());
        if res.is_ok() {
            // SAFETY: registering a plain extern "C" function.
            unsafe { libc::atexit(cleanup_shared_broker) };
            install_panic_hook();
        }
        res
    });
    match res {
        Ok(broker) => broker,
        Err(e) => panic!("could not start the shared Kafka broker: {e}"),
    }
}

/// Chains a panic hook (once, when the shared broker has started) that prints
/// the last 40 lines of the shared broker's log to stderr after the previous
/// hook's message, so a failing test shows the broker-side cause.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        if let Some(Ok(broker)) = SHARED.get() {
            broker.print_log_tail_after_panic();
        }
    }));
}

impl KafkaBroker {
    /// Called from the panic hook: must never panic (that would abort) nor
    /// block on the state lock (the panicking thread may hold it).
    fn print_log_tail_after_panic(&self) {
        let mut guard = match self.state.try_lock() {
            Ok(st) => Some(st),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let status = match guard.as_deref_mut() {
            Some(st) => {
                reap(st);
                if st.child.is_some() {
                    "running"
                } else {
                    "not running"
                }
            }
            None => "state locked",
        };
        drop(guard);
        let path = self.log_path();
        let text = format!(
            "---- kstreams-testkit: a thread panicked; shared Kafka broker ({status}) log tail, {} ----\n{}\n---- end of broker log tail ----\n",
            path.display(),
            log_tail(&path)
        );
        // Not eprintln!: it panics if stderr cannot be written.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

extern "C" fn cleanup_shared_broker() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(broker)) = SHARED.get() {
            broker.kill_and_cleanup_at_exit();
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_id_is_22_base64url_chars() {
        for _ in 0..2000 {
            let id = super::random_cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-'), "{id} would be parsed as an option");
        }
        let id = super::random_cluster_id();
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}
