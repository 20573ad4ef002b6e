//! A real single-node Kafka broker with TLS and SASL/SCRAM client listeners, for testing
//! what a client does against a secured production cluster.
//!
//! Certificates are generated at start with the `openssl` command line tool: a throwaway
//! CA, a server certificate it signs (subjectAltName `IP:127.0.0.1`, `DNS:localhost`, so
//! librdkafka's default `ssl.endpoint.identification.algorithm=https` passes), and a second,
//! unrelated CA that a test can trust to see a certificate verification failure. The broker
//! reads its key and chain as PEM (`ssl.keystore.type=PEM`). SCRAM credentials are written
//! into the cluster metadata when the storage is formatted (`kafka-storage format
//! --add-scram`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::broker::{BrokerOptions, KafkaBroker, TEMP_PREFIX, pick_ports, write_file};
use crate::error::{Error, Result};

/// The SCRAM user created on every [`SecuredBroker`] (for SCRAM-SHA-256 and SCRAM-SHA-512).
pub const SCRAM_USER: &str = "alice";
/// The password of [`SCRAM_USER`].
pub const SCRAM_PASSWORD: &str = "alice-secret";

const SSL_LISTENER: &str = "SSL";
const SASL_SSL_LISTENER: &str = "SASL_SSL";
const SCRAM_MECHANISMS: [&str; 2] = ["SCRAM-SHA-256", "SCRAM-SHA-512"];

const CA_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = kstreams-testkit throwaway CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
";

const SERVER_EXT: &str = "\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A real Apache Kafka broker (KRaft, single node, never a mock) with three client
/// listeners on 127.0.0.1:
///
/// - **PLAINTEXT** ([`plaintext_bootstrap`](Self::plaintext_bootstrap)): for the test
///   harness itself ([`create_topic`](crate::create_topic), [`produce`](crate::produce),
///   [`read_to_end`](crate::read_to_end) need no security settings);
/// - **SSL** ([`ssl_bootstrap`](Self::ssl_bootstrap)): TLS with server authentication only;
/// - **SASL_SSL** ([`sasl_ssl_bootstrap`](Self::sasl_ssl_bootstrap)): TLS plus SASL with
///   SCRAM-SHA-256 and SCRAM-SHA-512 enabled, user [`scram_user`](Self::scram_user).
///
/// Needs `openssl` on `PATH` besides what [`KafkaBroker`] needs. Start time is that of a
/// plain broker plus about a second for the keys.
///
/// ```no_run
/// use kstreams_testkit::{SecuredBroker, create_topic};
///
/// let broker = SecuredBroker::start()?;
/// create_topic(&broker.plaintext_bootstrap(), "lines", 3, false)?;
/// let mut client = rdkafka::ClientConfig::new();
/// client.set("bootstrap.servers", broker.sasl_ssl_bootstrap());
/// for (k, v) in broker.client_config_sasl_ssl() {
///     client.set(k, v);
/// }
/// # Ok::<(), kstreams_testkit::Error>(())
/// ```
pub struct SecuredBroker {
    // Declared first so the broker stops before its directory is removed.
    broker: KafkaBroker,
    tls_dir: PathBuf,
    ssl_port: u16,
    sasl_ssl_port: u16,
    temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for SecuredBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecuredBroker")
            .field("plaintext", &self.plaintext_bootstrap())
            .field("ssl", &self.ssl_bootstrap())
            .field("sasl_ssl", &self.sasl_ssl_bootstrap())
            .field("dir", &self.broker.data_dir())
            .finish_non_exhaustive()
    }
}

impl SecuredBroker {
    /// Generates the certificates and starts a secured broker in a temporary directory
    /// (deleted when the value is dropped).
    ///
    /// ```no_run
    /// let broker = kstreams_testkit::SecuredBroker::start()?;
    /// println!("{}", broker.sasl_ssl_bootstrap());
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn start() -> Result<SecuredBroker> {
        SecuredBroker::start_with(BrokerOptions::default())
    }

