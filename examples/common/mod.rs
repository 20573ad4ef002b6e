//! The command line shared by the example binaries. This interface is a
//! contract: the crash tests, the demo script and the benchmarks drive it.

use std::process::ExitCode;

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
        for kv in &self.config {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(format!("--config '{kv}' is not key=value"));
            };
            b = b.set(k, v);
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// Logs go to stderr; RUST_LOG sets the level (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `topology` until SIGINT/SIGTERM (exit 0) or a fatal error (exit 1
/// with the error on stderr).
pub fn run(name: &str, topology: Topology, args: &CommonArgs) -> ExitCode {
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
    let streams = match KafkaStreams::new(topology, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    match streams.run_until_signal() {
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
