//! Model-based tests (issue 13 item 3): proptest generates random sequences of login, logout,
//! refresh, UserSig expiry, account switch (a login as another user on a logged-in socket), close,
//! admin kicks (whole user and one device), sends and status queries over several sockets,
//! platforms, instance ids and policies, runs them against the real gateway through real sockets,
//! and checks every step against a small model of contract §5, §7 and §8:
//!
//! - every response has the code the model predicts (0, 6014, 70052 after a revoking kick);
//! - every socket the model evicts gets exactly one `kicked_offline` (reason, `by_platform`) and
//!   then its close (4501, or 4502 for an admin kick), and nothing else: a ping barrier on every
//!   other open socket after each step shows that no push the model does not expect arrived;
//! - what `/v1/online` reports equals the model's logged-in sockets, and satisfies the policy on
//!   its own (no two platforms of one group, no platform over its cap);
//! - `send` is delivered to exactly the model's sockets of the recipient;
//! - when every socket has closed, nobody is online.
//!
//! Two gateways: the embedded store, and a two-node cluster on one Redis (sockets spread over both
//! nodes, so kicks cross nodes). `MODEL_CASES` (default 48) sets the cases per store, `MODEL_SEED`
//! replays a run (the seed is printed at the start); a failure is shrunk to a minimal sequence and
//! printed with the seed.

mod common;

use common::redis::RedisServer;
use common::{Client, Gateway, KEY, TOKEN};
use imgate::usersig::{self, SigKey};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SOCKETS: usize = 5;
const USERS: usize = 3;
const PLATFORMS: [&str; 5] = ["android", "iphone", "windows", "mac", "web"];
const IIDS: [Option<&str>; 3] = [None, Some("a"), Some("b")];
/// How long a step waits for an event it expects (a cross-node kick, an expiry push).
const EVENT_WAIT: Duration = Duration::from_secs(4);

/// The apps of the test config, one per policy: (sdk_app_id offset, config lines, groups, caps).
struct PolicySpec {
    lines: &'static str,
    groups: &'static [&'static [&'static str]],
    caps: &'static [(&'static str, usize)],
}

const POLICIES: [PolicySpec; 5] = [
    PolicySpec {
        lines: "max_instances = { web = 2 }",
        groups: &[&["android", "iphone", "ipad", "windows", "mac", "linux"], &["web"]],
        caps: &[("web", 2)],
    },
    PolicySpec {
        lines: "policy = \"single\"",
        groups: &[&["android", "iphone", "ipad", "windows", "mac", "linux", "web"]],
        caps: &[],
    },
    PolicySpec {
        lines: "policy = \"triple\"\nmax_instances = { android = 2, web = 3 }",
        groups: &[
            &["android", "iphone", "ipad"],
            &["windows", "mac", "linux"],
            &["web"],
        ],
        caps: &[("android", 2), ("web", 3)],
    },
    PolicySpec {
        lines: "groups = [[\"android\", \"windows\"], [\"iphone\", \"web\"]]\nmax_instances = { mac = 2 }",
        groups: &[&["android", "windows"], &["iphone", "web"]],
        caps: &[("mac", 2)],
    },
    PolicySpec {
        lines: "policy = \"multi\"\nmax_instances = { windows = 2, web = 2 }",
        groups: &[],
        caps: &[("windows", 2), ("web", 2)],
    },
];

const BASE_APP: u64 = 1_400_000_100;

/// What the runs exercised (printed at the end, so a run that tested little shows it).
#[derive(Default, Debug)]
struct Seen {
    logins: AtomicU64,
    in_place: AtomicU64,
    switches: AtomicU64,
    revoked: AtomicU64,
    replaced: AtomicU64,
    multi_device: AtomicU64,
    admin: AtomicU64,
    expired: AtomicU64,
    closes: AtomicU64,
    messages: AtomicU64,
    steps: AtomicU64,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl PolicySpec {
    fn same_group(&self, a: &str, b: &str) -> bool {
        a == b || self.groups.iter().any(|g| g.contains(&a) && g.contains(&b))
    }
    fn cap(&self, p: &str) -> usize {
        self.caps
            .iter()
            .find(|(q, _)| *q == p)
            .map_or(1, |(_, n)| *n)
    }
}

fn test_config() -> String {
    let mut s = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\
         login_timeout_secs = 600\nidle_timeout_secs = 600\n\n\
         [throttle]\nmax_failures = 100000\nmax_failures_per_ip = 0\n"
    );
    for (i, p) in POLICIES.iter().enumerate() {
        s.push_str(&format!(
            "\n[[app]]\nsdk_app_id = {}\nkey = \"{KEY}\"\n{}\n",
            BASE_APP + i as u64,
            p.lines
        ));
    }
    s
}

