//! `kstreams-bench run`: one broker, pre-loaded input, every case interleaved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kstreams_testkit::{BrokerOptions, KafkaBroker, create_topic};

use crate::data::{self, Loader, OrderTotals, Rng, Vocabulary};
use crate::job::{self, Job};
use crate::report::{self, Report, Throughput};
use crate::watch::{self, Expect};
use crate::{chart, latency, recovery};

/// Every throughput case, in the (interleaved) order they run in each round.
pub const ALL_CASES: &[&str] = &[
    "ceiling-wc",
    "kstreams-wc-eos",
    "kafka-streams-wc-eos",
    "quix-wc-eos",
    "kstreams-wc-alos",
    "ceiling-orders",
    "kstreams-orders-eos",
    "kafka-streams-orders-eos",
    "kstreams-orders-alos",
];

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
    /// Phases: throughput, latency, recovery.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Ceiling,
    Kstreams,
    KafkaStreams,
    Quix,
}

impl System {
    fn parse(s: &str) -> Result<System, String> {
        Ok(match s {
            "ceiling" => System::Ceiling,
            "kstreams" => System::Kstreams,
            "kafka-streams" => System::KafkaStreams,
            "quix" => System::Quix,
            _ => return Err(format!("unknown system '{s}'")),
        })
    }
}

/// A system, and for kstreams the label of its binaries (`kstreams-LABEL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sys {
    pub system: System,
    pub label: Option<String>,
}

impl Sys {
    /// `ceiling`, `kstreams`, `kstreams-LABEL`, `kafka-streams`,
    /// `kafka-streams-txn` or `quix`.
    fn parse(s: &str) -> Result<Sys, String> {
        if s == "kafka-streams-txn" {
            return Ok(Sys {
                system: System::KafkaStreams,
                label: Some(KS_TXN.into()),
            });
        }
        if let Some(l) = s.strip_prefix("kstreams-") {
            if !valid_label(l) {
                return Err(format!("unknown system '{s}'"));
            }
            return Ok(Sys {
                system: System::Kstreams,
                label: Some(l.to_string()),
            });
        }
        Ok(Sys {
            system: System::parse(s)?,
            label: None,
        })
    }

    pub fn name(&self) -> String {
        match (&self.system, &self.label) {
            (System::Ceiling, _) => "ceiling".into(),
            (System::Kstreams, None) => "kstreams".into(),
            (System::Kstreams, Some(l)) => format!("kstreams-{l}"),
            (System::KafkaStreams, None) => "kafka-streams".into(),
            (System::KafkaStreams, Some(l)) => format!("kafka-streams-{l}"),
            (System::Quix, _) => "quix".into(),
        }
    }

    /// Settings this system variant adds to its jobs.
    fn settings(&self) -> &'static [&'static str] {
        match (&self.system, self.label.as_deref()) {
            (System::KafkaStreams, Some(KS_TXN)) => &[KS_TXN_SETTING],
            _ => &[],
        }
    }
}

/// `kafka-streams-txn`: Kafka Streams with transactional state stores
/// (KIP-892, opt-in since 4.4): under exactly-once a crash no longer wipes
/// the local state, so recovery replays only the changelog's tail, as kstreams
/// does. The strongest Kafka Streams for the recovery comparison.
const KS_TXN: &str = "txn";
const KS_TXN_SETTING: &str = "enable.transactional.statestores=true";

/// Labels end up in topic names and must not look like an app or a guarantee.
fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !["wc", "orders", "eos", "alos"].contains(&l)
}

