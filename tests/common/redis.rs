//! A `redis-server` child process for the cluster-mode tests (tests/cluster.rs declares this module).
//!
//! Each server gets a free port (bind 127.0.0.1:0, drop, retry when the port was taken meanwhile)
//! and its own directory; it is killed on drop. `stop()` ends it with SIGTERM and waits,
//! `kill()` with SIGKILL, `restart()` starts it again on the same port (with the AOF variant it
//! reloads its data, without it it comes back empty).
//!
//! A missing `redis-server` is a loud failure, never a skip: install it with
//! `scripts/redis-setup.sh` (or point `REDIS_SERVER` at a binary).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to answer PING.
const START_WAIT: Duration = Duration::from_secs(5);

fn binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// A running (or stopped) redis-server child.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    aof: bool,
}

impl RedisServer {
    /// A server without persistence: a restart comes back empty.
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// A server with `appendonly yes`: a restart keeps the data.
    pub fn start_aof() -> RedisServer {
        RedisServer::start_with(true)
    }

    fn start_with(aof: bool) -> RedisServer {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "imgate-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            match spawn(port, &dir, aof) {
                Ok(child) => {
                    return RedisServer {
                        child: Some(child),
                        port,
                        dir,
                        aof,
                    }
                }
                // most likely the port was taken between the probe and the spawn: another port
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGTERM, then waits for the exit (a clean shutdown: the AOF is flushed).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server did not stop on SIGTERM within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then waits for the exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server hangs (connections stay open, nothing is answered) until [`resume`].
    ///
    /// [`resume`]: RedisServer::resume
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`pause`](RedisServer::pause).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} failed");
    }

    /// Starts the stopped server again on the same port (retrying briefly while the port is busy).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() of a running redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match spawn(self.port, &self.dir, self.aof) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() > deadline => {
                    panic!("redis-server did not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// A multiplexed connection (panics when the server does not answer).
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis-server")
    }

    /// A connection manager, as the gateway uses.
    pub async fn manager(&self) -> redis::aio::ConnectionManager {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_manager()
            .await
            .expect("connect to the test redis-server")
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Spawns redis-server on `port` and waits until it answers PING.
fn spawn(port: u16, dir: &std::path::Path, aof: bool) -> Result<Child, String> {
    let port_s = port.to_string();
    let log = dir.join("redis.log");
    let mut child = match Command::new(binary())
        .args(["--port", &port_s, "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", if aof { "yes" } else { "no" }])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "redis-server is not installed, and tests/cluster.rs needs it (redis 7.0 or later): \
             run scripts/redis-setup.sh, or set REDIS_SERVER to the binary ({e})"
        ),
        Err(e) => panic!("cannot run {}: {e}", binary()),
    };
    let deadline = Instant::now() + START_WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            return Err(format!("exited with {status} on port {port}: {tail:?}"));
        }
        if ping(port) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no PONG on port {port} within {START_WAIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw RESP PING; true on `+PONG` (a server still loading its AOF answers `-LOADING`).
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].starts_with(b"+PONG"),
        Err(_) => false,
    }
}
