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
mod kick;
mod login;
mod measure;
mod soak;
use kick::run_kick;
use login::{run_login, user_name};
use measure::*;
pub use measure::{machine_busy_ms, proc_sample, ProcSample};
pub use soak::SoakArgs;

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
    /// Soak mode only
    #[command(flatten)]
    pub soak: SoakArgs,
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
    if args.mode == Mode::Soak && (args.soak.admin_url.is_none() || args.soak.admin_token.is_none())
    {
        return Err(LoadError::Args(
            "--mode soak needs --admin-url and --admin-token (kicks, pushes, final checks)".into(),
        ));
    }
    if args.mode != Mode::Soak
        && !(args.soak.also_urls.is_empty() && args.soak.also_admin_urls.is_empty())
    {
        return Err(LoadError::Args(
            "--also-url and --also-admin-url apply to --mode soak only".into(),
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
        Mode::Soak => args.sessions + args.soak.workers,
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
            Mode::Soak => {
                let mut targets = vec![target];
                for u in &args.soak.also_urls {
                    targets.push(make_target(resolve(u).await?));
                }
                soak::run_soak(&args, targets).await
            }
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

    /// `imgate load ARGS` parsed as the binary does.
    fn parse(args: &[&str]) -> LoadArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied()))
            .expect("valid arguments")
            .load
    }

    #[test]
    fn the_soak_flags_keep_their_names_and_more_nodes_are_soak_only() {
        let a = parse(&[
            "--mode",
            "soak",
            "--secs",
            "7",
            "--also-url",
            "ws://127.0.0.1:1/ws",
            "--also-url",
            "ws://127.0.0.1:2/ws",
            "--also-admin-url",
            "http://127.0.0.1:3",
        ]);
        assert_eq!(a.soak.secs, 7);
        assert_eq!(a.soak.also_urls.len(), 2);
        assert_eq!(a.soak.also_admin_urls, ["http://127.0.0.1:3"]);
        let a = parse(&["--key", "k", "--also-url", "ws://127.0.0.1:1/ws"]);
        match main(a) {
            Err(LoadError::Args(m)) => assert!(m.contains("--mode soak only"), "{m}"),
            other => panic!("expected an argument error, got {other:?}"),
        }
    }

    #[test]
    fn own_process_is_sampled() {
        let s = proc_sample(std::process::id()).expect("/proc is readable");
        assert!(s.rss_kb > 0);
    }
}
