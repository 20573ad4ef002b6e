//! `kstreams-bench run`: its options, one fresh broker, the jobs' command
//! lines ([`Ctx`]), and the phases in order (throughput, latency, recovery,
//! tasks), each in its own module; then the report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kstreams_testkit::{BrokerOptions, KafkaBroker, create_topic};

use crate::cases::{ALL_CASES, App, Case, Sys, System, expand_labels, valid_label};
use crate::report::{self, Report};
use crate::{chart, latency, many_tasks, recovery, throughput};

/// Every phase `--phases` accepts (`tasks` is not in the default).
const PHASES: &[&str] = &["throughput", "latency", "recovery", "tasks"];

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Word-count input lines.
    #[arg(long, default_value_t = 5_000_000)]
    pub lines: u64,
    /// Orders (before re-sends and malformed records are added).
    #[arg(long, default_value_t = 2_000_000)]
    pub orders: u64,
    /// Distinct customers.
    #[arg(long, default_value_t = 50_000)]
    pub customers: u64,
    /// Vocabulary size of the Zipf-distributed words.
    #[arg(long, default_value_t = 50_000)]
    pub vocabulary: usize,
    /// Partitions of every input and output topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Rounds of the interleaved throughput cases.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Commit interval of every job (kstreams, Kafka Streams, Quix, ceiling), ALOS included.
    #[arg(long, default_value_t = 100)]
    pub commit_interval_ms: u64,
    /// Throughput cases to run (comma-separated; default all).
    #[arg(long, value_delimiter = ',', default_values_t = ALL_CASES.iter().map(|s| s.to_string()))]
    pub cases: Vec<String>,
    /// Phases: throughput, latency, recovery, and (only if listed) tasks:
    /// the word count at each --tasks-partitions on one instance.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,latency,recovery"
    )]
    pub phases: Vec<String>,
    /// Seconds of paced input in the latency phase.
    #[arg(long, default_value_t = 20)]
    pub latency_seconds: u64,
    /// One fixed rate (lines/s) for the latency phase, instead of --latency-rates.
    #[arg(long)]
    pub latency_rate: Option<u64>,
    /// Rates of the latency phase, each a number of lines/s or SYSTEM/N: the
    /// word count's exactly-once throughput of SYSTEM (`kstreams`, the first
    /// label's if labelled, or `kafka-streams`) in the throughput phase, ÷ N.
    /// Every latency system runs at every rate.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kstreams/2,kafka-streams/2"
    )]
    pub latency_rates: Vec<String>,
    /// Systems of the latency phase (word count, exactly-once).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,kstreams,kafka-streams,quix"
    )]
    pub latency_systems: Vec<String>,
    /// State sizes (distinct keys) of the recovery and restore phase.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub state_keys: Vec<u64>,
    /// Systems of the recovery phase.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kstreams,kafka-streams,kafka-streams-txn"
    )]
    pub recovery_systems: Vec<String>,
    /// Partition counts of the tasks phase, run one after the other each
    /// round; the first is the baseline of its ratios.
    #[arg(long, value_delimiter = ',', default_value = "4,64")]
    pub tasks_partitions: Vec<i32>,
    /// Also run ceiling-wc at each partition count of the tasks phase.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tasks_ceiling: bool,
    /// Run the tasks phase's kstreams word count once, unrecorded, at the
    /// first partition count before round 1: the fresh broker's JIT is
    /// cold, and whichever case ran first was measured up to 1.5x slower
    /// (4 partitions: 57k, 77k, 88k lines/s in rounds 1-3).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tasks_warmup: bool,
    /// Directory of the kstreams example binaries (default: `<dir of this binary>/examples`).
    #[arg(long)]
    pub examples_dir: Option<PathBuf>,
    /// Compare kstreams builds: LABEL=DIR of example binaries (word_count,
    /// order_aggregation), repeatable. Every kstreams case, latency and
    /// recovery run then runs once per label, one right after the other, named
    /// `kstreams-LABEL-...` (e.g. kstreams-old-wc-eos); the first label is the
    /// baseline of the LABEL ÷ first-label ratios. Overrides --examples-dir.
    #[arg(long = "kstreams-bin-dir", value_name = "LABEL=DIR")]
    pub kstreams_bin_dirs: Vec<String>,
    /// The Kafka Streams jar (benches/java, `mvn -q package`).
    #[arg(long, default_value = "benches/java/target/kstreams-bench-java.jar")]
    pub java_jar: PathBuf,
    /// JVM options of the Kafka Streams jobs (whitespace-separated).
    #[arg(long, default_value = "-Xmx1g")]
    pub java_opts: String,
    /// Python of the Quix Streams venv.
    #[arg(long, default_value = "benches/.venv/bin/python")]
    pub quix_python: PathBuf,
    /// The Quix Streams word-count script.
    #[arg(long, default_value = "benches/quix/word_count.py")]
    pub quix_script: PathBuf,
    /// key=value given to every job (all systems alike) with --config. Repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Give up on a case after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub case_timeout_secs: u64,
    /// Work directory (state dirs, job logs, report.md); default a new temp dir.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Markdown file whose generated section (between markers) is replaced by the results.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// The command line to record in the results.
    #[arg(long, default_value = "bash benches/run.sh")]
    pub command_line: String,
}

