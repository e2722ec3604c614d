//! Client frames: any bytes either decode to a `ClientMsg` or fail cleanly; a decoded message
//! re-encodes and decodes to itself (both encodings).
#![no_main]

use imgate_proto::{decode_client, encode_client, Encoding};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 65536;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let enc = if first & 1 == 0 {
        Encoding::Json
    } else {
        Encoding::Bincode
    };
    let Ok(msg) = decode_client(enc, rest, MAX) else {
        return;
    };
    let _ = (msg.seq(), msg.type_name());
    for e in [enc, Encoding::Json, Encoding::Bincode] {
        let bytes = encode_client(e, &msg);
        if e == Encoding::Json {
            assert!(std::str::from_utf8(&bytes).is_ok(), "JSON encoding is not UTF-8");
        }
        let again = decode_client(e, &bytes, usize::MAX)
            .unwrap_or_else(|err| panic!("{e:?} round trip of {msg:?} failed: {err}"));
        assert_eq!(again, msg, "{e:?} round trip changed the message");
    }
});
