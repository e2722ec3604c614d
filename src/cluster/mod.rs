//! Cluster mode (contract §12): presence shared by several nodes through one Redis.
//!
//! What it owns: the shared presence in Redis (one hash per user, written only by Lua scripts that
//! apply [`policy::canonical`] atomically per user and take the login order from Redis's clock), the
//! node's own index of its sockets by session id, the routing of kicks and deliveries to the node
//! that owns a socket (one pub/sub channel per node), node liveness by leases, the sweeper that
//! removes a dead node's sessions, and reconciliation, which repairs whatever a lost message or a
//! lost Redis left behind.
//!
//! Key layout (A = sdk_app_id, U = user id):
//! - `im:{A:U}` hash: `e:<platform>:<iid or ~sid>` → `sid|node|order|expire_at|platform|ip|iid`,
//!   and `last`, the last order issued;
//! - `im:{A:U}:k` tombstones: sid → `reason|by_platform` (600 s);
//! - `im:{A:U}:nb` the admin revocation second (70052);
//! - `im:nodes` zset node → lease deadline (ms, Redis clock); `im:node:<id>:u` set of `A:U`;
//! - `im:ctl:<id>` the node's channel; `im:gen` a generation id (a change means Redis lost data);
//! - `im:dau:<A>:<yyyymmdd>` HyperLogLog of the day's users.
//!
//! Every Redis call runs under `redis_timeout_ms`. When Redis is unreachable, logins and refreshes
//! answer 70169 and change nothing, the admin presence calls answer 503, and sockets already logged
//! in keep working on their node; reconciliation puts them back into presence when Redis returns.
//! No map guard is held across an await.

use crate::config::ClusterConfig;
use crate::gateway::Gateway;
use crate::outbox::{Delivery, Event, Outbox};
use crate::policy::Policy;
use crate::presence::Instance;
use crate::webhook::Change;
use dashmap::DashMap;
use imgate_proto::{Code, KickReason, Platform, ALL_PLATFORMS};
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, Value};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// How long a tombstone (why a session was evicted) is kept for reconciliation.
const TOMBSTONE_TTL_SECS: u64 = 600;
/// How long an admin revocation is kept: longer than any UserSig a backend mints in practice.
const REVOCATION_TTL_SECS: u64 = 400 * 24 * 3600;
/// How long `send` and `/v1/push` wait for other nodes' delivery counts.
pub const DELIVERY_WAIT: Duration = Duration::from_millis(200);
/// Sessions (or users) per pipelined batch of reconcile checks.
const BATCH: usize = 512;
/// How often a timed reconcile also runs the reverse pass.
const REVERSE_EVERY: Duration = Duration::from_secs(60);
/// Pub/sub messages queued for the handler at most; beyond, they are dropped (reconcile repairs).
const PUSH_QUEUE: usize = 65_536;

const COMMON: &str = include_str!("lua/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

struct Scripts {
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

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            unreg: script(include_str!("lua/unreg.lua")),
            check: script(include_str!("lua/check.lua")),
            refresh: script(include_str!("lua/refresh.lua")),
            read: script(include_str!("lua/read.lua")),
            kick: script(include_str!("lua/kick.lua")),
            heartbeat: script(include_str!("lua/heartbeat.lua")),
            sweep: script(include_str!("lua/sweep.lua")),
            forget_node: script(include_str!("lua/forget_node.lua")),
            drop_member: script(include_str!("lua/drop_member.lua")),
        }
    }
}

/// Why a cluster call failed.
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

/// A session of this node, indexed by session id.
#[derive(Debug, Clone)]
struct Local {
    outbox: Arc<Outbox>,
    app: u64,
    user: Box<str>,
    platform: Platform,
    iid: Option<Box<str>>,
    /// 0 until Redis admitted the login.
    order: u64,
    expire_at: u64,
    ip: IpAddr,
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
    fn parse(v: &str) -> Option<Entry> {
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

/// A session another node (or this one) must close: `sid|node|platform|reason|iid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    pub sid: u64,
    pub node: String,
    pub platform: Platform,
    pub reason: KickReason,
}

fn parse_reason(s: &str) -> Option<KickReason> {
    match s {
        "multi_device" => Some(KickReason::MultiDevice),
        "replaced" => Some(KickReason::Replaced),
        "admin" => Some(KickReason::Admin),
        _ => None,
    }
}

impl Evicted {
    fn parse(v: &str) -> Option<Evicted> {
        let mut it = v.splitn(5, '|');
        Some(Evicted {
            sid: it.next()?.parse().ok()?,
            node: it.next()?.to_owned(),
            platform: Platform::parse(it.next()?)?,
            reason: parse_reason(it.next()?)?,
        })
    }
}

/// `reason|by_platform` of a tombstone or of a losing restore.
fn parse_tomb(s: &str) -> (KickReason, Option<Platform>) {
    let (r, by) = s.split_once('|').unwrap_or((s, ""));
    (
        parse_reason(r).unwrap_or(KickReason::MultiDevice),
        Platform::parse(by),
    )
}

/// A message on a node's channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum Ctl {
    Kick {
        sid: u64,
        reason: KickReason,
        by: Option<Platform>,
    },
    Deliver {
        app: u64,
        to: String,
        from: String,
        from_platform: Option<Platform>,
        payload: String,
        req: u64,
        reply_to: String,
    },
    Reply {
        req: u64,
        n: u32,
    },
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

fn texts(v: Value) -> Result<Vec<String>, ClusterError> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| text(i).ok_or_else(|| ClusterError::Reply(format!("{i:?}"))))
            .collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(ClusterError::Reply(format!("{other:?}"))),
    }
}