#[derive(Debug, Clone)]
enum Op {
    /// Log socket `s` in (opening a connection to node `node` first if it has none).
    Login {
        s: usize,
        node: usize,
        u: usize,
        p: usize,
        iid: usize,
    },
    Logout {
        s: usize,
    },
    Refresh {
        s: usize,
    },
    /// Refresh with a ticket that expires within a second, then wait for `user_sig_expired`.
    Expire {
        s: usize,
    },
    Close {
        s: usize,
    },
    /// `POST /v1/kick` of the whole user (revokes its UserSigs minted up to now).
    KickUser {
        u: usize,
    },
    /// `POST /v1/kick` with a platform and/or an instance id.
    KickDevice {
        u: usize,
        p: Option<usize>,
        iid: Option<usize>,
    },
    Send {
        s: usize,
        to: usize,
    },
    Status {
        s: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SOCKETS;
    prop_oneof![
        8 => (s.clone(), 0..2usize, 0..USERS, 0..PLATFORMS.len(), 0..IIDS.len())
            .prop_map(|(s, node, u, p, iid)| Op::Login { s, node, u, p, iid }),
        2 => s.clone().prop_map(|s| Op::Logout { s }),
        1 => s.clone().prop_map(|s| Op::Refresh { s }),
        1 => s.clone().prop_map(|s| Op::Expire { s }),
        2 => s.clone().prop_map(|s| Op::Close { s }),
        1 => (0..USERS).prop_map(|u| Op::KickUser { u }),
        1 => (0..USERS, proptest::option::of(0..PLATFORMS.len()), 1..IIDS.len())
            .prop_map(|(u, p, iid)| {
                // at least one filter: a device kick never becomes a whole-user kick
                let iid = if p.is_none() || iid == 2 { Some(iid) } else { None };
                Op::KickDevice { u, p, iid }
            }),
        3 => (s.clone(), 0..USERS).prop_map(|(s, to)| Op::Send { s, to }),
        1 => s.prop_map(|s| Op::Status { s }),
    ]
}

/// One case: the app (policy) and the steps.
fn case() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (0..POLICIES.len(), prop::collection::vec(op(), 1..60))
}

#[derive(Debug, Clone, PartialEq)]
struct Sess {
    user: usize,
    platform: &'static str,
    iid: Option<&'static str>,
    order: u64,
}

/// What a step expects a socket to receive next.
#[derive(Debug)]
enum Expect {
    Kicked {
        reason: &'static str,
        by: Option<&'static str>,
        close: u16,
    },
    Message {
        from: usize,
        platform: &'static str,
        payload: String,
    },
}

struct Slot {
    conn: Option<Client>,
    sess: Option<Sess>,
}

/// A case's world: the sockets, the model and the revocations.
struct World<'a> {
    gws: &'a [Gateway],
    app: u64,
    policy: &'static PolicySpec,
    prefix: String,
    slots: Vec<Slot>,
    order: u64,
    /// Per user: the unix seconds read just before and just after its last revoking kick.
    revoked: BTreeMap<usize, (u64, u64)>,
    /// What the current step expects sockets to receive, in order per socket.
    pending: Vec<(usize, Expect)>,
    seen: &'a Seen,
}

type Step = Result<(), TestCaseError>;

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

impl<'a> World<'a> {
    fn user(&self, u: usize) -> String {
        format!("{}u{u}", self.prefix)
    }

    fn sig(&self, u: usize, time: u64, expire: u64) -> String {
        usersig::generate(
            &SigKey::new(KEY),
            self.app,
            &self.user(u),
            expire,
            time,
            None,
        )
    }

    /// Whether a ticket of `u` minted at `time` is revoked: Some(true/false), or None when the
    /// revocation second is not known precisely enough to tell.
    fn revoked_at(&self, u: usize, time: u64) -> Option<bool> {
        match self.revoked.get(&u) {
            None => Some(false),
            Some(&(before, _)) if time <= before => Some(true),
            Some(&(_, after)) if time > after => Some(false),
            Some(_) => None,
        }
    }

