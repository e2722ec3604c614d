//! The bincode layout, frozen: the exact bytes of every message, as documented in `PROTOCOL.md`.
//!
//! Layout (bincode 2, `config::standard()`): little endian, varint integers (`< 251` one byte;
//! `251` then u16; `252` then u32; `253` then u64), an enum is its variant index as a varint u32
//! followed by its fields in declaration order, a string is a varint length then UTF-8, an `Option`
//! is `00` or `01` + value, a `u8` is one raw byte.
//!
//! If one of these tests fails, the wire format changed: that breaks every binary client of v1.
//! The hex strings here are the ones printed in `PROTOCOL.md`; change both or neither.

use imgate_proto::{
    decode_client, decode_server, encode_client, encode_server, ClientMsg, Code, Encoding,
    KickReason, Platform, ResponseData, ServerMsg, ALL_PLATFORMS, MAX_FRAME_LIMIT,
};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

fn s(x: &str) -> String {
    x.to_owned()
}

/// Every client message of contract §4 with its frozen bytes.
fn client_golden() -> Vec<(ClientMsg, &'static str)> {
    vec![
        (
            ClientMsg::Login {
                seq: 1,
                sdk_app_id: 1_400_000_000,
                user_id: s("alice"),
                user_sig: s("eJy..."),
                platform: s("web"),
                instance_id: Some(s("tab-1")),
            },
            // variant 0, seq 1, sdk_app_id 252 + u32 LE 0x53724e00, "alice", "eJy...", "web",
            // Some("tab-1")
            "00 01 fc 00 4e 72 53 05 61 6c 69 63 65 06 65 4a 79 2e 2e 2e 03 77 65 62 \
             01 05 74 61 62 2d 31",
        ),
        (
            ClientMsg::Login {
                seq: 1,
                sdk_app_id: 1_400_000_000,
                user_id: s("alice"),
                user_sig: s("eJy..."),
                platform: s("android"),
                instance_id: None,
            },
            "00 01 fc 00 4e 72 53 05 61 6c 69 63 65 06 65 4a 79 2e 2e 2e 07 61 6e 64 72 6f 69 64 \
             00",
        ),
        (ClientMsg::Logout { seq: 2 }, "01 02"),
        (ClientMsg::GetLoginUser { seq: 3 }, "02 03"),
        (ClientMsg::GetLoginStatus { seq: 4 }, "03 04"),
        (
            ClientMsg::RefreshSig {
                seq: 5,
                user_sig: s("eJy..."),
            },
            "04 05 06 65 4a 79 2e 2e 2e",
        ),
        (
            ClientMsg::Send {
                seq: 6,
                to: s("bob"),
                payload: s("hi"),
            },
            "05 06 03 62 6f 62 02 68 69",
        ),
        (ClientMsg::Ping { seq: 7 }, "06 07"),
    ]
}

