//! The churn: the seeded generator, the choice of an operation (weights by what the user's slots
//! allow), each operation carried out and checked, and the pacing of the workers.

use super::*;
use client::wait_outcome;
use outcome::{takeover_want, KickWant};

/// A small seeded generator (splitmix64): the same `--seed` gives the same choices per worker.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `percent` / 100.
    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The churn's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Login,
    Short,
    Takeover,
    Close,
    Drop,
    Logout,
    Send,
    DeviceKick,
    UserKick,
}

/// Picks an operation for a user with `free` and `held` slots (weights per 100). `short_of`: fewer
/// sockets open than the target (logins weigh more, so that the count stays near the target).
fn pick(
    rng: &mut Rng,
    free: bool,
    held: bool,
    can_add: bool,
    can_short: bool,
    short_of: bool,
) -> Option<Op> {
    let table: [(Op, u64, bool); 9] = [
        (Op::Login, if short_of { 80 } else { 20 }, free && can_add),
        (Op::Short, 6, free && can_add && can_short),
        (Op::Takeover, 16, held),
        (Op::Close, 10, held),
        (Op::Drop, 5, held),
        (Op::Logout, 8, held),
        (Op::Send, 25, held),
        (Op::DeviceKick, 8, held),
        (Op::UserKick, 2, held),
    ];
    let total: u64 = table.iter().filter(|t| t.2).map(|t| t.1).sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    for (op, w, ok) in table {
        if !ok {
            continue;
        }
        if r < w {
            return Some(op);
        }
        r -= w;
    }
    None
}

