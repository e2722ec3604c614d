//! Reconciliation: repairs whatever a lost message or a lost Redis left behind.
//!
//! Every local session is checked against Redis: tombstoned → closed with the stored reason (a kick
//! whose message was lost); missing → restored through the login script with its original order
//! (and closed if it loses, which the canonical policy decides). The reverse pass removes Redis
//! entries that name this node without a socket here (an unregister lost while Redis was down).
//! Runs every `reconcile_secs`, and at once after the pub/sub connection dropped, after this node's
//! lease lapsed, when Redis lost its data, and when an unregister failed. After a lapse every local
//! session is decided again, present ones included (a recheck): the node may have woken before any
//! survivor swept it, its entries live again beside logins admitted while they did not count.

use super::scripts::{ScriptLogin, ScriptOutcome};
use super::{keys, ClusterError, RedisPresence};
use crate::presence::registry::Instance;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often a timed reconcile also runs the reverse pass (it reads every user of the node).
const REVERSE_EVERY: Duration = Duration::from_secs(60);

impl RedisPresence {
    pub(super) async fn reconcile_loop(self: Arc<Self>) {
        let every = Duration::from_secs(self.cfg.reconcile_secs);
        let mut last_reverse = tokio::time::Instant::now();
        loop {
            let triggered = tokio::select! {
                _ = tokio::time::sleep(every) => false,
                _ = self.reconcile_now.notified() => true,
            };
            let reverse = triggered || last_reverse.elapsed() >= REVERSE_EVERY;
            let recheck = self.lease_lapsed.swap(false, Ordering::SeqCst);
            let pass = self.reconcile_pass(reverse, recheck).await;
            if pass.is_err() && recheck {
                // Not done: the next pass decides them again.
                self.lease_lapsed.store(true, Ordering::SeqCst);
            }
            match pass {
                Ok(()) if reverse => last_reverse = tokio::time::Instant::now(),
                Ok(()) => {}
                Err(e) => tracing::debug!("reconcile interrupted: {e}"),
            }
        }
    }

    /// One full pass, the reverse pass included.
    pub async fn reconcile(&self) -> Result<(), ClusterError> {
        self.reconcile_pass(true, false).await
    }

    /// With `recheck` (this node's lease lapsed since the last pass), a session still present is
    /// decided again too: entries that came back to life with the renewed lease may break the policy
    /// beside the logins other nodes admitted meanwhile without counting them.
    async fn reconcile_pass(&self, reverse: bool, recheck: bool) -> Result<(), ClusterError> {
        let sessions = self.local.snapshot();
        let items: Vec<(String, String, u64)> = sessions
            .iter()
            .map(|(app, user, i)| {
                (
                    keys::user_hash(*app, user),
                    keys::field(i.platform, i.instance_id.as_deref(), i.session),
                    i.session,
                )
            })
            .collect();
        let states = self.redis.check(&items).await?;
        for ((app, user, i), state) in sessions.iter().zip(states) {
            self.reconcile_one(*app, user, i, &state, recheck).await?;
        }
        if reverse {
            self.reverse_reconcile().await?;
        }
        Ok(())
    }

    /// Acts on one local session's state in Redis (`present`, `tomb:…`, `missing`).
    async fn reconcile_one(
        &self,
        app: u64,
        user: &str,
        i: &Instance,
        state: &str,
        recheck: bool,
    ) -> Result<(), ClusterError> {
        if state == "present" && !recheck {
            return Ok(());
        }
        if let Some(t) = state.strip_prefix("tomb:") {
            let (reason, by) = keys::parse_tomb(t);
            self.local.kick(app, user, i.session, reason, by);
            return Ok(());
        }
        let Some(a) = self.apps.get(app) else {
            return Ok(());
        };
        let ip = i.conn.ip().to_string();
        let call = ScriptLogin {
            restore: true,
            recheck,
            node: &self.node,
            app,
            user,
            sid: i.session,
            platform: i.platform,
            iid: i.instance_id.as_deref(),
            expire_at: i.expire_at,
            tls_time: 0,
            order: i.order,
            ip: &ip,
            replaces: None,
            switch: None,
            lease_ms: self.cfg.lease_ms,
            deadline_ms: self.script_deadline(),
        };
        match self.redis.login(&a.policy, &call).await? {
            ScriptOutcome::Admitted { evicted, .. } => {
                if !self.local.contains(app, user, i.session) {
                    // The socket closed while it was being restored: take the entry back.
                    self.unregister_detached(
                        app,
                        user,
                        i.platform,
                        i.instance_id.as_deref(),
                        i.session,
                    );
                }
                self.route_kicks(app, user, evicted, Some(i.platform)).await;
            }
            ScriptOutcome::Lost(reason, by) => self.local.kick(app, user, i.session, reason, by),
            // too late: the next reconcile retries
            ScriptOutcome::Revoked | ScriptOutcome::Late => {}
        }
        Ok(())
    }

    /// Entries in Redis that name this node without a socket here are compare-and-deleted (a login
    /// whose reply is on its way is not one of them); users with none left leave the node's set.
    async fn reverse_reconcile(&self) -> Result<(), ClusterError> {
        let members = self.node_members(&self.node).await?;
        let users: Vec<(u64, &str)> = members
            .iter()
            .filter_map(|m| keys::parse_member(m))
            .collect();
        for batch in users.chunks(super::scripts::BATCH) {
            let mut p = redis::pipe();
            for (app, user) in batch {
                p.hgetall(keys::user_hash(*app, user));
            }
            let hashes: Vec<Vec<(String, String)>> = self.redis.pipe(p).await?;
            for ((app, user), all) in batch.iter().zip(hashes) {
                let mut mine = 0;
                for (f, v) in all {
                    let Some(e) = f
                        .starts_with("e:")
                        .then(|| keys::Entry::parse(&v))
                        .flatten()
                    else {
                        continue;
                    };
                    if e.node != self.node {
                        continue;
                    }
                    if self.local.contains(*app, user, e.sid) || self.pending.contains(&e.sid) {
                        mine += 1;
                        continue;
                    }
                    self.redis
                        .unreg(&keys::user_hash(*app, user), &f, e.sid)
                        .await?;
                }
                if mine == 0 {
                    self.redis.drop_member(&self.node, *app, user).await?;
                }
            }
        }
        Ok(())
    }
}
