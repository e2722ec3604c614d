//! Session state machines against the embedded presence store: arbitrary sequences of socket opens,
//! requests (login of u0..u3 on any platform with valid, foreign, expired, wrongly keyed or garbage
//! UserSigs; logout, refresh_sig, send, ping, status), admin kicks by platform, outbox deliveries and
//! closes, on up to four sockets, across three apps (dual, single and multi policies). Every step is
//! what a socket task does (`src/conn.rs`): the outbox is drained and applied before each request,
//! an outbox that overflowed or an `Action::Close` closes the socket (`on_close`, `close_conn`).
//!
//! Invariants, checked after every step:
//! - the embedded store answers at once (a `Step::Wait` future is ready at its first poll);
//! - every registered session belongs to an open socket of this input that believes it is logged
//!   in, and no socket has two;
//! - a socket that believes it is logged in is registered, or a Kick / AppRemoved for it is queued;
//! - after every socket closed, the registry holds nothing.
#![no_main]

use imgate::apps::Apps;
use imgate::config::Config;
use imgate::conns::Conns;
use imgate::edge::limits::PerIp;
use imgate::edge::Edge;
use imgate::gateway::{Gateway, Parts};
use imgate::metrics::Metrics;
use imgate::outbox::{Event, Outbox};
use imgate::presence::embedded::Embedded;
use imgate::presence::{KickFilter, Presence};
use imgate::session::{Action, Ctx, Ended, Session, Step};
use imgate::webhook::Webhooks;
use imgate_proto::{ClientMsg, Encoding, Platform, ALL_PLATFORMS};
use imgate_usersig::{generate, SigKey};
use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

const APPS: [u64; 3] = [1_400_000_000, 1_400_000_001, 1_400_000_002];
const UNKNOWN_APP: u64 = 1_400_000_009;
const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const SLOTS: usize = 4;

const CONFIG: &str = r#"
# the per-socket rate budgets depend on the clock: off, so an input replays the same way
max_requests_per_sec = 0
max_frames_per_sec = 0
[throttle]
max_failures = 1000000000
max_failures_per_ip = 0
max_keys = 1000

[[app]]
sdk_app_id = 1400000000
key = "k"

[[app]]
sdk_app_id = 1400000001
key = "k"
policy = "single"

[[app]]
sdk_app_id = 1400000002
key = "k"
policy = "multi"
[app.max_instances]
web = 2
android = 2
"#;

struct World {
    gw: Gateway,
    cfg: Arc<Config>,
    embedded: Arc<Embedded>,
    /// [app][user]: a valid UserSig, an expired one, one signed with another key.
    valid: Vec<Vec<String>>,
    expired: Vec<Vec<String>>,
    wrong_key: Vec<Vec<String>>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let config = Config::parse(CONFIG, "session-fuzz.toml").expect("the fuzz config parses");
        let metrics = Arc::new(Metrics::new(&APPS, false));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        std::mem::forget(stop); // the webhooks never stop (and there are none)
        let webhooks = Arc::new(Webhooks::start(&[], Arc::clone(&metrics), stop_rx));
        let conns = Arc::new(Conns::new(metrics.connections.clone()));
        let apps = Arc::new(Apps::new(&config.apps, &config.throttle));
        let embedded = Arc::new(Embedded::new(Arc::clone(&metrics)));
        let presence: Arc<dyn Presence> = embedded.clone();
        let cfg = Arc::new(config.clone());
        let gw = Gateway::new(Parts {
            config,
            edge: Edge {
                tls: None,
                per_ip: PerIp::new(),
                pending: imgate::edge::limits::Pending::new(Default::default()),
            },
            apps,
            presence,
            metrics,
            webhooks,
            conns,
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (k, other) = (SigKey::new("k"), SigKey::new("not-k"));
        let mint = |key: &SigKey, time: u64, expire: u64| -> Vec<Vec<String>> {
            APPS.iter()
                .map(|&a| {
                    USERS
                        .iter()
                        .map(|u| generate(key, a, u, expire, time, None))
                        .collect()
                })
                .collect()
        };
        World {
            valid: mint(&k, now - 10, 10 * 365 * 86400),
            expired: mint(&k, now - 1000, 100),
            wrong_key: mint(&other, now - 10, 86400),
            gw,
            cfg,
            embedded,
        }
    })
}

struct Sock {
    outbox: Arc<Outbox>,
    session: Session,
    /// Taken from the outbox, not yet applied.
    pending: Vec<Event>,
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
}