/// Replaces every unlabelled kstreams entry by one per label (in label
/// order), and checks the labels of labelled ones.
fn expand_labels<T: Clone>(
    items: Vec<T>,
    labels: &[String],
    sys_of: impl Fn(&T) -> Sys,
    relabel: impl Fn(&T, &str) -> T,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for it in items {
        let s = sys_of(&it);
        match (&s.system, &s.label) {
            (System::Kstreams, None) if !labels.is_empty() => {
                out.extend(labels.iter().map(|l| relabel(&it, l)));
            }
            (System::Kstreams, Some(l)) if !labels.contains(l) => {
                return Err(format!(
                    "'{}': no --kstreams-bin-dir {l}=DIR given",
                    s.name()
                ));
            }
            _ => out.push(it),
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    WordCount,
    Orders,
}

/// A throughput case: `<system>-<wc|orders>[-<eos|alos>]`, where the system
/// may be `kstreams-LABEL` (see --kstreams-bin-dir).
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub system: System,
    pub label: Option<String>,
    pub app: App,
    pub eos: bool,
}

impl Case {
    pub fn parse(name: &str) -> Result<Case, String> {
        let bad = || format!("unknown case '{name}' (known: {})", ALL_CASES.join(", "));
        let (rest, eos) = if let Some(r) = name.strip_suffix("-eos") {
            (r, true)
        } else if let Some(r) = name.strip_suffix("-alos") {
            (r, false)
        } else {
            (name, true)
        };
        let (sys, app) = if let Some(s) = rest.strip_suffix("-wc") {
            (s, App::WordCount)
        } else if let Some(s) = rest.strip_suffix("-orders") {
            (s, App::Orders)
        } else {
            return Err(bad());
        };
        let Sys { system, label } = Sys::parse(sys).map_err(|_| bad())?;
        if (system == System::Ceiling && !eos) || (system == System::Quix && app == App::Orders) {
            return Err(bad());
        }
        Ok(Case {
            name: name.to_string(),
            system,
            label,
            app,
            eos,
        })
    }

    fn sys(&self) -> Sys {
        Sys {
            system: self.system,
            label: self.label.clone(),
        }
    }

    /// This (unlabelled kstreams) case run with the binaries labelled `label`.
    fn with_label(&self, label: &str) -> Case {
        let rest = self.name.strip_prefix("kstreams").unwrap_or(&self.name);
        Case {
            name: format!("kstreams-{label}{rest}"),
            label: Some(label.to_string()),
            ..self.clone()
        }
    }
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
    broker_pid: Option<u32>,
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

    pub(crate) fn topic(&self, name: &str) -> Result<(), String> {
        create_topic(&self.bootstrap, name, self.args.partitions, false)
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
        if !["throughput", "latency", "recovery"].contains(&p.as_str()) {
            return Err(format!("unknown phase '{p}'"));
        }
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
        throughput_phase(ctx, cases, rep)?;
    }
    if phase("latency") && !latency_systems.is_empty() {
        latency::phase(ctx, latency_systems, rep)?;
    }
    if phase("recovery") {
        recovery::phase(ctx, recovery_systems, rep)?;
    }
    Ok(())
}

fn throughput_phase(ctx: &Ctx, cases: &[Case], rep: &mut Report) -> Result<(), String> {
    let a = &ctx.args;
    let mut expected_words = HashMap::new();
    let mut expected_orders = OrderTotals::new();
    let (mut line_records, mut order_records) = (0u64, 0u64);
    if cases.iter().any(|c| c.app == App::WordCount) {
        ctx.topic("lines")?;
        let t = Instant::now();
        let vocab = Vocabulary::new(a.vocabulary);
        let mut rng = Rng(0x5eed_1234_5678_9abc);
        let mut loader = Loader::new(&ctx.bootstrap, "lines", 50)?;
        let mut bytes = 0u64;
        for _ in 0..a.lines {
            let line = vocab.line(&mut rng, &mut expected_words);
            bytes += line.len() as u64;
            loader.send(None, line.as_bytes())?;
        }
        loader.flush()?;
        line_records = loader.sent;
        let words: u64 = expected_words.values().sum();
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "kstreams-bench: loaded {line_records} lines ({words} words, {} distinct, {:.1} MB) in {secs:.1} s",
            expected_words.len(),
            bytes as f64 / 1e6
        );
        rep.inputs.push(format!(
            "`lines`: {line_records} lines, {words} words ({} distinct of a {}-word Zipf(s=1) vocabulary), {:.1} MB of values; loaded in {secs:.1} s ({:.0} records/s)",
            expected_words.len(),
            a.vocabulary,
            bytes as f64 / 1e6,
            line_records as f64 / secs
        ));
    }
    if cases.iter().any(|c| c.app == App::Orders) {
        ctx.topic("orders")?;
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
            let (input, records, expect) = match case.app {
                App::WordCount => (
                    "lines",
                    line_records,
                    if case.system == System::Ceiling {
                        Expect::Records(line_records)
                    } else {
                        Expect::Counts {
                            expected: expected_words.clone(),
                            at_least: !case.eos,
                        }
                    },
                ),
                App::Orders => (
                    "orders",
                    order_records,
                    if case.system == System::Ceiling {
                        Expect::Records(order_records)
                    } else {
                        Expect::Totals(expected_orders.clone())
                    },
                ),
            };
            let t = throughput_case(ctx, case, round, input, records, &expect)?;
            eprintln!("kstreams-bench: {}", report::throughput_line(&t));
            rep.throughput.push(t);
            // Let the broker settle (log flushes, cleaner) before the next case.
            std::thread::sleep(Duration::from_secs(3));
        }
    }
    Ok(())
}

