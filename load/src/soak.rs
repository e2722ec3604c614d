//! `imgate load --mode soak`: hours of a day's traffic in minutes, every outcome checked.
//!
//! What it owns: a population of `--users` users, each with two slots under the `dual` policy (one
//! native device of android/iphone/ipad/windows/mac/linux, one web tab: contract §8 with the default
//! caps of 1), filled up to `--sessions` sockets at `--concurrency`, then churned for `--secs` at
//! about `--rate` operations per second by `--workers` tasks: logins into free slots, logins that
//! take an occupied slot (the old socket must read `kicked_offline` `multi_device` or `replaced` and
//! close 4501), logins with short tickets (`--short-min`..`--short-max` s: `user_sig_expired` no later
//! than 1.5 s after `expire_at`, then status 3 on the open socket), client closes (echo 1000), dropped
//! sockets (a reset, no close frame; the session must leave `/v1/online`), logouts, `send` between
//! users and `/v1/push` (`delivered` = the recipient's sockets, each of which must read the message),
//! admin kicks of one device and of a whole user (4502; the user's older UserSigs then answer 70052).
//! Then every client leaves, and the run checks that `/v1/online` lists nobody and the `/metrics`
//! gauges are back to 0.
//!
//! Every outcome is counted as expected (by kind) or unexpected (by what was seen instead); the run
//! fails on any unexpected one. One user is worked on by one operation at a time (a lock per user,
//! taken with `try_lock`), so that what the gateway must answer is known exactly: the model of who
//! holds which slot is the user's, and no two operations race on it.
//!
//! What it does not own: the gateway's memory, which `scripts/soak.sh` samples from outside.

use super::*;
use imgate_proto::{KickReason, Platform, ResponseData};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex, OwnedMutexGuard};

/// The platforms of the `dual` policy's native group (slot 0); slot 1 is web.
const NATIVE: [Platform; 6] = [
    Platform::Android,
    Platform::Iphone,
    Platform::Ipad,
    Platform::Windows,
    Platform::Mac,
    Platform::Linux,
];
/// How long a kick, a close echo or a message push may take to arrive before it counts as missing.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// How long a dropped socket's session may stay in `/v1/online` (it should leave at once).
const DROP_WAIT: Duration = Duration::from_secs(5);
/// Instance ids per user and slot: small, so that a takeover sometimes has the same id (`replaced`).
const INSTANCES: u64 = 3;
/// Users tried for a free slot when the open sockets are short of the target.
const FREE_SLOT_TRIES: usize = 8;

/// A small seeded generator (splitmix64): the same `--seed` gives the same choices per worker.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `percent` / 100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One outcome, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// What the contract says must happen, by kind (`login`, `kick multi_device`, `expiry`, ...).
    Expected(&'static str),
    /// Anything else, described.
    Unexpected(String),
}

/// What a socket about to be kicked must see: the push, then the close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KickWant {
    pub(crate) reason: KickReason,
    pub(crate) by_platform: Option<Platform>,
    pub(crate) code: u16,
}

impl KickWant {
    /// The expected outcome's kind.
    fn kind(self) -> &'static str {
        match self.reason {
            KickReason::MultiDevice => "kick multi_device (4501)",
            KickReason::Replaced => "kick replaced (4501)",
            KickReason::Admin => "admin kick (4502)",
        }
    }
}

/// The kick a login on `platform` with `instance` makes the slot's holder (`held_*`) see (§8 with
/// the `dual` policy and caps of 1: the slot holds one instance, the newcomer always wins).
pub(crate) fn takeover_want(
    held_platform: Platform,
    held_instance: &str,
    platform: Platform,
    instance: &str,
) -> KickWant {
    let reason = if held_platform == platform && held_instance == instance {
        KickReason::Replaced
    } else {
        KickReason::MultiDevice
    };
    KickWant {
        reason,
        by_platform: Some(platform),
        code: imgate_proto::close::KICKED,
    }
}

/// The `kicked_offline` push a socket read, against what it was told to expect (`None`: nothing).
pub(crate) fn classify_kick_push(
    want: Option<KickWant>,
    reason: KickReason,
    by_platform: Option<Platform>,
) -> Result<(), String> {
    match want {
        None => Err(format!("kicked_offline {} nobody caused", reason.as_str())),
        Some(w) if w.reason != reason || w.by_platform != by_platform => Err(format!(
            "kicked_offline {} by {:?} instead of {} by {:?}",
            reason.as_str(),
            by_platform.map(Platform::as_str),
            w.reason.as_str(),
            w.by_platform.map(Platform::as_str)
        )),
        Some(_) => Ok(()),
    }
}

/// The close a kicked socket read (`code`; `pushed`: whether `kicked_offline` came first).
pub(crate) fn classify_kick_close(want: KickWant, pushed: bool, code: Option<u16>) -> Outcome {
    match code {
        _ if !pushed => Outcome::Unexpected(format!(
            "closed {} without kicked_offline",
            code.map_or("(no frame)".into(), |c| c.to_string())
        )),
        Some(c) if c == want.code => Outcome::Expected(want.kind()),
        Some(c) => Outcome::Unexpected(format!(
            "{} closed {c} instead of {}",
            want.reason.as_str(),
            want.code
        )),
        None => Outcome::Unexpected(format!(
            "{} closed without a close frame",
            want.reason.as_str()
        )),
    }
}

