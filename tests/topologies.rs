//! The example topologies (`kstreams::apps`) through the in-memory test
//! driver: exact outputs, store, repartition and changelog contents, bad
//! input, duplicates, and the exact `describe()` text (printed, for the
//! README). No broker needed.

use std::collections::BTreeMap;
use std::time::Duration;

use kstreams::TestRecord;
use kstreams::apps::order_aggregation::{self, CustomerTotal, DEFAULT_DEDUPE_TTL, Order};
use kstreams::apps::word_count::{self, words};
use kstreams::prelude::*;
use kstreams::runtime::{ErrorPolicy, dlq_headers};

fn kv(records: &[TestRecord]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            (
                r.key_str().unwrap_or("<null>").to_string(),
                r.value_str().unwrap_or("<null>").to_string(),
            )
        })
        .collect()
}

fn counts(items: &[(&str, u64)]) -> Vec<(String, u64)> {
    items.iter().map(|(w, n)| (w.to_string(), *n)).collect()
}

// ---------------------------------------------------------------- word count

const WORD_COUNT_DESCRIBE: &str = "\
Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [lines])
      --> KSTREAM-FLATMAP-0000000001
      <-- none
    Processor: KSTREAM-FLATMAP-0000000001 (stores: [])
      --> counts-combine
      <-- KSTREAM-SOURCE-0000000000
    Processor: counts-combine (stores: [])
      --> counts-repartition-sink
      <-- KSTREAM-FLATMAP-0000000001
    Sink: counts-repartition-sink (topic: counts-repartition)
      <-- counts-combine

   Sub-topology: 1
    Source: counts-repartition-source (topics: [counts-repartition])
      --> KSTREAM-AGGREGATE-0000000002
      <-- none
    Processor: KSTREAM-AGGREGATE-0000000002 (stores: [counts])
      --> KTABLE-TOSTREAM-0000000003
      <-- counts-repartition-source
    Processor: KTABLE-TOSTREAM-0000000003 (stores: [])
      --> KSTREAM-SINK-0000000004
      <-- KSTREAM-AGGREGATE-0000000002
    Sink: KSTREAM-SINK-0000000004 (topic: word-counts)
      <-- KTABLE-TOSTREAM-0000000003

";

fn word_count_driver(commit_every: usize, cache_max_bytes: usize) -> TopologyTestDriver {
    let t = word_count::topology("lines", "word-counts").unwrap();
    TopologyTestDriver::builder(t)
        .commit_every(commit_every)
        .cache_max_bytes(cache_max_bytes)
        .build()
        .unwrap()
}

fn word_counts_out(d: &mut TopologyTestDriver) -> Vec<(String, u64)> {
    d.read_output_as("word-counts", &Serdes::string(), &Serdes::u64_text())
        .unwrap()
}

#[test]
fn word_count_describe_is_exact() {
    let text = word_count::topology("lines", "word-counts")
        .unwrap()
        .describe()
        .to_string();
    println!("{text}");
    assert_eq!(text, WORD_COUNT_DESCRIBE);
}

