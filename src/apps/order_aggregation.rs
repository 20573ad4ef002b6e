//! Order aggregation: totals per customer from a stream of JSON orders,
//! robust to malformed and re-sent input.
//!
//! ```text
//! orders (key: order id, required; value: JSON Order as raw bytes)
//!   → parse-orders: parse JSON; a bad order is a processing error, which
//!                   the processing.exception.handler sends to the DLQ
//!                   (the example's default: <output-topic>-dlq)
//!   → dedupe-orders: by order_id (TTL store `seen-orders`, stream time);
//!                              duplicates → dropped, counted as "duplicate"
//!   → group_by(customer_id)   (repartition topic <app>-orders-by-customer-repartition)
//!   → aggregate into store `customer-totals` (JSON CustomerTotal)
//!   → to_stream → output topic (key: customer id, value: JSON CustomerTotal)
//! ```
//!
//! Why values are read as bytes and parsed in a processor: a bad order
//! (invalid JSON, a wrong field type, a missing field, non-UTF-8 bytes, an
//! order larger than [`MAX_ORDER_BYTES`]) is the data's fault. Parsing
//! inside the topology turns it into a processing error naming what is
//! wrong, so the processing handler decides: dead-letter it with its
//! original bytes and the reason in headers, skip it and count it, or stop.
//! A record without a value or without a key fails in the source's
//! deserializer and goes through the deserialization handler the same way.
//!
//! Why the key is required and dedupe comes before the re-key: input is
//! keyed by order id, so all copies of an order land in one partition and
//! task, where the TTL store of seen ids finds them. After the re-key by
//! customer that would no longer hold. An unkeyed order could land beside
//! none of its copies, so it is refused. The order id inside the JSON is the
//! one used for de-duplication.
//!
//! Timestamps: records keep their Kafka timestamps; the dedupe TTL runs on
//! stream time (the largest input timestamp seen). The order's own `ts` is
//! carried as data.
//!
//! Optionally ([`topology_with_per_minute`]), each customer's final revenue
//! per 1-minute window (10 s grace, exactly one result per window) goes to a
//! second output: see [`per_minute`].

use std::time::Duration;

use kstreams_operators::{
    Consumed, Deduplicated, Grouped, Materialized, Named, Produced, Repartitioned, StreamsBuilder,
};
use kstreams_runtime::{Processor, ProcessorContext, Record, Result, Serdes, Topology};
use serde::{Deserialize, Serialize};

pub mod per_minute;

/// How long an order id is remembered by default: 1 hour of stream time.
///
/// ```
/// assert_eq!(kstreams::apps::order_aggregation::DEFAULT_DEDUPE_TTL, std::time::Duration::from_secs(3600));
/// ```
pub const DEFAULT_DEDUPE_TTL: Duration = Duration::from_secs(3600);
/// The store of seen order ids.
///
/// ```
/// assert_eq!(kstreams::apps::order_aggregation::SEEN_ORDERS_STORE, "seen-orders");
/// ```
pub const SEEN_ORDERS_STORE: &str = "seen-orders";
/// The store of totals per customer.
///
/// ```
/// assert_eq!(kstreams::apps::order_aggregation::CUSTOMER_TOTALS_STORE, "customer-totals");
/// ```
pub const CUSTOMER_TOTALS_STORE: &str = "customer-totals";
/// The grouping name: the repartition topic is `<app>-orders-by-customer-repartition`.
///
/// ```
/// assert_eq!(kstreams::apps::order_aggregation::BY_CUSTOMER, "orders-by-customer");
/// ```
pub const BY_CUSTOMER: &str = "orders-by-customer";

/// The largest order accepted, in bytes of JSON. A real order is a few
/// hundred bytes; anything past this is refused as malformed (it would also
/// be copied into the repartition topic and the dedupe store).
///
/// ```
/// assert_eq!(kstreams::apps::order_aggregation::MAX_ORDER_BYTES, 64 * 1024);
/// ```
pub const MAX_ORDER_BYTES: usize = 64 * 1024;

