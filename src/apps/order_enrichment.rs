//! Order enrichment: each order joined with its customer, read from a
//! compacted `customers` topic as a table.
//!
//! ```text
//! customers (compacted; key: customer id, value: JSON Customer, null = deleted)
//!   → table, materialized in store `customers` (changelogged)
//!
//! orders (key: order id; value: JSON Order as raw bytes)
//!   → parse-orders (a bad order is a processing error → the handler, e.g. the DLQ)
//!   → select_key(customer_id)
//!   → repartition topic <app>-orders-by-customer-repartition
//!   → left join with the customers table (store lookup, as of now)
//!   → re-key by order id → output topic (key: order id, value: JSON EnrichedOrder)
//! ```
//!
//! A left join: an order whose customer is unknown (never seen, or
//! deleted by a tombstone) is still written, with `customer_name` and
//! `customer_tier` null. The join reads the table's latest state when the
//! order is processed, so customers should be loaded before their orders
//! arrive (as with Kafka Streams without versioned tables).
//!
//! Co-partitioning: the repartition topic takes the customers topic's
//! partition count (a repartition topic read beside external topics does),
//! and the customers topic must be partitioned by Kafka's default
//! partitioner (murmur2 of the key, what Java producers do; librdkafka
//! producers need `partitioner=murmur2_random`), as the repartition topic
//! is, so that a customer and its orders meet in the same task.

use kstreams_operators::{Consumed, Joined, Materialized, Named, Produced, StreamsBuilder};
use kstreams_runtime::{Result, Serdes, Topology};
use serde::{Deserialize, Serialize};

use super::order_aggregation::{Order, ParseOrders};

/// The store holding the customers table.
///
/// ```
/// assert_eq!(kstreams::apps::order_enrichment::CUSTOMERS_STORE, "customers");
/// ```
pub const CUSTOMERS_STORE: &str = "customers";
/// The join name: the repartition topic is `<app>-orders-by-customer-repartition`.
///
/// ```
/// assert_eq!(kstreams::apps::order_enrichment::BY_CUSTOMER, "orders-by-customer");
/// ```
pub const BY_CUSTOMER: &str = "orders-by-customer";

/// One customer, as found on the customers topic (unknown fields ignored).
///
/// ```
/// let c: kstreams::apps::order_enrichment::Customer =
///     serde_json::from_str(r#"{"customer_id":"c1","name":"Ann","tier":"gold"}"#).unwrap();
/// assert_eq!(c.name, "Ann");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The customer id (also the record key).
    pub customer_id: String,
    /// Display name.
    pub name: String,
    /// Loyalty tier, e.g. `gold`.
    pub tier: String,
}

/// An order with its customer's details, as written to the output topic.
///
/// ```
/// use kstreams::apps::order_enrichment::EnrichedOrder;
/// let e = EnrichedOrder { order_id: "o1".into(), customer_id: "c1".into(), amount_cents: 5, ts: 0,
///     customer_name: Some("Ann".into()), customer_tier: None };
/// assert_eq!(serde_json::to_string(&e).unwrap(),
///     r#"{"order_id":"o1","customer_id":"c1","amount_cents":5,"ts":0,"customer_name":"Ann","customer_tier":null}"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedOrder {
    /// The order id (the output key).
    pub order_id: String,
    /// The customer id.
    pub customer_id: String,
    /// Amount in cents.
    pub amount_cents: i64,
    /// When the order was placed, epoch millis.
    pub ts: i64,
    /// The customer's name; null if the customer is unknown.
    pub customer_name: Option<String>,
    /// The customer's tier; null if the customer is unknown.
    pub customer_tier: Option<String>,
}

/// Joins an order with its customer, if known.
///
/// ```
/// use kstreams::apps::order_aggregation::Order;
/// use kstreams::apps::order_enrichment::{enrich, Customer};
/// let o = Order { order_id: "o1".into(), customer_id: "c1".into(), amount_cents: 5, ts: 0 };
/// assert_eq!(enrich(&o, None).customer_name, None);
/// let c = Customer { customer_id: "c1".into(), name: "Ann".into(), tier: "gold".into() };
/// assert_eq!(enrich(&o, Some(&c)).customer_tier.as_deref(), Some("gold"));
/// ```
pub fn enrich(order: &Order, customer: Option<&Customer>) -> EnrichedOrder {
    EnrichedOrder {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        amount_cents: order.amount_cents,
        ts: order.ts,
        customer_name: customer.map(|c| c.name.clone()),
        customer_tier: customer.map(|c| c.tier.clone()),
    }
}