#[test]
fn word_count_counts_unicode_words_exactly_with_a_commit_per_line() {
    let mut d = word_count_driver(1, 10 << 20);
    let lines = [
        "Hello, World! hello",
        "Ünïcödé straße—ÉTÉ 42 x_y",
        "",
        "   ...   ",
        "WORLD world",
    ];
    for (i, line) in lines.iter().enumerate() {
        d.pipe_str("lines", Some("ignored-key"), line, i as i64 * 10)
            .unwrap();
    }
    // One commit per line: the cache forwards each word's latest count once
    // per line, in the order of first appearance.
    assert_eq!(
        word_counts_out(&mut d),
        counts(&[
            ("hello", 2),
            ("world", 1),
            ("ünïcödé", 1),
            ("straße", 1),
            ("été", 1),
            ("42", 1),
            ("x", 1),
            ("y", 1),
            ("world", 3),
        ])
    );
    // The store, in key byte order.
    assert_eq!(
        d.key_value_store_all::<String, u64>(word_count::COUNTS_STORE)
            .unwrap(),
        counts(&[
            ("42", 1),
            ("hello", 2),
            ("straße", 1),
            ("world", 3),
            ("x", 1),
            ("y", 1),
            ("été", 1),
            ("ünïcödé", 1),
        ])
    );
    // The repartition topic carries each word's partial count per commit
    // (pre-aggregation), as 8-byte big-endian, in the order of first
    // appearance within the commit.
    let rep: Vec<(String, u64)> = d
        .all_records("test-app-counts-repartition")
        .iter()
        .map(|r| {
            let v: [u8; 8] = r.value.as_deref().unwrap().try_into().unwrap();
            (r.key_str().unwrap().to_string(), u64::from_be_bytes(v))
        })
        .collect();
    assert_eq!(
        rep,
        counts(&[
            ("hello", 2),
            ("world", 1),
            ("ünïcödé", 1),
            ("straße", 1),
            ("été", 1),
            ("42", 1),
            ("x", 1),
            ("y", 1),
            ("world", 2),
        ])
    );
    // The changelog: one record per word per commit (order within a commit
    // is not specified), counts as 8-byte big-endian.
    let mut changelog: Vec<(String, u64)> = d
        .all_records("test-app-counts-changelog")
        .iter()
        .map(|r| {
            let v: [u8; 8] = r.value.as_deref().unwrap().try_into().unwrap();
            (r.key_str().unwrap().to_string(), u64::from_be_bytes(v))
        })
        .collect();
    changelog.sort();
    assert_eq!(
        changelog,
        counts(&[
            ("42", 1),
            ("hello", 2),
            ("straße", 1),
            ("world", 1),
            ("world", 3),
            ("x", 1),
            ("y", 1),
            ("été", 1),
            ("ünïcödé", 1),
        ])
    );
    // Output records: key = UTF-8 word, value = decimal text.
    d.pipe_str("lines", None, "Zebra", 100).unwrap();
    let raw = d.read_output("word-counts");
    assert_eq!(
        (raw[0].key.as_deref(), raw[0].value.as_deref()),
        (Some(&b"zebra"[..]), Some(&b"1"[..]))
    );
    assert_eq!(raw[0].timestamp, 100);
}

