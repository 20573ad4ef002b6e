//! The example jobs' memory allocator: mimalloc, for every allocation in
//! the process, tuned to give memory back at once.
//!
//! Why another allocator: a profile of the order-aggregation job (perf,
//! `benches/RESULTS.md` run 46) had glibc's `malloc`/`free` at ~20% of its
//! CPU. Records are small, short-lived buffers allocated on one thread and
//! freed on another (librdkafka's delivery threads, the commit threads),
//! where glibc's arenas lock and consolidate. mimalloc's thread-local free
//! lists make both cheap.
//!
//! Why the `override` feature: most allocations are not Rust's. librdkafka
//! (C) copies every produced record, and RocksDB (C++) allocates per write.
//! `override` makes mimalloc the process's `malloc`/`free`, so those use it
//! too, not only Rust's `#[global_allocator]`.
//!
//! Why the tuning: by default mimalloc keeps freed pages for a second before
//! returning them to the OS and asks for transparent huge pages. Run 52
//! (1M orders): peak RSS 392 MiB untuned against glibc's 202 MiB; with
//! pages returned at once and THP off, 156 MiB at 1.35× glibc's
//! throughput. `MIMALLOC_PURGE_DELAY` / `MIMALLOC_ALLOW_THP` in the
//! environment still win over `tune()`.
//!
//! A library cannot choose its users' allocator; these are binaries, and
//! the README recommends the same few lines for production jobs. The
//! benchmark tool (`kstreams-bench`, whose `ceiling` job is the baseline)
//! includes this file too, so the ceiling runs with the same allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (stable across
/// mimalloc 2 and 3; libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    // In the mimalloc static library that `mimalloc` links.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// Returns freed memory to the OS at once and turns transparent huge
/// pages off for this process, unless the environment says otherwise.
/// Call it first thing in `main`, before other threads start.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain option write; mimalloc documents mi_option_set as
        // not thread-safe, and no other thread runs yet.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this
        // process; the result is ignored (THP merely stays allowed).
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}