fn hash_key(app: u64, user: &str) -> String {
    format!("im:{{{app}:{user}}}")
}

fn field(platform: Platform, iid: Option<&str>, sid: u64) -> String {
    match iid {
        Some(i) => format!("e:{platform}:{i}"),
        None => format!("e:{platform}:~{sid}"),
    }
}

/// The group of `platform` with each member's cap, as the login script takes it.
fn group_args(policy: &Policy, platform: Platform) -> Vec<String> {
    ALL_PLATFORMS
        .iter()
        .filter(|&&p| policy.same_group(p, platform))
        .map(|&p| format!("{p}={}", policy.max_instances(p)))
        .collect()
}

/// The outcome of the login script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptOutcome {
    /// Admitted with this order; these sessions were evicted.
    Admitted { order: u64, evicted: Vec<Evicted> },
    /// A restore that lost (or whose session was tombstoned): close it with this reason.
    Lost(KickReason, Option<Platform>),
    /// The UserSig was revoked (70052).
    Revoked,
    /// Redis ran the script after its deadline, when the caller had given up: nothing changed.
    Late,
}

/// One login or restore as the script takes it (public for the differential test).
#[derive(Debug, Clone)]
pub struct ScriptLogin<'a> {
    pub restore: bool,
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
    pub replaces: Option<u64>,
    pub lease_ms: u64,
    /// Redis runs the script only until this time (ms, Redis's clock; 0: no deadline).
    pub deadline_ms: u64,
}

/// Runs the login script once on `con` (public for the differential test against
/// [`policy::canonical`](crate::policy::canonical)).
pub async fn run_login_script(
    con: &mut ConnectionManager,
    policy: &Policy,
    l: &ScriptLogin<'_>,
) -> Result<ScriptOutcome, ClusterError> {
    let hash = hash_key(l.app, l.user);
    let mut inv = LOGIN_SCRIPT.key(&hash);
    inv.key(format!("{hash}:k"))
        .key(format!("{hash}:nb"))
        .key("im:nodes")
        .key(format!("im:node:{}:u", l.node))
        .arg(if l.restore { "restore" } else { "login" })
        .arg(l.node)
        .arg(l.sid.to_string())
        .arg(l.platform.as_str())
        .arg(l.iid.unwrap_or(""))
        .arg(l.expire_at)
        .arg(l.tls_time)
        .arg(l.order)
        .arg(TOMBSTONE_TTL_SECS)
        .arg(format!("{}:{}", l.app, l.user))
        .arg(l.ip)
        .arg(l.replaces.map(|s| s.to_string()).unwrap_or_default())
        .arg(l.lease_ms)
        .arg(l.deadline_ms);
    for g in group_args(policy, l.platform) {
        inv.arg(g);
    }
    let reply: Value = inv.invoke_async(con).await?;
    let parts = texts(reply)?;
    match parts.first().map(String::as_str) {
        Some("70052") => Ok(ScriptOutcome::Revoked),
        Some("70169") => Ok(ScriptOutcome::Late),
        Some("1") => {
            let (r, by) = parse_tomb(parts.get(1).map(String::as_str).unwrap_or(""));
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

static LOGIN_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| script(include_str!("lua/login.lua")));

/// A login to admit cluster-wide.
#[derive(Debug)]
pub struct LoginRequest<'a> {
    pub app: u64,
    pub user: &'a str,
    pub outbox: &'a Arc<Outbox>,
    pub platform: Platform,
    pub instance_id: Option<&'a str>,
    pub expire_at: u64,
    pub tls_time: u64,
    pub ip: IpAddr,
    pub now_ms: u64,
    /// This socket's current session of the same user, updated in place (never kicked).
    pub replaces: Option<u64>,
}

/// Why a cluster login was not admitted; in every case nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// Answer with this code (70052 revoked, 70169 Redis unreachable).
    Code(Code),
    /// The socket's own session, which this login would update in place, was evicted meanwhile:
    /// the eviction stands and the socket's kick is on its way.
    Superseded,
}

/// An admitted login.
#[derive(Debug)]
pub struct Admission {
    pub sid: u64,
    /// The platforms of the devices it evicted, one per device.
    pub kicked: Vec<Platform>,
}

/// One node's view of the cluster.
pub struct Cluster {
    node: String,
    cfg: ClusterConfig,
    timeout: Duration,
    conn: ConnectionManager,
    pubsub: ConnectionManager,
    push_rx: Mutex<Option<mpsc::Receiver<redis::PushInfo>>>,
    scripts: Scripts,
    local: DashMap<u64, Local>,
    replies: DashMap<u64, mpsc::Sender<u32>>,
    next_req: AtomicU64,
    up: AtomicBool,
    reconcile_now: Notify,
    generation: Mutex<Option<String>>,
    /// Unregisters on their way to Redis.
    inflight: AtomicUsize,
    /// A sweep task is running.
    sweep_running: AtomicBool,
    /// Redis's clock minus ours (ms), from the last heartbeat: for the login script's deadline.
    clock_offset_ms: AtomicI64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({})", self.node)
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "imgate".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(40)
        .collect();
    format!("{host}-{:08x}", rand::random::<u32>())
}

fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

