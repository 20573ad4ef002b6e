//! Production-style security against a real broker: the `word_count`
//! example binary talks only to a TLS or SASL_SSL (SCRAM) listener, and a
//! wrong password or an untrusted certificate stops it at start-up with a
//! message naming the settings to fix.
//!
//! The test harness's own clients (topic creation, producing input, reading
//! output `read_committed`, committed offsets) use the broker's PLAINTEXT
//! listener. The job is given only a secured listener, so every client the
//! runtime makes (consumer, transactional producers, restore consumer, admin
//! client, purger, interactive-query lookups) must carry the security settings.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kstreams_testkit::{
    BrokerOptions, SecuredBroker, TestRecord, committed_offsets, create_topic, produce, unique_name,
};
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::*;

const STARTUP_TIMEOUT_MS: u64 = 20_000;
/// Start-up of the binary, its shutdown and a loaded 2-core machine.
const EXIT_MARGIN: Duration = Duration::from_secs(25);

const VOCAB: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "straße", "東京",
];

/// `n` lines of 1..6 words from VOCAB, and the count of every word in them.
fn make_lines(n: usize, seed: u64) -> (Vec<String>, HashMap<String, u64>) {
    let mut rng = Rng(seed);
    let mut expected: HashMap<String, u64> = HashMap::new();
    let lines = (0..n)
        .map(|_| {
            let words: Vec<&str> = (0..1 + rng.below(6))
                .map(|_| VOCAB[rng.below(VOCAB.len() as u64) as usize])
                .collect();
            for w in &words {
                *expected.entry(w.to_string()).or_default() += 1;
            }
            words.join(" ")
        })
        .collect();
    (lines, expected)
}

/// A PLAIN user on the SASL_SSL listener, besides the testkit's SCRAM user.
const PLAIN_USER: &str = "carol";
const PLAIN_PASSWORD: &str = "carol-secret";

static BROKER: OnceLock<SecuredBroker> = OnceLock::new();

/// The testkit's secured broker (as `shared_secured_broker`), with PLAIN
/// enabled on the SASL_SSL listener too, shared by this binary's tests.
fn broker() -> &'static SecuredBroker {
    BROKER.get_or_init(|| {
        let options = BrokerOptions::default()
            .with_property(
                "sasl.enabled.mechanisms",
                "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
            )
            .with_property(
                "listener.name.sasl_ssl.plain.sasl.jaas.config",
                format!(
                    "org.apache.kafka.common.security.plain.PlainLoginModule required \
                     user_{PLAIN_USER}=\"{PLAIN_PASSWORD}\";"
                ),
            );
        let broker = SecuredBroker::start_with(options)
            .unwrap_or_else(|e| panic!("could not start the secured Kafka broker: {e}"));
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_broker_at_exit) };
        broker
    })
}

/// Kills the broker and removes its directory when the test binary exits
/// (statics are never dropped).
extern "C" fn stop_broker_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(b) = BROKER.get() {
            let _ = b.broker().kill();
            let _ = std::fs::remove_dir_all(b.broker().data_dir());
        }
    });
}

/// `--config key=value` flags for each setting.
fn config_flags(settings: &[(String, String)]) -> Vec<String> {
    settings
        .iter()
        .flat_map(|(k, v)| ["--config".to_string(), format!("{k}={v}")])
        .collect()
}

/// Input and output topics (3 partitions) created over PLAINTEXT.
fn topics(prefix: &str) -> (String, String) {
    let bs = broker().plaintext_bootstrap();
    let input = unique_name(&format!("{prefix}-lines"));
    let output = unique_name(&format!("{prefix}-counts"));
    create_topic(&bs, &input, 3, false).unwrap();
    create_topic(&bs, &output, 3, false).unwrap();
    (input, output)
}