/// A close nobody asked for (the socket was not being kicked or closed by the client).
pub(crate) fn classify_surprise_close(code: Option<u16>) -> Outcome {
    Outcome::Unexpected(match code {
        Some(c) => format!("closed {c} by the gateway"),
        None => "closed without a close frame".into(),
    })
}

/// The answer to a client close (code 1000): the gateway echoes it.
pub(crate) fn classify_close_echo(code: Option<u16>) -> Outcome {
    match code {
        Some(1000) => Outcome::Expected("client close (1000 echoed)"),
        Some(c) => Outcome::Unexpected(format!("client close answered {c}")),
        None => Outcome::Unexpected("client close answered without a close frame".into()),
    }
}

/// A `user_sig_expired` read at `at_ms` (unix ms) for a ticket with `expire_at` (unix s): §2 says
/// expired when now > expire_at, §7 says pushed no later than 1.5 s after; `slack_ms` allows for the
/// client's own scheduling on a loaded machine.
pub(crate) fn classify_expiry(expire_at: u64, at_ms: u64, slack_ms: u64) -> Outcome {
    let due = expire_at * 1000;
    if at_ms < due {
        Outcome::Unexpected(format!("user_sig_expired {} ms early", due - at_ms))
    } else if at_ms > due + 1500 + slack_ms {
        Outcome::Unexpected(format!(
            "user_sig_expired late (> 1.5 s + {slack_ms} ms after expire_at)"
        ))
    } else {
        Outcome::Expected("user_sig_expired")
    }
}

/// A response, against the code wanted (and for a success, the data's kind).
pub(crate) fn classify_response(
    what: &'static str,
    want_code: u32,
    got: &Result<ServerMsg, Fail>,
) -> Outcome {
    match got {
        Err(f) => Outcome::Unexpected(format!("{what}: {f}")),
        Ok(ServerMsg::Response { code, .. }) if *code == want_code => Outcome::Expected(what),
        Ok(ServerMsg::Response { code, .. }) => {
            Outcome::Unexpected(format!("{what}: code {code} instead of {want_code}"))
        }
        Ok(other) => Outcome::Unexpected(format!("{what}: {other:?} instead of a response")),
    }
}

/// Expected and unexpected outcomes, by kind.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    expected: Errors,
    unexpected: Errors,
}

impl Tally {
    pub(crate) fn add(&self, o: Outcome) -> bool {
        match o {
            Outcome::Expected(k) => {
                self.expected.add(k);
                true
            }
            Outcome::Unexpected(k) => {
                self.unexpected.add(k);
                false
            }
        }
    }
    fn ok(&self, k: &'static str) {
        self.expected.add(k);
    }
    fn bad(&self, k: impl Into<String>) {
        self.unexpected.add(k);
    }
}

/// What a client socket is told to expect by the operation that is about to cause it.
#[derive(Default)]
struct Expect {
    kick: Option<(KickWant, oneshot::Sender<Outcome>)>,
    /// A short ticket's `expire_at`, and where to report its `user_sig_expired`.
    expiry: Option<(u64, oneshot::Sender<Outcome>)>,
}

enum Cmd {
    /// Send a request; the next response goes back.
    Request(ClientMsg, oneshot::Sender<Result<ServerMsg, Fail>>),
    /// Close with 1000 and report the echo.
    Close(oneshot::Sender<Outcome>),
    /// Drop the socket without a close frame (zero linger: a reset).
    Drop,
}

/// One open socket, as the model holds it; its task owns the WebSocket.
struct Client {
    platform: Platform,
    instance: String,
    cmd: mpsc::Sender<Cmd>,
    expect: Arc<Mutex<Expect>>,
}

impl Client {
    async fn request(&self, msg: ClientMsg) -> Result<ServerMsg, Fail> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Request(msg, tx))
            .await
            .map_err(|_| Fail::from("socket gone"))?;
        match timeout(EVENT_WAIT, rx).await {
            Err(_) => Err("no response within 10 s".into()),
            Ok(Err(_)) => Err("socket gone before the response".into()),
            Ok(Ok(r)) => r,
        }
    }

    async fn close(self) -> Outcome {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Close(tx)).await.is_err() {
            return Outcome::Unexpected("socket gone before the client closed it".into());
        }
        match timeout(EVENT_WAIT, rx).await {
            Err(_) => Outcome::Unexpected("no close echo within 10 s".into()),
            Ok(Err(_)) => Outcome::Unexpected("socket gone before the close echo".into()),
            Ok(Ok(o)) => o,
        }
    }

    fn expect_kick(&self, want: KickWant) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        lock(&self.expect).kick = Some((want, tx));
        rx
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn wait_outcome(rx: oneshot::Receiver<Outcome>, what: &str) -> Outcome {
    match timeout(EVENT_WAIT, rx).await {
        Err(_) => Outcome::Unexpected(format!("{what}: nothing within 10 s")),
        Ok(Err(_)) => Outcome::Unexpected(format!("{what}: the socket ended first")),
        Ok(Ok(o)) => o,
    }
}

/// One user's slots: 0 native, 1 web.
#[derive(Default)]
struct UserState {
    slots: [Option<Client>; 2],
    /// The second of the last whole-user admin kick: UserSigs minted up to it answer 70052.
    revoked_at: u64,
}

/// Messages in flight: a token per `send`/`/v1/push`, how many sockets must still read it, and who
/// it is from.
#[derive(Default)]
struct Inbox {
    pending: Mutex<HashMap<u64, (u32, String)>>,
    next: AtomicU64,
}

