//! Locating java and the Kafka jars, and spawning child JVMs that can never outlive us.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;

use crate::error::{Error, Result};

/// Compile-time location of `tools/kafka` in this repository.
const DEFAULT_KAFKA_HOME: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/kafka");

/// The directory holding `fetch.sh` and `lib/`: `$KSTREAMS_KAFKA_HOME` or `tools/kafka`.
pub(crate) fn kafka_home() -> PathBuf {
    match std::env::var_os("KSTREAMS_KAFKA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_KAFKA_HOME),
    }
}

fn has_kafka_jar(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("kafka_2.13-") && name.ends_with(".jar")
            })
        })
        .unwrap_or(false)
}

/// Returns the directory with the Kafka jars, running `fetch.sh` first if there is one.
///
/// `fetch.sh` is cheap when the jars are present (it compares a marker file and exits),
/// so it is run once per process; that also picks up a version bump in `pom.xml`.
/// It holds an flock, so concurrent test binaries download only once.
pub(crate) fn kafka_lib_dir() -> Result<PathBuf> {
    static LIB: OnceLock<Result<PathBuf, (PathBuf, String)>> = OnceLock::new();
    let home = kafka_home();
    let res = LIB.get_or_init(|| {
        let script = home.join("fetch.sh");
        if script.is_file() {
            let out = Command::new("bash")
                .arg(&script)
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    return Err((script, format!("{} ({})", text.trim(), o.status)));
                }
                Err(e) => return Err((script, format!("could not run bash: {e}"))),
            }
        }
        // tools/kafka layout is lib/, a Kafka binary distribution has libs/.
        let lib = ["lib", "libs"]
            .iter()
            .map(|d| home.join(d))
            .find(|d| has_kafka_jar(d))
            .unwrap_or_else(|| home.join("lib"));
        Ok(lib)
    });
    match res {
        Ok(lib) if has_kafka_jar(lib) => Ok(lib.clone()),
        Ok(lib) => Err(Error::JarsMissing { dir: lib.clone() }),
        Err((script, output)) => Err(Error::FetchFailed {
            script: script.clone(),
            output: output.clone(),
        }),
    }
}

/// `$JAVA_HOME/bin/java` if it exists, else the first `java` on `PATH`.
pub(crate) fn find_java() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let java = Path::new(&home).join("bin/java");
        if java.is_file() {
            return Ok(java);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join("java"))
        .find(|p| p.is_file())
        .ok_or(Error::JavaNotFound)
}

/// The classpath `lib/*` (the JVM expands the wildcard itself).
pub(crate) fn classpath(lib: &Path) -> OsString {
    let mut cp = lib.as_os_str().to_owned();
    cp.push("/*");
    cp
}

struct SpawnRequest {
    cmd: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Spawns `cmd` so that the child gets SIGKILL when this process dies, however it dies.
///
/// Why a dedicated thread: `PR_SET_PDEATHSIG` fires when the *thread* that forked the
/// child exits, not when the process exits. Tests run on short-lived libtest threads, so
/// a broker forked from a test thread would be killed as soon as that test returns (while
/// other tests still use the shared broker). All children are therefore forked by one
/// spawner thread that lives until the process exits: on any process exit — normal
/// return, panic, `std::process::exit`, SIGKILL of the test binary, a CI timeout — that
/// thread dies with it and the kernel sends SIGKILL to every JVM we started. `Drop`
/// alone is not enough: statics (the shared broker) are never dropped, and a SIGKILLed
/// test process runs no destructors at all.
///
/// The child is also put in its own process group, so a terminal's Ctrl-C reaches only
/// us, and we can stop the broker cleanly.
pub(crate) fn spawn_guarded(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("kstreams-testkit-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop never ends before the process.
                for SpawnRequest { mut cmd, reply } in rx {
                    let _ = reply.send(spawn_with_pdeathsig(&mut cmd));
                }
            })
            .expect("failed to start the kstreams-testkit spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send(SpawnRequest {
        cmd,
        reply: reply_tx,
    })
    .map_err(|_| io::Error::other("kstreams-testkit spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("kstreams-testkit spawner thread did not reply"))?
}

fn spawn_with_pdeathsig(cmd: &mut Command) -> io::Result<Child> {
    // SAFETY: getpid is async-signal-safe; read before fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody will send
            // the signal, so give up now.
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
    cmd.process_group(0).spawn()
}
