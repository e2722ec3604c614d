//! Contract §14 end to end, through real sockets against the real binary: TLS (a real TLS client,
//! certificate checks at start, certificate rotation by reload), `allowed_origins`, the client
//! address from PROXY v1/v2 headers written by the test and from `X-Forwarded-For` of trusted and
//! untrusted peers, `max_connections_per_ip`, live reload (SIGHUP and `POST /v1/reload`: apps added,
//! changed and removed, a bad file, what cannot change live, a reload racing logins) and key
//! rotation with `previous_keys`.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

// ---------------------------------------------------------------------------------------------
// helpers

fn top(lines: &str) -> String {
    config(lines, "")
}

/// The host:port of a ws:// or wss:// URL.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// Upgrades over `stream` with extra headers; the HTTP status when refused.
async fn upgrade_with<S>(
    url: &str,
    stream: S,
    headers: &[(&str, &str)],
) -> Result<tokio_tungstenite::WebSocketStream<S>, u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, stream)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(resp))) => Err(resp.status().as_u16()),
        Ok(Err(e)) => panic!("upgrade failed: {e}"),
        Err(_) => panic!("no answer to the upgrade"),
    }
}

async fn tcp_from(local: IpAddr, to: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(local, 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// Logs in on an upgraded socket; the response.
async fn login_on<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, user: &str) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let m = json!({"type":"login","seq":1,"sdk_app_id":APP,"user_id":user,"user_sig":sig(user),"platform":"web"});
    ws.send(Message::text(m.to_string())).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("no login answer: {other:?}"),
        }
    }
}

/// Reads until the server closes (bounded): what it sent first.
async fn until_closed(mut s: TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("not closed in time; got {all:?}"),
        }
    }
}

/// Whether the server closed the connection without a byte of answer (within the wait).
async fn closed_silently(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(WAIT, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A webhook receiver that records each event's `ClientIP` per user.
struct Hook {
    url: String,
    hits: Arc<Mutex<Vec<(String, String)>>>,
}

async fn hook() -> Hook {
    use axum::extract::{RawQuery, State};
    type Hits = Arc<Mutex<Vec<(String, String)>>>;
    async fn take(
        State(hits): State<Hits>,
        RawQuery(q): RawQuery,
        body: axum::body::Bytes,
    ) -> &'static str {
        let ip = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "ClientIP")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let user = v["Info"]["To_Account"].as_str().unwrap_or("").to_owned();
        hits.lock().unwrap().push((user, ip));
        "ok"
    }
    let hits: Hits = Arc::default();
    let app = axum::Router::new()
        .route("/cb", axum::routing::post(take))
        .with_state(Arc::clone(&hits));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    Hook { url, hits }
}

impl Hook {
    /// The ClientIP of the user's first event (waits for it).
    async fn client_ip(&self, user: &str) -> String {
        for _ in 0..250 {
            if let Some((_, ip)) = self.hits.lock().unwrap().iter().find(|(u, _)| u == user) {
                return ip.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no webhook event for {user}");
    }
}

fn webhook_app(url: &str) -> String {
    format!("[app.webhook]\nurl = \"{url}\"\n")
}

// ---------------------------------------------------------------------------------------------
// TLS

struct Cert {
    dir: PathBuf,
    der: Vec<u8>,
}

/// A self-signed certificate for localhost / 127.0.0.1 written as PEM files into `dir`.
fn cert_into(dir: &Path, name: &str) -> Cert {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), c.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        c.signing_key.serialize_pem(),
    )
    .unwrap();
    Cert {
        dir: dir.to_owned(),
        der: c.cert.der().to_vec(),
    }
}

fn tls_table(c: &Cert, name: &str) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        c.dir.join(format!("{name}.pem")).display(),
        c.dir.join(format!("{name}.key")).display()
    )
}

/// A TLS connection trusting `roots`; the certificate the server presented.
async fn tls_connect(
    to: SocketAddr,
    roots: &[&[u8]],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store
            .add(rustls::pki_types::CertificateDer::from(r.to_vec()))
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let tcp = TcpStream::connect(to).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (tls, presented)
}

fn tmp() -> tempfile_dir::Dir {
    tempfile_dir::Dir::new()
}

