//! Codec benches: one encode + one decode of the two hottest frames, in both encodings.
//!
//! `codec/login/{json,bincode}`: a client `login` request (the gateway decodes one per login).
//! `codec/message/{json,bincode}`: a `message` push with a 256-byte payload (the gateway encodes one
//! per delivered `send`).
//!
//! Run with `cargo bench --bench codec`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imgate_proto::{
    decode_client, decode_server, encode_client, encode_server, ClientMsg, Encoding, Platform,
    ServerMsg,
};
use std::hint::black_box;

/// The gateway's default `max_frame_bytes`.
const MAX: usize = 65_536;

fn login() -> ClientMsg {
    ClientMsg::Login {
        seq: 1,
        sdk_app_id: 1_400_000_000,
        user_id: "alice".to_owned(),
        // The length of a real TLSSigAPIv2 UserSig.
        user_sig: "eJwtzEELgjAYxvHvsrOEm9ty3sIihCIiD9ZNtrm9mrrmDCP67onb9fc8-H*ovJTJqGeUIZIguIkeEsyigSZKkgy1yvWzbC18EQpFzRlhDCKGzYXyf15zrZ22nOpk_WuxgnNGZ2MeFh8sSeL7hxOxLjt-3c6VtLb9Ftps0xtw7x00ryZZvt2e-lcJNRTVsBZaCqA6lkg1wAMBj3x4LPy-fyBdhdlM.xyz".to_owned(),
        platform: "web".to_owned(),
        instance_id: Some("tab-1".to_owned()),
    }
}

fn message() -> ServerMsg {
    ServerMsg::Message {
        from: "alice".to_owned(),
        from_platform: Some(Platform::Web),
        payload: "x".repeat(256),
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for (name, enc) in [("json", Encoding::Json), ("bincode", Encoding::Bincode)] {
        let msg = login();
        group.throughput(Throughput::Bytes(encode_client(enc, &msg).len() as u64));
        group.bench_function(format!("login/{name}"), |b| {
            b.iter(|| {
                let bytes = encode_client(enc, black_box(&msg));
                decode_client(enc, black_box(&bytes), MAX).expect("decodes")
            })
        });

        let msg = message();
        group.throughput(Throughput::Bytes(encode_server(enc, &msg).len() as u64));
        group.bench_function(format!("message/{name}"), |b| {
            b.iter(|| {
                let bytes = encode_server(enc, black_box(&msg));
                decode_server(enc, black_box(&bytes), MAX).expect("decodes")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
