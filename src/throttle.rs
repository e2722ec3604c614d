//! The failed-verification throttle (contract §2 and §16, code 70050).
//!
//! Per (app, user, client address): once `max_failures` UserSig failures fall within the sliding
//! window of `window_secs`, every further login or `refresh_sig` for that key answers 70050 until
//! enough of them have slid out of the window. A success does not reset it; a 70050 answer does
//! not count. Per client address: once it has `max_failures_per_ip` failures in the window, its
//! attempts answer 70050 for every user (an IPv6 address counts by its /64).
//!
//! Memory is bounded: keys are 64-bit keyed hashes (no user strings kept), each holds at most
//! `max_failures` timestamps, an address a two-window counter; past `max_keys` keys the stale ones
//! are swept and, if still full, those with the oldest last failure are dropped, but never a key
//! that is throttled now: failures for made-up users cannot flush a throttled key (§16).
//!
//! The settings are passed with each call (they come from the login's configuration snapshot, so
//! a reload applies to the next login).

use crate::config::ThrottleConfig;
use crate::edge::limits::IpKey;
use dashmap::DashMap;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

/// An address's failures in the current and the previous window: the count in the sliding window
/// is estimated as `current + previous * (the part of the previous window still inside it)`.
#[derive(Debug, Clone, Copy, Default)]
struct Windowed {
    /// Start of the current window (ms).
    start: u64,
    current: u32,
    previous: u32,
}

impl Windowed {
    fn roll(&mut self, now_ms: u64, window_ms: u64) {
        if now_ms >= self.start + window_ms {
            let windows = (now_ms - self.start) / window_ms;
            self.previous = if windows == 1 { self.current } else { 0 };
            self.current = 0;
            self.start += windows * window_ms;
        }
    }

    fn estimate(&self, now_ms: u64, window_ms: u64) -> f64 {
        let into = now_ms.saturating_sub(self.start).min(window_ms) as f64;
        let left = 1.0 - into / window_ms as f64;
        f64::from(self.current) + f64::from(self.previous) * left
    }
}

/// The throttle's state.
#[derive(Debug)]
pub struct Throttle {
    failures: DashMap<u64, VecDeque<u64>>,
    per_ip: DashMap<IpKey, Windowed>,
    hasher: RandomState,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

fn window_ms(p: &ThrottleConfig) -> u64 {
    p.window_secs.saturating_mul(1000).max(1)
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle {
            failures: DashMap::new(),
            per_ip: DashMap::new(),
            hasher: RandomState::new(),
        }
    }

    fn key(&self, app: u64, user: &str, ip: IpAddr) -> u64 {
        self.hasher.hash_one((app, user, IpKey::of(ip)))
    }

    fn key_blocked(p: &ThrottleConfig, f: &VecDeque<u64>, now_ms: u64) -> bool {
        let from = now_ms.saturating_sub(window_ms(p));
        f.iter().filter(|&&t| t > from).count() >= p.max_failures as usize
    }

    fn ip_blocked(&self, p: &ThrottleConfig, ip: IpAddr, now_ms: u64) -> bool {
        if p.max_failures_per_ip == 0 {
            return false;
        }
        let w = window_ms(p);
        self.per_ip.get(&IpKey::of(ip)).is_some_and(|c| {
            let mut c = *c;
            c.roll(now_ms, w);
            c.estimate(now_ms, w) >= f64::from(p.max_failures_per_ip)
        })
    }

    /// Whether the attempt answers 70050: its key, or its whole address, is over the limit.
    pub fn is_blocked(
        &self,
        p: &ThrottleConfig,
        app: u64,
        user: &str,
        ip: IpAddr,
        now_ms: u64,
    ) -> bool {
        self.failures
            .get(&self.key(app, user, ip))
            .is_some_and(|f| Self::key_blocked(p, &f, now_ms))
            || self.ip_blocked(p, ip, now_ms)
    }

    /// Counts one failed verification.
    pub fn record_failure(
        &self,
        p: &ThrottleConfig,
        app: u64,
        user: &str,
        ip: IpAddr,
        now_ms: u64,
    ) {
        let w = window_ms(p);
        let key = self.key(app, user, ip);
        if self.failures.len() >= p.max_keys && !self.failures.contains_key(&key) {
            self.make_room(p, now_ms);
            if self.failures.len() >= p.max_keys {
                // Every key left is throttled now: those stay; this failure still counts for
                // its address below.
                self.count_ip(p, ip, now_ms, w);
                return;
            }
        }
        {
            let mut f = self.failures.entry(key).or_default();
            let from = now_ms.saturating_sub(w);
            while f.front().is_some_and(|&t| t <= from) {
                f.pop_front();
            }
            if f.len() >= (p.max_failures as usize).max(1) {
                f.pop_front();
            }
            f.push_back(now_ms);
        }
        self.count_ip(p, ip, now_ms, w);
    }

