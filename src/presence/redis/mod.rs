//! Presence shared by several nodes through one Redis (contract §12).
//!
//! What it owns: the shared presence in Redis (one hash per user, written only by Lua scripts that
//! apply [`policy::canonical`](crate::policy::canonical) atomically per user and take the login
//! order from Redis's clock), this node's index of its own sockets ([`local`]), the routing of kicks
//! and deliveries to the node that owns a socket ([`control`]), node liveness by leases and the
//! sweeper ([`lease`]), and [`reconcile`], which repairs whatever a lost message or a lost Redis
//! left behind. The key layout and value codecs are in [`keys`], the typed script calls in
//! [`scripts`].
//!
//! Every Redis call runs under `redis_timeout_ms`. When Redis is unreachable, logins and refreshes
//! answer 70169 and change nothing, the admin presence calls answer 503, and sockets already logged
//! in keep working on their node; reconciliation puts them back into presence when Redis returns.
//! No lock is held across an await.
//!
//! An account switch runs one script over both users' keys (standalone Redis: the keys of two users
//! are in different hash slots, so Redis Cluster would need that step split).

mod control;
pub mod keys;
mod lease;
mod local;
mod reconcile;
mod scripts;

pub use scripts::{run_login_script, ClusterError, ScriptLogin, ScriptOutcome, SwitchFrom};

use super::registry::Instance;
use super::{
    Admitted, BoxFuture, InstanceView, KickFilter, LoginRequest, Presence, Prior, Refused,
    SessionRef, StoreDeps, Unavailable,
};
use crate::apps::Apps;
use crate::config::ClusterConfig;
use crate::conns;
use crate::metrics::Metrics;
use crate::outbox::{ConnId, Delivery};
use crate::webhook::Webhooks;
use control::Ctl;
use dashmap::{DashMap, DashSet};
use imgate_proto::Platform;
use keys::Evicted;
use local::Local;
use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use scripts::Redis;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::task::TaskTracker;

/// How long `send` and `/v1/push` wait for other nodes' delivery counts.
pub const DELIVERY_WAIT: Duration = Duration::from_millis(200);
/// Pub/sub messages queued for the handler at most; beyond, they are dropped (reconcile repairs).
const PUSH_QUEUE: usize = 65_536;

/// One node's view of the shared presence.
pub struct RedisPresence {
    node: String,
    cfg: ClusterConfig,
    redis: Arc<Redis>,
    pubsub: ConnectionManager,
    push_rx: Mutex<Option<mpsc::Receiver<redis::PushInfo>>>,
    local: Local,
    /// Sessions whose login script is under way (the reverse pass leaves their entries alone).
    pending: DashSet<u64>,
    replies: DashMap<u64, mpsc::Sender<u32>>,
    next_req: AtomicU64,
    reconcile_now: Arc<Notify>,
    /// This node's lease lapsed (or it could not renew it for `lease_ms`): the next reconcile
    /// decides every local session again.
    lease_lapsed: AtomicBool,
    generation: Mutex<Option<String>>,
    /// Writes to Redis that nobody waits for (unregisters, DAU), awaited at shutdown.
    background: TaskTracker,
    sweep_running: AtomicBool,
    /// Redis's clock minus ours (ms), from the last heartbeat: for the scripts' deadlines.
    clock_offset_ms: AtomicI64,
    apps: Arc<Apps>,
    webhooks: Arc<Webhooks>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisPresence({})", self.node)
    }
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

/// Removes a session id from the in-flight set when the login ends, however it ends.
struct Pending<'a>(&'a DashSet<u64>, u64);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.remove(&self.1);
    }
}