fn ctx<'a>(w: &'a World, outbox: &'a Arc<Outbox>) -> Ctx<'a> {
    Ctx {
        gw: &w.gw,
        cfg: &w.cfg,
        outbox,
    }
}

/// Polls a store future once: the embedded store never waits.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an embedded store future was pending"),
    }
}

/// The socket ends (as `conn.rs` does after its loop).
fn close(w: &World, slots: &mut [Option<Sock>], i: usize, ended: Ended) {
    if let Some(mut s) = slots[i].take() {
        s.session.on_close(ctx(w, &s.outbox), ended);
        w.gw.close_conn(&s.outbox);
        assert!(!s.session.is_logged_in(), "a closed socket is still logged in");
    }
}

/// Takes what is queued into `pending`; false when the outbox overflowed (the socket closes 4003).
fn take(s: &mut Sock) -> bool {
    !s.outbox.take(&mut s.pending)
}

/// Applies the socket's events in order; true when the socket must close.
fn apply(w: &World, s: &mut Sock) -> bool {
    let events = std::mem::take(&mut s.pending);
    for ev in events {
        match s.session.on_event(ctx(w, &s.outbox), ev) {
            Action::None => {}
            Action::Push { logged_out, .. } => {
                if logged_out {
                    assert!(!s.session.is_logged_in(), "logged_out push but still logged in");
                }
            }
            Action::Close(..) => return true,
        }
    }
    false
}

/// Drains and applies a socket's outbox; closes it when it must.
fn deliver(w: &World, slots: &mut [Option<Sock>], i: usize) {
    let Some(s) = slots[i].as_mut() else { return };
    let close_it = !take(s) || apply(w, s);
    if close_it {
        close(w, slots, i, Ended::LinkClose);
    }
}

fn check(w: &World, slots: &mut [Option<Sock>]) {
    // What is queued now is pending (kept in order for the next delivery).
    for i in 0..SLOTS {
        if let Some(s) = slots[i].as_mut() {
            if !take(s) {
                close(w, slots, i, Ended::LinkClose);
            }
        }
    }
    let mut registered = [0usize; SLOTS];
    for (app, user, inst) in w.embedded.registry().snapshot() {
        let id = inst.conn.id();
        let Some(i) = slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.outbox.id() == id))
        else {
            panic!("session {app}/{user} of conn {id} is registered without an open socket");
        };
        let s = slots[i].as_ref().unwrap();
        assert!(
            s.session.is_logged_in(),
            "session {app}/{user} of conn {id} is registered but its socket is logged out"
        );
        registered[i] += 1;
        assert!(registered[i] == 1, "conn {id} has two registered sessions");
    }
    for (i, s) in slots.iter().enumerate() {
        let Some(s) = s else { continue };
        if s.session.is_logged_in() && registered[i] == 0 {
            let kick = s
                .pending
                .iter()
                .any(|e| matches!(e, Event::Kick { .. } | Event::AppRemoved { .. }));
            assert!(
                kick,
                "conn {} believes it is logged in, is not registered, and has no kick queued",
                s.outbox.id()
            );
        }
    }
}

fn platform_name(b: u8) -> String {
    match ALL_PLATFORMS.get(usize::from(b % 8)) {
        Some(p) => p.as_str().to_owned(),
        None => "toaster".to_owned(),
    }
}

