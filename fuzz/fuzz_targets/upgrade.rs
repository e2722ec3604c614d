//! The WebSocket upgrade request head: any bytes are refused or accepted, never a panic; an
//! accepted key is 16 bytes of base64 and its 101 answer can be built.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use imgate::edge::upgrade::{accept, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(up) => {
            let key = STANDARD.decode(up.key.as_bytes()).expect("accepted key is base64");
            assert_eq!(key.len(), 16, "accepted key is not 16 bytes");
            let answer = accept(&up.key);
            assert!(answer.starts_with(b"HTTP/1.1 101 "));
            for v in &up.forwarded_for {
                let _ = v.len();
            }
            let _ = up.origin;
        }
        Err(refusal) => {
            assert!(matches!(refusal.status, 400 | 404 | 426 | 431));
            let r = refusal.response();
            assert!(r.starts_with(b"HTTP/1.1 "));
        }
    }
});
