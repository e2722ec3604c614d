//! `imgate load`: a load generator for the gateway, and for the bare baseline server
//! (`examples/baseline.rs`), so that one client measures both side by side.
//!
//! What it owns: opening sessions at a bounded concurrency, logging each in with a UserSig it mints,
//! holding them, and reporting what it saw (sessions held, logins/s, latency percentiles, errors by
//! kind); in `--mode kick`, the time from a new login to the old socket reading `kicked_offline`
//! (with `--kick-url`, the newcomer connects to another node than the old socket: a cross-node kick).
//! With `--server-pid` it also samples the server's RSS and CPU time from `/proc`, at the moments
//! that matter (before the first connect, after the last login, at the end of the hold).
//!
//! It runs in its own process: one process holds at most ~19,900 sockets on these machines, so the
//! gateway and its load cannot share one. Client sockets are bound round-robin to 127.0.0.2–127.0.0.9
//! before connecting, because one source address gets slow past ~14k connections to one destination.
//!
//! What it does not own: any gateway state. It is a client like any other.

use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use imgate_proto::{decode_server, encode_client, ClientMsg, Encoding, ServerMsg};
use imgate_usersig::{self as usersig, SigKey};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// The sdk_app_id of the development gateway (`imgate serve` without a config file).
pub const DEV_SDK_APP_ID: u64 = 1_400_000_000;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub mod http;
mod measure;
mod soak;
use measure::*;
pub use measure::{machine_busy_ms, proc_sample, ProcSample};

/// Source addresses the client sockets are spread over (loopback targets only).
const SOURCES: u8 = 8;
/// Largest server frame the generator decodes.
const MAX_FRAME: usize = 64 * 1024;
/// Linux reports utime/stime in USER_HZ ticks, 100 per second on every architecture it runs on.
const TICKS_PER_SEC: u64 = 100;

/// What a load run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Open, log in and hold `--sessions` sessions.
    Login,
    /// For `--kick-users` users: log in an old socket, log the same user in on a new socket, and time
    /// until the old socket reads `kicked_offline`.
    Kick,
    /// Fill `--sessions` sockets over `--users` users, churn them for `--secs` (logins, takeovers,
    /// short tickets, closes, drops, logouts, sends, admin kicks), then leave; every outcome is
    /// checked against the contract (needs `--admin-url` and `--admin-token`).
    Soak,
}

/// `imgate load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The WebSocket endpoint
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// The app whose key signs the UserSigs
    #[arg(long, default_value_t = DEV_SDK_APP_ID)]
    pub sdk_app_id: u64,
    /// The app's secret key (not needed with --baseline)
    #[arg(long, default_value = "")]
    pub key: String,
    /// Sessions to open (login mode)
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Sessions being set up at once (kick mode: users in flight at once)
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Platform of every login
    #[arg(long, default_value = "web")]
    pub platform: String,
    /// Distinct users, cycled over (0: one user per session)
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// Prefix of the generated user ids (`<prefix><n>`)
    #[arg(long, default_value = "load")]
    pub user_prefix: String,
    /// Lifetime of the minted UserSigs, in seconds
    #[arg(long, default_value_t = 86_400)]
    pub expire: u64,
    /// Seconds to hold the sessions once all are set up (login mode)
    #[arg(long, default_value_t = 0)]
    pub hold: u64,
    /// What to measure
    #[arg(long, value_enum, default_value_t = Mode::Login)]
    pub mode: Mode,
    /// Users to kick in kick mode
    #[arg(long, default_value_t = 1000)]
    pub kick_users: usize,
    /// Kick mode: the endpoint the newcomer logs in on, while the old socket is on `--url`
    /// (another node of a cluster, for the cross-node kick latency); default: `--url`
    #[arg(long)]
    pub kick_url: Option<String>,
    /// The target is the bare baseline server: any one frame back counts as a login
    #[arg(long)]
    pub baseline: bool,
    /// Connect from 127.0.0.1 only instead of spreading over 127.0.0.2-127.0.0.9
    #[arg(long)]
    pub single_source: bool,
    /// Per-session deadline (connect + upgrade + login), in seconds
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Sample this server process's RSS and CPU time from /proc
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print a one-line JSON summary instead of the text report
    #[arg(long)]
    pub json: bool,
    /// wss:// URLs: trust the server certificate(s) in this PEM file
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Soak mode: seconds of churn after the fill
    #[arg(long, default_value_t = 600)]
    pub secs: u64,
    /// Soak mode: churn operations per second, in all
    #[arg(long, default_value_t = 300)]
    pub rate: u64,
    /// Soak mode: tasks running churn operations at once
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Soak mode: seed of the choices (users, operations, platforms, instance ids)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Soak mode: the admin listener (`http://HOST:PORT`), for kicks, pushes and the final checks
    #[arg(long)]
    pub admin_url: Option<String>,
    /// Soak mode: the admin token
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Soak mode: shortest lifetime of a short ticket, in seconds
    #[arg(long, default_value_t = 20)]
    pub short_min: u64,
    /// Soak mode: longest lifetime of a short ticket, in seconds
    #[arg(long, default_value_t = 60)]
    pub short_max: u64,
    /// Soak mode: how late past the contract's 1.5 s a `user_sig_expired` may be read (the
    /// client's own scheduling on a loaded machine), in milliseconds
    #[arg(long, default_value_t = 500)]
    pub expiry_slack_ms: u64,
    /// Soak mode: a progress line on stderr this often (0: none)
    #[arg(long, default_value_t = 10)]
    pub progress_secs: u64,
}

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("--url {0:?}: expected ws://HOST:PORT/PATH or wss://HOST:PORT/PATH")]
    Url(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Args(String),
}

