//! The control channel: one pub/sub channel per node (`im:ctl:<node>`) carrying kicks for the node's
//! sockets, deliveries to its users and the replies counting them. Pub/sub is at most once; what it
//! loses, reconciliation repairs (a kick's tombstone is found, a lost delivery is only a lower
//! `delivered`). The message JSON is shared with other versions of the gateway during a rolling
//! upgrade: it does not change.

use super::scripts::push_payload;
use super::{keys, RedisPresence};
use crate::outbox::Delivery;
use imgate_proto::{KickReason, Platform};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A message on a node's channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Ctl {
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

impl RedisPresence {
    /// Publishes on a node's channel; a failure is only logged (the owner's reconciliation finds a
    /// kick's tombstone, a delivery counts 0).
    pub(super) async fn publish(&self, node: &str, msg: &Ctl) {
        let body = serde_json::to_string(msg).expect("control messages serialise");
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(keys::channel(node)).arg(body);
        if let Err(e) = self.redis.query::<i64>(cmd).await {
            tracing::debug!(node, "publish failed: {e}");
        }
    }

    /// Handles what arrives on this node's channel, and a lost pub/sub connection.
    pub(super) async fn pubsub_loop(self: Arc<Self>, mut rx: mpsc::Receiver<redis::PushInfo>) {
        while let Some(info) = rx.recv().await {
            match info.kind {
                redis::PushKind::Message => {
                    let Some(body) = push_payload(&info.data) else {
                        continue;
                    };
                    match serde_json::from_str::<Ctl>(&body) {
                        Ok(msg) => self.handle(msg),
                        Err(e) => tracing::debug!("bad control message: {e}"),
                    }
                }
                redis::PushKind::Disconnection => {
                    tracing::info!("pub/sub connection lost: reconnecting and reconciling");
                    self.reconcile_now.notify_one();
                    let me = Arc::clone(&self);
                    tokio::spawn(async move { me.ping_pubsub().await });
                }
                _ => {}
            }
        }
    }

    /// Any command on the pub/sub connection makes its manager reconnect (and resubscribe).
    pub(super) async fn ping_pubsub(&self) {
        let mut ps = self.pubsub.clone();
        let _ = self
            .redis
            .bounded(async move { Ok(redis::cmd("PING").query_async::<()>(&mut ps).await?) })
            .await;
    }

    fn handle(self: &Arc<Self>, msg: Ctl) {
        match msg {
            Ctl::Kick { sid, reason, by } => self.local.kick_by_id(sid, reason, by),
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
                let d = Arc::new(Delivery {
                    from,
                    from_platform,
                    payload,
                });
                let n = self.local.deliver(app, &to, None, &d);
                let me = Arc::clone(self);
                tokio::spawn(async move { me.publish(&reply_to, &Ctl::Reply { req, n }).await });
            }
        }
    }
}
