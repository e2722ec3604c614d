//! UserSig benches (contract §2), on the FACTS.md reference ticket (PyPI `tls-sig-api-v2`, clock
//! fixed at 1700000000, identifier `xiaojun`, expire 86400).
//!
//! `usersig/verify`: decode + every check, what a login pays (base64, inflate, JSON, HMAC).
//! `usersig/decode`: base64 + inflate + JSON only.
//! `usersig/check_decoded`: the checks on an already decoded ticket (HMAC-SHA256 from the pre-keyed
//! state, constant-time compare, expiry).
//! `usersig/generate`: minting one (HMAC, JSON, deflate, base64).
//!
//! Run with `cargo bench --bench usersig`.

use criterion::{criterion_group, criterion_main, Criterion};
use imgate::usersig::{self, SigKey};
use std::hint::black_box;
use std::time::Duration;

const APP: u64 = 1_400_000_000;
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const USER: &str = "xiaojun";
const SIG: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpQJlLMxM4IIlmbkgIUNzNMXFmekg44P93EzccsOcA0qT8yOKnfwLksLcjNPcnNNMzb0Ccg1Sq6IMs1LDPH1ywpJtlWoBk68y0A__";
/// Within the ticket's lifetime (TLS.time 1700000000 + 86400).
const NOW_MS: u64 = 1_700_000_000_000 + 1;

fn usersig_benches(c: &mut Criterion) {
    let key = SigKey::new(KEY);
    usersig::verify(SIG, Some(&key), APP, USER, NOW_MS).expect("the reference ticket is valid");
    let decoded = usersig::decode(SIG).expect("decodes");

    let mut g = c.benchmark_group("usersig");
    g.bench_function("verify", |b| {
        b.iter(|| usersig::verify(black_box(SIG), Some(&key), APP, USER, NOW_MS).is_ok())
    });
    g.bench_function("decode", |b| b.iter(|| usersig::decode(black_box(SIG))));
    g.bench_function("check_decoded", |b| {
        b.iter(|| {
            black_box(&decoded)
                .verify(Some(std::slice::from_ref(&key)), APP, USER, NOW_MS)
                .is_ok()
        })
    });
    g.bench_function("generate", |b| {
        b.iter(|| usersig::generate(&key, APP, black_box(USER), 86_400, 1_700_000_000, None))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = usersig_benches
}
criterion_main!(benches);
