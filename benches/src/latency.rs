//! The latency phase: word count, exactly-once, input paced at given rates;
//! latency = the time an output record is visible `read_committed` − the
//! produce time of the input line that last updated it.
//!
//! Why several rates: one rate cannot be fair to every system. Half of
//! kstreams' maximum may be more than Kafka Streams sustains (its latency then
//! grows without bound), and half of Kafka Streams' maximum leaves kstreams
//! idle. Every system runs at every rate, so each rate compares all of them
//! at the same load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cases::{App, Sys, System};
use crate::data::{Loader, Rng, Vocabulary};
use crate::job::Job;
use crate::report::{self, Latency, Report};
use crate::runner::Ctx;
use crate::watch::{self, Expect, WARMUP};

/// A rate of the latency phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate {
    /// Its position in --latency-rates (topic names).
    pub index: usize,
    pub lines_per_sec: u64,
    /// How it was chosen, e.g. `kstreams/2` (half of kstreams' word-count rate).
    pub of: String,
}

/// One `--latency-rates` entry: lines/s, or `SYSTEM/N`.
#[derive(Debug, Clone, PartialEq)]
pub enum RateSpec {
    Fixed(u64),
    /// The word-count exactly-once throughput case of this name, divided by N.
    Of {
        case: String,
        divisor: f64,
        spec: String,
    },
}

impl RateSpec {
    /// `first_label`: the first --kstreams-bin-dir label (its build is the baseline).
    pub fn parse(s: &str, first_label: Option<&str>) -> Result<RateSpec, String> {
        if let Ok(n) = s.parse::<u64>() {
            return Ok(RateSpec::Fixed(n));
        }
        let bad = || {
            format!(
                "--latency-rates '{s}': expected lines/s or SYSTEM/N (SYSTEM: kstreams or kafka-streams)"
            )
        };
        let (sys, div) = s.split_once('/').ok_or_else(bad)?;
        let divisor: f64 = div.parse().map_err(|_| bad())?;
        if divisor <= 0.0 {
            return Err(bad());
        }
        let case = match (sys, first_label) {
            ("kstreams", Some(l)) => format!("kstreams-{l}-wc-eos"),
            ("kstreams", None) => "kstreams-wc-eos".to_string(),
            ("kafka-streams", _) => "kafka-streams-wc-eos".to_string(),
            _ => return Err(bad()),
        };
        Ok(RateSpec::Of {
            case,
            divisor,
            spec: s.to_string(),
        })
    }
}

/// The rates, from the throughput phase's results where a spec refers to them.
pub fn rates(specs: &[RateSpec], rep: &Report) -> Result<Vec<Rate>, String> {
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| match spec {
            RateSpec::Fixed(n) => Ok(Rate {
                index,
                lines_per_sec: (*n).max(1),
                of: format!("{n} lines/s"),
            }),
            RateSpec::Of { case, divisor, spec } => {
                let v: Vec<f64> = rep
                    .throughput
                    .iter()
                    .filter(|t| &t.case == case)
                    .filter_map(|t| t.rate())
                    .collect();
                let max = report::median(&v).ok_or_else(|| {
                    format!("--latency-rates {spec} needs {case}'s rate: run the throughput phase with it, or give --latency-rate")
                })?;
                Ok(Rate {
                    index,
                    lines_per_sec: ((max / divisor) as u64).max(1),
                    of: spec.clone(),
                })
            }
        })
        .collect()
}

/// Every latency system at every rate, rate by rate.
pub fn phase(ctx: &Ctx, systems: &[Sys], rep: &mut Report) -> Result<(), String> {
    let specs: Vec<RateSpec> = match ctx.args.latency_rate {
        Some(n) => vec![RateSpec::Fixed(n)],
        None => ctx
            .args
            .latency_rates
            .iter()
            .map(|s| RateSpec::parse(s, rep.labels.first().map(String::as_str)))
            .collect::<Result<_, _>>()?,
    };
    for rate in rates(&specs, rep)? {
        for s in systems {
            let l = latency_case(ctx, s, &rate)?;
            eprintln!("kstreams-bench: {l:?}");
            rep.latency.push(l);
        }
    }
    Ok(())
}

/// Sends a warm-up line every 200 ms until stopped.
fn warmup_sender(
    bootstrap: String,
    topic: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let mut l = Loader::new(&bootstrap, &topic, 0)?;
        while !stop.load(Ordering::SeqCst) {
            l.send(None, WARMUP.as_bytes())?;
            l.flush()?;
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    })
}