/// One set of kstreams example binaries.
struct Kbins {
    label: Option<String>,
    dir: PathBuf,
    /// Extra flags for its order_aggregation binary.
    orders_flags: Vec<String>,
}

pub(crate) struct Ctx {
    pub(crate) args: RunArgs,
    pub(crate) bootstrap: String,
    pub(crate) work: PathBuf,
    /// The kstreams binaries: one unlabelled set, or one per --kstreams-bin-dir label.
    kstreams: Vec<Kbins>,
    bench_exe: PathBuf,
    /// The broker's process, for its CPU time per case.
    pub(crate) broker_pid: Option<u32>,
}

/// Newer order_aggregation binaries add a per-minute window branch unless
/// given `--per-minute false`; the benchmark compares the same logic as
/// the Kafka Streams job (no windows), so turn it off where it exists.
fn order_aggregation_flags(examples: &Path) -> Vec<String> {
    let help = std::process::Command::new(examples.join("order_aggregation"))
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if help.contains("--per-minute <") {
        vec!["--per-minute".into(), "false".into()]
    } else {
        Vec::new()
    }
}

impl Ctx {
    fn kbins(&self, label: Option<&str>) -> &Kbins {
        self.kstreams
            .iter()
            .find(|k| k.label.as_deref() == label)
            .or(self.kstreams.first())
            .expect("kstreams binaries")
    }

    /// The command line of a job.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn argv(
        &self,
        who: &Sys,
        app: App,
        eos: bool,
        app_id: &str,
        input: &str,
        output: &str,
        extra: &[&str],
    ) -> Vec<String> {
        let system = who.system;
        let mut v: Vec<String> = match system {
            System::Ceiling => vec![self.bench_exe.display().to_string(), "ceiling".into()],
            System::Kstreams => vec![
                self.kbins(who.label.as_deref())
                    .dir
                    .join(match app {
                        App::WordCount => "word_count",
                        App::Orders => "order_aggregation",
                    })
                    .display()
                    .to_string(),
            ],
            System::KafkaStreams => {
                let mut v = vec!["java".to_string()];
                v.extend(self.args.java_opts.split_whitespace().map(String::from));
                v.push("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn".into());
                v.push("-cp".into());
                v.push(self.args.java_jar.display().to_string());
                v.push(
                    match app {
                        App::WordCount => "dev.kstreams.bench.WordCount",
                        App::Orders => "dev.kstreams.bench.OrderAggregation",
                    }
                    .into(),
                );
                v
            }
            System::Quix => vec![
                self.args.quix_python.display().to_string(),
                self.args.quix_script.display().to_string(),
            ],
        };
        if system == System::Kstreams && app == App::Orders {
            v.extend(
                self.kbins(who.label.as_deref())
                    .orders_flags
                    .iter()
                    .cloned(),
            );
        }
        let state = self.work.join("state").join(app_id);
        for (flag, value) in [
            ("--bootstrap-servers", self.bootstrap.clone()),
            ("--application-id", app_id.to_string()),
            ("--input-topic", input.to_string()),
            ("--output-topic", output.to_string()),
            ("--state-dir", state.display().to_string()),
            (
                "--processing-guarantee",
                if eos { "exactly_once" } else { "at_least_once" }.to_string(),
            ),
            (
                "--commit-interval-ms",
                self.args.commit_interval_ms.to_string(),
            ),
        ] {
            v.push(flag.into());
            v.push(value);
        }
        for kv in self
            .args
            .config
            .iter()
            .map(String::as_str)
            .chain(who.settings().iter().copied())
            .chain(extra.iter().copied())
        {
            v.push("--config".into());
            v.push(kv.to_string());
        }
        v
    }

    pub(crate) fn state_dir(&self, app_id: &str) -> PathBuf {
        self.work.join("state").join(app_id)
    }

    pub(crate) fn log(&self, name: &str) -> PathBuf {
        self.work.join("logs").join(format!("{name}.log"))
    }

    /// Creates topic `name` with `partitions` partitions.
    pub(crate) fn topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        create_topic(&self.bootstrap, name, partitions, false)
            .map_err(|e| format!("creating topic {name}: {e}"))
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.case_timeout_secs)
    }
}