    /// Like [`start`](Self::start), from `options` (port, data dir, timeout, extra
    /// properties); the security listeners, properties and SCRAM users are added to them.
    /// With a persistent `data_dir` the certificates are regenerated on every start (the
    /// SCRAM users are created when the storage is first formatted).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use kstreams_testkit::{BrokerOptions, SecuredBroker};
    ///
    /// let broker = SecuredBroker::start_with(
    ///     BrokerOptions::default().with_startup_timeout(Duration::from_secs(300)),
    /// )?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn start_with(mut options: BrokerOptions) -> Result<SecuredBroker> {
        let (dir, temp) = match &options.data_dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating data dir {}", dir.display()), e))?;
                let dir = fs::canonicalize(dir)
                    .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
                (dir, None)
            }
            None => {
                // The testkit's prefix: a SIGKILLed test binary's directory is swept later.
                let temp = tempfile::Builder::new()
                    .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
                    .tempdir()
                    .map_err(|e| Error::io("creating a temporary broker directory", e))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let tls_dir = dir.join("tls");
        generate_certificates(&tls_dir)?;

        let (ssl_port, sasl_ssl_port) = pick_ports(None)?;
        let keystore = tls_dir.join("server.keystore.pem");
        options.data_dir = Some(dir);
        options = options
            .with_listener(SSL_LISTENER, "SSL", ssl_port)
            .with_listener(SASL_SSL_LISTENER, "SASL_SSL", sasl_ssl_port);
        // Keep the security properties ahead of the caller's, which may override them.
        let mut props: Vec<(String, String)> = vec![
            ("ssl.keystore.type".into(), "PEM".into()),
            (
                "ssl.keystore.location".into(),
                keystore.display().to_string(),
            ),
            ("ssl.client.auth".into(), "none".into()),
            ("sasl.enabled.mechanisms".into(), SCRAM_MECHANISMS.join(",")),
        ];
        for mechanism in SCRAM_MECHANISMS {
            props.push((
                format!(
                    "listener.name.{}.{}.sasl.jaas.config",
                    SASL_SSL_LISTENER.to_lowercase(),
                    mechanism.to_lowercase()
                ),
                "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
            ));
            options = options
                .with_storage_format_arg("--add-scram")
                .with_storage_format_arg(format!(
                    "{mechanism}=[name={SCRAM_USER},password={SCRAM_PASSWORD}]"
                ));
        }
        props.append(&mut options.extra_properties);
        options.extra_properties = props;

        let broker = KafkaBroker::start(options)?;
        Ok(SecuredBroker {
            broker,
            tls_dir,
            ssl_port,
            sasl_ssl_port,
            temp,
        })
    }

    /// The underlying broker (its log, data dir, stop/kill/restart).
    ///
    /// ```no_run
    /// let broker = kstreams_testkit::SecuredBroker::start()?;
    /// println!("{}", broker.broker().log_path().display());
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn broker(&self) -> &KafkaBroker {
        &self.broker
    }

    /// `bootstrap.servers` of the PLAINTEXT listener, e.g. `127.0.0.1:41234`.
    ///
    /// ```no_run
    /// let bs = kstreams_testkit::shared_secured_broker().plaintext_bootstrap();
    /// kstreams_testkit::create_topic(&bs, "lines", 1, false)?;
    /// # Ok::<(), kstreams_testkit::Error>(())
    /// ```
    pub fn plaintext_bootstrap(&self) -> String {
        self.broker.bootstrap_servers()
    }

    /// `bootstrap.servers` of the SSL listener (TLS, server authentication only).
    ///
    /// ```no_run
    /// let bs = kstreams_testkit::shared_secured_broker().ssl_bootstrap();
    /// ```
    pub fn ssl_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.ssl_port)
    }

    /// `bootstrap.servers` of the SASL_SSL listener (SCRAM-SHA-256 and SCRAM-SHA-512).
    ///
    /// ```no_run
    /// let bs = kstreams_testkit::shared_secured_broker().sasl_ssl_bootstrap();
    /// ```
    pub fn sasl_ssl_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.sasl_ssl_port)
    }

    /// The PEM certificate of the CA that signed the broker's certificate: the
    /// `ssl.ca.location` a client must trust.
    ///
    /// ```no_run
    /// let ca = kstreams_testkit::shared_secured_broker().ca_pem_path();
    /// assert!(ca.exists());
    /// ```
    pub fn ca_pem_path(&self) -> PathBuf {
        self.tls_dir.join("ca.pem")
    }

    /// The PEM certificate of a second CA that signed nothing the broker presents: a client
    /// trusting only it fails certificate verification.
    ///
    /// ```no_run
    /// let untrusted = kstreams_testkit::shared_secured_broker().untrusted_ca_pem_path();
    /// ```
    pub fn untrusted_ca_pem_path(&self) -> PathBuf {
        self.tls_dir.join("untrusted-ca.pem")
    }

    /// The SCRAM user and password known to the broker (both mechanisms).
    ///
    /// ```no_run
    /// let (user, password) = kstreams_testkit::shared_secured_broker().scram_user();
    /// ```
    pub fn scram_user(&self) -> (String, String) {
        (SCRAM_USER.to_string(), SCRAM_PASSWORD.to_string())
    }

    /// The client settings (besides `bootstrap.servers`) for the SASL_SSL listener with
    /// SCRAM-SHA-512: `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`.
    ///
    /// ```no_run
    /// let broker = kstreams_testkit::shared_secured_broker();
    /// let mut args = vec!["--bootstrap-servers".to_string(), broker.sasl_ssl_bootstrap()];
    /// for (k, v) in broker.client_config_sasl_ssl() {
    ///     args.extend(["--config".to_string(), format!("{k}={v}")]);
    /// }
    /// ```
    pub fn client_config_sasl_ssl(&self) -> Vec<(String, String)> {
        self.client_config_sasl_ssl_with("SCRAM-SHA-512")
    }

    /// [`client_config_sasl_ssl`](Self::client_config_sasl_ssl) with another SCRAM
    /// mechanism (`SCRAM-SHA-256` or `SCRAM-SHA-512`).
    ///
    /// ```no_run
    /// let cfg = kstreams_testkit::shared_secured_broker().client_config_sasl_ssl_with("SCRAM-SHA-256");
    /// ```
    pub fn client_config_sasl_ssl_with(&self, mechanism: &str) -> Vec<(String, String)> {
        let (user, password) = self.scram_user();
        vec![
            ("security.protocol".into(), "SASL_SSL".into()),
            ("sasl.mechanism".into(), mechanism.into()),
            ("sasl.username".into(), user),
            ("sasl.password".into(), password),
            (
                "ssl.ca.location".into(),
                self.ca_pem_path().display().to_string(),
            ),
        ]
    }

    /// The client settings (besides `bootstrap.servers`) for the SSL listener:
    /// `security.protocol=SSL` and `ssl.ca.location`.
    ///
    /// ```no_run
    /// let cfg = kstreams_testkit::shared_secured_broker().client_config_ssl();
    /// ```
    pub fn client_config_ssl(&self) -> Vec<(String, String)> {
        vec![
            ("security.protocol".into(), "SSL".into()),
            (
                "ssl.ca.location".into(),
                self.ca_pem_path().display().to_string(),
            ),
        ]
    }
}