impl RedisPresence {
    /// Connects to Redis and claims the node id (refused when a live node holds it).
    pub async fn connect(
        cfg: &ClusterConfig,
        deps: StoreDeps,
    ) -> Result<RedisPresence, ClusterError> {
        let node = cfg.node_id.clone().unwrap_or_else(lease::default_node_id);
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
        pubsub.subscribe(keys::channel(&node)).await?;
        let redis = Arc::new(Redis::new(conn, timeout));
        let beat = redis.heartbeat(&node, cfg.lease_ms, true).await?;
        Ok(RedisPresence {
            local: Local::new(deps.conns, Arc::clone(&deps.metrics)),
            node,
            cfg: cfg.clone(),
            redis,
            pubsub,
            push_rx: Mutex::new(Some(push_rx)),
            pending: DashSet::new(),
            replies: DashMap::new(),
            next_req: AtomicU64::new(1),
            reconcile_now: Arc::new(Notify::new()),
            lease_lapsed: AtomicBool::new(false),
            generation: Mutex::new(Some(beat.generation)),
            background: TaskTracker::new(),
            sweep_running: AtomicBool::new(false),
            clock_offset_ms: AtomicI64::new(
                beat.redis_now_ms as i64 - crate::clock::now_ms() as i64,
            ),
            apps: deps.apps,
            webhooks: deps.webhooks,
            metrics: deps.metrics,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Whether the last Redis call got an answer.
    pub fn is_up(&self) -> bool {
        self.redis.is_up()
    }

    /// Sessions this node holds (for tests and gauges).
    pub fn local_sessions(&self) -> usize {
        self.local.len()
    }

    /// Until when (Redis's clock, ms) a script sent now may run: one that waited in a hung Redis
    /// past the time this node gives up on it (answering 70169) must change nothing. A fifth of
    /// the budget is left for the reply to come back.
    fn script_deadline(&self) -> u64 {
        let redis_now =
            crate::clock::now_ms() as i64 + self.clock_offset_ms.load(Ordering::Relaxed);
        (redis_now + (self.cfg.redis_timeout_ms * 4 / 5) as i64).max(1) as u64
    }

    async fn admit(&self, req: LoginRequest<'_>) -> Result<Admitted, Refused> {
        // The session switched out, as this node indexes it. Not indexed any more: a kick took
        // it out and is queued for the socket, so the login changes nothing.
        let switched = match req.prior {
            Prior::Switch(s) => Some(
                self.local
                    .get(s.app, s.user, s.session)
                    .ok_or(Refused::Superseded)?,
            ),
            _ => None,
        };
        let sid = conns::session_id(req.conn.id());
        self.pending.insert(sid);
        let _pending = Pending(&self.pending, sid);
        let ip = req.conn.ip().to_string();
        let (replaces, switch) = match (req.prior, &switched) {
            (Prior::Relogin(s), _) => (Some(s.session), None),
            (Prior::Switch(s), Some(old)) => (
                None,
                Some(SwitchFrom {
                    app: s.app,
                    user: s.user,
                    platform: old.platform,
                    iid: old.instance_id.as_deref(),
                    sid: s.session,
                }),
            ),
            _ => (None, None),
        };
        let call = ScriptLogin {
            restore: false,
            recheck: false,
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
            replaces,
            switch,
            lease_ms: self.cfg.lease_ms,
            deadline_ms: self.script_deadline(),
        };
        let (order, evicted) = match self.redis.login(req.policy, &call).await {
            Ok(ScriptOutcome::Admitted { order, evicted }) => (order, evicted),
            Ok(ScriptOutcome::Revoked) => return Err(Refused::Revoked),
            // The session this login takes over was evicted: its kick stands.
            Ok(ScriptOutcome::Lost(..)) => return Err(Refused::Superseded),
            Ok(ScriptOutcome::Late) => return Err(Refused::Unavailable),
            Err(e) => {
                tracing::warn!("cluster login failed: {e}");
                // The script may have run with its reply lost: take the entry back at once
                // (compare-and-delete by sid), and reconcile to catch up with the rest.
                self.unregister_detached(req.app, req.user, req.platform, req.instance_id, sid);
                return Err(Refused::Unavailable);
            }
        };
        if let Prior::Relogin(s) | Prior::Switch(s) = req.prior {
            self.local.remove(s.app, s.user, s.session);
        }
        self.local.insert(
            req.app,
            req.user,
            Instance {
                conn: Arc::clone(req.conn),
                session: sid,
                platform: req.platform,
                instance_id: req.instance_id.map(Into::into),
                order,
                expire_at: req.expire_at,
            },
        );
        let kicked = evicted.iter().map(|e| e.platform).collect();
        self.route_kicks(req.app, req.user, evicted, Some(req.platform))
            .await;
        self.count_dau(req.app, req.user, req.now_ms);
        Ok(Admitted {
            session: sid,
            kicked,
        })
    }

    /// Tells each evicted session of the user: on this node at once, elsewhere through its node's
    /// channel.
    async fn route_kicks(&self, app: u64, user: &str, evicted: Vec<Evicted>, by: Option<Platform>) {
        for e in evicted {
            self.metrics.count_kick(app, e.reason);
            if e.node == self.node {
                self.local.kick(app, user, e.sid, e.reason, by);
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

    /// Compare-and-deletes a session's entry in the background; on failure (or always, with
    /// `reconcile`) a reconcile follows, whose reverse pass removes what is left.
    fn unregister_in_background(
        &self,
        app: u64,
        user: &str,
        platform: Platform,
        iid: Option<&str>,
        sid: u64,
        reconcile: bool,
    ) {
        let (redis, notify) = (Arc::clone(&self.redis), Arc::clone(&self.reconcile_now));
        let (hash, field) = (keys::user_hash(app, user), keys::field(platform, iid, sid));
        self.background.spawn(async move {
            if redis.unreg(&hash, &field, sid).await.is_err() || reconcile {
                notify.notify_one();
            }
        });
    }

    /// For sessions this node gave up on (a login whose reply was lost, a restore of a closed
    /// socket).
    fn unregister_detached(&self, app: u64, user: &str, p: Platform, iid: Option<&str>, sid: u64) {
        self.unregister_in_background(app, user, p, iid, sid, true);
    }

    fn count_dau(&self, app: u64, user: &str, now_ms: u64) {
        let key = keys::dau(app, now_ms);
        let mut p = redis::pipe();
        p.pfadd(&key, user)
            .ignore()
            .expire(&key, 3 * 86_400)
            .ignore();
        let redis = Arc::clone(&self.redis);
        self.background.spawn(async move {
            let _ = redis.pipe::<()>(p).await;
        });
    }
}

fn unavailable(e: ClusterError) -> Unavailable {
    Unavailable(e.to_string())
}

impl Presence for RedisPresence {
    fn login<'a>(&'a self, req: LoginRequest<'a>) -> BoxFuture<'a, Result<Admitted, Refused>> {
        Box::pin(self.admit(req))
    }

    fn logout(&self, s: SessionRef<'_>) -> bool {
        let Some(i) = self.local.remove(s.app, s.user, s.session) else {
            return false;
        };
        let iid = i.instance_id.as_deref();
        self.unregister_in_background(s.app, s.user, i.platform, iid, s.session, false);
        true
    }

    fn evicted(&self, s: SessionRef<'_>) {
        self.local.remove(s.app, s.user, s.session);
    }

    fn refresh<'a>(
        &'a self,
        s: SessionRef<'a>,
        expire_at: u64,
        tls_time: u64,
    ) -> BoxFuture<'a, Result<(), Refused>> {
        Box::pin(async move {
            let Some(i) = self.local.get(s.app, s.user, s.session) else {
                return Ok(()); // kicked meanwhile: its kick event follows
            };
            let hash = keys::user_hash(s.app, s.user);
            let field = keys::field(i.platform, i.instance_id.as_deref(), s.session);
            let deadline = self.script_deadline();
            let done = self
                .redis
                .refresh(&hash, &field, s.session, expire_at, deadline, tls_time)
                .await
                .map_err(|_| Refused::Unavailable)?;
            match done {
                -2 => Err(Refused::Revoked),
                d if d < 0 => Err(Refused::Unavailable), // ran too late: changed nothing
                _ => {
                    self.local
                        .set_expire_at(s.app, s.user, s.session, expire_at);
                    Ok(())
                }
            }
        })
    }

    fn deliver<'a>(
        &'a self,
        app: u64,
        to: &'a str,
        skip: Option<ConnId>,
        d: Arc<Delivery>,
    ) -> BoxFuture<'a, Result<u32, Unavailable>> {
        Box::pin(async move {
            let entries = self
                .redis
                .read(&keys::user_hash(app, to))
                .await
                .map_err(unavailable)?;
            let mut nodes: Vec<&str> = entries
                .iter()
                .map(|e| e.node.as_str())
                .filter(|n| *n != self.node)
                .collect();
            nodes.sort_unstable();
            nodes.dedup();
            let req = self.next_req.fetch_add(1, Ordering::Relaxed);
            let (tx, mut rx) = mpsc::channel(nodes.len().max(1));
            if !nodes.is_empty() {
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
            }
            let mut delivered = self.local.deliver(app, to, skip, &d);
            if !nodes.is_empty() {
                let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
                for _ in 0..nodes.len() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(n)) => delivered += n,
                        _ => break,
                    }
                }
                self.replies.remove(&req);
            }
            Ok(delivered)
        })
    }

    fn deliver_here(&self, app: u64, to: &str, skip: Option<ConnId>, d: &Arc<Delivery>) -> u32 {
        self.local.deliver(app, to, skip, d)
    }

    fn kick<'a>(
        &'a self,
        app: u64,
        user: &'a str,
        which: KickFilter<'a>,
    ) -> BoxFuture<'a, Result<usize, Unavailable>> {
        Box::pin(async move {
            let hash = keys::user_hash(app, user);
            let evicted = self
                .redis
                .kick(
                    &hash,
                    which.platform,
                    which.instance_id,
                    which.whole_user(),
                    self.script_deadline(),
                )
                .await
                .map_err(unavailable)?
                // Ran after this node gave up on it: it changed nothing.
                .ok_or_else(|| Unavailable("Redis answered too late".into()))?;
            let n = evicted.len();
            self.route_kicks(app, user, evicted, None).await;
            Ok(n)
        })
    }

    fn instances<'a>(
        &'a self,
        app: u64,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<InstanceView>, Unavailable>> {
        Box::pin(async move {
            let entries = self
                .redis
                .read(&keys::user_hash(app, user))
                .await
                .map_err(unavailable)?;
            Ok(entries
                .into_iter()
                .map(|e| InstanceView {
                    platform: e.platform,
                    login_at_ms: e.login_at_ms(),
                    instance_id: e.instance_id,
                    expire_at: e.expire_at,
                })
                .collect())
        })
    }

    fn spawn(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(rx) = self.push_rx.lock().take() {
            tasks.push(tokio::spawn(Arc::clone(&self).pubsub_loop(rx)));
        }
        tasks.push(tokio::spawn(Arc::clone(&self).heartbeat_loop()));
        tasks.push(tokio::spawn(self.reconcile_loop()));
        tasks
    }

    fn leave(&self, within: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Let the unregisters of the sockets just closed reach Redis (bounded).
            self.background.close();
            let _ = tokio::time::timeout(within, self.background.wait()).await;
            if let Err(e) = self.leave_cluster().await {
                tracing::warn!("leaving the cluster: {e}; the sweeper of another node finishes it");
            }
        })
    }
}
