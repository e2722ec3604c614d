//! The processes of a run: one `redis-server` and the `imgate serve` nodes, each node talking to
//! Redis through its own [`FaultProxy`].
//!
//! What it owns: writing the node configs, starting, SIGSTOP/SIGCONT, SIGKILL and restarting the
//! processes (a restarted node is a new process and so a new node id), knowing which process
//! generation of a node a socket was connected to and when each was killed, and the admin API
//! calls the checker makes. Every child is killed when this is dropped.
//! What it does not own: the schedule or the clients.

use crate::proxy::FaultProxy;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

pub const APP: u64 = 1_400_000_000;
pub const KEY: &str = "chaos-key-5bd2850fff3ecb11d7c805251c51ee46";
pub const TOKEN: &str = "chaos-admin-token";

/// Node settings that decide how fast the cluster converges.
pub const LEASE_MS: u64 = 2_000;
pub const HEARTBEAT_MS: u64 = 500;
pub const RECONCILE_SECS: u64 = 2;
pub const REDIS_TIMEOUT_MS: u64 = 500;

/// Starts of a node process tried before giving up.
const START_TRIES: usize = 20;
/// How long a process may take to come up.
const START_WAIT: Duration = Duration::from_secs(15);

/// The multi-device policy the nodes run, as config lines inside `[[app]]`; [`crate::policy`]
/// models the same one.
pub const POLICY_TOML: &str = "policy = \"triple\"\n[app.max_instances]\nweb = 2\nmac = 2\n";

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The redis-server child.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// Starts redis-server on a free port (probed by binding port 0; retried if taken meanwhile).
    pub async fn start(bin: &str, dir: &Path) -> Result<Redis, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let mut child = Command::new(bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run {bin}: {e}"))?;
            let deadline = Instant::now() + START_WAIT;
            loop {
                if let Ok(Some(st)) = child.try_wait() {
                    last = format!("redis-server exited with {st} on port {port}");
                    break;
                }
                if ping(port).await {
                    return Ok(Redis { child, port });
                }
                if Instant::now() > deadline {
                    last = format!("no PONG on port {port}");
                    let _ = child.kill().await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Err(last)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl Redis {
    /// Takes a dead node's sweep lock (`im:sweep:<id>`, as a survivor whose sweep failed midway
    /// leaves it) for `ms`, so that nobody sweeps that node meanwhile. Straight to Redis, not
    /// through a proxy. Whether Redis took it (false: someone holds it already).
    pub async fn hold_sweep_lock(&self, node_id: &str, ms: u64) -> bool {
        let talk = async {
            let mut con = connect(self.port).await.ok()?;
            redis::cmd("SET")
                .arg(format!("im:sweep:{node_id}"))
                .arg("chaos")
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async::<Option<String>>(&mut con)
                .await
                .ok()
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), talk).await,
            Ok(Some(Some(_)))
        )
    }
}

/// One presence entry as stored in Redis: (user, platform, instance id, node id).
pub type Stored = (String, String, Option<String>, String);

impl Redis {
    /// Every presence entry of these users, read straight from Redis (`HGETALL im:{A:U}`), dead
    /// nodes' entries included (which `/v1/online` hides).
    pub async fn entries(&self, users: &[String]) -> Result<Vec<Stored>, String> {
        let talk = async {
            let mut con = connect(self.port).await?;
            let mut out = Vec::new();
            for user in users {
                let fields: Vec<(String, String)> = redis::cmd("HGETALL")
                    .arg(format!("im:{{{APP}:{user}}}"))
                    .query_async(&mut con)
                    .await
                    .map_err(|e| e.to_string())?;
                for (field, value) in fields {
                    if !field.starts_with("e:") {
                        continue;
                    }
                    // sid|node|order|expire_at|platform|ip|iid ('' none)
                    let p: Vec<&str> = value.splitn(7, '|').collect();
                    if p.len() != 7 {
                        return Err(format!("entry value {value:?}"));
                    }
                    out.push((
                        user.clone(),
                        p[4].to_owned(),
                        Some(p[6].to_owned()).filter(|i| !i.is_empty()),
                        p[1].to_owned(),
                    ));
                }
            }
            Ok(out)
        };
        tokio::time::timeout(Duration::from_secs(5), talk)
            .await
            .map_err(|_| "Redis did not answer".to_owned())?
    }
}

/// A connection straight to the run's redis-server (not through a proxy).
async fn connect(port: u16) -> Result<redis::aio::MultiplexedConnection, String> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .map_err(|e| e.to_string())?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())
}

