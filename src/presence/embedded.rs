//! Presence for one process: the sharded [`Registry`] applies the policy, holds the revocations,
//! and every answer is ready at once (the futures of the trait never wait).
//!
//! What it adds to the registry: telling the victims (after the registry's lock is released),
//! counting kicks and the sessions gauge, and the in-process DAU.

use super::registry::{Login, Registry, Takeover, Victim};
use super::{
    Admitted, BoxFuture, InstanceView, KickFilter, LoginRequest, Presence, Prior, Refused,
    SessionRef, Unavailable,
};
use crate::clock;
use crate::metrics::Metrics;
use crate::outbox::{ConnId, Delivery, Event};
use imgate_proto::Platform;
use std::future::ready;
use std::sync::Arc;

/// The embedded store.
#[derive(Debug)]
pub struct Embedded {
    registry: Registry,
    metrics: Arc<Metrics>,
}

impl Embedded {
    pub fn new(metrics: Arc<Metrics>) -> Embedded {
        Embedded {
            registry: Registry::new(),
            metrics,
        }
    }

    /// The registry (for tests and benches).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn admit(&self, req: LoginRequest<'_>) -> Result<Admitted, Refused> {
        let takeover = match req.prior {
            Prior::None => Takeover::None,
            Prior::Relogin(s) => Takeover::Relogin(s.session),
            Prior::Switch(s) => Takeover::Switch {
                app: s.app,
                user: s.user,
                session: s.session,
            },
        };
        let outcome = self
            .registry
            .login(
                req.policy,
                Login {
                    app: req.app,
                    user: req.user,
                    conn: req.conn,
                    platform: req.platform,
                    instance_id: req.instance_id,
                    expire_at: req.expire_at,
                    tls_time: req.tls_time,
                    now_us: req.now_ms * 1000,
                    takeover,
                },
            )
            .map_err(|r| match r {
                super::registry::Refusal::Revoked => Refused::Revoked,
                super::registry::Refusal::Superseded => Refused::Superseded,
            })?;
        if let (Some(ended), Prior::Relogin(s) | Prior::Switch(s)) = (&outcome.ended, req.prior) {
            self.metrics.session_ended(s.app, ended.platform);
        }
        self.metrics.session_started(req.app, req.platform);
        self.tell(req.app, &outcome.victims, Some(req.platform));
        self.metrics.saw_user(req.app, req.user, req.now_ms);
        Ok(Admitted {
            session: outcome.session,
            kicked: outcome
                .victims
                .iter()
                .map(|v| v.instance.platform)
                .collect(),
        })
    }

    /// Tells each victim it was kicked and counts it.
    fn tell(&self, app: u64, victims: &[Victim], by_platform: Option<Platform>) {
        for v in victims {
            self.metrics.session_ended(app, v.instance.platform);
            self.metrics.count_kick(app, v.reason);
            v.instance.conn.push(Event::Kick {
                session: v.instance.session,
                reason: v.reason,
                by_platform,
            });
        }
    }
}

impl Presence for Embedded {
    fn login<'a>(&'a self, req: LoginRequest<'a>) -> BoxFuture<'a, Result<Admitted, Refused>> {
        Box::pin(ready(self.admit(req)))
    }

    fn logout(&self, s: SessionRef<'_>) -> bool {
        let removed = self.registry.remove(s.app, s.user, s.session).is_some();
        if removed {
            self.metrics.session_ended(s.app, s.platform);
        }
        removed
    }

    fn evicted(&self, s: SessionRef<'_>) {
        // The kicker removed it under the user's lock; this only keeps a stray entry from staying.
        self.logout(s);
    }

    fn refresh<'a>(
        &'a self,
        s: SessionRef<'a>,
        expire_at: u64,
        tls_time: u64,
    ) -> BoxFuture<'a, Result<(), Refused>> {
        let r = self
            .registry
            .refresh(s.app, s.user, s.session, expire_at, tls_time)
            .map_err(|_| Refused::Revoked);
        Box::pin(ready(r))
    }

    fn deliver<'a>(
        &'a self,
        app: u64,
        to: &'a str,
        skip: Option<ConnId>,
        d: Arc<Delivery>,
    ) -> BoxFuture<'a, Result<u32, Unavailable>> {
        Box::pin(ready(Ok(self.deliver_here(app, to, skip, &d))))
    }

    fn deliver_here(&self, app: u64, to: &str, skip: Option<ConnId>, d: &Arc<Delivery>) -> u32 {
        let mut delivered = 0;
        self.registry.for_each(app, to, |i| {
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

    fn kick<'a>(
        &'a self,
        app: u64,
        user: &'a str,
        which: KickFilter<'a>,
    ) -> BoxFuture<'a, Result<usize, Unavailable>> {
        let revoke = which.whole_user().then(clock::now_secs);
        let victims = self.registry.kick(app, user, which, revoke);
        self.tell(app, &victims, None);
        Box::pin(ready(Ok(victims.len())))
    }

    fn instances<'a>(
        &'a self,
        app: u64,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<InstanceView>, Unavailable>> {
        let v = self
            .registry
            .instances(app, user)
            .into_iter()
            .map(|i| InstanceView {
                platform: i.platform,
                login_at_ms: i.login_at_ms(),
                instance_id: i.instance_id.map(String::from),
                expire_at: i.expire_at,
            })
            .collect();
        Box::pin(ready(Ok(v)))
    }
}
