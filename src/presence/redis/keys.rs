//! The Redis key layout and the value codecs (contract §12; unchanged since cluster mode shipped,
//! since old and new nodes share one Redis during a rolling upgrade).
//!
//! A = sdk_app_id, U = user id:
//! - `im:{A:U}` hash: `e:<platform>:<iid or ~sid>` → `sid|node|order|expire_at|platform|ip|iid`,
//!   and `last`, the last order issued;
//! - `im:{A:U}:k` tombstones: sid → `reason|by_platform` (600 s);
//! - `im:{A:U}:nb` the admin revocation second (70052);
//! - `im:nodes` zset node → lease deadline (ms, Redis clock); `im:node:<id>:u` set of `A:U`;
//! - `im:ctl:<id>` the node's channel; `im:gen` a generation id (a change means Redis lost data);
//! - `im:sweep:<id>` the lock of whoever sweeps a dead node;
//! - `im:dau:<A>:<yyyymmdd>` HyperLogLog of the day's users.

use crate::policy::Policy;
use imgate_proto::{KickReason, Platform, ALL_PLATFORMS};

/// The lease zset.
pub const NODES: &str = "im:nodes";
/// The generation id.
pub const GENERATION: &str = "im:gen";

/// `im:{A:U}`.
pub fn user_hash(app: u64, user: &str) -> String {
    format!("im:{{{app}:{user}}}")
}

/// `im:{A:U}:k`.
pub fn tombstones(hash: &str) -> String {
    format!("{hash}:k")
}

/// `im:{A:U}:nb`.
pub fn revocation(hash: &str) -> String {
    format!("{hash}:nb")
}

/// `im:node:<id>:u`.
pub fn node_users(node: &str) -> String {
    format!("im:node:{node}:u")
}

/// `im:ctl:<id>`.
pub fn channel(node: &str) -> String {
    format!("im:ctl:{node}")
}

/// `im:sweep:<id>`.
pub fn sweep_lock(node: &str) -> String {
    format!("im:sweep:{node}")
}

/// `im:dau:<A>:<yyyymmdd>`.
pub fn dau(app: u64, now_ms: u64) -> String {
    format!("im:dau:{app}:{}", utc_day(now_ms))
}

/// `A:U`, a member of a node's user set.
pub fn member(app: u64, user: &str) -> String {
    format!("{app}:{user}")
}

/// Splits a member `A:U`.
pub fn parse_member(m: &str) -> Option<(u64, &str)> {
    let (app, user) = m.split_once(':')?;
    Some((app.parse().ok()?, user))
}

/// The hash field of a session: `e:<platform>:<iid>`, or `e:<platform>:~<sid>` without an iid.
pub fn field(platform: Platform, iid: Option<&str>, sid: u64) -> String {
    match iid {
        Some(i) => format!("e:{platform}:{i}"),
        None => format!("e:{platform}:~{sid}"),
    }
}

/// A presence entry as stored in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sid: u64,
    pub node: String,
    pub order: u64,
    pub expire_at: u64,
    pub platform: Platform,
    pub ip: String,
    pub instance_id: Option<String>,
}

impl Entry {
    pub fn parse(v: &str) -> Option<Entry> {
        let mut it = v.splitn(7, '|');
        Some(Entry {
            sid: it.next()?.parse().ok()?,
            node: it.next()?.to_owned(),
            order: it.next()?.parse().ok()?,
            expire_at: it.next()?.parse().ok()?,
            platform: Platform::parse(it.next()?)?,
            ip: it.next()?.to_owned(),
            instance_id: Some(it.next()?.to_owned()).filter(|s| !s.is_empty()),
        })
    }

    /// Login time in ms (the order is Redis's clock in µs).
    pub fn login_at_ms(&self) -> u64 {
        self.order / 1000
    }
}

/// A session a script evicted: `sid|node|platform|reason|iid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    pub sid: u64,
    pub node: String,
    pub platform: Platform,
    pub reason: KickReason,
}

impl Evicted {
    pub fn parse(v: &str) -> Option<Evicted> {
        let mut it = v.splitn(5, '|');
        Some(Evicted {
            sid: it.next()?.parse().ok()?,
            node: it.next()?.to_owned(),
            platform: Platform::parse(it.next()?)?,
            reason: parse_reason(it.next()?)?,
        })
    }
}

fn parse_reason(s: &str) -> Option<KickReason> {
    match s {
        "multi_device" => Some(KickReason::MultiDevice),
        "replaced" => Some(KickReason::Replaced),
        "admin" => Some(KickReason::Admin),
        _ => None,
    }
}

/// `reason|by_platform` of a tombstone or of a losing restore.
pub fn parse_tomb(s: &str) -> (KickReason, Option<Platform>) {
    let (r, by) = s.split_once('|').unwrap_or((s, ""));
    (
        parse_reason(r).unwrap_or(KickReason::MultiDevice),
        Platform::parse(by),
    )
}

/// The group of `platform` with each member's cap, as the login script takes it.
pub fn group_args(policy: &Policy, platform: Platform) -> Vec<String> {
    ALL_PLATFORMS
        .iter()
        .filter(|&&p| policy.same_group(p, platform))
        .map(|&p| format!("{p}={}", policy.max_instances(p)))
        .collect()
}

/// `yyyymmdd` of a UTC day.
pub fn utc_day(now_ms: u64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one key name.
    let days = (now_ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_days() {
        assert_eq!(utc_day(0), "19700101");
        assert_eq!(utc_day(1_700_000_000_000), "20231114");
        assert_eq!(utc_day(951_782_400_000), "20000229");
    }

    #[test]
    fn entries_victims_and_members_parse() {
        let e = Entry::parse("42|gw-1|1700000000123456|1700086400|web|127.0.0.1|tab|1").unwrap();
        assert_eq!(e.sid, 42);
        assert_eq!(e.instance_id.as_deref(), Some("tab|1"));
        assert_eq!(e.login_at_ms(), 1_700_000_000_123);
        let e = Entry::parse("42|gw-1|1|2|mac|::1|").unwrap();
        assert_eq!(e.instance_id, None);
        let v = Evicted::parse("7|gw-2|android|multi_device|").unwrap();
        assert_eq!((v.sid, v.reason), (7, KickReason::MultiDevice));
        assert_eq!(
            parse_tomb("replaced|iphone"),
            (KickReason::Replaced, Some(Platform::Iphone))
        );
        assert_eq!(parse_tomb("admin|"), (KickReason::Admin, None));
        assert_eq!(parse_member(&member(14, "a:b")), Some((14, "a:b")));
        assert_eq!(parse_member("x:y"), None);
        assert_eq!(user_hash(1, "u"), "im:{1:u}");
        assert_eq!(field(Platform::Web, None, 9), "e:web:~9");
    }

    #[test]
    fn group_args_carry_caps() {
        let mut p = Policy::preset("dual").unwrap();
        p.set_max_instances(Platform::Web, 3);
        assert_eq!(group_args(&p, Platform::Web), ["web=3"]);
        assert_eq!(group_args(&p, Platform::Mac).len(), 6);
    }
}
