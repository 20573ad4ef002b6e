//! Throughput of the word-count topology in the test driver: no broker, so
//! this measures the DSL operators, serdes, the record cache and the
//! RocksDB-backed stores alone.
//!
//! ```text
//! cargo run --release --example bench_driver_word_count -- --lines 1000000
//! ```
//!
//! Input: `--lines` lines of ~7 words each, drawn from a vocabulary of
//! `--vocab` (50 000) generated words with a Zipf-like (1/rank) frequency,
//! by a deterministic PRNG. The driver commits every 10 000 lines (the
//! cache coalesces counts between commits). Reported: lines/s and counted
//! words/s (store updates), plus a phase breakdown.

use std::time::Instant;

use kstreams::apps::word_count;
use kstreams::prelude::*;

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn vocabulary(n: usize, rng: &mut Rng) -> Vec<String> {
    const SYLLABLES: &[&str] = &[
        "ka", "fe", "stre", "am", "ro", "ck", "sto", "re", "lo", "g", "par", "ti", "on", "tra",
        "ns", "ac", "ex", "ac", "tly", "on", "ce", "wo", "rd", "co", "un", "t",
    ];
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(n);
    while words.len() < n {
        let len = 1 + (rng.next() % 4) as usize;
        let w: String = (0..len)
            .map(|_| SYLLABLES[(rng.next() % SYLLABLES.len() as u64) as usize])
            .collect();
        let w = if seen.contains(&w) {
            format!("{w}{}", words.len())
        } else {
            w
        };
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn main() -> Result<()> {
    let lines_n = arg("--lines", 1_000_000);
    let vocab_n = arg("--vocab", 50_000);
    let commit_every = arg("--commit-every", 10_000);

    let t0 = Instant::now();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let vocab = vocabulary(vocab_n, &mut rng);
    let ln_n = (vocab_n as f64).ln();
    let mut lines = Vec::with_capacity(lines_n);
    let mut total_words = 0u64;
    for _ in 0..lines_n {
        let n = 4 + (rng.next() % 7) as usize; // 4..=10, mean 7
        let mut line = String::with_capacity(n * 8);
        for j in 0..n {
            // Log-uniform rank: P(rank) ~ 1/rank (Zipf, s = 1).
            let rank = ((rng.unit() * ln_n).exp() as usize).clamp(1, vocab_n) - 1;
            if j > 0 {
                line.push_str(if (rng.next() & 7) == 0 { ", " } else { " " });
            }
            line.push_str(&vocab[rank]);
        }
        total_words += n as u64;
        lines.push(line);
    }
    println!(
        "generated {lines_n} lines, {total_words} words, vocabulary {vocab_n} in {:.2}s",
        t0.elapsed().as_secs_f64()
    );

    // Phase 1: splitting alone (the flat_map_values closure).
    let t = Instant::now();
    let split: usize = lines.iter().map(|l| word_count::words(l).len()).sum();
    let split_s = t.elapsed().as_secs_f64();
    assert_eq!(split as u64, total_words);

    // Phase 2: the whole topology through the driver (RocksDB store). The
    // driver is told never to commit on its own; we commit every
    // `commit_every` lines, exactly as `commit_every(n)` would, to time
    // processing and commits apart.
    let topology = word_count::topology("lines", "word-counts")?;
    let mut driver = TopologyTestDriver::builder(topology)
        .commit_every(usize::MAX)
        .build()?;
    let (mut process_s, mut commit_s) = (0.0, 0.0);
    for (c, chunk) in lines.chunks(commit_every).enumerate() {
        let t = Instant::now();
        for (i, line) in chunk.iter().enumerate() {
            let ts = (c * commit_every + i) as i64;
            driver.pipe_input("lines", None, Some(line.as_bytes()), ts)?;
        }
        let t2 = Instant::now();
        driver.commit()?;
        process_s += (t2 - t).as_secs_f64();
        commit_s += t2.elapsed().as_secs_f64();
    }
    let run_s = process_s + commit_s;

    let store = driver.key_value_store_all::<String, u64>(word_count::COUNTS_STORE)?;
    let counted: u64 = store.iter().map(|(_, n)| n).sum();
    assert_eq!(counted, total_words, "every word counted exactly once");
    let outputs = driver.all_records("word-counts").len();
    let changelog = driver.all_records("test-app-counts-changelog").len();

    println!(
        "driver: {lines_n} lines in {run_s:.2}s = {:.0} lines/s, {:.0} counted words/s",
        lines_n as f64 / run_s,
        total_words as f64 / run_s
    );
    let per_word = |secs: f64| secs * 1e9 / total_words as f64;
    println!(
        "phases, ns per word: processing {:.0} (of which splitting lines {:.0}), \
         commits {:.0} (cache flush to the output, changelog, RocksDB write)",
        per_word(process_s),
        per_word(split_s),
        per_word(commit_s),
    );
    println!(
        "{} distinct words; {outputs} output records and {changelog} changelog records \
         ({:.1} words per output record: the cache's coalescing)",
        store.len(),
        total_words as f64 / outputs.max(1) as f64
    );
    Ok(())
}
