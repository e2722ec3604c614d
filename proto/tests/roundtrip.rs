//! Every message survives encode → decode unchanged, in both encodings.
//!
//! The samples cover every variant of `ClientMsg`, `ServerMsg` and `ResponseData`, every `KickReason`,
//! every `Platform` and the `None` cases of every `Option`, plus edge values (empty strings, `u64::MAX`,
//! non-ASCII text, JSON escapes, a payload near the frame limit). The `*_index` functions below match
//! without a wildcard, so a new variant fails to compile here until it gets a sample.

use imgate_proto::{
    decode_client, decode_server, encode_client, encode_server, ClientMsg, Code, Encoding,
    KickReason, Platform, ResponseData, ServerMsg, ALL_PLATFORMS, MAX_FRAME_LIMIT,
};

const ENCODINGS: [Encoding; 2] = [Encoding::Json, Encoding::Bincode];
const REASONS: [KickReason; 3] = [
    KickReason::MultiDevice,
    KickReason::Replaced,
    KickReason::Admin,
];

/// Strings that stress both encoders: empty, JSON escapes, non-ASCII, a length that needs a 3-byte
/// bincode varint.
fn odd_strings() -> Vec<String> {
    vec![
        String::new(),
        "a".to_owned(),
        "quote \" backslash \\ slash / newline \n tab \t nul \u{0} bell \u{7}".to_owned(),
        "héllo wörld — 你好 — 🦀".to_owned(),
        "x".repeat(250),
        "y".repeat(251),
        "z".repeat(70_000),
    ]
}

fn client_samples() -> Vec<ClientMsg> {
    let mut v = Vec::new();
    for seq in [0, 1, 250, 251, u64::from(u32::MAX), u64::MAX] {
        v.push(ClientMsg::Logout { seq });
        v.push(ClientMsg::GetLoginUser { seq });
        v.push(ClientMsg::GetLoginStatus { seq });
        v.push(ClientMsg::Ping { seq });
    }
    for instance_id in [None, Some("tab-1".to_owned()), Some(String::new())] {
        for p in ALL_PLATFORMS {
            v.push(ClientMsg::Login {
                seq: 1,
                sdk_app_id: 1_400_000_000,
                user_id: "alice".to_owned(),
                user_sig: "eJyrVkrxCdYrSy1SslIyUjJU0lEqSy0qzszPUbIyNDAw0LE0MLS0MDAwMgDwSxwT"
                    .to_owned(),
                platform: p.as_str().to_owned(),
                instance_id: instance_id.clone(),
            });
        }
    }
    // Client strings are plain strings on the wire: values the gateway will reject must still decode.
    for s in odd_strings() {
        v.push(ClientMsg::Login {
            seq: u64::MAX,
            sdk_app_id: u64::MAX,
            user_id: s.clone(),
            user_sig: s.clone(),
            platform: s.clone(),
            instance_id: Some(s.clone()),
        });
        v.push(ClientMsg::RefreshSig {
            seq: 5,
            user_sig: s.clone(),
        });
        v.push(ClientMsg::Send {
            seq: 6,
            to: s.clone(),
            payload: s,
        });
    }
    v
}

fn response_data_samples() -> Vec<ResponseData> {
    let mut v = Vec::new();
    for p in ALL_PLATFORMS {
        for instance_id in [None, Some("tab-1".to_owned()), Some("!~".repeat(32))] {
            v.push(ResponseData::Login {
                user_id: "alice".to_owned(),
                platform: p,
                instance_id,
                expire_at: 1_700_086_400,
            });
        }
    }
    v.push(ResponseData::Login {
        user_id: String::new(),
        platform: Platform::Web,
        instance_id: None,
        expire_at: u64::MAX,
    });
    for user_id in ["alice", ""] {
        v.push(ResponseData::LoginUser {
            user_id: user_id.to_owned(),
        });
    }
    for n in [0, 1, 251, u64::MAX] {
        v.push(ResponseData::RefreshSig { expire_at: n });
        v.push(ResponseData::Ping { server_time_ms: n });
    }
    for status in [1, 2, 3, 0, u8::MAX] {
        v.push(ResponseData::LoginStatus { status });
    }
    for delivered in [0, 1, 250, 251, u32::MAX] {
        v.push(ResponseData::Send { delivered });
    }
    v.push(ResponseData::Empty);
    v
}