impl Cluster {
    /// Connects to Redis and claims the node id (refused when a live node holds it).
    pub async fn connect(cfg: &ClusterConfig) -> Result<Cluster, ClusterError> {
        let node = cfg.node_id.clone().unwrap_or_else(default_node_id);
        let timeout = Duration::from_millis(cfg.redis_timeout_ms);
        let manager_config = || {
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500))
        };
        let conn = redis::Client::open(cfg.redis_url.as_str())?
            .get_connection_manager_with_config(manager_config())
            .await?;
        let (push_tx, push_rx) = mpsc::channel(PUSH_QUEUE);
        let sender = move |info: redis::PushInfo| {
            // Never block the connection: a full queue drops, and reconciliation repairs.
            push_tx.try_send(info).map_err(|_| redis::aio::SendError)
        };
        let mut pubsub = redis::Client::open(resp3(&cfg.redis_url))?
            .get_connection_manager_with_config(
                manager_config()
                    .set_push_sender(sender)
                    .set_automatic_resubscription(),
            )
            .await?;
        pubsub.subscribe(format!("im:ctl:{node}")).await?;
        let cluster = Cluster {
            node,
            cfg: cfg.clone(),
            timeout,
            conn,
            pubsub,
            push_rx: Mutex::new(Some(push_rx)),
            scripts: Scripts::new(),
            local: DashMap::new(),
            replies: DashMap::new(),
            next_req: AtomicU64::new(1),
            up: AtomicBool::new(true),
            reconcile_now: Notify::new(),
            generation: Mutex::new(None),
            inflight: AtomicUsize::new(0),
            sweep_running: AtomicBool::new(false),
            clock_offset_ms: AtomicI64::new(0),
        };
        let beat = cluster.heartbeat_once(true).await?;
        *cluster.generation.lock() = Some(beat.generation);
        Ok(cluster)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Whether the last Redis call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, ClusterError> {
        let r = match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ClusterError::Redis(e)),
            Err(_) => Err(ClusterError::Timeout(self.cfg.redis_timeout_ms)),
        };
        self.up.store(r.is_ok(), Ordering::Relaxed);
        r
    }

    fn con(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Until when (Redis's clock, ms) a login script sent now may run: a script that waited in a
    /// hung Redis past the time this node gives up on it (answering 70169) must change nothing.
    /// A fifth of the budget is left for the reply to come back.
    fn script_deadline(&self) -> u64 {
        let redis_now =
            crate::clock::now_ms() as i64 + self.clock_offset_ms.load(Ordering::Relaxed);
        (redis_now + (self.cfg.redis_timeout_ms * 4 / 5) as i64).max(1) as u64
    }

    /// Admits a login cluster-wide: the login script decides, the evicted sessions are told (here
    /// or on their node), and the session joins this node's index. `Err` is the response code:
    /// 70052 (revoked) or 70169 (Redis unreachable); on `Err` nothing changed.
    pub async fn login(
        &self,
        gw: &Gateway,
        policy: &Policy,
        req: LoginRequest<'_>,
    ) -> Result<Admission, LoginFailure> {
        let sid = rand::random::<u64>().max(1);
        // Indexed before the script runs, so a kick that beats the reply finds the socket.
        self.local.insert(
            sid,
            Local {
                outbox: Arc::clone(req.outbox),
                app: req.app,
                user: req.user.into(),
                platform: req.platform,
                iid: req.instance_id.map(Into::into),
                order: 0,
                expire_at: req.expire_at,
                ip: req.ip,
            },
        );
        let ip = req.ip.to_string();
        let call = ScriptLogin {
            restore: false,
            node: &self.node,
            app: req.app,
            user: req.user,
            sid,
            platform: req.platform,
            iid: req.instance_id,
            expire_at: req.expire_at,
            tls_time: req.tls_time,
            order: 0,
            ip: &ip,
            replaces: req.replaces,
            lease_ms: self.cfg.lease_ms,
            deadline_ms: self.script_deadline(),
        };
        let mut con = self.con();
        let outcome = self
            .bounded_script(run_login_script(&mut con, policy, &call))
            .await;
        let (order, evicted) = match outcome {
            Ok(ScriptOutcome::Admitted { order, evicted }) => (order, evicted),
            Ok(ScriptOutcome::Revoked) => {
                self.local.remove(&sid);
                return Err(LoginFailure::Code(Code::SigRevoked));
            }
            Ok(ScriptOutcome::Lost(..)) => {
                // The session this login updates in place was evicted: its kick stands.
                self.local.remove(&sid);
                return Err(LoginFailure::Superseded);
            }
            Ok(ScriptOutcome::Late) | Err(_) => {
                if let Err(e) = &outcome {
                    tracing::warn!("cluster login failed: {e}");
                    // The script may have run with its reply lost: take the entry back at once
                    // (compare-and-delete by sid), and reconcile to catch up with the rest.
                    self.unregister_detached(req.app, req.user, req.platform, req.instance_id, sid);
                }
                self.local.remove(&sid);
                return Err(LoginFailure::Code(Code::PresenceUnavailable));
            }
        };
        if let Some(replaced) = req.replaces {
            self.forget(gw, replaced);
        }
        // Join the local index unless a kick already took the session (it is then closed next).
        if let Some(mut l) = self.local.get_mut(&sid) {
            l.order = order;
            gw.registry.insert(
                req.app,
                req.user,
                Instance {
                    outbox: Arc::clone(req.outbox),
                    session: sid,
                    platform: req.platform,
                    instance_id: req.instance_id.map(Into::into),
                    order,
                    login_at_ms: order / 1000,
                    expire_at: req.expire_at,
                },
            );
            gw.sessions_gauge(req.app, req.platform, 1);
        }
        let kicked = evicted.iter().map(|e| e.platform).collect();
        self.route_kicks(gw, req.app, evicted, Some(req.platform))
            .await;
        self.count_dau(req.app, req.user, req.now_ms);
        Ok(Admission { sid, kicked })
    }

    async fn bounded_script<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ClusterError>>,
    ) -> Result<T, ClusterError> {
        let r = match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(ClusterError::Timeout(self.cfg.redis_timeout_ms)),
        };
        self.up.store(
            !matches!(
                r,
                Err(ClusterError::Timeout(_)) | Err(ClusterError::Redis(_))
            ),
            Ordering::Relaxed,
        );
        r
    }

    /// Tells each evicted session: on this node at once, elsewhere through its node's channel.
    async fn route_kicks(
        &self,
        gw: &Gateway,
        app: u64,
        evicted: Vec<Evicted>,
        by: Option<Platform>,
    ) {
        for e in evicted {
            gw.count_kick(app, e.reason);
            if e.node == self.node {
                self.kick_local(gw, e.sid, e.reason, by);
            } else {
                let msg = Ctl::Kick {
                    sid: e.sid,
                    reason: e.reason,
                    by,
                };
                self.publish(&e.node, &msg).await;
            }
        }
    }

    async fn publish(&self, node: &str, msg: &Ctl) {
        let body = serde_json::to_string(msg).expect("control messages serialise");
        let mut con = self.con();
        let channel = format!("im:ctl:{node}");
        if let Err(e) = self.bounded(con.publish::<_, _, i64>(channel, body)).await {
            // Lost: the owner's reconciliation finds the tombstone.
            tracing::debug!(node, "publish failed: {e}");
        }
    }

    /// Closes a local session evicted by the policy or the admin API.
    fn kick_local(&self, gw: &Gateway, sid: u64, reason: KickReason, by: Option<Platform>) {
        let Some((_, l)) = self.local.remove(&sid) else {
            return;
        };
        if gw.registry.logout(l.app, &l.user, sid) {
            gw.sessions_gauge(l.app, l.platform, -1);
        }
        l.outbox.push(Event::Kick {
            session: sid,
            reason,
            by_platform: by,
        });
    }

    /// Drops a session from this node's index; true when it was there.
    fn forget(&self, gw: &Gateway, sid: u64) -> Option<Local> {
        let (_, l) = self.local.remove(&sid)?;
        if gw.registry.logout(l.app, &l.user, sid) {
            gw.sessions_gauge(l.app, l.platform, -1);
        }
        Some(l)
    }

    /// Ends a session of this node (logout, account switch, expiry, close). Returns whether it was
    /// still this node's (false: it was kicked meanwhile). Redis is updated in the background; if
    /// that fails, reconciliation removes the leftover later.
    pub fn unregister(self: &Arc<Self>, gw: &Gateway, sid: u64) -> bool {
        let Some(l) = self.forget(gw, sid) else {
            return false;
        };
        let me = Arc::clone(self);
        self.inflight.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let key = hash_key(l.app, &l.user);
            let f = field(l.platform, l.iid.as_deref(), sid);
            let mut con = me.con();
            let mut inv = me.scripts.unreg.key(key);
            inv.arg(f).arg(sid.to_string());
            if me.bounded(inv.invoke_async::<i64>(&mut con)).await.is_err() {
                // Left in Redis for now: the reverse pass of a triggered reconcile removes it.
                me.reconcile_now.notify_one();
            }
            me.inflight.fetch_sub(1, Ordering::SeqCst);
        });
        true
    }

    /// Compare-and-deletes a session's entry in the background and asks for a reconcile; for
    /// sessions this node gave up on (a login whose reply was lost, a restore of a closed socket).
    fn unregister_detached(
        &self,
        app: u64,
        user: &str,
        platform: Platform,
        iid: Option<&str>,
        sid: u64,
    ) {
        let mut con = self.con();
        let script = self.scripts.unreg.clone();
        let (key, f) = (hash_key(app, user), field(platform, iid, sid));
        let timeout = self.timeout;
        tokio::spawn(async move {
            let mut inv = script.key(key);
            inv.arg(f).arg(sid.to_string());
            let _ = tokio::time::timeout(timeout, inv.invoke_async::<i64>(&mut con)).await;
        });
        self.reconcile_now.notify_one();
    }

    /// Leaves the cluster on shutdown (after [`Cluster::settle`]): the lease is given up, so the
    /// node id can be used again at once and no sweeper waits for it.
    pub async fn leave(&self) {
        let mut con = self.con();
        if let Err(e) = self.leave_with(&mut con).await {
            tracing::warn!("leaving the cluster: {e}; the sweeper of another node finishes it");
        }
    }

    /// Gives up the lease, removes whatever Redis still holds of this node's sessions (unregisters
    /// lost in the rush of closes at shutdown) and its user set.
    async fn leave_with(&self, con: &mut ConnectionManager) -> Result<(), ClusterError> {
        let _: i64 = self.bounded(con.zrem("im:nodes", &self.node)).await?;
        let set = format!("im:node:{}:u", self.node);
        let members: Vec<String> = self.bounded(con.smembers(&set)).await?;
        let _: String = self.bounded(self.scripts.sweep.load_async(con)).await?;
        for batch in members.chunks(BATCH) {
            let mut p = redis::pipe();
            for u in batch {
                let Some((app, user)) = u.split_once(':') else {
                    continue;
                };
                let Ok(app) = app.parse::<u64>() else {
                    continue;
                };
                p.cmd("EVALSHA")
                    .arg(self.scripts.sweep.get_hash())
                    .arg(2)
                    .arg(hash_key(app, user))
                    .arg("im:nodes")
                    .arg(&self.node)
                    .ignore();
            }
            let _: () = self.bounded(p.query_async(con)).await?;
        }
        let _: i64 = self.bounded(con.del(&set)).await?;
        Ok(())
    }

    /// Resolves once the unregisters under way have reached Redis (or failed).
    pub async fn settle(&self) {
        while self.inflight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Extends a session's expiry in Redis: 70052 when the admin kick revoked the new UserSig,
    /// 70169 when Redis is unreachable; nothing changes on `Err`.
    pub async fn refresh(&self, sid: u64, expire_at: u64, tls_time: u64) -> Result<(), Code> {
        let Some(l) = self.local.get(&sid).map(|l| l.clone()) else {
            return Ok(()); // kicked meanwhile: its Kick event follows
        };
        let mut con = self.con();
        let key = hash_key(l.app, &l.user);
        let mut inv = self.scripts.refresh.key(&key);
        inv.key(format!("{key}:nb"))
            .arg(field(l.platform, l.iid.as_deref(), sid))
            .arg(sid.to_string())
            .arg(expire_at)
            .arg(self.script_deadline())
            .arg(tls_time);
        let done = self
            .bounded(inv.invoke_async::<i64>(&mut con))
            .await
            .map_err(|_| Code::PresenceUnavailable)?;
        match done {
            -2 => return Err(Code::SigRevoked),
            d if d < 0 => return Err(Code::PresenceUnavailable), // ran too late: changed nothing
            _ => {}
        }
        if let Some(mut l) = self.local.get_mut(&sid) {
            l.expire_at = expire_at;
        }
        Ok(())
    }

    /// The live entries of a user, cluster-wide.
    pub async fn entries(&self, app: u64, user: &str) -> Result<Vec<Entry>, ClusterError> {
        let mut con = self.con();
        let mut inv = self.scripts.read.key(hash_key(app, user));
        inv.key("im:nodes");
        let v: Value = self.bounded(inv.invoke_async(&mut con)).await?;
        let mut out: Vec<Entry> = texts(v)?.iter().filter_map(|s| Entry::parse(s)).collect();
        out.sort_by_key(|e| e.order);
        Ok(out)
    }

    /// Delivers a message to every socket of `to` on every node (except the socket `skip`):
    /// `Ok(n)` counts this node's deliveries and the other nodes' replies within
    /// [`DELIVERY_WAIT`]; `Err` when Redis is unreachable (nothing was delivered).
    pub async fn deliver(
        &self,
        gw: &Gateway,
        app: u64,
        to: &str,
        skip: Option<u64>,
        d: Delivery,
    ) -> Result<u32, ClusterError> {
        let entries = self.entries(app, to).await?;
        let mut nodes: Vec<&str> = entries
            .iter()
            .map(|e| e.node.as_str())
            .filter(|n| *n != self.node)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        let remote = if nodes.is_empty() {
            None
        } else {
            let req = self.next_req.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel(nodes.len());
            self.replies.insert(req, tx);
            for n in &nodes {
                let msg = Ctl::Deliver {
                    app,
                    to: to.to_owned(),
                    from: d.from.clone(),
                    from_platform: d.from_platform,
                    payload: d.payload.clone(),
                    req,
                    reply_to: self.node.clone(),
                };
                self.publish(n, &msg).await;
            }
            Some((req, rx, nodes.len()))
        };
        let mut delivered = gw.deliver(app, to, skip, d);
        if let Some((req, mut rx, expect)) = remote {
            let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
            for _ in 0..expect {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(n)) => delivered += n,
                    _ => break,
                }
            }
            self.replies.remove(&req);
        }
        Ok(delivered)
    }

    /// Admin kick cluster-wide; a whole-user kick also revokes every UserSig with `TLS.time` up to
    /// Redis's current second. Returns how many sessions were kicked.
    pub async fn kick(
        &self,
        gw: &Gateway,
        app: u64,
        user: &str,
        platform: Option<Platform>,
        iid: Option<&str>,
    ) -> Result<usize, ClusterError> {
        let key = hash_key(app, user);
        let whole = platform.is_none() && iid.is_none();
        let mut con = self.con();
        let mut inv = self.scripts.kick.key(&key);
        inv.key(format!("{key}:k"))
            .key(format!("{key}:nb"))
            .arg(platform.map(|p| p.as_str()).unwrap_or(""))
            .arg(iid.unwrap_or(""))
            .arg(if whole { "1" } else { "0" })
            .arg(TOMBSTONE_TTL_SECS)
            .arg(REVOCATION_TTL_SECS)
            .arg(self.script_deadline());
        let v: Value = self.bounded(inv.invoke_async(&mut con)).await?;
        let lines = texts(v)?;
        if lines.first().map(String::as_str) == Some("late") {
            // Ran after this node gave up on it: it changed nothing.
            return Err(ClusterError::Timeout(self.cfg.redis_timeout_ms));
        }
        let evicted: Vec<Evicted> = lines.iter().filter_map(|s| Evicted::parse(s)).collect();
        let n = evicted.len();
        self.route_kicks(gw, app, evicted, None).await;
        Ok(n)
    }

    fn count_dau(&self, app: u64, user: &str, now_ms: u64) {
        let key = format!("im:dau:{app}:{}", utc_day(now_ms));
        let user = user.to_owned();
        let mut con = self.con();
        let timeout = self.timeout;
        tokio::spawn(async move {
            let mut p = redis::pipe();
            p.pfadd(&key, user)
                .ignore()
                .expire(&key, 3 * 86_400)
                .ignore();
            let _ = tokio::time::timeout(timeout, p.query_async::<()>(&mut con)).await;
        });
    }

    /// Starts the background tasks: pub/sub handling, heartbeat with sweeper, reconciliation.
    pub fn spawn_tasks(self: &Arc<Self>, gw: Arc<Gateway>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(rx) = self.push_rx.lock().take() {
            tasks.push(tokio::spawn(
                Arc::clone(self).pubsub_loop(Arc::clone(&gw), rx),
            ));
        }
        tasks.push(tokio::spawn(
            Arc::clone(self).heartbeat_loop(Arc::clone(&gw)),
        ));
        tasks.push(tokio::spawn(Arc::clone(self).reconcile_loop(gw)));
        tasks
    }

    async fn pubsub_loop(
        self: Arc<Self>,
        gw: Arc<Gateway>,
        mut rx: mpsc::Receiver<redis::PushInfo>,
    ) {
        while let Some(info) = rx.recv().await {
            match info.kind {
                redis::PushKind::Message => {
                    let Some(body) = info.data.get(1).and_then(text) else {
                        continue;
                    };
                    match serde_json::from_str::<Ctl>(&body) {
                        Ok(msg) => self.handle_ctl(&gw, msg).await,
                        Err(e) => tracing::debug!("bad control message: {e}"),
                    }
                }
                redis::PushKind::Disconnection => {
                    tracing::info!("pub/sub connection lost: reconnecting and reconciling");
                    self.reconcile_now.notify_one();
                    let mut ps = self.pubsub.clone();
                    let me = Arc::clone(&self);
                    tokio::spawn(async move {
                        // Any command makes the manager reconnect (and resubscribe).
                        let _ = me
                            .bounded(redis::cmd("PING").query_async::<()>(&mut ps))
                            .await;
                    });
                }
                _ => {}
            }
        }
    }

    async fn handle_ctl(self: &Arc<Self>, gw: &Arc<Gateway>, msg: Ctl) {
        match msg {
            Ctl::Kick { sid, reason, by } => self.kick_local(gw, sid, reason, by),
            Ctl::Reply { req, n } => {
                if let Some(tx) = self.replies.get(&req) {
                    let _ = tx.try_send(n);
                }
            }
            Ctl::Deliver {
                app,
                to,
                from,
                from_platform,
                payload,
                req,
                reply_to,
            } => {
                let n = gw.deliver(
                    app,
                    &to,
                    None,
                    Delivery {
                        from,
                        from_platform,
                        payload,
                    },
                );
                let me = Arc::clone(self);
                tokio::spawn(async move { me.publish(&reply_to, &Ctl::Reply { req, n }).await });
            }
        }
    }

    async fn heartbeat_once(&self, claim: bool) -> Result<Beat, ClusterError> {
        let mut con = self.con();
        let mut inv = self.scripts.heartbeat.key("im:nodes");
        inv.key("im:gen")
            .arg(&self.node)
            .arg(self.cfg.lease_ms)
            .arg(if claim { "claim" } else { "beat" })
            .arg(format!("{:016x}", rand::random::<u64>()));
        let v: Value = self.bounded(inv.invoke_async(&mut con)).await?;
        let parts = texts(v)?;
        if parts.first().map(String::as_str) == Some("-1") {
            return Err(ClusterError::NodeIdTaken(self.node.clone()));
        }
        let num = |i: usize| parts.get(i).and_then(|s| s.parse::<u64>().ok());
        let now_ms = num(2).ok_or_else(|| ClusterError::Reply(parts.join(",")))?;
        self.clock_offset_ms.store(
            now_ms as i64 - crate::clock::now_ms() as i64,
            Ordering::Relaxed,
        );
        Ok(Beat {
            lapsed: num(1).is_none_or(|prev| prev <= now_ms),
            generation: parts.get(3).cloned().unwrap_or_default(),
            live_nodes: num(4).unwrap_or(0),
            dead: parts.iter().skip(5).cloned().collect(),
        })
    }

    async fn heartbeat_loop(self: Arc<Self>, gw: Arc<Gateway>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.heartbeat_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_up = true;
        // Sweep only after lease_ms of unbroken contact with Redis: when Redis comes back (an AOF
        // restart keeps the leases, all lapsed by then), every live node must first have had the
        // time to renew its lease, or it would be swept for dead (with false LinkClose webhooks).
        let mut up_since = tokio::time::Instant::now();
        let settle = Duration::from_millis(self.cfg.lease_ms);
        loop {
            tick.tick().await;
            match self.heartbeat_once(false).await {
                Ok(beat) => {
                    if !was_up {
                        up_since = tokio::time::Instant::now();
                    }
                    gw.metrics.redis_up.set(1);
                    gw.metrics.live_nodes.set(beat.live_nodes as i64);
                    let changed = {
                        let mut g = self.generation.lock();
                        let changed = g.as_deref() != Some(beat.generation.as_str());
                        *g = Some(beat.generation.clone());
                        changed
                    };
                    if beat.lapsed || changed || !was_up {
                        tracing::info!(
                            lapsed = beat.lapsed,
                            data_lost = changed,
                            "presence may be stale: reconciling"
                        );
                        self.reconcile_now.notify_one();
                    }
                    was_up = true;
                    let sweeping = up_since.elapsed() >= settle;
                    let dead: Vec<String> = beat
                        .dead
                        .into_iter()
                        .filter(|d| sweeping && *d != self.node)
                        .collect();
                    // Swept in its own task, so that the heartbeat (this node's lease) never
                    // waits for a large sweep; one sweep task at a time.
                    if !dead.is_empty() && !self.sweep_running.swap(true, Ordering::SeqCst) {
                        let (me, gw) = (Arc::clone(&self), Arc::clone(&gw));
                        tokio::spawn(async move {
                            for d in dead {
                                if let Err(e) = me.sweep(&gw, &d).await {
                                    tracing::debug!(node = %d, "sweep failed: {e}");
                                }
                            }
                            me.sweep_running.store(false, Ordering::SeqCst);
                        });
                    }
                    self.refresh_dau(&gw).await;
                    let mut ps = self.pubsub.clone();
                    let _ = self
                        .bounded(redis::cmd("PING").query_async::<()>(&mut ps))
                        .await;
                }
                Err(e) => {
                    if was_up {
                        tracing::warn!("Redis unreachable: {e}");
                    }
                    gw.metrics.redis_up.set(0);
                    was_up = false;
                }
            }
        }
    }

    async fn refresh_dau(&self, gw: &Gateway) {
        let day = utc_day(crate::clock::now_ms());
        for &app in gw.apps.keys() {
            let mut con = self.con();
            let key = format!("im:dau:{app}:{day}");
            if let Ok(n) = self.bounded(con.pfcount::<_, i64>(key)).await {
                gw.metrics.set_dau(app, n);
            }
        }
    }

    /// Removes a dead node's sessions (one sweeper per dead node, by a Redis lock) and emits one
    /// `Disconnect`/`LinkClose` webhook per session.
    async fn sweep(&self, gw: &Gateway, dead: &str) -> Result<(), ClusterError> {
        let mut con = self.con();
        let lock: Option<String> = self
            .bounded(
                redis::cmd("SET")
                    .arg(format!("im:sweep:{dead}"))
                    .arg(&self.node)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async(&mut con),
            )
            .await?;
        if lock.is_none() {
            return Ok(());
        }
        let set = format!("im:node:{dead}:u");
        let members: Vec<String> = self.bounded(con.smembers(&set)).await?;
        let users: Vec<(u64, &str)> = members
            .iter()
            .filter_map(|u| {
                let (app, user) = u.split_once(':')?;
                Some((app.parse::<u64>().ok()?, user))
            })
            .collect();
        let _: String = self
            .bounded(self.scripts.sweep.load_async(&mut con))
            .await?;
        // Pipelined batches: a dead node with many users is swept in few round trips.
        for batch in users.chunks(BATCH) {
            let mut p = redis::pipe();
            for (app, user) in batch {
                p.cmd("EVALSHA")
                    .arg(self.scripts.sweep.get_hash())
                    .arg(2)
                    .arg(hash_key(*app, user))
                    .arg("im:nodes")
                    .arg(dead);
            }
            let removed: Vec<Vec<String>> = self.bounded(p.query_async(&mut con)).await?;
            for ((app, user), removed) in batch.iter().zip(removed) {
                for r in removed {
                    let (p, ip) = r.split_once('|').unwrap_or((&r, ""));
                    let (Some(platform), Ok(ip)) = (Platform::parse(p), ip.parse::<IpAddr>())
                    else {
                        continue;
                    };
                    gw.state_change(*app, user, platform, ip, Change::LinkClose, Vec::new());
                }
            }
        }
        let mut inv = self.scripts.forget_node.key("im:nodes");
        inv.key(&set).arg(dead);
        let _: i64 = self.bounded(inv.invoke_async(&mut con)).await?;
        tracing::info!(node = %dead, "swept a dead node's sessions");
        Ok(())
    }

    async fn reconcile_loop(self: Arc<Self>, gw: Arc<Gateway>) {
        let every = Duration::from_secs(self.cfg.reconcile_secs);
        let mut last_reverse = tokio::time::Instant::now();
        loop {
            // A triggered pass (pub/sub lost, lease lapsed, data lost, Redis back) also runs the
            // reverse pass; timed passes run it once a minute, as it reads every user of the node.
            let triggered = tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = self.reconcile_now.notified() => true,
            };
            let reverse = triggered || last_reverse.elapsed() >= REVERSE_EVERY;
            match self.reconcile_pass(&gw, reverse).await {
                Ok(()) if reverse => last_reverse = tokio::time::Instant::now(),
                Ok(()) => {}
                Err(e) => tracing::debug!("reconcile interrupted: {e}"),
            }
        }
    }

    /// Checks every local session against Redis: tombstoned → closed with the stored reason;
    /// missing → restored with its original order (and closed if it loses); then removes Redis
    /// entries that name this node but have no socket here.
    pub async fn reconcile(&self, gw: &Gateway) -> Result<(), ClusterError> {
        self.reconcile_pass(gw, true).await
    }

    /// One pass; `reverse` also runs the reverse pass over this node's user set.
    async fn reconcile_pass(&self, gw: &Gateway, reverse: bool) -> Result<(), ClusterError> {
        let sessions: Vec<(u64, Local)> = self
            .local
            .iter()
            .filter(|e| e.order != 0)
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        let mut con = self.con();
        // Checks go in pipelined batches: one round trip per batch, not per session.
        let _: String = self
            .bounded(self.scripts.check.load_async(&mut con))
            .await?;
        for batch in sessions.chunks(BATCH) {
            let mut p = redis::pipe();
            for (sid, l) in batch {
                let key = hash_key(l.app, &l.user);
                p.cmd("EVALSHA")
                    .arg(self.scripts.check.get_hash())
                    .arg(2)
                    .arg(&key)
                    .arg(format!("{key}:k"))
                    .arg(field(l.platform, l.iid.as_deref(), *sid))
                    .arg(sid.to_string());
            }
            let states: Vec<String> = self.bounded(p.query_async(&mut con)).await?;
            for ((sid, l), state) in batch.iter().zip(states) {
                self.reconcile_one(gw, &mut con, *sid, l, &state).await?;
            }
        }
        if reverse {
            self.reverse_reconcile(&mut con).await?;
        }
        Ok(())
    }

    /// Acts on one local session's state in Redis (`present`, `tomb:…`, `missing`).
    async fn reconcile_one(
        &self,
        gw: &Gateway,
        con: &mut ConnectionManager,
        sid: u64,
        l: &Local,
        state: &str,
    ) -> Result<(), ClusterError> {
        if state == "present" {
            return Ok(());
        }
        if let Some(t) = state.strip_prefix("tomb:") {
            let (reason, by) = parse_tomb(t);
            self.kick_local(gw, sid, reason, by);
            return Ok(());
        }
        let Some(app) = gw.apps.get(&l.app) else {
            return Ok(());
        };
        let ip = l.ip.to_string();
        let call = ScriptLogin {
            restore: true,
            node: &self.node,
            app: l.app,
            user: &l.user,
            sid,
            platform: l.platform,
            iid: l.iid.as_deref(),
            expire_at: l.expire_at,
            tls_time: 0,
            order: l.order,
            ip: &ip,
            replaces: None,
            lease_ms: self.cfg.lease_ms,
            deadline_ms: self.script_deadline(),
        };
        match self
            .bounded_script(run_login_script(con, &app.policy, &call))
            .await?
        {
            ScriptOutcome::Admitted { evicted, .. } => {
                if !self.local.contains_key(&sid) {
                    // The socket closed while it was being restored: take the entry back.
                    self.unregister_detached(l.app, &l.user, l.platform, l.iid.as_deref(), sid);
                }
                self.route_kicks(gw, l.app, evicted, Some(l.platform)).await
            }
            ScriptOutcome::Lost(reason, by) => self.kick_local(gw, sid, reason, by),
            // too late: the next reconcile retries
            ScriptOutcome::Revoked | ScriptOutcome::Late => {}
        }
        Ok(())
    }

    /// Entries in Redis that name this node without a socket here (an unregister lost while Redis
    /// was down) are compare-and-deleted.
    async fn reverse_reconcile(&self, con: &mut ConnectionManager) -> Result<(), ClusterError> {
        let set = format!("im:node:{}:u", self.node);
        let members: Vec<String> = self.bounded(con.smembers(&set)).await?;
        let users: Vec<(String, String)> = members
            .into_iter()
            .filter_map(|u| {
                let (app, user) = u.split_once(':')?;
                let app = app.parse::<u64>().ok()?;
                Some((hash_key(app, user), u))
            })
            .collect();
        for batch in users.chunks(BATCH) {
            let mut p = redis::pipe();
            for (key, _) in batch {
                p.hgetall(key);
            }
            let hashes: Vec<Vec<(String, String)>> = self.bounded(p.query_async(con)).await?;
            for ((key, member), all) in batch.iter().zip(hashes) {
                let mut mine = 0;
                for (f, v) in all {
                    let Some(e) = f.starts_with("e:").then(|| Entry::parse(&v)).flatten() else {
                        continue;
                    };
                    if e.node != self.node {
                        continue;
                    }
                    if self.local.contains_key(&e.sid) {
                        mine += 1;
                        continue;
                    }
                    let mut inv = self.scripts.unreg.key(key);
                    inv.arg(&f).arg(e.sid.to_string());
                    let _: i64 = self.bounded(inv.invoke_async(con)).await?;
                }
                if mine == 0 {
                    let mut inv = self.scripts.drop_member.key(key);
                    inv.key(&set).arg(&self.node).arg(member);
                    let _: i64 = self.bounded(inv.invoke_async(con)).await?;
                }
            }
        }
        Ok(())
    }

    /// Local sessions (for tests and gauges).
    pub fn local_sessions(&self) -> usize {
        self.local.len()
    }
}

struct Beat {
    lapsed: bool,
    generation: String,
    live_nodes: u64,
    dead: Vec<String>,
}

/// `yyyymmdd` of a UTC day.
fn utc_day(now_ms: u64) -> String {
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
    fn entries_and_victims_parse() {
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
    }

    #[test]
    fn group_args_carry_caps() {
        let mut p = Policy::preset("dual").unwrap();
        p.set_max_instances(Platform::Web, 3);
        assert_eq!(group_args(&p, Platform::Web), ["web=3"]);
        assert_eq!(group_args(&p, Platform::Mac).len(), 6);
    }
}
