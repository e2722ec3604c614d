//! The chaos schedule: what happens to which node when, derived from the seed alone.
//!
//! What it owns: turning `(seed, secs, nodes)` into a timeline of node stops, node kills and proxy
//! faults, and the seeds of each client's and each proxy's own generator. The same seed gives the
//! same timeline (its fingerprint is printed, so a replay can be compared), whatever the machine.
//! What it does not own: carrying the events out (the driver) or timing races between processes,
//! which make two runs of one seed differ in detail though never in schedule.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// One chaos event, at a time from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGSTOP the node's process, SIGCONT it `for_` later. With `sweep_held`, its sweep lock is
    /// held meanwhile (as a survivor whose sweep failed midway leaves it): nobody sweeps it, and it
    /// wakes to find its lapsed entries still there, some moved aside by newer logins.
    Stop {
        node: usize,
        for_: Duration,
        sweep_held: bool,
    },
    /// SIGKILL the node's process, start a new one (a new node id) `down` later.
    Kill { node: usize, down: Duration },
    /// The node's Redis proxy forwards nothing for `for_`.
    Stall { node: usize, for_: Duration },
    /// The node's Redis proxy cuts its connections.
    Drop { node: usize },
    /// The node's Redis proxy delays each chunk by up to `max`, for `for_`.
    Delay {
        node: usize,
        max: Duration,
        for_: Duration,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Stop { .. } => "stop",
            Action::Kill { .. } => "kill",
            Action::Stall { .. } => "stall",
            Action::Drop { .. } => "drop",
            Action::Delay { .. } => "delay",
        }
    }
}

/// The timeline of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub events: Vec<(Duration, Action)>,
}

/// Derives an independent stream's seed (a client's, a proxy's) from the run's seed.
pub fn sub_seed(seed: u64, stream: u64) -> u64 {
    // splitmix64 of (seed, stream): well spread, and fixed forever (the replay depends on it).
    let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A generator for one stream of the run.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(sub_seed(seed, stream))
}

/// Stream ids: the schedule, the proxies (1000 + node), the clients (10_000 + client).
pub const SCHEDULE_STREAM: u64 = 1;
pub fn proxy_stream(node: usize) -> u64 {
    1000 + node as u64
}
pub fn client_stream(client: usize) -> u64 {
    10_000 + client as u64
}

fn ms(r: &mut ChaCha8Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(r.random_range(lo..=hi))
}

impl Schedule {
    /// The timeline for a run of `chaos` (the time faults may start in) over `nodes` nodes.
    ///
    /// Process events (stop, kill) never overlap, so at most one node is down or frozen at a time
    /// and the other nodes keep serving; proxy faults come on their own clock, per node. A stop lasts
    /// 1-6 s against a test lease of 2 s: most stopped nodes are presumed dead and swept, and must
    /// restore (or lose) their sessions when they wake. Nothing is scheduled in the first 3 s
    /// (warm-up) nor past `chaos`.
    pub fn new(seed: u64, chaos: Duration, nodes: usize) -> Schedule {
        let mut r = rng(seed, SCHEDULE_STREAM);
        let end = chaos.as_millis() as u64;
        let mut events = Vec::new();
        // Process events.
        let mut t = 3_000 + r.random_range(0..3_000u64);
        while t < end {
            let node = r.random_range(0..nodes);
            let (action, busy) = if r.random_bool(0.5) {
                let for_ = ms(&mut r, 1_000, 6_000);
                let sweep_held = r.random_bool(0.5);
                (
                    Action::Stop {
                        node,
                        for_,
                        sweep_held,
                    },
                    for_,
                )
            } else {
                let down = ms(&mut r, 500, 4_000);
                (Action::Kill { node, down }, down)
            };
            events.push((Duration::from_millis(t), action));
            t += busy.as_millis() as u64 + r.random_range(3_000..12_000u64);
        }
        // Proxy faults, one clock per node.
        for node in 0..nodes {
            let mut t = 3_000 + r.random_range(0..2_000u64);
            while t < end {
                let action = match r.random_range(0..10u32) {
                    0..=3 => Action::Delay {
                        node,
                        max: ms(&mut r, 5, 250),
                        for_: ms(&mut r, 1_000, 8_000),
                    },
                    4..=6 => Action::Stall {
                        node,
                        for_: ms(&mut r, 200, 3_000),
                    },
                    _ => Action::Drop { node },
                };
                events.push((Duration::from_millis(t), action));
                t += r.random_range(1_500..7_000u64);
            }
        }
        events.sort_by_key(|(t, _)| *t);
        Schedule { events }
    }

    /// How many events of each kind: (stop, kill, stall, drop, delay).
    pub fn counts(&self) -> [usize; 5] {
        let mut c = [0; 5];
        for (_, a) in &self.events {
            let i = match a {
                Action::Stop { .. } => 0,
                Action::Kill { .. } => 1,
                Action::Stall { .. } => 2,
                Action::Drop { .. } => 3,
                Action::Delay { .. } => 4,
            };
            c[i] += 1;
        }
        c
    }

    /// A short fingerprint of the whole timeline (FNV-1a over its text), printed with the seed.
    pub fn fingerprint(&self) -> String {
        let text = format!("{:?}", self.events);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_fixes_the_schedule() {
        let a = Schedule::new(42, Duration::from_secs(120), 3);
        let b = Schedule::new(42, Duration::from_secs(120), 3);
        let c = Schedule::new(43, Duration::from_secs(120), 3);
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        let [stop, kill, stall, drop, delay] = a.counts();
        assert!(stop + kill > 0 && stall + drop + delay > 0, "{a:?}");
    }

    #[test]
    fn process_events_never_overlap() {
        let s = Schedule::new(7, Duration::from_secs(300), 3);
        let mut busy_until = Duration::ZERO;
        for (t, a) in &s.events {
            let busy = match a {
                Action::Stop { for_, .. } => *for_,
                Action::Kill { down, .. } => *down,
                _ => continue,
            };
            assert!(*t >= busy_until, "{a:?} at {t:?} overlaps");
            busy_until = *t + busy;
        }
        assert!(s.events.iter().all(|(t, _)| *t < Duration::from_secs(300)));
    }

    #[test]
    fn sub_seeds_differ_per_stream() {
        assert_ne!(sub_seed(1, 1), sub_seed(1, 2));
        assert_ne!(sub_seed(1, 1), sub_seed(2, 1));
        assert_eq!(sub_seed(5, 9), sub_seed(5, 9));
    }
}
