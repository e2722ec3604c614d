//! Result codes (contract §2, §6), login status values and WebSocket close codes (§7).

use std::fmt;

/// A response code with Tencent's numbers. On the wire it is the plain number (`code` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Code {
    Ok = 0,
    NotLoggedIn = 6014,
    InvalidParameters = 6017,
    InvalidUserId = 7003,
    RateLimited = 7008,
    SigExpired = 70001,
    SigEmpty = 70002,
    SigUndecodable = 70003,
    SigBadHmac = 70009,
    SigIdentifierMismatch = 70013,
    SigAppIdMismatch = 70014,
    AppNotConfigured = 70020,
    Throttled = 70050,
    SigRevoked = 70052,
    PresenceUnavailable = 70169,
}

impl Code {
    /// Every code, for tables and tests.
    pub const ALL: [Code; 15] = [
        Code::Ok,
        Code::NotLoggedIn,
        Code::InvalidParameters,
        Code::InvalidUserId,
        Code::RateLimited,
        Code::SigExpired,
        Code::SigEmpty,
        Code::SigUndecodable,
        Code::SigBadHmac,
        Code::SigIdentifierMismatch,
        Code::SigAppIdMismatch,
        Code::AppNotConfigured,
        Code::Throttled,
        Code::SigRevoked,
        Code::PresenceUnavailable,
    ];

    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    pub fn from_u32(n: u32) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_u32() == n)
    }

    /// The default `desc` of a response with this code.
    pub const fn desc(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::NotLoggedIn => "not logged in",
            Code::InvalidParameters => "invalid parameters",
            Code::InvalidUserId => "invalid user_id",
            Code::RateLimited => "request rate limit: slow down",
            Code::SigExpired => "UserSig expired",
            Code::SigEmpty => "UserSig is empty",
            Code::SigUndecodable => "UserSig cannot be decoded",
            Code::SigBadHmac => "UserSig signature does not match (wrong key)",
            Code::SigIdentifierMismatch => "UserSig identifier does not match user_id",
            Code::SigAppIdMismatch => "UserSig sdkappid does not match sdk_app_id",
            Code::AppNotConfigured => "sdk_app_id is not configured",
            Code::Throttled => "too many failed UserSig verifications, try again later",
            Code::SigRevoked => "UserSig was invalidated by the admin kick API",
            Code::PresenceUnavailable => "presence store unavailable, retry",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_u32(), self.desc())
    }
}

/// `get_login_status` values (contract §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LoginStatus {
    LoggedIn = 1,
    LoggingIn = 2,
    LoggedOut = 3,
}

/// WebSocket close codes used by the gateway (contract §3, §7).
pub mod close {
    /// Server shutdown.
    pub const GOING_AWAY: u16 = 1001;
    /// Undecodable frame.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Too many inbound frames per second (contract §16).
    pub const RATE_LIMIT: u16 = 1008;
    /// Inbound message larger than `max_frame_bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// No login within `login_timeout_secs`.
    pub const LOGIN_TIMEOUT: u16 = 4000;
    /// No inbound frame for `idle_timeout_secs`.
    pub const IDLE_TIMEOUT: u16 = 4001;
    /// Outbound queue overflowed (slow consumer).
    pub const SLOW_CONSUMER: u16 = 4003;
    /// Kicked by a newer login (multi-device policy or same instance id). Terminal.
    pub const KICKED: u16 = 4501;
    /// Kicked by the admin API. Terminal.
    pub const ADMIN_KICKED: u16 = 4502;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_tencent_numbers() {
        let nums: Vec<u32> = Code::ALL.iter().map(|c| c.as_u32()).collect();
        assert_eq!(
            nums,
            [
                0, 6014, 6017, 7003, 7008, 70001, 70002, 70003, 70009, 70013, 70014, 70020, 70050,
                70052, 70169
            ]
        );
        for c in Code::ALL {
            assert_eq!(Code::from_u32(c.as_u32()), Some(c));
        }
        assert_eq!(Code::from_u32(1), None);
    }
}
