//! The README's demo: word count end to end on a real, local Kafka broker.
//!
//! It starts an Apache Kafka broker (KRaft, 127.0.0.1, a free port), creates
//! the topics, feeds `examples/data/sample.txt` repeated `--repeat` times,
//! runs the word-count topology exactly-once until the input is consumed,
//! prints the top words read back `read_committed`, checks them against
//! counts computed here, and stops the broker.
//!
//! ```text
//! cargo run --release --example demo_word_count -- --repeat 500
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use kstreams::runtime::{KafkaStreams, StreamsConfig};
use kstreams_testkit::{
    BrokerOptions, Isolation, KafkaBroker, TestRecord, committed_offsets, create_topic, produce,
    read_to_end,
};

#[derive(Parser)]
struct Cli {
    /// How many times to feed the sample text.
    #[arg(long, default_value_t = 500)]
    repeat: usize,
    /// Partitions of the input and output topics.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// How many top words to print.
    #[arg(long, default_value_t = 15)]
    top: usize,
}

const SAMPLE: &str = include_str!("data/sample.txt");

fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

/// A progress bar on stderr, only when stderr is a terminal.
fn progress_bar(len: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{bar:30}] {human_pos}/{human_len} {msg}",
    )
    .ok()?
    .progress_chars("=> ");
    Some(indicatif::ProgressBar::new(len).with_style(style))
}

/// Each word's last committed count in the output topic.
fn latest_counts(bootstrap: &str) -> Result<HashMap<String, u64>, Box<dyn std::error::Error>> {
    let mut latest = HashMap::new();
    for r in read_to_end(bootstrap, "word-counts", Isolation::ReadCommitted)? {
        if let (Some(k), Some(v)) = (r.key_str(), r.value_str()) {
            latest.insert(k, v.parse()?);
        }
    }
    Ok(latest)
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,rdkafka::client=off".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<bool, Box<dyn std::error::Error>> {
    eprintln!("starting a local Apache Kafka broker (KRaft)...");
    let broker = KafkaBroker::start(BrokerOptions::default())?;
    let bootstrap = broker.bootstrap_servers();
    eprintln!(
        "broker up at {bootstrap} (log: {})",
        broker.log_path().display()
    );
    create_topic(&bootstrap, "lines", cli.partitions, false)?;
    create_topic(&bootstrap, "word-counts", cli.partitions, false)?;

    let lines: Vec<&str> = SAMPLE.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut records = Vec::with_capacity(lines.len() * cli.repeat);
    for i in 0..cli.repeat {
        for (j, line) in lines.iter().enumerate() {
            for w in words(line) {
                *expected.entry(w).or_default() += 1;
            }
            records.push(TestRecord::kv(format!("{i}-{j}"), *line));
        }
    }
    produce(&bootstrap, "lines", &records)?;
    eprintln!("produced {} lines", records.len());

    let state_dir = std::env::temp_dir().join(format!("kstreams-demo-{}", std::process::id()));
    let config = StreamsConfig::builder("demo-word-count", &bootstrap)
        .set("processing.guarantee", "exactly_once")
        .set("state.dir", &state_dir.display().to_string())
        .build()?;
    let topology = kstreams::apps::word_count::topology("lines", "word-counts")?;
    println!("{}", topology.describe());
    let mut streams = KafkaStreams::new(topology, config)?;
    let started = Instant::now();
    streams.start()?;
    // Done when the group has committed the end of the input and the
    // committed output holds every word's final count (the counts pass a
    // repartition topic, so input offsets alone are not enough).
    let deadline = Instant::now() + Duration::from_secs(300);
    let bar = progress_bar(records.len() as u64);
    let metrics = streams.metrics_handle();
    loop {
        // A busy broker may answer an offset fetch with a retriable error
        // (e.g. NotCoordinator while the group settles): just ask again.
        let total: i64 = committed_offsets(&bootstrap, "demo-word-count", "lines")
            .map(|offsets| offsets.values().sum())
            .unwrap_or(0);
        if let Some(bar) = &bar {
            let m = metrics.snapshot();
            bar.set_position(total.max(0) as u64);
            bar.set_message(format!(
                "lines committed; {} records processed, {} commits",
                m.records_processed, m.commits
            ));
        }
        if total >= records.len() as i64
            && latest_counts(&bootstrap).is_ok_and(|latest| latest == expected)
        {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "timed out after 300 s: {total} of {} lines committed",
                records.len()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed();
    streams.close()?;
    let _ = std::fs::remove_dir_all(&state_dir);

    let output = read_to_end(&bootstrap, "word-counts", Isolation::ReadCommitted)?;
    let latest = latest_counts(&bootstrap)?;
    let mut top: Vec<(&String, &u64)> = latest.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("top {} words (read_committed from 'word-counts'):", cli.top);
    for (w, c) in top.iter().take(cli.top) {
        println!("{c:>8}  {w}");
    }
    let exact = latest == expected;
    println!(
        "{} lines in {:.1}s; {} distinct words; {} output records; counts exact: {}",
        records.len(),
        elapsed.as_secs_f64(),
        latest.len(),
        output.len(),
        if exact { "yes" } else { "NO" }
    );
    broker.stop()?;
    Ok(exact)
}