impl Soak {
    /// One churn operation on the locked user `u`.
    pub(super) async fn run_op(
        self: &Arc<Self>,
        rng: &mut Rng,
        u: usize,
        mut guard: OwnedMutexGuard<UserState>,
        shorts: &mut tokio::task::JoinSet<()>,
        allow_short: bool,
    ) {
        let free: Vec<usize> = (0..2).filter(|&s| guard.slots[s].is_none()).collect();
        let held: Vec<usize> = (0..2).filter(|&s| guard.slots[s].is_some()).collect();
        let can_short = allow_short && self.shorts.load(Ordering::Relaxed) < self.max_shorts;
        let Some(op) = pick(
            rng,
            !free.is_empty(),
            !held.is_empty(),
            self.can_add(),
            can_short,
            self.short_of(),
        ) else {
            return;
        };
        let user = self.user_id(u);
        let any = |v: &[usize], rng: &mut Rng| v[rng.below(v.len() as u64) as usize];
        match op {
            Op::Login => {
                let slot = any(&free, rng);
                let (p, i) = (self.platform_for(rng, slot), Self::instance_for(rng, slot));
                let sig = self.mint(&user, guard.revoked_at, self.long_expire).await;
                match self
                    .open_login(&user, p, &i, sig, self.long_expire, 0)
                    .await
                {
                    Ok(c) => guard.slots[slot] = Some(c),
                    Err(o) => {
                        self.tally.add(o);
                    }
                }
            }
            Op::Short => {
                let slot = any(&free, rng);
                let (lo, hi) = self.short_secs;
                let expire = lo + rng.below(hi.saturating_sub(lo) + 1);
                let (p, i) = (self.platform_for(rng, slot), Self::instance_for(rng, slot));
                let relogin = rng.chance(50);
                let soak = Arc::clone(self);
                self.shorts.fetch_add(1, Ordering::Relaxed);
                shorts.spawn(async move {
                    soak.short_life(&user, guard, slot, p, &i, expire, relogin)
                        .await;
                    soak.shorts.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Op::Takeover => {
                let slot = any(&held, rng);
                let (p, i) = (self.platform_for(rng, slot), Self::instance_for(rng, slot));
                let old = guard.slots[slot].take().expect("a held slot");
                let want = takeover_want(old.platform, &old.instance, p, &i);
                let kicked = old.expect_kick(want);
                let sig = self.mint(&user, guard.revoked_at, self.long_expire).await;
                let new = self
                    .open_login(&user, p, &i, sig, self.long_expire, 0)
                    .await;
                let kick = wait_outcome(kicked, want.kind()).await;
                let kick_ok = self.tally.add(kick);
                match new {
                    Ok(c) if kick_ok => guard.slots[slot] = Some(c),
                    Ok(c) => {
                        guard.slots[slot] = Some(c);
                        self.forget(&mut guard).await;
                    }
                    Err(o) => {
                        self.tally.add(o);
                        self.forget(&mut guard).await;
                    }
                }
                drop(old);
            }
            Op::Close => {
                let slot = any(&held, rng);
                let c = guard.slots[slot].take().expect("a held slot");
                if !self.tally.add(c.close().await) {
                    self.forget(&mut guard).await;
                }
            }
            Op::Drop => {
                let slot = any(&held, rng);
                let c = guard.slots[slot].take().expect("a held slot");
                let instance = c.instance.clone();
                let _ = c.cmd.send(Cmd::Drop).await;
                self.tally.ok("client dropped (no close frame)");
                if let Some(o) = self.wait_gone(&user, &instance).await {
                    self.tally.add(o);
                }
            }
            Op::Logout => {
                let slot = any(&held, rng);
                let c = guard.slots[slot].take().expect("a held slot");
                let r = c.request(ClientMsg::Logout { seq: self.seq() }).await;
                let mut ok = self.tally.add(classify_response("logout", 0, &r));
                if ok {
                    ok = self.check_status(&c, 3).await;
                }
                if ok && rng.chance(50) {
                    // Log in again on the same socket (the login deadline restarted at logout).
                    let sig = self.mint(&user, guard.revoked_at, self.long_expire).await;
                    let msg = self.login_msg(&user, sig.0, c.platform, &c.instance.clone());
                    let r = c.request(msg).await;
                    let o = self.check_login(&r, &user, c.platform, sig.1 + self.long_expire);
                    if self.tally.add(o) {
                        self.tally.ok("login again on the same socket");
                        guard.slots[slot] = Some(c);
                        return;
                    }
                    ok = false;
                }
                if ok {
                    ok = self.tally.add(c.close().await);
                } else {
                    let _ = c.cmd.send(Cmd::Drop).await;
                }
                if !ok {
                    self.forget(&mut guard).await;
                }
            }
            Op::Send => self.send(rng, u, &user, &mut guard, &held).await,
            Op::DeviceKick => {
                let Some(admin) = &self.admin else { return };
                let slot = any(&held, rng);
                let c = guard.slots[slot].take().expect("a held slot");
                let want = KickWant {
                    reason: KickReason::Admin,
                    by_platform: None,
                    code: imgate_proto::close::ADMIN_KICKED,
                };
                let kicked = c.expect_kick(want);
                let body = json!({"sdk_app_id": self.app, "user_id": user,
                    "platform": c.platform.as_str(), "instance_id": c.instance});
                match admin.json("POST", "/v1/kick", &body.to_string()).await {
                    Ok(v) if v["kicked"] == 1 => {}
                    Ok(v) => self.tally.bad(format!("device kick answered {v}")),
                    Err(f) => self.tally.bad(f),
                }
                if !self.tally.add(wait_outcome(kicked, "admin kick").await) {
                    self.forget(&mut guard).await;
                }
            }
            Op::UserKick => {
                let Some(admin) = &self.admin else { return };
                let want = KickWant {
                    reason: KickReason::Admin,
                    by_platform: None,
                    code: imgate_proto::close::ADMIN_KICKED,
                };
                let victims: Vec<Client> =
                    guard.slots.iter_mut().filter_map(Option::take).collect();
                let waits: Vec<_> = victims.iter().map(|c| c.expect_kick(want)).collect();
                // Minted before the kick: its TLS.time is at most the revocation second.
                let stale = self.mint(&user, guard.revoked_at, self.long_expire).await;
                let body = json!({"sdk_app_id": self.app, "user_id": user});
                match admin.json("POST", "/v1/kick", &body.to_string()).await {
                    Ok(v) if v["kicked"] == victims.len() => {}
                    Ok(v) => self.tally.bad(format!(
                        "user kick of {} sockets answered {v}",
                        victims.len()
                    )),
                    Err(f) => self.tally.bad(f),
                }
                guard.revoked_at = now_secs();
                for w in waits {
                    self.tally
                        .add(wait_outcome(w, "admin kick of a user").await);
                }
                drop(victims);
                self.tally.ok("admin kick of a whole user");
                // A UserSig minted up to the kick is refused: 70052 (a failure the throttle counts).
                if self.can_add() {
                    let p = self.platform_for(rng, 0);
                    let i = Self::instance_for(rng, 0);
                    match self
                        .open_login(&user, p, &i, stale, self.long_expire, 70052)
                        .await
                    {
                        Err(Outcome::Expected(k)) => self.tally.ok(k),
                        Err(o) => {
                            self.tally.add(o);
                        }
                        Ok(c) => {
                            self.tally.bad("a revoked UserSig logged in");
                            guard.slots[0] = Some(c);
                            self.forget(&mut guard).await;
                        }
                    }
                }
            }
        }
    }

    /// `get_login_status` answers `status`.
    async fn check_status(&self, c: &Client, status: u8) -> bool {
        let r = c
            .request(ClientMsg::GetLoginStatus { seq: self.seq() })
            .await;
        match r {
            Ok(ServerMsg::Response {
                code: 0,
                data: Some(ResponseData::LoginStatus { status: s }),
                ..
            }) if s == status => true,
            other => {
                self.tally.bad(format!(
                    "get_login_status: {:?} instead of status {status}",
                    other.map(|m| format!("{m:?}"))
                ));
                false
            }
        }
    }

    /// Waits until `/v1/online` no longer lists the user's `instance` (a dropped socket).
    async fn wait_gone(&self, user: &str, instance: &str) -> Option<Outcome> {
        let admin = self.admin.as_ref()?;
        let path = format!("/v1/online?sdk_app_id={}&user_id={user}", self.app);
        let deadline = Instant::now() + DROP_WAIT;
        loop {
            match admin.json("GET", &path, "").await {
                Err(f) => return Some(Outcome::Unexpected(f)),
                Ok(v) => {
                    let listed = v["users"][0]["instances"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|i| i["instance_id"] == instance));
                    if !listed {
                        return None;
                    }
                }
            }
            if Instant::now() >= deadline {
                return Some(Outcome::Unexpected(
                    "a dropped socket's session still online after 5 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `send` from one of `u`'s sockets (or `/v1/push`) to another user whose lock is free (or `u`).
    async fn send(
        &self,
        rng: &mut Rng,
        u: usize,
        user: &str,
        guard: &mut OwnedMutexGuard<UserState>,
        held: &[usize],
    ) {
        let from_slot = held[rng.below(held.len() as u64) as usize];
        let to = if rng.chance(10) {
            None
        } else {
            let v = rng.below(self.users.len() as u64) as usize;
            if v == u {
                None
            } else {
                match Arc::clone(&self.users[v]).try_lock_owned() {
                    Ok(g) => Some((v, g)),
                    Err(_) => return,
                }
            }
        };
        let (to_user, recipients) = match &to {
            None => (
                user.to_owned(),
                held.len() as u32 - 1, // the sending socket never counts
            ),
            Some((v, g)) => (
                self.user_id(*v),
                g.slots.iter().filter(|s| s.is_some()).count() as u32,
            ),
        };
        let admin_push = rng.chance(10) && self.admin.is_some();
        let (from, recipients) = if admin_push {
            let n = recipients + u32::from(to.is_none()); // a push reaches every socket
            ("@admin".to_owned(), n)
        } else {
            (user.to_owned(), recipients)
        };
        let token = self.inbox.expect(recipients, &from);
        let payload = format!("soak:{token}");
        let delivered = if admin_push {
            let admin = self.admin.as_ref().expect("checked");
            let body = json!({"sdk_app_id": self.app, "to": to_user, "payload": payload});
            admin
                .json("POST", "/v1/push", &body.to_string())
                .await
                .map(|v| v["delivered"].as_u64().unwrap_or(u64::MAX))
        } else {
            let c = guard.slots[from_slot].as_ref().expect("a held slot");
            let r = c
                .request(ClientMsg::Send {
                    seq: self.seq(),
                    to: to_user,
                    payload,
                })
                .await;
            match r {
                Ok(ServerMsg::Response {
                    code: 0,
                    data: Some(ResponseData::Send { delivered }),
                    ..
                }) => Ok(u64::from(delivered)),
                other => Err(format!("send: {other:?}")),
            }
        };
        let what = if admin_push { "/v1/push" } else { "send" };
        match delivered {
            Ok(d) if d == u64::from(recipients) => {
                self.tally.ok(if admin_push {
                    "/v1/push delivered to every socket"
                } else {
                    "send delivered to every socket"
                });
            }
            Ok(d) => self
                .tally
                .bad(format!("{what}: delivered {d} instead of {recipients}")),
            Err(f) => self.tally.bad(f),
        }
        let missing = self.inbox.settle(token).await;
        if missing > 0 {
            self.tally.bad(format!(
                "{what}: {missing} recipient(s) never read the message"
            ));
        } else {
            for _ in 0..recipients {
                self.tally.ok("message pushed and read");
            }
        }
    }

    /// A login with a short ticket, its expiry, then a login again on the same socket or a close.
    #[allow(clippy::too_many_arguments)]
    async fn short_life(
        self: &Arc<Self>,
        user: &str,
        mut guard: OwnedMutexGuard<UserState>,
        slot: usize,
        p: Platform,
        instance: &str,
        expire: u64,
        relogin: bool,
    ) {
        let sig = self.mint(user, guard.revoked_at, expire).await;
        let expire_at = sig.1 + expire;
        let c = match self.open_login(user, p, instance, sig, expire, 0).await {
            Ok(c) => c,
            Err(o) => {
                self.tally.add(o);
                return;
            }
        };
        self.tally.ok("login with a short ticket");
        let (tx, rx) = oneshot::channel();
        lock(&c.expect).expiry = Some((expire_at, tx));
        let wait = Duration::from_millis(
            (expire_at * 1000 + 1500 + self.slack_ms + 5000).saturating_sub(now_ms()),
        );
        let o = match timeout(wait, rx).await {
            Err(_) => Outcome::Unexpected("no user_sig_expired".into()),
            Ok(Err(_)) => Outcome::Unexpected("socket ended before user_sig_expired".into()),
            Ok(Ok(o)) => o,
        };
        if !self.tally.add(o) || !self.check_status(&c, 3).await {
            let _ = c.cmd.send(Cmd::Drop).await;
            return;
        }
        if relogin {
            let sig = self.mint(user, guard.revoked_at, self.long_expire).await;
            let msg = self.login_msg(user, sig.0, p, instance);
            let r = c.request(msg).await;
            let o = self.check_login(&r, user, p, sig.1 + self.long_expire);
            if self.tally.add(o) {
                self.tally.ok("login again on the same socket");
                guard.slots[slot] = Some(c);
                return;
            }
            let _ = c.cmd.send(Cmd::Drop).await;
        } else {
            self.tally.add(c.close().await);
        }
    }
}

/// Paces the workers to `rate` operations per second in all.
pub(super) struct Pace {
    pub(super) start: Instant,
    pub(super) interval_ns: u64,
    pub(super) next: AtomicU64,
}

impl Pace {
    pub(super) async fn wait(&self) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let at = self.start + Duration::from_nanos(n.saturating_mul(self.interval_ns));
        tokio::time::sleep_until(at.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_only_what_the_slots_allow() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let short_of = rng.chance(50);
            let op = pick(&mut rng, true, false, true, true, short_of).expect("an op");
            assert!(matches!(op, Op::Login | Op::Short));
            let op = pick(&mut rng, false, true, true, true, short_of).expect("an op");
            assert!(!matches!(op, Op::Login | Op::Short));
            let op = pick(&mut rng, true, true, false, true, short_of).expect("an op");
            assert!(!matches!(op, Op::Login | Op::Short));
        }
        assert_eq!(pick(&mut rng, true, false, false, true, true), None);
        let (mut a, mut b) = (Rng::new(1), Rng::new(1));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }
}
