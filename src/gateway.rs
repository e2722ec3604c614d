//! The shared state of one gateway process, and the operations on it that more than one socket (or
//! the admin API) performs: verifying a UserSig with throttle and revocation, telling evicted sockets,
//! delivering a message to a user's sockets, emitting state changes.
//!
//! What it does not own: any socket. Sockets own their [`Session`](crate::session::Session); this
//! holds [`Outbox`] handles only, through the registry and the wheel.

use crate::clock;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::expiry::{SharedWheel, Wheel, WheelKey};
use crate::metrics::{CodeLabel, Metrics, PlatformLabel, ReasonLabel};
use crate::outbox::{Delivery, Event, Outbox};
use crate::policy::Policy;
use crate::presence::{Registry, Victim};
use crate::throttle::Throttle;
use crate::usersig::{self, Decoded, SigError, SigKey};
use crate::webhook::{Change, StateChange, Webhooks};
use dashmap::DashMap;
use imgate_proto::{Code, KickReason, Platform};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One configured app.
#[derive(Debug)]
pub struct App {
    pub key: SigKey,
    pub policy: Policy,
    /// user → revocation second: UserSigs with `TLS.time` <= it answer 70052.
    revoked: DashMap<Box<str>, u64>,
}

/// Everything the sockets and the admin API share.
#[derive(Debug)]
pub struct Gateway {
    pub config: Config,
    pub apps: HashMap<u64, App>,
    pub registry: Registry,
    pub wheel: Arc<SharedWheel>,
    pub throttle: Throttle,
    pub metrics: Arc<Metrics>,
    pub webhooks: Webhooks,
    /// Cluster mode: presence shared through Redis (contract §12).
    pub cluster: Option<Arc<Cluster>>,
    next_conn: AtomicU64,
    draining: AtomicBool,
    /// Every open socket's outbox, for the shutdown broadcast.
    conns: DashMap<u64, Arc<Outbox>>,
    /// The WebSocket listener, once bound (for the console's prefill).
    ws_endpoint: std::sync::OnceLock<crate::console::WsEndpoint>,
}

/// A verified login or refresh: the decoded ticket.
pub type Verified = Decoded;

