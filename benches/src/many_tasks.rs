//! The tasks phase (`--phases tasks`): the word count, exactly-once, default
//! settings, on one instance, at each `--tasks-partitions` count P (2 × P
//! tasks: the split and the count sub-topologies), one right after the other
//! on the same broker in every round.
//!
//! Why a phase of its own: an acceptance point is that the 64-partition word
//! count on one instance starts, is exact and reaches ≥ 0.7× the throughput
//! of the 4-partition one on the same broker in the same run, with its peak
//! RSS and thread count reported. The throughput phase runs every case at one
//! `--partitions`; two separate runs would compare different brokers. Each
//! run is measured as the throughput phase measures kstreams-wc-eos (the same
//! input generator, [`throughput::run_case`]), plus `/proc/<pid>/status`
//! sampled every 100 ms for the peak RSS and threads. An inexact or failed
//! run is an error in the report (and the phase fails), never a number.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cases::{Case, System};
use crate::job::ProcPeaks;
use crate::report::{self, Report, Throughput, median};
use crate::runner::Ctx;
use crate::throughput::{self, CaseRun};

/// The case measured at each partition count.
const KSTREAMS: &str = "kstreams-wc-eos";
/// The broker's ceiling at the same partition count (`--tasks-ceiling`).
const CEILING: &str = "ceiling-wc";

/// `--tasks-partitions`: at least one, each ≥ 1, no repeats.
pub fn check_partitions(p: &[i32]) -> Result<(), String> {
    if p.is_empty() {
        return Err("--tasks-partitions: give at least one partition count".into());
    }
    for (i, n) in p.iter().enumerate() {
        if *n < 1 || p[..i].contains(n) {
            return Err(format!(
                "--tasks-partitions {n}: every count must be ≥ 1 and given once"
            ));
        }
    }
    Ok(())
}

/// One case at one partition count in one round.
#[derive(Debug, Clone)]
pub struct TaskRun {
    pub partitions: i32,
    pub round: usize,
    /// [`KSTREAMS`] or [`CEILING`].
    pub case: String,
    /// The measurement, or why there is none (the job exited, ...).
    pub result: Result<Throughput, String>,
    /// The sampled peaks (kstreams runs only).
    pub peaks: Option<ProcPeaks>,
}

impl TaskRun {
    /// Lines/s to the exact final result; `None` if the run failed or was not exact.
    fn rate(&self) -> Option<f64> {
        self.result.as_ref().ok()?.rate()
    }

    /// Why this run yields no number, if it does not.
    fn problem(&self) -> Option<String> {
        match &self.result {
            Err(e) => Some(e.lines().next().unwrap_or("failed").to_string()),
            Ok(t) if t.secs.is_none() => Some(format!(
                "not exact within the case timeout ({} {}, {} output records)",
                t.progress,
                if self.case == CEILING {
                    "records copied"
                } else {
                    "words at their exact count"
                },
                t.output_records
            )),
            Ok(_) => None,
        }
    }
}

/// The phase's results, for the report.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    pub command: String,
    /// The phase's parameters, as stated in the report.
    pub params: String,
    /// `--tasks-partitions`; the first is the baseline.
    pub partitions: Vec<i32>,
    /// The input loaded for each partition count and round (the first).
    pub input: Option<String>,
    pub runs: Vec<TaskRun>,
}

/// One partition count over all rounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub partitions: i32,
    /// 2 × P: the word count has two sub-topologies.
    pub tasks: i32,
    /// kstreams lines/s, median over the exact rounds.
    pub rate: Option<f64>,
    /// The same from the first to the last output (start-up excluded).
    pub steady: Option<f64>,
    /// Per round ÷ the baseline partition count's rate, median over rounds.
    pub vs_baseline: Option<f64>,
    pub ceiling_rate: Option<f64>,
    /// Per round kstreams ÷ ceiling, median over rounds.
    pub vs_ceiling: Option<f64>,
    /// Largest over the rounds.
    pub rss_mib: Option<f64>,
    /// Largest over the rounds.
    pub threads: Option<u64>,
    /// Job start → first output visible `read_committed`, median over rounds.
    pub first_secs: Option<f64>,
    pub cpu_secs: Option<f64>,
    /// kstreams rounds with the exact final result, of all its rounds.
    pub exact: (usize, usize),
    /// Every run of this partition count without a number, and why.
    pub problems: Vec<String>,
}

