//! The clients: each a task that, driven by its own seeded generator, opens sockets on random nodes
//! and logs the same small set of users in on random platforms and instance ids, holds, logs in
//! again in place, switches user, logs out, closes or drops the socket, until the chaos ends; then
//! it holds whatever it has open until the check is done.
//!
//! What it owns: every socket's log (each request sent, each response, push and close, with the
//! time it was seen) for the checker, and the client's view of which sockets are open and logged in
//! as whom ([`Views`]), which the checker compares with the cluster's presence.
//! The decisions are drawn in a fixed order whatever the outcomes, so a seed fixes each client's
//! sequence of choices; what a choice meets (a kick, a frozen node) depends on timing.

use crate::cluster::{now_ms, Node, APP};
use crate::policy::PLATFORMS;
use crate::schedule;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a client waits for a response before it gives the request (and the socket) up: longer
/// than the longest node stop plus Redis timeouts, so only a killed node leaves one unanswered.
pub const ANSWER_WAIT: Duration = Duration::from_secs(20);
/// How long a connect and upgrade may take (a frozen node answers after it wakes).
const CONNECT_WAIT: Duration = Duration::from_secs(15);

/// What a socket saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// The WebSocket is up.
    Connected,
    Login {
        seq: u64,
        user: String,
        platform: String,
        iid: Option<String>,
    },
    Logout {
        seq: u64,
    },
    Response {
        seq: u64,
        code: u32,
    },
    Kicked {
        reason: String,
        by: Option<String>,
    },
    /// Any other push (none is expected).
    Push(String),
    /// The server closed the socket: its close code, or None (no close frame: the connection died).
    Closed(Option<u16>),
    /// The client gave up waiting for this request and dropped the socket.
    Unanswered {
        seq: u64,
    },
    /// A kicked socket was not closed by the server within [`ANSWER_WAIT`]; the client dropped it.
    NoCloseAfterKick,
    /// The client closed the socket (close frame 1000).
    ClientClose,
    /// The client dropped the TCP connection without a close frame.
    ClientDrop,
}

/// One socket's history.
#[derive(Debug, Clone)]
pub struct SocketLog {
    pub id: u64,
    pub node: usize,
    /// Which process of that node it was connected to.
    pub generation: usize,
    /// (ms since the epoch, event)
    pub events: Vec<(u64, Ev)>,
}

/// One open, logged-in socket as its client sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct View {
    pub user: String,
    pub platform: String,
    pub iid: Option<String>,
    pub node: usize,
    /// Which process of that node holds the socket.
    pub generation: usize,
}

/// Every open logged-in socket, by socket id.
pub type Views = Arc<Mutex<BTreeMap<u64, View>>>;

/// What every client shares.
pub struct Ctx {
    pub seed: u64,
    pub nodes: Arc<Vec<Node>>,
    pub users: Vec<String>,
    /// A UserSig per user, minted before the clock starts.
    pub sigs: BTreeMap<String, String>,
    /// When clients stop acting and start holding.
    pub act_until: Instant,
    pub views: Views,
    pub next_socket: std::sync::atomic::AtomicU64,
    /// Clients that finished acting.
    pub holding: std::sync::atomic::AtomicUsize,
    pub connect_failures: std::sync::atomic::AtomicU64,
    /// Presence entries Redis held at the last look of the check.
    pub stored_at_end: std::sync::atomic::AtomicUsize,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Sock {
    ws: Ws,
    log: SocketLog,
    seq: u64,
    /// As the client believes: logged in as (user, platform, iid).
    session: Option<(String, String, Option<String>)>,
    kicked: bool,
    closed: bool,
}

impl Sock {
    fn push(&mut self, ev: Ev) {
        self.log.events.push((now_ms(), ev));
    }

    fn set_view(&self, ctx: &Ctx) {
        let mut v = ctx.views.lock().unwrap_or_else(|e| e.into_inner());
        match (&self.session, self.closed) {
            (Some((user, platform, iid)), false) => {
                v.insert(
                    self.log.id,
                    View {
                        user: user.clone(),
                        platform: platform.clone(),
                        iid: iid.clone(),
                        node: self.log.node,
                        generation: self.log.generation,
                    },
                );
            }
            _ => {
                v.remove(&self.log.id);
            }
        }
    }

