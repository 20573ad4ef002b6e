//! order_enrichment: joins each order with its customer from a compacted
//! customers topic (a stream-table left join), exactly-once.
//!
//! ```text
//! cargo run --release --example order_enrichment -- \
//!   --bootstrap-servers 127.0.0.1:9092 --application-id enrich \
//!   --input-topic orders --customers-topic customers --output-topic enriched-orders
//! ```
//! Input: orders keyed by order id, JSON
//! `{"order_id","customer_id","amount_cents","ts"}`; customers keyed by
//! customer id, JSON `{"customer_id","name","tier"}` (null value = deleted).
//! Customers must be partitioned by murmur2 of the key (Kafka's default
//! partitioner); the repartition topic of orders takes the customers
//! topic's partition count.
//! Output: key = order id, value = the order plus `customer_name` and
//! `customer_tier` (null when the customer is unknown).
//!
//! Bad orders and undecodable customers go to the dead-letter topic
//! `<output-topic>-dlq` (or `--dlq-topic`; it must exist), inside the same
//! transaction; `--config processing.exception.handler=...` and
//! `--config default.deserialization.exception.handler=...` override this.

mod common;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    about = "Orders enriched with their customer (stream-table join), exactly-once, with kstreams"
)]
struct Cli {
    #[command(flatten)]
    common: common::CommonArgs,
    /// The compacted customers topic (key: customer id), read as a table.
    #[arg(long)]
    customers_topic: String,
    /// Dead-letter topic for bad records (default: <output-topic>-dlq; must exist).
    #[arg(long)]
    dlq_topic: Option<String>,
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
    let topology = match kstreams::apps::order_enrichment::topology(
        &cli.common.input_topic,
        &cli.customers_topic,
        &cli.common.output_topic,
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("order_enrichment: {e}");
            return ExitCode::from(2);
        }
    };
    common::run("order_enrichment", topology, &cli.common)
}