/// Every server message of contract §5 (every response `data`, a failure, every push) with its
/// frozen bytes.
fn server_golden() -> Vec<(ServerMsg, &'static str)> {
    vec![
        (
            ServerMsg::ok(
                1,
                ResponseData::Login {
                    user_id: s("alice"),
                    platform: Platform::Web,
                    instance_id: Some(s("tab-1")),
                    expire_at: 1_700_086_400,
                },
            ),
            // Response, seq 1, code 0, "ok", Some, data variant 0 (Login), "alice", platform 6 (web),
            // Some("tab-1"), expire_at 252 + u32 LE 0x65554280
            "00 01 00 02 6f 6b 01 00 05 61 6c 69 63 65 06 01 05 74 61 62 2d 31 fc 80 42 55 65",
        ),
        (
            ServerMsg::ok(
                1,
                ResponseData::Login {
                    user_id: s("alice"),
                    platform: Platform::Android,
                    instance_id: None,
                    expire_at: 1_700_086_400,
                },
            ),
            "00 01 00 02 6f 6b 01 00 05 61 6c 69 63 65 00 00 fc 80 42 55 65",
        ),
        (
            ServerMsg::ok(2, ResponseData::Empty),
            // logout: Some(Empty) = 01 06
            "00 02 00 02 6f 6b 01 06",
        ),
        (
            ServerMsg::ok(
                3,
                ResponseData::LoginUser {
                    user_id: s("alice"),
                },
            ),
            "00 03 00 02 6f 6b 01 01 05 61 6c 69 63 65",
        ),
        (
            ServerMsg::ok(3, ResponseData::LoginUser { user_id: s("") }),
            "00 03 00 02 6f 6b 01 01 00",
        ),
        (
            ServerMsg::ok(4, ResponseData::LoginStatus { status: 1 }),
            "00 04 00 02 6f 6b 01 03 01",
        ),
        (
            ServerMsg::ok(
                5,
                ResponseData::RefreshSig {
                    expire_at: 1_700_086_400,
                },
            ),
            "00 05 00 02 6f 6b 01 02 fc 80 42 55 65",
        ),
        (
            ServerMsg::ok(6, ResponseData::Send { delivered: 2 }),
            "00 06 00 02 6f 6b 01 04 02",
        ),
        (
            ServerMsg::ok(
                7,
                ResponseData::Ping {
                    server_time_ms: 1_700_000_000_123,
                },
            ),
            // server_time_ms: 253 + u64 LE 0x0000018bcfe5687b
            "00 07 00 02 6f 6b 01 05 fd 7b 68 e5 cf 8b 01 00 00",
        ),
        (
            ServerMsg::error(2, Code::NotLoggedIn),
            // code 6014: 251 + u16 LE 0x177e; "not logged in"; data None
            "00 02 fb 7e 17 0d 6e 6f 74 20 6c 6f 67 67 65 64 20 69 6e 00",
        ),
        (
            ServerMsg::error(1, Code::SigExpired),
            // code 70001: 252 + u32 LE 0x00011171
            "00 01 fc 71 11 01 00 0f 55 73 65 72 53 69 67 20 65 78 70 69 72 65 64 00",
        ),
        (
            ServerMsg::KickedOffline {
                reason: KickReason::MultiDevice,
                by_platform: Some(Platform::Android),
            },
            "01 00 01 00",
        ),
        (
            ServerMsg::KickedOffline {
                reason: KickReason::Replaced,
                by_platform: Some(Platform::Web),
            },
            "01 01 01 06",
        ),
        (
            ServerMsg::KickedOffline {
                reason: KickReason::Admin,
                by_platform: None,
            },
            "01 02 00",
        ),
        (ServerMsg::UserSigExpired, "02"),
        (
            ServerMsg::Message {
                from: s("alice"),
                from_platform: Some(Platform::Web),
                payload: s("hi"),
            },
            "03 05 61 6c 69 63 65 01 06 02 68 69",
        ),
        (
            ServerMsg::Message {
                from: s("@admin"),
                from_platform: None,
                payload: s("hi"),
            },
            "03 06 40 61 64 6d 69 6e 00 02 68 69",
        ),
    ]
}

#[test]
fn client_messages_have_frozen_bytes() {
    for (msg, expected) in client_golden() {
        let bytes = encode_client(Encoding::Bincode, &msg);
        assert_eq!(hex(&bytes), hex(&unhex(expected)), "{msg:?}");
        assert_eq!(
            decode_client(Encoding::Bincode, &unhex(expected), MAX_FRAME_LIMIT),
            Ok(msg)
        );
    }
}

#[test]
fn server_messages_have_frozen_bytes() {
    for (msg, expected) in server_golden() {
        let bytes = encode_server(Encoding::Bincode, &msg);
        assert_eq!(hex(&bytes), hex(&unhex(expected)), "{msg:?}");
        assert_eq!(
            decode_server(Encoding::Bincode, &unhex(expected), MAX_FRAME_LIMIT),
            Ok(msg)
        );
    }
}

#[test]
fn golden_tables_cover_every_variant() {
    let mut client = [false; 7];
    for (m, _) in client_golden() {
        let i = match m {
            ClientMsg::Login { .. } => 0,
            ClientMsg::Logout { .. } => 1,
            ClientMsg::GetLoginUser { .. } => 2,
            ClientMsg::GetLoginStatus { .. } => 3,
            ClientMsg::RefreshSig { .. } => 4,
            ClientMsg::Send { .. } => 5,
            ClientMsg::Ping { .. } => 6,
        };
        client[i] = true;
    }
    assert_eq!(client, [true; 7]);

    let mut server = [false; 4];
    let mut data = [false; 8]; // the seven variants, then "no data"
    let mut reasons = [false; 3];
    for (m, _) in server_golden() {
        match m {
            ServerMsg::Response { data: d, .. } => {
                server[0] = true;
                data[match d {
                    Some(ResponseData::Login { .. }) => 0,
                    Some(ResponseData::LoginUser { .. }) => 1,
                    Some(ResponseData::RefreshSig { .. }) => 2,
                    Some(ResponseData::LoginStatus { .. }) => 3,
                    Some(ResponseData::Send { .. }) => 4,
                    Some(ResponseData::Ping { .. }) => 5,
                    Some(ResponseData::Empty) => 6,
                    None => 7,
                }] = true;
            }
            ServerMsg::KickedOffline { reason, .. } => {
                server[1] = true;
                reasons[match reason {
                    KickReason::MultiDevice => 0,
                    KickReason::Replaced => 1,
                    KickReason::Admin => 2,
                }] = true;
            }
            ServerMsg::UserSigExpired => server[2] = true,
            ServerMsg::Message { .. } => server[3] = true,
        }
    }
    assert_eq!(server, [true; 4]);
    assert_eq!(data, [true; 8]);
    assert_eq!(reasons, [true; 3]);
}

