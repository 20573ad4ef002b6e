//! order_aggregation: de-duplicates re-sent orders by order id, re-keys them
//! by customer and keeps per-customer totals, exactly-once.
//!
//! ```text
//! cargo run --release --example order_aggregation -- \
//!   --bootstrap-servers 127.0.0.1:9092 --application-id orders \
//!   --input-topic orders --output-topic customer-totals --dedupe-ttl-ms 3600000
//! ```
//! Output: key = customer id, value = `{"customer_id":..,"orders":..,"total_cents":..}`.

mod common;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Per-customer order totals with de-duplication, exactly-once, with kstreams")]
struct Cli {
    #[command(flatten)]
    common: common::CommonArgs,
    /// How long (in stream time) an order id is remembered for de-duplication.
    #[arg(long, default_value_t = 3_600_000)]
    dedupe_ttl_ms: u64,
}

fn main() -> ExitCode {
    common::init_logging();
    let cli = Cli::parse();
    let topology = match kstreams::apps::order_aggregation::topology(
        &cli.common.input_topic,
        &cli.common.output_topic,
        Duration::from_millis(cli.dedupe_ttl_ms),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("order_aggregation: {e}");
            return ExitCode::from(2);
        }
    };
    common::run("order_aggregation", topology, &cli.common)
}