impl Inbox {
    fn expect(&self, n: u32, from: &str) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(token, (n, from.to_owned()));
        token
    }
    /// A socket read a message: true when some send was waiting for it.
    fn deliver(&self, from: &str, payload: &str) -> bool {
        let Some(token) = payload
            .strip_prefix("soak:")
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return false;
        };
        let mut m = lock(&self.pending);
        match m.get_mut(&token) {
            Some((n, f)) if *n > 0 && f == from => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
    /// Waits until every recipient read `token`; returns how many did not.
    async fn settle(&self, token: u64) -> u32 {
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            let left = lock(&self.pending).get(&token).map_or(0, |e| e.0);
            if left == 0 || Instant::now() >= deadline {
                lock(&self.pending).remove(&token);
                return left;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Everything the soak's tasks share.
struct Soak {
    target: Arc<Target>,
    admin: Option<Admin>,
    app: u64,
    key: SigKey,
    users: Vec<Arc<AsyncMutex<UserState>>>,
    tally: Tally,
    inbox: Inbox,
    /// Open client sockets (logged in or not).
    open: AtomicUsize,
    /// Sockets opened so far (spreads them over the source addresses).
    opened: AtomicUsize,
    /// Short-ticket lifecycles running.
    shorts: AtomicUsize,
    max_sockets: usize,
    max_shorts: usize,
    short_secs: (u64, u64),
    slack_ms: u64,
    long_expire: u64,
    prefix: String,
    /// Requests' `seq`.
    seq: AtomicU64,
    /// How long after `expire_at` each `user_sig_expired` was read.
    expiry_after: Samples,
}

/// The admin listener: address and token.
struct Admin {
    addr: SocketAddr,
    token: String,
}

impl Admin {
    /// One HTTP/1.1 request (`Connection: close`); the status and the body.
    async fn call(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), Fail> {
        let io = async {
            let mut s = TcpStream::connect(self.addr)
                .await
                .map_err(|e| format!("admin connect: {:?}", e.kind()))?;
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.addr,
                self.token,
                body.len()
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("admin write: {:?}", e.kind()))?;
            let mut out = Vec::new();
            s.read_to_end(&mut out)
                .await
                .map_err(|e| format!("admin read: {:?}", e.kind()))?;
            Ok::<_, Fail>(out)
        };
        let out = timeout(EVENT_WAIT, io)
            .await
            .map_err(|_| Fail::from("admin: no answer within 10 s"))??;
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Fail::from("admin: no status line"))?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    }

    async fn json(&self, method: &str, path: &str, body: &str) -> Result<serde_json::Value, Fail> {
        let (status, body) = self.call(method, path, body).await?;
        if status != 200 {
            return Err(format!("admin {path}: HTTP {status}"));
        }
        serde_json::from_str(&body).map_err(|_| format!("admin {path}: not JSON"))
    }
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The value of the gauges the soak checks in a `/metrics` text: connections, sessions (all
/// platforms), pending sockets and outbound bytes (absent series read as 0).
pub(crate) fn gauges(metrics: &str) -> BTreeMap<&'static str, i64> {
    let mut g = BTreeMap::from([
        ("connections", 0),
        ("sessions", 0),
        ("pending_sockets", 0),
        ("outbound_bytes", 0),
    ]);
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("imgate_") else {
            continue;
        };
        let (name, value) = match rest.split_once(' ') {
            Some((n, v)) => (n, v),
            None => continue,
        };
        let name = name.split('{').next().unwrap_or(name);
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        if let Some(slot) = g.get_mut(name) {
            *slot += v as i64;
        }
    }
    g
}

impl Soak {
    fn user_id(&self, u: usize) -> String {
        format!("{}{u}", self.prefix)
    }

    fn seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A UserSig minted now (after the user's last revocation second: waits for the next second).
    async fn mint(&self, user: &str, revoked_at: u64, expire: u64) -> (String, u64) {
        loop {
            let now = now_secs();
            if now > revoked_at {
                let sig = usersig::generate(&self.key, self.app, user, expire, now, None);
                return (sig, now);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn login_msg(&self, user: &str, sig: String, p: Platform, instance: &str) -> ClientMsg {
        ClientMsg::Login {
            seq: self.seq(),
            sdk_app_id: self.app,
            user_id: user.to_owned(),
            user_sig: sig,
            platform: p.as_str().to_owned(),
            instance_id: Some(instance.to_owned()),
        }
    }

    /// Checks a login's answer: code 0 with the data of this login.
    fn check_login(
        &self,
        got: &Result<ServerMsg, Fail>,
        user: &str,
        p: Platform,
        expire_at: u64,
    ) -> Outcome {
        match got {
            Ok(ServerMsg::Response {
                code: 0,
                data:
                    Some(ResponseData::Login {
                        user_id,
                        platform,
                        expire_at: e,
                        ..
                    }),
                ..
            }) if user_id == user && *platform == p && *e == expire_at => {
                Outcome::Expected("login")
            }
            Ok(ServerMsg::Response { code: 0, data, .. }) => {
                Outcome::Unexpected(format!("login: code 0 with wrong data {data:?}"))
            }
            other => classify_response("login", 0, other),
        }
    }

    /// Opens a socket and logs it in; on success the client (its task reads from then on).
    async fn open_login(
        self: &Arc<Self>,
        user: &str,
        p: Platform,
        instance: &str,
        sig: (String, u64),
        expire: u64,
        want_code: u32,
    ) -> Result<Client, Outcome> {
        let n = self.opened.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        let attempt = async {
            let mut ws = self.target.open(n).await?;
            let msg = self.login_msg(user, sig.0, p, instance);
            ws.send(Message::text(
                String::from_utf8(encode_client(Encoding::Json, &msg)).expect("JSON is UTF-8"),
            ))
            .await
            .map_err(|e| format!("send: {}", short(&e.to_string())))?;
            let r = read_response(&mut ws).await;
            Ok::<_, Fail>((ws, r))
        };
        let (ws, got) = match timeout(EVENT_WAIT, attempt).await {
            Err(_) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(Outcome::Unexpected(
                    "connect+login: no answer within 10 s".into(),
                ));
            }
            Ok(Err(f)) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(Outcome::Unexpected(f));
            }
            Ok(Ok(x)) => x,
        };
        let outcome = if want_code == 0 {
            self.check_login(&got, user, p, sig.1 + expire)
        } else {
            classify_response("stale UserSig refused (70052)", want_code, &got)
        };
        let (cmd, rx) = mpsc::channel(4);
        let expect = Arc::new(Mutex::new(Expect::default()));
        tokio::spawn(client_task(ws, rx, Arc::clone(&expect), Arc::clone(self)));
        let client = Client {
            platform: p,
            instance: instance.to_owned(),
            cmd,
            expect,
        };
        match outcome {
            Outcome::Expected(k) if want_code == 0 => {
                self.tally.ok(k);
                Ok(client)
            }
            o => {
                let _ = client.cmd.send(Cmd::Drop).await;
                Err(o)
            }
        }
    }

    /// Drops every client of a user after an unexpected outcome, so that the model stays true.
    async fn forget(&self, st: &mut UserState) {
        for c in st.slots.iter_mut().filter_map(Option::take) {
            let _ = c.cmd.send(Cmd::Drop).await;
        }
    }

    fn platform_for(&self, rng: &mut Rng, slot: usize) -> Platform {
        if slot == 1 {
            Platform::Web
        } else {
            NATIVE[rng.below(NATIVE.len() as u64) as usize]
        }
    }

    fn instance_for(rng: &mut Rng, slot: usize) -> String {
        format!("s{slot}-i{}", rng.below(INSTANCES))
    }

    fn can_add(&self) -> bool {
        self.open.load(Ordering::Relaxed) < self.max_sockets
    }

    /// Whether the open sockets are more than 2% short of the target (logins weigh more then).
    fn short_of(&self) -> bool {
        self.open.load(Ordering::Relaxed) < self.max_sockets - self.max_sockets / 50
    }

    /// A random user whose lock is free. Short of the target, up to [`FREE_SLOT_TRIES`] users are
    /// tried for one with a free slot, so that logins keep up with the closes and kicks.
    fn choose_user(&self, rng: &mut Rng) -> Option<(usize, OwnedMutexGuard<UserState>)> {
        let tries = if self.short_of() { FREE_SLOT_TRIES } else { 1 };
        let mut found = None;
        for _ in 0..tries {
            let u = rng.below(self.users.len() as u64) as usize;
            let Ok(g) = Arc::clone(&self.users[u]).try_lock_owned() else {
                continue;
            };
            if g.slots.iter().any(Option::is_none) || tries == 1 {
                return Some((u, g));
            }
            found.get_or_insert((u, g));
        }
        found
    }
}

/// Reads until the response to a request (a fresh socket: any push first is a failure).
async fn read_response(ws: &mut Ws) -> Result<ServerMsg, Fail> {
    loop {
        match ws.next().await {
            None => return Err("closed before the response".into()),
            Some(Err(e)) => return Err(format!("read: {}", short(&e.to_string()))),
            Some(Ok(Message::Close(f))) => {
                return Err(format!(
                    "closed {} before the response",
                    f.map_or(0, |f| u16::from(f.code))
                ))
            }
            Some(Ok(Message::Text(t))) => {
                return match decode_server(Encoding::Json, t.as_bytes(), MAX_FRAME) {
                    Ok(m @ ServerMsg::Response { .. }) => Ok(m),
                    Ok(m) => Err(format!("{m:?} before the login response")),
                    Err(_) => Err("undecodable frame".into()),
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) => return Err("unexpected frame".into()),
        }
    }
}

/// A client socket's task: reads every frame (so pings are answered), classifies pushes and closes
/// against what it was told to expect, and carries out the model's commands.
async fn client_task(
    mut ws: Ws,
    mut cmd: mpsc::Receiver<Cmd>,
    expect: Arc<Mutex<Expect>>,
    soak: Arc<Soak>,
) {
    let mut reply: Option<oneshot::Sender<Result<ServerMsg, Fail>>> = None;
    let mut kick: Option<(KickWant, oneshot::Sender<Outcome>)> = None;
    loop {
        tokio::select! {
            c = cmd.recv() => match c {
                Some(Cmd::Request(msg, tx)) => {
                    let frame = String::from_utf8(encode_client(Encoding::Json, &msg))
                        .expect("JSON is UTF-8");
                    if let Err(e) = ws.send(Message::text(frame)).await {
                        let _ = tx.send(Err(format!("send: {}", short(&e.to_string()))));
                        break;
                    }
                    reply = Some(tx);
                }
                Some(Cmd::Close(tx)) => {
                    let o = match client_close(&mut ws).await {
                        Ok(code) => classify_close_echo(code),
                        Err(f) => Outcome::Unexpected(f),
                    };
                    let _ = tx.send(o);
                    break;
                }
                Some(Cmd::Drop) | None => break,
            },
            m = ws.next() => {
                let code = match m {
                    Some(Ok(Message::Text(t))) => {
                        match decode_server(Encoding::Json, t.as_bytes(), MAX_FRAME) {
                            Ok(r @ ServerMsg::Response { .. }) => match reply.take() {
                                Some(tx) => { let _ = tx.send(Ok(r)); }
                                None => soak.tally.bad("a response nobody asked for"),
                            },
                            Ok(ServerMsg::KickedOffline { reason, by_platform }) => {
                                let want = kick.take().or_else(|| lock(&expect).kick.take());
                                match classify_kick_push(want.as_ref().map(|w| w.0), reason, by_platform) {
                                    Ok(()) => kick = want,
                                    Err(e) => {
                                        match want {
                                            Some((_, tx)) => { let _ = tx.send(Outcome::Unexpected(e)); }
                                            None => soak.tally.bad(e),
                                        }
                                        break;
                                    }
                                }
                            }
                            Ok(ServerMsg::UserSigExpired) => {
                                let at = now_ms();
                                match lock(&expect).expiry.take() {
                                    Some((expire_at, tx)) => {
                                        let after = at.saturating_sub(expire_at * 1000);
                                        soak.expiry_after.add(Duration::from_millis(after));
                                        let _ = tx.send(classify_expiry(expire_at, at, soak.slack_ms));
                                    }
                                    None => soak.tally.bad("user_sig_expired on a long ticket"),
                                }
                            }
                            Ok(ServerMsg::Message { from, payload, .. }) => {
                                if !soak.inbox.deliver(&from, &payload) {
                                    soak.tally.bad("a message nobody sent to this socket");
                                }
                            }
                            Err(_) => {
                                soak.tally.bad("undecodable frame");
                                break;
                            }
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(f))) => Some(f.map(|f| u16::from(f.code))),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => Some(None),
                };
                let code = code.flatten();
                let want = kick.take().map(|k| (k, true)).or_else(|| {
                    lock(&expect).kick.take().map(|k| (k, false))
                });
                match want {
                    Some(((w, tx), pushed)) => {
                        let _ = tx.send(classify_kick_close(w, pushed, code));
                    }
                    None => {
                        soak.tally.add(classify_surprise_close(code));
                    }
                }
                break;
            }
        }
    }
    soak.open.fetch_sub(1, Ordering::Relaxed);
}

/// Sends close 1000 and reads until the gateway's close frame; its code.
async fn client_close(ws: &mut Ws) -> Result<Option<u16>, Fail> {
    ws.send(Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "".into(),
        },
    )))
    .await
    .map_err(|e| format!("close: {}", short(&e.to_string())))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => return Ok(f.map(|f| u16::from(f.code))),
            Some(Ok(Message::Text(_))) => return Err("a frame after the client's close".into()),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Ok(None),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    async fn run_op(
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
struct Pace {
    start: Instant,
    interval_ns: u64,
    next: AtomicU64,
}

impl Pace {
    async fn wait(&self) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let at = self.start + Duration::from_nanos(n.saturating_mul(self.interval_ns));
        tokio::time::sleep_until(at.into()).await;
    }
}

pub(crate) async fn run_soak(args: &LoadArgs, target: Arc<Target>) -> Report {
    let sessions = args.sessions;
    let users = if args.users == 0 {
        sessions * 3 / 5 + 1
    } else {
        args.users
    };
    let admin = match (&args.admin_url, &args.admin_token) {
        (Some(url), Some(token)) => {
            let authority = url
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            tokio::net::lookup_host(authority.as_str())
                .await
                .ok()
                .and_then(|mut a| a.find(SocketAddr::is_ipv4))
                .map(|addr| Admin {
                    addr,
                    token: token.clone(),
                })
        }
        _ => None,
    };
    let have_admin = admin.is_some();
    let soak = Arc::new(Soak {
        target,
        admin,
        app: args.sdk_app_id,
        key: SigKey::new(&args.key),
        users: (0..users).map(|_| Arc::default()).collect(),
        tally: Tally::default(),
        inbox: Inbox::default(),
        open: AtomicUsize::new(0),
        opened: AtomicUsize::new(0),
        shorts: AtomicUsize::new(0),
        max_sockets: sessions,
        max_shorts: (sessions / 20).max(1),
        short_secs: (args.short_min, args.short_max.max(args.short_min)),
        slack_ms: args.expiry_slack_ms,
        long_expire: args.expire,
        prefix: args.user_prefix.clone(),
        seq: AtomicU64::new(1),
        expiry_after: Samples::default(),
    });
    let t0 = Instant::now();
    let mut progress = Progress::new(args.progress_secs, t0);

    // Fill: `sessions` logins into the users' slots, at `--concurrency`, with UserSigs minted
    // before the clock starts (so that logins/s and CPU per login measure the gateway).
    let now = now_secs();
    let fill_sigs: Arc<Vec<String>> = Arc::new(
        (0..sessions)
            .map(|k| {
                let user = soak.user_id(k % users);
                usersig::generate(&soak.key, soak.app, &user, soak.long_expire, now, None)
            })
            .collect(),
    );
    let before = args.server_pid.and_then(proc_sample);
    let fill_start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut fill = tokio::task::JoinSet::new();
    for w in 0..args.concurrency.min(sessions.max(1)) {
        let (soak, next, sigs) = (Arc::clone(&soak), Arc::clone(&next), Arc::clone(&fill_sigs));
        let mut rng = Rng::new(args.seed ^ (0xF111 + w as u64));
        fill.spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= sessions {
                    break;
                }
                let (u, slot) = (k % soak.users.len(), (k / soak.users.len()).min(1));
                let mut g = Arc::clone(&soak.users[u]).lock_owned().await;
                if g.slots[slot].is_some() {
                    continue;
                }
                let user = soak.user_id(u);
                let (p, i) = (
                    soak.platform_for(&mut rng, slot),
                    Soak::instance_for(&mut rng, slot),
                );
                let sig = (sigs[k].clone(), now);
                match soak
                    .open_login(&user, p, &i, sig, soak.long_expire, 0)
                    .await
                {
                    Ok(c) => g.slots[slot] = Some(c),
                    Err(o) => {
                        soak.tally.add(o);
                    }
                }
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = fill.join_next() => if r.is_none() { break },
            _ = tick.tick() => progress.tick(&soak, "fill"),
        }
    }
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let filled = soak.open.load(Ordering::Relaxed);
    let after_fill = args.server_pid.and_then(proc_sample);
    drop(fill_sigs);
    let fill_json = match (before, after_fill) {
        (Some(b), Some(a)) => json!({
            "logins_per_sec": (filled as f64 / fill_secs.max(0.001)).round(),
            "server_cpu_per_login_us": a.cpu_ms.saturating_sub(b.cpu_ms) * 1000 / filled.max(1) as u64,
            "rss_before_kb": b.rss_kb,
            "rss_filled_kb": a.rss_kb,
            "rss_per_session_bytes": a.rss_kb.saturating_sub(b.rss_kb) * 1024 / filled.max(1) as u64,
        }),
        _ => json!({ "logins_per_sec": (filled as f64 / fill_secs.max(0.001)).round() }),
    };
    eprintln!(
        "soak: filled {filled} sockets in {fill_secs:.1} s; churning for {} s",
        args.secs
    );

    // Churn.
    let churn_start = Instant::now();
    let end = churn_start + Duration::from_secs(args.secs);
    // Short tickets launched after this could not expire before the churn ends.
    let last_short = end.checked_sub(Duration::from_secs(args.short_max + 3));
    let pace = Arc::new(Pace {
        start: churn_start,
        interval_ns: 1_000_000_000 / args.rate.max(1),
        next: AtomicU64::new(0),
    });
    let ops = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..args.workers.max(1) {
        let (soak, pace, ops) = (Arc::clone(&soak), Arc::clone(&pace), Arc::clone(&ops));
        let mut rng = Rng::new(args.seed.wrapping_mul(0x100_0001) ^ w as u64);
        workers.spawn(async move {
            let mut shorts = tokio::task::JoinSet::new();
            while Instant::now() < end {
                pace.wait().await;
                if Instant::now() >= end {
                    break;
                }
                let allow_short = last_short.is_some_and(|t| Instant::now() < t);
                let Some((u, g)) = soak.choose_user(&mut rng) else {
                    continue;
                };
                soak.run_op(&mut rng, u, g, &mut shorts, allow_short).await;
                ops.fetch_add(1, Ordering::Relaxed);
                while shorts.try_join_next().is_some() {}
            }
            while shorts.join_next().await.is_some() {}
        });
    }
    loop {
        tokio::select! {
            r = workers.join_next() => if r.is_none() { break },
            _ = tick.tick() => progress.tick(&soak, "churn"),
        }
    }
    let churn_secs = churn_start.elapsed().as_secs_f64();
    let peak_open = soak.open.load(Ordering::Relaxed);

    // Everyone leaves: three in four close, one in four drops the connection.
    let leave_start = Instant::now();
    let mut leave = tokio::task::JoinSet::new();
    for (u, m) in soak.users.iter().enumerate() {
        let (soak, m) = (Arc::clone(&soak), Arc::clone(m));
        leave.spawn(async move {
            let mut g = m.lock_owned().await;
            for (s, c) in g.slots.iter_mut().enumerate() {
                let Some(c) = c.take() else { continue };
                if (u + s) % 4 == 3 {
                    let _ = c.cmd.send(Cmd::Drop).await;
                    soak.tally.ok("client dropped (no close frame)");
                } else {
                    soak.tally.add(c.close().await);
                }
            }
        });
        if leave.len() >= args.concurrency.max(1) {
            leave.join_next().await;
        }
    }
    while leave.join_next().await.is_some() {}
    // The client tasks end once their sockets are closed.
    let drained = Instant::now() + EVENT_WAIT;
    while soak.open.load(Ordering::Relaxed) > 0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leave_secs = leave_start.elapsed().as_secs_f64();
    let client_open = soak.open.load(Ordering::Relaxed);
    if client_open > 0 {
        soak.tally.bad(format!(
            "{client_open} client sockets still open after leaving"
        ));
    }

    // The gateway must be empty: /v1/online lists nobody, the gauges read 0.
    let (online, gauges_end) = match &soak.admin {
        None => (None, None),
        Some(admin) => {
            let online = still_online(admin, soak.app, &soak.prefix, users).await;
            match &online {
                Ok(0) => {}
                Ok(n) => soak
                    .tally
                    .bad(format!("{n} users still online after everyone left")),
                Err(f) => soak.tally.bad(f.clone()),
            }
            let g = wait_gauges_zero(admin).await;
            match &g {
                Ok(g) if g.values().all(|&v| v == 0) => {}
                Ok(g) => soak
                    .tally
                    .bad(format!("gauges not back to 0 after 10 s: {g:?}")),
                Err(f) => soak.tally.bad(f.clone()),
            }
            (online.ok(), g.ok())
        }
    };

    let expected = soak.tally.expected.snapshot();
    let unexpected = soak.tally.unexpected.snapshot();
    let ops = ops.load(Ordering::Relaxed);
    let json = json!({
        "mode": "soak",
        "url": args.url,
        "sessions": sessions,
        "users": users,
        "seed": args.seed,
        "filled": filled,
        "fill_secs": round3(fill_secs),
        "fill": fill_json,
        "expiry_after_expire_at_us": soak.expiry_after.summary().json(),
        "churn_secs": round3(churn_secs),
        "churn_ops": ops,
        "ops_per_sec": (ops as f64 / churn_secs.max(0.001)).round(),
        "open_at_churn_end": peak_open,
        "leave_secs": round3(leave_secs),
        "sockets_opened": soak.opened.load(Ordering::Relaxed),
        "expected": expected,
        "unexpected": unexpected,
        "unexpected_total": unexpected.values().sum::<u64>(),
        "users_online_at_end": online,
        "gauges_at_end": gauges_end,
        "admin_checks": have_admin,
    });
    let mut text = format!(
        "soak: {sessions} sockets over {users} users (seed {}), filled {filled} in {fill_secs:.1} s, \
         churned {churn_secs:.0} s ({ops} operations, {:.0}/s), {} sockets opened in all\n",
        args.seed,
        ops as f64 / churn_secs.max(0.001),
        soak.opened.load(Ordering::Relaxed),
    );
    text.push_str("expected outcomes:\n");
    for (k, v) in &expected {
        text.push_str(&format!("  {v:>9}  {k}\n"));
    }
    text.push_str(&format!(
        "user_sig_expired read after expire_at: {}\n",
        soak.expiry_after.summary().text()
    ));
    push_errors(&mut text, "unexpected outcomes", &unexpected);
    text.push_str(&format!(
        "after everyone left: users online {}, gauges {}\n",
        online.map_or("(no admin API)".into(), |n| n.to_string()),
        gauges_end.map_or("(no admin API)".into(), |g| format!("{g:?}")),
    ));
    Report {
        ok: unexpected.is_empty() && have_admin,
        json,
        text,
    }
}

/// How many of the population `/v1/online` still lists (500 users a query).
async fn still_online(admin: &Admin, app: u64, prefix: &str, users: usize) -> Result<usize, Fail> {
    let mut online = 0;
    for chunk in (0..users).collect::<Vec<_>>().chunks(500) {
        let mut path = format!("/v1/online?sdk_app_id={app}");
        for u in chunk {
            path.push_str(&format!("&user_id={prefix}{u}"));
        }
        let v = admin.json("GET", &path, "").await?;
        online += v["users"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|u| u["status"] != "Offline").count());
    }
    Ok(online)
}

