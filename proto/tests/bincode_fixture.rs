//! The bincode golden bytes shared with the JavaScript SDK: `tests/fixtures/bincode.json` pairs each
//! message in its JSON wire form with its bincode bytes. This test holds the fixture to
//! `imgate_proto`; `clients/js/test/codec.test.js` holds the SDK's codec to the same file, so the two
//! implementations cannot drift apart without one of them failing.

use imgate_proto::{
    decode_client, decode_server, encode_client, encode_server, Encoding, MAX_FRAME_LIMIT,
};
use serde_json::Value;

const FIXTURE: &str = include_str!("fixtures/bincode.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("the fixture is JSON")
}

fn cases<'a>(f: &'a Value, key: &str) -> &'a Vec<Value> {
    f[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture has no {key}"))
}

fn field<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("case without {key}: {case}"))
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("the gateway's JSON parses")
}

#[test]
fn client_cases_match_imgate_proto() {
    let f = fixture();
    let client = cases(&f, "client");
    assert!(client.len() >= 8, "every client message is in the fixture");
    for case in client {
        let text = field(case, "json");
        let msg = decode_client(Encoding::Json, text.as_bytes(), MAX_FRAME_LIMIT)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let bytes = unhex(field(case, "hex"));
        assert_eq!(
            hex(&encode_client(Encoding::Bincode, &msg)),
            hex(&bytes),
            "{text}"
        );
        assert_eq!(
            decode_client(Encoding::Bincode, &bytes, MAX_FRAME_LIMIT).as_ref(),
            Ok(&msg),
            "{text}"
        );
    }
}

#[test]
fn server_cases_match_imgate_proto() {
    let f = fixture();
    let server = cases(&f, "server");
    assert!(server.len() >= 17, "every server message is in the fixture");
    for case in server {
        let text = field(case, "json");
        let msg = decode_server(Encoding::Json, text.as_bytes(), MAX_FRAME_LIMIT)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        // the JSON is what the gateway itself writes (e.g. `"data":null` vs no `data` key)
        assert_eq!(
            json(&encode_server(Encoding::Json, &msg)),
            json(text.as_bytes()),
            "{text}"
        );
        let bytes = unhex(field(case, "hex"));
        assert_eq!(
            hex(&encode_server(Encoding::Bincode, &msg)),
            hex(&bytes),
            "{text}"
        );
        assert_eq!(
            decode_server(Encoding::Bincode, &bytes, MAX_FRAME_LIMIT).as_ref(),
            Ok(&msg),
            "{text}"
        );
    }
}

#[test]
fn lenient_server_cases_decode() {
    let f = fixture();
    for case in cases(&f, "server_lenient") {
        let text = field(case, "json");
        let want = decode_server(Encoding::Json, text.as_bytes(), MAX_FRAME_LIMIT).expect(text);
        let got = decode_server(
            Encoding::Bincode,
            &unhex(field(case, "hex")),
            MAX_FRAME_LIMIT,
        );
        assert_eq!(got, Ok(want), "{}", field(case, "why"));
    }
}

#[test]
fn invalid_server_cases_are_refused() {
    let f = fixture();
    let invalid = cases(&f, "server_invalid");
    assert!(!invalid.is_empty());
    for case in invalid {
        let bytes = unhex(field(case, "hex"));
        assert!(
            decode_server(Encoding::Bincode, &bytes, MAX_FRAME_LIMIT).is_err(),
            "{} decoded: {}",
            field(case, "why"),
            field(case, "hex")
        );
    }
}
