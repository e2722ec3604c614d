//! Test harness: boots the real `imgate serve` binary on 127.0.0.1:0 with a config file and talks to
//! it with real WebSocket and HTTP clients. No fixed ports, no sleeps as synchronisation: helpers wait
//! for the event they expect, with a timeout.
#![allow(dead_code)]

pub mod redis;

use futures_util::{SinkExt, StreamExt};
use imgate::usersig::{self, SigKey};
use imgate_proto::{decode_server, encode_client, ClientMsg, Encoding, ServerMsg};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const APP: u64 = 1_400_000_000;
pub const KEY: &str = "test-key-5bd2850fff3ecb11d7c805251c51ee46";
pub const TOKEN: &str = "test-admin-token";
/// How long a helper waits for an expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running gateway process, killed on drop.
pub struct Gateway {
    child: Child,
    pub ws_url: String,
    pub admin_url: String,
    _dir: tempdir::Dir,
    /// The one-node cluster's Redis ([`Store::Redis`]), stopped after the gateway.
    _redis: Option<redis::RedisServer>,
}

/// Which presence store a test's gateway uses: the suites of contract §7 and §8 run against both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The in-process registry (no `[cluster]` table).
    Embedded,
    /// A one-node cluster with its own redis-server.
    Redis,
}

impl Store {
    /// A gateway with the default test config on this store.
    pub fn start(self) -> Gateway {
        self.start_with(&config("", ""))
    }

    /// A gateway with this config text on this store (Redis: a `[cluster]` table is appended).
    pub fn start_with(self, config_text: &str) -> Gateway {
        match self {
            Store::Embedded => Gateway::start_with(config_text),
            Store::Redis => {
                let server = redis::RedisServer::start();
                let text = format!(
                    "{config_text}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"solo\"\nlease_ms = 2000\nheartbeat_ms = 500\nreconcile_secs = 1\nredis_timeout_ms = 500\n",
                    server.url()
                );
                let mut gw = Gateway::start_with(&text);
                gw._redis = Some(server);
                gw
            }
        }
    }
}

/// Runs an `async fn name(store: Store)` test once per store, as `name::embedded` and
/// `name::redis`; extra tokens go to `#[tokio::test(...)]`.
#[macro_export]
macro_rules! on_both_stores {
    ($name:ident $(, $($arg:tt)*)?) => {
        mod $name {
            #[tokio::test$(($($arg)*))?]
            async fn embedded() {
                super::$name($crate::common::Store::Embedded).await
            }
            #[tokio::test$(($($arg)*))?]
            async fn redis() {
                super::$name($crate::common::Store::Redis).await
            }
        }
    };
}

mod tempdir {
    use std::path::PathBuf;
    /// A directory removed on drop.
    pub struct Dir(pub PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "imgate-test-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The base config: both listeners on free ports, the test app (dual policy) with `app_extra` lines
/// appended inside its `[[app]]` table, and `top` lines at the top level.
pub fn config(top: &str, app_extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n{top}\n\n[[app]]\nsdk_app_id = {APP}\nkey = \"{KEY}\"\n{app_extra}\n"
    )
}

impl Gateway {
    /// Boots a gateway with the default test config.
    pub fn start() -> Gateway {
        Gateway::start_with(&config("", ""))
    }

    /// Boots a gateway with this config text.
    pub fn start_with(config_text: &str) -> Gateway {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("imgate.toml");
        std::fs::write(&path, config_text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgate"));
        cmd.args(["serve", "--config"]).arg(&path);
        Gateway::spawn(cmd, dir).0
    }

    /// Boots the development gateway (no config file) on free ports; returns it with the lines it
    /// printed before its listeners.
    pub fn start_dev() -> (Gateway, Vec<String>) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgate"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        Gateway::spawn(cmd, tempdir::Dir::new())
    }