/// One order, as found on the input topic.
///
/// ```
/// let o: kstreams::apps::order_aggregation::Order = serde_json::from_str(
///     r#"{"order_id":"o1","customer_id":"c1","amount_cents":1250,"ts":1700000000000}"#).unwrap();
/// assert_eq!(o.amount_cents, 1250);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's unique id (the de-duplication key).
    pub order_id: String,
    /// The customer who placed it.
    pub customer_id: String,
    /// The amount in cents (negative for a refund).
    pub amount_cents: i64,
    /// When it was placed, epoch millis.
    pub ts: i64,
}

/// The running totals of one customer, as written to the output topic.
///
/// ```
/// let t = kstreams::apps::order_aggregation::CustomerTotal { customer_id: "c1".into(), orders: 2, total_cents: 300 };
/// assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"customer_id":"c1","orders":2,"total_cents":300}"#);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerTotal {
    /// The customer.
    pub customer_id: String,
    /// How many distinct orders were counted.
    pub orders: u64,
    /// The sum of their amounts, in cents.
    pub total_cents: i64,
}

/// Parses one order: a JSON object of at most [`MAX_ORDER_BYTES`] with the
/// fields of [`Order`] (unknown fields are ignored). serde would also accept
/// a JSON array of the field values; an order must be an object, so that is
/// refused here. The error says what is wrong.
///
/// ```
/// use kstreams::apps::order_aggregation::parse_order;
/// assert!(parse_order(br#"{"order_id":"o","customer_id":"c","amount_cents":1,"ts":2}"#).is_ok());
/// assert!(parse_order(br#"["o","c",1,2]"#).is_err());
/// let e = parse_order(br#"{"order_id":"o"}"#).unwrap_err();
/// assert!(e.contains("missing field `customer_id`"), "{e}");
/// ```
pub fn parse_order(bytes: &[u8]) -> std::result::Result<Order, String> {
    if bytes.len() > MAX_ORDER_BYTES {
        return Err(format!(
            "the order is {} bytes; at most {MAX_ORDER_BYTES} are accepted",
            bytes.len()
        ));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err("the order is not UTF-8 text".into());
    };
    // From the checked text: serde_json then does not check its strings
    // as UTF-8 a second time.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_str(text).map_err(|e| format!("invalid order JSON: {e}")),
        _ => Err("an order must be a JSON object".into()),
    }
}

/// Parses raw order bytes into an [`Order`], keyed by its `order_id`. A bad
/// order is returned as a processing error naming what is wrong; the
/// application's `processing.exception.handler` decides what happens to it
/// (dead-letter, skip, or stop).
///
/// ```
/// use kstreams::apps::order_aggregation::{Order, ParseOrders};
/// use kstreams::prelude::*;
/// use kstreams::runtime::{dlq_headers, ErrorPolicy};
/// let b = StreamsBuilder::new();
/// b.stream("orders", Consumed::with(Serdes::bytes(), Serdes::bytes()))
///     .process(|| ParseOrders, &[])
///     .to("parsed", Produced::with(Serdes::string(), Serdes::json::<Order>()));
/// let mut d = TopologyTestDriver::builder(b.build().unwrap())
///     .processing_policy(ErrorPolicy::DeadLetter("orders-dlq".into()))
///     .build()
///     .unwrap();
/// d.pipe_str("orders", Some("o0"), "not json", 0).unwrap();
/// d.pipe_str("orders", Some("o1"), r#"{"order_id":"o1","customer_id":"c","amount_cents":5,"ts":0}"#, 0).unwrap();
/// assert_eq!(d.read_output("parsed")[0].key_str(), Some("o1"));
/// let dlq = d.read_output("orders-dlq");
/// assert_eq!(dlq[0].value_str(), Some("not json"));
/// let why = String::from_utf8_lossy(dlq[0].headers.get(dlq_headers::EXCEPTION).unwrap());
/// assert!(why.contains("malformed order: an order must be a JSON object"), "{why}");
/// ```
pub struct ParseOrders;

