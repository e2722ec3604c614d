//! Gives the heap that a mass disconnect freed back to the OS (glibc's `malloc_trim`, through the
//! `imgate-trim` crate).
//!
//! What it owns: one task that looks at the number of open sockets every second and, when it has
//! fallen by at least [`MIN_DROP`] sockets and by a quarter from the highest count seen since the
//! last trim, calls `malloc_trim(0)` on a blocking thread, at most once per [`MIN_GAP`]. glibc keeps
//! freed small chunks in its arenas: without this, the RSS of a gateway whose 19,000 clients left
//! stays near its high-water mark (BENCHMARKS.md, "Soak", measures the three choices).
//!
//! What it does not own: the allocator, which stays glibc's: jemalloc with background purging gave
//! memory back about as well (within 3 MB), for a C library more to build (BENCHMARKS.md, "Soak").
//! `IMGATE_MALLOC_TRIM=0` in the environment turns the task off (to measure glibc as it is).

use crate::gateway::Gateway;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A trim needs at least this many sockets gone since the high-water mark.
pub const MIN_DROP: usize = 1000;
/// And at least this long since the previous trim.
pub const MIN_GAP: Duration = Duration::from_secs(10);

/// Whether the sockets fell enough from `high` (the most since the last trim) to `now` to trim.
pub fn due(high: usize, now: usize) -> bool {
    high.saturating_sub(now) >= MIN_DROP.max(high / 4)
}

fn enabled() -> bool {
    std::env::var("IMGATE_MALLOC_TRIM").map_or(true, |v| v != "0")
}

/// Runs until aborted (at shutdown).
pub async fn run(gw: Arc<Gateway>) {
    if !enabled() {
        return;
    }
    tracing::debug!(heap_in_use = imgate_trim::in_use(), "heap at start");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut high = 0;
    let mut last: Option<Instant> = None;
    loop {
        tick.tick().await;
        let now = gw.conns.len();
        high = high.max(now);
        if !due(high, now) || last.is_some_and(|t| t.elapsed() < MIN_GAP) {
            continue;
        }
        let t0 = Instant::now();
        let (released, in_use) =
            tokio::task::spawn_blocking(|| (imgate_trim::trim(), imgate_trim::in_use()))
                .await
                .unwrap_or((false, None));
        tracing::debug!(
            from = high,
            to = now,
            released,
            heap_in_use = in_use,
            ms = t0.elapsed().as_millis() as u64,
            "malloc_trim after sockets left"
        );
        last = Some(Instant::now());
        high = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_a_large_drop_only() {
        assert!(!due(0, 0));
        assert!(!due(500, 0), "fewer than MIN_DROP sockets left");
        assert!(due(1000, 0));
        assert!(due(19_000, 14_000));
        assert!(!due(19_000, 15_000), "less than a quarter left");
        assert!(!due(100_000, 99_000));
        assert!(due(100_000, 75_000));
    }
}