/// Where and how to connect, shared by every task.
struct Target {
    addr: SocketAddr,
    url: String,
    spread: bool,
    baseline: bool,
    deadline: Duration,
    ws_config: WebSocketConfig,
    /// wss://: the TLS client config.
    tls: Option<Arc<rustls::ClientConfig>>,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A failure kind, counted in the report.
type Fail = String;

impl Target {
    /// TCP connect (from a spread source address) and WebSocket upgrade.
    async fn open(&self, n: usize) -> Result<Ws, Fail> {
        let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {:?}", e.kind()))?;
        // Closed with a reset: no TIME_WAIT left on the client's ports. Otherwise every run leaves
        // N ports per source address in TIME_WAIT for 60 s, and the next run's bind() searches
        // through them (measured: the generator's CPU per session went from ~45 µs to ~750 µs by
        // the third back-to-back run of 19,000).
        socket
            .set_zero_linger()
            .map_err(|e| format!("socket: {:?}", e.kind()))?;
        if self.spread {
            let src = Ipv4Addr::new(127, 0, 0, 2 + (n % SOURCES as usize) as u8);
            socket
                .bind(SocketAddr::new(IpAddr::V4(src), 0))
                .map_err(|e| format!("bind: {:?}", e.kind()))?;
        }
        let stream = socket
            .connect(self.addr)
            .await
            .map_err(|e| format!("connect: {:?}", e.kind()))?;
        let _ = stream.set_nodelay(true);
        let connector = self.tls.clone().map(Connector::Rustls);
        let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
            self.url.as_str(),
            stream,
            Some(self.ws_config),
            connector,
        )
        .await
        .map_err(|e| format!("upgrade: {}", short(&e.to_string())))?;
        Ok(ws)
    }

    /// Sends a login frame and waits for its answer (any frame, for the baseline).
    async fn login(&self, ws: &mut Ws, frame: &str) -> Result<(), Fail> {
        ws.send(Message::text(frame))
            .await
            .map_err(|e| format!("send: {}", short(&e.to_string())))?;
        loop {
            match ws.next().await {
                None => return Err("closed before the response".into()),
                Some(Err(e)) => return Err(format!("read: {}", short(&e.to_string()))),
                Some(Ok(Message::Close(f))) => {
                    return Err(format!("closed {}", f.map_or(0, |f| u16::from(f.code))))
                }
                Some(Ok(Message::Text(t))) if !self.baseline => {
                    return match decode_server(Encoding::Json, t.as_bytes(), MAX_FRAME) {
                        Ok(ServerMsg::Response { code: 0, .. }) => Ok(()),
                        Ok(ServerMsg::Response { code, .. }) => Err(format!("code {code}")),
                        Ok(_) => continue, // a push before the response
                        Err(_) => Err("undecodable response".into()),
                    };
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(_)) if self.baseline => return Ok(()),
                Some(Ok(_)) => return Err("unexpected frame".into()),
            }
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// A login frame for user `user`, with a freshly minted UserSig (or a same-sized dummy).
fn login_frame(args: &LoadArgs, key: &SigKey, user: &str, now: u64) -> String {
    let user_sig = usersig::generate(key, args.sdk_app_id, user, args.expire, now, None);
    let msg = ClientMsg::Login {
        seq: 1,
        sdk_app_id: args.sdk_app_id,
        user_id: user.to_owned(),
        user_sig,
        platform: args.platform.clone(),
        instance_id: None,
    };
    String::from_utf8(encode_client(Encoding::Json, &msg)).expect("JSON is UTF-8")
}

async fn resolve(url: &str) -> Result<(SocketAddr, String), LoadError> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| LoadError::Url(url.into()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(LoadError::Url(url.into()));
    }
    let addr = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| LoadError::Resolve(authority.into(), e))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| LoadError::Resolve(authority.into(), std::io::ErrorKind::NotFound.into()))?;
    Ok((addr, url.to_owned()))
}

