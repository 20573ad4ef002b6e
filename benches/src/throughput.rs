//! The throughput phase: the input pre-loaded once, then every case
//! interleaved, round after round; a case's time runs from its job's start to
//! its expected final result visible `read_committed`.
//!
//! Apart from runner.rs (broker, job command lines, phase order) like the
//! latency and recovery phases; [`load_lines`] and [`run_case`] are also the
//! tasks phase's (many_tasks.rs), so both measure a case the same way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kstreams_testkit::create_topic;

use crate::cases::{App, Case, System};
use crate::data::{self, Loader, OrderTotals, Rng, Vocabulary};
use crate::job::{self, Job, ProcPeaks, Sampler};
use crate::report::{self, Report, Throughput};
use crate::runner::Ctx;
use crate::watch::{self, Expect};

/// The word-count input as loaded onto a topic.
pub(crate) struct Lines {
    /// Records sent (= lines).
    pub(crate) records: u64,
    /// The exact final count of every word.
    pub(crate) expected: HashMap<String, u64>,
    /// What was loaded, for the report.
    pub(crate) description: String,
}

/// Loads `--lines` lines of the Zipf vocabulary (always the same seed, so the
/// same lines) onto the existing topic `topic`.
pub(crate) fn load_lines(ctx: &Ctx, topic: &str) -> Result<Lines, String> {
    let a = &ctx.args;
    let t = Instant::now();
    let vocab = Vocabulary::new(a.vocabulary);
    let mut rng = Rng(0x5eed_1234_5678_9abc);
    let mut expected = HashMap::new();
    let mut loader = Loader::new(&ctx.bootstrap, topic, 50)?;
    let mut bytes = 0u64;
    for _ in 0..a.lines {
        let line = vocab.line(&mut rng, &mut expected);
        bytes += line.len() as u64;
        loader.send(None, line.as_bytes())?;
    }
    loader.flush()?;
    let records = loader.sent;
    let words: u64 = expected.values().sum();
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "kstreams-bench: loaded {records} lines onto {topic} ({words} words, {} distinct, {:.1} MB) in {secs:.1} s",
        expected.len(),
        bytes as f64 / 1e6
    );
    let description = format!(
        "`{topic}`: {records} lines, {words} words ({} distinct of a {}-word Zipf(s=1) vocabulary), {:.1} MB of values; loaded in {secs:.1} s ({:.0} records/s)",
        expected.len(),
        a.vocabulary,
        bytes as f64 / 1e6,
        records as f64 / secs
    );
    Ok(Lines {
        records,
        expected,
        description,
    })
}

/// What "done" means for a word-count case of `system` over `lines`.
pub(crate) fn word_count_expect(system: System, eos: bool, lines: &Lines) -> Expect {
    if system == System::Ceiling {
        Expect::Records(lines.records)
    } else {
        Expect::Counts {
            expected: lines.expected.clone(),
            at_least: !eos,
        }
    }
}