/// The order-enrichment topology: orders from `orders_topic` joined with
/// the table of `customers_topic`, enriched orders to `output_topic`.
///
/// ```
/// use kstreams::apps::order_enrichment::topology;
/// use kstreams::runtime::TopologyTestDriver;
/// let mut d = TopologyTestDriver::new(topology("orders", "customers", "enriched").unwrap()).unwrap();
/// d.pipe_str("customers", Some("c1"), r#"{"customer_id":"c1","name":"Ann","tier":"gold"}"#, 0).unwrap();
/// d.pipe_str("orders", Some("o1"), r#"{"order_id":"o1","customer_id":"c1","amount_cents":500,"ts":1}"#, 1).unwrap();
/// let out = d.read_output("enriched");
/// assert_eq!(out[0].key_str(), Some("o1"));
/// assert_eq!(out[0].value_str(), Some(r#"{"order_id":"o1","customer_id":"c1","amount_cents":500,"ts":1,"customer_name":"Ann","customer_tier":"gold"}"#));
/// ```
pub fn topology(orders_topic: &str, customers_topic: &str, output_topic: &str) -> Result<Topology> {
    let builder = StreamsBuilder::new();
    let customers = builder.table(
        customers_topic,
        Consumed::with(Serdes::string(), Serdes::json::<Customer>()),
        Materialized::as_(CUSTOMERS_STORE),
    );
    builder
        .stream(
            orders_topic,
            Consumed::with(Serdes::bytes(), Serdes::bytes()),
        )
        .process_named(|| ParseOrders, &[], Named::as_("parse-orders"))
        .select_key(|_, order: &Order| order.customer_id.clone())
        .left_join(
            &customers,
            |order: &Order, customer: Option<&Customer>| enrich(order, customer),
            Joined::with(Serdes::string(), Serdes::json::<Order>()).named(BY_CUSTOMER),
        )
        .map(|_, e: EnrichedOrder| (e.order_id.clone(), e))
        .to(
            output_topic,
            Produced::with(Serdes::string(), Serdes::json::<EnrichedOrder>()),
        );
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstreams_runtime::TopologyTestDriver;

    fn order(id: &str, customer: &str, amount: i64) -> String {
        format!(
            r#"{{"order_id":"{id}","customer_id":"{customer}","amount_cents":{amount},"ts":0}}"#
        )
    }

    #[test]
    fn orders_are_enriched_with_the_latest_customer_and_survive_tombstones() {
        let mut d =
            TopologyTestDriver::new(topology("orders", "customers", "out").unwrap()).unwrap();
        d.pipe_str(
            "customers",
            Some("c1"),
            r#"{"customer_id":"c1","name":"Ann","tier":"silver"}"#,
            0,
        )
        .unwrap();
        d.pipe_str("orders", Some("o1"), &order("o1", "c1", 100), 1)
            .unwrap();
        d.pipe_str(
            "customers",
            Some("c1"),
            r#"{"customer_id":"c1","name":"Ann","tier":"gold"}"#,
            2,
        )
        .unwrap();
        d.pipe_str("orders", Some("o2"), &order("o2", "c1", 200), 3)
            .unwrap();
        d.pipe_input("customers", Some(b"c1"), None, 4).unwrap();
        d.pipe_str("orders", Some("o3"), &order("o3", "c1", 300), 5)
            .unwrap();
        let out = d
            .read_output_as("out", &Serdes::string(), &Serdes::json::<EnrichedOrder>())
            .unwrap();
        let tiers: Vec<(String, Option<String>)> =
            out.into_iter().map(|(k, e)| (k, e.customer_tier)).collect();
        assert_eq!(
            tiers,
            vec![
                ("o1".to_string(), Some("silver".to_string())),
                ("o2".to_string(), Some("gold".to_string())),
                ("o3".to_string(), None),
            ]
        );
        assert_eq!(
            d.all_records("test-app-orders-by-customer-repartition")
                .len(),
            3
        );
    }
}
