//! word_count: counts words of the lines on the input topic, exactly-once.
//!
//! ```text
//! cargo run --release --example word_count -- \
//!   --bootstrap-servers 127.0.0.1:9092 --application-id wc \
//!   --input-topic lines --output-topic counts
//! ```
//! Output: key = word (UTF-8), value = count (decimal UTF-8 text).
//!
//! With `--metrics-listen 127.0.0.1:9464` it serves Prometheus metrics on
//! `/metrics` and the committed count of a word on `/stores/counts/<word>`
//! (or a scan: `/stores/counts?prefix=ka&limit=20`). Several instances
//! point each other's queries to the right one with `--application-server`.

mod common;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Counts words, exactly-once, with kstreams")]
struct Cli {
    #[command(flatten)]
    common: common::CommonArgs,
}

fn main() -> ExitCode {
    common::init();
    let cli = Cli::parse();
    let topology = match kstreams::apps::word_count::topology(
        &cli.common.input_topic,
        &cli.common.output_topic,
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("word_count: {e}");
            return ExitCode::from(2);
        }
    };
    common::run_with("word_count", topology, &cli.common, |streams| {
        streams.queryable_store::<String, u64>(kstreams::apps::word_count::COUNTS_STORE)
    })
}
