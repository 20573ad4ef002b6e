//! Windows and joins under exactly-once against the real broker, with the
//! example binaries killed with SIGKILL and restarted. Every check reads
//! the output `read_committed`.
//!
//! Sizes are configurable for a longer soak by hand, e.g.
//! `KSTREAMS_ENRICH_ORDERS=50000 KSTREAMS_ENRICH_KILLS=20 cargo test --test windows_crash`.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kstreams::apps::order_aggregation::Order;
use kstreams::apps::order_enrichment::{Customer, EnrichedOrder, enrich};
use kstreams::runtime::partitioner::partition_for_key;
use kstreams_testkit::{
    ConsumedRecord, Isolation, TestRecord, create_topic, partition_count, produce, read_to_end,
    shared_broker, unique_name,
};
use support::*;

/// The latest value per key of the records in `acc` (`None`: a tombstone).
fn latest_by_key(acc: &BTreeMap<(i32, i64), ConsumedRecord>) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    for r in acc.values() {
        if let Some(k) = r.key_str() {
            out.insert(k, r.value_str());
        }
    }
    out
}

/// Reads `topic` `read_committed` into `acc`, keyed by (partition,
/// offset), for progress checks while the jobs run (the results are read
/// once, after every job stopped).
fn accumulate(bs: &str, topic: &str, acc: &mut BTreeMap<(i32, i64), ConsumedRecord>) {
    if let Ok(records) = read_to_end(bs, topic, Isolation::ReadCommitted) {
        for r in records {
            acc.insert((r.partition, r.offset), r);
        }
    }
}

fn customer_json(c: &Customer) -> String {
    serde_json::to_string(c).unwrap()
}

/// A customer record, partitioned as Kafka's default partitioner does
/// (murmur2 of the key), like the join's repartition topic: otherwise a
/// customer and its orders would meet in different tasks.
fn customer_record(key: &str, value: Option<String>, partitions: usize) -> TestRecord {
    let r = match value {
        Some(v) => TestRecord::kv(key, v),
        None => TestRecord::tombstone(key),
    };
    r.with_partition(partition_for_key(key.as_bytes(), partitions))
}