mod tempfile_dir {
    use std::path::PathBuf;
    pub struct Dir(pub PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("imgate-edge-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test]
async fn tls_serves_wss_and_bounds_the_handshake() {
    let dir = tmp();
    let cert = cert_into(&dir.0, "a");
    let gw = Gateway::start_with(&top(&format!(
        "login_timeout_secs = 2\n{}",
        tls_table(&cert, "a")
    )));
    assert!(gw.ws_url.starts_with("wss://"), "{}", gw.ws_url);
    let to = addr_of(&gw.ws_url);
    let (tls, presented) = tls_connect(to, &[&cert.der]).await;
    assert_eq!(presented, cert.der);
    let url = format!("wss://localhost:{}/ws", to.port());
    let mut ws = upgrade_with(&url, tls, &[])
        .await
        .expect("upgraded over TLS");
    let r = login_on(&mut ws, "alice").await;
    assert_eq!(r["code"], 0, "{r}");
    // plain HTTP on the TLS port: no WebSocket
    let plain = TcpStream::connect(to).await.unwrap();
    let url_plain = format!("ws://{to}/ws");
    let refused =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url_plain, plain)).await;
    assert!(matches!(refused, Ok(Err(_))), "{refused:?}");
    // garbage instead of a ClientHello: closed, the gateway stays up
    let mut g = TcpStream::connect(to).await.unwrap();
    g.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0x00])
        .await
        .unwrap();
    g.write_all(&vec![0xAB; 4096]).await.unwrap();
    let sent = until_closed(g).await;
    assert!(
        sent.len() < 16 && !sent.starts_with(b"HTTP"),
        "at most a TLS alert: {sent:?}"
    );
    // a client that never completes its handshake is closed by the login deadline
    let idle = TcpStream::connect(to).await.unwrap();
    let t0 = std::time::Instant::now();
    assert!(closed_silently(idle).await);
    assert!(
        t0.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        t0.elapsed()
    );
    // the first socket still works
    ws.send(Message::text(json!({"type":"ping","seq":2}).to_string()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(pong.to_text().unwrap().contains("server_time_ms"));
}

/// `imgate serve` with this config: the exit status and stderr (it must refuse to start).
fn refused_start(text: &str) -> (Option<i32>, String) {
    let dir = tmp();
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_certificates_and_keys_are_refused_at_start_naming_file_and_key() {
    let dir = tmp();
    let a = cert_into(&dir.0, "a");
    let _b = cert_into(&dir.0, "b");
    let p = |n: &str| dir.0.join(n).display().to_string();
    let cases = [
        (
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                p("missing.pem"),
                p("a.key")
            ),
            "tls.cert",
        ),
        (
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                p("a.key"),
                p("a.key")
            ),
            "tls.cert",
        ),
        (
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                p("a.pem"),
                p("a.pem")
            ),
            "tls.key",
        ),
        (
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                p("a.pem"),
                p("b.key")
            ),
            "tls.key",
        ),
    ];
    for (tls, key) in cases {
        let (code, err) = refused_start(&top(&tls));
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("bad.toml") && err.contains(key),
            "{key}: {err}"
        );
    }
    let _ = a;
}

