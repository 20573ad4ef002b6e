//! `kstreams-broker`: run a real single-node Kafka broker until SIGINT/SIGTERM.
//!
//! ```text
//! kstreams-broker [--port N] [--data-dir DIR]
//! ```
//!
//! Prints `bootstrap.servers=127.0.0.1:PORT` as one line on stdout once the broker is
//! ready, then waits for SIGINT or SIGTERM and stops the broker cleanly.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kstreams_testkit::{BrokerOptions, KafkaBroker};
use tokio::signal::unix::{SignalKind, signal};

/// Run a real Apache Kafka broker (KRaft, single node, transactions enabled) on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "kstreams-broker", version)]
struct Args {
    /// Client port (default: a free port).
    #[arg(long)]
    port: Option<u16>,
    /// Data directory, kept across runs (default: a temporary directory, deleted on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let code = rt.block_on(run(args));
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    // Install the handlers before starting, so an early Ctrl-C still stops cleanly.
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("kstreams-broker: installing signal handlers: {e}");
            return 1;
        }
    };
    let options = BrokerOptions {
        port: args.port,
        data_dir: args.data_dir,
        ..BrokerOptions::default()
    };
    let broker = match KafkaBroker::start(options) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("kstreams-broker: {e}");
            return 1;
        }
    };
    println!("bootstrap.servers={}", broker.bootstrap_servers());
    eprintln!(
        "kstreams-broker: broker log: {}",
        broker.log_path().display()
    );

    let mut check = tokio::time::interval(Duration::from_secs(1));
    let code = loop {
        tokio::select! {
            _ = term.recv() => break 0,
            _ = int.recv() => break 0,
            _ = check.tick() => {
                if !broker.is_running() {
                    eprintln!(
                        "kstreams-broker: the broker exited unexpectedly, see {}",
                        broker.log_path().display()
                    );
                    break 1;
                }
            }
        }
    };
    eprintln!("kstreams-broker: stopping");
    if let Err(e) = broker.stop() {
        eprintln!("kstreams-broker: {e}");
        return 1;
    }
    code
}