pub fn run(args: RunArgs) -> Result<(), String> {
    let mut labelled_dirs: Vec<(String, PathBuf)> = Vec::new();
    for kv in &args.kstreams_bin_dirs {
        let (l, d) = kv
            .split_once('=')
            .ok_or_else(|| format!("--kstreams-bin-dir {kv}: expected LABEL=DIR"))?;
        if !valid_label(l) || labelled_dirs.iter().any(|(x, _)| x == l) {
            return Err(format!(
                "--kstreams-bin-dir {kv}: the label must be unique, of [A-Za-z0-9_], and not wc/orders/eos/alos"
            ));
        }
        labelled_dirs.push((l.to_string(), PathBuf::from(d)));
    }
    let labels: Vec<String> = labelled_dirs.iter().map(|(l, _)| l.clone()).collect();
    let cases: Vec<Case> = args
        .cases
        .iter()
        .map(|c| Case::parse(c))
        .collect::<Result<_, _>>()?;
    let cases = expand_labels(cases, &labels, Case::sys, Case::with_label)?;
    for p in &args.phases {
        if !PHASES.contains(&p.as_str()) {
            return Err(format!(
                "unknown phase '{p}' (known: {})",
                PHASES.join(", ")
            ));
        }
    }
    if args.phases.iter().any(|p| p == "tasks") {
        many_tasks::check_partitions(&args.tasks_partitions)?;
    }
    let with_label = |s: &Sys, l: &str| Sys {
        system: s.system,
        label: Some(l.to_string()),
    };
    let latency_systems: Vec<Sys> = args
        .latency_systems
        .iter()
        .map(|s| Sys::parse(s))
        .collect::<Result<_, _>>()?;
    let latency_systems = expand_labels(latency_systems, &labels, Sys::clone, with_label)?;
    let recovery_systems: Vec<Sys> = args
        .recovery_systems
        .iter()
        .map(|s| Sys::parse(s))
        .collect::<Result<_, _>>()?;
    let recovery_systems = expand_labels(recovery_systems, &labels, Sys::clone, with_label)?;
    let bench_exe = std::env::current_exe().map_err(|e| format!("locating myself: {e}"))?;
    let examples = match &args.examples_dir {
        Some(d) => d.clone(),
        None => bench_exe
            .parent()
            .map(|d| d.join("examples"))
            .ok_or("no directory of the bench binary")?,
    };
    // Only the phases that run need their systems installed.
    let runs = |p: &str| args.phases.iter().any(|x| x == p);
    let uses = |s: System| {
        (runs("throughput") && cases.iter().any(|c| c.system == s))
            || (runs("latency") && latency_systems.iter().any(|x| x.system == s))
            || (runs("recovery") && recovery_systems.iter().any(|x| x.system == s))
            || (runs("tasks") && s == System::Kstreams)
    };
    let kstreams_dirs: Vec<(Option<String>, PathBuf)> = if labelled_dirs.is_empty() {
        vec![(None, examples)]
    } else {
        labelled_dirs
            .into_iter()
            .map(|(l, d)| (Some(l), d))
            .collect()
    };
    if uses(System::Kstreams) {
        for (_, dir) in &kstreams_dirs {
            for b in ["word_count", "order_aggregation"] {
                if !dir.join(b).exists() {
                    return Err(format!(
                        "{} missing: cargo build --release --workspace --bins --examples",
                        dir.join(b).display()
                    ));
                }
            }
        }
    }
    if uses(System::KafkaStreams) && !args.java_jar.exists() {
        return Err(format!(
            "{} missing: (cd benches/java && mvn -q package)",
            args.java_jar.display()
        ));
    }
    if uses(System::Quix) && (!args.quix_python.exists() || !args.quix_script.exists()) {
        return Err(format!(
            "{} or {} missing: python3 -m venv benches/.venv && benches/.venv/bin/pip install quixstreams",
            args.quix_python.display(),
            args.quix_script.display()
        ));
    }
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("kstreams-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(work.join("logs"))
        .and_then(|_| std::fs::create_dir_all(work.join("state")))
        .map_err(|e| format!("creating {}: {e}", work.display()))?;

    let mut rep = Report::new(&args, report::machine());
    eprintln!("kstreams-bench: work dir {}", work.display());
    eprintln!("kstreams-bench: starting a fresh Kafka broker");
    let broker = KafkaBroker::start(BrokerOptions::default())
        .map_err(|e| format!("starting the broker: {e}"))?;
    let bootstrap = broker.bootstrap_servers();
    let kstreams: Vec<Kbins> = kstreams_dirs
        .into_iter()
        .map(|(label, dir)| {
            let orders_flags = if uses(System::Kstreams) {
                order_aggregation_flags(&dir)
            } else {
                Vec::new()
            };
            Kbins {
                label,
                dir,
                orders_flags,
            }
        })
        .collect();
    if uses(System::Kstreams) {
        for k in &kstreams {
            let line = format!(
                "kstreams binaries{}: `{}` (word_count modified {}; order_aggregation extra flags: {})",
                k.label
                    .as_ref()
                    .map(|l| format!(" `{l}`"))
                    .unwrap_or_default(),
                k.dir.display(),
                report::mtime_utc(&k.dir.join("word_count")),
                if k.orders_flags.is_empty() {
                    "none".to_string()
                } else {
                    format!("`{}`", k.orders_flags.join(" "))
                }
            );
            eprintln!("kstreams-bench: {line}");
            rep.binaries.push(line);
        }
    }
    rep.labels = labels;
    let ctx = Ctx {
        args,
        bootstrap,
        work: work.clone(),
        kstreams,
        bench_exe,
        broker_pid: broker.pid(),
    };

    let res = run_phases(&ctx, &cases, &latency_systems, &recovery_systems, &mut rep);
    if let Err(e) = broker.stop() {
        eprintln!("kstreams-bench: stopping the broker: {e}");
    }
    let md = rep.markdown();
    println!("{md}");
    let path = work.join("report.md");
    std::fs::write(&path, &md).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("kstreams-bench: report written to {}", path.display());
    if let Some(svg) = chart::svg(&rep) {
        let path = work.join("chart.svg");
        std::fs::write(&path, &svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("kstreams-bench: chart written to {}", path.display());
        if let Some(results) = &ctx.args.results {
            let dir = results
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("results");
            let path = dir.join("chart.svg");
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(&path, &svg))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            eprintln!("kstreams-bench: {} updated", path.display());
        }
    }
    if let Some(results) = &ctx.args.results {
        report::update_results(results, &md)?;
        eprintln!("kstreams-bench: {} updated", results.display());
    }
    res
}

fn run_phases(
    ctx: &Ctx,
    cases: &[Case],
    latency_systems: &[Sys],
    recovery_systems: &[Sys],
    rep: &mut Report,
) -> Result<(), String> {
    let phase = |p: &str| ctx.args.phases.iter().any(|x| x == p);
    if phase("throughput") && !cases.is_empty() {
        throughput::phase(ctx, cases, rep)?;
    }
    if phase("latency") && !latency_systems.is_empty() {
        latency::phase(ctx, latency_systems, rep)?;
    }
    if phase("recovery") {
        recovery::phase(ctx, recovery_systems, rep)?;
    }
    if phase("tasks") {
        many_tasks::phase(ctx, rep)?;
    }
    Ok(())
}
