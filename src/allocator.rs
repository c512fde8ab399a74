//! The memory allocator's settings, applied by each binary at start (the library forbids
//! unsafe code). finrep keeps glibc's allocator: measured against jemalloc and mimalloc on the
//! reference workloads (docs/benchmarks.md), glibc limited to one arena held the least memory.
//! By default glibc gives every thread that contends its own arena (up to eight per core),
//! each keeping freed memory for reuse: a run's fetch tasks, spread over the runtime's
//! threads, left three arenas of 5–6 MiB behind.
//!
//! And glibc raises its threshold for serving an allocation from `mmap` each time a large one
//! is freed, after which large blocks come from the heap and their holes stay resident: one
//! initial list of objects with 250 kB annotations left the controller 22 MiB larger for good.
//! A fixed threshold gives every block over it back to the system when freed.

/// Arenas glibc may create. One suffices: finrep's threads spend their time waiting on the
/// network and the database, not in the allocator.
pub const ARENAS: i32 = 1;

/// Blocks this large or larger are mapped on their own and unmapped when freed (glibc's
/// initial value, kept fixed).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Applies `ARENAS` and `MMAP_THRESHOLD`, each unless its environment variable
/// (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) is set: glibc reads those itself, and an
/// operator's or a benchmark's choice wins. Call first thing in `main`, before any thread.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (variable, parameter, value) in [
        ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, ARENAS),
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only changes a tunable of the allocator; no other thread
            // exists yet.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
}
