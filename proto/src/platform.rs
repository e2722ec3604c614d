//! The client platforms of contract §1, with their wire spelling (lower case) and Tencent's spelling
//! used by the State.StateChange webhook (§11).

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A client platform. On the wire (JSON) it is the lower-case name; in bincode the variant index in
/// declaration order (android = 0 … web = 6).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode,
)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Android,
    Iphone,
    Ipad,
    Windows,
    Mac,
    Linux,
    Web,
}

/// Every platform, in declaration (and bincode index) order.
pub const ALL_PLATFORMS: [Platform; 7] = [
    Platform::Android,
    Platform::Iphone,
    Platform::Ipad,
    Platform::Windows,
    Platform::Mac,
    Platform::Linux,
    Platform::Web,
];

impl Platform {
    /// The wire name: `android`, `iphone`, `ipad`, `windows`, `mac`, `linux`, `web`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Android => "android",
            Platform::Iphone => "iphone",
            Platform::Ipad => "ipad",
            Platform::Windows => "windows",
            Platform::Mac => "mac",
            Platform::Linux => "linux",
            Platform::Web => "web",
        }
    }

    /// Tencent's spelling, used in webhooks: iOS, Android, Web, Windows, iPad, Mac, Linux.
    pub const fn tencent_name(self) -> &'static str {
        match self {
            Platform::Android => "Android",
            Platform::Iphone => "iOS",
            Platform::Ipad => "iPad",
            Platform::Windows => "Windows",
            Platform::Mac => "Mac",
            Platform::Linux => "Linux",
            Platform::Web => "Web",
        }
    }

    /// Parses the exact lower-case wire name; anything else is `None` (the gateway answers 6017).
    pub fn parse(s: &str) -> Option<Platform> {
        ALL_PLATFORMS.into_iter().find(|p| p.as_str() == s)
    }

    /// The bincode variant index, also a dense array index.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_rejects_other_spellings() {
        for p in ALL_PLATFORMS {
            assert_eq!(Platform::parse(p.as_str()), Some(p));
            assert_eq!(ALL_PLATFORMS[p.index()], p);
        }
        for bad in ["Android", "ios", "iOS", "", "web ", "WEB"] {
            assert_eq!(Platform::parse(bad), None, "{bad:?}");
        }
    }
}