#[test]
fn order_enrichment_survives_sigkill_with_exact_output() {
    let orders_n = size("KSTREAMS_ENRICH_ORDERS", 4_000);
    let kills = size("KSTREAMS_ENRICH_KILLS", 5);
    let bs = shared_broker().bootstrap_servers();
    let orders = unique_name("orders");
    let customers = unique_name("customers");
    let output = unique_name("enriched");
    let app = unique_name("enrich-app");
    create_topic(&bs, &orders, 4, false).unwrap();
    create_topic(&bs, &customers, 4, true).unwrap();
    create_topic(&bs, &output, 4, false).unwrap();
    create_topic(&bs, &format!("{output}-dlq"), 1, false).unwrap();

    // 40 customers; the even ones are updated once; c39 is deleted.
    let mut table: BTreeMap<String, Customer> = BTreeMap::new();
    let mut records = Vec::new();
    for i in 0..40 {
        let c = Customer {
            customer_id: format!("c{i:02}"),
            name: format!("Customer {i}"),
            tier: "silver".into(),
        };
        records.push(customer_record(&c.customer_id, Some(customer_json(&c)), 4));
        table.insert(c.customer_id.clone(), c);
    }
    for i in (0..40).step_by(2) {
        let c = Customer {
            customer_id: format!("c{i:02}"),
            name: format!("Customer {i} (renamed)"),
            tier: "gold".into(),
        };
        records.push(customer_record(&c.customer_id, Some(customer_json(&c)), 4));
        table.insert(c.customer_id.clone(), c);
    }
    records.push(customer_record("c39", None, 4));
    table.remove("c39");

    let work = work_dir("enrich-kill");
    let metrics: Vec<String> = (0..2).map(|_| metrics_addr()).collect();
    let jobs: Vec<Job> = (0..2)
        .map(|i| {
            let state = work.join(format!("state-{i}"));
            Job::new(
                "order_enrichment",
                &format!("enrich-{i}"),
                job_args(
                    &bs,
                    &app,
                    &orders,
                    &output,
                    &state,
                    &[
                        "--customers-topic",
                        &customers,
                        "--metrics-listen",
                        &metrics[i],
                    ],
                ),
                &work,
            )
        })
        .collect();
    let mut crew = Crew::new(jobs, metrics);
    crew.start_all();
    produce(&bs, &customers, &records).unwrap();
    // The join reads the table as of now: wait until the whole table is
    // committed (its changelog holds the final customers) before orders flow.
    let changelog = format!(
        "{app}-{}-changelog",
        kstreams::apps::order_enrichment::CUSTOMERS_STORE
    );
    let mut changelog_records = BTreeMap::new();
    wait_until(Duration::from_secs(120), "the customers table", || {
        if partition_count(&bs, &changelog).ok().flatten().is_none() {
            return false;
        }
        accumulate(&bs, &changelog, &mut changelog_records);
        let latest = latest_by_key(&changelog_records);
        table
            .iter()
            .all(|(k, c)| latest.get(k).cloned().flatten() == Some(customer_json(c)))
            && latest.get("c39").cloned().flatten().is_none()
    });

    // Orders for c00..c41: c39 was deleted, c40 and c41 never existed.
    let mut rng = Rng(4242);
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut order_records = Vec::new();
    for i in 0..orders_n {
        let o = Order {
            order_id: format!("o{i}"),
            customer_id: format!("c{:02}", rng.below(42)),
            amount_cents: 100 + rng.below(10_000) as i64,
            ts: 1_700_000_000_000 + i as i64,
        };
        let e: EnrichedOrder = enrich(&o, table.get(&o.customer_id));
        expected.insert(o.order_id.clone(), serde_json::to_string(&e).unwrap());
        order_records.push(TestRecord::kv(
            &o.order_id,
            serde_json::to_string(&o).unwrap(),
        ));
    }
    let producer = produce_paced(&bs, &orders, order_records, 25);
    crew.kill_rounds(kills, 99, KillPacing::default());
    producer.join().unwrap();

    // Everything consumed, every job stopped: only then read the output, once.
    crew.wait_drained(&bs, &app, &[&orders, &customers]);
    crew.stop_all();
    wait_no_open_transactions(&bs, &output);
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in read_to_end(&bs, &output, Isolation::ReadCommitted).expect("read output") {
        got.entry(r.key_str().unwrap_or_default())
            .or_default()
            .push(r.value_str().unwrap_or_default());
    }
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(id, want)| got.get(*id).is_none_or(|v| v.len() != 1 || v[0] != **want))
        .take(3)
        .map(|(id, want)| format!("{id}: want [{want}], got {:?}", got.get(id)))
        .collect();
    assert!(
        wrong.is_empty() && got.len() == expected.len(),
        "exactly one enriched record per order, with the final customer; {} keys \
         for {} orders; e.g. {wrong:?}",
        got.len(),
        expected.len()
    );
    crew.assert_kills_hit();
}