impl Gateway {
    /// Builds the shared state from a validated config.
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        webhooks: Webhooks,
        cluster: Option<Arc<Cluster>>,
    ) -> Gateway {
        let apps: HashMap<u64, App> = config
            .apps
            .iter()
            .map(|a| {
                let policy = a.policy().expect("the config was validated");
                (
                    a.sdk_app_id,
                    App {
                        key: SigKey::new(&a.key),
                        policy,
                        revoked: DashMap::new(),
                    },
                )
            })
            .collect();
        Gateway {
            registry: Registry::new(apps.keys().copied()),
            wheel: Arc::new(Mutex::new(Wheel::new(clock::now_secs()))),
            throttle: Throttle::new(&config.throttle),
            apps,
            config,
            metrics,
            webhooks,
            cluster,
            next_conn: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            conns: DashMap::new(),
            ws_endpoint: std::sync::OnceLock::new(),
        }
    }

    /// Records where the WebSocket listener is bound.
    pub fn set_ws_endpoint(&self, e: crate::console::WsEndpoint) {
        let _ = self.ws_endpoint.set(e);
    }

    /// The WebSocket listener, once bound.
    pub fn ws_endpoint(&self) -> Option<crate::console::WsEndpoint> {
        self.ws_endpoint.get().copied()
    }

    /// A new socket's outbox, registered for the shutdown broadcast.
    pub fn open_conn(&self) -> Arc<Outbox> {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(id, self.config.outbound_queue));
        self.conns.insert(id, Arc::clone(&outbox));
        self.metrics.connections.inc();
        if self.is_draining() {
            outbox.push(Event::Shutdown);
        }
        outbox
    }

    /// The socket is gone.
    pub fn close_conn(&self, outbox: &Outbox) {
        outbox.close();
        self.conns.remove(&outbox.id());
        self.metrics.connections.dec();
    }

    /// Open sockets.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// Starts the drain: readyz turns 503 and every socket is told to close with 1001.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for c in self.conns.iter() {
            c.value().push(Event::Shutdown);
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Verifies a UserSig for a login or refresh in the order of contract §2, counting failures in
    /// the throttle. `Err` carries the code and a description for the response.
    pub fn verify(
        &self,
        app: u64,
        user: &str,
        user_sig: &str,
        ip: IpAddr,
        now_ms: u64,
    ) -> Result<Verified, (Code, String)> {
        if self.throttle.is_blocked(app, user, ip, now_ms) {
            return Err((Code::Throttled, Code::Throttled.desc().to_owned()));
        }
        let found = self.apps.get(&app);
        let result = usersig::verify(user_sig, found.map(|a| &a.key), app, user, now_ms)
            .map_err(|e: SigError| (e.code(), e.to_string()))
            .and_then(|d| {
                let revoked = found
                    .and_then(|a| a.revoked.get(user).map(|r| *r))
                    .is_some_and(|r| d.time <= r);
                if revoked {
                    Err((Code::SigRevoked, Code::SigRevoked.desc().to_owned()))
                } else {
                    Ok(d)
                }
            });
        if result.is_err() {
            self.throttle.record_failure(app, user, ip, now_ms);
        }
        result
    }

    /// Invalidates every UserSig of the user with `TLS.time` <= `second` (admin kick).
    pub fn revoke(&self, app: u64, user: &str, second: u64) {
        if let Some(a) = self.apps.get(&app) {
            a.revoked
                .entry(user.into())
                .and_modify(|r| *r = (*r).max(second))
                .or_insert(second);
        }
    }

    /// Tells each victim it was kicked (after the registry lock is released) and counts the kicks.
    pub fn notify_kicked(&self, app: u64, victims: &[Victim], by_platform: Option<Platform>) {
        for v in victims {
            self.sessions_gauge(app, v.instance.platform, -1);
            self.count_kick(app, v.reason);
            v.instance.outbox.push(Event::Kick {
                session: v.instance.session,
                reason: v.reason,
                by_platform,
            });
        }
    }

    /// Delivers a message to every logged-in socket of `to`, except the socket `skip`; returns how
    /// many accepted it.
    pub fn deliver(&self, app: u64, to: &str, skip: Option<u64>, delivery: Delivery) -> u32 {
        let delivery = Arc::new(delivery);
        let mut delivered = 0;
        self.registry.for_each(app, to, |i| {
            if Some(i.outbox.id()) != skip
                && i.outbox.push(Event::Message {
                    session: i.session,
                    delivery: Arc::clone(&delivery),
                })
            {
                delivered += 1;
            }
        });
        delivered
    }

    /// Schedules an expiry push for a session.
    pub fn schedule_expiry(&self, expire_at: u64, outbox: &Arc<Outbox>, session: u64) -> WheelKey {
        self.wheel
            .lock()
            .schedule(expire_at, (Arc::clone(outbox), session))
    }

    pub fn cancel_expiry(&self, key: WheelKey) {
        // Drop the outbox clone after the lock is released.
        let removed = self.wheel.lock().cancel(key);
        drop(removed);
    }

    /// Counts a kick.
    pub fn count_kick(&self, app: u64, reason: KickReason) {
        self.metrics
            .kicks
            .get_or_create(&ReasonLabel {
                sdk_app_id: app,
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Ends a session in presence (logout, account switch, expiry, close): true when it was still
    /// registered, false when a kick had already removed it.
    pub fn presence_logout(&self, app: u64, user: &str, session: u64, platform: Platform) -> bool {
        if let Some(c) = &self.cluster {
            return c.unregister(self, session);
        }
        let removed = self.registry.logout(app, user, session);
        if removed {
            self.sessions_gauge(app, platform, -1);
        }
        removed
    }

    /// Moves the logged-in sessions gauge of a platform.
    pub fn sessions_gauge(&self, app: u64, platform: Platform, delta: i64) {
        self.metrics
            .sessions
            .get_or_create(&PlatformLabel {
                sdk_app_id: app,
                platform: platform.as_str(),
            })
            .inc_by(delta);
    }

    /// Counts a login result.
    pub fn count_login(&self, app: u64, code: Code) {
        self.metrics
            .logins
            .get_or_create(&CodeLabel {
                sdk_app_id: app,
                code: code.as_u32(),
            })
            .inc();
    }

    /// Queues a state-change webhook.
    pub fn state_change(
        &self,
        app: u64,
        user: &str,
        platform: Platform,
        ip: IpAddr,
        change: Change,
        kicked: Vec<Platform>,
    ) {
        if !self.webhooks.enabled(app) {
            return;
        }
        self.webhooks.emit(
            &self.metrics,
            StateChange {
                app,
                user: user.to_owned(),
                platform,
                client_ip: ip,
                change,
                kicked,
                event_time_ms: clock::now_ms(),
            },
        );
    }
}