    fn count_ip(&self, p: &ThrottleConfig, ip: IpAddr, now_ms: u64, w: u64) {
        if p.max_failures_per_ip == 0 {
            return;
        }
        let k = IpKey::of(ip);
        if self.per_ip.len() >= p.max_keys && !self.per_ip.contains_key(&k) {
            // Make room: addresses that are not throttled now go (a throttled one stays, like a
            // throttled key: failures from other addresses cannot flush it).
            let limit = f64::from(p.max_failures_per_ip);
            self.per_ip.retain(|_, c| {
                let mut c = *c;
                c.roll(now_ms, w);
                c.estimate(now_ms, w) >= limit
            });
            if self.per_ip.len() >= p.max_keys {
                return;
            }
        }
        let mut c = self.per_ip.entry(k).or_insert(Windowed {
            start: now_ms,
            ..Windowed::default()
        });
        c.roll(now_ms, w);
        c.current = c.current.saturating_add(1);
    }

    /// Makes room for a new key: stale keys go, then, if still full, the tenth of the unthrottled
    /// keys with the oldest last failure. A throttled key is never dropped.
    fn make_room(&self, p: &ThrottleConfig, now_ms: u64) {
        let from = now_ms.saturating_sub(window_ms(p));
        self.failures
            .retain(|_, f| f.back().is_some_and(|&t| t > from));
        if self.failures.len() < p.max_keys {
            return;
        }
        let mut lasts: Vec<u64> = self
            .failures
            .iter()
            .filter(|e| !Self::key_blocked(p, e.value(), now_ms))
            .map(|e| e.value().back().copied().unwrap_or(0))
            .collect();
        if lasts.is_empty() {
            return;
        }
        let cut = lasts.len() / 10;
        let (_, &mut nth, _) = lasts.select_nth_unstable(cut);
        self.failures
            .retain(|_, f| Self::key_blocked(p, f, now_ms) || f.back().is_some_and(|&t| t > nth));
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

    fn params(max: u32, window: u64, keys: usize, per_ip: u32) -> ThrottleConfig {
        ThrottleConfig {
            max_failures: max,
            window_secs: window,
            max_keys: keys,
            max_failures_per_ip: per_ip,
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const IP2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn blocks_after_max_failures_and_slides() {
        let (t, p) = (Throttle::new(), params(5, 60, 100, 0));
        for i in 0..5 {
            assert!(!t.is_blocked(&p, 1, "u", IP, 1000 + i));
            t.record_failure(&p, 1, "u", IP, 1000 + i * 1000);
        }
        assert!(t.is_blocked(&p, 1, "u", IP, 5000));
        assert!(
            !t.is_blocked(&p, 1, "v", IP, 5000),
            "other users unaffected"
        );
        assert!(!t.is_blocked(&p, 1, "u", IP2, 5000), "other IPs unaffected");
        assert!(!t.is_blocked(&p, 2, "u", IP, 5000), "other apps unaffected");
        // a failure counts while less than the window old: the first (t=1000) slides out at 61000
        assert!(t.is_blocked(&p, 1, "u", IP, 60_999));
        assert!(!t.is_blocked(&p, 1, "u", IP, 61_000));
    }

    #[test]
    fn memory_is_bounded_and_a_throttled_key_is_never_flushed() {
        let (t, p) = (Throttle::new(), params(5, 60, 1000, 0));
        for _ in 0..5 {
            t.record_failure(&p, 1, "victim", IP, 1000);
        }
        assert!(t.is_blocked(&p, 1, "victim", IP, 1001));
        for i in 0..50_000u64 {
            t.record_failure(&p, 1, &format!("user{i}"), IP2, 1000 + i);
        }
        assert!(t.len() <= 1000, "{}", t.len());
        assert!(
            t.is_blocked(&p, 1, "victim", IP, 51_001),
            "failures for made-up users do not flush a throttled key"
        );
        // the most recent offender is still tracked
        for _ in 0..4 {
            t.record_failure(&p, 1, "user49999", IP2, 60_000);
        }
        assert!(t.is_blocked(&p, 1, "user49999", IP2, 60_001));
    }

    #[test]
    fn an_address_with_many_failures_is_throttled_for_every_user() {
        let (t, p) = (Throttle::new(), params(5, 60, 100_000, 100));
        for i in 0..99u64 {
            t.record_failure(&p, 1, &format!("u{i}"), IP, 1000 + i);
        }
        assert!(!t.is_blocked(&p, 1, "fresh", IP, 2000));
        t.record_failure(&p, 1, "u99", IP, 2000);
        assert!(
            t.is_blocked(&p, 1, "fresh", IP, 2001),
            "every user of that address"
        );
        assert!(t.is_blocked(&p, 7, "other-app", IP, 2001));
        assert!(
            !t.is_blocked(&p, 1, "fresh", IP2, 2001),
            "other addresses unaffected"
        );
        // the window slides: two windows later the address is free again
        assert!(!t.is_blocked(&p, 1, "fresh", IP, 2000 + 120_000));
        let off = params(5, 60, 100_000, 0);
        assert!(!t.is_blocked(&off, 1, "fresh", IP, 2001), "0 turns it off");
    }
}