    async fn request(&mut self, s: usize, v: Value) -> Result<Value, TestCaseError> {
        let c = self.slots[s].conn.as_mut().expect("an open socket");
        let seq = c.next_seq();
        let mut v = v;
        v["seq"] = seq.into();
        c.send_json(&v).await;
        match next_event(c).await {
            Event::Data(r) if r["type"] == "response" && r["seq"] == seq => Ok(r),
            other => Err(fail(format!(
                "socket {s}: expected the response to {v}, got {other:?}"
            ))),
        }
    }

    /// Applies §8 to the model for a successful login of socket `s`; returns the evicted slots.
    fn admit(&mut self, s: usize, u: usize, platform: &'static str, iid: Option<&'static str>) {
        let mut kicked: Vec<(usize, &'static str)> = Vec::new();
        // the socket's own session: another user's is logged out, its own is updated in place
        self.slots[s].sess = None;
        let others = |w: &World, kicked: &[(usize, &str)]| -> Vec<usize> {
            (0..SOCKETS)
                .filter(|&i| i != s && !kicked.iter().any(|(k, _)| *k == i))
                .filter(|&i| w.slots[i].sess.as_ref().is_some_and(|x| x.user == u))
                .collect()
        };
        for i in others(self, &kicked) {
            let x = self.slots[i].sess.as_ref().unwrap();
            if iid.is_some() && x.platform == platform && x.iid == iid {
                kicked.push((i, "replaced"));
            }
        }
        for i in others(self, &kicked) {
            let x = self.slots[i].sess.as_ref().unwrap();
            if x.platform != platform && self.policy.same_group(x.platform, platform) {
                kicked.push((i, "multi_device"));
            }
        }
        loop {
            let same: Vec<usize> = others(self, &kicked)
                .into_iter()
                .filter(|&i| self.slots[i].sess.as_ref().unwrap().platform == platform)
                .collect();
            if same.len() < self.policy.cap(platform) {
                break;
            }
            let oldest = *same
                .iter()
                .min_by_key(|&&i| self.slots[i].sess.as_ref().unwrap().order)
                .unwrap();
            kicked.push((oldest, "multi_device"));
        }
        for (i, _) in &kicked {
            self.slots[*i].sess = None;
        }
        self.order += 1;
        self.slots[s].sess = Some(Sess {
            user: u,
            platform,
            iid,
            order: self.order,
        });
        self.pending.extend(kicked.into_iter().map(|(i, reason)| {
            (
                i,
                Expect::Kicked {
                    reason,
                    by: Some(platform),
                    close: 4501,
                },
            )
        }));
    }
}

/// What a socket received.
#[derive(Debug)]
enum Event {
    Data(Value),
    Close(u16),
    /// Closed without a close frame, or nothing within the wait.
    Gone(&'static str),
}

async fn next_event(c: &mut Client) -> Event {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        let m = match tokio::time::timeout_at(deadline, c.ws.next()).await {
            Err(_) => return Event::Gone("nothing in time"),
            Ok(m) => m,
        };
        return match m {
            Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
            Some(Ok(Message::Text(t))) => match serde_json::from_str(t.as_str()) {
                Ok(v) => Event::Data(v),
                Err(_) => Event::Gone("a frame that is not JSON"),
            },
            Some(Ok(Message::Close(Some(f)))) => Event::Close(u16::from(f.code)),
            Some(Ok(_)) => Event::Gone("an unexpected frame"),
            Some(Err(_)) | None => Event::Gone("closed without a close frame"),
        };
    }
}

fn code(r: &Value) -> i64 {
    r["code"].as_i64().unwrap_or(-1)
}

impl World<'_> {
    /// Runs one step against the gateway and the model.
    async fn step(&mut self, op: &Op) -> Step {
        match *op {
            Op::Login { s, node, u, p, iid } => {
                if self.slots[s].conn.is_none() {
                    let url = &self.gws[node % self.gws.len()].ws_url;
                    self.slots[s].conn = Some(Client::connect(url).await);
                }
                let (platform, iid) = (PLATFORMS[p], IIDS[iid]);
                let t = common::now_secs();
                let mut v = json!({
                    "type": "login", "sdk_app_id": self.app, "user_id": self.user(u),
                    "user_sig": self.sig(u, t, 86_400), "platform": platform,
                });
                if let Some(i) = iid {
                    v["instance_id"] = i.into();
                }
                let r = self.request(s, v).await?;
                match (self.revoked_at(u, t), code(&r)) {
                    (Some(false) | None, 0) => {
                        let want = json!({
                            "user_id": self.user(u), "platform": platform,
                            "instance_id": iid, "expire_at": t + 86_400,
                        });
                        prop_assert_eq!(&r["data"], &want, "login data");
                        count(&self.seen.logins);
                        match &self.slots[s].sess {
                            Some(x) if x.user == u => count(&self.seen.in_place),
                            Some(_) => count(&self.seen.switches),
                            None => {}
                        }
                        self.admit(s, u, platform, iid);
                    }
                    // a failed login changes nothing, a logged-in session stays
                    (Some(true) | None, 70052) => count(&self.seen.revoked),
                    (revoked, _) => {
                        return Err(fail(format!("login answered {r} (revoked: {revoked:?})")))
                    }
                }
            }
            Op::Logout { s } => {
                if self.slots[s].conn.is_none() {
                    return Ok(());
                }
                let r = self.request(s, json!({"type": "logout"})).await?;
                let want = if self.slots[s].sess.take().is_some() {
                    0
                } else {
                    6014
                };
                prop_assert_eq!(code(&r), want, "logout: {}", r);
            }
            Op::Refresh { s } | Op::Expire { s } => {
                if self.slots[s].conn.is_none() {
                    return Ok(());
                }
                let expire = if matches!(op, Op::Expire { .. }) {
                    1
                } else {
                    86_400
                };
                let t = common::now_secs();
                let u = self.slots[s].sess.as_ref().map_or(0, |x| x.user);
                let v = json!({"type": "refresh_sig", "user_sig": self.sig(u, t, expire)});
                let r = self.request(s, v).await?;
                if self.slots[s].sess.is_none() {
                    prop_assert_eq!(code(&r), 6014, "refresh when logged out: {}", r);
                    return Ok(());
                }
                prop_assert_eq!(code(&r), 0, "refresh: {}", r);
                prop_assert_eq!(&r["data"]["expire_at"], &json!(t + expire));
                if expire == 1 {
                    // the session ends by itself; the socket stays open and logged out
                    let c = self.slots[s].conn.as_mut().unwrap();
                    match next_event(c).await {
                        Event::Data(v) if v == json!({"type": "user_sig_expired"}) => {}
                        other => {
                            return Err(fail(format!("expected user_sig_expired, got {other:?}")))
                        }
                    }
                    self.slots[s].sess = None;
                    count(&self.seen.expired);
                }
            }
            Op::Close { s } => {
                let Some(mut c) = self.slots[s].conn.take() else {
                    return Ok(());
                };
                self.slots[s].sess = None;
                c.close().await;
                match next_event(&mut c).await {
                    Event::Close(_) | Event::Gone("closed without a close frame") => {}
                    other => return Err(fail(format!("expected the close echo, got {other:?}"))),
                }
                count(&self.seen.closes);
            }
            Op::KickUser { u } => {
                let body = json!({"sdk_app_id": self.app, "user_id": self.user(u)});
                let before = common::now_secs();
                let (status, r) = self.gws[u % self.gws.len()]
                    .admin_post("/v1/kick", &body)
                    .await;
                let after = common::now_secs();
                self.revoked.insert(u, (before, after));
                self.admin_kicked(status, &r, |x| x.user == u)?;
            }
            Op::KickDevice { u, p, iid } => {
                let mut body = json!({"sdk_app_id": self.app, "user_id": self.user(u)});
                let platform = p.map(|p| PLATFORMS[p]);
                let iid = iid.and_then(|i| IIDS[i]);
                if let Some(p) = platform {
                    body["platform"] = p.into();
                }
                if let Some(i) = iid {
                    body["instance_id"] = i.into();
                }
                let (status, r) = self.gws[u % self.gws.len()]
                    .admin_post("/v1/kick", &body)
                    .await;
                self.admin_kicked(status, &r, |x| {
                    x.user == u
                        && platform.is_none_or(|p| p == x.platform)
                        && iid.is_none_or(|i| x.iid == Some(i))
                })?;
            }
            Op::Send { s, to } => {
                if self.slots[s].conn.is_none() {
                    return Ok(());
                }
                let payload = format!("p{}", self.order);
                let v = json!({"type": "send", "to": self.user(to), "payload": payload});
                let r = self.request(s, v).await?;
                let Some(from) = self.slots[s].sess.clone() else {
                    prop_assert_eq!(code(&r), 6014, "send when logged out: {}", r);
                    return Ok(());
                };
                let to_sockets: Vec<usize> = (0..SOCKETS)
                    .filter(|&i| i != s)
                    .filter(|&i| self.slots[i].sess.as_ref().is_some_and(|x| x.user == to))
                    .collect();
                prop_assert_eq!(code(&r), 0, "send: {}", r);
                prop_assert_eq!(&r["data"], &json!({"delivered": to_sockets.len()}), "send");
                for i in to_sockets {
                    self.pending.push((
                        i,
                        Expect::Message {
                            from: from.user,
                            platform: from.platform,
                            payload: payload.clone(),
                        },
                    ));
                }
            }
            Op::Status { s } => {
                if self.slots[s].conn.is_none() {
                    return Ok(());
                }
                let r = self.request(s, json!({"type": "get_login_status"})).await?;
                let status = if self.slots[s].sess.is_some() { 1 } else { 3 };
                prop_assert_eq!(&r["data"], &json!({"status": status}), "status: {}", r);
                let r = self.request(s, json!({"type": "get_login_user"})).await?;
                let user = self.slots[s]
                    .sess
                    .as_ref()
                    .map_or(String::new(), |x| self.user(x.user));
                prop_assert_eq!(&r["data"], &json!({"user_id": user}), "login user: {}", r);
            }
        }
        Ok(())
    }

