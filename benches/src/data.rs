//! Input generators (deterministic) and a fast bulk loader.
//!
//! - Word count: lines of 1..=15 words drawn from a synthetic vocabulary with
//!   a Zipf (s = 1) distribution, some words capitalised, separated by spaces,
//!   commas or full stops; the expected final counts are computed on the way.
//! - Orders: JSON orders keyed by order id, `customers` customers, 5% re-sent
//!   later, 1 in 500 records malformed (as in tests/crash.rs); the expected
//!   per-customer `(orders, total_cents)` is computed on the way.
//! - Unique lines: one distinct word per line, to build N keys of state.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Deterministic xorshift64 (failures and runs reproduce).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwxyz";
const VOWELS: &[u8] = b"aeiou";

/// Word `i` of the vocabulary: bijective base-100 over two-letter syllables,
/// so frequent (low-rank) words are short and all words are distinct.
fn vocab_word(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        let syl = i % 100;
        s.push(CONSONANTS[syl / 5]);
        s.push(VOWELS[syl % 5]);
        if i < 100 {
            break;
        }
        i = i / 100 - 1;
    }
    String::from_utf8(s).expect("ascii")
}

/// A Zipf-distributed vocabulary.
pub struct Vocabulary {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Vocabulary {
    pub fn new(size: usize) -> Vocabulary {
        let words: Vec<String> = (0..size.max(1)).map(vocab_word).collect();
        let mut cdf = Vec::with_capacity(words.len());
        let mut acc = 0.0;
        for r in 0..words.len() {
            acc += 1.0 / (r as f64 + 1.0);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Vocabulary { words, cdf }
    }

    fn sample(&self, rng: &mut Rng) -> &str {
        let u = rng.unit();
        let i = self
            .cdf
            .partition_point(|c| *c < u)
            .min(self.words.len() - 1);
        &self.words[i]
    }

    /// One line, and its words (lowercase) added to `expected`.
    pub fn line(&self, rng: &mut Rng, expected: &mut HashMap<String, u64>) -> String {
        let n = 1 + rng.below(15) as usize;
        let mut line = String::with_capacity(n * 7);
        for k in 0..n {
            if k > 0 {
                line.push_str(match rng.below(10) {
                    0 => ", ",
                    1 => ". ",
                    _ => " ",
                });
            }
            let w = self.sample(rng);
            match expected.get_mut(w) {
                Some(c) => *c += 1,
                None => {
                    expected.insert(w.to_string(), 1);
                }
            }
            if rng.below(10) == 0 {
                line.push_str(&w[..1].to_ascii_uppercase());
                line.push_str(&w[1..]);
            } else {
                line.push_str(w);
            }
        }
        line
    }
}

/// Final totals per customer: (distinct orders, sum of amounts).
pub type OrderTotals = HashMap<String, (u64, i64)>;

/// Generates `n` orders for `customers` customers with 5% re-sends and a few
/// malformed records; calls `emit(key, value)` for each record to send.
/// Returns the expected totals.
pub fn orders(
    n: usize,
    customers: u64,
    seed: u64,
    mut emit: impl FnMut(&[u8], &[u8]),
) -> OrderTotals {
    let mut rng = Rng(seed);
    let mut expected = OrderTotals::new();
    let mut resend: std::collections::VecDeque<(String, String)> = Default::default();
    for i in 0..n {
        let customer = format!("c{}", rng.below(customers));
        let amount = 100 + rng.below(10_000) as i64;
        let order_id = format!("o{i}");
        let json = format!(
            r#"{{"order_id":"{order_id}","customer_id":"{customer}","amount_cents":{amount},"ts":{}}}"#,
            1_700_000_000_000i64 + i as i64
        );
        let e = expected.entry(customer).or_default();
        e.0 += 1;
        e.1 += amount;
        emit(order_id.as_bytes(), json.as_bytes());
        if rng.below(20) == 0 {
            resend.push_back((order_id, json));
        }
        if rng.below(10) == 0
            && let Some((k, v)) = resend.pop_front()
        {
            emit(k.as_bytes(), v.as_bytes());
        }
        if rng.below(500) == 0 {
            emit(format!("bad{i}").as_bytes(), b"{not json");
        }
    }
    for (k, v) in resend {
        emit(k.as_bytes(), v.as_bytes());
    }
    expected
}

/// The `i`-th unique word (state-size cases): `u` + base 36.
pub fn unique_word(mut i: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = vec![b'u'];
    let start = s.len();
    loop {
        s.push(DIGITS[(i % 36) as usize]);
        i /= 36;
        if i == 0 {
            break;
        }
    }
    s[start..].reverse();
    String::from_utf8(s).expect("ascii")
}

/// A high-throughput (non-transactional) producer for pre-loading topics.
pub struct Loader {
    producer: BaseProducer,
    topic: String,
    pub sent: u64,
}

impl Loader {
    pub fn new(bootstrap: &str, topic: &str, linger_ms: u32) -> Result<Loader, String> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", linger_ms.to_string())
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .create()
            .map_err(|e| format!("creating a producer: {e}"))?;
        Ok(Loader {
            producer,
            topic: topic.to_string(),
            sent: 0,
        })
    }

    /// Sends one record (key optional), waiting while the local queue is full.
    pub fn send(&mut self, key: Option<&[u8]>, value: &[u8]) -> Result<(), String> {
        loop {
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).payload(value);
            if let Some(k) = key {
                rec = rec.key(k);
            }
            match self.producer.send(rec) {
                Ok(()) => {
                    self.sent += 1;
                    if self.sent.is_multiple_of(10_000) {
                        self.producer.poll(Duration::ZERO);
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("producing to {}: {e}", self.topic)),
            }
        }
    }

    /// Serves delivery callbacks without blocking.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until everything sent is acknowledged.
    pub fn flush(&self) -> Result<(), String> {
        self.producer
            .flush(Duration::from_secs(300))
            .map_err(|e| format!("flushing to {}: {e}", self.topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_words_are_distinct() {
        let v = Vocabulary::new(20_000);
        let set: std::collections::HashSet<&String> = v.words.iter().collect();
        assert_eq!(set.len(), 20_000);
    }

    #[test]
    fn unique_words_are_distinct() {
        let set: std::collections::HashSet<String> = (0..5000).map(unique_word).collect();
        assert_eq!(set.len(), 5000);
    }
}
