//! Example topologies, as library functions so the example binaries, the
//! integration and crash tests, and users' own tests all run the same code.
//!
//! - [`word_count`]: lines → words → counts (stateless split, repartition,
//!   count with a record cache).
//! - [`order_aggregation`]: JSON orders → parsed (malformed ones dropped and
//!   counted) → de-duplicated by order id → totals per customer.
//! - [`order_enrichment`]: JSON orders → re-keyed by customer → left join
//!   with a compacted customers topic read as a table → enriched orders.

pub mod order_aggregation;
pub mod order_enrichment;
pub mod word_count;
