//! The in-process presence registry: (app, user) → the user's logged-in instances.
//!
//! What it owns: who is logged in where, in what order, and the atomic application of the policy per
//! user. Each app has a sharded map (dashmap) of users; a login takes the user's shard lock, asks the
//! pure [`policy::evict`] which instances go, removes them, adds the newcomer and returns the victims.
//! The caller notifies the victims after the lock is released. Every entry carries a per-login
//! session id that fences later removals: a late logout or close of an old session never removes a
//! newer one.
//!
//! What it does not own: sockets (it holds [`Outbox`] handles), timers, webhooks. Its interface
//! (login, logout, kick, read) is the narrow one a shared store (cluster mode) implements too.

use crate::outbox::Outbox;
use crate::policy::{self, Held, Policy};
use dashmap::DashMap;
use imgate_proto::{KickReason, Platform};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One logged-in instance of a user.
#[derive(Debug, Clone)]
pub struct Instance {
    pub outbox: Arc<Outbox>,
    pub session: u64,
    pub platform: Platform,
    pub instance_id: Option<Box<str>>,
    /// Login order (smaller = earlier), unique across the registry.
    pub order: u64,
    pub login_at_ms: u64,
    pub expire_at: u64,
}

/// An evicted instance, to be told by the caller.
#[derive(Debug, Clone)]
pub struct Victim {
    /// The instance as it was registered (already removed).
    pub instance: Instance,
    pub reason: KickReason,
}

/// A login to apply.
#[derive(Debug)]
pub struct Login<'a> {
    pub app: u64,
    pub user: &'a str,
    pub outbox: &'a Arc<Outbox>,
    pub platform: Platform,
    pub instance_id: Option<&'a str>,
    pub expire_at: u64,
    pub login_at_ms: u64,
    /// The socket's current session of the same user, updated in place (never kicked).
    pub replaces: Option<u64>,
}

/// What a login did.
#[derive(Debug)]
pub struct LoginOutcome {
    pub session: u64,
    /// Whether `replaces` named a session that was still registered (and was updated in place).
    pub replaced: bool,
    pub victims: Vec<Victim>,
}

/// Which instances an admin kick selects.
#[derive(Debug, Clone, Copy, Default)]
pub struct KickFilter<'a> {
    pub platform: Option<Platform>,
    pub instance_id: Option<&'a str>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PresenceError {
    #[error("sdk_app_id {0} is not configured")]
    UnknownApp(u64),
    /// The session a login would update in place was evicted meanwhile (its kick is on its way).
    #[error("the session to update was evicted")]
    Superseded,
}

type Users = DashMap<Box<str>, Vec<Instance>>;

/// The registry of every configured app.
#[derive(Debug)]
pub struct Registry {
    apps: HashMap<u64, Users>,
    next_order: AtomicU64,
    next_session: AtomicU64,
}

impl Registry {
    /// A registry for the given apps.
    pub fn new(apps: impl IntoIterator<Item = u64>) -> Registry {
        Registry {
            apps: apps.into_iter().map(|a| (a, DashMap::new())).collect(),
            next_order: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
        }
    }

    fn users(&self, app: u64) -> Result<&Users, PresenceError> {
        self.apps.get(&app).ok_or(PresenceError::UnknownApp(app))
    }

    /// Applies a login atomically for its user: the policy decides the victims, which are removed
    /// and returned; the newcomer is added.
    pub fn login(&self, policy: &Policy, req: Login<'_>) -> Result<LoginOutcome, PresenceError> {
        let users = self.users(req.app)?;
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let mut entry = match users.get_mut(req.user) {
            Some(e) => e,
            None => users.entry(req.user.into()).or_default(),
        };
        let list = entry.value_mut();
        if let Some(old) = req.replaces {
            if !list.iter().any(|i| i.session == old) {
                let empty = list.is_empty();
                drop(entry);
                if empty {
                    users.remove_if(req.user, |_, l| l.is_empty());
                }
                return Err(PresenceError::Superseded);
            }
        }
        let before = list.len();
        if let Some(old) = req.replaces {
            list.retain(|i| i.session != old);
        }
        let replaced = list.len() != before;
        let held: Vec<Held<'_>> = list
            .iter()
            .map(|i| Held {
                platform: i.platform,
                instance_id: i.instance_id.as_deref(),
                order: i.order,
            })
            .collect();
        let mut decided = policy::evict(policy, &held, req.platform, req.instance_id);
        drop(held);
        // Remove from the highest index down so the lower indices stay valid.
        decided.sort_unstable_by_key(|&(i, _)| std::cmp::Reverse(i));
        let victims = decided
            .into_iter()
            .map(|(i, reason)| Victim {
                instance: list.swap_remove(i),
                reason,
            })
            .collect();
        list.push(Instance {
            outbox: Arc::clone(req.outbox),
            session,
            platform: req.platform,
            instance_id: req.instance_id.map(Into::into),
            order: self.next_order.fetch_add(1, Ordering::Relaxed),
            login_at_ms: req.login_at_ms,
            expire_at: req.expire_at,
        });
        Ok(LoginOutcome {
            session,
            replaced,
            victims,
        })
    }