/// Polls `/metrics` until the gauges read 0 (at most 10 s); the last reading.
async fn wait_gauges_zero(admin: &Admin) -> Result<BTreeMap<&'static str, i64>, Fail> {
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let (status, body) = admin.call("GET", "/metrics", "").await?;
        if status != 200 {
            return Err(format!("/metrics: HTTP {status}"));
        }
        let g = gauges(&body);
        if g.values().all(|&v| v == 0) || Instant::now() >= deadline {
            return Ok(g);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A line on stderr every `--progress-secs` (0: none).
struct Progress {
    every: Option<Duration>,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn new(secs: u64, start: Instant) -> Progress {
        Progress {
            every: (secs > 0).then(|| Duration::from_secs(secs)),
            start,
            last: start,
        }
    }
    fn tick(&mut self, soak: &Soak, phase: &str) {
        let Some(every) = self.every else { return };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let unexpected: u64 = soak.tally.unexpected.snapshot().values().sum();
        eprintln!(
            "soak: {:>5.0} s {phase}: {} open, {} opened, {} short tickets running, {unexpected} unexpected",
            self.start.elapsed().as_secs_f64(),
            soak.open.load(Ordering::Relaxed),
            soak.opened.load(Ordering::Relaxed),
            soak.shorts.load(Ordering::Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KICKED: u16 = imgate_proto::close::KICKED;

    #[test]
    fn takeover_is_replaced_only_for_the_same_platform_and_instance() {
        let w = takeover_want(Platform::Android, "s0-i1", Platform::Android, "s0-i1");
        assert_eq!(w.reason, KickReason::Replaced);
        assert_eq!((w.by_platform, w.code), (Some(Platform::Android), KICKED));
        let w = takeover_want(Platform::Android, "s0-i1", Platform::Android, "s0-i2");
        assert_eq!(w.reason, KickReason::MultiDevice);
        let w = takeover_want(Platform::Android, "s0-i1", Platform::Iphone, "s0-i1");
        assert_eq!(w.reason, KickReason::MultiDevice);
        assert_eq!(w.by_platform, Some(Platform::Iphone));
    }

    #[test]
    fn a_kick_must_be_expected_and_match() {
        let want = takeover_want(Platform::Web, "a", Platform::Web, "b");
        assert!(
            classify_kick_push(Some(want), KickReason::MultiDevice, Some(Platform::Web)).is_ok()
        );
        assert!(classify_kick_push(None, KickReason::MultiDevice, Some(Platform::Web)).is_err());
        assert!(classify_kick_push(Some(want), KickReason::Replaced, Some(Platform::Web)).is_err());
        assert!(classify_kick_push(Some(want), KickReason::MultiDevice, None).is_err());
    }

    #[test]
    fn kick_closes_are_classified() {
        let want = takeover_want(Platform::Web, "a", Platform::Web, "b");
        assert_eq!(
            classify_kick_close(want, true, Some(4501)),
            Outcome::Expected("kick multi_device (4501)")
        );
        assert!(matches!(
            classify_kick_close(want, true, Some(4502)),
            Outcome::Unexpected(_)
        ));
        assert!(matches!(
            classify_kick_close(want, false, Some(4501)),
            Outcome::Unexpected(_)
        ));
        assert!(matches!(
            classify_kick_close(want, true, None),
            Outcome::Unexpected(_)
        ));
        let admin = KickWant {
            reason: KickReason::Admin,
            by_platform: None,
            code: imgate_proto::close::ADMIN_KICKED,
        };
        assert_eq!(
            classify_kick_close(admin, true, Some(4502)),
            Outcome::Expected("admin kick (4502)")
        );
        assert!(matches!(
            classify_surprise_close(Some(4001)),
            Outcome::Unexpected(_)
        ));
        assert!(matches!(
            classify_surprise_close(None),
            Outcome::Unexpected(_)
        ));
        assert_eq!(
            classify_close_echo(Some(1000)),
            Outcome::Expected("client close (1000 echoed)")
        );
        assert!(matches!(
            classify_close_echo(Some(1001)),
            Outcome::Unexpected(_)
        ));
        assert!(matches!(classify_close_echo(None), Outcome::Unexpected(_)));
    }

    #[test]
    fn expiry_is_on_time_between_expire_at_and_its_bound() {
        let at = 1_700_000_000;
        assert!(matches!(
            classify_expiry(at, at * 1000 - 1, 0),
            Outcome::Unexpected(_)
        ));
        assert_eq!(
            classify_expiry(at, at * 1000, 0),
            Outcome::Expected("user_sig_expired")
        );
        assert_eq!(
            classify_expiry(at, at * 1000 + 1500, 0),
            Outcome::Expected("user_sig_expired")
        );
        assert!(matches!(
            classify_expiry(at, at * 1000 + 1501, 0),
            Outcome::Unexpected(_)
        ));
        assert_eq!(
            classify_expiry(at, at * 1000 + 1900, 500),
            Outcome::Expected("user_sig_expired")
        );
    }

    #[test]
    fn responses_are_classified_by_code() {
        let ok = Ok(ServerMsg::Response {
            seq: 1,
            code: 0,
            desc: "ok".into(),
            data: Some(ResponseData::Empty),
        });
        assert_eq!(
            classify_response("logout", 0, &ok),
            Outcome::Expected("logout")
        );
        assert!(matches!(
            classify_response("x", 70052, &ok),
            Outcome::Unexpected(_)
        ));
        let refused = Ok(ServerMsg::Response {
            seq: 1,
            code: 70052,
            desc: "revoked".into(),
            data: None,
        });
        assert!(matches!(
            classify_response("x", 70052, &refused),
            Outcome::Expected("x")
        ));
        assert!(matches!(
            classify_response("x", 0, &Err("eof".into())),
            Outcome::Unexpected(_)
        ));
        let push = Ok(ServerMsg::UserSigExpired);
        assert!(matches!(
            classify_response("x", 0, &push),
            Outcome::Unexpected(_)
        ));
    }

    #[test]
    fn tally_counts_by_kind() {
        let t = Tally::default();
        assert!(t.add(Outcome::Expected("login")));
        assert!(t.add(Outcome::Expected("login")));
        assert!(!t.add(Outcome::Unexpected("closed 1011 by the gateway".into())));
        assert_eq!(t.expected.snapshot()["login"], 2);
        assert_eq!(t.unexpected.snapshot().len(), 1);
    }

    #[test]
    fn the_inbox_counts_each_recipient_once_and_checks_the_sender() {
        let inbox = Inbox::default();
        let t = inbox.expect(2, "alice");
        let p = format!("soak:{t}");
        assert!(!inbox.deliver("bob", &p));
        assert!(inbox.deliver("alice", &p));
        assert!(inbox.deliver("alice", &p));
        assert!(!inbox.deliver("alice", &p), "a third copy nobody sent");
        assert!(!inbox.deliver("alice", "hello"));
        assert!(!inbox.deliver("alice", "soak:999"));
    }

    #[test]
    fn gauges_sum_the_series() {
        let m = "# HELP imgate_connections Open\nimgate_connections 3\n\
                 imgate_sessions{sdk_app_id=\"1\",platform=\"web\"} 2\n\
                 imgate_sessions{sdk_app_id=\"1\",platform=\"android\"} 1\n\
                 imgate_pending_sockets 0\nimgate_closes_total{code=\"1000\"} 7\n";
        let g = gauges(m);
        assert_eq!(g["connections"], 3);
        assert_eq!(g["sessions"], 3);
        assert_eq!(g["pending_sockets"], 0);
        assert_eq!(g["outbound_bytes"], 0);
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }

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
