//! One node (combined broker + controller) of a [`KafkaCluster`](super::KafkaCluster).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::broker::{
    KAFKA_MAIN, LOG4J2_PROPERTIES, STOP_TIMEOUT, STORAGE_TOOL_MAIN, State, log_tail, port_is_free,
    reap, tail_lines, terminate, write_file,
};
use crate::error::{Error, Result};
use crate::process::{classpath, find_java, kafka_lib_dir, spawn_guarded};

/// Heap and GC flags of a cluster node's JVM (three of them share the machine).
const JVM_FLAGS: &[&str] = &[
    "-Xmx768m",
    "-Xms128m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];

/// What every node of one cluster shares.
pub(crate) struct Shared {
    pub(crate) cluster_id: String,
    /// `controller.quorum.voters`, e.g. `1@127.0.0.1:4001,2@127.0.0.1:4002,...`.
    pub(crate) voters: String,
    /// The replication factor of the internal topics and the default one.
    pub(crate) replication: usize,
    pub(crate) extra_properties: Vec<(String, String)>,
}

pub(crate) struct Node {
    pub(crate) id: i32,
    pub(crate) dir: PathBuf,
    state: Mutex<State>,
}

impl Node {
    pub(crate) fn new(id: i32, dir: PathBuf, port: u16, controller_port: u16) -> Result<Node> {
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating node dir {}", dir.display()), e))?;
        Ok(Node {
            id,
            dir,
            state: Mutex::new(State {
                child: None,
                port,
                controller_port,
                temp: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn port(&self) -> u16 {
        self.lock().port
    }

    pub(crate) fn controller_port(&self) -> u16 {
        self.lock().controller_port
    }

    pub(crate) fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    pub(crate) fn is_running(&self) -> bool {
        let mut st = self.lock();
        reap(&mut st);
        st.child.is_some()
    }

    /// The exit status if the JVM was started and has exited since.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        let mut st = self.lock();
        let status = st.child.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            st.child = None;
        }
        status
    }

    pub(crate) fn exited_error(&self, status: ExitStatus) -> Error {
        Error::BrokerExited {
            status,
            log_path: self.log_path(),
            log_tail: log_tail(&self.log_path()),
        }
    }

    pub(crate) fn signal(&self, signal: libc::c_int) -> Result<()> {
        terminate(&mut self.lock(), signal, STOP_TIMEOUT)
    }

    /// Waits (up to 10 s) until the node's ports are free again after a stop.
    pub(crate) fn wait_ports_free(&self) {
        let ports = [self.port(), self.controller_port()];
        let deadline = Instant::now() + Duration::from_secs(10);
        while ports.iter().any(|p| !port_is_free(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes the config, formats the storage if needed and spawns the JVM
    /// (does not wait for it to be ready).
    pub(crate) fn spawn(&self, shared: &Shared) -> Result<()> {
        let java = find_java()?;
        let cp = classpath(&kafka_lib_dir()?);
        let props = self.dir.join("server.properties");
        let log4j = self.dir.join("log4j2.properties");
        let log_dirs = self.dir.join("kafka-logs");
        let log_path = self.log_path();
        let mut st = self.lock();
        write_file(&props, &self.server_properties(&st, shared, &log_dirs))?;
        write_file(&log4j, LOG4J2_PROPERTIES)?;
        let log4j_flag = format!("-Dlog4j2.configurationFile={}", log4j.display());
        if !log_dirs.join("meta.properties").exists() {
            self.format_storage(&java, &cp, &log4j_flag, &props, &shared.cluster_id)?;
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
        let _ = writeln!(
            log,
            "===== kstreams-testkit: starting Kafka node {} on 127.0.0.1:{} (controller {}) =====",
            self.id, st.port, st.controller_port
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
        let child =
            spawn_guarded(cmd).map_err(|e| Error::io(format!("starting {}", java.display()), e))?;
        st.child = Some(child);
        Ok(())
    }

    fn server_properties(&self, st: &State, shared: &Shared, log_dirs: &Path) -> String {
        let (id, port, cport) = (self.id, st.port, st.controller_port);
        let (rf, isr) = (shared.replication, shared.replication.min(2));
        let mut s = format!(
            "# Written by kstreams-testkit on every start; edits are overwritten.\n\
             node.id={id}\n\
             process.roles=broker,controller\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             controller.quorum.voters={voters}\n\
             log.dirs={dirs}\n\
             num.partitions=1\n\
             default.replication.factor={rf}\n\
             min.insync.replicas={isr}\n\
             unclean.leader.election.enable=false\n\
             auto.create.topics.enable=false\n\
             offsets.topic.replication.factor={rf}\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor={rf}\n\
             transaction.state.log.min.isr={isr}\n\
             transaction.state.log.num.partitions=4\n\
             transaction.abort.timed.out.transaction.cleanup.interval.ms=1000\n\
             share.coordinator.state.topic.replication.factor={rf}\n\
             share.coordinator.state.topic.min.isr={isr}\n\
             group.initial.rebalance.delay.ms=0\n\
             broker.session.timeout.ms=3000\n\
             broker.heartbeat.interval.ms=500\n",
            voters = shared.voters,
            dirs = log_dirs.display(),
        );
        for (k, v) in &shared.extra_properties {
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
        cluster_id: &str,
    ) -> Result<()> {
        let mut cmd = Command::new(java);
        cmd.args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg(log4j_flag)
            .arg("-cp")
            .arg(cp)
            .arg(STORAGE_TOOL_MAIN)
            .args(["format", "--ignore-formatted", "-t", cluster_id, "-c"])
            .arg(props)
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
                dir: self.dir.join("kafka-logs"),
                status: out.status,
                output: tail_lines(&text, 40),
            });
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The data is deleted with the cluster's temp dir: no need for a clean stop.
        let _ = terminate(&mut self.lock(), libc::SIGKILL, Duration::from_secs(10));
    }
}
