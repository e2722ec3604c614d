//! The sharded in-process registry: (app, user) → the user's logged-in instances.
//!
//! What it owns: who is logged in where and in what order, the admin revocation second of each
//! user (70052), and the atomic application of the policy per login. Users are spread over
//! [`SHARDS`] shards, each a hash table behind one lock; a login takes its user's shard lock (an
//! account switch takes both users' shards, in index order), asks the pure [`policy::evict`] which
//! instances go, removes them, adds the newcomer and returns the victims. Callers tell the victims
//! after the lock is released. Every entry carries a session id that fences later removals: a late
//! logout or close of an old session never removes a newer one.
//!
//! It serves two stores: the embedded one applies the policy here ([`Registry::login`]); the Redis
//! one keeps only this node's sockets here, by user, with the decisions taken in Redis
//! ([`Registry::insert`], [`Registry::remove`]).
//!
//! What it does not own: sockets (it holds [`Outbox`] handles), timers, webhooks, metrics.

use crate::outbox::Outbox;
use crate::policy::{self, Held, Policy};
use hashbrown::HashTable;
use imgate_proto::{KickReason, Platform};
use parking_lot::{RwLock, RwLockWriteGuard};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Shards of the registry: logins of different users rarely wait for each other.
pub const SHARDS: usize = 64;

/// One logged-in instance of a user.
#[derive(Debug, Clone)]
pub struct Instance {
    pub conn: Arc<Outbox>,
    pub session: u64,
    pub platform: Platform,
    pub instance_id: Option<Box<str>>,
    /// Login order: the login time in µs, made strictly increasing per user (smaller = earlier).
    pub order: u64,
    pub expire_at: u64,
}

impl Instance {
    pub fn login_at_ms(&self) -> u64 {
        self.order / 1000
    }
}

/// An evicted instance, to be told by the caller.
#[derive(Debug, Clone)]
pub struct Victim {
    /// The instance as it was registered (already removed).
    pub instance: Instance,
    pub reason: KickReason,
}

/// The session a login takes over on its own socket.
#[derive(Debug, Clone, Copy)]
pub enum Takeover<'a> {
    None,
    /// The socket's session of the same user, updated in place (never kicked).
    Relogin(u64),
    /// The socket's session of another user (or app), logged out by the switch.
    Switch {
        app: u64,
        user: &'a str,
        session: u64,
    },
}

/// A login to apply.
#[derive(Debug)]
pub struct Login<'a> {
    pub app: u64,
    pub user: &'a str,
    pub conn: &'a Arc<Outbox>,
    pub platform: Platform,
    pub instance_id: Option<&'a str>,
    pub expire_at: u64,
    /// `TLS.time` of the UserSig, checked against the user's revocation second.
    pub tls_time: u64,
    pub now_us: u64,
    pub takeover: Takeover<'a>,
}

/// What a login did.
#[derive(Debug)]
pub struct LoginOutcome {
    pub session: u64,
    /// The socket's previous session, removed (a re-login in place or an account switch).
    pub ended: Option<Instance>,
    pub victims: Vec<Victim>,
}

/// Why a login changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The UserSig's `TLS.time` is not after the user's revocation second (70052).
    Revoked,
    /// The session the login takes over was evicted meanwhile (its kick is on its way).
    Superseded,
}

/// Which instances an admin kick selects.
#[derive(Debug, Clone, Copy, Default)]
pub struct KickFilter<'a> {
    pub platform: Option<Platform>,
    pub instance_id: Option<&'a str>,
}

impl KickFilter<'_> {
    /// Neither platform nor instance id: every device of the user (and a revocation).
    pub fn whole_user(&self) -> bool {
        self.platform.is_none() && self.instance_id.is_none()
    }

    pub fn matches(&self, platform: Platform, instance_id: Option<&str>) -> bool {
        self.platform.is_none_or(|p| p == platform)
            && self.instance_id.is_none_or(|i| instance_id == Some(i))
    }
}

#[derive(Debug)]
struct User {
    app: u64,
    user: Box<str>,
    instances: Vec<Instance>,
    /// Admin revocation second (0: none): UserSigs with `TLS.time` <= it answer 70052.
    revoked: u64,
}

