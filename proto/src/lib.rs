//! imgate-proto: the imgate wire protocol, alone.
//!
//! What this crate owns: every message a client and the gateway exchange (contract §4–§5), the result
//! codes (§2, §6), the platforms, the login status values and close codes (§7), the identity rules (§1), and the one codec that
//! turns them into WebSocket frame payloads: JSON for text frames, bincode 2 (standard config) for
//! binary frames, both under a size limit with a typed decode error.
//!
//! What it does not own: sockets, time, policy, UserSig verification. There is no tokio in here, so a
//! client (a load generator, a test, a native app) can depend on it alone. `PROTOCOL.md` beside this
//! crate documents the same protocol for client authors, with the bincode byte layout.

mod code;
mod codec;
mod ids;
mod msg;
mod platform;

pub use code::{close, Code, LoginStatus};
pub use codec::{
    decode_client, decode_server, encode_client, encode_server, DecodeError, Encoding,
    MAX_FRAME_LIMIT,
};
pub use ids::{valid_instance_id, valid_user_id};
pub use msg::{ClientMsg, KickReason, ResponseData, ServerMsg};
pub use platform::{Platform, ALL_PLATFORMS};
