//! A broker outage mid-run: the broker stops for a while and comes back with
//! its data. The job keeps running (or re-joins) and the final counts are
//! exact, read `read_committed`. Uses its own broker, since it restarts it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use kstreams_testkit::{BrokerOptions, KafkaBroker, TestRecord, create_topic, produce};
use support::*;

fn lines(n: usize, offset: usize) -> (Vec<TestRecord>, HashMap<String, u64>) {
    let words = ["kafka", "stream", "state", "store", "commit", "offset"];
    let mut expected = HashMap::new();
    let recs = (0..n)
        .map(|i| {
            let a = words[(i + offset) % words.len()];
            let b = words[(i * 7 + offset) % words.len()];
            *expected.entry(a.to_string()).or_insert(0u64) += 1;
            *expected.entry(b.to_string()).or_insert(0u64) += 1;
            TestRecord::kv(format!("{offset}-{i}"), format!("{a} {b}"))
        })
        .collect();
    (recs, expected)
}

#[test]
fn word_count_survives_a_broker_outage_with_exact_counts() {
    let outage = Duration::from_secs(size("KSTREAMS_OUTAGE_SECS", 30) as u64);
    let work = work_dir("outage");
    let broker =
        KafkaBroker::start(BrokerOptions::default().with_data_dir(work.join("broker-data")))
            .expect("broker");
    let bs = broker.bootstrap_servers();
    create_topic(&bs, "lines", 3, false).unwrap();
    create_topic(&bs, "counts", 3, false).unwrap();
    let mut job = Job::new(
        "word_count",
        "outage-wc",
        job_args(
            &bs,
            "outage-app",
            "lines",
            "counts",
            &work.join("state"),
            &[],
        ),
        &work,
    );
    job.start();
    let (first, mut expected) = lines(3000, 0);
    produce(&bs, "lines", &first).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    broker.stop().expect("stop broker");
    std::thread::sleep(outage);
    assert!(
        job.is_running(),
        "the job died during the outage:\n{}",
        job.log_tail(40)
    );
    broker.restart().expect("restart broker");
    let (second, more) = lines(3000, 1);
    produce(&bs, "lines", &second).unwrap();
    for (k, v) in more {
        *expected.entry(k).or_default() += v;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let got = values_by_key(&bs, "counts");
        let exact = expected
            .iter()
            .all(|(w, n)| got.get(w).and_then(|v| v.last()) == Some(&n.to_string()));
        if exact {
            for (w, n) in &expected {
                let seq: Vec<u64> = got[w].iter().map(|v| v.parse().unwrap()).collect();
                assert!(seq.windows(2).all(|p| p[0] < p[1]), "{w}: {seq:?}");
                assert!(seq.iter().all(|v| v <= n), "{w}: {seq:?}");
            }
            break;
        }
        assert!(
            job.is_running(),
            "the job died after the outage:\n{}",
            job.log_tail(40)
        );
        assert!(
            std::time::Instant::now() < deadline,
            "counts not exact after the outage: {got:?}\n{}",
            job.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let st = job.terminate(Duration::from_secs(60)).expect("exit");
    assert!(st.success(), "{}", job.log_tail(20));
}