#[test]
fn per_minute_revenue_is_exact_and_each_window_emitted_once_despite_sigkill() {
    use kstreams::apps::order_aggregation::per_minute::CustomerMinute;
    let orders_n = size("KSTREAMS_MINUTE_ORDERS", 3_000);
    let kills = size("KSTREAMS_MINUTE_KILLS", 4);
    let bs = shared_broker().bootstrap_servers();
    let input = unique_name("orders");
    let output = unique_name("totals");
    let per_minute = format!("{output}-per-minute");
    let app = unique_name("minute-app");
    // Two input partitions, but every order goes to partition 0: one task
    // writes the repartition topic, so each of its two partitions carries
    // orders in production order (windows over a repartition otherwise
    // depend on how fast each upstream task runs).
    create_topic(&bs, &input, 2, false).unwrap();
    create_topic(&bs, &output, 2, false).unwrap();
    create_topic(&bs, &per_minute, 2, false).unwrap();
    create_topic(&bs, &format!("{output}-dlq"), 1, false).unwrap();

    // Event times start now: the broker deletes log segments whose records
    // are older than retention.ms (7 days by default), so orders stamped in
    // the past could vanish from the repartition and output topics.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let base = now_ms / 60_000 * 60_000;
    let mut rng = Rng(2024);
    // (customer, window start) -> (orders, revenue)
    let mut expected: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
    let mut records = Vec::new();
    let mut resend = Vec::new();
    let mut last_ts = base;
    for i in 0..orders_n {
        let customer = format!("c{:02}", rng.below(20));
        let amount = 100 + rng.below(10_000) as i64;
        // 200 ms apart, up to 5 s out of order: always within the 10 s grace.
        let ts = base + i as i64 * 200 - rng.below(5_000) as i64;
        last_ts = last_ts.max(ts);
        let order_id = format!("o{i}");
        let json = format!(
            r#"{{"order_id":"{order_id}","customer_id":"{customer}","amount_cents":{amount},"ts":{ts}}}"#
        );
        let e = expected
            .entry((customer, ts.div_euclid(60_000) * 60_000))
            .or_default();
        e.0 += 1;
        e.1 += amount;
        let rec = TestRecord::kv(&order_id, &json)
            .with_partition(0)
            .with_timestamp(ts);
        if rng.below(20) == 0 {
            resend.push(rec.clone());
        }
        records.push(rec);
        if !resend.is_empty() && rng.below(4) == 0 {
            records.push(resend.remove(0)); // re-sent shortly after: deduplicated
        }
    }
    records.append(&mut resend);
    // Closing orders, 2 minutes later, for a customer on each repartition
    // partition, so that every real window closes in every task.
    let mut closers = Vec::new();
    for p in 0..2 {
        let customer = (0..)
            .map(|n| format!("closer-{n}"))
            .find(|c| partition_for_key(c.as_bytes(), 2) == p)
            .unwrap();
        let ts = last_ts + 120_000;
        let json = format!(
            r#"{{"order_id":"{customer}","customer_id":"{customer}","amount_cents":1,"ts":{ts}}}"#
        );
        closers.push(
            TestRecord::kv(&customer, json)
                .with_partition(0)
                .with_timestamp(ts),
        );
    }

    let work = work_dir("minute-kill");
    let metrics: Vec<String> = (0..2).map(|_| metrics_addr()).collect();
    let jobs: Vec<Job> = (0..2)
        .map(|i| {
            let state = work.join(format!("state-{i}"));
            Job::new(
                "order_aggregation",
                &format!("minute-{i}"),
                job_args(
                    &bs,
                    &app,
                    &input,
                    &output,
                    &state,
                    &["--per-minute", "true", "--metrics-listen", &metrics[i]],
                ),
                &work,
            )
        })
        .collect();
    let mut crew = Crew::new(jobs, metrics);
    crew.start_all();
    let producer = produce_paced(&bs, &input, records, 25);
    crew.kill_rounds(kills, 7, KillPacing::default());
    producer.join().unwrap();
    // Once windows are being emitted (a progress check, not a result),
    // lose one instance's state entirely: its window and suppress stores
    // come back from their changelogs (open windows, buffered results, the
    // operators' stream time), then the closing orders make every
    // remaining window final.
    let mut progress = BTreeMap::new();
    wait_until(Duration::from_secs(240), "the first final windows", || {
        accumulate(&bs, &per_minute, &mut progress);
        progress.len() >= 20
    });
    let wipe = crew.kill9_owner(0);
    std::fs::remove_dir_all(work.join("state-0")).unwrap();
    crew.start(0);
    produce(&bs, &input, &closers).expect("produce");

    // Everything consumed, every job stopped: only then read the output, once.
    crew.wait_drained(&bs, &app, &[&input]);
    crew.stop_all();
    wait_no_open_transactions(&bs, &per_minute);
    let emitted = read_to_end(&bs, &per_minute, Isolation::ReadCommitted).expect("read output");
    // (customer, window start) -> every emission: (orders, revenue, window end)
    type Emitted = BTreeMap<(String, i64), Vec<(u64, i64, i64)>>;
    let mut got = Emitted::new();
    for r in &emitted {
        let m: CustomerMinute =
            serde_json::from_str(&r.value_str().unwrap_or_default()).expect("per-minute JSON");
        assert_eq!(r.key_str().as_deref(), Some(m.customer_id.as_str()));
        got.entry((m.customer_id, m.window_start))
            .or_default()
            .push((m.orders, m.revenue_cents, m.window_end));
    }
    let dups: Vec<_> = got.iter().filter(|(_, v)| v.len() > 1).take(3).collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(3)
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "windows emitted; duplicates {dups:?}, missing {missing:?}, unexpected {extra:?}"
    );
    for (key, (orders, revenue)) in &expected {
        assert_eq!(
            got.get(key),
            Some(&vec![(*orders, *revenue, key.1 + 60_000)]),
            "{key:?}: exactly one final result, exact"
        );
    }
    crew.assert_kills_hit();
    // The wiped instance's next run rebuilt its stores from the changelogs.
    let rebuilt = restored_records(&log_lines(&crew.jobs[0])[wipe.marks[0]..]);
    assert!(
        rebuilt > 0,
        "minute-0 restored nothing after its state was deleted (it owned {:?})",
        wipe.tasks
    );
    eprintln!("minute-0 restored {rebuilt} changelog records after its state was deleted");
}
