//! The failed-verification throttle (contract §2, code 70050).
//!
//! Per (app, user, client IP): once `max_failures` UserSig failures fall within the sliding window of
//! `window_secs`, every further login or `refresh_sig` for that key answers 70050 until enough of them
//! have slid out of the window. A success does not reset it; a 70050 answer does not count.
//!
//! Memory is bounded: keys are 64-bit keyed hashes (no user strings kept), each holds at most
//! `max_failures` timestamps, and past `max_keys` keys the stale ones are swept and, if still full,
//! the ones with the oldest last failure are dropped.

use crate::config::ThrottleConfig;
use dashmap::DashMap;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

#[derive(Debug)]
pub struct Throttle {
    failures: DashMap<u64, VecDeque<u64>>,
    hasher: RandomState,
    max_failures: usize,
    window_ms: u64,
    max_keys: usize,
}

impl Throttle {
    pub fn new(cfg: &ThrottleConfig) -> Throttle {
        Throttle {
            failures: DashMap::new(),
            hasher: RandomState::new(),
            max_failures: cfg.max_failures as usize,
            window_ms: cfg.window_secs.saturating_mul(1000),
            max_keys: cfg.max_keys,
        }
    }

    fn key(&self, app: u64, user: &str, ip: IpAddr) -> u64 {
        self.hasher.hash_one((app, user, ip))
    }

    /// Whether the key has reached the limit within the window ending at `now_ms`.
    pub fn is_blocked(&self, app: u64, user: &str, ip: IpAddr, now_ms: u64) -> bool {
        let from = now_ms.saturating_sub(self.window_ms);
        self.failures
            .get(&self.key(app, user, ip))
            .is_some_and(|f| f.iter().filter(|&&t| t > from).count() >= self.max_failures)
    }

    /// Counts one failed verification.
    pub fn record_failure(&self, app: u64, user: &str, ip: IpAddr, now_ms: u64) {
        let key = self.key(app, user, ip);
        if self.failures.len() >= self.max_keys && !self.failures.contains_key(&key) {
            self.make_room(now_ms);
        }
        let mut f = self.failures.entry(key).or_default();
        let from = now_ms.saturating_sub(self.window_ms);
        while f.front().is_some_and(|&t| t <= from) {
            f.pop_front();
        }
        if f.len() >= self.max_failures {
            f.pop_front();
        }
        f.push_back(now_ms);
    }

    fn make_room(&self, now_ms: u64) {
        let from = now_ms.saturating_sub(self.window_ms);
        self.failures
            .retain(|_, f| f.back().is_some_and(|&t| t > from));
        if self.failures.len() >= self.max_keys {
            // Still full of live keys: forget the tenth with the oldest last failure.
            let mut lasts: Vec<u64> = self
                .failures
                .iter()
                .map(|e| e.value().back().copied().unwrap_or(0))
                .collect();
            let cut = lasts.len() / 10;
            let (_, &mut nth, _) = lasts.select_nth_unstable(cut);
            self.failures
                .retain(|_, f| f.back().is_some_and(|&t| t > nth));
        }
    }

    /// Tracked keys (for tests and metrics).
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(max: u32, window: u64, keys: usize) -> Throttle {
        Throttle::new(&ThrottleConfig {
            max_failures: max,
            window_secs: window,
            max_keys: keys,
        })
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const IP2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn blocks_after_max_failures_and_slides() {
        let t = throttle(5, 60, 100);
        for i in 0..5 {
            assert!(!t.is_blocked(1, "u", IP, 1000 + i));
            t.record_failure(1, "u", IP, 1000 + i * 1000);
        }
        assert!(t.is_blocked(1, "u", IP, 5000));
        assert!(!t.is_blocked(1, "v", IP, 5000), "other users unaffected");
        assert!(!t.is_blocked(1, "u", IP2, 5000), "other IPs unaffected");
        assert!(!t.is_blocked(2, "u", IP, 5000), "other apps unaffected");
        // a failure counts while less than the window old: the first (t=1000) slides out at 61000
        assert!(t.is_blocked(1, "u", IP, 60_999));
        assert!(!t.is_blocked(1, "u", IP, 61_000));
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_users() {
        let t = throttle(5, 60, 1000);
        for i in 0..50_000u64 {
            t.record_failure(1, &format!("user{i}"), IP, 1000 + i);
        }
        assert!(t.len() <= 1000, "{}", t.len());
        // the most recent offender is still tracked
        for _ in 0..4 {
            t.record_failure(1, "user49999", IP, 60_000);
        }
        assert!(t.is_blocked(1, "user49999", IP, 60_001));
    }
}