impl User {
    fn is_idle(&self) -> bool {
        self.instances.is_empty() && self.revoked == 0
    }

    fn next_order(&self, now_us: u64) -> u64 {
        let last = self.instances.iter().map(|i| i.order).max().unwrap_or(0);
        now_us.max(last + 1)
    }
}

#[derive(Debug, Default)]
struct Shard {
    users: HashTable<User>,
}

impl Shard {
    fn find(&self, hash: u64, app: u64, user: &str) -> Option<&User> {
        self.users.find(hash, |u| u.app == app && &*u.user == user)
    }

    fn find_mut(&mut self, hash: u64, app: u64, user: &str) -> Option<&mut User> {
        self.users
            .find_mut(hash, |u| u.app == app && &*u.user == user)
    }

    fn get_or_insert(
        &mut self,
        hasher: &RandomState,
        hash: u64,
        app: u64,
        user: &str,
    ) -> &mut User {
        self.users
            .entry(
                hash,
                |u| u.app == app && &*u.user == user,
                |u| hasher.hash_one((u.app, &*u.user)),
            )
            .or_insert_with(|| User {
                app,
                user: user.into(),
                instances: Vec::new(),
                revoked: 0,
            })
            .into_mut()
    }

    fn remove_if_idle(&mut self, hash: u64, app: u64, user: &str) {
        if let Ok(e) = self
            .users
            .find_entry(hash, |u| u.app == app && &*u.user == user)
        {
            if e.get().is_idle() {
                e.remove();
            }
        }
    }
}