/// Per round `a ÷ b` (rounds present in both), then the median.
fn ratio_by_round(a: &[(usize, f64)], b: &[(usize, f64)]) -> Option<f64> {
    let v: Vec<f64> = a
        .iter()
        .filter_map(|(r, x)| {
            let (_, y) = b.iter().find(|(rb, _)| rb == r)?;
            (*y > 0.0).then_some(x / y)
        })
        .collect();
    median(&v)
}

fn max_f(v: impl Iterator<Item = f64>) -> Option<f64> {
    v.fold(None, |m, x| Some(m.map_or(x, |m: f64| m.max(x))))
}

impl Tasks {
    fn runs_of<'a>(&'a self, case: &'a str, p: i32) -> impl Iterator<Item = &'a TaskRun> + 'a {
        self.runs
            .iter()
            .filter(move |r| r.case == case && r.partitions == p)
    }

    /// (round, lines/s) of the exact runs.
    fn rates(&self, case: &str, p: i32) -> Vec<(usize, f64)> {
        self.runs_of(case, p)
            .filter_map(|r| Some((r.round, r.rate()?)))
            .collect()
    }

    /// A statistic of the exact kstreams runs at `p`, median over rounds.
    fn median_of(&self, p: i32, f: impl Fn(&Throughput) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self
            .runs_of(KSTREAMS, p)
            .filter(|r| r.rate().is_some())
            .filter_map(|r| f(r.result.as_ref().ok()?))
            .collect();
        median(&v)
    }

    pub fn rows(&self) -> Vec<Row> {
        let Some(&base) = self.partitions.first() else {
            return Vec::new();
        };
        let base_rates = self.rates(KSTREAMS, base);
        self.partitions
            .iter()
            .map(|&p| {
                let rates = self.rates(KSTREAMS, p);
                let ceiling = self.rates(CEILING, p);
                let k: Vec<&TaskRun> = self.runs_of(KSTREAMS, p).collect();
                let rss = max_f(k.iter().filter_map(|r| {
                    let sampled = r.peaks.and_then(|x| x.rss_mib());
                    let at_end = r.result.as_ref().ok().and_then(|t| t.rss_mib);
                    max_f(sampled.into_iter().chain(at_end))
                }));
                let problems = self
                    .runs
                    .iter()
                    .filter(|r| r.partitions == p)
                    .filter_map(|r| Some(format!("{} round {}: {}", r.case, r.round, r.problem()?)))
                    .collect();
                Row {
                    partitions: p,
                    tasks: 2 * p,
                    rate: median(&rates.iter().map(|(_, x)| *x).collect::<Vec<_>>()),
                    steady: self.median_of(p, Throughput::steady_rate),
                    vs_baseline: ratio_by_round(&rates, &base_rates),
                    ceiling_rate: median(&ceiling.iter().map(|(_, x)| *x).collect::<Vec<_>>()),
                    vs_ceiling: ratio_by_round(&rates, &ceiling),
                    rss_mib: rss,
                    threads: k.iter().filter_map(|r| r.peaks?.peak_threads()).max(),
                    first_secs: self.median_of(p, |t| t.first_secs),
                    cpu_secs: self.median_of(p, |t| t.cpu_secs),
                    exact: (rates.len(), k.len()),
                    problems,
                }
            })
            .collect()
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let base = self.partitions.first().copied().unwrap_or(0);
        let _ = write!(
            s,
            "### Many tasks (one instance)\n\n\
             Word count, exactly-once, default settings, one instance (the first kstreams \
             binaries above), at each partition count P of its input and output topics, one \
             after the other on the same broker in every round: fresh topics with P partitions, \
             the same lines loaded onto them, then {}. Tasks = 2 × P (two sub-topologies, split \
             and count, joined by a repartition topic). lines/s as in the throughput table: \
             input lines ÷ (job start → the exact final counts visible `read_committed`); a run \
             that does not reach the exact counts is listed as an error, not a number. Medians \
             over the rounds; ratios per round, then the median. Peak RSS: the largest \
             VmHWM/VmRSS, peak threads: the largest `Threads` of `/proc/<pid>/status`, sampled \
             every 100 ms, over all rounds. First output: job start → the first output record \
             visible `read_committed`.\n\n\
             Command: `{}` ({})\n\n",
            if self.runs.iter().any(|r| r.case == CEILING) {
                "ceiling-wc, then kstreams-wc-eos"
            } else {
                "kstreams-wc-eos"
            },
            self.command,
            self.params
        );
        if let Some(i) = &self.input {
            let _ = writeln!(s, "Input at each P and round, e.g. {i}\n");
        }
        let _ = writeln!(
            s,
            "| partitions | tasks | lines/s | ÷ {base} partitions | steady lines/s | ceiling lines/s | ÷ ceiling | peak RSS MiB | peak threads | first output s | CPU s | exact rounds |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let f = |v: Option<f64>, d: usize| v.map_or("—".to_string(), |v| format!("{v:.d$}"));
        let rows = self.rows();
        for r in &rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.partitions,
                r.tasks,
                f(r.rate, 0),
                f(r.vs_baseline, 2),
                f(r.steady, 0),
                f(r.ceiling_rate, 0),
                f(r.vs_ceiling, 2),
                f(r.rss_mib, 0),
                r.threads.map_or("—".to_string(), |t| t.to_string()),
                f(r.first_secs, 1),
                f(r.cpu_secs, 1),
                if r.exact.0 == r.exact.1 && r.exact.1 > 0 {
                    format!("{}/{}", r.exact.0, r.exact.1)
                } else {
                    format!("**{}/{}**", r.exact.0, r.exact.1)
                }
            );
        }
        let problems: Vec<String> = rows
            .iter()
            .flat_map(|r| {
                r.problems
                    .iter()
                    .map(move |p| format!("P={}: {p}", r.partitions))
            })
            .collect();
        if !problems.is_empty() {
            s.push_str("\n**Errors** (runs without a number; their logs are in the work dir):\n\n");
            for p in problems {
                let _ = writeln!(s, "- {}", p.replace('|', "\\|"));
            }
        }
        s.push('\n');
        s
    }
}

