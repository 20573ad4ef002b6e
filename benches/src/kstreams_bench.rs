//! `kstreams-bench`: kstreams against the broker's ceiling, Kafka Streams and
//! Quix Streams on one local single-node Kafka broker (issue 7).
//!
//! ```text
//! bash benches/run.sh                        # builds everything, runs all cases
//! kstreams-bench run --lines 200000 ...      # what run.sh runs
//! kstreams-bench ceiling --bootstrap-servers ... --input-topic ... --output-topic ...
//! ```
//!
//! Never part of `cargo test`. See benches/RESULTS.md for the method and results.

/// The same allocator as the example jobs, so the ceiling runs with it too.
#[path = "../../examples/common/allocator.rs"]
mod allocator;
mod cases;
mod ceiling;
mod chart;
mod data;
mod job;
mod latency;
mod many_tasks;
mod recovery;
mod report;
mod runner;
mod throughput;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kstreams-bench",
    about = "kstreams vs the broker's ceiling, Kafka Streams and Quix Streams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a broker, load the input, run every case interleaved, print and write the results.
    Run(Box<runner::RunArgs>),
    /// The ceiling job: a transactional consume → produce pass-through (run as a child by `run`).
    Ceiling(ceiling::CeilingArgs),
}

fn main() -> ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Run(a) => runner::run(*a),
        Command::Ceiling(a) => ceiling::run(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kstreams-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