    /// Reads frames until `until`, or until the response to `want` (returns its code), or the close.
    async fn pump(&mut self, ctx: &Ctx, until: Instant, want: Option<u64>) -> Option<u32> {
        while !self.closed {
            let frame = match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) => return None,
                Ok(f) => f,
            };
            match frame {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    match v["type"].as_str() {
                        Some("response") => {
                            let seq = v["seq"].as_u64().unwrap_or(0);
                            let code = v["code"].as_u64().unwrap_or(u64::MAX) as u32;
                            self.push(Ev::Response { seq, code });
                            if Some(seq) == want {
                                return Some(code);
                            }
                        }
                        Some("kicked_offline") => {
                            self.push(Ev::Kicked {
                                reason: v["reason"].as_str().unwrap_or("?").to_owned(),
                                by: v["by_platform"].as_str().map(str::to_owned),
                            });
                            self.session = None;
                            self.kicked = true;
                            self.set_view(ctx);
                        }
                        other => self.push(Ev::Push(other.unwrap_or("?").to_owned())),
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    self.push(Ev::Closed(Some(f.map_or(1005, |f| u16::from(f.code)))));
                    self.close_state(ctx);
                }
                Some(Ok(_)) => {} // pings (answered by tungstenite), pongs, binary
                Some(Err(_)) | None => {
                    self.push(Ev::Closed(None));
                    self.close_state(ctx);
                }
            }
        }
        None
    }

    fn close_state(&mut self, ctx: &Ctx) {
        self.closed = true;
        self.session = None;
        self.set_view(ctx);
    }

    async fn send(&mut self, v: Value) -> bool {
        matches!(
            tokio::time::timeout(ANSWER_WAIT, self.ws.send(Message::text(v.to_string()))).await,
            Ok(Ok(()))
        )
    }

    /// Sends a request and waits for its answer; None: no answer (closed, or given up: then the
    /// socket is dropped).
    async fn request(&mut self, ctx: &Ctx, mut v: Value, ev: Ev) -> Option<u32> {
        let seq = match ev {
            Ev::Login { seq, .. } | Ev::Logout { seq } => seq,
            _ => unreachable!("only logins and logouts are requests here"),
        };
        v["seq"] = seq.into();
        self.push(ev);
        if !self.send(v).await {
            // The connection is gone: what the server said last is still to be read.
            let _ = self
                .pump(ctx, Instant::now() + Duration::from_secs(2), None)
                .await;
            if !self.closed {
                self.push(Ev::Unanswered { seq });
                self.close_state(ctx);
            }
            return None;
        }
        let code = self
            .pump(ctx, Instant::now() + ANSWER_WAIT, Some(seq))
            .await;
        if code.is_none() && !self.closed {
            self.push(Ev::Unanswered { seq });
            self.close_state(ctx);
        }
        code
    }

    async fn login(
        &mut self,
        ctx: &Ctx,
        user: &str,
        platform: &'static str,
        iid: Option<String>,
    ) -> Option<u32> {
        self.seq += 1;
        let mut v = json!({
            "type": "login", "sdk_app_id": APP, "user_id": user,
            "user_sig": ctx.sigs[user], "platform": platform,
        });
        if let Some(i) = &iid {
            v["instance_id"] = i.as_str().into();
        }
        let ev = Ev::Login {
            seq: self.seq,
            user: user.to_owned(),
            platform: platform.to_owned(),
            iid: iid.clone(),
        };
        let code = self.request(ctx, v, ev).await;
        if code == Some(0) && !self.closed {
            self.session = Some((user.to_owned(), platform.to_owned(), iid));
            self.set_view(ctx);
        }
        code
    }

    async fn logout(&mut self, ctx: &Ctx) -> Option<u32> {
        self.seq += 1;
        let code = self
            .request(ctx, json!({"type": "logout"}), Ev::Logout { seq: self.seq })
            .await;
        if code == Some(0) {
            self.session = None;
            self.set_view(ctx);
        }
        code
    }
}

