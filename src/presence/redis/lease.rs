//! Node liveness: this node's lease in `im:nodes` (Redis's clock), renewed every `heartbeat_ms`;
//! the sweeper, which removes a dead node's sessions with one `Disconnect`/`LinkClose` webhook each;
//! the cluster-wide DAU gauge; and leaving the cluster on shutdown.

use super::{keys, RedisPresence};
use crate::webhook::Change;
use imgate_proto::Platform;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The default node id: the host name and a random suffix per process start, so a restarted
/// process never takes over a dead one's entries.
pub fn default_node_id() -> String {
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

impl RedisPresence {
    pub(super) async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.heartbeat_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_up = true;
        // Sweep only after lease_ms of unbroken contact with Redis: when Redis comes back (an AOF
        // restart keeps the leases, all lapsed by then), every live node must first have had the
        // time to renew its lease, or it would be swept for dead (with false LinkClose webhooks).
        let mut up_since = tokio::time::Instant::now();
        let settle = Duration::from_millis(self.cfg.lease_ms);
        // The last renewal of this node's lease: a gap of lease_ms means it lapsed, even when a
        // login script (which also extends the lease of the node running it) renewed it first.
        let mut renewed = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let beat = match self
                .redis
                .heartbeat(&self.node, self.cfg.lease_ms, false)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    if was_up {
                        tracing::warn!("Redis unreachable: {e}");
                    }
                    self.metrics.redis_up.set(0);
                    was_up = false;
                    continue;
                }
            };
            if !was_up {
                up_since = tokio::time::Instant::now();
            }
            let lapsed = beat.lapsed || renewed.elapsed() >= settle;
            renewed = tokio::time::Instant::now();
            if lapsed {
                self.lease_lapsed.store(true, Ordering::SeqCst);
            }
            self.clock_offset_ms.store(
                beat.redis_now_ms as i64 - crate::clock::now_ms() as i64,
                Ordering::Relaxed,
            );
            self.metrics.redis_up.set(1);
            self.metrics.live_nodes.set(beat.live_nodes as i64);
            let changed = {
                let mut g = self.generation.lock();
                let changed = g.as_deref() != Some(beat.generation.as_str());
                *g = Some(beat.generation.clone());
                changed
            };
            if lapsed || changed || !was_up {
                tracing::info!(
                    lapsed,
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
            // Swept in its own task, so that the heartbeat (this node's lease) never waits for a
            // large sweep; one sweep task at a time.
            if !dead.is_empty() && !self.sweep_running.swap(true, Ordering::SeqCst) {
                let me = Arc::clone(&self);
                tokio::spawn(async move {
                    for d in dead {
                        if let Err(e) = me.sweep(&d).await {
                            tracing::debug!(node = %d, "sweep failed: {e}");
                        }
                    }
                    me.sweep_running.store(false, Ordering::SeqCst);
                });
            }
            self.refresh_dau().await;
            self.ping_pubsub().await;
        }
    }

    /// The DAU gauges from the day's HyperLogLogs.
    async fn refresh_dau(&self) {
        let now = crate::clock::now_ms();
        for app in self.apps.ids() {
            let mut cmd = redis::cmd("PFCOUNT");
            cmd.arg(keys::dau(app, now));
            if let Ok(n) = self.redis.query::<i64>(cmd).await {
                self.metrics.set_dau(app, n);
            }
        }
    }

    /// Removes a dead node's sessions (one sweeper per dead node, by a Redis lock) and emits one
    /// `Disconnect`/`LinkClose` webhook per session.
    async fn sweep(&self, dead: &str) -> Result<(), super::ClusterError> {
        let mut lock = redis::cmd("SET");
        lock.arg(keys::sweep_lock(dead))
            .arg(&self.node)
            .arg("NX")
            .arg("PX")
            .arg(30_000);
        if self.redis.query::<Option<String>>(lock).await?.is_none() {
            return Ok(());
        }
        let swept = self.sweep_locked(dead).await;
        if swept.is_err() {
            // Give the lock back (if still ours) so that the next heartbeat of any node tries
            // again, instead of leaving the dead node's entries and webhooks for the lock's 30 s.
            // If Redis cannot be reached for this either, the lock's expiry does it.
            let mut unlock = redis::cmd("EVAL");
            unlock
                .arg("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
                .arg(1)
                .arg(keys::sweep_lock(dead))
                .arg(&self.node);
            let _ = self.redis.query::<i64>(unlock).await;
        }
        swept
    }

    /// The sweep of a dead node, under its lock.
    async fn sweep_locked(&self, dead: &str) -> Result<(), super::ClusterError> {
        let members = self.node_members(dead).await?;
        let users: Vec<(u64, &str)> = members
            .iter()
            .filter_map(|m| keys::parse_member(m))
            .collect();
        let removed = self.redis.sweep(dead, &users).await?;
        for ((app, user), removed) in users.iter().zip(removed) {
            for r in removed {
                let (p, ip) = r.split_once('|').unwrap_or((&r, ""));
                if let (Some(platform), Ok(ip)) = (Platform::parse(p), ip.parse::<IpAddr>()) {
                    self.webhooks.state_change(
                        *app,
                        user,
                        platform,
                        ip,
                        Change::LinkClose,
                        Vec::new(),
                    );
                }
            }
        }
        self.redis.forget_node(dead).await?;
        tracing::info!(node = %dead, "swept a dead node's sessions");
        Ok(())
    }

    /// The members (`A:U`) of a node's user set.
    pub(super) async fn node_members(
        &self,
        node: &str,
    ) -> Result<Vec<String>, super::ClusterError> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(keys::node_users(node));
        self.redis.query(cmd).await
    }

    /// Gives up the lease, removes whatever Redis still holds of this node's sessions (unregisters
    /// lost in the rush of closes at shutdown) and its user set.
    pub(super) async fn leave_cluster(&self) -> Result<(), super::ClusterError> {
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(keys::NODES).arg(&self.node);
        let _: i64 = self.redis.query(zrem).await?;
        let members = self.node_members(&self.node).await?;
        let users: Vec<(u64, &str)> = members
            .iter()
            .filter_map(|m| keys::parse_member(m))
            .collect();
        self.redis.sweep(&self.node, &users).await?;
        let mut del = redis::cmd("DEL");
        del.arg(keys::node_users(&self.node));
        let _: i64 = self.redis.query(del).await?;
        Ok(())
    }
}