#[tokio::test]
async fn a_reload_rotates_the_certificate_for_new_handshakes_only() {
    let dir = tmp();
    let first = cert_into(&dir.0, "live");
    let gw = Gateway::start_with(&top(&tls_table(&first, "live")));
    let to = addr_of(&gw.ws_url);
    let url = format!("wss://localhost:{}/ws", to.port());
    let (tls, presented) = tls_connect(to, &[&first.der]).await;
    assert_eq!(presented, first.der);
    let mut old = upgrade_with(&url, tls, &[]).await.unwrap();
    assert_eq!(login_on(&mut old, "alice").await["code"], 0);
    // renewed in place at the same paths
    let second = cert_into(&dir.0, "live");
    let (st, v) = gw.admin_post("/v1/reload", &json!({})).await;
    assert_eq!(st, 200, "{v}");
    let (_, presented) = tls_connect(to, &[&first.der, &second.der]).await;
    assert_eq!(
        presented, second.der,
        "new handshakes use the new certificate"
    );
    old.send(Message::text(json!({"type":"ping","seq":2}).to_string()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, old.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        pong.to_text().unwrap().contains("server_time_ms"),
        "the open socket stays"
    );
}

// ---------------------------------------------------------------------------------------------
// Origin

#[tokio::test]
async fn allowed_origins_accept_exact_and_subdomains_and_refuse_the_rest_with_403() {
    let gw = Gateway::start_with(&top(
        r#"allowed_origins = ["https://app.example.com", "https://*.example.com", "http://localhost:3000"]"#,
    ));
    let to = addr_of(&gw.ws_url);
    for (origin, want) in [
        (Some("https://app.example.com"), None),
        (Some("https://a.b.example.com"), None),
        (Some("http://localhost:3000"), None),
        (None, None),
        (Some("https://example.com"), Some(403)),
        (Some("https://evil.org"), Some(403)),
        (Some("http://app.example.com"), Some(403)),
        (Some("null"), Some(403)),
    ] {
        let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("Origin", *o)).collect();
        let s = TcpStream::connect(to).await.unwrap();
        let got = upgrade_with(&gw.ws_url, s, &headers).await.err();
        assert_eq!(got, want, "{origin:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// client address

fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.extend([0x21, 0x11, 0x00, 12]);
            h.extend(s.ip().octets());
            h.extend(d.ip().octets());
            h.extend(s.port().to_be_bytes());
            h.extend(d.port().to_be_bytes());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            h.extend([0x21, 0x21, 0x00, 36]);
            h.extend(s.ip().octets());
            h.extend(d.ip().octets());
            h.extend(s.port().to_be_bytes());
            h.extend(d.port().to_be_bytes());
        }
        _ => unreachable!(),
    }
    h
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_name_the_client() {
    let hook = hook().await;
    let gw = Gateway::start_with(&config(
        "proxy_protocol = true\nmax_connections_per_ip = 1\nlogin_timeout_secs = 3",
        &webhook_app(&hook.url),
    ));
    let to = addr_of(&gw.ws_url);
    let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
    let v1 = |ip: &str| format!("PROXY TCP4 {ip} 198.51.100.1 40000 443\r\n").into_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("v1user", v1("203.0.113.10"), "203.0.113.10"),
        (
            "v2user",
            proxy_v2("203.0.113.20:5000".parse().unwrap(), dst),
            "203.0.113.20",
        ),
        (
            "v6user",
            proxy_v2(
                "[2001:db8::7]:5000".parse().unwrap(),
                "[2001:db8::1]:443".parse().unwrap(),
            ),
            "2001:db8::7",
        ),
        ("unknown", b"PROXY UNKNOWN\r\n".to_vec(), "127.0.0.1"),
    ];
    let mut keep = Vec::new();
    for (user, header, want) in cases {
        let mut s = TcpStream::connect(to).await.unwrap();
        s.write_all(&header).await.unwrap();
        let mut ws = upgrade_with(&gw.ws_url, s, &[]).await.expect(user);
        assert_eq!(login_on(&mut ws, user).await["code"], 0);
        assert_eq!(hook.client_ip(user).await, want, "{user}");
        keep.push(ws);
    }
    // the per-address cap counts the PROXY source: another socket "from" 203.0.113.10 is refused
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(&v1("203.0.113.10")).await.unwrap();
    assert_eq!(upgrade_with(&gw.ws_url, s, &[]).await.err(), Some(429));
    // a connection that does not start with a header, or announces a huge one: closed silently
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_silently(s).await);
    let mut huge = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    huge.extend([0x21, 0x11, 0xff, 0xff]);
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(&huge).await.unwrap();
    assert!(closed_silently(s).await);
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(&vec![0x42; 300]).await.unwrap();
    assert!(closed_silently(s).await);
    // silence: closed by the login deadline
    assert!(closed_silently(TcpStream::connect(to).await.unwrap()).await);
    // everyone else still works
    for ws in &mut keep {
        ws.send(Message::text(json!({"type":"ping","seq":9}).to_string()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let hook = hook().await;
    let gw = Gateway::start_with(&config(
        "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]",
        &webhook_app(&hook.url),
    ));
    let to = addr_of(&gw.ws_url);
    let local = |s: &str| s.parse::<IpAddr>().unwrap();
    let cases = [
        ("trusted", "127.0.0.1", "198.51.100.9", "198.51.100.9"),
        (
            "chain",
            "127.0.0.1",
            "6.6.6.6, 198.51.100.8, 10.1.1.1",
            "198.51.100.8",
        ),
        ("alltrusted", "127.0.0.1", "10.9.9.9", "127.0.0.1"),
        ("untrusted", "127.0.0.2", "198.51.100.7", "127.0.0.2"),
        ("garbage", "127.0.0.1", "not-an-ip", "127.0.0.1"),
    ];
    let mut keep = Vec::new();
    for (user, from, xff, want) in cases {
        let s = tcp_from(local(from), to).await;
        let mut ws = upgrade_with(&gw.ws_url, s, &[("X-Forwarded-For", xff)])
            .await
            .expect(user);
        assert_eq!(login_on(&mut ws, user).await["code"], 0);
        assert_eq!(hook.client_ip(user).await, want, "{user}");
        keep.push(ws);
    }
}

#[tokio::test]
async fn max_connections_per_ip_answers_429_and_frees_on_close() {
    let gw = Gateway::start_with(&top("max_connections_per_ip = 2"));
    let to = addr_of(&gw.ws_url);
    let a: IpAddr = "127.0.0.3".parse().unwrap();
    let b: IpAddr = "127.0.0.4".parse().unwrap();
    let mut first = upgrade_with(&gw.ws_url, tcp_from(a, to).await, &[])
        .await
        .unwrap();
    let _second = upgrade_with(&gw.ws_url, tcp_from(a, to).await, &[])
        .await
        .unwrap();
    assert_eq!(
        upgrade_with(&gw.ws_url, tcp_from(a, to).await, &[])
            .await
            .err(),
        Some(429)
    );
    let _other = upgrade_with(&gw.ws_url, tcp_from(b, to).await, &[])
        .await
        .expect("other address");
    first.close(None).await.unwrap();
    while tokio::time::timeout(WAIT, first.next())
        .await
        .unwrap()
        .is_some()
    {}
    let mut again = None;
    for _ in 0..100 {
        match upgrade_with(&gw.ws_url, tcp_from(a, to).await, &[]).await {
            Ok(ws) => {
                again = Some(ws);
                break;
            }
            Err(429) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(s) => panic!("{s}"),
        }
    }
    assert!(again.is_some(), "a closed socket frees its place");
}

// ---------------------------------------------------------------------------------------------
// live reload

/// A gateway whose config file the test rewrites.
struct Reloadable {
    gw: Gateway,
    path: PathBuf,
}

fn reloadable(text: &str) -> Reloadable {
    let gw = Gateway::start_with(text);
    let path = gw.config_path();
    Reloadable { gw, path }
}

impl Reloadable {
    async fn reload_with(&self, text: &str) -> (u16, Value) {
        std::fs::write(&self.path, text).unwrap();
        self.gw.admin_post("/v1/reload", &json!({})).await
    }
}

fn two_apps(second_key: &str, extra: &str) -> String {
    format!(
        "{}\n[[app]]\nsdk_app_id = 1400000001\nkey = \"{second_key}\"\n{extra}",
        config("", "")
    )
}

fn sig_for(app: u64, key: &str, user: &str) -> String {
    imgate::usersig::generate(
        &imgate::usersig::SigKey::new(key),
        app,
        user,
        3600,
        now_secs(),
        None,
    )
}

async fn login_app(
    gw: &Gateway,
    app: u64,
    key: &str,
    user: &str,
    platform: &str,
) -> (Client, Value) {
    let mut c = gw.client().await;
    let r = c
        .request(json!({"type":"login","sdk_app_id":app,"user_id":user,"user_sig":sig_for(app, key, user),"platform":platform}))
        .await;
    (c, r)
}

#[tokio::test]
async fn reload_adds_changes_and_removes_apps_and_reports_what_it_kept() {
    let r = reloadable(&config("", ""));
    let gw = &r.gw;
    let (_, v) = login_app(gw, 1_400_000_001, "k2", "bob", "web").await;
    assert_eq!(v["code"], 70020, "not configured yet");
    // add an app; change the first app's policy to single
    let (st, v) = r
        .reload_with(
            &two_apps("k2", "")
                .replace("key = \"test-key", "policy = \"single\"\nkey = \"test-key"),
        )
        .await;
    assert_eq!((st, v["applied"].clone()), (200, json!(true)), "{v}");
    assert_eq!(v["not_applied"], json!([]));
    let (mut bob, v) = login_app(gw, 1_400_000_001, "k2", "bob", "web").await;
    assert_eq!(v["code"], 0, "added app: {v}");
    let mut a = gw.logged_in("alice", "web", None).await;
    let (mut a2, v) = login_app(gw, APP, KEY, "alice", "android").await;
    assert_eq!(v["code"], 0);
    let kicked = a.recv().await;
    assert_eq!(kicked["type"], "kicked_offline", "single now: {kicked}");
    // change the second app's key: old UserSigs fail unless previous_keys
    let (st, _) = r.reload_with(&two_apps("k2-new", "")).await;
    assert_eq!(st, 200);
    let (_, v) = login_app(gw, 1_400_000_001, "k2", "carol", "web").await;
    assert_eq!(v["code"], 70009, "the old key is gone");
    let (st, _) = r
        .reload_with(&two_apps("k2-new", "previous_keys = [\"k2\"]\n"))
        .await;
    assert_eq!(st, 200);
    let (_, v) = login_app(gw, 1_400_000_001, "k2", "carol", "web").await;
    assert_eq!(v["code"], 0, "old key as a previous key: {v}");
    // remove the second app: its sessions are closed as an admin kick
    let moved = config("", "").replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1);
    let (st, v) = r.reload_with(&moved).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["removed_apps"], json!([1_400_000_001u64]));
    assert_eq!(v["not_applied"], json!(["listen"]), "{v}");
    let pushed = bob.recv().await;
    assert_eq!(
        (pushed["type"].as_str(), pushed["reason"].as_str()),
        (Some("kicked_offline"), Some("admin"))
    );
    bob.expect_close(4502).await;
    let (_, v) = login_app(gw, 1_400_000_001, "k2-new", "dave", "web").await;
    assert_eq!(v["code"], 70020);
    // the first app's sessions stay
    let v = a2.request(json!({"type":"get_login_status"})).await;
    assert_eq!(v["data"]["status"], 1);
    // a bad file changes nothing and names the key
    let (st, v) = r
        .reload_with(&format!("{}\n[cluster]\nredis_url = 7\n", config("", "")))
        .await;
    assert_eq!(st, 400, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("imgate.toml") && e.contains("cluster.redis_url"),
        "{e}"
    );
    let (_, v) = login_app(gw, APP, KEY, "erin", "web").await;
    assert_eq!(v["code"], 0);
    let metrics = http(&gw.admin_url, "GET", "/metrics", None, None).await.1;
    let m = metrics.as_str().unwrap();
    assert!(
        m.contains("imgate_reloads_total{result=\"applied\"} 4"),
        "{m}"
    );
    assert!(
        m.contains("imgate_reloads_total{result=\"error\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn sighup_reloads_and_live_settings_apply_to_new_sockets() {
    let r = reloadable(&config("", ""));
    let gw = &r.gw;
    let to = addr_of(&gw.ws_url);
    std::fs::write(
        &r.path,
        config(
            "max_connections_per_ip = 1\nallowed_origins = [\"https://ok.example\"]",
            "",
        ),
    )
    .unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // applied once the per-address cap answers 429
    let mut ok = false;
    for _ in 0..100 {
        let _one = upgrade_with(&gw.ws_url, TcpStream::connect(to).await.unwrap(), &[]).await;
        if upgrade_with(&gw.ws_url, TcpStream::connect(to).await.unwrap(), &[])
            .await
            .err()
            == Some(429)
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "SIGHUP applied max_connections_per_ip");
    let s = tcp_from("127.0.0.5".parse().unwrap(), to).await;
    assert_eq!(
        upgrade_with(&gw.ws_url, s, &[("Origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_racing_logins_drop_no_socket() {
    let r = Arc::new(reloadable(&config("", "[app.max_instances]\nweb = 1000\n")));
    let text = config("", "[app.max_instances]\nweb = 1000\n");
    let reloads = {
        let r = Arc::clone(&r);
        tokio::spawn(async move {
            for i in 0..300 {
                let (st, v) = r.reload_with(&text).await;
                assert_eq!(st, 200, "reload {i}: {v}");
            }
        })
    };
    let mut socks = Vec::new();
    for i in 0..200 {
        let mut c = r.gw.client().await;
        let v = c
            .login(&format!("u{}", i % 50), "web", Some(&format!("t{i}")))
            .await;
        assert_eq!(v["code"], 0, "{v}");
        socks.push(c);
    }
    reloads.await.unwrap();
    for (i, c) in socks.iter_mut().enumerate() {
        let v = c.request(json!({"type":"get_login_status"})).await;
        assert_eq!(v["data"]["status"], 1, "socket {i} lives");
    }
    let m = http(&r.gw.admin_url, "GET", "/metrics", None, None).await.1;
    assert!(m
        .as_str()
        .unwrap()
        .contains("imgate_reloads_total{result=\"applied\"} 300"));
}

/// 10,000 reloads in a row, alternating between two policies with a webhook each time: every one
/// applies, the sockets opened before live on, the last policy is the one in force, and the
/// gateway's memory does not grow with the number of reloads (a snapshot kept per reload would).
#[tokio::test]
async fn ten_thousand_reloads_in_a_row() {
    let a = config(
        "",
        "policy = \"multi\"\n[app.webhook]\nurl = \"http://127.0.0.1:9/a\"\n",
    );
    let b = config(
        "",
        "policy = \"single\"\n[app.webhook]\nurl = \"http://127.0.0.1:9/b\"\n",
    );
    let r = reloadable(&a);
    let mut before = r.gw.logged_in("keep", "web", None).await;
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", r.gw.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let mut rss_at_1000 = 0;
    for i in 1..=10_000u32 {
        let (st, v) = r.reload_with(if i % 2 == 0 { &a } else { &b }).await;
        assert_eq!(st, 200, "reload {i}: {v}");
        if i == 1_000 {
            rss_at_1000 = rss();
        }
    }
    let grown_kib = rss().saturating_sub(rss_at_1000);
    assert!(
        grown_kib < 8 * 1024,
        "RSS grew {grown_kib} KiB over 9,000 reloads"
    );
    let v = before.request(json!({"type":"get_login_status"})).await;
    assert_eq!(v["data"]["status"], 1, "a socket from before lives");
    // the last reload (10,000: even) applied `a`, the multi policy: web and android together
    let _android = r.gw.logged_in("keep", "android", None).await;
    let v = before.request(json!({"type":"get_login_status"})).await;
    assert_eq!(v["data"]["status"], 1, "multi: the web session stays");
    let m = http(&r.gw.admin_url, "GET", "/metrics", None, None).await.1;
    assert!(m
        .as_str()
        .unwrap()
        .contains("imgate_reloads_total{result=\"applied\"} 10000"));
}

#[tokio::test]
async fn the_development_gateway_has_no_file_to_reload() {
    let (gw, printed) = Gateway::start_dev();
    let token = printed
        .iter()
        .find_map(|l| l.strip_prefix("admin token: "))
        .unwrap()
        .to_owned();
    let (st, v) = http(
        &gw.admin_url,
        "POST",
        "/v1/reload",
        Some(&token),
        Some("{}".into()),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no config file"));
}

// ---------------------------------------------------------------------------------------------
// key rotation

/// A UserSig signed with the app's key or with one of its `previous_keys` verifies; any other key
/// is 70009. Minting (`/v1/dev/usersig`) always uses `key`.
#[tokio::test]
async fn previous_keys_still_verify_during_a_rotation() {
    let old = KEY;
    let new = "the-new-key-after-rotation";
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\ndev_usersig = true\n\n[[app]]\nsdk_app_id = {APP}\nkey = \"{new}\"\nprevious_keys = [\"older-still\", \"{old}\"]\n"
    );
    let gw = Gateway::start_with(&text);
    for (key, want) in [
        (new, 0),
        (old, 0),
        ("older-still", 0),
        ("a-wrong-key", 70009),
    ] {
        let mut c = gw.client().await;
        let r = c
            .login_with_sig("alice", "web", None, &sig_for(APP, key, "alice"))
            .await;
        assert_eq!(r["code"], want, "{key}: {r}");
    }
    let (status, v) = gw
        .admin_post("/v1/dev/usersig", &json!({"user_id": "bob"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let d = imgate::usersig::decode(v["user_sig"].as_str().unwrap()).unwrap();
    assert!(
        d.signature_matches(&imgate::usersig::SigKey::new(new)),
        "minted with key"
    );
}