#[test]
fn words_ascii_fast_path_matches_lowercase_then_split() {
    let reference = |line: &str| -> Vec<String> {
        line.to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    for line in [
        "Hello, World!  hello_again x-1 ÀB",
        "ASCII only: MiXeD 123 a.b,c;d\te\nf",
        "",
        "...",
        "İstanbul ΑΣ.Β ΟΔΟΣ",
        "\u{0}nul\u{7f}del",
    ] {
        assert_eq!(words(line), reference(line), "{line:?}");
    }
}

#[test]
fn word_count_skips_a_non_utf8_line_and_goes_on() {
    let mut d = word_count_driver(1, 10 << 20);
    d.pipe_str("lines", None, "ok line", 0).unwrap();
    d.pipe_input("lines", None, Some(&[0xff, 0xfe, b'a']), 1)
        .unwrap();
    d.pipe_str("lines", None, "line ok", 2).unwrap();
    assert_eq!(
        word_counts_out(&mut d),
        counts(&[("ok", 1), ("line", 1), ("line", 2), ("ok", 2)])
    );
    assert_eq!(d.skipped_records(), 1);
    assert!(d.dropped_records().is_empty());
}

#[test]
fn word_count_cache_on_coalesces_per_commit_and_cache_off_shows_every_update() {
    let lines = ["a b", "b c", "a"];
    let mut on = word_count_driver(3, 10 << 20);
    let mut off = word_count_driver(3, 0);
    for (i, line) in lines.iter().enumerate() {
        on.pipe_str("lines", None, line, i as i64).unwrap();
        off.pipe_str("lines", None, line, i as i64).unwrap();
    }
    assert_eq!(
        word_counts_out(&mut on),
        counts(&[("a", 2), ("b", 2), ("c", 1)])
    );
    assert_eq!(
        word_counts_out(&mut off),
        counts(&[("a", 1), ("b", 1), ("b", 2), ("c", 1), ("a", 2)])
    );
    // Either way the changelog holds one record per key per commit.
    assert_eq!(on.all_records("test-app-counts-changelog").len(), 3);
    assert_eq!(off.all_records("test-app-counts-changelog").len(), 3);
}

/// A deterministic pseudo-random text (xorshift), checked against counts
/// computed here with the same `words` function.
#[test]
fn word_count_matches_a_reference_count_on_generated_text() {
    const VOCAB: &[&str] = &[
        "Kafka", "streams", "état", "RUST", "the", "a", "naïve", "x1", "ok", "Ωmega",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut d = word_count_driver(7, 10 << 20);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..500 {
        let n = next() % 9;
        let line: Vec<String> = (0..n)
            .map(|_| {
                let w = VOCAB[(next() % VOCAB.len() as u64) as usize];
                let sep = [" ", ", ", "--", "! "][(next() % 4) as usize];
                format!("{w}{sep}")
            })
            .collect();
        let line = line.concat();
        for w in words(&line) {
            *expected.entry(w).or_default() += 1;
        }
        d.pipe_str("lines", None, &line, i).unwrap();
    }
    d.commit().unwrap();
    let store: BTreeMap<String, u64> = d
        .key_value_store_all::<String, u64>("counts")
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(store, expected);
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut previous: BTreeMap<String, u64> = BTreeMap::new();
    for (w, n) in word_counts_out(&mut d) {
        // A word's forwarded counts only move forward.
        assert!(
            previous.get(&w).is_none_or(|p| *p < n),
            "{w}: {n} after {:?}",
            previous.get(&w)
        );
        previous.insert(w.clone(), n);
        last.insert(w, n);
    }
    assert_eq!(last, expected);
}

// ---------------------------------------------------------- order aggregation

const ORDER_AGGREGATION_DESCRIBE: &str = "\
Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [orders])
      --> parse-orders
      <-- none
    Processor: parse-orders (stores: [])
      --> dedupe-orders
      <-- KSTREAM-SOURCE-0000000000
    Processor: dedupe-orders (stores: [seen-orders])
      --> KSTREAM-KEY-SELECT-0000000001
      <-- parse-orders
    Processor: KSTREAM-KEY-SELECT-0000000001 (stores: [])
      --> orders-by-customer-repartition-sink
      <-- dedupe-orders
    Sink: orders-by-customer-repartition-sink (topic: orders-by-customer-repartition)
      <-- KSTREAM-KEY-SELECT-0000000001

   Sub-topology: 1
    Source: orders-by-customer-repartition-source (topics: [orders-by-customer-repartition])
      --> KSTREAM-AGGREGATE-0000000002
      <-- none
    Processor: KSTREAM-AGGREGATE-0000000002 (stores: [customer-totals])
      --> KTABLE-TOSTREAM-0000000003
      <-- orders-by-customer-repartition-source
    Processor: KTABLE-TOSTREAM-0000000003 (stores: [])
      --> KSTREAM-SINK-0000000004
      <-- KSTREAM-AGGREGATE-0000000002
    Sink: KSTREAM-SINK-0000000004 (topic: customer-totals)
      <-- KTABLE-TOSTREAM-0000000003

";

fn order_json(id: &str, customer: &str, amount: i64, ts: i64) -> String {
    format!(r#"{{"order_id":"{id}","customer_id":"{customer}","amount_cents":{amount},"ts":{ts}}}"#)
}

fn order_driver(ttl: Duration, commit_every: usize) -> TopologyTestDriver {
    let t = order_aggregation::topology("orders", "totals", ttl).unwrap();
    TopologyTestDriver::builder(t)
        .commit_every(commit_every)
        .build()
        .unwrap()
}

/// Pipes an order keyed by its id, with Kafka timestamp `at`.
fn pipe_order(d: &mut TopologyTestDriver, id: &str, customer: &str, amount: i64, at: i64) {
    d.pipe_str(
        "orders",
        Some(id),
        &order_json(id, customer, amount, at),
        at,
    )
    .unwrap();
}

fn totals_out(d: &mut TopologyTestDriver) -> Vec<(String, CustomerTotal)> {
    d.read_output_as(
        "totals",
        &Serdes::string(),
        &Serdes::json::<CustomerTotal>(),
    )
    .unwrap()
}

fn total(customer: &str, orders: u64, total_cents: i64) -> (String, CustomerTotal) {
    (
        customer.to_string(),
        CustomerTotal {
            customer_id: customer.to_string(),
            orders,
            total_cents,
        },
    )
}

fn dropped(d: &TopologyTestDriver, node: &str, reason: &str) -> u64 {
    d.dropped_records()
        .get(&(node.to_string(), reason.to_string()))
        .copied()
        .unwrap_or(0)
}

#[test]
fn order_aggregation_describe_is_exact() {
    let t = order_aggregation::topology("orders", "customer-totals", DEFAULT_DEDUPE_TTL).unwrap();
    let text = t.describe().to_string();
    println!("{text}");
    assert_eq!(text, ORDER_AGGREGATION_DESCRIBE);
}

#[test]
fn orders_are_totalled_per_customer() {
    let mut d = order_driver(DEFAULT_DEDUPE_TTL, 1);
    pipe_order(&mut d, "o1", "c1", 500, 1_000);
    pipe_order(&mut d, "o2", "c2", 250, 2_000);
    pipe_order(&mut d, "o3", "c1", -100, 3_000); // a refund
    assert_eq!(
        totals_out(&mut d),
        vec![
            total("c1", 1, 500),
            total("c2", 1, 250),
            total("c1", 2, 400)
        ]
    );
    assert_eq!(
        d.key_value_store_all::<String, CustomerTotal>("customer-totals")
            .unwrap(),
        vec![total("c1", 2, 400), total("c2", 1, 250)]
    );
    // The repartition topic holds each order keyed by customer.
    assert_eq!(
        kv(&d.all_records("test-app-orders-by-customer-repartition")),
        vec![
            ("c1".to_string(), order_json("o1", "c1", 500, 1_000)),
            ("c2".to_string(), order_json("o2", "c2", 250, 2_000)),
            ("c1".to_string(), order_json("o3", "c1", -100, 3_000)),
        ]
    );
    // The changelog of the totals: one record per commit here.
    assert_eq!(
        kv(&d.all_records("test-app-customer-totals-changelog")),
        vec![
            (
                "c1".to_string(),
                r#"{"customer_id":"c1","orders":1,"total_cents":500}"#.to_string()
            ),
            (
                "c2".to_string(),
                r#"{"customer_id":"c2","orders":1,"total_cents":250}"#.to_string()
            ),
            (
                "c1".to_string(),
                r#"{"customer_id":"c1","orders":2,"total_cents":400}"#.to_string()
            ),
        ]
    );
    // Output values are exactly the documented JSON, with timestamps kept.
    let raw = d.all_records("totals");
    assert_eq!(
        raw[2].value_str(),
        Some(r#"{"customer_id":"c1","orders":2,"total_cents":400}"#)
    );
    assert_eq!(
        raw.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
        [1_000, 2_000, 3_000]
    );
    // The seen-orders store is changelogged: one entry per id (the expiry
    // index is local and rebuilt on restore).
    let changelog = d.all_records("test-app-seen-orders-changelog");
    assert_eq!(changelog.len(), 3);
    assert!(
        changelog
            .iter()
            .all(|r| r.key.as_deref().is_some_and(|k| k.starts_with(b"d")))
    );
    assert!(d.dropped_records().is_empty());
}

#[test]
fn resent_orders_are_dropped_within_the_ttl_and_counted_again_after_it() {
    let ttl = Duration::from_secs(10);
    let mut d = order_driver(ttl, 1);
    pipe_order(&mut d, "o1", "c1", 100, 0);
    pipe_order(&mut d, "o1", "c1", 100, 5_000); // re-sent: dropped
    pipe_order(&mut d, "o2", "c1", 50, 6_000);
    pipe_order(&mut d, "o2", "c1", 50, 9_999); // re-sent: dropped
    pipe_order(&mut d, "o1", "c1", 100, 10_000); // 10 s after o1 was accepted: counted again
    pipe_order(&mut d, "o1", "c1", 100, 12_000); // within the new window: dropped
    assert_eq!(
        totals_out(&mut d),
        vec![
            total("c1", 1, 100),
            total("c1", 2, 150),
            total("c1", 3, 250)
        ]
    );
    assert_eq!(dropped(&d, "dedupe-orders", "duplicate"), 3);
    assert_eq!(
        d.key_value_store_get::<String, CustomerTotal>("customer-totals", &"c1".into())
            .unwrap(),
        Some(total("c1", 3, 250).1)
    );
    // Dropped duplicates never reach the repartition topic.
    assert_eq!(
        d.all_records("test-app-orders-by-customer-repartition")
            .len(),
        3
    );
}

#[test]
fn the_default_ttl_is_one_hour_of_stream_time() {
    let mut d = order_driver(DEFAULT_DEDUPE_TTL, 1);
    let hour = 3_600_000;
    pipe_order(&mut d, "o1", "c1", 100, 0);
    pipe_order(&mut d, "o1", "c1", 100, hour - 1); // dropped
    pipe_order(&mut d, "o1", "c1", 100, hour); // counted again
    assert_eq!(
        totals_out(&mut d),
        vec![total("c1", 1, 100), total("c1", 2, 200)]
    );
    assert_eq!(dropped(&d, "dedupe-orders", "duplicate"), 1);
}

#[test]
fn malformed_orders_go_to_the_dead_letter_topic_without_stopping_the_job() {
    let t = order_aggregation::topology("orders", "totals", DEFAULT_DEDUPE_TTL).unwrap();
    let dlq = ErrorPolicy::DeadLetter("totals-dlq".into());
    let mut d = TopologyTestDriver::builder(t)
        .commit_every(1)
        .deserialization_policy(dlq.clone())
        .processing_policy(dlq)
        .build()
        .unwrap();
    let oversize = format!(
        r#"{{"order_id":"o9","customer_id":"{}","amount_cents":1,"ts":0}}"#,
        "c".repeat(order_aggregation::MAX_ORDER_BYTES)
    );
    let bad: [&[u8]; 8] = [
        br#"{"order_id":"o1","customer_id":"c1","#, // truncated JSON
        br#"{"order_id":"o2","customer_id":"c1","amount_cents":"12","ts":0}"#, // wrong type
        br#"{"order_id":"o3","customer_id":"c1","amount_cents":12}"#, // missing ts
        b"\xff\xfe{\"order_id\":\"o4\"}",           // not UTF-8
        br#"["o5","c1",12,0]"#,                     // not an object
        b"",                                        // empty
        br#"{"order_id":"o6","customer_id":"c1","amount_cents":1.5,"ts":0}"#, // not an integer
        oversize.as_bytes(),
    ];
    for (i, value) in bad.iter().enumerate() {
        d.pipe_input("orders", Some(b"k"), Some(value), i as i64)
            .unwrap();
    }
    // A null value or a null key fails in the source's deserializer.
    d.pipe_input("orders", Some(b"k"), None, 8).unwrap();
    let good = order_json("o0", "c1", 5, 8);
    d.pipe_input("orders", None, Some(good.as_bytes()), 8)
        .unwrap();
    // Unknown fields are ignored; the job goes on with good orders.
    let extra = br#"{"order_id":"o7","customer_id":"c9","amount_cents":70,"ts":9,"coupon":"X"}"#;
    d.pipe_input("orders", Some(b"o7"), Some(extra), 9).unwrap();
    pipe_order(&mut d, "o8", "c9", 30, 10);
    assert_eq!(
        totals_out(&mut d),
        vec![total("c9", 1, 70), total("c9", 2, 100)]
    );
    let dead = d.read_output("totals-dlq");
    let mut expected_values: Vec<Option<Vec<u8>>> = bad.iter().map(|v| Some(v.to_vec())).collect();
    expected_values.push(None);
    expected_values.push(Some(good.into_bytes()));
    assert_eq!(
        dead.iter().map(|r| r.value.clone()).collect::<Vec<_>>(),
        expected_values
    );
    let header =
        |r: &TestRecord, h: &str| String::from_utf8_lossy(r.headers.get(h).expect(h)).to_string();
    let reasons: Vec<String> = dead
        .iter()
        .map(|r| header(r, dlq_headers::EXCEPTION))
        .collect();
    for (i, expect) in [
        "invalid order JSON: EOF",
        "invalid order JSON: invalid type: string \"12\", expected i64",
        "invalid order JSON: missing field `ts`",
        "the order is not UTF-8 text",
        "an order must be a JSON object",
        "an order must be a JSON object",
        "invalid order JSON: invalid type: floating point `1.5`, expected i64",
        "at most 65536 are accepted",
        "null",
        "null",
    ]
    .iter()
    .enumerate()
    {
        assert!(reasons[i].contains(expect), "record {i}: {}", reasons[i]);
    }
    for (i, r) in dead.iter().enumerate() {
        assert_eq!(header(r, dlq_headers::TOPIC), "orders");
        assert_eq!(header(r, dlq_headers::OFFSET), i.to_string());
    }
    assert_eq!(d.dead_lettered_records(), 10);
    assert_eq!(
        d.key_value_store_all::<String, CustomerTotal>("customer-totals")
            .unwrap(),
        vec![total("c9", 2, 100)]
    );
}

#[test]
fn order_totals_coalesce_per_commit_with_the_cache() {
    let mut d = order_driver(DEFAULT_DEDUPE_TTL, 4);
    pipe_order(&mut d, "o1", "c1", 10, 0);
    pipe_order(&mut d, "o2", "c2", 20, 1);
    pipe_order(&mut d, "o3", "c1", 30, 2);
    pipe_order(&mut d, "o1", "c1", 10, 3); // duplicate, within the same commit
    assert_eq!(
        totals_out(&mut d),
        vec![total("c1", 2, 40), total("c2", 1, 20)]
    );
    // The parsed order type round-trips through the repartition topic.
    let rep = d.all_records("test-app-orders-by-customer-repartition");
    let first: Order = serde_json::from_slice(rep[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(
        first,
        Order {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            amount_cents: 10,
            ts: 0
        }
    );
}

#[test]
fn a_hostile_amount_saturates_instead_of_panicking() {
    let mut d = order_driver(DEFAULT_DEDUPE_TTL, 1);
    pipe_order(&mut d, "o1", "c1", i64::MAX, 0);
    pipe_order(&mut d, "o2", "c1", 1, 1);
    let out = totals_out(&mut d);
    assert_eq!(out[1], total("c1", 2, i64::MAX));
}

/// An aggregate's output (the value twice) outgrows the producer's limit
/// while its changelog record still fits: the output is emitted by the
/// cache flush at commit, outside of processing an input record.
/// `log_and_continue` skips it and counts it; `log_and_fail` stops. (A
/// refused changelog record always stops the task: skipping it would make
/// the changelog disagree with the store.)
fn concat_driver(policy: ErrorPolicy) -> TopologyTestDriver {
    let b = StreamsBuilder::new();
    b.stream("in", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .aggregate(
            String::new,
            |_, v: String, acc: String| acc + &v,
            Materialized::as_("concat").with_value_serde(Serdes::string()),
        )
        .to_stream()
        .map_values(|v: String| v.repeat(2))
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    TopologyTestDriver::builder(b.build().unwrap())
        .commit_every(2)
        .max_message_bytes(12)
        .production_policy(policy)
        .build()
        .unwrap()
}

#[test]
fn oversize_records_from_a_cache_flush_go_through_the_production_handler() {
    let mut d = concat_driver(ErrorPolicy::LogAndContinue);
    for (i, v) in ["aa", "bb", "cc", "dd"].iter().enumerate() {
        d.pipe_str("in", Some("k"), v, i as i64).unwrap();
    }
    d.pipe_str("in", Some("j"), "x", 9).unwrap();
    d.pipe_str("in", Some("j"), "y", 10).unwrap();
    // Key plus value: "aabbaabb" fits in 12 bytes, "aabbccddaabbccdd" does not.
    assert_eq!(
        kv(&d.read_output("out")),
        vec![
            ("k".to_string(), "aabbaabb".to_string()),
            ("j".to_string(), "xyxy".to_string())
        ]
    );
    assert_eq!(d.production_errors(), 1);
    // The store and its changelog keep the full value: only the output was refused.
    assert_eq!(
        d.key_value_store_get::<String, String>("concat", &"k".to_string())
            .unwrap(),
        Some("aabbccdd".to_string())
    );

    let mut d = concat_driver(ErrorPolicy::LogAndFail);
    d.pipe_str("in", Some("k"), "aa", 0).unwrap();
    d.pipe_str("in", Some("k"), "bb", 1).unwrap();
    d.pipe_str("in", Some("k"), "cc", 2).unwrap();
    let err = d
        .pipe_str("in", Some("k"), "dd", 3)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot produce a record to 'out'") && err.contains("max_message_bytes (12)"),
        "{err}"
    );
}