/// The TLS client config of `--tls-ca` (ring, the given roots).
fn tls_client(args: &LoadArgs) -> Result<Option<Arc<rustls::ClientConfig>>, LoadError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let Some(path) = &args.tls_ca else {
        return Ok(None);
    };
    let bad = |e: String| LoadError::Args(format!("--tls-ca {}: {e}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        roots
            .add(c.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(cfg)))
}

/// Raises the soft open-files limit to the hard one; returns the limit in force.
fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or_else(|_| {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024)
    })
}

/// Runs `imgate load`: prints the report on stdout. Returns whether every session succeeded.
pub fn main(args: LoadArgs) -> Result<bool, LoadError> {
    if args.concurrency == 0 {
        return Err(LoadError::Args("--concurrency must be at least 1".into()));
    }
    if args.baseline && args.mode == Mode::Kick {
        return Err(LoadError::Args(
            "--mode kick needs the gateway: the baseline has no logins to kick".into(),
        ));
    }
    if args.baseline && args.mode == Mode::Soak {
        return Err(LoadError::Args(
            "--mode soak needs the gateway: the baseline has no sessions".into(),
        ));
    }
    if args.mode == Mode::Soak && (args.admin_url.is_none() || args.admin_token.is_none()) {
        return Err(LoadError::Args(
            "--mode soak needs --admin-url and --admin-token (kicks, pushes, final checks)".into(),
        ));
    }
    if args.kick_url.is_some() && args.mode != Mode::Kick {
        return Err(LoadError::Args(
            "--kick-url applies to --mode kick only".into(),
        ));
    }
    if !args.baseline && args.key.is_empty() {
        return Err(LoadError::Args(
            "--key is required (the app's secret key) unless --baseline".into(),
        ));
    }
    let nofile = raise_nofile();
    let sockets = match args.mode {
        Mode::Login => args.sessions,
        Mode::Kick => 2 * args.concurrency.min(args.kick_users),
        Mode::Soak => args.sessions + args.workers,
    };
    if sockets as u64 + 32 > nofile {
        eprintln!(
            "imgate load: warning: {sockets} sockets need more than the open-files limit of {nofile}"
        );
    }
    let tls = tls_client(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    runtime.block_on(async move {
        let make_target = |(addr, url): (SocketAddr, String)| {
            let tls = url.starts_with("wss://").then(|| tls.clone()).flatten();
            Arc::new(Target {
                tls,
                addr,
                url,
                spread: !args.single_source && addr.ip().is_loopback(),
                baseline: args.baseline,
                deadline: Duration::from_secs(args.timeout.max(1)),
                ws_config: WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .write_buffer_size(0),
            })
        };
        let target = make_target(resolve(&args.url).await?);
        let report = match args.mode {
            Mode::Login => run_login(&args, target).await,
            Mode::Soak => soak::run_soak(&args, target).await,
            Mode::Kick => {
                let newcomer = match &args.kick_url {
                    Some(u) => make_target(resolve(u).await?),
                    None => Arc::clone(&target),
                };
                run_kick(&args, target, newcomer).await
            }
        };
        let ok = report.ok;
        if args.json {
            println!("{}", report.json);
        } else {
            print!("{}", report.text);
        }
        Ok(ok)
    })
}

struct Report {
    ok: bool,
    json: serde_json::Value,
    text: String,
}

fn user_name(args: &LoadArgs, prefix: &str, i: usize) -> String {
    let n = if args.users == 0 { i } else { i % args.users };
    format!("{}{prefix}{n}", args.user_prefix)
}

async fn run_login(args: &LoadArgs, target: Arc<Target>) -> Report {
    let n = args.sessions;
    let key = SigKey::new(&args.key);
    let now = now_secs();
    // Minted up front so that the connect phase measures the server, not the generator's zlib.
    let frames: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|i| login_frame(args, &key, &user_name(args, "", i), now))
            .collect(),
    );
    let errors = Arc::new(Errors::default());
    let setup = Arc::new(Samples::default());
    let login = Arc::new(Samples::default());
    let held = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(Errors::default());
    let next = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = watch::channel(false);

    let before = args.server_pid.and_then(proc_sample);
    let mark = CpuMark::now();
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(n.max(1)) {
        let (target, frames, errors, setup, login, held, dropped, next, release) = (
            Arc::clone(&target),
            Arc::clone(&frames),
            Arc::clone(&errors),
            Arc::clone(&setup),
            Arc::clone(&login),
            Arc::clone(&held),
            Arc::clone(&dropped),
            Arc::clone(&next),
            release_rx.clone(),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= frames.len() {
                    break;
                }
                let t0 = Instant::now();
                let attempt = async {
                    let mut ws = target.open(i).await?;
                    let t1 = Instant::now();
                    target.login(&mut ws, &frames[i]).await?;
                    Ok::<_, Fail>((ws, t1.elapsed()))
                };
                match timeout(target.deadline, attempt).await {
                    Err(_) => errors.add("timeout"),
                    Ok(Err(kind)) => errors.add(kind),
                    Ok(Ok((ws, login_time))) => {
                        setup.add(t0.elapsed());
                        login.add(login_time);
                        held.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(hold(
                            ws,
                            Arc::clone(&held),
                            Arc::clone(&dropped),
                            release.clone(),
                        ));
                    }
                }
            }
            Instant::now()
        });
    }
    let mut end = start;
    while let Some(r) = workers.join_next().await {
        if let Ok(t) = r {
            end = end.max(t);
        }
    }
    let connect_secs = end.duration_since(start).as_secs_f64();
    let connected = args.server_pid.and_then(proc_sample);
    let mark_end = CpuMark::now();
    let established = setup.summary().count;
    if args.hold > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    let at_hold_end = args.server_pid.and_then(proc_sample);
    let held_now = held.load(Ordering::Relaxed);
    let _ = release_tx.send(true);

    let setup_p = setup.summary();
    let login_p = login.summary();
    let errors = errors.snapshot();
    let dropped = dropped.snapshot();
    let rate = if connect_secs > 0.0 {
        established as f64 / connect_secs
    } else {
        0.0
    };
    let server = server_json(before, connected, at_hold_end, established, held_now);
    let cpu = cpu_json(mark, mark_end, before, connected, established);
    let json = json!({
        "mode": "login",
        "target": if args.baseline { "baseline" } else { "gateway" },
        "url": args.url,
        "sessions": n,
        "concurrency": args.concurrency,
        "established": established,
        "held": held_now,
        "connect_secs": round3(connect_secs),
        "logins_per_sec": rate.round(),
        "setup_us": setup_p.json(),
        "login_us": login_p.json(),
        "errors": errors,
        "dropped_during_hold": dropped,
        "server": server,
        "cpu": cpu,
    });
    let mut text = format!(
        "target {} ({}), {} sessions at concurrency {}\n\
         established {established}, held {held_now} after {} s\n\
         {rate:.0} logins/s ({established} in {connect_secs:.2} s)\n\
         connect+upgrade+login: {}\n\
         login round trip:      {}\n",
        if args.baseline { "baseline" } else { "gateway" },
        args.url,
        n,
        args.concurrency,
        args.hold,
        setup_p.text(),
        login_p.text(),
    );
    push_errors(&mut text, "errors", &errors);
    push_errors(&mut text, "dropped during hold", &dropped);
    if let Some(s) = json.get("server").filter(|s| !s.is_null()) {
        text.push_str(&format!("server: {s}\n"));
    }
    text.push_str(&format!("cpu over the connect phase: {cpu}\n"));
    Report {
        ok: errors.is_empty() && held_now == n,
        json,
        text,
    }
}