fn server_samples() -> Vec<ServerMsg> {
    let mut v = Vec::new();
    for (i, data) in response_data_samples().into_iter().enumerate() {
        v.push(ServerMsg::ok(i as u64, data));
    }
    for code in Code::ALL {
        v.push(ServerMsg::error(9, code));
    }
    for desc in odd_strings() {
        v.push(ServerMsg::error_with(
            u64::MAX,
            Code::InvalidParameters,
            desc.clone(),
        ));
        v.push(ServerMsg::Response {
            seq: 0,
            code: u32::MAX,
            desc,
            data: Some(ResponseData::Empty),
        });
    }
    for reason in REASONS {
        v.push(ServerMsg::KickedOffline {
            reason,
            by_platform: None,
        });
        for p in ALL_PLATFORMS {
            v.push(ServerMsg::KickedOffline {
                reason,
                by_platform: Some(p),
            });
        }
    }
    v.push(ServerMsg::UserSigExpired);
    v.push(ServerMsg::Message {
        from: "@admin".to_owned(),
        from_platform: None,
        payload: "maintenance at 02:00".to_owned(),
    });
    for p in ALL_PLATFORMS {
        for payload in odd_strings() {
            v.push(ServerMsg::Message {
                from: "alice".to_owned(),
                from_platform: Some(p),
                payload,
            });
        }
    }
    v
}

fn client_index(m: &ClientMsg) -> usize {
    match m {
        ClientMsg::Login { .. } => 0,
        ClientMsg::Logout { .. } => 1,
        ClientMsg::GetLoginUser { .. } => 2,
        ClientMsg::GetLoginStatus { .. } => 3,
        ClientMsg::RefreshSig { .. } => 4,
        ClientMsg::Send { .. } => 5,
        ClientMsg::Ping { .. } => 6,
    }
}

fn server_index(m: &ServerMsg) -> usize {
    match m {
        ServerMsg::Response { .. } => 0,
        ServerMsg::KickedOffline { .. } => 1,
        ServerMsg::UserSigExpired => 2,
        ServerMsg::Message { .. } => 3,
    }
}

fn data_index(d: &ResponseData) -> usize {
    match d {
        ResponseData::Login { .. } => 0,
        ResponseData::LoginUser { .. } => 1,
        ResponseData::RefreshSig { .. } => 2,
        ResponseData::LoginStatus { .. } => 3,
        ResponseData::Send { .. } => 4,
        ResponseData::Ping { .. } => 5,
        ResponseData::Empty => 6,
    }
}

fn reason_index(r: KickReason) -> usize {
    match r {
        KickReason::MultiDevice => 0,
        KickReason::Replaced => 1,
        KickReason::Admin => 2,
    }
}

#[test]
fn samples_cover_every_variant() {
    let mut seen = [false; 7];
    for m in client_samples() {
        seen[client_index(&m)] = true;
    }
    assert_eq!(seen, [true; 7], "ClientMsg variants");

    let servers = server_samples();
    let mut seen = [false; 4];
    let mut data_seen = [false; 7];
    let mut reasons_seen = [false; 3];
    let mut platforms_seen = [false; 7];
    let mut failure_seen = false;
    for m in &servers {
        seen[server_index(m)] = true;
        match m {
            ServerMsg::Response { data: Some(d), .. } => {
                data_seen[data_index(d)] = true;
                if let ResponseData::Login { platform, .. } = d {
                    platforms_seen[platform.index()] = true;
                }
            }
            ServerMsg::Response { data: None, .. } => failure_seen = true,
            ServerMsg::KickedOffline { reason, .. } => reasons_seen[reason_index(*reason)] = true,
            _ => {}
        }
    }
    assert_eq!(seen, [true; 4], "ServerMsg variants");
    assert_eq!(data_seen, [true; 7], "ResponseData variants");
    assert_eq!(reasons_seen, [true; 3], "KickReason variants");
    assert_eq!(platforms_seen, [true; 7], "platforms");
    assert!(failure_seen, "a failure response (no data)");
}

