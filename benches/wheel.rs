//! Expiry wheel benches (`src/expiry.rs`) with the gateway's payload ([`Target`]: the socket's outbox
//! handle and the session id), at 1,000,000 live entries whose deadlines are spread over 180 days
//! (the default lifetime of `imgate sig gen`).
//!
//! `wheel/schedule_cancel_1M`: cancel one live entry and schedule a replacement, in random order, so
//! the live count stays at 1M (what a refresh_sig or a relogin does).
//! `wheel/fire_1M`: per entry fired: entries due in one second fire while the 1M others wait.
//! `wheel/tick_1M`: the driver's per-second walk with nothing due (one slot, ~1M/4096 entries that
//! are due on a later lap).
//! The bytes per entry (`Wheel::<Target>::entry_size()`) are printed first.
//!
//! Run with `cargo bench --bench wheel`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imgate::expiry::{Target, Wheel, WheelKey};
use imgate::outbox::Outbox;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: u64 = 1_700_000_000;
const LIVE: usize = 1_000_000;
const SPREAD_SECS: u64 = 180 * 24 * 3600;

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The live entries are due from here on, over 180 days: far enough that the clock the benches move
/// never reaches them.
const BASE: u64 = T0 + 10_000_000;

/// A wheel at `T0` with `LIVE` entries due over 180 days from `BASE`, and their keys.
fn loaded(outbox: &Arc<Outbox>, rng: &mut Rng) -> (Wheel<Target>, Vec<WheelKey>) {
    let mut w = Wheel::new(T0);
    let keys = (0..LIVE)
        .map(|i| {
            let d = BASE + rng.next() % SPREAD_SECS;
            w.schedule(d, (Arc::clone(outbox), i as u64))
        })
        .collect();
    (w, keys)
}

fn wheel_benches(c: &mut Criterion) {
    let size = Wheel::<Target>::entry_size();
    println!("wheel: {size} bytes per entry (Wheel::<Target>::entry_size()); at 1M live entries the slab holds 1M x {size} B (+ Vec growth slack) + 4096 x 4 B of slot heads");
    let outbox = Arc::new(Outbox::new(1, std::net::Ipv4Addr::LOCALHOST.into(), 256));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut w, mut keys) = loaded(&outbox, &mut rng);
    // Visit the keys in a random order so each cancel hits a cold entry.
    let mut order: Vec<u32> = (0..LIVE as u32).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let deadlines: Vec<u64> = (0..LIVE).map(|_| BASE + rng.next() % SPREAD_SECS).collect();

    let mut g = c.benchmark_group("wheel");
    g.bench_function("schedule_cancel_1M", |b| {
        let mut n = 0usize;
        b.iter(|| {
            let k = order[n % LIVE] as usize;
            let item = w.cancel(keys[k]).expect("live");
            keys[k] = w.schedule(deadlines[n % LIVE], item);
            n += 1;
        })
    });
    assert_eq!(w.len(), LIVE);

    // The clock moves on from here; the 1M live entries are due much later (see `BASE`).
    let mut now = T0;
    g.throughput(Throughput::Elements(1));
    g.bench_function("fire_1M", |b| {
        let mut fired = Vec::new();
        b.iter_custom(|iters| {
            // `iters` entries due in the next second, in the slot that also holds ~244 of the 1M.
            for i in 0..iters {
                w.schedule(now + 1, (Arc::clone(&outbox), i));
            }
            fired.clear();
            fired.reserve(iters as usize);
            now += 1;
            let t = Instant::now();
            w.advance(now * 1000 + 1, &mut fired);
            let elapsed = t.elapsed();
            assert_eq!(fired.len() as u64, iters);
            fired.clear();
            elapsed
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("tick_1M", |b| {
        let mut fired = Vec::new();
        b.iter(|| {
            now += 1;
            w.advance(now * 1000 + 1, &mut fired);
        });
        assert!(fired.is_empty());
    });
    assert_eq!(w.len(), LIVE);
    g.finish();
    black_box(&keys);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = wheel_benches
}
criterion_main!(benches);