/// Runs `openssl <args>` (split at spaces) in `dir`; an error names the command and
/// carries its output.
fn openssl(dir: &Path, args: &str) -> Result<()> {
    let shown = format!("openssl {args}");
    let out = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::io(
                format!(
                    "running `{shown}` to generate test certificates \
                     (install openssl: apt-get install -y openssl)"
                ),
                e,
            )
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(Error::io(
        format!("generating test certificates in {}", dir.display()),
        std::io::Error::other(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            text.trim()
        )),
    ))
}

/// Writes `ca.pem`, `untrusted-ca.pem` and `server.keystore.pem` (the server's PKCS#8
/// key, its certificate and the CA certificate) into `dir`.
fn generate_certificates(dir: &Path) -> Result<()> {
    // Regenerated on every start: a persistent dir never holds expired or stale keys.
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    write_file(&dir.join("ca.cnf"), CA_CNF)?;
    write_file(&dir.join("server.ext"), SERVER_EXT)?;
    for ca in ["ca", "untrusted-ca"] {
        openssl(dir, &format!("genpkey -algorithm RSA -out {ca}.key"))?;
        openssl(
            dir,
            &format!(
                "req -new -x509 -key {ca}.key -config ca.cnf -extensions v3_ca \
                 -days 3650 -out {ca}.pem"
            ),
        )?;
    }
    openssl(dir, "genpkey -algorithm RSA -out server.key")?;
    openssl(
        dir,
        "req -new -key server.key -subj /CN=localhost -out server.csr",
    )?;
    let serial = format!("0x{:016x}", crate::random_u64() >> 1);
    openssl(
        dir,
        &format!(
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial {serial} \
             -days 3650 -extfile server.ext -out server.pem"
        ),
    )?;
    let mut keystore = String::new();
    for part in ["server.key", "server.pem", "ca.pem"] {
        let path = dir.join(part);
        let text = fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        keystore.push_str(text.trim_end());
        keystore.push('\n');
    }
    write_file(&dir.join("server.keystore.pem"), &keystore)
}

static SHARED: OnceLock<Result<SecuredBroker, String>> = OnceLock::new();

/// The [`SecuredBroker`] shared by all tests of this test binary: started on first use
/// (exactly once), never stopped by tests; killed and its directory removed at process
/// exit. Panics with the start error if it cannot start.
///
/// ```no_run
/// let broker = kstreams_testkit::shared_secured_broker();
/// println!("{}", broker.sasl_ssl_bootstrap());
/// ```
pub fn shared_secured_broker() -> &'static SecuredBroker {
    let res = SHARED.get_or_init(|| {
        let res = SecuredBroker::start().map_err(|e| e.to_string());
        if res.is_ok() {
            // SAFETY: registering a plain extern "C" function.
            unsafe { libc::atexit(cleanup_shared_secured_broker) };
        }
        res
    });
    match res {
        Ok(broker) => broker,
        Err(e) => panic!("could not start the shared secured Kafka broker: {e}"),
    }
}

extern "C" fn cleanup_shared_secured_broker() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(b)) = SHARED.get() {
            let _ = b.broker.kill();
            if let Some(temp) = &b.temp {
                let _ = fs::remove_dir_all(temp.path());
            }
        }
    });
}
