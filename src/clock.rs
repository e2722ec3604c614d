//! Wall-clock time in the units the protocol uses (UserSig times are unix seconds, `now` is compared
//! with millisecond precision).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the unix epoch.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}
