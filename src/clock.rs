//! Wall-clock time in the units the protocol uses (UserSig times are unix seconds, `now` is compared
//! with millisecond precision).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the unix epoch.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Milliseconds on a monotonic clock since the process started (for rate budgets).
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// A token bucket in 8 bytes: `rate` tokens a second, up to `2 * rate` (the burst), one token per
/// event. Time is the monotonic [`mono_ms`], kept in 32 bits (an elapsed time of more than 49
/// days between two events refills less than it could; a socket is never that idle).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Tokens in thousandths.
    milli: u32,
    last_ms: u32,
}

impl Budget {
    /// A full bucket.
    pub fn full(rate: u32) -> Budget {
        Budget {
            milli: rate.saturating_mul(2000),
            last_ms: mono_ms() as u32,
        }
    }

    /// Takes one token; false when the budget is spent (nothing taken). `rate` 0: unlimited.
    pub fn take(&mut self, rate: u32, now_ms: u64) -> bool {
        if rate == 0 {
            return true;
        }
        let now = now_ms as u32;
        let elapsed = u64::from(now.wrapping_sub(self.last_ms));
        self.last_ms = now;
        let cap = u64::from(rate) * 2000;
        // rate tokens a second = rate thousandths of a token per millisecond
        let level = (u64::from(self.milli) + elapsed * u64::from(rate)).min(cap);
        if level < 1000 {
            self.milli = level as u32;
            return false;
        }
        self.milli = (level - 1000) as u32;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_allows_its_burst_then_its_rate() {
        let t0 = 1_000_000u64;
        let mut b = Budget {
            milli: 20 * 2000,
            last_ms: t0 as u32,
        };
        let burst = (0..100).filter(|_| b.take(20, t0)).count();
        assert_eq!(burst, 40, "a burst of twice the rate");
        assert!(!b.take(20, t0));
        // 20 a second: one token every 50 ms
        assert!(!b.take(20, t0 + 49));
        assert!(b.take(20, t0 + 50 + 1));
        let later = (0..100).filter(|_| b.take(20, t0 + 1_051)).count();
        assert_eq!(later, 20, "a second refills the rate");
        let mut free = Budget::full(0);
        assert!((0..10_000).all(|_| free.take(0, t0)));
    }
}