fn throughput_case(
    ctx: &Ctx,
    case: &Case,
    round: usize,
    input: &str,
    records: u64,
    expect: &Expect,
) -> Result<Throughput, String> {
    let app_id = format!("{}-r{round}", case.name);
    let output = format!("{app_id}-out");
    ctx.topic(&output)?;
    if case.app == App::Orders {
        // The kstreams example sends malformed orders to <output>-dlq, which must exist.
        create_topic(&ctx.bootstrap, &format!("{output}-dlq"), 1, false)
            .map_err(|e| format!("creating {output}-dlq: {e}"))?;
    }
    let argv = ctx.argv(
        &case.sys(),
        case.app,
        case.eos,
        &app_id,
        input,
        &output,
        &[],
    );
    eprintln!("kstreams-bench: round {round}: {} ...", case.name);
    let broker_cpu_at_start = ctx.broker_pid.and_then(job::process_cpu_secs);
    let mut job = Job::spawn(&argv, &ctx.log(&app_id))?;
    let started = job.started;
    let mut rss_seen = 0.0f64;
    let w = watch::watch(
        &ctx.bootstrap,
        &output,
        expect,
        ctx.timeout(),
        false,
        || {
            rss_seen = rss_seen.max(job.peak_rss_mib().unwrap_or(0.0));
            job.alive()
        },
    );
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
                "{}: {e}; log {}:\n{}",
                case.name,
                job.log.display(),
                job.log_tail(30)
            ));
        }
    };
    job.terminate(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(ctx.state_dir(&app_id));
    let secs = w.done.map(|d| (d - started).as_secs_f64());
    Ok(Throughput {
        case: case.name.clone(),
        round,
        input_records: records,
        secs,
        first_secs: w.first.map(|f| (f - started).as_secs_f64()),
        rss_mib: rss,
        cpu_secs: cpu,
        broker_cpu_secs: broker_cpu,
        output_records: w.records,
        progress: format!("{}/{}", w.satisfied, w.wanted),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_case_parses() {
        for c in ALL_CASES {
            Case::parse(c).unwrap();
        }
        assert!(Case::parse("quix-orders-eos").is_err());
        assert!(Case::parse("ceiling-wc-alos").is_err());
    }

    #[test]
    fn labelled_kstreams_cases() {
        let c = Case::parse("kstreams-old-orders-eos").unwrap();
        assert_eq!(
            (c.system, c.label.as_deref(), c.app, c.eos),
            (System::Kstreams, Some("old"), App::Orders, true)
        );
        assert!(Case::parse("kstreams-wc-eos").unwrap().label.is_none());
        assert!(Case::parse("kafka-streams-wc-eos").unwrap().label.is_none());
        let labels = vec!["old".to_string(), "new".to_string()];
        let cases: Vec<Case> = ["ceiling-wc", "kstreams-wc-eos", "kafka-streams-wc-eos"]
            .iter()
            .map(|c| Case::parse(c).unwrap())
            .collect();
        let names: Vec<String> = expand_labels(cases, &labels, Case::sys, Case::with_label)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            [
                "ceiling-wc",
                "kstreams-old-wc-eos",
                "kstreams-new-wc-eos",
                "kafka-streams-wc-eos"
            ]
        );
        let bad = vec![Case::parse("kstreams-x-wc-eos").unwrap()];
        assert!(expand_labels(bad, &labels, Case::sys, Case::with_label).is_err());
        assert_eq!(Sys::parse("kstreams-new").unwrap().name(), "kstreams-new");
        let txn = Sys::parse("kafka-streams-txn").unwrap();
        assert_eq!(
            (txn.system, txn.name().as_str(), txn.settings()),
            (
                System::KafkaStreams,
                "kafka-streams-txn",
                &["enable.transactional.statestores=true"][..]
            )
        );
        assert!(Sys::parse("kafka-streams").unwrap().settings().is_empty());
        let c = Case::parse("kafka-streams-txn-wc-eos").unwrap();
        assert_eq!(
            (c.system, c.label.as_deref()),
            (System::KafkaStreams, Some("txn"))
        );
        assert!(Sys::parse("kstreams-").is_err());
    }
}
