//! Memory that returns after a burst.
//!
//! With glibc's defaults, a burst leaves memory behind: freeing a large block (an
//! argon2 hash uses 19 MiB) raises the mmap threshold to its size, so the next large
//! blocks come from per-thread arenas, which keep what they had; thousands of short
//! connections leave fragmented arenas. Measured (`make soak`, docs/benchmarks.md), two
//! settings bring the resident size back down after a burst:
//! - a fixed `M_MMAP_THRESHOLD` of 1 MiB: larger blocks are always their own mapping,
//!   returned to the kernel when freed;
//! - `malloc_trim(0)` every 5 s, which hands free arena pages back (connection
//!   buffers of a burst of clients).
//!
//! `SCRIPTORIUM_MALLOC_TUNING=off` keeps glibc's defaults (to measure the difference).

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::time::Duration;

/// How often free arena memory is handed back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: Duration = Duration::from_secs(5);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn enabled() -> bool {
    std::env::var("SCRIPTORIUM_MALLOC_TUNING")
        .map(|v| v != "off")
        .unwrap_or(true)
}

/// Sets the allocator's parameters. Call before threads start.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if enabled() {
        // SAFETY: mallopt only changes glibc malloc's parameters; it is called before
        // the runtime starts any other thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        }
    }
}

/// Hands free heap memory back to the kernel every [`TRIM_EVERY`] (a blocking call,
/// on the blocking pool). Ends with the runtime.
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if enabled() {
        tokio::spawn(async {
            let mut tick = tokio::time::interval(TRIM_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // SAFETY: malloc_trim is thread-safe; it only releases free memory.
                let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
            }
        });
    }
}