    /// The model's side of an admin kick: the matching sessions are told `admin` and closed 4502.
    fn admin_kicked(&mut self, status: u16, r: &Value, matches: impl Fn(&Sess) -> bool) -> Step {
        let victims: Vec<usize> = (0..SOCKETS)
            .filter(|&i| self.slots[i].sess.as_ref().is_some_and(&matches))
            .collect();
        prop_assert_eq!(status, 200, "kick: {}", r);
        prop_assert_eq!(r, &json!({"kicked": victims.len()}), "kick count");
        for i in victims {
            self.slots[i].sess = None;
            self.pending.push((
                i,
                Expect::Kicked {
                    reason: "admin",
                    by: None,
                    close: 4502,
                },
            ));
        }
        Ok(())
    }

    /// After a step: every expected event arrived (and a kicked socket then closed), no open
    /// socket got anything else, and `/v1/online` equals the model.
    async fn settle(&mut self) -> Step {
        for (i, want) in std::mem::take(&mut self.pending) {
            let c = self.slots[i]
                .conn
                .as_mut()
                .expect("expected events go to open sockets");
            let got = next_event(c).await;
            match want {
                Expect::Kicked { reason, by, close } => {
                    let push =
                        json!({"type": "kicked_offline", "reason": reason, "by_platform": by});
                    match got {
                        Event::Data(v) if v == push => {}
                        other => {
                            return Err(fail(format!("socket {i}: expected {push}, got {other:?}")))
                        }
                    }
                    count(match reason {
                        "replaced" => &self.seen.replaced,
                        "admin" => &self.seen.admin,
                        _ => &self.seen.multi_device,
                    });
                    match next_event(c).await {
                        Event::Close(code) if code == close => {}
                        other => {
                            return Err(fail(format!(
                                "socket {i}: expected close {close} after the kick, got {other:?}"
                            )))
                        }
                    }
                    self.slots[i].conn = None;
                }
                Expect::Message {
                    from,
                    platform,
                    payload,
                } => {
                    let push = json!({
                        "type": "message", "from": self.user(from),
                        "from_platform": platform, "payload": payload,
                    });
                    match got {
                        Event::Data(v) if v == push => {}
                        other => {
                            return Err(fail(format!("socket {i}: expected {push}, got {other:?}")))
                        }
                    }
                    count(&self.seen.messages);
                }
            }
        }
        // the barrier: a ping's response is the next thing every open socket receives
        for i in 0..SOCKETS {
            if self.slots[i].conn.is_some() {
                let r = self.request(i, json!({"type": "ping"})).await?;
                prop_assert_eq!(code(&r), 0, "ping: {}", r);
            }
        }
        self.check_online().await
    }