/// The registry.
#[derive(Debug)]
pub struct Registry {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    next_session: AtomicU64,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            next_session: AtomicU64::new(1),
        }
    }

    fn hash(&self, app: u64, user: &str) -> u64 {
        self.hasher.hash_one((app, user))
    }

    fn shard_of(hash: u64) -> usize {
        (hash >> 58) as usize % SHARDS
    }

    /// Applies a login atomically: the takeover is fenced (its session must still be registered),
    /// the revocation is checked, the policy decides the victims, which are removed and returned,
    /// the takeover's session is removed and the newcomer added. On `Err` nothing changed.
    pub fn login(&self, policy: &Policy, req: Login<'_>) -> Result<LoginOutcome, Refusal> {
        let h_new = self.hash(req.app, req.user);
        let s_new = Self::shard_of(h_new);
        let old = match req.takeover {
            Takeover::Switch { app, user, session } => {
                let h = self.hash(app, user);
                Some((h, Self::shard_of(h), app, user, session))
            }
            _ => None,
        };
        // Both shards are locked in index order (once when they are the same).
        let (mut first, mut second): (
            RwLockWriteGuard<'_, Shard>,
            Option<RwLockWriteGuard<'_, Shard>>,
        );
        let old_in_second;
        match old {
            Some((_, s_old, ..)) if s_old != s_new => {
                let (lo, hi) = (s_new.min(s_old), s_new.max(s_old));
                first = self.shards[lo].write();
                second = Some(self.shards[hi].write());
                old_in_second = s_old == hi;
            }
            _ => {
                first = self.shards[s_new].write();
                second = None;
                old_in_second = false;
            }
        }
        let new_in_second = second.is_some() && !old_in_second;
        // 1. The takeover's session must still be registered.
        if let Some((h_old, _, app, user, session)) = old {
            let shard = if old_in_second {
                second.as_deref().expect("locked")
            } else {
                &*first
            };
            let present = shard
                .find(h_old, app, user)
                .is_some_and(|u| u.instances.iter().any(|i| i.session == session));
            if !present {
                return Err(Refusal::Superseded);
            }
        }
        let shard_new: &mut Shard = if new_in_second {
            second.as_deref_mut().expect("locked")
        } else {
            &mut first
        };
        if let Takeover::Relogin(session) = req.takeover {
            let present = shard_new
                .find(h_new, req.app, req.user)
                .is_some_and(|u| u.instances.iter().any(|i| i.session == session));
            if !present {
                return Err(Refusal::Superseded);
            }
        }
        // 2. The revocation.
        let revoked = shard_new
            .find(h_new, req.app, req.user)
            .map_or(0, |u| u.revoked);
        if revoked > 0 && req.tls_time <= revoked {
            return Err(Refusal::Revoked);
        }
        // From here on the login cannot fail.
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let entry = shard_new.get_or_insert(&self.hasher, h_new, req.app, req.user);
        let mut ended = None;
        if let Takeover::Relogin(old) = req.takeover {
            let i = entry
                .instances
                .iter()
                .position(|i| i.session == old)
                .expect("checked above");
            ended = Some(entry.instances.swap_remove(i));
        }
        let victims = evict(policy, &mut entry.instances, req.platform, req.instance_id);
        let order = entry.next_order(req.now_us);
        entry.instances.push(Instance {
            conn: Arc::clone(req.conn),
            session,
            platform: req.platform,
            instance_id: req.instance_id.map(Into::into),
            order,
            expire_at: req.expire_at,
        });
        // 3. The switched-out session leaves.
        if let Some((h_old, _, app, user, session)) = old {
            let shard = if old_in_second {
                second.as_deref_mut().expect("locked")
            } else {
                &mut first
            };
            let u = shard.find_mut(h_old, app, user).expect("checked above");
            let i = u
                .instances
                .iter()
                .position(|i| i.session == session)
                .expect("checked above");
            ended = Some(u.instances.swap_remove(i));
            shard.remove_if_idle(h_old, app, user);
        }
        Ok(LoginOutcome {
            session,
            ended,
            victims,
        })
    }

    /// Adds an instance without applying any policy (the Redis store: Redis decided, this is only
    /// the node's index of its own sockets by user).
    pub fn insert(&self, app: u64, user: &str, instance: Instance) {
        let h = self.hash(app, user);
        let mut shard = self.shards[Self::shard_of(h)].write();
        shard
            .get_or_insert(&self.hasher, h, app, user)
            .instances
            .push(instance);
    }

    /// Removes the session if it is still registered.
    pub fn remove(&self, app: u64, user: &str, session: u64) -> Option<Instance> {
        let h = self.hash(app, user);
        let mut shard = self.shards[Self::shard_of(h)].write();
        let u = shard.find_mut(h, app, user)?;
        let i = u.instances.iter().position(|i| i.session == session)?;
        let removed = u.instances.swap_remove(i);
        shard.remove_if_idle(h, app, user);
        Some(removed)
    }

    /// A copy of a registered session.
    pub fn get(&self, app: u64, user: &str, session: u64) -> Option<Instance> {
        let h = self.hash(app, user);
        self.shards[Self::shard_of(h)]
            .read()
            .find(h, app, user)?
            .instances
            .iter()
            .find(|i| i.session == session)
            .cloned()
    }

    /// Whether the session is registered.
    pub fn contains(&self, app: u64, user: &str, session: u64) -> bool {
        let h = self.hash(app, user);
        self.shards[Self::shard_of(h)]
            .read()
            .find(h, app, user)
            .is_some_and(|u| u.instances.iter().any(|i| i.session == session))
    }

    /// Checks a refreshed UserSig against the revocation and updates the session's `expire_at`,
    /// under the user's lock. A session no longer registered (kicked meanwhile) is left alone.
    pub fn refresh(
        &self,
        app: u64,
        user: &str,
        session: u64,
        expire_at: u64,
        tls_time: u64,
    ) -> Result<(), Refusal> {
        let h = self.hash(app, user);
        let mut shard = self.shards[Self::shard_of(h)].write();
        let Some(u) = shard.find_mut(h, app, user) else {
            return Ok(());
        };
        if u.revoked > 0 && tls_time <= u.revoked {
            return Err(Refusal::Revoked);
        }
        if let Some(i) = u.instances.iter_mut().find(|i| i.session == session) {
            i.expire_at = expire_at;
        }
        Ok(())
    }

    /// Updates the `expire_at` of a registered session.
    pub fn set_expire_at(&self, app: u64, user: &str, session: u64, expire_at: u64) {
        let h = self.hash(app, user);
        let mut shard = self.shards[Self::shard_of(h)].write();
        if let Some(i) = shard
            .find_mut(h, app, user)
            .and_then(|u| u.instances.iter_mut().find(|i| i.session == session))
        {
            i.expire_at = expire_at;
        }
    }

    /// Removes and returns the user's instances that match the filter (admin kick). With
    /// `revoke_at`, the user's UserSigs with `TLS.time` up to that second are revoked in the same
    /// step, so a login racing with the kick either is kicked or answers 70052.
    pub fn kick(
        &self,
        app: u64,
        user: &str,
        filter: KickFilter<'_>,
        revoke_at: Option<u64>,
    ) -> Vec<Victim> {
        let h = self.hash(app, user);
        let mut shard = self.shards[Self::shard_of(h)].write();
        let u = match revoke_at {
            Some(second) => {
                let u = shard.get_or_insert(&self.hasher, h, app, user);
                u.revoked = u.revoked.max(second);
                u
            }
            None => match shard.find_mut(h, app, user) {
                Some(u) => u,
                None => return Vec::new(),
            },
        };
        let mut victims = Vec::new();
        let mut i = 0;
        while i < u.instances.len() {
            let inst = &u.instances[i];
            if filter.matches(inst.platform, inst.instance_id.as_deref()) {
                victims.push(Victim {
                    instance: u.instances.swap_remove(i),
                    reason: KickReason::Admin,
                });
            } else {
                i += 1;
            }
        }
        shard.remove_if_idle(h, app, user);
        victims
    }

    /// A copy of the user's instances, in login order.
    pub fn instances(&self, app: u64, user: &str) -> Vec<Instance> {
        let h = self.hash(app, user);
        let mut v = self.shards[Self::shard_of(h)]
            .read()
            .find(h, app, user)
            .map(|u| u.instances.clone())
            .unwrap_or_default();
        v.sort_by_key(|i| i.order);
        v
    }

    /// Calls `f` on each of the user's instances under the shard's read lock (keep `f` short and
    /// non-blocking); returns how many instances there were.
    pub fn for_each(&self, app: u64, user: &str, mut f: impl FnMut(&Instance)) -> usize {
        let h = self.hash(app, user);
        let shard = self.shards[Self::shard_of(h)].read();
        match shard.find(h, app, user) {
            Some(u) => {
                u.instances.iter().for_each(&mut f);
                u.instances.len()
            }
            None => 0,
        }
    }

    /// Every registered instance, shard by shard (each shard's lock is held only while it is
    /// copied): `(app, user, instance)`.
    pub fn snapshot(&self) -> Vec<(u64, Box<str>, Instance)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read();
            for u in shard.users.iter() {
                for i in &u.instances {
                    out.push((u.app, u.user.clone(), i.clone()));
                }
            }
        }
        out
    }

    /// Users with at least one instance (for tests and gauges).
    pub fn user_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .users
                    .iter()
                    .filter(|u| !u.instances.is_empty())
                    .count()
            })
            .sum()
    }

    /// Sessions of connection `conn` (a socket holds at most one).
    #[cfg(test)]
    fn sessions_of(&self, conn: crate::outbox::ConnId) -> usize {
        self.snapshot()
            .iter()
            .filter(|(_, _, i)| i.conn.id() == conn)
            .count()
    }
}

/// Removes the instances the policy evicts for a newcomer and returns them.
fn evict(
    policy: &Policy,
    list: &mut Vec<Instance>,
    platform: Platform,
    instance_id: Option<&str>,
) -> Vec<Victim> {
    let held: Vec<Held<'_>> = list
        .iter()
        .map(|i| Held {
            platform: i.platform,
            instance_id: i.instance_id.as_deref(),
            order: i.order,
        })
        .collect();
    let mut decided = policy::evict(policy, &held, platform, instance_id);
    drop(held);
    // Remove from the highest index down so the lower indices stay valid.
    decided.sort_unstable_by_key(|&(i, _)| std::cmp::Reverse(i));
    decided
        .into_iter()
        .map(|(i, reason)| Victim {
            instance: list.swap_remove(i),
            reason,
        })
        .collect()
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
