//! Golden JSON tests against the contract's own examples (§4, §5, §10), and the decoders' behaviour
//! on bad input: every way a frame can be wrong yields a typed `DecodeError`, never a panic, an
//! abort or an unbounded allocation.

use imgate_proto::{
    decode_client, decode_server, encode_client, encode_server, ClientMsg, Code, DecodeError,
    Encoding, KickReason, Platform, ResponseData, ServerMsg, MAX_FRAME_LIMIT,
};
use serde_json::Value;

/// The gateway's default `max_frame_bytes`.
const MAX: usize = 65_536;

fn s(x: &str) -> String {
    x.to_owned()
}

fn value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("our JSON parses")
}

fn login(platform: &str, instance_id: Option<&str>) -> ClientMsg {
    ClientMsg::Login {
        seq: 1,
        sdk_app_id: 1_400_000_000,
        user_id: s("alice"),
        user_sig: s("eJy..."),
        platform: s(platform),
        instance_id: instance_id.map(s),
    }
}

/// Contract §4, verbatim.
fn client_examples() -> Vec<(&'static str, ClientMsg)> {
    vec![
        (
            r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":"alice","user_sig":"eJy...","platform":"web","instance_id":"tab-1"}"#,
            login("web", Some("tab-1")),
        ),
        (r#"{"type":"logout","seq":2}"#, ClientMsg::Logout { seq: 2 }),
        (
            r#"{"type":"get_login_user","seq":3}"#,
            ClientMsg::GetLoginUser { seq: 3 },
        ),
        (
            r#"{"type":"get_login_status","seq":4}"#,
            ClientMsg::GetLoginStatus { seq: 4 },
        ),
        (
            r#"{"type":"refresh_sig","seq":5,"user_sig":"eJy..."}"#,
            ClientMsg::RefreshSig {
                seq: 5,
                user_sig: s("eJy..."),
            },
        ),
        (
            r#"{"type":"send","seq":6,"to":"bob","payload":"any UTF-8 string"}"#,
            ClientMsg::Send {
                seq: 6,
                to: s("bob"),
                payload: s("any UTF-8 string"),
            },
        ),
        (r#"{"type":"ping","seq":7}"#, ClientMsg::Ping { seq: 7 }),
    ]
}

/// Contract §5 (every response `data`, a failure) and the pushes of §5 and §10, with the
/// contract's `...` placeholders filled in.
fn server_examples() -> Vec<(&'static str, ServerMsg)> {
    vec![
        (
            r#"{"type":"response","seq":1,"code":0,"desc":"ok","data":{"user_id":"alice","platform":"web","instance_id":"tab-1","expire_at":1700086400}}"#,
            ServerMsg::ok(
                1,
                ResponseData::Login {
                    user_id: s("alice"),
                    platform: Platform::Web,
                    instance_id: Some(s("tab-1")),
                    expire_at: 1_700_086_400,
                },
            ),
        ),
        (
            r#"{"type":"response","seq":1,"code":0,"desc":"ok","data":{"user_id":"alice","platform":"android","instance_id":null,"expire_at":1700086400}}"#,
            ServerMsg::ok(
                1,
                ResponseData::Login {
                    user_id: s("alice"),
                    platform: Platform::Android,
                    instance_id: None,
                    expire_at: 1_700_086_400,
                },
            ),
        ),
        (
            r#"{"type":"response","seq":2,"code":0,"desc":"ok","data":null}"#,
            ServerMsg::ok(2, ResponseData::Empty),
        ),
        (
            r#"{"type":"response","seq":3,"code":0,"desc":"ok","data":{"user_id":"alice"}}"#,
            ServerMsg::ok(
                3,
                ResponseData::LoginUser {
                    user_id: s("alice"),
                },
            ),
        ),
        (
            r#"{"type":"response","seq":3,"code":0,"desc":"ok","data":{"user_id":""}}"#,
            ServerMsg::ok(3, ResponseData::LoginUser { user_id: s("") }),
        ),
        (
            r#"{"type":"response","seq":4,"code":0,"desc":"ok","data":{"status":1}}"#,
            ServerMsg::ok(4, ResponseData::LoginStatus { status: 1 }),
        ),
        (
            r#"{"type":"response","seq":4,"code":0,"desc":"ok","data":{"status":3}}"#,
            ServerMsg::ok(4, ResponseData::LoginStatus { status: 3 }),
        ),
        (
            r#"{"type":"response","seq":5,"code":0,"desc":"ok","data":{"expire_at":1700086400}}"#,
            ServerMsg::ok(
                5,
                ResponseData::RefreshSig {
                    expire_at: 1_700_086_400,
                },
            ),
        ),
        (
            r#"{"type":"response","seq":6,"code":0,"desc":"ok","data":{"delivered":2}}"#,
            ServerMsg::ok(6, ResponseData::Send { delivered: 2 }),
        ),
        (
            r#"{"type":"response","seq":7,"code":0,"desc":"ok","data":{"server_time_ms":1700000000123}}"#,
            ServerMsg::ok(
                7,
                ResponseData::Ping {
                    server_time_ms: 1_700_000_000_123,
                },
            ),
        ),
        (
            r#"{"type":"response","seq":2,"code":6014,"desc":"not logged in"}"#,
            ServerMsg::error(2, Code::NotLoggedIn),
        ),
        (
            r#"{"type":"response","seq":1,"code":70001,"desc":"UserSig expired"}"#,
            ServerMsg::error(1, Code::SigExpired),
        ),
        (
            r#"{"type":"kicked_offline","reason":"multi_device","by_platform":"android"}"#,
            ServerMsg::KickedOffline {
                reason: KickReason::MultiDevice,
                by_platform: Some(Platform::Android),
            },
        ),
        (
            r#"{"type":"kicked_offline","reason":"replaced","by_platform":"web"}"#,
            ServerMsg::KickedOffline {
                reason: KickReason::Replaced,
                by_platform: Some(Platform::Web),
            },
        ),
        (
            r#"{"type":"kicked_offline","reason":"admin","by_platform":null}"#,
            ServerMsg::KickedOffline {
                reason: KickReason::Admin,
                by_platform: None,
            },
        ),
        (r#"{"type":"user_sig_expired"}"#, ServerMsg::UserSigExpired),
        (
            r#"{"type":"message","from":"alice","from_platform":"web","payload":"..."}"#,
            ServerMsg::Message {
                from: s("alice"),
                from_platform: Some(Platform::Web),
                payload: s("..."),
            },
        ),
        (
            r#"{"type":"message","from":"@admin","from_platform":null,"payload":"..."}"#,
            ServerMsg::Message {
                from: s("@admin"),
                from_platform: None,
                payload: s("..."),
            },
        ),
    ]
}

#[test]
fn contract_client_examples_decode_and_encode_alike() {
    for (json, msg) in client_examples() {
        assert_eq!(
            decode_client(Encoding::Json, json.as_bytes(), MAX),
            Ok(msg.clone()),
            "{json}"
        );
        assert_eq!(
            value(&encode_client(Encoding::Json, &msg)),
            value(json.as_bytes()),
            "{json}"
        );
    }
}

#[test]
fn contract_server_examples_decode_and_encode_alike() {
    for (json, msg) in server_examples() {
        assert_eq!(
            decode_server(Encoding::Json, json.as_bytes(), MAX),
            Ok(msg.clone()),
            "{json}"
        );
        assert_eq!(
            value(&encode_server(Encoding::Json, &msg)),
            value(json.as_bytes()),
            "{json}"
        );
    }
}

#[test]
fn login_instance_id_absent_null_or_present() {
    let absent = r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":"alice","user_sig":"eJy...","platform":"web"}"#;
    let null = r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":"alice","user_sig":"eJy...","platform":"web","instance_id":null}"#;
    let present = r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":"alice","user_sig":"eJy...","platform":"web","instance_id":"tab-1"}"#;
    // `""` is decodable (the gateway answers 6017, never 1007).
    let empty = r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":"alice","user_sig":"eJy...","platform":"web","instance_id":""}"#;
    let dec = |j: &str| decode_client(Encoding::Json, j.as_bytes(), MAX);
    assert_eq!(dec(absent), Ok(login("web", None)));
    assert_eq!(dec(null), Ok(login("web", None)));
    assert_eq!(dec(present), Ok(login("web", Some("tab-1"))));
    assert_eq!(dec(empty), Ok(login("web", Some(""))));
    // None is written as an explicit null.
    assert_eq!(
        value(&encode_client(Encoding::Json, &login("web", None))),
        value(null.as_bytes())
    );
}

#[test]
fn bad_values_in_plain_string_fields_still_decode() {
    // The gateway must answer these with 7003 / 6017, so the codec must not reject them.
    let j = r#"{"type":"login","seq":1,"sdk_app_id":0,"user_id":"not valid!","user_sig":"","platform":"WEB","instance_id":"has space"}"#;
    assert_eq!(
        decode_client(Encoding::Json, j.as_bytes(), MAX),
        Ok(ClientMsg::Login {
            seq: 1,
            sdk_app_id: 0,
            user_id: s("not valid!"),
            user_sig: s(""),
            platform: s("WEB"),
            instance_id: Some(s("has space")),
        })
    );
    let j = r#"{"type":"send","seq":6,"to":"","payload":""}"#;
    assert!(decode_client(Encoding::Json, j.as_bytes(), MAX).is_ok());
}

#[test]
fn unknown_fields_are_ignored_and_key_order_is_free() {
    let j = r#"{"seq":7,"extra":{"nested":[1,2,3]},"type":"ping"}"#;
    assert_eq!(
        decode_client(Encoding::Json, j.as_bytes(), MAX),
        Ok(ClientMsg::Ping { seq: 7 })
    );
    let j = " \n{ \"type\" : \"logout\" , \"seq\" : 2 }\n ";
    assert_eq!(
        decode_client(Encoding::Json, j.as_bytes(), MAX),
        Ok(ClientMsg::Logout { seq: 2 })
    );
    let j = r#"{"type":"user_sig_expired","since":1}"#;
    assert_eq!(
        decode_server(Encoding::Json, j.as_bytes(), MAX),
        Ok(ServerMsg::UserSigExpired)
    );
}

#[test]
fn null_data_on_a_failure_still_means_present() {
    // Only the gateway's own encoding is normative (no `data` key on failure); a `null` is read as
    // present so that logout's `"data":null` is never lost.
    let j = r#"{"type":"response","seq":2,"code":6014,"desc":"not logged in","data":null}"#;
    match decode_server(Encoding::Json, j.as_bytes(), MAX) {
        Ok(ServerMsg::Response { data, code, .. }) => {
            assert_eq!(code, 6014);
            assert_eq!(data, Some(ResponseData::Empty));
        }
        other => panic!("{other:?}"),
    }
}

fn assert_json_client_error(json: &[u8]) {
    match decode_client(Encoding::Json, json, MAX) {
        Err(DecodeError::Json(_)) => {}
        other => panic!(
            "{:?}: expected DecodeError::Json, got {other:?}",
            String::from_utf8_lossy(&json[..json.len().min(200)])
        ),
    }
}

fn assert_json_server_error(json: &str) {
    match decode_server(Encoding::Json, json.as_bytes(), MAX) {
        Err(DecodeError::Json(_)) => {}
        other => panic!("{json}: expected DecodeError::Json, got {other:?}"),
    }
}

#[test]
fn unknown_type_is_a_json_error() {
    for j in [
        r#"{"type":"subscribe","seq":1}"#,
        r#"{"type":"Login","seq":1}"#,
        r#"{"type":"PING","seq":1}"#,
        r#"{"type":"response","seq":1}"#,
        r#"{"type":"","seq":1}"#,
        r#"{"type":1,"seq":1}"#,
        r#"{"type":null,"seq":1}"#,
        r#"{"seq":1}"#,
    ] {
        assert_json_client_error(j.as_bytes());
    }
    assert_json_server_error(r#"{"type":"ping","seq":1}"#);
    assert_json_server_error(r#"{"type":"kicked","reason":"admin","by_platform":null}"#);
}

#[test]
fn missing_field_is_a_json_error() {
    for j in [
        r#"{"type":"ping"}"#,
        r#"{"type":"logout"}"#,
        r#"{"type":"refresh_sig","seq":5}"#,
        r#"{"type":"send","seq":6,"to":"bob"}"#,
        r#"{"type":"send","seq":6,"payload":"x"}"#,
        r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":"alice","platform":"web"}"#,
        r#"{"type":"login","seq":1,"user_id":"alice","user_sig":"x","platform":"web"}"#,
        r#"{"type":"login","seq":1,"sdk_app_id":1,"user_sig":"x","platform":"web"}"#,
        r#"{"type":"login","seq":1,"sdk_app_id":1,"user_id":"alice","user_sig":"x"}"#,
    ] {
        assert_json_client_error(j.as_bytes());
    }
    for j in [
        r#"{"type":"response","code":0,"desc":"ok","data":null}"#,
        r#"{"type":"response","seq":1,"desc":"ok"}"#,
        r#"{"type":"response","seq":1,"code":0}"#,
        r#"{"type":"kicked_offline","by_platform":"web"}"#,
        r#"{"type":"message","from":"alice","from_platform":"web"}"#,
    ] {
        assert_json_server_error(j);
    }
}

#[test]
fn mistyped_field_is_a_json_error() {
    for j in [
        r#"{"type":"ping","seq":"7"}"#,
        r#"{"type":"ping","seq":-1}"#,
        r#"{"type":"ping","seq":1.5}"#,
        r#"{"type":"ping","seq":1e3}"#,
        r#"{"type":"ping","seq":18446744073709551616}"#,
        r#"{"type":"ping","seq":null}"#,
        r#"{"type":"ping","seq":true}"#,
        r#"{"type":"login","seq":1,"sdk_app_id":"1400000000","user_id":"alice","user_sig":"x","platform":"web"}"#,
        r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":42,"user_sig":"x","platform":"web"}"#,
        r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":"alice","user_sig":"x","platform":null}"#,
        r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":"alice","user_sig":"x","platform":"web","instance_id":5}"#,
        r#"{"type":"login","seq":1,"sdk_app_id":1400000000,"user_id":["alice"],"user_sig":"x","platform":"web"}"#,
        r#"{"type":"send","seq":6,"to":"bob","payload":{"text":"hi"}}"#,
        r#"{"type":"send","seq":6,"to":null,"payload":"hi"}"#,
        r#"{"type":"refresh_sig","seq":5,"user_sig":null}"#,
    ] {
        assert_json_client_error(j.as_bytes());
    }
    for j in [
        r#"{"type":"kicked_offline","reason":"kicked","by_platform":"web"}"#,
        r#"{"type":"kicked_offline","reason":"admin","by_platform":"Web"}"#,
        r#"{"type":"message","from":"alice","from_platform":"ios","payload":"x"}"#,
        r#"{"type":"response","seq":1,"code":-1,"desc":"x"}"#,
        r#"{"type":"response","seq":1,"code":4294967296,"desc":"x"}"#,
        r#"{"type":"response","seq":4,"code":0,"desc":"ok","data":{"status":256}}"#,
        r#"{"type":"response","seq":4,"code":0,"desc":"ok","data":{"unknown":1}}"#,
        r#"{"type":"response","seq":4,"code":0,"desc":"ok","data":7}"#,
    ] {
        assert_json_server_error(j);
    }
}

#[test]
fn malformed_json_is_a_json_error() {
    let cases: [&[u8]; 13] = [
        b"",
        b" ",
        b"{",
        b"}",
        b"null",
        b"[]",
        b"7",
        b"\"ping\"",
        b"not json",
        br#"{"type":"ping","seq":7}garbage"#,
        br#"{"type":"ping","seq":7}{"type":"ping","seq":8}"#,
        br#"{'type':'ping','seq':7}"#,
        b"{\"type\":\"send\",\"seq\":6,\"to\":\"bob\",\"payload\":\"\xff\xfe\"}",
    ];
    for j in cases {
        assert_json_client_error(j);
    }
}

#[test]
fn oversized_input_is_too_large_before_parsing() {
    let msg = ClientMsg::Send {
        seq: 6,
        to: s("bob"),
        payload: "x".repeat(100),
    };
    for enc in [Encoding::Json, Encoding::Bincode] {
        let bytes = encode_client(enc, &msg);
        let len = bytes.len();
        assert_eq!(
            decode_client(enc, &bytes, len),
            Ok(msg.clone()),
            "exactly max"
        );
        assert_eq!(
            decode_client(enc, &bytes, len - 1),
            Err(DecodeError::TooLarge { len, max: len - 1 })
        );
        // Garbage past the limit is refused for its size, not parsed.
        let garbage = vec![0xffu8; MAX + 1];
        assert_eq!(
            decode_client(enc, &garbage, MAX),
            Err(DecodeError::TooLarge {
                len: MAX + 1,
                max: MAX
            })
        );
        assert_eq!(
            decode_server(enc, &garbage, MAX),
            Err(DecodeError::TooLarge {
                len: MAX + 1,
                max: MAX
            })
        );
        // The caller's limit is capped at MAX_FRAME_LIMIT.
        let huge = vec![b' '; MAX_FRAME_LIMIT + 1];
        assert_eq!(
            decode_client(enc, &huge, usize::MAX),
            Err(DecodeError::TooLarge {
                len: MAX_FRAME_LIMIT + 1,
                max: MAX_FRAME_LIMIT
            })
        );
    }
}

#[test]
fn bincode_trailing_bytes_are_an_error() {
    let mut bytes = encode_client(Encoding::Bincode, &ClientMsg::Ping { seq: 7 });
    assert_eq!(bytes, [0x06, 0x07]);
    bytes.push(0x00);
    assert_eq!(
        decode_client(Encoding::Bincode, &bytes, MAX),
        Err(DecodeError::TrailingBytes(1))
    );
    bytes.extend_from_slice(&[0x06, 0x08]);
    assert_eq!(
        decode_client(Encoding::Bincode, &bytes, MAX),
        Err(DecodeError::TrailingBytes(3))
    );
    let mut bytes = encode_server(Encoding::Bincode, &ServerMsg::UserSigExpired);
    bytes.extend_from_slice(b"xyz");
    assert_eq!(
        decode_server(Encoding::Bincode, &bytes, MAX),
        Err(DecodeError::TrailingBytes(3))
    );
}

fn assert_bincode_client_error(bytes: &[u8]) -> String {
    match decode_client(Encoding::Bincode, bytes, MAX_FRAME_LIMIT) {
        Err(DecodeError::Bincode(e)) => e,
        other => panic!(
            "{:02x?}: expected DecodeError::Bincode, got {other:?}",
            &bytes[..bytes.len().min(32)]
        ),
    }
}

fn assert_bincode_server_error(bytes: &[u8]) -> String {
    match decode_server(Encoding::Bincode, bytes, MAX_FRAME_LIMIT) {
        Err(DecodeError::Bincode(e)) => e,
        other => panic!(
            "{:02x?}: expected DecodeError::Bincode, got {other:?}",
            &bytes[..bytes.len().min(32)]
        ),
    }
}

#[test]
fn bincode_forged_length_prefix_is_refused_without_allocating() {
    // login, seq 1, sdk_app_id 1, then user_id with a forged length and no bytes behind it.
    let head = [0x00, 0x01, 0x01];
    let huge_lengths: [&[u8]; 4] = [
        &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // u64::MAX
        &[0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40], // 2^62
        &[0xfc, 0xff, 0xff, 0xff, 0xff],                         // u32::MAX
        &[0xfc, 0x01, 0x00, 0x10, 0x00],                         // MAX_FRAME_LIMIT + 1
    ];
    for len in huge_lengths {
        let bytes = [&head[..], len].concat();
        // Refused by the decode limit before any allocation: an attempt to allocate this much
        // would abort the test process.
        let e = assert_bincode_client_error(&bytes);
        assert!(e.contains("LimitExceeded"), "{e}");
    }
    // A length within the limit but beyond the input: at most MAX_FRAME_LIMIT is claimed, then
    // the input runs out.
    for len in [&[0xfc, 0x00, 0x00, 0x10, 0x00][..], &[0xfb, 0xff, 0xff]] {
        let bytes = [&head[..], len, b"abc"].concat();
        assert_bincode_client_error(&bytes);
    }
    // The same on every string field of the server side (desc, from, payload).
    let forged = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    for prefix in [&[0x00, 0x01, 0x00][..], &[0x03], &[0x03, 0x00, 0x00]] {
        let bytes = [prefix, &forged[..]].concat();
        assert!(assert_bincode_server_error(&bytes).contains("LimitExceeded"));
    }
    // The limit is cumulative: a real 512 KiB string, then a claim of 576 KiB more, is refused
    // before the second allocation.
    let mut bytes = vec![0x05, 0x06]; // send, seq 6
    bytes.extend_from_slice(&[0xfc, 0x00, 0x00, 0x08, 0x00]); // to: 512 KiB
    bytes.extend(std::iter::repeat_n(b'a', 0x80000));
    bytes.extend_from_slice(&[0xfc, 0x00, 0x00, 0x09, 0x00]); // payload: 576 KiB, absent
    assert!(assert_bincode_client_error(&bytes).contains("LimitExceeded"));
}

#[test]
fn bincode_structural_errors() {
    // Empty input, unknown variant indices, an unused varint marker.
    assert_bincode_client_error(&[]);
    assert_bincode_client_error(&[0x07, 0x01]);
    assert_bincode_client_error(&[0xfb, 0x00, 0x01]);
    assert_bincode_client_error(&[0xfe, 0x01]);
    assert_bincode_client_error(&[0xff]);
    assert_bincode_server_error(&[]);
    assert_bincode_server_error(&[0x04]);
    // Truncated varint.
    assert_bincode_client_error(&[0x06, 0xfc, 0x01]);
    // An Option tag other than 0 or 1 (login's instance_id).
    let mut login = vec![
        0x00, 0x01, 0x01, 0x01, b'a', 0x01, b's', 0x03, b'w', b'e', b'b',
    ];
    assert!(decode_client(Encoding::Bincode, &[&login[..], &[0x00]].concat(), MAX).is_ok());
    login.push(0x02);
    assert_bincode_client_error(&login);
    // Invalid UTF-8 in a string.
    assert_bincode_client_error(&[0x05, 0x06, 0x01, 0xff, 0x00]);
    // Unknown platform (7), kick reason (3) and response data (7) indices.
    assert_bincode_server_error(&[0x01, 0x00, 0x01, 0x07]);
    assert_bincode_server_error(&[0x01, 0x03, 0x00]);
    assert_bincode_server_error(&[0x00, 0x01, 0x00, 0x00, 0x01, 0x07]);
    // A u32 `code` that does not fit; a u64 marker in a u32 field even when the value fits.
    assert_bincode_server_error(&[0x00, 0x01, 0xfd, 0, 0, 0, 0, 1, 0, 0, 0, 0x00, 0x00]);
    assert_bincode_server_error(&[0x00, 0x01, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00]);
    assert_bincode_client_error(&[0xfd, 6, 0, 0, 0, 0, 0, 0, 0, 0x07]);
    // A u128 marker in a u64 field.
    let mut u128_seq = vec![0x06, 0xfe];
    u128_seq.extend_from_slice(&[0; 16]);
    assert_bincode_client_error(&u128_seq);
}

#[test]
fn every_truncation_of_a_valid_bincode_frame_is_an_error() {
    for (_, msg) in client_examples() {
        let bytes = encode_client(Encoding::Bincode, &msg);
        for cut in 0..bytes.len() {
            assert_bincode_client_error(&bytes[..cut]);
        }
    }
    for (_, msg) in server_examples() {
        let bytes = encode_server(Encoding::Bincode, &msg);
        for cut in 0..bytes.len() {
            assert_bincode_server_error(&bytes[..cut]);
        }
    }
}

#[test]
fn close_reason_fits_a_close_frame() {
    let long_type = format!(r#"{{"type":"{}","seq":1}}"#, "é".repeat(200));
    let err = decode_client(Encoding::Json, long_type.as_bytes(), MAX).unwrap_err();
    let reason = err.close_reason();
    assert!(reason.len() <= 123, "{}", reason.len());
    assert!(reason.ends_with("..."));
    let short = decode_client(Encoding::Json, b"{", MAX).unwrap_err();
    assert_eq!(short.close_reason(), short.to_string());
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Decodes `bytes` every way; a successful decode must survive a re-encode unchanged.
fn decode_all_ways(bytes: &[u8]) {
    for enc in [Encoding::Json, Encoding::Bincode] {
        if let Ok(m) = decode_client(enc, bytes, MAX) {
            let again = decode_client(enc, &encode_client(enc, &m), MAX_FRAME_LIMIT);
            assert_eq!(again, Ok(m), "{bytes:02x?}");
        }
        if let Ok(m) = decode_server(enc, bytes, MAX) {
            let again = decode_server(enc, &encode_server(enc, &m), MAX_FRAME_LIMIT);
            assert_eq!(again, Ok(m), "{bytes:02x?}");
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let bytes = rng.bytes(64);
        decode_all_ways(&bytes);
    }
    // Small first bytes reach deeper into the bincode decoders.
    for _ in 0..20_000 {
        let mut bytes = rng.bytes(24);
        for b in bytes.iter_mut() {
            if rng.below(2) == 0 {
                *b %= 8;
            }
        }
        decode_all_ways(&bytes);
    }
}

#[test]
fn json_token_soup_never_panics() {
    const TOKENS: [&str; 36] = [
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "null",
        "true",
        "0",
        "1",
        "-1",
        "1.5",
        "1e999",
        "18446744073709551616",
        "\"type\"",
        "\"seq\"",
        "\"login\"",
        "\"ping\"",
        "\"response\"",
        "\"data\"",
        "\"message\"",
        "\"kicked_offline\"",
        "\"user_id\"",
        "\"platform\"",
        "\"web\"",
        "\"instance_id\"",
        "\"reason\"",
        "\"admin\"",
        "\"status\"",
        "\"expire_at\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\\",
        " ",
        "\"user_sig_expired\"",
    ];
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..20_000 {
        let n = rng.below(24);
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(TOKENS[rng.below(TOKENS.len())]);
        }
        decode_all_ways(text.as_bytes());
    }
    // Deep nesting is refused by serde_json's recursion limit, not by the stack.
    let deep = format!(
        r#"{{"type":"ping","seq":1,"x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_json_client_error(deep.as_bytes());
}

#[test]
fn mutated_valid_frames_never_panic() {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for (json, msg) in client_examples() {
        frames.push(json.as_bytes().to_vec());
        frames.push(encode_client(Encoding::Bincode, &msg));
    }
    for (json, msg) in server_examples() {
        frames.push(json.as_bytes().to_vec());
        frames.push(encode_server(Encoding::Bincode, &msg));
    }
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for frame in &frames {
        for _ in 0..400 {
            let mut m = frame.clone();
            for _ in 0..=rng.below(3) {
                match rng.below(4) {
                    0 if !m.is_empty() => {
                        let i = rng.below(m.len());
                        m[i] = rng.next() as u8;
                    }
                    1 if !m.is_empty() => {
                        let i = rng.below(m.len());
                        m.remove(i);
                    }
                    2 => {
                        let i = rng.below(m.len() + 1);
                        m.insert(i, rng.next() as u8);
                    }
                    _ => {
                        let i = rng.below(m.len() + 1);
                        m.truncate(i);
                    }
                }
            }
            decode_all_ways(&m);
        }
    }
}

/// Every JSON message quoted in `PROTOCOL.md` (code blocks and inline) decodes, and re-encodes to
/// the same JSON value. Placeholders such as `{...}` are not JSON and are skipped.
#[test]
fn protocol_md_json_examples_decode() {
    let doc = include_str!("../PROTOCOL.md");
    let mut candidates: Vec<&str> = doc
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("{\"type\""))
        .collect();
    for part in doc.split('`').skip(1).step_by(2) {
        if part.starts_with("{\"type\"") {
            candidates.push(part);
        }
    }
    let mut checked = 0;
    for text in candidates {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if let Ok(m) = decode_client(Encoding::Json, text.as_bytes(), MAX) {
            if v.get("instance_id").is_some() || !matches!(m, ClientMsg::Login { .. }) {
                assert_eq!(value(&encode_client(Encoding::Json, &m)), v, "{text}");
            }
        } else {
            let m = decode_server(Encoding::Json, text.as_bytes(), MAX)
                .unwrap_or_else(|e| panic!("PROTOCOL.md example {text}: {e}"));
            assert_eq!(value(&encode_server(Encoding::Json, &m)), v, "{text}");
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} examples found");
}