    /// The model's presence: per user, the sorted (platform, instance id) of its sessions.
    fn model_online(&self) -> Vec<Vec<(String, Option<String>)>> {
        (0..USERS)
            .map(|u| {
                let mut v: Vec<_> = self
                    .slots
                    .iter()
                    .filter_map(|s| s.sess.as_ref())
                    .filter(|x| x.user == u)
                    .map(|x| (x.platform.to_owned(), x.iid.map(str::to_owned)))
                    .collect();
                v.sort();
                v
            })
            .collect()
    }

    /// `/v1/online` for the case's users (polled for a bounded time: a close leaves the store
    /// asynchronously), checked against the model and, on its own, against the policy.
    async fn check_online(&self) -> Step {
        let want = self.model_online();
        let query: String = (0..USERS)
            .map(|u| format!("&user_id={}", self.user(u)))
            .collect();
        let path = format!("/v1/online?sdk_app_id={}{query}", self.app);
        let mut got = Vec::new();
        for attempt in 0..100 {
            let gw = &self.gws[attempt % self.gws.len()];
            let (status, r) = gw.admin_get(&path).await;
            prop_assert_eq!(status, 200, "online: {}", r);
            got = r["users"]
                .as_array()
                .expect("users")
                .iter()
                .map(|u| {
                    let mut v: Vec<(String, Option<String>)> = u["instances"]
                        .as_array()
                        .expect("instances")
                        .iter()
                        .map(|i| {
                            (
                                i["platform"].as_str().unwrap().to_owned(),
                                i["instance_id"].as_str().map(str::to_owned),
                            )
                        })
                        .collect();
                    v.sort();
                    v
                })
                .collect::<Vec<_>>();
            for (u, instances) in got.iter().enumerate() {
                for (a, (pa, _)) in instances.iter().enumerate() {
                    let on_p = instances.iter().filter(|(p, _)| p == pa).count();
                    prop_assert!(
                        on_p <= self.policy.cap(pa),
                        "user {u}: {on_p} instances on {pa}: {instances:?}"
                    );
                    for (pb, _) in &instances[a + 1..] {
                        prop_assert!(
                            pa == pb || !self.policy.same_group(pa, pb),
                            "user {u}: {pa} and {pb} online together"
                        );
                    }
                }
            }
            if got == want {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        Err(fail(format!("online {got:?}, the model says {want:?}")))
    }

    /// Closes every socket; then nobody of the case is online.
    async fn finish(&mut self) -> Step {
        for i in 0..SOCKETS {
            if let Some(mut c) = self.slots[i].conn.take() {
                c.close().await;
            }
            self.slots[i].sess = None;
        }
        self.check_online().await
    }
}

fn run_case(gws: &[Gateway], seen: &Seen, label: &str, policy: usize, ops: &[Op]) -> Step {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut w = World {
            gws,
            app: BASE_APP + policy as u64,
            policy: &POLICIES[policy],
            prefix: format!("{label}{n}"),
            slots: (0..SOCKETS)
                .map(|_| Slot {
                    conn: None,
                    sess: None,
                })
                .collect(),
            order: 0,
            revoked: BTreeMap::new(),
            pending: Vec::new(),
            seen,
        };
        for (k, op) in ops.iter().enumerate() {
            count(&w.seen.steps);
            let r = match w.step(op).await {
                Ok(()) => w.settle().await,
                e => e,
            };
            r.map_err(|e| fail(format!("step {k} ({op:?}): {e}")))?;
        }
        w.finish().await
    })
}

