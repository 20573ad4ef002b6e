//! The command line shared by the example binaries. This interface is a
//! contract: the crash tests, the demo script and the benchmarks drive it.

use std::process::ExitCode;

pub mod allocator;

use clap::Args;
use kstreams::runtime::{KafkaStreams, StreamsConfig, Topology};

/// Options every example job takes.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Kafka bootstrap servers, e.g. 127.0.0.1:9092.
    #[arg(long)]
    pub bootstrap_servers: String,
    /// The application id: consumer group, internal topic prefix, transactional id prefix.
    #[arg(long)]
    pub application_id: String,
    /// Input topic (must exist).
    #[arg(long)]
    pub input_topic: String,
    /// Output topic (must exist).
    #[arg(long)]
    pub output_topic: String,
    /// Where RocksDB state lives.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("kstreams"))]
    pub state_dir: std::path::PathBuf,
    /// exactly_once or at_least_once.
    #[arg(long, default_value = "exactly_once")]
    pub processing_guarantee: String,
    /// Commit interval in milliseconds (default: 100 under exactly_once, 30000 otherwise).
    #[arg(long)]
    pub commit_interval_ms: Option<u64>,
    /// Stream threads (consumer group members) in this process.
    #[arg(long, default_value_t = 1)]
    pub num_stream_threads: usize,
    /// Any other setting, key=value; unknown keys go to librdkafka. Repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Print the topology description and exit.
    #[arg(long)]
    pub describe: bool,
    /// Print the topology as a Mermaid flowchart and exit.
    #[arg(long)]
    pub describe_mermaid: bool,
    /// Serve Prometheus metrics (/metrics) and interactive queries
    /// (/stores/...) over HTTP on this address, e.g. 127.0.0.1:9464
    /// (the `metrics.listen` setting).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// The host:port other instances use to reach this instance's HTTP
    /// listener (the `application.server` setting; default: --metrics-listen).
    #[arg(long, value_name = "HOST:PORT")]
    pub application_server: Option<String>,
    /// Log format on stderr: text or json (also KSTREAMS_LOG_FORMAT).
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

impl CommonArgs {
    /// Builds the streams configuration from the flags.
    pub fn streams_config(&self) -> Result<StreamsConfig, String> {
        let mut b = StreamsConfig::builder(&self.application_id, &self.bootstrap_servers)
            .set("processing.guarantee", &self.processing_guarantee)
            .set("state.dir", &self.state_dir.display().to_string())
            .set("num.stream.threads", &self.num_stream_threads.to_string());
        if let Some(ms) = self.commit_interval_ms {
            b = b.set("commit.interval.ms", &ms.to_string());
        }
        if let Some(addr) = &self.metrics_listen {
            b = b.set("metrics.listen", addr);
        }
        if let Some(server) = &self.application_server {
            b = b.set("application.server", server);
        }
        for kv in &self.config {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(format!("--config '{kv}' is not key=value"));
            };
            b = b.set(k, v);
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// The log format asked for by `--log-format json` / `--log-format=json`
/// or `KSTREAMS_LOG_FORMAT=json` (the flag wins).
fn json_logs_requested() -> bool {
    let mut args = std::env::args().skip(1);
    let mut from_flag = None;
    while let Some(a) = args.next() {
        if a == "--log-format" {
            from_flag = args.next();
        } else if let Some(v) = a.strip_prefix("--log-format=") {
            from_flag = Some(v.to_string());
        }
    }
    from_flag
        .or_else(|| std::env::var("KSTREAMS_LOG_FORMAT").ok())
        .is_some_and(|f| f.eq_ignore_ascii_case("json"))
}

/// What every example's `main` does first: tunes the allocator (see
/// [`allocator`]) and starts logging (see [`init_logging`]).
pub fn init() {
    allocator::tune();
    init_logging();
}

/// Logs go to stderr; RUST_LOG sets the level (default info). With
/// `--log-format json` or `KSTREAMS_LOG_FORMAT=json` every line is a JSON
/// object carrying its spans (task, commit, restore, rebalance). It reads
/// the flag itself, so it can run before the command line is parsed.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| BarAwareStderr);
    let _ = if json_logs_requested() {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The progress bar, once drawn: log lines are written around it.
static PROGRESS_BAR: std::sync::OnceLock<indicatif::ProgressBar> = std::sync::OnceLock::new();

/// stderr for log lines: while a progress bar is drawn, each line is
/// written with the bar hidden, so the bar never overwrites a log line.
struct BarAwareStderr;

impl std::io::Write for BarAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The fmt layer writes one whole event per call.
        match PROGRESS_BAR.get() {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A live progress bar on stderr while the job restores state or works
/// through its input; only when stderr is a terminal. It stops when
/// `done` is set.
pub fn spawn_progress(
    metrics: kstreams::runtime::kafka::MetricsHandle,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    use std::io::IsTerminal;
    use std::sync::atomic::Ordering;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(std::thread::spawn(move || {
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} {prefix:>9} [{bar:30}] {human_pos}/{human_len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = PROGRESS_BAR
            .get_or_init(|| indicatif::ProgressBar::new(0).with_style(style))
            .clone();
        while !done.load(Ordering::SeqCst) {
            let m = metrics.snapshot();
            if m.restore_remaining > 0 {
                bar.set_prefix("restoring");
                bar.set_length(m.records_restored + m.restore_remaining);
                bar.set_position(m.records_restored);
                bar.set_message("changelog records");
            } else if m.records_processed + m.consumer_lag == 0 {
                bar.set_prefix("starting");
                bar.set_length(1);
                bar.set_position(0);
                bar.set_message("joining the group");
            } else {
                bar.set_prefix("working");
                bar.set_length(m.records_processed + m.consumer_lag);
                bar.set_position(m.records_processed);
                bar.set_message(format!(
                    "records, lag {}, {} commits",
                    m.consumer_lag, m.commits
                ));
            }
            bar.tick();
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        bar.finish_and_clear();
    }))
}

/// Runs `topology` until SIGINT/SIGTERM (exit 0) or a fatal error (exit 1
/// with the error on stderr).
#[allow(dead_code)]
pub fn run(name: &str, topology: Topology, args: &CommonArgs) -> ExitCode {
    run_with(name, topology, args, |_| Ok(()))
}

/// [`run`], with `setup` called on the application before it starts (e.g.
/// to register queryable stores).
pub fn run_with(
    name: &str,
    topology: Topology,
    args: &CommonArgs,
    setup: impl FnOnce(&mut KafkaStreams) -> kstreams::Result<()>,
) -> ExitCode {
    if args.describe {
        println!("{}", topology.describe());
        return ExitCode::SUCCESS;
    }
    if args.describe_mermaid {
        print!("{}", topology.describe().to_mermaid());
        return ExitCode::SUCCESS;
    }
    let config = match args.streams_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut streams = match KafkaStreams::new(topology, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = setup(&mut streams) {
        eprintln!("{name}: {e}");
        return ExitCode::from(2);
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = spawn_progress(streams.metrics_handle(), done.clone());
    // Start-up errors (broker unreachable, missing topics, state.dir) exit
    // with 2, like configuration errors; failures while running with 1.
    if let Err(e) = streams.start() {
        eprintln!("{name}: cannot start: {e}");
        return ExitCode::from(2);
    }
    let result = streams.run_until_signal();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(p) = progress {
        let _ = p.join();
    }
    match result {
        Ok(()) => {
            tracing::info!("{name} stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: fatal error: {e}");
            ExitCode::from(1)
        }
    }
}