    /// Adds an instance without applying any policy (cluster mode: Redis decided, this registry is
    /// only the node's index of its own sockets by user).
    pub fn insert(&self, app: u64, user: &str, instance: Instance) {
        if let Ok(users) = self.users(app) {
            match users.get_mut(user) {
                Some(mut list) => list.push(instance),
                None => users.entry(user.into()).or_default().push(instance),
            }
        }
    }

    /// Removes the session if it is still registered; returns whether it was.
    pub fn logout(&self, app: u64, user: &str, session: u64) -> bool {
        let Ok(users) = self.users(app) else {
            return false;
        };
        let mut removed = false;
        users.remove_if_mut(user, |_, list| {
            let before = list.len();
            list.retain(|i| i.session != session);
            removed = list.len() != before;
            list.is_empty()
        });
        removed
    }

    /// Updates the `expire_at` of a registered session (after `refresh_sig`).
    pub fn set_expire_at(&self, app: u64, user: &str, session: u64, expire_at: u64) {
        if let Ok(users) = self.users(app) {
            if let Some(mut list) = users.get_mut(user) {
                if let Some(i) = list.iter_mut().find(|i| i.session == session) {
                    i.expire_at = expire_at;
                }
            }
        }
    }

    /// Removes and returns the user's instances that match the filter (admin kick).
    pub fn kick(
        &self,
        app: u64,
        user: &str,
        filter: KickFilter<'_>,
    ) -> Result<Vec<Victim>, PresenceError> {
        let users = self.users(app)?;
        let mut victims = Vec::new();
        users.remove_if_mut(user, |_, list| {
            let (hit, kept): (Vec<Instance>, Vec<Instance>) =
                std::mem::take(list).into_iter().partition(|i| {
                    filter.platform.is_none_or(|p| p == i.platform)
                        && filter
                            .instance_id
                            .is_none_or(|id| i.instance_id.as_deref() == Some(id))
                });
            *list = kept;
            victims.extend(hit.into_iter().map(|instance| Victim {
                instance,
                reason: KickReason::Admin,
            }));
            list.is_empty()
        });
        Ok(victims)
    }

    /// A copy of the user's instances, in login order.
    pub fn instances(&self, app: u64, user: &str) -> Result<Vec<Instance>, PresenceError> {
        let users = self.users(app)?;
        let mut v = users.get(user).map(|l| l.clone()).unwrap_or_default();
        v.sort_by_key(|i| i.order);
        Ok(v)
    }

    /// Calls `f` on each of the user's instances under the user's read lock (keep `f` short and
    /// non-blocking); returns how many instances there were.
    pub fn for_each(&self, app: u64, user: &str, mut f: impl FnMut(&Instance)) -> usize {
        let Ok(users) = self.users(app) else {
            return 0;
        };
        match users.get(user) {
            Some(list) => {
                list.iter().for_each(&mut f);
                list.len()
            }
            None => 0,
        }
    }

