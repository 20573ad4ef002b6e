//! order_aggregation: de-duplicates re-sent orders by order id, re-keys them
//! by customer and keeps per-customer totals, exactly-once.
//!
//! ```text
//! cargo run --release --example order_aggregation -- \
//!   --bootstrap-servers 127.0.0.1:9092 --application-id orders \
//!   --input-topic orders --output-topic customer-totals --dedupe-ttl-ms 3600000
//! ```
//! Output: key = customer id, value = `{"customer_id":..,"orders":..,"total_cents":..}`.
//!
//! Also (unless `--per-minute false`) `<output-topic>-per-minute` (must exist): key =
//! customer id, value = `{"customer_id","window_start","window_end","orders","revenue_cents"}`,
//! one final result per customer and 1-minute window (10 s grace), by
//! record timestamp.
//!
//! Bad orders (not UTF-8, invalid JSON, a wrong field type, a missing field,
//! no key or no value, larger than 64 KiB) go to the dead-letter topic
//! `<output-topic>-dlq` (or `--dlq-topic`) with their original bytes and
//! `__streams.errors.*` headers, inside the same transaction. The topic must
//! exist. `--config processing.exception.handler=...` and
//! `--config default.deserialization.exception.handler=...` override this.

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
    /// Dead-letter topic for bad orders (default: <output-topic>-dlq; must exist).
    #[arg(long)]
    dlq_topic: Option<String>,
    /// Also write each customer's final revenue per minute (1-minute
    /// tumbling windows, 10 s grace, one result per window) to
    /// `<output-topic>-per-minute` (must exist). `--per-minute false` turns it off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    per_minute: bool,
}

fn main() -> ExitCode {
    common::init();
    let mut cli = Cli::parse();
    let dlq = cli
        .dlq_topic
        .clone()
        .unwrap_or_else(|| format!("{}-dlq", cli.common.output_topic));
    for handler in [
        "default.deserialization.exception.handler",
        "processing.exception.handler",
    ] {
        let prefix = format!("{handler}=");
        if !cli.common.config.iter().any(|kv| kv.starts_with(&prefix)) {
            cli.common.config.push(format!("{prefix}dead_letter:{dlq}"));
        }
    }
    let per_minute_topic = format!("{}-per-minute", cli.common.output_topic);
    let topology = match kstreams::apps::order_aggregation::topology_with_per_minute(
        &cli.common.input_topic,
        &cli.common.output_topic,
        cli.per_minute.then_some(per_minute_topic.as_str()),
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