async fn ping(port: u16) -> bool {
    let talk = async {
        let mut con = connect(port).await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), talk).await,
        Ok(Some(pong)) if pong == "PONG"
    )
}

/// One node process (a generation of a node slot).
struct Proc {
    child: Child,
    pid: u32,
    ws_url: String,
    admin_url: String,
    generation: usize,
    stopped: bool,
}

/// What became of each generation of a node: when it was killed (ms since the epoch).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub killed_at: Vec<Option<u64>>,
    /// (generation, SIGSTOP ms, SIGCONT ms) of each stop.
    pub stops: Vec<(usize, u64, u64)>,
}

/// One node slot: its proxy, and its current process if one runs.
pub struct Node {
    pub index: usize,
    pub proxy: FaultProxy,
    config: PathBuf,
    log_dir: PathBuf,
    bin: PathBuf,
    current: Mutex<Option<Proc>>,
    history: Mutex<History>,
}

/// Where a client reaches a node now.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub ws_url: String,
    pub generation: usize,
}

impl Node {
    /// Writes the node's config (Redis through `proxy`) and starts its first process.
    pub async fn start(
        index: usize,
        bin: &Path,
        dir: &Path,
        proxy: FaultProxy,
    ) -> Result<Node, String> {
        let config = dir.join(format!("node{index}.toml"));
        let node = Node {
            index,
            proxy,
            config,
            log_dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            current: Mutex::new(None),
            history: Mutex::new(History::default()),
        };
        node.spawn().await?;
        Ok(node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Proc>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hist(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a new process for this slot and waits for its two announce lines.
    ///
    /// A node refuses to start when it cannot reach Redis (contract §12), which a proxy fault can
    /// cause: it is tried again, a new process (and node id) each time, up to [`START_TRIES`].
    pub async fn spawn(&self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..START_TRIES {
            match self.spawn_once().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(last)
    }

    async fn spawn_once(&self) -> Result<(), String> {
        let generation = {
            let mut h = self.hist();
            h.killed_at.push(None);
            h.killed_at.len() - 1
        };
        let stem = format!("node{}-gen{generation}", self.index);
        // Each process its own node id (as a restart without `node_id` would get), known to the
        // driver so that it can hold that node's sweep lock.
        std::fs::write(
            &self.config,
            node_config(self.proxy.addr(), &node_id(self.index, generation)),
        )
        .map_err(|e| format!("{}: {e}", self.config.display()))?;
        let stderr = std::fs::File::create(self.log_dir.join(format!("{stem}.err")))
            .map_err(|e| e.to_string())?;
        let mut child = Command::new(&self.bin)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let out_path = self.log_dir.join(format!("{stem}.out"));
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut out = tokio::fs::File::create(out_path).await.ok();
            let (mut ws, mut admin, mut tx) = (None, None, Some(tx));
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = out.as_mut() {
                    let _ = f.write_all(format!("{line}\n").as_bytes()).await;
                }
                if let Some(i) = line.find("admin listening on http://") {
                    admin = Some(line[i + "admin listening on ".len()..].trim().to_owned());
                } else if let Some(i) = line.find("listening on ws://") {
                    ws = Some(line[i + "listening on ".len()..].trim().to_owned());
                }
                if let (Some(w), Some(a)) = (&ws, &admin) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((w.clone(), a.clone()));
                    }
                }
            }
        });
        let (ws_url, admin_url) = match tokio::time::timeout(START_WAIT, rx).await {
            Ok(Ok(urls)) => urls,
            _ => {
                let _ = child.kill().await;
                return Err(format!(
                    "node {} did not announce its addresses (see {}/{stem}.err)",
                    self.index,
                    self.log_dir.display()
                ));
            }
        };
        *self.lock() = Some(Proc {
            child,
            pid,
            ws_url,
            admin_url,
            generation,
            stopped: false,
        });
        Ok(())
    }

    /// Where to connect now; None while the node is down.
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.lock().as_ref().map(|p| Endpoint {
            ws_url: p.ws_url.clone(),
            generation: p.generation,
        })
    }

    pub fn admin_url(&self) -> Option<String> {
        self.lock().as_ref().map(|p| p.admin_url.clone())
    }

    fn signal(&self, sig: &str) -> bool {
        let Some(pid) = self.lock().as_ref().map(|p| p.pid) else {
            return false;
        };
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The node id of the current process.
    pub fn current_id(&self) -> Option<String> {
        self.lock()
            .as_ref()
            .map(|p| node_id(self.index, p.generation))
    }

    /// SIGSTOP: the process freezes (its sockets stay open, nothing is answered).
    pub fn stop(&self) -> bool {
        let ok = self.signal("-STOP");
        let generation = self.lock().as_mut().map(|p| {
            p.stopped = ok;
            p.generation
        });
        if let (true, Some(g)) = (ok, generation) {
            self.hist().stops.push((g, now_ms(), u64::MAX));
        }
        ok
    }

    /// SIGCONT after [`Node::stop`].
    pub fn cont(&self) -> bool {
        let ok = self.signal("-CONT");
        if let Some(p) = self.lock().as_mut() {
            p.stopped = false;
        }
        if let Some(last) = self.hist().stops.last_mut().filter(|s| s.2 == u64::MAX) {
            last.2 = now_ms();
        }
        ok
    }

    /// SIGKILL and reap; the slot is down until [`Node::spawn`].
    pub async fn kill(&self) -> bool {
        let Some(mut p) = self.lock().take() else {
            return false;
        };
        self.hist().killed_at[p.generation] = Some(now_ms());
        let _ = p.child.kill().await;
        true
    }

    /// Makes sure a process runs and is not frozen (the calm phase).
    pub async fn ensure_up(&self) -> Result<(), String> {
        let stopped = self.lock().as_ref().map(|p| p.stopped);
        match stopped {
            Some(true) => {
                self.cont();
                Ok(())
            }
            Some(false) => Ok(()),
            None => self.spawn().await,
        }
    }

    /// Whether the current process still runs (it did not exit by itself).
    pub fn alive(&self) -> bool {
        self.lock()
            .as_mut()
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    pub fn history(&self) -> History {
        self.hist().clone()
    }

    /// SIGTERM and wait (bounded): a clean leave, at the end of the run.
    pub async fn terminate(&self) {
        let Some(mut p) = self.lock().take() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &p.pid.to_string()])
            .status();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &p.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), p.child.wait())
            .await
            .is_err()
        {
            let _ = p.child.kill().await;
        }
    }
}

