//! This node's sessions in cluster mode: one index, by user, of the sockets this node holds.
//!
//! It is the same [`Registry`] the embedded store uses, without its policy (Redis decides): a session
//! joins it once the login script admitted it and leaves it on logout, close, or a kick. Deliveries
//! to a user (`send`, `/v1/push`, another node's `deliver`) read it by user; reconciliation walks it.
//! A kick from another node names only a session id: it reaches the socket through the connection
//! table (the id's low half is the connection id, [`crate::conns::session_id`]), and the socket, on
//! acting on it, takes its session out of this index ([`super::RedisPresence`]'s `evicted`). So no
//! second index by session id is kept.

use crate::conns::{self, Conns};
use crate::metrics::Metrics;
use crate::outbox::{ConnId, Delivery, Event};
use crate::presence::registry::{Instance, Registry};
use imgate_proto::{KickReason, Platform};
use std::sync::Arc;

/// The index.
#[derive(Debug)]
pub struct Local {
    index: Registry,
    conns: Arc<Conns>,
    metrics: Arc<Metrics>,
}

impl Local {
    pub fn new(conns: Arc<Conns>, metrics: Arc<Metrics>) -> Local {
        Local {
            index: Registry::new(),
            conns,
            metrics,
        }
    }

    /// An admitted session joins.
    pub fn insert(&self, app: u64, user: &str, instance: Instance) {
        self.metrics.session_started(app, instance.platform);
        self.index.insert(app, user, instance);
    }

    /// A session leaves (fenced by its id); the instance when it was here.
    pub fn remove(&self, app: u64, user: &str, sid: u64) -> Option<Instance> {
        let i = self.index.remove(app, user, sid)?;
        self.metrics.session_ended(app, i.platform);
        Some(i)
    }

    pub fn get(&self, app: u64, user: &str, sid: u64) -> Option<Instance> {
        self.index.get(app, user, sid)
    }

    pub fn contains(&self, app: u64, user: &str, sid: u64) -> bool {
        self.index.contains(app, user, sid)
    }

    pub fn set_expire_at(&self, app: u64, user: &str, sid: u64, expire_at: u64) {
        self.index.set_expire_at(app, user, sid, expire_at);
    }

    /// Closes a session of this node that Redis evicted (the user is known: a login's or an admin
    /// kick's victim, or a tombstone found by reconciliation). A victim whose own login reply has
    /// not arrived yet is not indexed: the kick waits in its socket's outbox, which acts on it right
    /// after answering that login.
    pub fn kick(&self, app: u64, user: &str, sid: u64, reason: KickReason, by: Option<Platform>) {
        match self.remove(app, user, sid) {
            Some(i) => {
                i.conn.push(Event::Kick {
                    session: sid,
                    reason,
                    by_platform: by,
                });
            }
            None => self.kick_by_id(sid, reason, by),
        }
    }

    /// A kick that names only the session (from another node): handed to the socket, which drops
    /// the session from the index when it acts on it. A stale id reaches nobody or is ignored.
    pub fn kick_by_id(&self, sid: u64, reason: KickReason, by: Option<Platform>) {
        if let Some(conn) = self.conns.get(conns::conn_of(sid)) {
            conn.push(Event::Kick {
                session: sid,
                reason,
                by_platform: by,
            });
        }
    }

    /// Delivers to this node's sockets of `to`, except the connection `skip`.
    pub fn deliver(&self, app: u64, to: &str, skip: Option<ConnId>, d: &Arc<Delivery>) -> u32 {
        let mut delivered = 0;
        self.index.for_each(app, to, |i| {
            if Some(i.conn.id()) != skip
                && i.conn.push(Event::Message {
                    session: i.session,
                    delivery: Arc::clone(d),
                })
            {
                delivered += 1;
            }
        });
        delivered
    }

    /// Every session of this node: `(app, user, instance)`.
    pub fn snapshot(&self) -> Vec<(u64, Box<str>, Instance)> {
        self.index.snapshot()
    }

    /// Sessions held (for tests and gauges).
    pub fn len(&self) -> usize {
        self.index.snapshot().len()
    }
}