/// Runs word_count exactly-once against `bootstrap` with `security`
/// settings only, until it has consumed all input; checks the committed
/// output, the interactive query over HTTP, and a clean SIGTERM exit.
fn word_count_exactly_once(name: &str, bootstrap: &str, security: &[(String, String)]) {
    let work = work_dir(name);
    let plain = broker().plaintext_bootstrap();
    let (input, output) = topics(name);
    let app = unique_name(name);
    let (lines, expected) = make_lines(3_000, 17);
    let records: Vec<TestRecord> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| TestRecord::kv(format!("k{i}"), l.as_bytes()))
        .collect();
    produce(&plain, &input, &records).unwrap();

    let http = format!("127.0.0.1:{}", free_port());
    let mut extra = config_flags(security);
    extra.extend(["--config".into(), format!("metrics.listen={http}")]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut job = Job::new(
        "word_count",
        name,
        job_args(
            bootstrap,
            &app,
            &input,
            &output,
            &work.join("state"),
            &extra,
        ),
        &work,
    );
    job.start();

    let total = records.len() as i64;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(240);
    loop {
        let done: i64 = committed_offsets(&plain, &app, &input)
            .map(|m| m.values().sum())
            .unwrap_or(0);
        if done == total {
            break;
        }
        if !job.is_running() || Instant::now() > deadline {
            panic!(
                "{name}: committed {done} of {total} input offsets (job running: {}):\n{}",
                job.is_running(),
                job.log_tail(60)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "{name}: all {total} input offsets committed after {:?}",
        started.elapsed()
    );
    // The counts pass through the repartition topic: wait for the committed
    // output to reach them (or fail with what is missing).
    let reached = |got: &HashMap<String, Vec<String>>| {
        expected
            .iter()
            .all(|(w, n)| got.get(w).and_then(|v| v.last()) == Some(&n.to_string()))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reached(&values_by_key(&plain, &output)) {
        if !job.is_running() || Instant::now() > deadline {
            panic!(
                "{name}: final counts not committed; got {:?}, want {expected:?}:\n{}",
                values_by_key(&plain, &output),
                job.log_tail(60)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Interactive queries: the store answers the committed counts (the
    // group lookup behind it runs over the secured listener too).
    for (w, n) in &expected {
        let r = http_get(&http, &format!("/stores/counts/{w}"))
            .unwrap_or_else(|| panic!("{name}: HTTP listener {http} unreachable"));
        assert_eq!(r.status, 200, "{w}: {}", r.body);
        assert_eq!(r.json()["value"], serde_json::json!(n), "{w}: {}", r.body);
    }

    let status = job
        .terminate(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{name}: no exit within 60 s of SIGTERM"));
    assert!(status.success(), "{name}: {status}:\n{}", job.log_tail(60));

    let got = values_by_key(&plain, &output);
    assert_eq!(
        got.keys().collect::<std::collections::BTreeSet<_>>(),
        expected.keys().collect(),
        "{name}: words in the output"
    );
    for (w, n) in &expected {
        let values: Vec<u64> = got[w].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(*values.last().unwrap(), *n, "{w}: {values:?}");
        assert!(
            values.windows(2).all(|p| p[0] < p[1]),
            "{w}: committed counts not strictly increasing: {values:?}"
        );
        assert!(
            values.iter().all(|v| v <= n),
            "{w}: a committed count beyond the true count: {values:?}"
        );
    }
}

#[test]
fn word_count_runs_exactly_once_over_sasl_ssl_scram_sha_512() {
    let b = broker();
    word_count_exactly_once(
        "sec-sasl",
        &b.sasl_ssl_bootstrap(),
        &b.client_config_sasl_ssl(),
    );
}

#[test]
fn word_count_runs_exactly_once_over_tls() {
    let b = broker();
    word_count_exactly_once("sec-tls", &b.ssl_bootstrap(), &b.client_config_ssl());
}

/// Runs word_count until it exits; panics (after killing it) if it runs
/// longer than `timeout`. Returns its exit status, stderr and run time.
fn run_to_exit_within(args: &[String], timeout: Duration) -> (ExitStatus, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(example_bin("word_count"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn word_count");
    // Drain stderr on a thread: a chatty child must never block on a full pipe.
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = pipe.read_to_string(&mut err);
        err
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let err = reader.join().unwrap_or_default();
            panic!(
                "word_count did not exit within {timeout:?} (startup.timeout.ms={STARTUP_TIMEOUT_MS}); \
                 killed it. Its stderr:\n{}",
                strip_ansi(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = strip_ansi(&reader.join().unwrap_or_default());
    (status, err, started.elapsed())
}

/// word_count against `bootstrap` with `security` and a 20 s start-up
/// timeout; it must fail within the timeout plus a margin.
fn expect_startup_failure(name: &str, bootstrap: &str, security: &[(String, String)]) -> String {
    let work = work_dir(name);
    let (input, output) = topics(name);
    let mut extra = config_flags(security);
    extra.extend([
        "--config".into(),
        format!("startup.timeout.ms={STARTUP_TIMEOUT_MS}"),
    ]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let args = job_args(
        bootstrap,
        &unique_name(name),
        &input,
        &output,
        &work.join("state"),
        &extra,
    );
    let timeout = Duration::from_millis(STARTUP_TIMEOUT_MS) + EXIT_MARGIN;
    let (status, stderr, took) = run_to_exit_within(&args, timeout);
    eprintln!("{name}: exited with {status} after {took:?}; stderr:\n{stderr}");
    assert!(!status.success(), "{name}: exited 0:\n{stderr}");
    assert!(
        status.code().is_some(),
        "{name}: killed by a signal: {status}"
    );
    stderr
}

/// `text` with every occurrence of `phrase` (any case) removed.
fn without(text: &str, phrase: &str) -> String {
    let (lower, needle) = (text.to_lowercase(), phrase.to_lowercase());
    // Lowercasing keeps byte offsets for the ASCII phrases used here; fall
    // back to the text unchanged if it does not.
    if lower.len() != text.len() {
        return text.replace(phrase, "");
    }
    let mut out = String::new();
    let mut rest = 0;
    for (i, _) in lower.match_indices(&needle) {
        out.push_str(&text[rest..i]);
        rest = i + needle.len();
    }
    out.push_str(&text[rest..]);
    out
}

#[test]
fn a_wrong_password_exits_non_zero_within_startup_timeout_naming_the_setting() {
    let b = broker();
    let security: Vec<(String, String)> = b
        .client_config_sasl_ssl()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "sasl.password" => (k, "not-the-password".to_string()),
            _ => (k, v),
        })
        .collect();
    let stderr = expect_startup_failure("sec-badpw", &b.sasl_ssl_bootstrap(), &security);
    // The broker's own reason ("Authentication failed during authentication
    // due to invalid credentials ...") is relayed by librdkafka: without it,
    // what is left must still say so, i.e. the runtime's own words.
    let lower = without(&stderr, "Authentication failed during authentication").to_lowercase();
    assert!(
        lower.contains("authentication failed"),
        "want 'authentication failed' in:\n{stderr}"
    );
    for setting in ["sasl.username", "sasl.password"] {
        assert!(stderr.contains(setting), "want '{setting}' in:\n{stderr}");
    }
    assert!(
        !stderr.contains("not-the-password"),
        "the password is printed:\n{stderr}"
    );
}

#[test]
fn an_untrusted_certificate_exits_non_zero_within_startup_timeout_naming_the_setting() {
    let b = broker();
    let security = vec![
        ("security.protocol".to_string(), "SSL".to_string()),
        (
            "ssl.ca.location".to_string(),
            b.untrusted_ca_pem_path().display().to_string(),
        ),
    ];
    let stderr = expect_startup_failure("sec-untrusted", &b.ssl_bootstrap(), &security);
    // librdkafka's own hint names the setting too; the runtime must as well.
    let stderr = without(
        &stderr,
        "verify that ssl.ca.location is correctly configured",
    );
    assert!(
        stderr.contains("TLS") || stderr.contains("SSL"),
        "want 'TLS' or 'SSL' in:\n{stderr}"
    );
    assert!(
        stderr.contains("ssl.ca.location"),
        "want 'ssl.ca.location' in:\n{stderr}"
    );
}

/// Whether a plain librdkafka client with `settings` gets metadata from `bootstrap`.
fn metadata_ok(bootstrap: &str, settings: &[(String, String)]) -> Result<usize, String> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set_log_level(RDKafkaLogLevel::Emerg);
    for (k, v) in settings {
        cfg.set(k, v);
    }
    let consumer: BaseConsumer = cfg.create().map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map(|md| md.brokers().len())
        .map_err(|e| e.to_string())
}

/// The harness itself, without the runtime: the listeners accept exactly the
/// right credentials and certificates, so the tests above test the runtime.
#[test]
fn the_secured_listeners_accept_only_the_right_credentials_and_ca() {
    let b = broker();
    let sasl = b.sasl_ssl_bootstrap();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let cfg = b.client_config_sasl_ssl_with(mechanism);
        assert_eq!(metadata_ok(&sasl, &cfg), Ok(1), "{mechanism}");
    }
    assert_eq!(
        metadata_ok(&b.ssl_bootstrap(), &b.client_config_ssl()),
        Ok(1)
    );
    assert_eq!(metadata_ok(&b.plaintext_bootstrap(), &[]), Ok(1));

    let with = |key: &str, value: String| -> Vec<(String, String)> {
        b.client_config_sasl_ssl()
            .into_iter()
            .map(|(k, v)| if k == key { (k, value.clone()) } else { (k, v) })
            .collect()
    };
    let wrong_pw = with("sasl.password", "wrong".into());
    let err = metadata_ok(&sasl, &wrong_pw).expect_err("a wrong password is accepted");
    eprintln!("wrong password, librdkafka says: {err}");
    let untrusted = with(
        "ssl.ca.location",
        b.untrusted_ca_pem_path().display().to_string(),
    );
    let err = metadata_ok(&sasl, &untrusted).expect_err("an untrusted CA is accepted");
    eprintln!("untrusted CA, librdkafka says: {err}");
    let ssl_untrusted = vec![
        ("security.protocol".to_string(), "SSL".to_string()),
        (
            "ssl.ca.location".to_string(),
            b.untrusted_ca_pem_path().display().to_string(),
        ),
    ];
    assert!(metadata_ok(&b.ssl_bootstrap(), &ssl_untrusted).is_err());
}

/// `settings` as the map `probe_streams_coordinator` takes.
fn settings_map(settings: &[(String, String)]) -> BTreeMap<String, String> {
    settings.iter().cloned().collect()
}

/// The SASL_SSL settings of the PLAIN user.
fn plain_config(b: &SecuredBroker) -> Vec<(String, String)> {
    b.client_config_sasl_ssl()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "sasl.mechanism" => (k, "PLAIN".to_string()),
            "sasl.username" => (k, PLAIN_USER.to_string()),
            "sasl.password" => (k, PLAIN_PASSWORD.to_string()),
            _ => (k, v),
        })
        .collect()
}

/// `settings` with `key` set to `value`.
fn with_setting(settings: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| {
            let v = if k == key {
                value.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// The group.protocol=streams member's own connection (TLS, SASL PLAIN and
/// SCRAM, not librdkafka's) reaches the group coordinator over each secured
/// listener; the coordinator is the listener's own address (one broker).
#[test]
fn the_streams_member_connection_authenticates_over_tls_and_each_sasl_mechanism() {
    let b = broker();
    let group = unique_name("sec-streams-probe");
    let ssl = kstreams_runtime::kafka::probe_streams_coordinator(
        &b.ssl_bootstrap(),
        &settings_map(&b.client_config_ssl()),
        &group,
    );
    assert_eq!(ssl, Ok(b.ssl_bootstrap()), "SSL");
    let sasl = b.sasl_ssl_bootstrap();
    for (name, cfg) in [
        (
            "SCRAM-SHA-256",
            b.client_config_sasl_ssl_with("SCRAM-SHA-256"),
        ),
        (
            "SCRAM-SHA-512",
            b.client_config_sasl_ssl_with("SCRAM-SHA-512"),
        ),
        ("PLAIN", plain_config(b)),
    ] {
        let got =
            kstreams_runtime::kafka::probe_streams_coordinator(&sasl, &settings_map(&cfg), &group);
        assert_eq!(got, Ok(sasl.clone()), "SASL_SSL {name}");
    }
}

#[test]
fn the_streams_member_connection_refuses_a_wrong_password_naming_the_settings() {
    let b = broker();
    let sasl = b.sasl_ssl_bootstrap();
    for (name, cfg) in [
        (
            "SCRAM-SHA-256",
            b.client_config_sasl_ssl_with("SCRAM-SHA-256"),
        ),
        ("SCRAM-SHA-512", b.client_config_sasl_ssl()),
        ("PLAIN", plain_config(b)),
    ] {
        let cfg = with_setting(&cfg, "sasl.password", "not-the-password");
        let err = kstreams_runtime::kafka::probe_streams_coordinator(
            &sasl,
            &settings_map(&cfg),
            "sec-streams-badpw",
        )
        .expect_err("a wrong password is accepted");
        eprintln!("{name}, wrong password: {err}");
        for setting in ["sasl.username", "sasl.password"] {
            assert!(err.contains(setting), "{name}: want '{setting}' in: {err}");
        }
        assert!(
            err.to_lowercase().contains("authentication failed"),
            "{name}: {err}"
        );
        assert!(
            !err.contains("not-the-password"),
            "{name}: the password is printed: {err}"
        );
    }
}

#[test]
fn the_streams_member_connection_refuses_an_untrusted_certificate_naming_ssl_ca_location() {
    let b = broker();
    let untrusted = b.untrusted_ca_pem_path().display().to_string();
    for (name, bootstrap, cfg) in [
        ("SSL", b.ssl_bootstrap(), b.client_config_ssl()),
        (
            "SASL_SSL",
            b.sasl_ssl_bootstrap(),
            b.client_config_sasl_ssl(),
        ),
    ] {
        let cfg = with_setting(&cfg, "ssl.ca.location", &untrusted);
        let err = kstreams_runtime::kafka::probe_streams_coordinator(
            &bootstrap,
            &settings_map(&cfg),
            "sec-streams-untrusted",
        )
        .expect_err("an untrusted CA is accepted");
        eprintln!("{name}, untrusted CA: {err}");
        assert!(err.contains("ssl.ca.location"), "{name}: {err}");
        assert!(err.contains("TLS"), "{name}: {err}");
    }
}

#[test]
fn the_streams_member_connection_names_security_protocol_when_tls_meets_a_plaintext_listener() {
    let b = broker();
    let err = kstreams_runtime::kafka::probe_streams_coordinator(
        &b.plaintext_bootstrap(),
        &settings_map(&b.client_config_ssl()),
        "sec-streams-mismatch",
    )
    .expect_err("TLS to a plaintext listener succeeded");
    eprintln!("TLS to PLAINTEXT: {err}");
    assert!(err.contains("security.protocol"), "{err}");
}