/// Every round: at each partition count, fresh topics, the input, [the
/// ceiling,] the kstreams word count. Failed or inexact runs are recorded and
/// make the phase fail at its end (so the report shows all of them).
pub fn phase(ctx: &Ctx, rep: &mut Report) -> Result<(), String> {
    let a = &ctx.args;
    check_partitions(&a.tasks_partitions)?;
    let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    rep.tasks = Some(Tasks {
        command: a.command_line.clone(),
        params: format!(
            "tasks phase: --tasks-partitions {}, lines={}, vocabulary={}, rounds={}, \
             commit.interval.ms={}, ceiling {}, warm-up run {}, extra job config {:?}",
            list(&a.tasks_partitions),
            a.lines,
            a.vocabulary,
            a.rounds,
            a.commit_interval_ms,
            if a.tasks_ceiling { "yes" } else { "no" },
            if a.tasks_warmup { "yes" } else { "no" },
            a.config
        ),
        partitions: a.tasks_partitions.clone(),
        ..Tasks::default()
    });
    let kstreams = Case::parse(KSTREAMS)?;
    let ceiling = Case::parse(CEILING)?;
    let cases: Vec<&Case> = if a.tasks_ceiling {
        vec![&ceiling, &kstreams]
    } else {
        vec![&kstreams]
    };
    if a.tasks_warmup
        && let Some(&p) = a.tasks_partitions.first()
    {
        warm_up(ctx, &kstreams, p)?;
    }
    let mut failed = 0;
    for round in 1..=a.rounds {
        for &p in &a.tasks_partitions {
            let input = format!("tasks-p{p}-r{round}-lines");
            ctx.topic(&input, p)?;
            let lines = throughput::load_lines(ctx, &input)?;
            for case in &cases {
                let expect = throughput::word_count_expect(case.system, case.eos, &lines);
                let run = CaseRun {
                    case,
                    round,
                    app_id: format!("tasks-p{p}-r{round}-{}", case.name),
                    input: &input,
                    records: lines.records,
                    expect: &expect,
                    partitions: p,
                    sample: case.system == System::Kstreams,
                };
                let (result, peaks) = match throughput::run_case(ctx, &run) {
                    Ok((t, peaks)) => {
                        eprintln!(
                            "kstreams-bench: tasks P={p}: {}; sampled peak RSS {} MiB, peak threads {}",
                            report::throughput_line(&t),
                            peaks
                                .and_then(|x| x.rss_mib())
                                .map_or("—".into(), |m| format!("{m:.0}")),
                            peaks
                                .and_then(|x| x.peak_threads())
                                .map_or("—".into(), |t| t.to_string())
                        );
                        (Ok(t), peaks)
                    }
                    Err(e) => {
                        eprintln!("kstreams-bench: tasks P={p}: {e}");
                        (Err(e), None)
                    }
                };
                let r = TaskRun {
                    partitions: p,
                    round,
                    case: case.name.clone(),
                    result,
                    peaks,
                };
                failed += usize::from(r.problem().is_some());
                let t = rep.tasks.as_mut().expect("set above");
                t.input.get_or_insert_with(|| lines.description.clone());
                t.runs.push(r);
                // Let the broker settle (log flushes, cleaner) before the next case.
                std::thread::sleep(Duration::from_secs(3));
            }
        }
    }
    if failed > 0 {
        return Err(format!(
            "tasks phase: {failed} run(s) failed or were not exact (see the report)"
        ));
    }
    Ok(())
}