/// The varint scheme at each boundary, seen through `ping` (variant 6 then `seq`).
#[test]
fn varint_boundaries() {
    let cases: [(u64, &str); 8] = [
        (0, "06 00"),
        (250, "06 fa"),
        (251, "06 fb fb 00"),
        (65_535, "06 fb ff ff"),
        (65_536, "06 fc 00 00 01 00"),
        (u64::from(u32::MAX), "06 fc ff ff ff ff"),
        (u64::from(u32::MAX) + 1, "06 fd 00 00 00 00 01 00 00 00"),
        (u64::MAX, "06 fd ff ff ff ff ff ff ff ff"),
    ];
    for (seq, expected) in cases {
        let msg = ClientMsg::Ping { seq };
        assert_eq!(
            hex(&encode_client(Encoding::Bincode, &msg)),
            expected,
            "{seq}"
        );
        assert_eq!(
            decode_client(Encoding::Bincode, &unhex(expected), MAX_FRAME_LIMIT),
            Ok(msg)
        );
    }
}

/// The gateway always writes the shortest varint, but reads a longer one too (bincode does not
/// insist on the minimal form). Clients should write the shortest form.
#[test]
fn longer_varints_are_accepted() {
    for bytes in [
        &[0x06, 0xfb, 0x07, 0x00][..],
        &[0x06, 0xfc, 0x07, 0x00, 0x00, 0x00],
        &[0x06, 0xfd, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        &[0xfb, 0x06, 0x00, 0x07],
    ] {
        assert_eq!(
            decode_client(Encoding::Bincode, bytes, MAX_FRAME_LIMIT),
            Ok(ClientMsg::Ping { seq: 7 })
        );
    }
}

/// Platform indices: android 0, iphone 1, ipad 2, windows 3, mac 4, linux 5, web 6.
#[test]
fn platform_indices() {
    for (i, p) in ALL_PLATFORMS.into_iter().enumerate() {
        let msg = ServerMsg::Message {
            from: String::new(),
            from_platform: Some(p),
            payload: String::new(),
        };
        assert_eq!(
            encode_server(Encoding::Bincode, &msg),
            [0x03, 0x00, 0x01, i as u8, 0x00],
            "{p}"
        );
        assert_eq!(p.index(), i);
    }
}

/// A string's length prefix counts UTF-8 bytes, not characters.
#[test]
fn string_length_is_in_utf8_bytes() {
    let msg = ClientMsg::Send {
        seq: 0,
        to: s("é"),
        payload: "x".repeat(300),
    };
    let bytes = encode_client(Encoding::Bincode, &msg);
    // 05 00, "é" = 02 c3 a9, payload length 300 = fb 2c 01
    assert_eq!(hex(&bytes[..8]), "05 00 02 c3 a9 fb 2c 01");
    assert_eq!(bytes.len(), 8 + 300);
}

/// `PROTOCOL.md` promises that a client using bincode's *serde* mode with a plain (externally tagged)
/// mirror of these enums gets the very same bytes. These mirrors are what such a client would write.
mod serde_mirror {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum MClient {
        Login {
            seq: u64,
            sdk_app_id: u64,
            user_id: String,
            user_sig: String,
            platform: String,
            instance_id: Option<String>,
        },
        Logout {
            seq: u64,
        },
        GetLoginUser {
            seq: u64,
        },
        GetLoginStatus {
            seq: u64,
        },
        RefreshSig {
            seq: u64,
            user_sig: String,
        },
        Send {
            seq: u64,
            to: String,
            payload: String,
        },
        Ping {
            seq: u64,
        },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum MPlatform {
        Android,
        Iphone,
        Ipad,
        Windows,
        Mac,
        Linux,
        Web,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum MReason {
        MultiDevice,
        Replaced,
        Admin,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum MData {
        Login {
            user_id: String,
            platform: MPlatform,
            instance_id: Option<String>,
            expire_at: u64,
        },
        LoginUser {
            user_id: String,
        },
        RefreshSig {
            expire_at: u64,
        },
        LoginStatus {
            status: u8,
        },
        Send {
            delivered: u32,
        },
        Ping {
            server_time_ms: u64,
        },
        Empty,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum MServer {
        Response {
            seq: u64,
            code: u32,
            desc: String,
            data: Option<MData>,
        },
        KickedOffline {
            reason: MReason,
            by_platform: Option<MPlatform>,
        },
        UserSigExpired,
        Message {
            from: String,
            from_platform: Option<MPlatform>,
            payload: String,
        },
    }

    fn platform(p: Platform) -> MPlatform {
        match p {
            Platform::Android => MPlatform::Android,
            Platform::Iphone => MPlatform::Iphone,
            Platform::Ipad => MPlatform::Ipad,
            Platform::Windows => MPlatform::Windows,
            Platform::Mac => MPlatform::Mac,
            Platform::Linux => MPlatform::Linux,
            Platform::Web => MPlatform::Web,
        }
    }

    fn client(m: ClientMsg) -> MClient {
        match m {
            ClientMsg::Login {
                seq,
                sdk_app_id,
                user_id,
                user_sig,
                platform,
                instance_id,
            } => MClient::Login {
                seq,
                sdk_app_id,
                user_id,
                user_sig,
                platform,
                instance_id,
            },
            ClientMsg::Logout { seq } => MClient::Logout { seq },
            ClientMsg::GetLoginUser { seq } => MClient::GetLoginUser { seq },
            ClientMsg::GetLoginStatus { seq } => MClient::GetLoginStatus { seq },
            ClientMsg::RefreshSig { seq, user_sig } => MClient::RefreshSig { seq, user_sig },
            ClientMsg::Send { seq, to, payload } => MClient::Send { seq, to, payload },
            ClientMsg::Ping { seq } => MClient::Ping { seq },
        }
    }

    fn data(d: ResponseData) -> MData {
        match d {
            ResponseData::Login {
                user_id,
                platform: p,
                instance_id,
                expire_at,
            } => MData::Login {
                user_id,
                platform: platform(p),
                instance_id,
                expire_at,
            },
            ResponseData::LoginUser { user_id } => MData::LoginUser { user_id },
            ResponseData::RefreshSig { expire_at } => MData::RefreshSig { expire_at },
            ResponseData::LoginStatus { status } => MData::LoginStatus { status },
            ResponseData::Send { delivered } => MData::Send { delivered },
            ResponseData::Ping { server_time_ms } => MData::Ping { server_time_ms },
            ResponseData::Empty => MData::Empty,
        }
    }

    fn server(m: ServerMsg) -> MServer {
        match m {
            ServerMsg::Response {
                seq,
                code,
                desc,
                data: d,
            } => MServer::Response {
                seq,
                code,
                desc,
                data: d.map(data),
            },
            ServerMsg::KickedOffline {
                reason,
                by_platform,
            } => MServer::KickedOffline {
                reason: match reason {
                    KickReason::MultiDevice => MReason::MultiDevice,
                    KickReason::Replaced => MReason::Replaced,
                    KickReason::Admin => MReason::Admin,
                },
                by_platform: by_platform.map(platform),
            },
            ServerMsg::UserSigExpired => MServer::UserSigExpired,
            ServerMsg::Message {
                from,
                from_platform,
                payload,
            } => MServer::Message {
                from,
                from_platform: from_platform.map(platform),
                payload,
            },
        }
    }

    fn serde_encode<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }

    fn serde_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
        let (v, used) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard()).unwrap();
        assert_eq!(used, bytes.len());
        v
    }

    #[test]
    fn serde_mode_mirror_gives_identical_bytes() {
        for (msg, expected) in client_golden() {
            let mirror = client(msg);
            assert_eq!(hex(&serde_encode(&mirror)), hex(&unhex(expected)));
            assert_eq!(serde_decode::<MClient>(&unhex(expected)), mirror);
        }
        for (msg, expected) in server_golden() {
            let mirror = server(msg);
            assert_eq!(hex(&serde_encode(&mirror)), hex(&unhex(expected)));
            assert_eq!(serde_decode::<MServer>(&unhex(expected)), mirror);
        }
        for seq in [251, 65_536, u64::MAX] {
            let msg = ClientMsg::Ping { seq };
            assert_eq!(
                serde_encode(&client(msg.clone())),
                encode_client(Encoding::Bincode, &msg)
            );
        }
    }
}
