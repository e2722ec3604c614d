//! Presence registry benches (`src/presence/registry.rs`), with the `dual` policy, on a registry already
//! holding 100,000 logged-in users (so the map is out of cache, as in a busy gateway).
//!
//! `registry/login_no_kick`: a login of a user with no other instance (the common case).
//! `registry/login_kick`: a login of a user already logged in on the same platform: the old instance
//! is evicted and returned as a victim.
//! `registry/logout`: removing a logged-in session (the user leaves the map).
//!
//! Run with `cargo bench --bench registry`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use imgate::outbox::Outbox;
use imgate::policy::Policy;
use imgate::presence::registry::{Login, Registry, Takeover};
use imgate_proto::Platform;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const APP: u64 = 1_400_000_000;
const POPULATION: usize = 100_000;
const IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn login<'a>(user: &'a str, conn: &'a Arc<Outbox>) -> Login<'a> {
    Login {
        app: APP,
        user,
        conn,
        platform: Platform::Web,
        instance_id: None,
        expire_at: 1_700_086_400,
        tls_time: 1_700_000_000,
        now_us: 1_700_000_000_000_000,
        takeover: Takeover::None,
    }
}

/// A registry holding `POPULATION` users `p0..`, one web instance each.
fn populated(policy: &Policy, outboxes: &[Arc<Outbox>]) -> (Registry, Vec<String>) {
    let r = Registry::new();
    let users: Vec<String> = (0..POPULATION).map(|i| format!("p{i}")).collect();
    for (i, u) in users.iter().enumerate() {
        r.login(policy, login(u, &outboxes[i % outboxes.len()]))
            .expect("admitted");
    }
    (r, users)
}

fn registry_benches(c: &mut Criterion) {
    let policy = Policy::preset("dual").expect("preset");
    let outboxes: Vec<Arc<Outbox>> = (0..1024)
        .map(|i| Arc::new(Outbox::new(i, IP, 256)))
        .collect();
    let (registry, users) = populated(&policy, &outboxes);
    let mut g = c.benchmark_group("registry");

    // Fresh user names each sample, logged out again after it (untimed): the map stays near
    // `POPULATION` users instead of growing by every timed login.
    g.bench_function("login_no_kick", |b| {
        b.iter_custom(|iters| {
            let names: Vec<String> = (0..iters).map(|i| format!("n{i}")).collect();
            let mut sessions = Vec::with_capacity(names.len());
            let t = Instant::now();
            for (i, u) in names.iter().enumerate() {
                let out = registry
                    .login(&policy, login(u, &outboxes[i % outboxes.len()]))
                    .expect("admitted");
                debug_assert!(out.victims.is_empty());
                sessions.push(out.session);
            }
            let elapsed = t.elapsed();
            for (u, s) in names.iter().zip(sessions) {
                registry.remove(APP, u, s);
            }
            elapsed
        })
    });

    g.bench_function("login_kick", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 7919) % POPULATION;
            let out = registry
                .login(&policy, login(&users[i], &outboxes[i % outboxes.len()]))
                .expect("admitted");
            debug_assert_eq!(out.victims.len(), 1);
            black_box(out)
        })
    });

    g.bench_function("logout", |b| {
        let mut next = 0usize;
        b.iter_batched(
            || {
                let u = format!("o{next}");
                next += 1;
                let s = registry
                    .login(&policy, login(&u, &outboxes[next % outboxes.len()]))
                    .expect("admitted")
                    .session;
                (u, s)
            },
            |(u, s)| {
                let removed = registry.remove(APP, &u, s).is_some();
                debug_assert!(removed);
                (u, removed)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = registry_benches
}
criterion_main!(benches);
