//! PROXY protocol headers and X-Forwarded-For: `source` on any bytes, `read_header` on an
//! in-memory stream (what it returns is a prefix of the input, within the v1/v2 bounds, and
//! `source` then accepts or refuses it), and `client_address` with arbitrary trusted nets, peer and
//! header values (the answer is the peer or an address named by the values).
#![no_main]

use imgate::edge::proxy::{canonical, client_address, is_trusted, read_header, source, MAX_V2_BODY};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::sync::OnceLock;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("current-thread runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = source(rest);
        let mut io = rest;
        if let Ok(h) = rt().block_on(read_header(&mut io)) {
            assert!(rest.starts_with(&h), "read_header returned bytes it did not read");
            assert_eq!(io.len(), rest.len() - h.len(), "read_header consumed more than the header");
            assert!(h.len() <= (16 + MAX_V2_BODY).max(107));
            let _ = source(&h);
        }
        return;
    }
    // Text mode: line 1 = trusted nets (space-separated), line 2 = peer, the rest = header values.
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let trusted: Vec<IpNet> = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .filter_map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect();
    let peer: IpAddr = lines
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(IpAddr::from([10, 0, 0, 1]));
    let values: Vec<&str> = lines.collect();
    let got = client_address(&trusted, peer, values.iter().copied());
    if !is_trusted(&trusted, peer) {
        assert_eq!(got, peer, "an untrusted peer's X-Forwarded-For was used");
    } else if got != peer {
        assert!(!is_trusted(&trusted, got), "the client is a trusted proxy");
        assert_eq!(got, canonical(got), "the client address is not canonical");
    }
});