    /// Users with at least one instance, per app (for tests and gauges).
    pub fn user_count(&self, app: u64) -> usize {
        self.users(app).map(|u| u.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Platform::*;

    const APP: u64 = 1;

    fn outbox(id: u64) -> Arc<Outbox> {
        Arc::new(Outbox::new(id, 8))
    }

    fn login(
        r: &Registry,
        p: &Policy,
        user: &str,
        ob: &Arc<Outbox>,
        platform: Platform,
        iid: Option<&str>,
    ) -> LoginOutcome {
        r.login(
            p,
            Login {
                app: APP,
                user,
                outbox: ob,
                platform,
                instance_id: iid,
                expire_at: 100,
                login_at_ms: 1,
                replaces: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn login_kicks_the_oldest_over_the_cap_and_logout_is_fenced() {
        let r = Registry::new([APP]);
        let mut p = Policy::preset("dual").unwrap();
        p.set_max_instances(Web, 2);
        let (a, b, c) = (outbox(1), outbox(2), outbox(3));
        let s1 = login(&r, &p, "u", &a, Web, None).session;
        let s2 = login(&r, &p, "u", &b, Web, None).session;
        let out = login(&r, &p, "u", &c, Web, None);
        assert_eq!(out.victims.len(), 1);
        assert_eq!(out.victims[0].instance.session, s1);
        assert_eq!(out.victims[0].reason, KickReason::MultiDevice);
        assert!(!r.logout(APP, "u", s1), "a kicked session is already gone");
        assert!(r.logout(APP, "u", s2));
        assert!(!r.logout(APP, "u", s2));
        let left = r.instances(APP, "u").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].session, out.session);
        assert!(r.logout(APP, "u", out.session));
        assert_eq!(r.user_count(APP), 0, "an empty user leaves the map");
    }

    #[test]
    fn relogin_in_place_is_not_a_kick() {
        let r = Registry::new([APP]);
        let p = Policy::preset("dual").unwrap();
        let a = outbox(1);
        let s1 = login(&r, &p, "u", &a, Web, None).session;
        let out = r
            .login(
                &p,
                Login {
                    app: APP,
                    user: "u",
                    outbox: &a,
                    platform: Mac,
                    instance_id: Some("x"),
                    expire_at: 5,
                    login_at_ms: 2,
                    replaces: Some(s1),
                },
            )
            .unwrap();
        assert!(out.victims.is_empty());
        let left = r.instances(APP, "u").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].platform, Mac);
    }

    #[test]
    fn relogin_in_place_of_an_evicted_session_is_superseded() {
        let r = Registry::new([APP]);
        let p = Policy::preset("dual").unwrap();
        let (a, b) = (outbox(1), outbox(2));
        let s1 = login(&r, &p, "u", &a, Android, None).session;
        let s2 = login(&r, &p, "u", &b, Iphone, None).session; // evicts s1
        let again = r.login(
            &p,
            Login {
                app: APP,
                user: "u",
                outbox: &a,
                platform: Android,
                instance_id: None,
                expire_at: 5,
                login_at_ms: 2,
                replaces: Some(s1),
            },
        );
        assert_eq!(again.unwrap_err(), PresenceError::Superseded);
        let left = r.instances(APP, "u").unwrap();
        assert_eq!(
            left.len(),
            1,
            "the eviction stands and nothing else changed"
        );
        assert_eq!(left[0].session, s2);
    }

    #[test]
    fn admin_kick_filters_and_unknown_app_errors() {
        let r = Registry::new([APP]);
        let mut p = Policy::preset("multi").unwrap();
        p.set_max_instances(Web, 5);
        login(&r, &p, "u", &outbox(1), Web, Some("t1"));
        login(&r, &p, "u", &outbox(2), Web, Some("t2"));
        login(&r, &p, "u", &outbox(3), Mac, None);
        let v = r
            .kick(
                APP,
                "u",
                KickFilter {
                    platform: Some(Web),
                    instance_id: Some("t2"),
                },
            )
            .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].reason, KickReason::Admin);
        assert_eq!(r.kick(APP, "u", KickFilter::default()).unwrap().len(), 2);
        assert_eq!(r.user_count(APP), 0);
        assert_eq!(
            r.kick(9, "u", KickFilter::default()).unwrap_err(),
            PresenceError::UnknownApp(9)
        );
    }

    #[test]
    fn concurrent_logins_leave_the_policy_satisfied() {
        let r = Arc::new(Registry::new([APP]));
        let mut p = Policy::preset("dual").unwrap();
        p.set_max_instances(Web, 3);
        let p = Arc::new(p);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (r, p) = (Arc::clone(&r), Arc::clone(&p));
                std::thread::spawn(move || {
                    let plats = [Web, Android, Iphone, Mac];
                    for i in 0..500u64 {
                        let ob = outbox(t * 1000 + i);
                        login(&r, &p, "u", &ob, plats[(i as usize + t as usize) % 4], None);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let left = r.instances(APP, "u").unwrap();
        let web = left.iter().filter(|i| i.platform == Web).count();
        let native = left.iter().filter(|i| i.platform != Web).count();
        assert!(web <= 3 && native <= 1, "web {web} native {native}");
    }
}