impl Processor<Vec<u8>, Vec<u8>, String, Order> for ParseOrders {
    fn process(
        &mut self,
        record: Record<Vec<u8>, Vec<u8>>,
        ctx: &mut ProcessorContext<String, Order>,
    ) -> Result<()> {
        match parse_order(&record.value) {
            Ok(order) => ctx.forward(record.with_key(order.order_id.clone()).with_value(order)),
            Err(e) => Err(kstreams_runtime::StreamsError::processing(
                ctx.node_name(),
                format!("malformed order: {e}"),
            )),
        }
    }
}

/// The order-aggregation topology: orders from `input_topic`, totals per
/// customer to `output_topic`, order ids remembered for `dedupe_ttl`.
///
/// ```
/// use kstreams::apps::order_aggregation::{topology, DEFAULT_DEDUPE_TTL};
/// use kstreams::runtime::TopologyTestDriver;
/// let mut d = TopologyTestDriver::new(topology("orders", "totals", DEFAULT_DEDUPE_TTL).unwrap()).unwrap();
/// let order = br#"{"order_id":"o1","customer_id":"c1","amount_cents":500,"ts":0}"#;
/// d.pipe_input("orders", Some(b"o1"), Some(order), 0).unwrap();
/// d.pipe_input("orders", Some(b"o1"), Some(order), 1).unwrap(); // re-sent
/// let out = d.read_output("totals");
/// assert_eq!(out.len(), 1);
/// assert_eq!(out[0].value_str(), Some(r#"{"customer_id":"c1","orders":1,"total_cents":500}"#));
/// ```
pub fn topology(input_topic: &str, output_topic: &str, dedupe_ttl: Duration) -> Result<Topology> {
    topology_with_per_minute(input_topic, output_topic, None, dedupe_ttl)
}

/// [`topology`], plus (if `per_minute_topic` is given) each customer's
/// final revenue per minute written there (see [`per_minute`]). The orders
/// then go through the repartition topic once and feed both aggregations.
///
/// ```
/// use kstreams::apps::order_aggregation::{topology_with_per_minute, DEFAULT_DEDUPE_TTL};
/// let t = topology_with_per_minute("orders", "totals", Some("totals-per-minute"), DEFAULT_DEDUPE_TTL).unwrap();
/// assert!(t.describe().to_string().contains("(topic: totals-per-minute)"));
/// ```
pub fn topology_with_per_minute(
    input_topic: &str,
    output_topic: &str,
    per_minute_topic: Option<&str>,
    dedupe_ttl: Duration,
) -> Result<Topology> {
    let builder = StreamsBuilder::new();
    let orders = builder
        .stream(
            input_topic,
            Consumed::with(Serdes::bytes(), Serdes::bytes()),
        )
        .process_named(|| ParseOrders, &[], Named::as_("parse-orders"))
        .dedupe(
            |order_id: &String, _| order_id.clone(),
            Deduplicated::with(SEEN_ORDERS_STORE, Serdes::string(), dedupe_ttl)
                .with_name("dedupe-orders"),
        );
    let grouped = Grouped::with(Serdes::string(), Serdes::json::<Order>());
    let by_customer = match per_minute_topic {
        None => orders.group_by(
            |_, order: &Order| order.customer_id.clone(),
            grouped.named(BY_CUSTOMER),
        ),
        // Two aggregations: re-key and repartition once, explicitly.
        Some(_) => orders
            .select_key(|_, order: &Order| order.customer_id.clone())
            .repartition(
                Repartitioned::with(Serdes::string(), Serdes::json::<Order>()).named(BY_CUSTOMER),
            )
            .group_by_key(grouped),
    };
    if let Some(topic) = per_minute_topic {
        per_minute::add(&by_customer, topic);
    }
    by_customer
        .aggregate(
            CustomerTotal::default,
            |customer: &String, order: Order, total: CustomerTotal| CustomerTotal {
                customer_id: customer.clone(),
                orders: total.orders + 1,
                // Saturating: a hostile amount must not panic the task.
                total_cents: total.total_cents.saturating_add(order.amount_cents),
            },
            Materialized::as_(CUSTOMER_TOTALS_STORE)
                .with_value_serde(Serdes::json::<CustomerTotal>()),
        )
        .to_stream()
        .to(
            output_topic,
            Produced::with(Serdes::string(), Serdes::json::<CustomerTotal>()),
        );
    builder.build()
}