/// The node id of a node's process generation.
pub fn node_id(index: usize, generation: usize) -> String {
    format!("chaos{index}-g{generation}")
}

/// A node's config: the test app with the chaos policy, cluster mode through its proxy, generous
/// socket timeouts (the clients sit idle on purpose) and the fast lease and reconcile of the tests.
pub fn node_config(redis: SocketAddr, node_id: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n\
         login_timeout_secs = 600\nidle_timeout_secs = 600\nping_interval_secs = 300\n\
         max_connections = 4000\nmax_pending = 2000\nmax_pending_per_ip = 2000\n\
         max_requests_per_sec = 1000\nmax_frames_per_sec = 2000\nshutdown_grace_secs = 2\n\n\
         [[app]]\nsdk_app_id = {APP}\nkey = \"{KEY}\"\n{POLICY_TOML}\n\
         [cluster]\nredis_url = \"redis://{redis}\"\nnode_id = \"{node_id}\"\nlease_ms = {LEASE_MS}\n\
         heartbeat_ms = {HEARTBEAT_MS}\nreconcile_secs = {RECONCILE_SECS}\n\
         redis_timeout_ms = {REDIS_TIMEOUT_MS}\n"
    )
}

/// `GET` on an admin listener with the token: (status, JSON body), bounded by `within`.
pub async fn admin_get(base: &str, path: &str, within: Duration) -> Result<(u16, Value), String> {
    let (status, body) =
        imgate_load::http::request(base, "GET", path, Some(TOKEN), "", within).await?;
    Ok((
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ))
}