/// Opens a socket on `node` (or the next one up).
async fn connect(ctx: &Ctx, first: usize) -> Option<Sock> {
    let n = ctx.nodes.len();
    for k in 0..n {
        let node = (first + k) % n;
        let Some(ep) = ctx.nodes[node].endpoint() else {
            ctx.connect_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        match tokio::time::timeout(CONNECT_WAIT, tokio_tungstenite::connect_async(&ep.ws_url)).await
        {
            Ok(Ok((ws, _))) => {
                let id = ctx
                    .next_socket
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut s = Sock {
                    ws,
                    log: SocketLog {
                        id,
                        node,
                        generation: ep.generation,
                        events: Vec::new(),
                    },
                    seq: 0,
                    session: None,
                    kicked: false,
                    closed: false,
                };
                s.push(Ev::Connected);
                return Some(s);
            }
            _ => {
                ctx.connect_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    None
}

/// One decision of a client: every field is drawn, every time, whether it is used or not.
struct Draw {
    action: u32,
    node: usize,
    user: usize,
    platform: &'static str,
    iid: Option<String>,
    hold: Duration,
}

fn draw(r: &mut rand_chacha::ChaCha8Rng, nodes: usize, users: usize) -> Draw {
    const WEIGHTS: [u32; 7] = [12, 12, 10, 12, 14, 10, 30];
    let action = r.random_range(0..100);
    let node = r.random_range(0..nodes);
    let user = r.random_range(0..users);
    let mut w = r.random_range(0..WEIGHTS.iter().sum::<u32>());
    let mut platform = PLATFORMS[0];
    for (p, pw) in PLATFORMS.iter().zip(WEIGHTS) {
        if w < pw {
            platform = p;
            break;
        }
        w -= pw;
    }
    let k = r.random_range(0..4u32);
    let iid = match (platform, k) {
        (_, 0) => None,
        ("web", k) => Some(format!("tab-{k}")),
        (_, k) => Some(format!("dev-{}", k.min(2))),
    };
    let hold = Duration::from_millis(r.random_range(20..1_500));
    Draw {
        action,
        node,
        user,
        platform,
        iid,
        hold,
    }
}

/// One client, from the first decision to the end of the check; returns its sockets' logs.
pub async fn run(ctx: Arc<Ctx>, index: usize, mut done: watch::Receiver<bool>) -> Vec<SocketLog> {
    let mut r = schedule::rng(ctx.seed, schedule::client_stream(index));
    let mut logs = Vec::new();
    let mut sock: Option<Sock> = None;
    let n_nodes = ctx.nodes.len();
    while Instant::now() < ctx.act_until {
        let d = draw(&mut r, n_nodes, ctx.users.len());
        let user = ctx.users[d.user].clone();
        if let Some(s) = sock.as_mut().filter(|s| s.kicked && !s.closed) {
            // A kicked socket is closed by the server next: wait for that before anything else.
            s.pump(&ctx, Instant::now() + ANSWER_WAIT, None).await;
            if !s.closed {
                s.push(Ev::NoCloseAfterKick);
                s.close_state(&ctx);
            }
        }
        if sock.as_ref().is_some_and(|s| s.closed) {
            logs.push(sock.take().expect("checked").log);
        }
        match sock.as_mut() {
            None => {
                let Some(mut s) = connect(&ctx, d.node).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                s.login(&ctx, &user, d.platform, d.iid).await;
                sock = Some(s);
            }
            Some(s) if s.session.is_none() => {
                if d.action < 85 {
                    s.login(&ctx, &user, d.platform, d.iid).await;
                } else {
                    let _ = s.ws.close(None).await;
                    s.push(Ev::ClientClose);
                    s.close_state(&ctx);
                }
            }
            Some(s) => {
                let me = s.session.as_ref().map(|(u, ..)| u.clone()).expect("in");
                match d.action {
                    0..=44 => {}
                    45..=56 => {
                        s.login(&ctx, &me, d.platform, d.iid).await;
                    }
                    57..=61 => {
                        s.login(&ctx, &user, d.platform, d.iid).await;
                    }
                    62..=71 => {
                        s.logout(&ctx).await;
                    }
                    72..=91 => {
                        // Whatever the server still sends before our close frame is recorded.
                        let _ = s.ws.close(None).await;
                        s.push(Ev::ClientClose);
                        s.close_state(&ctx);
                    }
                    _ => {
                        s.push(Ev::ClientDrop);
                        s.close_state(&ctx);
                    }
                }
            }
        }
        if let Some(s) = sock.as_mut() {
            if !s.closed {
                let until = Instant::now() + d.hold;
                s.pump(&ctx, until, None).await;
            }
        }
    }
    ctx.holding
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // Hold what is open, recording what arrives, until the check is done.
    if let Some(s) = sock.as_mut() {
        while !s.closed && !*done.borrow() {
            tokio::select! {
                _ = s.pump(&ctx, Instant::now() + Duration::from_secs(3600), None) => {}
                _ = done.changed() => break,
            }
        }
    }
    if let Some(s) = sock {
        logs.push(s.log);
    }
    logs
}
