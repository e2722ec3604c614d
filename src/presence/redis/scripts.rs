//! The command connection to Redis and typed calls of the Lua scripts in `lua/`.
//!
//! Every call is bounded by `redis_timeout_ms` (a hung Redis answers [`ClusterError::Timeout`], never
//! a wait), and records whether Redis answered ([`Redis::is_up`]). The scripts that change presence
//! also carry a deadline on Redis's clock, so one that waited in a hung Redis past the time this node
//! gave up on it changes nothing. Batches of one script (reconcile checks, sweeps) go as one
//! pipeline of EVALSHA per [`BATCH`] calls.

use super::keys::{self, Entry, Evicted};
use crate::policy::Policy;
use imgate_proto::{KickReason, Platform};
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, Script, Value};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

/// Calls per pipelined batch.
pub const BATCH: usize = 512;
/// How long a tombstone (why a session was evicted) is kept for reconciliation.
pub const TOMBSTONE_TTL_SECS: u64 = 600;
/// How long an admin revocation is kept: longer than any UserSig a backend mints in practice.
pub const REVOCATION_TTL_SECS: u64 = 400 * 24 * 3600;

const COMMON: &str = include_str!("lua/common.lua");
const ADMIT: &str = include_str!("lua/admit.lua");

fn script(parts: &[&str]) -> Script {
    let mut body = String::from(COMMON);
    for p in parts {
        body.push('\n');
        body.push_str(p);
    }
    Script::new(&body)
}

/// Every script, compiled once per process.
struct Scripts {
    login: Script,
    switch: Script,
    unreg: Script,
    check: Script,
    refresh: Script,
    read: Script,
    kick: Script,
    heartbeat: Script,
    sweep: Script,
    forget_node: Script,
    drop_member: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    login: script(&[ADMIT, include_str!("lua/login.lua")]),
    switch: script(&[ADMIT, include_str!("lua/switch.lua")]),
    unreg: script(&[include_str!("lua/unreg.lua")]),
    check: script(&[include_str!("lua/check.lua")]),
    refresh: script(&[include_str!("lua/refresh.lua")]),
    read: script(&[include_str!("lua/read.lua")]),
    kick: script(&[include_str!("lua/kick.lua")]),
    heartbeat: script(&[include_str!("lua/heartbeat.lua")]),
    sweep: script(&[include_str!("lua/sweep.lua")]),
    forget_node: script(&[include_str!("lua/forget_node.lua")]),
    drop_member: script(&[include_str!("lua/drop_member.lua")]),
});

/// Why a Redis call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Redis did not answer within {0} ms")]
    Timeout(u64),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from Redis: {0}")]
    Reply(String),
    #[error("node id {0:?} is held by a live node")]
    NodeIdTaken(String),
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Int(i) => Some(i.to_string()),
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// A reply as a list of strings.
pub fn texts(v: Value) -> Result<Vec<String>, ClusterError> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| text(i).ok_or_else(|| ClusterError::Reply(format!("{i:?}"))))
            .collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(ClusterError::Reply(format!("{other:?}"))),
    }
}

/// The second element of a pub/sub push (its payload) as text.
pub fn push_payload(data: &[Value]) -> Option<String> {
    data.get(1).and_then(text)
}

/// The old session of an account switch, logged out by the same script.
#[derive(Debug, Clone, Copy)]
pub struct SwitchFrom<'a> {
    pub app: u64,
    pub user: &'a str,
    pub platform: Platform,
    pub iid: Option<&'a str>,
    pub sid: u64,
}

/// One login, account switch or restore as the scripts take it (public for the differential test).
#[derive(Debug, Clone)]
pub struct ScriptLogin<'a> {
    pub restore: bool,
    /// With `restore`: decide the session again even when its entry is present (after this node's
    /// lease lapsed, its entries came back to life beside logins admitted without counting them).
    pub recheck: bool,
    pub node: &'a str,
    pub app: u64,
    pub user: &'a str,
    pub sid: u64,
    pub platform: Platform,
    pub iid: Option<&'a str>,
    pub expire_at: u64,
    pub tls_time: u64,
    pub order: u64,
    pub ip: &'a str,
    /// The socket's session of the same user, updated in place.
    pub replaces: Option<u64>,
    /// The socket's session of another user, switched out.
    pub switch: Option<SwitchFrom<'a>>,
    pub lease_ms: u64,
    /// Redis runs the script only until this time (ms, Redis's clock; 0: no deadline).
    pub deadline_ms: u64,
}