fn sig(w: &World, app: usize, user: usize, kind: u8) -> String {
    let (a, u) = (app.min(APPS.len() - 1), user);
    match kind % 8 {
        0..=2 => w.valid[a][u].clone(),
        3 => w.valid[a][(u + 1) % USERS.len()].clone(), // another user's
        4 => w.expired[a][u].clone(),
        5 => w.wrong_key[a][u].clone(),
        6 => w.valid[(a + 1) % APPS.len()][u].clone(), // another app's
        _ => "eJyrVkrLz1eyUkpKLFKqBQAdNgRV".to_owned(),
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let mut slots: [Option<Sock>; SLOTS] = [None, None, None, None];
    let mut input = Bytes(data);
    let mut seq = 0u64;
    let mut steps = 0;
    while let Some(op) = input.next() {
        steps += 1;
        if steps > 64 {
            break;
        }
        let i = usize::from(op & 3);
        let kind = op >> 2;
        seq += 1;
        let msg = match kind % 12 {
            0 => {
                if slots[i].is_none() {
                    let ip = IpAddr::from([10, 0, 0, i as u8 + 1]);
                    slots[i] = Some(Sock {
                        outbox: w.gw.open_conn(ip, &w.cfg),
                        session: Session::new(0),
                        pending: Vec::new(),
                    });
                }
                None
            }
            1 | 2 => {
                let a = input.next().unwrap_or(0);
                let b = input.next().unwrap_or(0);
                let app = usize::from(a & 3);
                let user = usize::from((a >> 2) & 3);
                let instance_id = match b >> 4 & 3 {
                    0 | 1 => None,
                    2 => Some(format!("i{}", b >> 6)),
                    _ => Some("bad id".to_owned()),
                };
                Some(ClientMsg::Login {
                    seq,
                    sdk_app_id: APPS.get(app).copied().unwrap_or(UNKNOWN_APP),
                    user_id: USERS[user].to_owned(),
                    user_sig: sig(w, app, user, b),
                    platform: platform_name(a >> 4),
                    instance_id,
                })
            }
            3 => Some(ClientMsg::Logout { seq }),
            4 => {
                let a = input.next().unwrap_or(0);
                Some(ClientMsg::RefreshSig {
                    seq,
                    user_sig: sig(w, usize::from(a & 3), usize::from((a >> 2) & 3), a >> 4),
                })
            }
            5 => {
                let a = input.next().unwrap_or(0);
                Some(ClientMsg::Send {
                    seq,
                    to: USERS[usize::from(a & 3)].to_owned(),
                    payload: "x".repeat(usize::from(a >> 2)),
                })
            }
            6 => Some(match kind / 12 {
                0 => ClientMsg::Ping { seq },
                1 => ClientMsg::GetLoginStatus { seq },
                _ => ClientMsg::GetLoginUser { seq },
            }),
            7 | 8 => {
                deliver(w, &mut slots, i);
                None
            }
            9 => {
                let ended = if kind / 12 == 0 {
                    Ended::TimeOut
                } else {
                    Ended::LinkClose
                };
                close(w, &mut slots, i, ended);
                None
            }
            10 => {
                // Admin kick of one platform (never the whole user: that revokes its UserSigs
                // for the rest of the process).
                let a = input.next().unwrap_or(0);
                let app = APPS[usize::from(a & 3) % APPS.len()];
                let user = USERS[usize::from((a >> 2) & 3)];
                let platform: Platform = ALL_PLATFORMS[usize::from(a >> 4) % ALL_PLATFORMS.len()];
                let which = KickFilter {
                    platform: Some(platform),
                    instance_id: None,
                };
                let _ = ready(w.gw.presence.kick(app, user, which));
                None
            }
            _ => {
                // A Shutdown event: the socket closes 1001.
                if let Some(s) = &slots[i] {
                    s.outbox.push(Event::Shutdown);
                }
                None
            }
        };
        if let Some(msg) = msg {
            let enc = if op & 0x80 == 0 {
                Encoding::Json
            } else {
                Encoding::Bincode
            };
            // As the socket task does: what was queued first takes effect first.
            if let Some(s) = slots[i].as_mut() {
                if !take(s) || apply(w, s) {
                    close(w, &mut slots, i, Ended::LinkClose);
                }
            }
            if let Some(s) = slots[i].as_mut() {
                let was_logged_in = s.session.is_logged_in();
                let is_login = matches!(msg, ClientMsg::Login { .. });
                let reply = match s.session.handle(ctx(w, &s.outbox), msg, enc) {
                    Step::Done(r) => r,
                    Step::Wait(fut) => ready(fut),
                };
                if reply.logged_out {
                    assert!(!s.session.is_logged_in(), "logged_out reply but still logged in");
                }
                if let Some(m) = &reply.msg {
                    let ok = matches!(m, imgate_proto::ServerMsg::Response { code: 0, .. });
                    if is_login && ok {
                        assert!(s.session.is_logged_in(), "login answered ok but logged out");
                    }
                    if !is_login && !reply.logged_out {
                        assert_eq!(
                            s.session.is_logged_in(),
                            was_logged_in,
                            "a non-login request changed the login state"
                        );
                    }
                } else {
                    assert!(is_login, "only a superseded login goes unanswered");
                }
            }
        }
        check(w, &mut slots);
    }
    for i in 0..SLOTS {
        deliver(w, &mut slots, i);
    }
    check(w, &mut slots);
    for i in 0..SLOTS {
        close(w, &mut slots, i, Ended::LinkClose);
    }
    let left = w.embedded.registry().snapshot();
    assert!(left.is_empty(), "sessions left after every socket closed: {left:?}");
});