    fn spawn(mut cmd: Command, dir: tempdir::Dir) -> (Gateway, Vec<String>) {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("IMGATE_TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("imgate binary runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // nobody listens any more; keep draining so the child never blocks
                }
            }
        });
        let (mut ws_url, mut admin_url) = (None, None);
        let mut printed = Vec::new();
        while ws_url.is_none() || admin_url.is_none() {
            let line = rx
                .recv_timeout(WAIT)
                .expect("the gateway prints its announce lines");
            printed.push(line.clone());
            if let Some(i) = line.find("listening on ws") {
                if !line.contains("admin") {
                    ws_url = Some(line[i + "listening on ".len()..].trim().to_owned());
                }
            }
            if let Some(i) = line.find("admin listening on http://") {
                admin_url = Some(line[i + "admin listening on ".len()..].trim().to_owned());
            }
        }
        let gw = Gateway {
            child,
            ws_url: ws_url.unwrap(),
            admin_url: admin_url.unwrap(),
            _dir: dir,
            _redis: None,
        };
        (gw, printed)
    }

    /// The config file the gateway was started with (a test may rewrite it and reload).
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.0.join("imgate.toml")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status (bounded).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "gateway did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url).await
    }

    /// A connected client logged in as `user` on `platform` (panics unless code 0).
    pub async fn logged_in(&self, user: &str, platform: &str, iid: Option<&str>) -> Client {
        let mut c = self.client().await;
        let r = c.login(user, platform, iid).await;
        assert_eq!(r["code"], 0, "login failed: {r}");
        c
    }

    /// GET on the admin listener with the token.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        http(&self.admin_url, "GET", path, Some(TOKEN), None).await
    }

    /// POST JSON on the admin listener with the token.
    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        http(
            &self.admin_url,
            "POST",
            path,
            Some(TOKEN),
            Some(body.to_string()),
        )
        .await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UserSig for `user` with the test key, valid for `expire` seconds from `time`.
pub fn sig_at(user: &str, time: u64, expire: u64) -> String {
    usersig::generate(&SigKey::new(KEY), APP, user, expire, time, None)
}

/// A UserSig for `user`, valid for a day.
pub fn sig(user: &str) -> String {
    sig_at(user, now_secs(), 86_400)
}

pub fn now_secs() -> u64 {
    imgate::clock::now_secs()
}

/// One HTTP/1.1 request ([`imgate_load::http::request`]): (status, JSON body or `Value::String`
/// of a non-JSON body).
pub async fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let body = body.unwrap_or_default();
    let (status, body) = imgate_load::http::request(base, method, path, token, &body, WAIT)
        .await
        .unwrap_or_else(|e| panic!("HTTP {method} {path}: {e}"));
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, v)
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a client saw when it expected the socket to close.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16, String),
    /// Closed without a close frame.
    NoFrame,
}

/// A real WebSocket client.
pub struct Client {
    pub ws: Ws,
    seq: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("WebSocket connects");
        Client { ws, seq: 0 }
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Sends a JSON value as a text frame.
    pub async fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends a request in bincode (binary frame).
    pub async fn send_bincode(&mut self, msg: &ClientMsg) {
        let bytes = encode_client(Encoding::Bincode, msg);
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next data frame as JSON (text frames) or decoded bincode (binary frames, re-expressed as
    /// JSON); panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        match self.recv_frame().await {
            Some(Message::Text(t)) => serde_json::from_str(t.as_str()).expect("server sends JSON"),
            Some(Message::Binary(b)) => {
                let m =
                    decode_server(Encoding::Bincode, &b, 1 << 20).expect("server sends bincode");
                serde_json::to_value(m).unwrap()
            }
            other => panic!("expected a data frame, got {other:?}"),
        }
    }