fn run_model(gws: &[Gateway], label: &str) {
    let seed: u64 = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(imgate::clock::now_ms);
    let cases: u32 = std::env::var("MODEL_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    println!("model {label}: MODEL_SEED={seed} MODEL_CASES={cases}");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        max_shrink_iters: 300,
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..Config::default()
    };
    let seen = Seen::default();
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    if let Err(e) = runner.run(&case(), |(policy, ops)| {
        run_case(gws, &seen, label, policy, &ops)
    }) {
        panic!("model {label} failed (replay: MODEL_SEED={seed} MODEL_CASES={cases}): {e}");
    }
    println!("model {label}: exercised {seen:?}");
}

#[test]
fn model_embedded() {
    let gw = Gateway::start_with(&test_config());
    run_model(&[gw], "e");
}

/// Two nodes on one Redis: each login opens its socket on either node, admin calls and presence
/// queries alternate between them.
#[test]
fn model_cluster() {
    let redis = RedisServer::start();
    let gws: Vec<Gateway> = (1..=2)
        .map(|n| {
            Gateway::start_with(&format!(
                "{}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"model-{n}\"\nlease_ms = 2000\n\
                 heartbeat_ms = 500\nreconcile_secs = 1\nredis_timeout_ms = 500\n",
                test_config(),
                redis.url()
            ))
        })
        .collect();
    run_model(&gws, "r");
    drop(gws);
    drop(redis);
}
