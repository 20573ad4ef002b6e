//! The recovery and restore phase: word count, exactly-once, N distinct keys
//! of state; time to the first new output after a kill -9 (the local state
//! kept), and after a restart with the state directory deleted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cases::{App, Sys, System};
use crate::data::{self, Loader};
use crate::job::Job;
use crate::report::{Recovery, Report};
use crate::runner::Ctx;
use crate::watch::{self, Expect};

/// Every recovery system at every state size.
pub fn phase(ctx: &Ctx, systems: &[Sys], rep: &mut Report) -> Result<(), String> {
    for keys in &ctx.args.state_keys {
        for s in systems {
            let r = recovery_case(ctx, s, *keys)?;
            eprintln!("kstreams-bench: {r:?}");
            rep.recovery.push(r);
        }
    }
    Ok(())
}

/// Sums `records=` and `elapsed_ms=` of the "restore done" lines of a kstreams log.
fn restore_stats(log: &Path) -> (u64, u64) {
    let raw = std::fs::read_to_string(log).unwrap_or_default();
    // Strip ANSI colour sequences (ESC [ ... m) around the field names.
    let mut text = String::with_capacity(raw.len());
    let mut in_escape = false;
    for c in raw.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (false, c) => text.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    let mut records = 0;
    let mut ms = 0;
    for line in text.lines().filter(|l| l.contains("restore done")) {
        for tok in line.split_whitespace() {
            if let Some(v) = tok.strip_prefix("records=") {
                records += v.parse::<u64>().unwrap_or(0);
            }
            if let Some(v) = tok.strip_prefix("elapsed_ms=") {
                ms += v.parse::<u64>().unwrap_or(0);
            }
        }
    }
    (records, ms)
}

fn produce_marker(bootstrap: &str, topic: &str, word: &str) -> Result<(), String> {
    let mut l = Loader::new(bootstrap, topic, 0)?;
    l.send(None, word.as_bytes())?;
    l.flush()
}

fn recovery_case(ctx: &Ctx, who: &Sys, keys: u64) -> Result<Recovery, String> {
    let system = who.system;
    if !matches!(system, System::Kstreams | System::KafkaStreams) {
        return Err("the recovery phase runs kstreams and kafka-streams only".into());
    }
    let sys = who.name();
    let name = format!("state-{sys}-{keys}");
    let input = format!("{name}-in");
    let output = format!("{name}-out");
    ctx.topic(&input, ctx.args.partitions)?;
    ctx.topic(&output, ctx.args.partitions)?;
    let mut expected = HashMap::new();
    {
        let mut l = Loader::new(&ctx.bootstrap, &input, 50)?;
        for i in 0..keys {
            let w = data::unique_word(i);
            l.send(None, w.as_bytes())?;
            expected.insert(w, 1u64);
        }
        l.flush()?;
    }
    // A short session timeout (as in tests/crash.rs), so the group drops the
    // killed member quickly; the same for both systems.
    let extra = ["session.timeout.ms=6000", "heartbeat.interval.ms=1000"];
    let argv = ctx.argv(who, App::WordCount, true, &name, &input, &output, &extra);
    eprintln!("kstreams-bench: recovery {name}: building {keys} keys of state ...");
    let mut job = Job::spawn(&argv, &ctx.log(&format!("{name}-1")))?;
    let w = watch::watch(
        &ctx.bootstrap,
        &output,
        &Expect::Counts {
            expected,
            at_least: false,
        },
        ctx.timeout(),
        false,
        || job.alive(),
    )?;
    let Some(done) = w.done else {
        return Err(format!("{name}: state not built within the timeout"));
    };
    let build_secs = (done - job.started).as_secs_f64();
    // A few more commits, so everything is checkpointed, then a crash.
    std::thread::sleep(Duration::from_secs(2));
    job.kill9();
    let (mut job, recovery_secs, log2) =
        restart_until_marker(ctx, &argv, &name, (&input, &output), 1)?;
    let (recovery_restored, _) = restore_stats(&log2);
    // Full restore: clean stop, state directory deleted, restart.
    job.terminate(Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(ctx.state_dir(&name));
    let (mut job, restore_total_secs, log3) =
        restart_until_marker(ctx, &argv, &name, (&input, &output), 2)?;
    job.terminate(Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(ctx.state_dir(&name));
    let (restored, restore_ms) = restore_stats(&log3);
    let changelog = format!("{name}-counts-changelog");
    let (raw_records, raw_secs) = watch::raw_consume(&ctx.bootstrap, &changelog)?;
    Ok(Recovery {
        system: sys,
        keys,
        build_secs,
        recovery_secs,
        recovery_restored: (system == System::Kstreams).then_some(recovery_restored),
        restore_total_secs,
        restored: (system == System::Kstreams).then_some(restored),
        restore_secs: (system == System::Kstreams).then_some(restore_ms as f64 / 1000.0),
        raw_records,
        raw_secs,
    })
}

/// Produces the line `marker<n>` to `topics.0`, starts the job again
/// (its log `<name>-<n + 1>`) and waits for that line's count in `topics.1`: the job, the
/// seconds from its start to that output (`None` on timeout), its log.
fn restart_until_marker(
    ctx: &Ctx,
    argv: &[String],
    name: &str,
    (input, output): (&str, &str),
    n: u32,
) -> Result<(Job, Option<f64>, PathBuf), String> {
    let marker = format!("marker{n}");
    produce_marker(&ctx.bootstrap, input, &marker)?;
    let log = ctx.log(&format!("{name}-{}", n + 1));
    let mut job = Job::spawn(argv, &log)?;
    let w = watch::watch(
        &ctx.bootstrap,
        output,
        &Expect::Key(marker),
        ctx.timeout(),
        false,
        || job.alive(),
    )?;
    let secs = w.done.map(|d| (d - job.started).as_secs_f64());
    Ok((job, secs, log))
}
