//! Word count as the crash and rebalance tests run it: input lines with
//! known counts, a cluster of `word_count` jobs serving /metrics, paced
//! input, and the exactness check made after every job stopped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kstreams_testkit::{TestRecord, create_topic, produce, shared_broker, unique_name};

use super::*;

pub const VOCAB: &[&str] = &[
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
    "Ünïcode",
    "straße",
    "東京",
    "42",
];

/// Lines with 1..8 words drawn from VOCAB, mixed case and punctuation.
pub fn make_lines(n: usize, seed: u64) -> (Vec<String>, HashMap<String, u64>) {
    let mut rng = Rng(seed);
    let mut expected: HashMap<String, u64> = HashMap::new();
    let lines = (0..n)
        .map(|_| {
            let k = 1 + rng.below(8) as usize;
            let mut parts = Vec::new();
            for _ in 0..k {
                let w = VOCAB[rng.below(VOCAB.len() as u64) as usize];
                // Upper-casing is not always reversible ("straße" → "STRASSE" → "strasse"),
                // so count what is actually sent.
                let token = if rng.below(3) == 0 {
                    w.to_uppercase()
                } else {
                    w.to_string()
                };
                *expected.entry(token.to_lowercase()).or_default() += 1;
                parts.push(token);
            }
            parts.join(if rng.below(2) == 0 { " " } else { ", " })
        })
        .collect();
    (lines, expected)
}

pub struct Cluster {
    pub crew: Crew,
    pub dirs: Vec<std::path::PathBuf>,
    /// Last, so it is dropped after the jobs that write into it.
    pub _work: WorkDir,
}

/// `instances` word_count jobs, each serving /metrics; `extra(i)` are
/// instance `i`'s further arguments.
pub fn word_count_cluster(
    name: &str,
    instances: usize,
    bs: &str,
    app: &str,
    input: &str,
    output: &str,
    extra: impl Fn(usize) -> Vec<&'static str>,
) -> Cluster {
    let work = work_dir(name);
    let mut jobs = Vec::new();
    let mut metrics = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..instances {
        let state = work.join(format!("state-{i}"));
        let addr = metrics_addr();
        let mut args: Vec<&str> = vec!["--metrics-listen", &addr];
        args.extend(extra(i));
        jobs.push(Job::new(
            "word_count",
            &format!("{name}-{i}"),
            job_args(bs, app, input, output, &state, &args),
            &work,
        ));
        metrics.push(addr);
        dirs.push(state);
    }
    Cluster {
        crew: Crew::new(jobs, metrics),
        dirs,
        _work: work,
    }
}

/// Produces `lines` in batches from a background thread, slowly enough that
/// instance failures happen mid-stream.
pub fn produce_in_background(
    bs: String,
    topic: String,
    lines: Vec<String>,
    batch: usize,
    pause: Duration,
) -> (std::thread::JoinHandle<()>, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let h = std::thread::spawn(move || {
        for (bi, chunk) in lines.chunks(batch).enumerate() {
            let recs: Vec<TestRecord> = chunk
                .iter()
                .enumerate()
                .map(|(i, l)| TestRecord::kv(format!("{bi}-{i}"), l.as_bytes()))
                .collect();
            produce(&bs, &topic, &recs).expect("produce");
            std::thread::sleep(pause);
        }
        d.store(true, Ordering::SeqCst);
    });
    (h, done)
}

/// Waits until the live jobs consumed all of `input`, stops them all, and
/// only then reads `output` once (read_committed) and checks the counts.
pub fn drain_stop_and_assert_counts(
    c: &mut Cluster,
    bs: &str,
    app: &str,
    input: &str,
    output: &str,
    expected: &HashMap<String, u64>,
    exactly_once: bool,
) {
    c.crew.wait_drained(bs, app, &[input]);
    c.crew.stop_all();
    wait_no_open_transactions(bs, output);
    let got = values_by_key(bs, output);
    let mut wrong: Vec<String> = Vec::new();
    for (w, n) in expected {
        let values: Vec<u64> = got
            .get(w)
            .map(|v| v.iter().map(|v| v.parse().unwrap()).collect())
            .unwrap_or_default();
        let last = values.last().copied();
        let ok = if exactly_once {
            // Exact, and no count twice: every committed update is a new count.
            last == Some(*n) && values.windows(2).all(|p| p[0] < p[1])
        } else {
            last.is_some_and(|l| l >= *n)
        };
        if !ok {
            wrong.push(format!("{w}: want {n}, committed {values:?}"));
        }
    }
    let unexpected: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        wrong.is_empty() && unexpected.is_empty(),
        "counts after every job stopped ({}): {wrong:?}; unexpected words {unexpected:?}",
        if exactly_once {
            "exact and strictly increasing"
        } else {
            "at least the true count"
        }
    );
}

pub fn setup_topics(partitions: i32) -> (String, String, String, String) {
    let bs = shared_broker().bootstrap_servers();
    let input = unique_name("lines");
    let output = unique_name("counts");
    create_topic(&bs, &input, partitions, false).unwrap();
    create_topic(&bs, &output, partitions, false).unwrap();
    (bs, input, output, unique_name("wc"))
}