    /// The next binary frame decoded as a ServerMsg.
    pub async fn recv_bincode(&mut self) -> ServerMsg {
        match self.recv_frame().await {
            Some(Message::Binary(b)) => {
                decode_server(Encoding::Bincode, &b, 1 << 20).expect("server sends bincode")
            }
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// The next data or close frame (pings and pongs skipped); None when the stream ended.
    pub async fn recv_frame(&mut self) -> Option<Message> {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            match m {
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Waits until the server closes the socket; returns the close code it sent.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match self.recv_frame().await {
                Some(Message::Close(Some(f))) => {
                    return Closed::Code(u16::from(f.code), f.reason.to_string())
                }
                Some(Message::Close(None)) | None => return Closed::NoFrame,
                Some(_) => continue,
            }
        }
    }

    /// For a client that never read (so never answered the server's pings): the close code the
    /// server sent, read from the raw bytes up to the server's FIN without writing anything. (Through
    /// the WebSocket layer, reading the buffered pings writes their pongs to a socket the server has
    /// closed; the reset that comes back makes the kernel drop the unread close frame.)
    pub async fn close_code_unanswered(self) -> Option<u16> {
        use tokio::io::AsyncReadExt;
        let MaybeTlsStream::Plain(mut tcp) = self.ws.into_inner() else {
            panic!("a plain ws:// client");
        };
        let mut bytes = Vec::new();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut bytes)).await;
        let mut cursor = std::io::Cursor::new(&bytes[..]);
        while let Ok(Some((header, len))) = FrameHeader::parse(&mut cursor) {
            let start = cursor.position() as usize;
            let payload = bytes.get(start..start + len as usize)?;
            if header.opcode == OpCode::Control(Control::Close) {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
            cursor.set_position((start + len as usize) as u64);
        }
        None
    }

    /// Asserts the next event is a close with `code`.
    pub async fn expect_close(&mut self, code: u16) {
        match self.recv_frame().await {
            Some(Message::Close(Some(f))) => assert_eq!(u16::from(f.code), code, "close {f:?}"),
            other => panic!("expected close {code}, got {other:?}"),
        }
    }

    /// Sends a request (the `seq` is set here) and returns its response.
    pub async fn request(&mut self, mut v: Value) -> Value {
        let seq = self.next_seq();
        v["seq"] = seq.into();
        self.send_json(&v).await;
        let r = self.recv().await;
        assert_eq!(r["type"], "response", "expected the response, got {r}");
        assert_eq!(r["seq"], seq, "responses come in order");
        r
    }

    pub async fn login_with_sig(
        &mut self,
        user: &str,
        platform: &str,
        iid: Option<&str>,
        user_sig: &str,
    ) -> Value {
        let mut v = serde_json::json!({
            "type": "login", "sdk_app_id": APP, "user_id": user,
            "user_sig": user_sig, "platform": platform,
        });
        if let Some(i) = iid {
            v["instance_id"] = i.into();
        }
        self.request(v).await
    }

    pub async fn login(&mut self, user: &str, platform: &str, iid: Option<&str>) -> Value {
        self.login_with_sig(user, platform, iid, &sig(user)).await
    }

    /// Sends a close frame with this code.
    pub async fn close(&mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
    }
}

impl Client {
    /// Connects from the local address `local_ip` (any of 127.0.0.0/8 on Linux, to appear as another
    /// client IP) and, when given, with that kernel receive buffer size (a slow reader fills up fast).
    pub async fn connect_with(
        url: &str,
        local_ip: std::net::IpAddr,
        recv_buffer: Option<u32>,
    ) -> Client {
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("a ws:// URL");
        let addr: std::net::SocketAddr = host.parse().expect("the gateway URL is IP:PORT");
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .unwrap();
        socket
            .bind(std::net::SocketAddr::new(local_ip, 0))
            .expect("bind the client address");
        if let Some(n) = recv_buffer {
            socket.set_recv_buffer_size(n).unwrap();
        }
        let tcp = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect in time")
            .expect("TCP connects");
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)),
        )
        .await
        .expect("upgrade in time")
        .expect("WebSocket connects");
        Client { ws, seq: 0 }
    }
}

impl Gateway {
    /// Sends SIGTERM without waiting (see [`Gateway::wait_exit`]).
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (blocking) for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateway did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
