//! Word count: the "hello world" of stream processing, and the topology the
//! crash tests and benchmarks run.
//!
//! ```text
//! lines (value: UTF-8 text; key ignored)
//!   → flat_map: lowercase, split on every non-alphanumeric char, drop empty
//!               words; one record (key: word, value: ()) per word
//!   → group_by_key
//!   → combine: partial counts per word between commits (node counts-combine)
//!               → repartition topic <app>-counts-repartition (key: word,
//!                 value: partial count, u64 big-endian)
//!   → count into store `counts` (adds the partials; changelog
//!                                <app>-counts-changelog; record cache)
//!   → to_stream → output topic  (key: word, value: count as decimal text)
//! ```
//!
//! Why `flat_map` to `(word, ())` rather than the textbook
//! `flat_map_values(..).group_by(|_, word| word.clone(), ..)`: the count
//! needs only the key, so the stream carries the word once, as key, with no
//! value to clone. Since `count()` pre-aggregates before its repartition
//! topic (see `kstreams_operators` `combine.rs`), each task sends one record
//! per distinct word and commit interval, not one per word: with a Zipf-like
//! vocabulary most words of a commit interval are repeats.
//!
//! A line that is not valid UTF-8 cannot be deserialized by the source; the
//! task's deserialization policy (`log_and_continue` by default) skips and
//! counts it, so it does not stop the job.
//!
//! With the record cache on (the default), the output carries the latest
//! count of each word per commit interval, not every increment; the last
//! record of each word is always its exact total.

use kstreams_operators::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use kstreams_runtime::{Result, Serdes, Topology};

/// The name of the count store (and so of its changelog and of the
/// repartition topic, `<application.id>-counts-repartition`).
///
/// ```
/// assert_eq!(kstreams::apps::word_count::COUNTS_STORE, "counts");
/// ```
pub const COUNTS_STORE: &str = "counts";

/// The words of `line`: lowercased, split on every character that is not
/// alphanumeric (Unicode `char::is_alphanumeric`), empty words dropped.
///
/// ```
/// use kstreams::apps::word_count::words;
/// assert_eq!(words("Hello, hello WORLD!"), ["hello", "hello", "world"]);
/// assert_eq!(words("Größe straße--ÉTÉ 42"), ["größe", "straße", "été", "42"]);
/// assert!(words(" ... ").is_empty());
/// ```
pub fn words(line: &str) -> Vec<String> {
    if line.is_ascii() {
        // Same result, without lowercasing the whole line first: for ASCII,
        // `is_alphanumeric` is `is_ascii_alphanumeric`, and lowercasing
        // works byte by byte.
        return line
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    line.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The word-count topology: reads lines from `input_topic`, writes
/// `(word, count)` to `output_topic`.
///
/// ```
/// use kstreams::runtime::{Serdes, TopologyTestDriver};
/// let t = kstreams::apps::word_count::topology("lines", "counts").unwrap();
/// let mut d = TopologyTestDriver::new(t).unwrap();
/// d.pipe_str("lines", None, "a rose is a rose", 0).unwrap();
/// let out = d.read_output_as("counts", &Serdes::string(), &Serdes::u64_text()).unwrap();
/// // One commit per piped line: the cache sends each word's latest count,
/// // in the order of the words' first appearance.
/// let expected = [("a", 2), ("rose", 2), ("is", 1)].map(|(w, n)| (w.to_string(), n));
/// assert_eq!(out, expected);
/// ```
pub fn topology(input_topic: &str, output_topic: &str) -> Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream(
            input_topic,
            Consumed::with(Serdes::unit(), Serdes::string()),
        )
        .flat_map(|_, line: String| words(&line).into_iter().map(|word| (word, ())))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::unit()))
        .count(Materialized::as_(COUNTS_STORE))
        .to_stream()
        .to(
            output_topic,
            Produced::with(Serdes::string(), Serdes::u64_text()),
        );
    builder.build()
}