fn latency_case(ctx: &Ctx, who: &Sys, rate: &Rate) -> Result<Latency, String> {
    let system = who.system;
    let name = format!("lat{}-{}", rate.index, who.name());
    let rate_of = rate.of.clone();
    let rate = rate.lines_per_sec;
    let input = format!("{name}-in");
    let output = format!("{name}-out");
    ctx.topic(&input, ctx.args.partitions)?;
    ctx.topic(&output, ctx.args.partitions)?;
    // The paced input, generated up front.
    let n = rate * ctx.args.latency_seconds;
    let vocab = Vocabulary::new(ctx.args.vocabulary);
    let mut rng = Rng(0x1a7e_0c1a_u64);
    let mut expected = HashMap::new();
    let lines: Vec<String> = (0..n)
        .map(|_| vocab.line(&mut rng, &mut expected))
        .collect();
    let expect = if system == System::Ceiling {
        Expect::Records(n)
    } else {
        Expect::Counts {
            expected,
            at_least: false,
        }
    };
    eprintln!("kstreams-bench: latency {name} at {rate} lines/s ...");
    let argv = ctx.argv(who, App::WordCount, true, &name, &input, &output, &[]);
    let mut job = Job::spawn(&argv, &ctx.log(&name))?;
    let stop = Arc::new(AtomicBool::new(false));
    let warm = warmup_sender(ctx.bootstrap.clone(), input.clone(), stop.clone());
    let ready = watch::watch(
        &ctx.bootstrap,
        &output,
        &Expect::Key(WARMUP.into()),
        ctx.timeout(),
        false,
        || job.alive(),
    );
    stop.store(true, Ordering::SeqCst);
    warm.join().map_err(|_| "warm-up thread panicked")??;
    let ready = ready?;
    if ready.done.is_none() {
        return Err(format!("{name}: no output within the timeout"));
    }
    // Pace the lines: every 5 ms, send what is due.
    let (bs, topic) = (ctx.bootstrap.clone(), input.clone());
    let pacer = std::thread::spawn(move || -> Result<f64, String> {
        let mut l = Loader::new(&bs, &topic, 5)?;
        let t = Instant::now();
        for (i, line) in lines.iter().enumerate() {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            let el = t.elapsed();
            if due > el {
                l.poll();
                std::thread::sleep(due - el);
            }
            l.send(None, line.as_bytes())?;
        }
        l.flush()?;
        Ok(t.elapsed().as_secs_f64())
    });
    let drain = Duration::from_secs(ctx.args.latency_seconds + 60);
    let w = watch::watch(&ctx.bootstrap, &output, &expect, drain, true, || {
        job.alive()
    });
    let produced_secs = pacer.join().map_err(|_| "pacer thread panicked")??;
    let rss = job.peak_rss_mib();
    job.terminate(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(ctx.state_dir(&name));
    let mut w = w?;
    w.latencies_ms.sort_unstable();
    Ok(Latency {
        system: who.name(),
        rate,
        rate_of,
        produced_secs,
        samples: w.latencies_ms.len(),
        p50_ms: report::percentile(&w.latencies_ms, 0.50),
        p99_ms: report::percentile(&w.latencies_ms, 0.99),
        p999_ms: report::percentile(&w.latencies_ms, 0.999),
        max_ms: w.latencies_ms.last().copied(),
        complete: w.done.is_some(),
        progress: format!("{}/{}", w.satisfied, w.wanted),
        rss_mib: rss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Throughput;

    fn report_with(case: &str, secs: f64) -> Report {
        let mut r = Report::default();
        r.throughput.push(Throughput::finished(case, 100_000, secs));
        r
    }

    #[test]
    fn rates_are_fixed_or_a_fraction_of_a_measured_word_count() {
        let rep = report_with("kafka-streams-wc-eos", 10.0); // 10,000 lines/s
        let specs = [
            RateSpec::parse("kafka-streams/2", None).unwrap(),
            RateSpec::parse("7000", None).unwrap(),
        ];
        let r = rates(&specs, &rep).unwrap();
        assert_eq!(
            r.iter()
                .map(|r| (r.index, r.lines_per_sec, r.of.as_str()))
                .collect::<Vec<_>>(),
            [(0, 5000, "kafka-streams/2"), (1, 7000, "7000 lines/s")]
        );
        // kstreams' rate is the first label's when builds are compared.
        assert_eq!(
            RateSpec::parse("kstreams/4", Some("new")).unwrap(),
            RateSpec::Of {
                case: "kstreams-new-wc-eos".into(),
                divisor: 4.0,
                spec: "kstreams/4".into()
            }
        );
    }

    #[test]
    fn a_rate_without_its_measurement_or_a_bad_spec_is_an_error() {
        let rep = report_with("ceiling-wc", 1.0);
        let spec = RateSpec::parse("kstreams/2", None).unwrap();
        let e = rates(&[spec], &rep).unwrap_err();
        assert!(e.contains("needs kstreams-wc-eos's rate"), "{e}");
        for bad in ["quix/2", "kstreams/0", "kstreams", "fast"] {
            assert!(RateSpec::parse(bad, None).is_err(), "{bad}");
        }
    }
}
