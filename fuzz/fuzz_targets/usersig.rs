//! UserSig decoding and verification never panic. The first byte picks the mode:
//! - 0..=2 (mod 8): the rest (as UTF-8, lossily) is the ticket itself (alphabet, base64, zlib, JSON);
//! - 3..=6: the rest is the JSON document, zlib-wrapped (stored blocks) and base64'd into a ticket here, so the
//!   fuzzer reaches the JSON parser and the field checks;
//! - 7: the rest names a ticket's fields; `generate` mints it, and it must verify with its key
//!   (and fail with another key or another user).
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use imgate_usersig::{decode, generate, verify, SigError, SigKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const APP: u64 = 1_400_000_000;
const NOW_MS: u64 = 1_700_000_000_000;

fn keys() -> &'static (SigKey, SigKey) {
    static K: OnceLock<(SigKey, SigKey)> = OnceLock::new();
    K.get_or_init(|| (SigKey::new("k"), SigKey::new("other")))
}

/// A zlib stream of stored (uncompressed) deflate blocks: what any inflater accepts, built without
/// a compressor (setting one up per input would cost more than the whole check).
fn zlib_stored(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 16);
    out.extend_from_slice(&[0x78, 0x01]);
    let mut chunks = bytes.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

fn to_ticket(bytes: &[u8]) -> String {
    STANDARD
        .encode(zlib_stored(bytes))
        .chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

fn check(ticket: &str, user: &str) {
    let (k, _) = keys();
    match decode(ticket) {
        Ok(d) => {
            let _ = (d.expire_at(), d.is_expired(NOW_MS));
            for now in [0, NOW_MS, u64::MAX] {
                if let Err(e) = d.verify(Some(std::slice::from_ref(k)), APP, user, now) {
                    let _ = (e.code(), e.to_string());
                }
            }
            let _ = d.verify(None, APP, user, NOW_MS);
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
        }
    }
    let _ = verify(ticket, Some(k), APP, user, NOW_MS);
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    for (j, x) in a.iter_mut().enumerate() {
        *x = b.get(i + j).copied().unwrap_or(0);
    }
    u64::from_le_bytes(a)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 8 {
        0..=2 => {
            let s = String::from_utf8_lossy(rest);
            check(&s, "alice");
        }
        3..=6 => {
            let ticket = to_ticket(rest);
            check(&ticket, "alice");
            // The identifier the document names, when it has one, reaches the HMAC check.
            if let Ok(d) = decode(&ticket) {
                check(&ticket, &d.identifier);
            }
        }
        _ => {
            // [sdkappid 8][time 8][expire 8][flags 1][identifier / userbuf ...]
            if rest.len() < 25 {
                return;
            }
            let app = u64_at(rest, 0);
            let time = u64_at(rest, 8);
            let expire = u64_at(rest, 16);
            let flags = rest[24];
            let text = String::from_utf8_lossy(&rest[25..]);
            let (id, ub) = match text.split_once('\u{0}') {
                Some((a, b)) if flags & 1 == 1 => (a, Some(b)),
                _ => (&*text, None),
            };
            if id.len() > 512 || ub.is_some_and(|u| u.len() > 512) {
                return;
            }
            let (k, other) = keys();
            let ticket = generate(k, app, id, expire, time, ub);
            let d = verify(&ticket, Some(k), app, id, 0)
                .unwrap_or_else(|e| panic!("a minted ticket does not verify: {e}"));
            assert_eq!(
                (d.sdkappid, d.identifier.as_str(), d.time, d.expire, d.userbuf.as_deref()),
                (app, id, time, expire, ub)
            );
            assert_eq!(
                verify(&ticket, Some(other), app, id, 0),
                Err(SigError::BadHmac)
            );
            let expired = u128::from(NOW_MS) > u128::from(time.saturating_add(expire)) * 1000;
            assert_eq!(
                matches!(verify(&ticket, Some(k), app, id, NOW_MS), Err(SigError::Expired { .. })),
                expired
            );
        }
    }
});