/// Holds an established session: reads (so pings are answered and closes seen) until released.
async fn hold(
    mut ws: Ws,
    held: Arc<AtomicUsize>,
    dropped: Arc<Errors>,
    mut release: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = release.wait_for(|r| *r) => return,
            m = ws.next() => match m {
                Some(Ok(Message::Close(f))) => {
                    dropped.add(format!("closed {}", f.map_or(0, |f| u16::from(f.code))));
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    dropped.add(format!("read: {}", short(&e.to_string())));
                    break;
                }
                None => {
                    dropped.add("eof");
                    break;
                }
            },
        }
    }
    held.fetch_sub(1, Ordering::Relaxed);
}

/// Kick mode: old sockets on `target`, newcomers on `newcomer` (the same target unless `--kick-url`).
async fn run_kick(args: &LoadArgs, target: Arc<Target>, newcomer: Arc<Target>) -> Report {
    let m = args.kick_users;
    let key = SigKey::new(&args.key);
    let now = now_secs();
    let frames: Arc<Vec<(String, String)>> = Arc::new(
        (0..m)
            .map(|i| {
                let user = user_name(args, "k", i);
                (
                    login_frame(args, &key, &user, now),
                    login_frame(args, &key, &user, now),
                )
            })
            .collect(),
    );
    let errors = Arc::new(Errors::default());
    let kick = Arc::new(Samples::default());
    let relogin = Arc::new(Samples::default());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(m.max(1)) {
        let (target, newcomer, frames, errors, kick, relogin, next) = (
            Arc::clone(&target),
            Arc::clone(&newcomer),
            Arc::clone(&frames),
            Arc::clone(&errors),
            Arc::clone(&kick),
            Arc::clone(&relogin),
            Arc::clone(&next),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= frames.len() {
                    break;
                }
                let (first, second) = &frames[i];
                match timeout(
                    target.deadline,
                    kick_one(&target, &newcomer, i, first, second),
                )
                .await
                {
                    Err(_) => errors.add("timeout"),
                    Ok(Err(kind)) => errors.add(kind),
                    Ok(Ok((k, r))) => {
                        kick.add(k);
                        relogin.add(r);
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let secs = start.elapsed().as_secs_f64();
    let kick_p = kick.summary();
    let relogin_p = relogin.summary();
    let errors = errors.snapshot();
    let json = json!({
        "mode": "kick",
        "url": args.url,
        "kick_url": newcomer.url,
        "users": m,
        "concurrency": args.concurrency,
        "platform": args.platform,
        "kicked": kick_p.count,
        "secs": round3(secs),
        "kick_us": kick_p.json(),
        "relogin_us": relogin_p.json(),
        "errors": errors,
    });
    let mut text = format!(
        "kick: {m} users on {} at concurrency {}, {} kicked in {secs:.2} s\n\
         old sockets on {}, newcomers on {}\n\
         new login → old socket reads kicked_offline: {}\n\
         new login → its own response:                {}\n",
        args.platform,
        args.concurrency,
        kick_p.count,
        target.url,
        newcomer.url,
        kick_p.text(),
        relogin_p.text(),
    );
    push_errors(&mut text, "errors", &errors);
    Report {
        ok: errors.is_empty() && kick_p.count == m,
        json,
        text,
    }
}

/// One takeover: the old socket logs in on `target`, a new socket of the same user and platform logs
/// in on `newcomer`; returns (new login sent → old socket read `kicked_offline`, new login sent → its
/// response).
async fn kick_one(
    target: &Target,
    newcomer: &Target,
    i: usize,
    first: &str,
    second: &str,
) -> Result<(Duration, Duration), Fail> {
    let mut old = target.open(2 * i).await?;
    target.login(&mut old, first).await?;
    let mut new = newcomer.open(2 * i + 1).await?;
    let t0 = Instant::now();
    let kicked = async {
        loop {
            match old.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(ServerMsg::KickedOffline { .. }) =
                        decode_server(Encoding::Json, t.as_bytes(), MAX_FRAME)
                    {
                        return Ok(t0.elapsed());
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    return Err(format!(
                        "old closed {} before kicked_offline",
                        f.map_or(0, |f| u16::from(f.code))
                    ))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("old read: {}", short(&e.to_string()))),
                None => return Err("old eof before kicked_offline".into()),
            }
        }
    };
    let answered = async {
        newcomer.login(&mut new, second).await?;
        Ok::<_, Fail>(t0.elapsed())
    };
    let (k, r) = tokio::join!(kicked, answered);
    let (k, r) = (k?, r?);
    // The kick then closes the old socket with 4501.
    loop {
        match old.next().await {
            Some(Ok(Message::Close(Some(f)))) if u16::from(f.code) == 4501 => break,
            Some(Ok(Message::Close(f))) => {
                return Err(format!(
                    "old closed {} instead of 4501",
                    f.map_or(0, |f| u16::from(f.code))
                ))
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err("old closed without a close frame".into()),
        }
    }
    Ok((k, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.count, p.p50, p.p99, p.max), (100, 50, 99, 100));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
        let p = Percentiles::of(&mut [7]);
        assert_eq!((p.p50, p.p99, p.max), (7, 7, 7));
    }

    #[test]
    fn own_process_is_sampled() {
        let s = proc_sample(std::process::id()).expect("/proc is readable");
        assert!(s.rss_kb > 0);
    }
}
