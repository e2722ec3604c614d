//! The messages of contract §4 (client → server) and §5 (server → client).
//!
//! JSON uses serde with a `type` tag; bincode uses bincode's own derive, whose layout is the same as
//! bincode's serde mode would give an externally tagged enum with these variants and fields in this
//! order (variant index as a varint u32, then the fields). `PROTOCOL.md` spells the layout out.
//!
//! `user_id`, `to`, `platform` and `instance_id` are plain strings in client messages on purpose: a
//! decodable frame with a bad value must get a response code (7003, 6017), never a 1007 close.

use crate::code::Code;
use crate::platform::Platform;
use bincode::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize};

/// A request from a client. Every request carries a client-chosen `seq` echoed in its response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Login {
        seq: u64,
        sdk_app_id: u64,
        user_id: String,
        user_sig: String,
        platform: String,
        /// Absent or `null` = none.
        #[serde(default)]
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

impl ClientMsg {
    /// The request's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            ClientMsg::Login { seq, .. }
            | ClientMsg::Logout { seq }
            | ClientMsg::GetLoginUser { seq }
            | ClientMsg::GetLoginStatus { seq }
            | ClientMsg::RefreshSig { seq, .. }
            | ClientMsg::Send { seq, .. }
            | ClientMsg::Ping { seq } => *seq,
        }
    }

    /// The wire name of the request type (the JSON `type`).
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMsg::Login { .. } => "login",
            ClientMsg::Logout { .. } => "logout",
            ClientMsg::GetLoginUser { .. } => "get_login_user",
            ClientMsg::GetLoginStatus { .. } => "get_login_status",
            ClientMsg::RefreshSig { .. } => "refresh_sig",
            ClientMsg::Send { .. } => "send",
            ClientMsg::Ping { .. } => "ping",
        }
    }
}

/// Why a session was kicked (contract §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
#[serde(rename_all = "snake_case")]
pub enum KickReason {
    /// A newer login took the slot (exclusive group or instance cap).
    MultiDevice,
    /// A newer connection with the same `instance_id` on the same platform.
    Replaced,
    /// The admin kick API.
    Admin,
}

impl KickReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            KickReason::MultiDevice => "multi_device",
            KickReason::Replaced => "replaced",
            KickReason::Admin => "admin",
        }
    }
}

/// A message from the gateway: a response to a request, or a push (no `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Response {
        seq: u64,
        code: u32,
        desc: String,
        /// Present only on success. `Some(ResponseData::Empty)` is JSON `"data":null` (logout).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present_data"
        )]
        data: Option<ResponseData>,
    },
    KickedOffline {
        reason: KickReason,
        /// The newcomer's platform; `null` for an admin kick.
        by_platform: Option<Platform>,
    },
    UserSigExpired,
    Message {
        from: String,
        /// `null` for a push from the admin API (`from` = `@admin`).
        from_platform: Option<Platform>,
        payload: String,
    },
}

/// A present `data` field, `null` included, is `Some`; only an absent one is `None`.
fn present_data<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ResponseData>, D::Error> {
    ResponseData::deserialize(d).map(Some)
}

impl ServerMsg {
    /// A success response carrying `data`.
    pub fn ok(seq: u64, data: ResponseData) -> ServerMsg {
        ServerMsg::Response {
            seq,
            code: Code::Ok.as_u32(),
            desc: Code::Ok.desc().to_owned(),
            data: Some(data),
        }
    }

    /// A failure response with the code's default description.
    pub fn error(seq: u64, code: Code) -> ServerMsg {
        ServerMsg::error_with(seq, code, code.desc().to_owned())
    }

    /// A failure response with a specific description.
    pub fn error_with(seq: u64, code: Code, desc: String) -> ServerMsg {
        ServerMsg::Response {
            seq,
            code: code.as_u32(),
            desc,
            data: None,
        }
    }
}

/// The `data` of a success response (contract §5). In JSON it is the bare object (untagged);
/// in bincode it is tagged by variant index like every other enum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
#[serde(untagged)]
pub enum ResponseData {
    /// login
    Login {
        user_id: String,
        platform: Platform,
        instance_id: Option<String>,
        /// `TLS.time + TLS.expire`, unix seconds.
        expire_at: u64,
    },
    /// get_login_user (`""` when not logged in)
    LoginUser { user_id: String },
    /// refresh_sig
    RefreshSig { expire_at: u64 },
    /// get_login_status: 1 logged in, 2 logging in, 3 logged out
    LoginStatus { status: u8 },
    /// send: logged-in sockets of `to` that got the message
    Send { delivered: u32 },
    /// ping
    Ping { server_time_ms: u64 },
    /// logout (`"data":null`)
    Empty,
}