/// The outcome of the login script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptOutcome {
    /// Admitted with this order; these sessions were evicted.
    Admitted { order: u64, evicted: Vec<Evicted> },
    /// A restore that lost (or whose session was tombstoned), or a login whose own previous session
    /// was evicted meanwhile: close it with this reason.
    Lost(KickReason, Option<Platform>),
    /// The UserSig was revoked (70052).
    Revoked,
    /// Redis ran the script after its deadline, when the caller had given up: nothing changed.
    Late,
}

/// Runs the login (or switch) script once on `con`, unbounded (public for the differential test
/// against [`policy::canonical`](crate::policy::canonical)).
pub async fn run_login_script(
    con: &mut ConnectionManager,
    policy: &Policy,
    l: &ScriptLogin<'_>,
) -> Result<ScriptOutcome, ClusterError> {
    let hash = keys::user_hash(l.app, l.user);
    let scripts = &*SCRIPTS;
    let mut inv = if l.switch.is_some() {
        scripts.switch.key(&hash)
    } else {
        scripts.login.key(&hash)
    };
    inv.key(keys::tombstones(&hash))
        .key(keys::revocation(&hash))
        .key(keys::NODES)
        .key(keys::node_users(l.node));
    if let Some(s) = &l.switch {
        let old = keys::user_hash(s.app, s.user);
        inv.key(&old).key(keys::tombstones(&old));
    }
    let mode = match (l.restore, l.recheck) {
        (false, _) => "login",
        (true, false) => "restore",
        (true, true) => "recheck",
    };
    inv.arg(mode)
        .arg(l.node)
        .arg(l.sid.to_string())
        .arg(l.platform.as_str())
        .arg(l.iid.unwrap_or(""))
        .arg(l.expire_at)
        .arg(l.tls_time)
        .arg(l.order)
        .arg(TOMBSTONE_TTL_SECS)
        .arg(keys::member(l.app, l.user))
        .arg(l.ip)
        .arg(l.replaces.map(|s| s.to_string()).unwrap_or_default())
        .arg(l.lease_ms)
        .arg(l.deadline_ms);
    if let Some(s) = &l.switch {
        inv.arg(keys::field(s.platform, s.iid, s.sid))
            .arg(s.sid.to_string());
    }
    for g in keys::group_args(policy, l.platform) {
        inv.arg(g);
    }
    let reply: Value = inv.invoke_async(con).await?;
    let parts = texts(reply)?;
    match parts.first().map(String::as_str) {
        Some("70052") => Ok(ScriptOutcome::Revoked),
        Some("70169") => Ok(ScriptOutcome::Late),
        Some("1") => {
            let (r, by) = keys::parse_tomb(parts.get(1).map(String::as_str).unwrap_or(""));
            Ok(ScriptOutcome::Lost(r, by))
        }
        Some("0") => {
            let order = parts
                .get(1)
                .and_then(|o| o.parse().ok())
                .ok_or_else(|| ClusterError::Reply(parts.join(",")))?;
            let evicted = parts[2..]
                .iter()
                .filter_map(|v| Evicted::parse(v))
                .collect();
            Ok(ScriptOutcome::Admitted { order, evicted })
        }
        _ => Err(ClusterError::Reply(parts.join(","))),
    }
}

/// What a heartbeat learnt.
#[derive(Debug)]
pub struct Beat {
    /// This node's lease had lapsed (or was never there): it may have been swept.
    pub lapsed: bool,
    pub generation: String,
    pub live_nodes: u64,
    /// Nodes whose lease has lapsed.
    pub dead: Vec<String>,
    /// Redis's clock (ms) when it ran.
    pub redis_now_ms: u64,
}

/// The command connection.
pub struct Redis {
    con: ConnectionManager,
    timeout: Duration,
    up: AtomicBool,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redis")
    }
}

