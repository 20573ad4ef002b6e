//! Per-customer revenue per minute: 1-minute tumbling windows with a
//! 10-second grace period, final results only.
//!
//! ```text
//! orders re-keyed by customer (the shared repartition topic)
//!   → windowed_by(1 min, grace 10 s) → aggregate into window store
//!     `customer-revenue-per-minute` (orders, revenue)
//!   → suppress(until_window_closes): one result per customer and minute,
//!     when stream time passes the window end + 10 s (buffer store
//!     `final-per-minute-store`, changelogged: exactly once across crashes)
//!   → <output-topic>-per-minute (key: customer id, value: JSON CustomerMinute)
//! ```
//!
//! Windows use record timestamps (the Kafka timestamp of each order, which
//! producers should set to the order time). An order arriving after its
//! minute closed is dropped and counted as `late`.

use std::time::Duration;

use kstreams_operators::{
    KGroupedStream, Materialized, Produced, Suppressed, TimeWindows, Windowed,
};
use kstreams_runtime::Serdes;
use serde::{Deserialize, Serialize};

use super::Order;

/// The window size.
///
/// ```
/// assert_eq!(kstreams::apps::order_aggregation::per_minute::WINDOW, std::time::Duration::from_secs(60));
/// ```
pub const WINDOW: Duration = Duration::from_secs(60);
/// How late an order may be and still count in its minute.
///
/// ```
/// assert_eq!(kstreams::apps::order_aggregation::per_minute::GRACE, std::time::Duration::from_secs(10));
/// ```
pub const GRACE: Duration = Duration::from_secs(10);
/// The window store of running per-minute revenue.
///
/// ```
/// assert_eq!(kstreams::apps::order_aggregation::per_minute::REVENUE_STORE, "customer-revenue-per-minute");
/// ```
pub const REVENUE_STORE: &str = "customer-revenue-per-minute";
/// The suppress node; its buffer store is `final-per-minute-store`.
///
/// ```
/// assert_eq!(kstreams::apps::order_aggregation::per_minute::SUPPRESS, "final-per-minute");
/// ```
pub const SUPPRESS: &str = "final-per-minute";

/// The running aggregate of one customer's minute.
///
/// ```
/// let r = kstreams::apps::order_aggregation::per_minute::Revenue::default();
/// assert_eq!((r.orders, r.revenue_cents), (0, 0));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revenue {
    /// Orders counted.
    pub orders: u64,
    /// Their total amount, in cents.
    pub revenue_cents: i64,
}

/// One customer's final revenue for one minute, as written to
/// `<output-topic>-per-minute`.
///
/// ```
/// let m = kstreams::apps::order_aggregation::per_minute::CustomerMinute {
///     customer_id: "c1".into(), window_start: 60_000, window_end: 120_000, orders: 2, revenue_cents: 300 };
/// assert_eq!(serde_json::to_string(&m).unwrap(),
///     r#"{"customer_id":"c1","window_start":60000,"window_end":120000,"orders":2,"revenue_cents":300}"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerMinute {
    /// The customer.
    pub customer_id: String,
    /// Window start, epoch millis (inclusive).
    pub window_start: i64,
    /// Window end, epoch millis (exclusive).
    pub window_end: i64,
    /// Orders in the window.
    pub orders: u64,
    /// Their total amount, in cents.
    pub revenue_cents: i64,
}

/// Adds the per-minute branch to the orders grouped by customer.
pub(crate) fn add(by_customer: &KGroupedStream<String, Order>, topic: &str) {
    by_customer
        .windowed_by(TimeWindows::of_size_with_grace(WINDOW, GRACE))
        .aggregate(
            Revenue::default,
            |_, order: Order, r: Revenue| Revenue {
                orders: r.orders + 1,
                // Saturating: a hostile amount must not panic the task.
                revenue_cents: r.revenue_cents.saturating_add(order.amount_cents),
            },
            Materialized::as_(REVENUE_STORE).with_value_serde(Serdes::json::<Revenue>()),
        )
        .suppress(Suppressed::until_window_closes().with_name(SUPPRESS))
        .to_stream()
        .map(|w: Windowed<String>, r: Revenue| {
            let m = CustomerMinute {
                customer_id: w.key.clone(),
                window_start: w.start,
                window_end: w.end,
                orders: r.orders,
                revenue_cents: r.revenue_cents,
            };
            (w.key, m)
        })
        .to(
            topic,
            Produced::with(Serdes::string(), Serdes::json::<CustomerMinute>()),
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::order_aggregation::{DEFAULT_DEDUPE_TTL, topology_with_per_minute};
    use kstreams_runtime::TopologyTestDriver;

    fn order(id: &str, customer: &str, amount: i64) -> String {
        format!(
            r#"{{"order_id":"{id}","customer_id":"{customer}","amount_cents":{amount},"ts":0}}"#
        )
    }

    #[test]
    fn one_final_result_per_customer_and_minute_with_grace() {
        let t = topology_with_per_minute(
            "orders",
            "totals",
            Some("totals-per-minute"),
            DEFAULT_DEDUPE_TTL,
        )
        .unwrap();
        let mut d = TopologyTestDriver::new(t).unwrap();
        let mut pipe = |id: &str, c: &str, amount: i64, ts: i64| {
            d.pipe_str("orders", Some(id), &order(id, c, amount), ts)
                .unwrap();
        };
        pipe("o1", "c1", 100, 1_000);
        pipe("o2", "c2", 50, 30_000);
        pipe("o3", "c1", 200, 61_000);
        pipe("o1", "c1", 100, 62_000); // re-sent: dropped by dedupe
        pipe("o4", "c1", 300, 59_000); // out of order, within grace
        pipe("o5", "c1", 5, 70_000); // stream time 70 s: minute 0 closes
        pipe("o6", "c2", 1, 55_000); // late: minute 0 is closed
        pipe("o7", "c2", 7, 130_000); // closes minute 1
        let out = d
            .read_output_as(
                "totals-per-minute",
                &Serdes::string(),
                &Serdes::json::<CustomerMinute>(),
            )
            .unwrap();
        let m = |c: &str, start: i64, orders: u64, revenue_cents: i64| {
            (
                c.to_string(),
                CustomerMinute {
                    customer_id: c.into(),
                    window_start: start,
                    window_end: start + 60_000,
                    orders,
                    revenue_cents,
                },
            )
        };
        assert_eq!(
            out,
            vec![
                m("c1", 0, 2, 400),
                m("c2", 0, 1, 50),
                m("c1", 60_000, 2, 205)
            ]
        );
        let late: u64 = d
            .dropped_records()
            .iter()
            .filter(|((_, r), _)| r == "late")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(late, 1);
    }
}