pub(crate) fn phase(ctx: &Ctx, cases: &[Case], rep: &mut Report) -> Result<(), String> {
    let a = &ctx.args;
    let mut lines = None;
    let mut expected_orders = OrderTotals::new();
    let mut order_records = 0u64;
    if cases.iter().any(|c| c.app == App::WordCount) {
        ctx.topic("lines", a.partitions)?;
        let l = load_lines(ctx, "lines")?;
        rep.inputs.push(l.description.clone());
        lines = Some(l);
    }
    if cases.iter().any(|c| c.app == App::Orders) {
        ctx.topic("orders", a.partitions)?;
        let t = Instant::now();
        let mut loader = Loader::new(&ctx.bootstrap, "orders", 50)?;
        let mut err = None;
        expected_orders = data::orders(a.orders as usize, a.customers, 42, |k, v| {
            if err.is_none()
                && let Err(e) = loader.send(Some(k), v)
            {
                err = Some(e);
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        loader.flush()?;
        order_records = loader.sent;
        let secs = t.elapsed().as_secs_f64();
        eprintln!("kstreams-bench: loaded {order_records} order records in {secs:.1} s");
        rep.inputs.push(format!(
            "`orders`: {} orders for {} customers ({} with orders), {order_records} records with ~5% re-sends and ~0.2% malformed; loaded in {secs:.1} s",
            a.orders,
            a.customers,
            expected_orders.len()
        ));
    }
    for round in 1..=a.rounds {
        for case in cases {
            let (input, records, expect) = match (case.app, &lines) {
                (App::WordCount, Some(l)) => (
                    "lines",
                    l.records,
                    word_count_expect(case.system, case.eos, l),
                ),
                (App::WordCount, None) => unreachable!("word-count input loaded above"),
                (App::Orders, _) => (
                    "orders",
                    order_records,
                    if case.system == System::Ceiling {
                        Expect::Records(order_records)
                    } else {
                        Expect::Totals(expected_orders.clone())
                    },
                ),
            };
            let run = CaseRun {
                case,
                round,
                app_id: format!("{}-r{round}", case.name),
                input,
                records,
                expect: &expect,
                partitions: a.partitions,
                sample: false,
            };
            let (t, _) = run_case(ctx, &run)?;
            eprintln!("kstreams-bench: {}", report::throughput_line(&t));
            rep.throughput.push(t);
            // Let the broker settle (log flushes, cleaner) before the next case.
            std::thread::sleep(Duration::from_secs(3));
        }
    }
    Ok(())
}

/// One run of a throughput case.
pub(crate) struct CaseRun<'a> {
    pub(crate) case: &'a Case,
    pub(crate) round: usize,
    /// Its application id, state dir and log name; it writes to `<app_id>-out`.
    pub(crate) app_id: String,
    pub(crate) input: &'a str,
    /// Records on `input`.
    pub(crate) records: u64,
    pub(crate) expect: &'a Expect,
    /// Partitions of the output topic created for it.
    pub(crate) partitions: i32,
    /// Sample the job's `/proc/<pid>/status` every 100 ms (peak RSS, threads).
    pub(crate) sample: bool,
}

/// Starts the job, watches its output until the expected final result (or
/// the case timeout), stops it. The peaks are `Some` if `run.sample`.
pub(crate) fn run_case(
    ctx: &Ctx,
    run: &CaseRun,
) -> Result<(Throughput, Option<ProcPeaks>), String> {
    let (case, round, app_id) = (run.case, run.round, run.app_id.as_str());
    let output = format!("{app_id}-out");
    ctx.topic(&output, run.partitions)?;
    if case.app == App::Orders {
        // The kstreams example sends malformed orders to <output>-dlq, which must exist.
        create_topic(&ctx.bootstrap, &format!("{output}-dlq"), 1, false)
            .map_err(|e| format!("creating {output}-dlq: {e}"))?;
    }
    let argv = ctx.argv(
        &case.sys(),
        case.app,
        case.eos,
        app_id,
        run.input,
        &output,
        &[],
    );
    eprintln!("kstreams-bench: round {round}: {app_id} ...");
    let broker_cpu_at_start = ctx.broker_pid.and_then(job::process_cpu_secs);
    let mut job = Job::spawn(&argv, &ctx.log(app_id))?;
    let started = job.started;
    let sampler = match (run.sample, job.pid()) {
        (true, Some(pid)) => Some(Sampler::start(pid, Duration::from_millis(100))),
        _ => None,
    };
    let mut rss_seen = 0.0f64;
    let w = watch::watch(
        &ctx.bootstrap,
        &output,
        run.expect,
        ctx.timeout(),
        false,
        || {
            rss_seen = rss_seen.max(job.peak_rss_mib().unwrap_or(0.0));
            job.alive()
        },
    );
    let peaks = sampler.map(Sampler::stop);
    let rss = job.peak_rss_mib().map(|r| r.max(rss_seen));
    let cpu = job.cpu_secs();
    let broker_cpu = ctx
        .broker_pid
        .and_then(job::process_cpu_secs)
        .zip(broker_cpu_at_start)
        .map(|(end, start)| end - start);
    let w = match w {
        Ok(w) => w,
        Err(e) => {
            return Err(format!(
                "{app_id}: {e}; log {}:\n{}",
                job.log.display(),
                job.log_tail(30)
            ));
        }
    };
    job.terminate(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(ctx.state_dir(app_id));
    let secs = w.done.map(|d| (d - started).as_secs_f64());
    Ok((
        Throughput {
            case: case.name.clone(),
            round,
            input_records: run.records,
            secs,
            first_secs: w.first.map(|f| (f - started).as_secs_f64()),
            rss_mib: rss,
            cpu_secs: cpu,
            broker_cpu_secs: broker_cpu,
            output_records: w.records,
            progress: format!("{}/{}", w.satisfied, w.wanted),
        },
        peaks,
    ))
}
