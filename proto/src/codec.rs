//! The one codec: JSON for WebSocket text frames, bincode 2 (`config::standard()`) for binary frames.
//!
//! Decoding is bounded twice: the caller's `max` (the gateway's `max_frame_bytes`) rejects a payload
//! before any parsing, and bincode runs under a fixed limit so that a forged length prefix can never
//! make it allocate more than [`MAX_FRAME_LIMIT`] bytes.

use crate::msg::{ClientMsg, ServerMsg};
use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The largest frame any imgate peer may be configured to accept (1 MiB); also bincode's allocation
/// limit while decoding.
pub const MAX_FRAME_LIMIT: usize = 1 << 20;

type BinConfig = Configuration<LittleEndian, Varint, Limit<MAX_FRAME_LIMIT>>;

const fn bin_config() -> BinConfig {
    config::standard().with_limit::<MAX_FRAME_LIMIT>()
}

/// Which frame kind carries a message. A response uses the encoding of its request; pushes use the
/// encoding of the frame that logged the session in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// UTF-8 JSON in a text frame.
    #[default]
    Json,
    /// bincode 2, standard config, in a binary frame.
    Bincode,
}

/// Why a frame payload could not be decoded. Each maps to close 1007, except `TooLarge` (1009).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("invalid JSON message: {0}")]
    Json(String),
    #[error("invalid bincode message: {0}")]
    Bincode(String),
    #[error("{0} trailing bytes after the bincode message")]
    TrailingBytes(usize),
}

impl DecodeError {
    /// A reason short enough for a WebSocket close frame (at most 123 bytes).
    pub fn close_reason(&self) -> String {
        let mut s = self.to_string();
        if s.len() > 120 {
            let mut cut = 117;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
        }
        s
    }
}

fn decode<T: DeserializeOwned + bincode::Decode<()>>(
    enc: Encoding,
    bytes: &[u8],
    max: usize,
) -> Result<T, DecodeError> {
    let max = max.min(MAX_FRAME_LIMIT);
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    match enc {
        Encoding::Json => {
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))
        }
        Encoding::Bincode => {
            let (msg, used) = bincode::decode_from_slice(bytes, bin_config())
                .map_err(|e| DecodeError::Bincode(e.to_string()))?;
            if used != bytes.len() {
                return Err(DecodeError::TrailingBytes(bytes.len() - used));
            }
            Ok(msg)
        }
    }
}

fn encode<T: Serialize + bincode::Encode>(enc: Encoding, msg: &T) -> Vec<u8> {
    match enc {
        // Serialising these types cannot fail: every map key is a string and no Serialize impl errs.
        Encoding::Json => serde_json::to_vec(msg).expect("protocol types always serialise to JSON"),
        Encoding::Bincode => bincode::encode_to_vec(msg, bin_config())
            .expect("bincode encoding into a Vec is infallible"),
    }
}

/// Decodes a client request (gateway side).
pub fn decode_client(enc: Encoding, bytes: &[u8], max: usize) -> Result<ClientMsg, DecodeError> {
    decode(enc, bytes, max)
}

/// Encodes a server message (gateway side). For `Json` the bytes are valid UTF-8.
pub fn encode_server(enc: Encoding, msg: &ServerMsg) -> Vec<u8> {
    encode(enc, msg)
}

/// Encodes a client request (client side). For `Json` the bytes are valid UTF-8.
pub fn encode_client(enc: Encoding, msg: &ClientMsg) -> Vec<u8> {
    encode(enc, msg)
}

/// Decodes a server message (client side).
pub fn decode_server(enc: Encoding, bytes: &[u8], max: usize) -> Result<ServerMsg, DecodeError> {
    decode(enc, bytes, max)
}
