//! Order aggregation: totals per customer from a stream of JSON orders,
//! robust to malformed and re-sent input.
//!
//! ```text
//! orders (key: order id, ignored; value: JSON Order as raw bytes)
//!   → parse-orders: parse JSON; malformed → dropped, counted as "malformed"
//!   → dedupe-orders: by order_id (TTL store `seen-orders`, stream time);
//!                              duplicates → dropped, counted as "duplicate"
//!   → group_by(customer_id)   (repartition topic <app>-orders-by-customer-repartition)
//!   → aggregate into store `customer-totals` (JSON CustomerTotal)
//!   → to_stream → output topic (key: customer id, value: JSON CustomerTotal)
//! ```
//!
//! Why values are read as bytes and parsed in a processor: a bad order
//! (invalid JSON, a wrong field type, a missing field, non-UTF-8 bytes) is
//! the data's fault. Parsing inside the topology lets the job drop it,
//! count it (`ProcessorContext::record_dropped("malformed")`) and go on,
//! and keeps the error visible in metrics, rather than depending on the
//! source's deserialization policy.
//!
//! Why dedupe comes before the re-key: input is keyed by order id, so all
//! copies of an order land in one partition and task, where the TTL store
//! of seen ids finds them. After the re-key by customer that would no
//! longer hold. The order id inside the JSON is the one used; the record
//! key is not read (a producer that keys by order id only ensures the
//! co-location).
//!
//! Timestamps: records keep their Kafka timestamps; the dedupe TTL runs on
//! stream time (the largest input timestamp seen). The order's own `ts` is
//! carried as data.

use std::time::Duration;

use kstreams_operators::{
    Consumed, Deduplicated, Grouped, Materialized, Named, Produced, StreamsBuilder,
};
use kstreams_runtime::{Processor, ProcessorContext, Record, Result, Serdes, Topology};
use serde::{Deserialize, Serialize};

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

/// Parses one order: a JSON object with the fields of [`Order`] (unknown
/// fields are ignored). serde would also accept a JSON array of the field
/// values; an order must be an object, so that is refused here.
///
/// ```
/// use kstreams::apps::order_aggregation::parse_order;
/// assert!(parse_order(br#"{"order_id":"o","customer_id":"c","amount_cents":1,"ts":2}"#).is_ok());
/// assert!(parse_order(br#"["o","c",1,2]"#).is_err());
/// assert!(parse_order(br#"{"order_id":"o"}"#).is_err());
/// ```
pub fn parse_order(bytes: &[u8]) -> std::result::Result<Order, String> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        _ => Err("an order must be a JSON object".into()),
    }
}

/// Parses raw order bytes; drops and counts what is not a valid [`Order`].
/// Forwards each order keyed by its `order_id`.
///
/// ```
/// use kstreams::apps::order_aggregation::{Order, ParseOrders};
/// use kstreams::prelude::*;
/// let b = StreamsBuilder::new();
/// b.stream("orders", Consumed::with(Serdes::unit(), Serdes::bytes()))
///     .process(|| ParseOrders, &[])
///     .to("parsed", Produced::with(Serdes::string(), Serdes::json::<Order>()));
/// let mut d = TopologyTestDriver::new(b.build().unwrap()).unwrap();
/// d.pipe_str("orders", None, "not json", 0).unwrap();
/// d.pipe_str("orders", None, r#"{"order_id":"o1","customer_id":"c","amount_cents":5,"ts":0}"#, 0).unwrap();
/// assert_eq!(d.read_output("parsed")[0].key_str(), Some("o1"));
/// assert_eq!(d.dropped_records().values().sum::<u64>(), 1);
/// ```
pub struct ParseOrders;

impl Processor<(), Vec<u8>, String, Order> for ParseOrders {
    fn process(
        &mut self,
        record: Record<(), Vec<u8>>,
        ctx: &mut ProcessorContext<String, Order>,
    ) -> Result<()> {
        match parse_order(&record.value) {
            Ok(order) => ctx.forward(record.with_key(order.order_id.clone()).with_value(order)),
            Err(e) => {
                tracing::debug!(node = ctx.node_name(), error = %e, "dropping a malformed order");
                ctx.record_dropped("malformed");
                Ok(())
            }
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
    let builder = StreamsBuilder::new();
    builder
        .stream(input_topic, Consumed::with(Serdes::unit(), Serdes::bytes()))
        .process_named(|| ParseOrders, &[], Named::as_("parse-orders"))
        .dedupe(
            |order_id: &String, _| order_id.clone(),
            Deduplicated::with(SEEN_ORDERS_STORE, Serdes::string(), dedupe_ttl)
                .with_name("dedupe-orders"),
        )
        .group_by(
            |_, order: &Order| order.customer_id.clone(),
            Grouped::with(Serdes::string(), Serdes::json::<Order>()).named(BY_CUSTOMER),
        )
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