/// One unrecorded kstreams word count at `p` partitions, so the broker's
/// JIT is warm before the first measured run. It must still be exact.
fn warm_up(ctx: &Ctx, kstreams: &Case, p: i32) -> Result<(), String> {
    let input = format!("tasks-warmup-p{p}-lines");
    ctx.topic(&input, p)?;
    let lines = throughput::load_lines(ctx, &input)?;
    let expect = throughput::word_count_expect(kstreams.system, kstreams.eos, &lines);
    let run = CaseRun {
        case: kstreams,
        round: 0,
        app_id: format!("tasks-warmup-p{p}-{}", kstreams.name),
        input: &input,
        records: lines.records,
        expect: &expect,
        partitions: p,
        sample: false,
    };
    let (t, _) = throughput::run_case(ctx, &run).map_err(|e| format!("tasks warm-up: {e}"))?;
    eprintln!(
        "kstreams-bench: tasks warm-up (not recorded) P={p}: {}",
        report::throughput_line(&t)
    );
    std::thread::sleep(Duration::from_secs(3));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(case: &str, p: i32, round: usize, secs: Option<f64>) -> TaskRun {
        let mut t = Throughput::finished(case, 1_000_000, secs.unwrap_or(1.0));
        t.round = round;
        t.secs = secs;
        t.first_secs = secs.map(|s| s / 10.0);
        t.progress = "49000/50000".into();
        TaskRun {
            partitions: p,
            round,
            case: case.into(),
            result: Ok(t),
            peaks: (case == KSTREAMS).then_some(ProcPeaks {
                hwm_kib: 100 * 1024 * p as u64,
                rss_kib: 0,
                threads: 10 * p as u64,
                samples: 5,
            }),
        }
    }

    #[test]
    fn partition_counts_are_checked() {
        check_partitions(&[4, 64]).unwrap();
        check_partitions(&[64]).unwrap();
        for bad in [&[][..], &[4, 0], &[4, 64, 4], &[-1]] {
            assert!(check_partitions(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn per_round_ratios_then_the_median() {
        // Round 2 of `a` has no partner; round 3's baseline is 0.
        let a = [(1, 50.0), (2, 70.0), (3, 10.0), (4, 90.0)];
        let b = [(1, 100.0), (3, 0.0), (4, 100.0)];
        assert_eq!(ratio_by_round(&a, &b), Some(0.7));
        assert_eq!(ratio_by_round(&a, &[]), None);
    }

    #[test]
    fn rows_use_exact_rounds_and_the_first_partition_count_as_baseline() {
        let mut t = Tasks {
            partitions: vec![4, 64],
            ..Tasks::default()
        };
        // Round 1: 4 → 100,000 lines/s, 64 → 50,000; round 2: 4 → 80,000,
        // 64 → 62,500; round 3: 64 not exact; the ceiling in round 1 only.
        t.runs = vec![
            run(CEILING, 4, 1, Some(5.0)),
            run(KSTREAMS, 4, 1, Some(10.0)),
            run(CEILING, 64, 1, Some(4.0)),
            run(KSTREAMS, 64, 1, Some(20.0)),
            run(KSTREAMS, 4, 2, Some(12.5)),
            run(KSTREAMS, 64, 2, Some(16.0)),
            run(KSTREAMS, 4, 3, Some(10.0)),
            run(KSTREAMS, 64, 3, None),
        ];
        let rows = t.rows();
        let (r4, r64) = (&rows[0], &rows[1]);
        assert_eq!((r4.partitions, r4.tasks, r64.tasks), (4, 8, 128));
        assert_eq!(r4.rate, Some(100_000.0));
        assert_eq!(r4.vs_baseline, Some(1.0));
        assert_eq!(r4.exact, (3, 3));
        assert!(r4.problems.is_empty());
        assert_eq!(r64.rate, Some(56_250.0));
        // Per round 0.5 and 0.78125; the inexact round 3 has no ratio.
        assert_eq!(r64.vs_baseline, Some(0.640625));
        assert_eq!(r64.ceiling_rate, Some(250_000.0));
        assert_eq!(r64.vs_ceiling, Some(0.2));
        assert_eq!((r64.rss_mib, r64.threads), (Some(6400.0), Some(640)));
        assert_eq!(r64.exact, (2, 3));
        assert_eq!(r64.problems.len(), 1);
        assert!(
            r64.problems[0].starts_with("kstreams-wc-eos round 3: not exact"),
            "{:?}",
            r64.problems
        );
        let md = t.markdown();
        assert!(md.contains("### Many tasks (one instance)"), "{md}");
        assert!(md.contains("| 64 | 128 | 56250 | 0.64 |"), "{md}");
        assert!(md.contains("**2/3**"), "{md}");
        assert!(
            md.contains("P=64: kstreams-wc-eos round 3: not exact"),
            "{md}"
        );
    }

    #[test]
    fn a_failed_run_is_an_error_with_its_first_line() {
        let mut t = Tasks {
            partitions: vec![64],
            ..Tasks::default()
        };
        t.runs.push(TaskRun {
            partitions: 64,
            round: 1,
            case: KSTREAMS.into(),
            result: Err("tasks-p64-r1-kstreams-wc-eos: the job exited | early\nlog tail".into()),
            peaks: None,
        });
        let row = &t.rows()[0];
        assert_eq!((row.rate, row.vs_baseline, row.exact), (None, None, (0, 1)));
        let md = t.markdown();
        assert!(md.contains("| 64 | 128 | — | — |"), "{md}");
        assert!(md.contains("the job exited \\| early\n"), "{md}");
        assert!(!md.contains("log tail"), "{md}");
    }
}