impl Redis {
    pub fn new(con: ConnectionManager, timeout: Duration) -> Redis {
        Redis {
            con,
            timeout,
            up: AtomicBool::new(true),
        }
    }

    /// Whether the last call got an answer.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn con(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// Runs a call within the timeout and records whether Redis answered.
    pub async fn bounded<T>(
        &self,
        f: impl Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        let r = match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(ClusterError::Timeout(self.timeout.as_millis() as u64)),
        };
        let answered = !matches!(r, Err(ClusterError::Timeout(_) | ClusterError::Redis(_)));
        self.up.store(answered, Ordering::Relaxed);
        r
    }

    /// A plain command.
    pub async fn query<T: FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, ClusterError> {
        let mut con = self.con();
        self.bounded(async move { Ok(cmd.query_async(&mut con).await?) })
            .await
    }

    /// A pipeline.
    pub async fn pipe<T: FromRedisValue>(&self, p: redis::Pipeline) -> Result<T, ClusterError> {
        let mut con = self.con();
        self.bounded(async move { Ok(p.query_async(&mut con).await?) })
            .await
    }

    /// One script call per item, pipelined in batches of [`BATCH`]; the replies in order.
    async fn each<T: FromRedisValue>(
        &self,
        script: &Script,
        calls: Vec<(Vec<String>, Vec<String>)>,
    ) -> Result<Vec<T>, ClusterError> {
        let mut out = Vec::with_capacity(calls.len());
        if calls.is_empty() {
            return Ok(out);
        }
        let mut con = self.con();
        let _: String = self
            .bounded(async { Ok(script.load_async(&mut con).await?) })
            .await?;
        for batch in calls.chunks(BATCH) {
            let mut p = redis::pipe();
            for (keys, args) in batch {
                p.cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(keys.len())
                    .arg(keys)
                    .arg(args);
            }
            let replies: Vec<T> = self
                .bounded(async { Ok(p.query_async(&mut con).await?) })
                .await?;
            out.extend(replies);
        }
        Ok(out)
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, ClusterError> {
        let mut con = self.con();
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(a);
        }
        self.bounded(async move { Ok(inv.invoke_async(&mut con).await?) })
            .await
    }

    /// A login, account switch or restore.
    pub async fn login(
        &self,
        policy: &Policy,
        l: &ScriptLogin<'_>,
    ) -> Result<ScriptOutcome, ClusterError> {
        let mut con = self.con();
        self.bounded(run_login_script(&mut con, policy, l)).await
    }

    /// Compare-and-deletes a session; true when it was removed.
    pub async fn unreg(&self, hash: &str, field: &str, sid: u64) -> Result<bool, ClusterError> {
        let n: i64 = self
            .invoke(
                &SCRIPTS.unreg,
                &[hash],
                &[field.to_owned(), sid.to_string()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Where each session stands: `present`, `tomb:<reason|by>` or `missing`.
    pub async fn check(
        &self,
        items: &[(String, String, u64)],
    ) -> Result<Vec<String>, ClusterError> {
        let calls = items
            .iter()
            .map(|(hash, field, sid)| {
                (
                    vec![hash.clone(), keys::tombstones(hash)],
                    vec![field.clone(), sid.to_string()],
                )
            })
            .collect();
        self.each(&SCRIPTS.check, calls).await
    }

    /// A session's new `expire_at`: 1 updated, 0 not this session, -1 ran too late, -2 revoked.
    pub async fn refresh(
        &self,
        hash: &str,
        field: &str,
        sid: u64,
        expire_at: u64,
        deadline_ms: u64,
        tls_time: u64,
    ) -> Result<i64, ClusterError> {
        let nb = keys::revocation(hash);
        let args = [
            field.to_owned(),
            sid.to_string(),
            expire_at.to_string(),
            deadline_ms.to_string(),
            tls_time.to_string(),
        ];
        self.invoke(&SCRIPTS.refresh, &[hash, &nb], &args).await
    }

    /// The live entries of a user, in login order.
    pub async fn read(&self, hash: &str) -> Result<Vec<Entry>, ClusterError> {
        let v: Value = self
            .invoke(&SCRIPTS.read, &[hash, keys::NODES], &[])
            .await?;
        let mut out: Vec<Entry> = texts(v)?.iter().filter_map(|s| Entry::parse(s)).collect();
        out.sort_by_key(|e| e.order);
        Ok(out)
    }

    /// Admin kick; `None` when it ran after its deadline (and changed nothing).
    pub async fn kick(
        &self,
        hash: &str,
        platform: Option<Platform>,
        iid: Option<&str>,
        whole: bool,
        deadline_ms: u64,
    ) -> Result<Option<Vec<Evicted>>, ClusterError> {
        let (k, nb) = (keys::tombstones(hash), keys::revocation(hash));
        let args = [
            platform.map(|p| p.as_str()).unwrap_or("").to_owned(),
            iid.unwrap_or("").to_owned(),
            if whole { "1" } else { "0" }.to_owned(),
            TOMBSTONE_TTL_SECS.to_string(),
            REVOCATION_TTL_SECS.to_string(),
            deadline_ms.to_string(),
        ];
        let v: Value = self.invoke(&SCRIPTS.kick, &[hash, &k, &nb], &args).await?;
        let lines = texts(v)?;
        if lines.first().map(String::as_str) == Some("late") {
            return Ok(None);
        }
        Ok(Some(
            lines.iter().filter_map(|s| Evicted::parse(s)).collect(),
        ))
    }

    /// Renews the node's lease (`claim`: refuse an id held by a live node).
    pub async fn heartbeat(
        &self,
        node: &str,
        lease_ms: u64,
        claim: bool,
    ) -> Result<Beat, ClusterError> {
        let args = [
            node.to_owned(),
            lease_ms.to_string(),
            if claim { "claim" } else { "beat" }.to_owned(),
            format!("{:016x}", rand::random::<u64>()),
        ];
        let v: Value = self
            .invoke(&SCRIPTS.heartbeat, &[keys::NODES, keys::GENERATION], &args)
            .await?;
        let parts = texts(v)?;
        if parts.first().map(String::as_str) == Some("-1") {
            return Err(ClusterError::NodeIdTaken(node.to_owned()));
        }
        let num = |i: usize| parts.get(i).and_then(|s| s.parse::<u64>().ok());
        let redis_now_ms = num(2).ok_or_else(|| ClusterError::Reply(parts.join(",")))?;
        Ok(Beat {
            lapsed: num(1).is_none_or(|prev| prev <= redis_now_ms),
            generation: parts.get(3).cloned().unwrap_or_default(),
            live_nodes: num(4).unwrap_or(0),
            dead: parts.iter().skip(5).cloned().collect(),
            redis_now_ms,
        })
    }

    /// Removes a node's entries of these users (only while its lease is lapsed, unless `own`
    /// ... the node itself leaving); per user, `platform|ip` of each removed session.
    pub async fn sweep(
        &self,
        node: &str,
        users: &[(u64, &str)],
    ) -> Result<Vec<Vec<String>>, ClusterError> {
        let calls = users
            .iter()
            .map(|(app, user)| {
                (
                    vec![keys::user_hash(*app, user), keys::NODES.to_owned()],
                    vec![node.to_owned()],
                )
            })
            .collect();
        self.each(&SCRIPTS.sweep, calls).await
    }

    /// Forgets a swept node if its lease is still lapsed.
    pub async fn forget_node(&self, node: &str) -> Result<(), ClusterError> {
        let set = keys::node_users(node);
        let _: i64 = self
            .invoke(
                &SCRIPTS.forget_node,
                &[keys::NODES, &set],
                &[node.to_owned()],
            )
            .await?;
        Ok(())
    }

    /// Removes a user from a node's set unless an entry of the user names the node.
    pub async fn drop_member(&self, node: &str, app: u64, user: &str) -> Result<(), ClusterError> {
        let (hash, set) = (keys::user_hash(app, user), keys::node_users(node));
        let _: i64 = self
            .invoke(
                &SCRIPTS.drop_member,
                &[&hash, &set],
                &[node.to_owned(), keys::member(app, user)],
            )
            .await?;
        Ok(())
    }
}