#[test]
fn every_client_message_round_trips() {
    for enc in ENCODINGS {
        for msg in client_samples() {
            let bytes = encode_client(enc, &msg);
            if enc == Encoding::Json {
                assert!(std::str::from_utf8(&bytes).is_ok(), "JSON is UTF-8");
            }
            let back = decode_client(enc, &bytes, MAX_FRAME_LIMIT)
                .unwrap_or_else(|e| panic!("{enc:?} {msg:?}: {e}"));
            assert_eq!(back, msg, "{enc:?}");
            assert_eq!(back.seq(), msg.seq());
        }
    }
}

#[test]
fn every_server_message_round_trips() {
    for enc in ENCODINGS {
        for msg in server_samples() {
            let bytes = encode_server(enc, &msg);
            if enc == Encoding::Json {
                assert!(std::str::from_utf8(&bytes).is_ok(), "JSON is UTF-8");
            }
            let back = decode_server(enc, &bytes, MAX_FRAME_LIMIT)
                .unwrap_or_else(|e| panic!("{enc:?} {msg:?}: {e}"));
            assert_eq!(back, msg, "{enc:?}");
        }
    }
}

#[test]
fn empty_data_is_json_null_and_comes_back_as_some_empty() {
    let msg = ServerMsg::ok(2, ResponseData::Empty);
    let json: serde_json::Value =
        serde_json::from_slice(&encode_server(Encoding::Json, &msg)).unwrap();
    assert_eq!(json["data"], serde_json::Value::Null);
    assert!(json.as_object().unwrap().contains_key("data"));
    for enc in ENCODINGS {
        let back = decode_server(enc, &encode_server(enc, &msg), MAX_FRAME_LIMIT).unwrap();
        match back {
            ServerMsg::Response { data, .. } => assert_eq!(data, Some(ResponseData::Empty)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn failure_response_has_no_data_key_and_comes_back_as_none() {
    let msg = ServerMsg::error(3, Code::NotLoggedIn);
    let json: serde_json::Value =
        serde_json::from_slice(&encode_server(Encoding::Json, &msg)).unwrap();
    assert!(!json.as_object().unwrap().contains_key("data"), "{json}");
    for enc in ENCODINGS {
        let back = decode_server(enc, &encode_server(enc, &msg), MAX_FRAME_LIMIT).unwrap();
        match back {
            ServerMsg::Response { data, code, .. } => {
                assert_eq!(data, None);
                assert_eq!(code, 6014);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn type_names_match_the_json_tag() {
    for msg in client_samples() {
        let json: serde_json::Value =
            serde_json::from_slice(&encode_client(Encoding::Json, &msg)).unwrap();
        assert_eq!(json["type"], msg.type_name());
    }
}

#[test]
fn platforms_and_reasons_use_their_wire_names() {
    for p in ALL_PLATFORMS {
        let msg = ServerMsg::Message {
            from: "alice".to_owned(),
            from_platform: Some(p),
            payload: String::new(),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&encode_server(Encoding::Json, &msg)).unwrap();
        assert_eq!(json["from_platform"], p.as_str());
    }
    for r in REASONS {
        let msg = ServerMsg::KickedOffline {
            reason: r,
            by_platform: None,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&encode_server(Encoding::Json, &msg)).unwrap();
        assert_eq!(json["reason"], r.as_str());
    }
}
