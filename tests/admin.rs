//! Contract §10 (admin HTTP API, metrics, health), §11 (State.StateChange webhook) and the 70052
//! revocation of §2, end to end against the real binary.
//!
//! Webhooks go to a real HTTP receiver in the test (axum on 127.0.0.1:0) that records every
//! attempt and can answer 500, answer slowly or hang. Absence of an event is checked after a later
//! sentinel event has arrived plus a short settling time (events are not ordered, §11).

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// helpers

fn now_ms() -> u64 {
    imgate::clock::now_ms()
}

/// The next frames are `kicked_offline` by the admin API (`by_platform` null), then close 4502.
async fn expect_admin_kicked(c: &mut Client) {
    let push = c.recv().await;
    assert_eq!(push["type"], "kicked_offline", "{push}");
    assert_eq!(push["reason"], "admin", "{push}");
    assert_eq!(
        push.get("by_platform"),
        Some(&Value::Null),
        "by_platform is null for an admin kick: {push}"
    );
    c.expect_close(4502).await;
}

/// Two request round trips answered as logged in: a kick already decided would have reached the
/// socket by the second.
async fn assert_alive(c: &mut Client, user: &str) {
    for _ in 0..2 {
        let r = c.request(json!({"type":"get_login_user"})).await;
        assert_eq!(r["data"]["user_id"], user, "{r}");
    }
}

/// `{"error": "..."}` with a non-empty message.
fn assert_error_body(status: u16, v: &Value, want: u16) {
    assert_eq!(status, want, "{v}");
    let msg = v.get("error").and_then(Value::as_str);
    assert!(
        msg.is_some_and(|m| !m.is_empty()),
        "a JSON error body is expected, got {v}"
    );
}

async fn online(gw: &Gateway, users: &[&str]) -> Value {
    let q: String = users.iter().map(|u| format!("&user_id={u}")).collect();
    let (status, v) = gw
        .admin_get(&format!("/v1/online?sdk_app_id={APP}{q}"))
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The value of the series `name` whose labels include `labels` (OpenMetrics/Prometheus text).
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, lbl) = match head.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (head, ""),
        };
        if n != name {
            continue;
        }
        let pairs: Vec<(&str, &str)> = lbl
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if labels.iter().all(|l| pairs.contains(l)) {
            return value.parse().ok();
        }
    }
    None
}

async fn metrics_text(gw: &Gateway) -> String {
    let (status, v) = http(&gw.admin_url, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    v.as_str().expect("metrics are text").to_owned()
}

/// Polls `/metrics` until `ok` holds (the gauges of a closing socket move after its linger).
async fn wait_metrics(gw: &Gateway, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics_text(gw).await;
        if ok(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const APP_S: &str = "1400000000";

fn app_label() -> (&'static str, &'static str) {
    assert_eq!(APP_S, APP.to_string());
    ("sdk_app_id", APP_S)
}

// ---------------------------------------------------------------------------------------------
// a webhook receiver

mod hook {
    use axum::body::Bytes;
    use axum::extract::{RawQuery, State};
    use axum::http::StatusCode;
    use serde_json::Value;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// How the receiver answers.
    #[derive(Clone, Copy, Debug)]
    pub enum Mode {
        Ok,
        /// 500 to the first n requests, then 200.
        FailFirst(usize),
        /// Never answers.
        Hang,
        /// Answers 200 after this long.
        Slow(Duration),
    }

    /// One request the receiver got.
    #[derive(Clone, Debug)]
    pub struct Hit {
        pub path: String,
        pub query: HashMap<String, String>,
        pub body: Value,
        pub at_ms: u64,
        pub status: u16,
        /// The answer was fully produced (for `Slow`: after the delay).
        pub answered: bool,
    }

    impl Hit {
        pub fn user(&self) -> &str {
            self.body["Info"]["To_Account"].as_str().unwrap_or("")
        }
        pub fn action(&self) -> (&str, &str) {
            (
                self.body["Info"]["Action"].as_str().unwrap_or(""),
                self.body["Info"]["Reason"].as_str().unwrap_or(""),
            )
        }
        pub fn platform(&self) -> &str {
            self.query
                .get("OptPlatform")
                .map(String::as_str)
                .unwrap_or("")
        }
        pub fn kicked(&self) -> Vec<String> {
            self.body["KickedDevice"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|d| d["Platform"].as_str().unwrap_or("?").to_owned())
                        .collect()
                })
                .unwrap_or_default()
        }
        /// (user, action, reason, OptPlatform) for comparisons.
        pub fn key(&self) -> (String, String, String, String) {
            let (a, r) = self.action();
            (
                self.user().to_owned(),
                a.to_owned(),
                r.to_owned(),
                self.platform().to_owned(),
            )
        }
    }

    pub struct Hook {
        pub url: String,
        state: Arc<Shared>,
    }

    struct Shared {
        mode: Mode,
        hits: Mutex<Vec<Hit>>,
    }

    /// Starts a receiver on 127.0.0.1:0; events go to `url` (path `/im/callback`).
    pub async fn start(mode: Mode) -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Shared {
            mode,
            hits: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hook {
            url: format!("http://{addr}/im/callback"),
            state,
        }
    }

    async fn handle(
        State(s): State<Arc<Shared>>,
        uri: axum::http::Uri,
        RawQuery(q): RawQuery,
        body: Bytes,
    ) -> StatusCode {
        let query = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (index, status) = {
            let mut hits = s.hits.lock().unwrap();
            let n = hits.len();
            let status = match s.mode {
                Mode::FailFirst(k) if n < k => 500,
                _ => 200,
            };
            hits.push(Hit {
                path: uri.path().to_owned(),
                query,
                body,
                at_ms: imgate::clock::now_ms(),
                status,
                answered: false,
            });
            (n, status)
        };
        match s.mode {
            Mode::Hang => std::future::pending::<()>().await,
            Mode::Slow(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        s.hits.lock().unwrap()[index].answered = true;
        StatusCode::from_u16(status).unwrap()
    }

    impl Hook {
        /// Every request so far, in arrival order.
        pub fn hits(&self) -> Vec<Hit> {
            self.state.hits.lock().unwrap().clone()
        }

        /// The events answered 200 (delivered), in arrival order.
        pub fn events(&self) -> Vec<Hit> {
            self.hits()
                .into_iter()
                .filter(|h| h.status == 200)
                .collect()
        }

        /// Waits until `ok` holds for the delivered events.
        pub async fn wait(&self, what: &str, ok: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
            let deadline = Instant::now() + super::WAIT;
            loop {
                let ev = self.events();
                if ok(&ev) {
                    return ev;
                }
                assert!(
                    Instant::now() < deadline,
                    "the webhook receiver never got {what}; it got {:#?}",
                    ev.iter().map(Hit::key).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// Waits for an event of `user`, then a little more so that anything emitted before it
        /// has arrived too (events are delivered concurrently and not ordered).
        pub async fn settle_after(&self, user: &str) -> Vec<Hit> {
            self.wait(&format!("the sentinel event of {user}"), |ev| {
                ev.iter().any(|h| h.user() == user)
            })
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.events()
        }
    }
}

use hook::{Hit, Mode};

fn webhook_lines(url: &str, extra: &str) -> String {
    format!("[app.webhook]\nurl = \"{url}\"\n{extra}")
}

fn keys(ev: &[Hit]) -> Vec<(String, String, String, String)> {
    let mut k: Vec<_> = ev.iter().map(Hit::key).collect();
    k.sort();
    k
}

fn k(user: &str, action: &str, reason: &str, platform: &str) -> (String, String, String, String) {
    (user.into(), action.into(), reason.into(), platform.into())
}

/// The query string and body shape every event shares (§11).
fn assert_tencent_shape(h: &Hit, from_ms: u64, to_ms: u64) {
    assert_eq!(h.path, "/im/callback", "the configured path is kept");
    let q = &h.query;
    assert_eq!(q.get("SdkAppid").map(String::as_str), Some(APP_S), "{q:?}");
    assert_eq!(
        q.get("CallbackCommand").map(String::as_str),
        Some("State.StateChange"),
        "{q:?}"
    );
    assert_eq!(
        q.get("contenttype").map(String::as_str),
        Some("json"),
        "{q:?}"
    );
    assert_eq!(
        q.get("ClientIP").map(String::as_str),
        Some("127.0.0.1"),
        "{q:?}"
    );
    assert!(
        ["iOS", "Android", "Web", "Windows", "iPad", "Mac", "Linux"].contains(&h.platform()),
        "OptPlatform in Tencent spelling: {q:?}"
    );
    assert_eq!(h.body["CallbackCommand"], "State.StateChange", "{}", h.body);
    let t = h.body["EventTime"]
        .as_u64()
        .expect("EventTime is an integer");
    assert!(
        (from_ms..=to_ms).contains(&t),
        "EventTime {t} is in ms between {from_ms} and {to_ms}"
    );
    assert!(h.body["Info"]["To_Account"].is_string(), "{}", h.body);
}

/// A port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// authentication and errors

#[tokio::test]
async fn v1_needs_the_bearer_token() {
    let gw = Gateway::start();
    let mut alice = gw.logged_in("alice", "web", None).await;
    let a = &gw.admin_url;
    let online = format!("/v1/online?sdk_app_id={APP}&user_id=alice");
    let kick = Some(json!({"sdk_app_id": APP, "user_id": "alice"}).to_string());
    let push = Some(json!({"sdk_app_id": APP, "to": "alice", "payload": "x"}).to_string());
    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some("test-admin-token-and-more"),
    ] {
        let (s, v) = http(a, "GET", &online, token, None).await;
        assert_error_body(s, &v, 401);
        let (s, v) = http(a, "POST", "/v1/kick", token, kick.clone()).await;
        assert_error_body(s, &v, 401);
        let (s, v) = http(a, "POST", "/v1/push", token, push.clone()).await;
        assert_error_body(s, &v, 401);
    }
    // a token in another scheme is no token
    let (s, v) = raw_http(
        a,
        &format!(
            "GET {online} HTTP/1.1\r\nAuthorization: Basic {TOKEN}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(s, 401, "{v}");
    // the right token works, and neither the kicks nor the pushes without it did anything
    let (s, v) = http(a, "GET", &online, Some(TOKEN), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["users"][0]["status"], "Online", "{v}");
    assert_alive(&mut alice, "alice").await;
}

/// Sends a raw request; (status, JSON or text body).
async fn raw_http(base: &str, req: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = req.replacen("\r\n", &format!("\r\nHost: {host}\r\n"), 1);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

#[tokio::test]
async fn without_admin_token_v1_is_forbidden_but_metrics_and_health_are_served() {
    let gw = Gateway::start_with(&format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[app]]\nsdk_app_id = {APP}\nkey = \"{KEY}\"\n"
    ));
    let a = &gw.admin_url;
    let online = format!("/v1/online?sdk_app_id={APP}&user_id=alice");
    for token in [None, Some(TOKEN), Some("anything")] {
        let (s, v) = http(a, "GET", &online, token, None).await;
        assert_error_body(s, &v, 403);
        let kick = json!({"sdk_app_id": APP, "user_id": "alice"}).to_string();
        let (s, v) = http(a, "POST", "/v1/kick", token, Some(kick)).await;
        assert_error_body(s, &v, 403);
        let push = json!({"sdk_app_id": APP, "to": "alice", "payload": "x"}).to_string();
        let (s, v) = http(a, "POST", "/v1/push", token, Some(push)).await;
        assert_error_body(s, &v, 403);
    }
    for path in ["/metrics", "/healthz", "/readyz"] {
        let (s, v) = http(a, "GET", path, None, None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    // the gateway itself works without an admin token
    let _c = gw.logged_in("alice", "web", None).await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_bad_input_is_400_with_json_errors() {
    let gw = Gateway::start();
    let a = &gw.admin_url;
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/v1/nope"),
        ("POST", "/v1/kick/extra"),
        ("GET", "/v2/online"),
    ] {
        let (s, v) = http(a, method, path, Some(TOKEN), None).await;
        assert_error_body(s, &v, 404);
    }
    let bad_kicks = [
        "",
        "{",
        "not json",
        "[]",
        r#"{"sdk_app_id":"1400000000","user_id":"alice"}"#,
        r#"{"user_id":"alice"}"#,
        r#"{"sdk_app_id":1400000000}"#,
        r#"{"sdk_app_id":-1,"user_id":"alice"}"#,
        r#"{"sdk_app_id":1400000000,"user_id":"al ice"}"#,
        r#"{"sdk_app_id":1400000000,"user_id":""}"#,
        r#"{"sdk_app_id":1400000000,"user_id":5}"#,
        r#"{"sdk_app_id":1400000000,"user_id":"alice","platform":"ios"}"#,
        r#"{"sdk_app_id":1400000000,"user_id":"alice","platform":"Web"}"#,
        r#"{"sdk_app_id":1400000000,"user_id":"alice","instance_id":""}"#,
        r#"{"sdk_app_id":1400000000,"user_id":"alice","instance_id":"a b"}"#,
        r#"{"sdk_app_id":42,"user_id":"alice"}"#,
    ];
    for body in bad_kicks {
        let (s, v) = http(a, "POST", "/v1/kick", Some(TOKEN), Some(body.into())).await;
        assert_error_body(s, &v, 400);
        assert!(v["error"].is_string(), "kick {body}: {v}");
    }
    let bad_pushes = [
        "{}",
        r#"{"sdk_app_id":1400000000,"to":"bob"}"#,
        r#"{"sdk_app_id":1400000000,"to":"b/b","payload":"x"}"#,
        r#"{"sdk_app_id":1400000000,"to":"bob","payload":7}"#,
        r#"{"sdk_app_id":7,"to":"bob","payload":"x"}"#,
    ];
    for body in bad_pushes {
        let (s, v) = http(a, "POST", "/v1/push", Some(TOKEN), Some(body.into())).await;
        assert_error_body(s, &v, 400);
    }
    let bad_online = [
        "/v1/online".to_owned(),
        "/v1/online?user_id=alice".to_owned(),
        "/v1/online?sdk_app_id=abc&user_id=alice".to_owned(),
        "/v1/online?sdk_app_id=-5&user_id=alice".to_owned(),
        "/v1/online?sdk_app_id=42&user_id=alice".to_owned(),
        format!("/v1/online?sdk_app_id={APP}&user_id=a%20b"),
        format!("/v1/online?sdk_app_id={APP}&user_id={}", "x".repeat(33)),
    ];
    for path in &bad_online {
        let (s, v) = gw.admin_get(path).await;
        assert_error_body(s, &v, 400);
    }
    // and none of that disturbed anything
    let mut c = gw.logged_in("alice", "web", None).await;
    assert_alive(&mut c, "alice").await;
}

// ---------------------------------------------------------------------------------------------
// POST /v1/kick

#[tokio::test]
async fn kick_one_device_by_platform_by_instance_or_both() {
    let gw = Gateway::start_with(&config(
        "",
        "policy = \"multi\"\n[app.max_instances]\nweb = 3\n",
    ));
    let u = "alice";
    let old_sig = sig(u);
    let mut android = gw.logged_in(u, "android", None).await;
    let mut iphone = gw.logged_in(u, "iphone", Some("phone-1")).await;
    let mut t1 = gw.logged_in(u, "web", Some("tab-1")).await;
    let mut t2 = gw.logged_in(u, "web", Some("tab-2")).await;
    let mut t3 = gw.logged_in(u, "web", Some("tab-3")).await;
    let mut bob = gw.logged_in("bob", "web", Some("tab-1")).await;

    let (s, v) = gw
        .admin_post(
            "/v1/kick",
            &json!({"sdk_app_id": APP, "user_id": u, "platform": "web", "instance_id": "tab-1"}),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"kicked": 1})));
    expect_admin_kicked(&mut t1).await;

    let (s, v) = gw
        .admin_post(
            "/v1/kick",
            &json!({"sdk_app_id": APP, "user_id": u, "instance_id": "tab-2"}),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"kicked": 1})));
    expect_admin_kicked(&mut t2).await;

    let (s, v) = gw
        .admin_post(
            "/v1/kick",
            &json!({"sdk_app_id": APP, "user_id": u, "platform": "android"}),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"kicked": 1})));
    expect_admin_kicked(&mut android).await;

    // both must match; nothing matches these
    for body in [
        json!({"sdk_app_id": APP, "user_id": u, "platform": "web", "instance_id": "phone-1"}),
        json!({"sdk_app_id": APP, "user_id": u, "platform": "mac"}),
        json!({"sdk_app_id": APP, "user_id": u, "instance_id": "tab-1"}),
        json!({"sdk_app_id": APP, "user_id": "nobody", "platform": "web"}),
    ] {
        let (s, v) = gw.admin_post("/v1/kick", &body).await;
        assert_eq!((s, &v), (200, &json!({"kicked": 0})), "{body}");
    }
    assert_alive(&mut iphone, u).await;
    assert_alive(&mut t3, u).await;
    assert_alive(&mut bob, "bob").await;
    let v = online(&gw, &[u]).await;
    let mut left: Vec<_> = v["users"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["platform"].clone(), i["instance_id"].clone()))
        .collect();
    left.sort_by_key(|x| x.0.to_string());
    assert_eq!(
        left,
        [
            (json!("iphone"), json!("phone-1")),
            (json!("web"), json!("tab-3"))
        ]
    );
    // a one-device kick revokes nothing: the old UserSig still logs in
    let mut again = gw.client().await;
    let r = again.login_with_sig(u, "android", None, &old_sig).await;
    assert_eq!(r["code"], 0, "{r}");
}

#[tokio::test]
async fn kick_whole_user_closes_4502_and_revokes_older_sigs() {
    let gw = Gateway::start_with(&config("", "[app.max_instances]\nweb = 2\n"));
    let u = "alice";
    let old_sig = sig(u);
    let bob_sig = sig("bob");
    let mut a = gw.logged_in(u, "android", None).await;
    let mut w1 = gw.logged_in(u, "web", Some("t1")).await;
    let mut w2 = gw.logged_in(u, "web", Some("t2")).await;
    let mut bob = gw.logged_in("bob", "web", None).await;
    let mut idle = gw.client().await; // not logged in: untouched

    let (s, v) = gw
        .admin_post("/v1/kick", &json!({"sdk_app_id": APP, "user_id": u}))
        .await;
    let after = now_secs();
    assert_eq!((s, &v), (200, &json!({"kicked": 3})));
    for c in [&mut a, &mut w1, &mut w2] {
        expect_admin_kicked(c).await;
    }
    assert_eq!(
        online(&gw, &[u]).await["users"][0],
        json!({"user_id": u, "status": "Offline", "instances": []})
    );
    // the old UserSig is revoked...
    let r = idle.login_with_sig(u, "web", None, &old_sig).await;
    assert_eq!(r["code"], 70052, "{r}");
    // ...also with another platform or on a fresh socket, and for refresh_sig
    let mut c = gw.client().await;
    let r = c.login_with_sig(u, "mac", Some("x"), &old_sig).await;
    assert_eq!(r["code"], 70052, "{r}");
    // a UserSig minted for the next second works
    let fresh = sig_at(u, after + 1, 86_400);
    let r = c.login_with_sig(u, "mac", None, &fresh).await;
    assert_eq!(r["code"], 0, "{r}");
    let r = c
        .request(json!({"type":"refresh_sig","user_sig": old_sig}))
        .await;
    assert_eq!(r["code"], 70052, "refresh_sig with a revoked UserSig: {r}");
    assert_alive(&mut c, u).await;
    // other users are not affected
    assert_alive(&mut bob, "bob").await;
    let mut b2 = gw.client().await;
    let r = b2.login_with_sig("bob", "android", None, &bob_sig).await;
    assert_eq!(r["code"], 0, "{r}");
    // the idle socket was never kicked: it can still log in
    let r = idle.login_with_sig(u, "web", None, &fresh).await;
    assert_eq!(r["code"], 0, "{r}");

    // kicking an offline user answers 0 and still revokes
    let carol_sig = sig("carol");
    let (s, v) = gw
        .admin_post("/v1/kick", &json!({"sdk_app_id": APP, "user_id": "carol"}))
        .await;
    assert_eq!((s, &v), (200, &json!({"kicked": 0})));
    let after = now_secs();
    let mut cc = gw.client().await;
    let r = cc.login_with_sig("carol", "web", None, &carol_sig).await;
    assert_eq!(r["code"], 70052, "{r}");
    let r = cc
        .login_with_sig("carol", "web", None, &sig_at("carol", after + 1, 600))
        .await;
    assert_eq!(r["code"], 0, "{r}");
}

// ---------------------------------------------------------------------------------------------
// GET /v1/online

#[tokio::test]
async fn online_lists_instances_per_user() {
    let gw = Gateway::start_with(&config("", "[app.max_instances]\nweb = 2\n"));
    let t0 = now_ms();
    let mut w = gw.client().await;
    let r1 = w
        .login_with_sig(
            "alice",
            "web",
            Some("tab-1"),
            &sig_at("alice", now_secs(), 3600),
        )
        .await;
    assert_eq!(r1["code"], 0, "{r1}");
    let mut a = gw.client().await;
    let r2 = a
        .login_with_sig("alice", "android", None, &sig_at("alice", now_secs(), 7200))
        .await;
    assert_eq!(r2["code"], 0, "{r2}");
    let _c = gw.logged_in("carol", "iphone", Some("i-1")).await;
    let t1 = now_ms();

    let v = online(&gw, &["alice", "bob", "carol"]).await;
    let users = v["users"].as_array().expect("users");
    assert_eq!(users.len(), 3, "{v}");
    let ids: Vec<_> = users.iter().map(|u| u["user_id"].clone()).collect();
    assert_eq!(
        ids,
        [json!("alice"), json!("bob"), json!("carol")],
        "in the order asked"
    );
    assert_eq!(users[0]["status"], "Online");
    assert_eq!(
        users[1],
        json!({"user_id":"bob","status":"Offline","instances":[]})
    );
    assert_eq!(users[2]["status"], "Online");
    assert_eq!(users[2]["instances"][0]["instance_id"], "i-1");
    let inst = users[0]["instances"].as_array().expect("instances");
    assert_eq!(inst.len(), 2, "{v}");
    for (resp, want_iid) in [(&r1, json!("tab-1")), (&r2, Value::Null)] {
        let platform = &resp["data"]["platform"];
        let i = inst
            .iter()
            .find(|i| &i["platform"] == platform)
            .unwrap_or_else(|| panic!("no {platform} instance in {v}"));
        let mut fields: Vec<_> = i.as_object().unwrap().keys().cloned().collect();
        fields.sort();
        assert_eq!(
            fields,
            ["expire_at", "instance_id", "login_at_ms", "platform"],
            "{i}"
        );
        assert_eq!(i["instance_id"], want_iid, "{i}");
        assert_eq!(i["expire_at"], resp["data"]["expire_at"], "{i}");
        let at = i["login_at_ms"].as_u64().expect("login_at_ms");
        assert!((t0..=t1).contains(&at), "login_at_ms {at} in [{t0}, {t1}]");
    }

    // a user asked twice, a user unknown to the gateway: answered as asked
    let v = online(&gw, &["carol", "carol", "zed"]).await;
    assert_eq!(v["users"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["users"][2]["status"], "Offline");

    // logout and close leave presence at once
    let r = w.request(json!({"type":"logout"})).await;
    assert_eq!(r["code"], 0);
    let v = online(&gw, &["alice"]).await;
    assert_eq!(
        v["users"][0]["instances"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    a.close().await;
    assert!(matches!(
        a.closed().await,
        Closed::Code(..) | Closed::NoFrame
    ));
    let deadline = Instant::now() + WAIT;
    loop {
        let v = online(&gw, &["alice"]).await;
        if v["users"][0]["status"] == "Offline" {
            assert_eq!(v["users"][0]["instances"], json!([]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed socket stays online: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // up to 500 users per call
    let many: Vec<String> = (0..500).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let v = online(&gw, &refs).await;
    assert_eq!(v["users"].as_array().unwrap().len(), 500);
    let q: String = (0..501).map(|i| format!("&user_id=u{i}")).collect();
    let (s, v) = gw
        .admin_get(&format!("/v1/online?sdk_app_id={APP}{q}"))
        .await;
    assert_error_body(s, &v, 400);
}

// ---------------------------------------------------------------------------------------------
// POST /v1/push

#[tokio::test]
async fn push_reaches_every_socket_of_the_user_as_admin() {
    let gw = Gateway::start_with(&config("max_payload_bytes = 64", ""));
    let mut w = gw.logged_in("alice", "web", None).await;
    let mut a = gw.logged_in("alice", "android", None).await;
    let mut b = gw.logged_in("bob", "web", None).await;
    let (s, v) = gw
        .admin_post(
            "/v1/push",
            &json!({"sdk_app_id": APP, "to": "alice", "payload": "hello ✓"}),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"delivered": 2})));
    for c in [&mut w, &mut a] {
        let m = c.recv().await;
        assert_eq!(
            m,
            json!({"type":"message","from":"@admin","from_platform":null,"payload":"hello ✓"})
        );
    }
    // bob got nothing: his next frame is the answer to his own request
    assert_alive(&mut b, "bob").await;

    let (s, v) = gw
        .admin_post(
            "/v1/push",
            &json!({"sdk_app_id": APP, "to": "nobody", "payload": "x"}),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"delivered": 0})));

    // exactly max_payload_bytes (in bytes, not characters) is fine, one more is 400
    let fits = format!("{}é", "x".repeat(62));
    assert_eq!(fits.len(), 64);
    let (s, v) = gw
        .admin_post(
            "/v1/push",
            &json!({"sdk_app_id": APP, "to": "bob", "payload": fits}),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"delivered": 1})));
    assert_eq!(b.recv().await["payload"], fits);
    let (s, v) = gw
        .admin_post(
            "/v1/push",
            &json!({"sdk_app_id": APP, "to": "bob", "payload": format!("{fits}x")}),
        )
        .await;
    assert_error_body(s, &v, 400);
    assert_alive(&mut b, "bob").await;

    // a logged-out socket gets nothing
    let r = a.request(json!({"type":"logout"})).await;
    assert_eq!(r["code"], 0);
    let (s, v) = gw
        .admin_post(
            "/v1/push",
            &json!({"sdk_app_id": APP, "to": "alice", "payload": "again"}),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"delivered": 1})));
    assert_eq!(w.recv().await["payload"], "again");
    let r = a.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"]["status"], 3, "no push before the answer: {r}");
}

// ---------------------------------------------------------------------------------------------
// /metrics, /healthz, /readyz

#[tokio::test]
async fn metrics_count_the_contract_series() {
    let gw = Gateway::start();
    let app = app_label();
    let text = metrics_text(&gw).await;
    assert_eq!(series(&text, "imgate_dau", &[app]), Some(0.0), "{text}");
    assert_eq!(
        series(&text, "imgate_connections", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "imgate_outbound_bytes", &[]),
        Some(0.0),
        "{text}"
    );

    let mut a = gw.logged_in("alice", "android", None).await;
    let i = gw.logged_in("alice", "iphone", None).await;
    expect_kicked_multi(&mut a, "iphone").await;
    drop(a);
    let mut b = gw.logged_in("bob", "web", None).await;
    let mut failed = gw.client().await;
    let r = failed
        .login_with_sig("carol", "web", None, &sig("dave"))
        .await;
    assert_eq!(r["code"], 70013, "{r}");
    let mut carol = gw.client().await;
    let r = carol
        .login_with_sig("carol", "web", None, &sig_at("carol", now_secs(), 1))
        .await;
    assert_eq!(r["code"], 0, "{r}");
    let (s, v) = gw
        .admin_post("/v1/kick", &json!({"sdk_app_id": APP, "user_id": "bob"}))
        .await;
    assert_eq!((s, &v), (200, &json!({"kicked": 1})));
    expect_admin_kicked(&mut b).await;
    drop(b);
    let e = carol.recv().await;
    assert_eq!(e["type"], "user_sig_expired", "{e}");

    // open sockets: i, failed, carol (a and b are closed once their linger ends)
    let text = wait_metrics(&gw, "3 connections", |t| {
        series(t, "imgate_connections", &[]) == Some(3.0)
    })
    .await;
    let get = |name: &str, labels: &[(&str, &str)]| {
        let mut l = vec![app];
        l.extend_from_slice(labels);
        series(&text, name, &l).unwrap_or_else(|| panic!("no {name} {l:?} in\n{text}"))
    };
    assert_eq!(get("imgate_logins_total", &[("code", "0")]), 4.0);
    assert_eq!(get("imgate_logins_total", &[("code", "70013")]), 1.0);
    assert_eq!(
        get("imgate_kicks_total", &[("reason", "multi_device")]),
        1.0
    );
    assert_eq!(get("imgate_kicks_total", &[("reason", "admin")]), 1.0);
    assert_eq!(get("imgate_expiries_total", &[]), 1.0);
    assert_eq!(get("imgate_sessions", &[("platform", "iphone")]), 1.0);
    assert_eq!(get("imgate_sessions", &[("platform", "android")]), 0.0);
    assert_eq!(get("imgate_sessions", &[("platform", "web")]), 0.0);
    assert_eq!(get("imgate_dau", &[]), 3.0, "alice, bob, carol");
    // Closes are counted by code. (Not labelled by app: a socket that never logged in has none.)
    assert_eq!(
        series(&text, "imgate_closes_total", &[("code", "4501")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "imgate_closes_total", &[("code", "4502")]),
        Some(1.0),
        "{text}"
    );
    for line in text.lines().filter(|l| {
        [
            "imgate_sessions",
            "imgate_logins",
            "imgate_kicks",
            "imgate_expiries",
            "imgate_dau",
        ]
        .iter()
        .any(|m| l.starts_with(m))
    }) {
        assert!(line.contains("sdk_app_id=\"1400000000\""), "{line}");
    }

    // DAU counts distinct users: alice again changes nothing, a new user does
    let _again = gw.logged_in("alice", "web", None).await;
    let _dan = gw.logged_in("dan", "web", None).await;
    let text = metrics_text(&gw).await;
    assert_eq!(series(&text, "imgate_dau", &[app]), Some(4.0), "{text}");
    assert_eq!(
        series(&text, "imgate_logins_total", &[app, ("code", "0")]),
        Some(6.0)
    );
    drop(i);
}

async fn expect_kicked_multi(c: &mut Client, by: &str) {
    let push = c.recv().await;
    assert_eq!(push["type"], "kicked_offline", "{push}");
    assert_eq!(push["reason"], "multi_device", "{push}");
    assert_eq!(push["by_platform"], by, "{push}");
    c.expect_close(4501).await;
}

#[tokio::test]
async fn health_and_readiness_are_served_without_a_token() {
    let gw = Gateway::start();
    for path in ["/healthz", "/readyz"] {
        for token in [None, Some("junk")] {
            let (s, v) = http(&gw.admin_url, "GET", path, token, None).await;
            assert_eq!(s, 200, "{path}: {v}");
        }
    }
    let (s, _) = http(&gw.admin_url, "GET", "/metrics", Some("junk"), None).await;
    assert_eq!(s, 200);
}

// ---------------------------------------------------------------------------------------------
// §11 webhooks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_login_lists_every_kicked_device_in_tencent_spelling() {
    let hook = hook::start(Mode::Ok).await;
    let gw = Gateway::start_with(&config(
        "",
        &format!(
            "[app.max_instances]\nandroid = 2\n{}",
            webhook_lines(&hook.url, "")
        ),
    ));
    let t0 = now_ms();
    let u = "alice";
    // (platform, victims' indices): every native platform kicks the previous one
    let steps: [(&str, &[usize]); 10] = [
        ("android", &[]),
        ("android", &[]),
        ("iphone", &[0, 1]),
        ("ipad", &[2]),
        ("windows", &[3]),
        ("mac", &[4]),
        ("linux", &[5]),
        ("android", &[6]),
        ("web", &[]),
        ("web", &[8]),
    ];
    let mut socks = Vec::new();
    for (platform, victims) in steps {
        socks.push(gw.logged_in(u, platform, None).await);
        for &v in victims {
            expect_kicked_multi(&mut socks[v], platform).await;
        }
    }
    // the sentinel: everything the kicked sockets might have emitted was queued before it
    let _bob = gw.logged_in("bob", "mac", None).await;
    let ev = hook.settle_after("bob").await;
    let t1 = now_ms();
    for h in &ev {
        assert_tencent_shape(h, t0, t1);
    }
    let alice: Vec<_> = ev.iter().filter(|h| h.user() == u).collect();
    assert!(
        alice.iter().all(|h| h.action() == ("Login", "Register")),
        "a kicked session produces no event of its own: {:#?}",
        alice.iter().map(|h| h.key()).collect::<Vec<_>>()
    );
    let mut got: Vec<(String, Vec<String>)> = alice
        .iter()
        .map(|h| (h.platform().to_owned(), h.kicked()))
        .collect();
    got.sort();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut want = vec![
        ("Android".to_owned(), s(&[])),
        ("Android".to_owned(), s(&[])),
        ("iOS".to_owned(), s(&["Android", "Android"])),
        ("iPad".to_owned(), s(&["iOS"])),
        ("Windows".to_owned(), s(&["iPad"])),
        ("Mac".to_owned(), s(&["Windows"])),
        ("Linux".to_owned(), s(&["Mac"])),
        ("Android".to_owned(), s(&["Linux"])),
        ("Web".to_owned(), s(&[])),
        ("Web".to_owned(), s(&["Web"])),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(ev.len(), 11, "one event per login: {:#?}", keys(&ev));
    // the event of a login that kicked nobody still carries KickedDevice as a list
    assert!(ev.iter().all(|h| h.body["KickedDevice"].is_array()));
}

/// Contract §11: a repeated login of the same user on the same socket produces no event, unless it
/// kicked other devices: then one `Login`/`Register` lists them in `KickedDevice`.
#[tokio::test]
async fn webhook_in_place_relogin_that_kicks_lists_them_once() {
    let hook = hook::start(Mode::Ok).await;
    let gw = Gateway::start_with(&config("", &webhook_lines(&hook.url, "")));
    let mut s = gw.logged_in("alice", "web", None).await;
    let mut mac = gw.logged_in("alice", "mac", None).await;
    // in place, web -> android: android's group holds the mac, which goes
    let r = s.login("alice", "android", None).await;
    assert_eq!(r["code"], 0, "{r}");
    expect_kicked_multi(&mut mac, "android").await;
    // in place again, kicking nobody: no event
    let r = s.login("alice", "android", Some("a1")).await;
    assert_eq!(r["code"], 0, "{r}");
    let _bob = gw.logged_in("bob", "mac", None).await;
    let ev = hook.settle_after("bob").await;
    let mut alice: Vec<_> = ev
        .iter()
        .filter(|h| h.user() == "alice")
        .map(|h| (h.action(), h.platform().to_owned(), h.kicked()))
        .collect();
    alice.sort();
    let login = ("Login", "Register");
    assert_eq!(
        alice,
        vec![
            (login, "Android".to_owned(), vec!["Mac".to_owned()]),
            (login, "Mac".to_owned(), vec![]),
            (login, "Web".to_owned(), vec![]),
        ],
        "{:#?}",
        keys(&ev)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_logout_switch_expiry_and_close() {
    let hook = hook::start(Mode::Ok).await;
    let gw = Gateway::start_with(&config("", &webhook_lines(&hook.url, "")));
    let t0 = now_ms();
    let mut s = gw.logged_in("alice", "web", None).await;
    // repeated logins of the same user on the same socket: no event, whatever changes
    for (p, iid) in [("web", None), ("mac", Some("m")), ("mac", Some("m"))] {
        let r = s.login("alice", p, iid).await;
        assert_eq!(r["code"], 0, "{r}");
    }
    let r = s.request(json!({"type":"logout"})).await;
    assert_eq!(r["code"], 0, "{r}");
    // logout when logged out: 6014 and no event
    let r = s.request(json!({"type":"logout"})).await;
    assert_eq!(r["code"], 6014, "{r}");
    let r = s.login("alice", "android", None).await;
    assert_eq!(r["code"], 0, "{r}");
    // account switch: alice logs out (not a kick), bob logs in
    let r = s.login("bob", "web", None).await;
    assert_eq!(r["code"], 0, "{r}");
    // a failed login changes nothing and emits nothing
    let r = s.login_with_sig("carol", "web", None, &sig("dave")).await;
    assert_eq!(r["code"], 70013, "{r}");
    // UserSig expiry
    let mut t = gw.client().await;
    let r = t
        .login_with_sig("carol", "iphone", None, &sig_at("carol", now_secs(), 1))
        .await;
    assert_eq!(r["code"], 0, "{r}");
    let expire_at = r["data"]["expire_at"].as_u64().expect("expire_at");
    assert_eq!(t.recv().await["type"], "user_sig_expired");
    // closing sockets: bob's (logged in) emits LinkClose, carol's (logged out now) nothing
    s.close().await;
    let _ = s.closed().await;
    t.close().await;
    let _ = t.closed().await;
    hook.wait("bob's Disconnect", |ev| {
        ev.iter()
            .any(|h| h.user() == "bob" && h.action() == ("Disconnect", "LinkClose"))
    })
    .await;
    // an admin kick: the kicked session produces no event of its own
    let mut erin = gw.logged_in("erin", "web", None).await;
    let (st, v) = gw
        .admin_post("/v1/kick", &json!({"sdk_app_id": APP, "user_id": "erin"}))
        .await;
    assert_eq!((st, &v), (200, &json!({"kicked": 1})));
    expect_admin_kicked(&mut erin).await;
    let _dan = gw.logged_in("dan", "linux", None).await;
    let ev = hook.settle_after("dan").await;
    let t1 = now_ms();
    for h in &ev {
        assert_tencent_shape(h, t0, t1);
    }
    let mut want = vec![
        k("alice", "Login", "Register", "Web"),
        k("alice", "Logout", "Unregister", "Mac"),
        k("alice", "Login", "Register", "Android"),
        k("alice", "Logout", "Unregister", "Android"),
        k("bob", "Login", "Register", "Web"),
        k("carol", "Login", "Register", "iOS"),
        k("carol", "Logout", "Unregister", "iOS"),
        k("bob", "Disconnect", "LinkClose", "Web"),
        k("erin", "Login", "Register", "Web"),
        k("dan", "Login", "Register", "Linux"),
    ];
    want.sort();
    assert_eq!(keys(&ev), want);
    // EventTime orders them: within alice's, the first login precedes its logout, and so on
    let time = |key: &(String, String, String, String)| {
        ev.iter()
            .find(|h| &h.key() == key)
            .map(|h| h.body["EventTime"].as_u64().unwrap())
            .unwrap()
    };
    assert!(
        time(&k("alice", "Login", "Register", "Web"))
            <= time(&k("alice", "Logout", "Unregister", "Mac"))
    );
    let expired = time(&k("carol", "Logout", "Unregister", "iOS"));
    assert!(
        expire_at * 1000 < expired && expired <= expire_at * 1000 + 1500,
        "the expiry event at {expired} ms comes after expire_at {expire_at} s, within 1.5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_idle_timeout_is_disconnect_timeout() {
    let hook = hook::start(Mode::Ok).await;
    let gw = Gateway::start_with(&config(
        "idle_timeout_secs = 1\nping_interval_secs = 30",
        &webhook_lines(&hook.url, ""),
    ));
    let mut c = gw.logged_in("alice", "ipad", None).await;
    let mut anon = gw.client().await; // never logs in: closed too, no event
    c.expect_close(4001).await;
    anon.expect_close(4001).await;
    let _bob = gw.logged_in("bob", "web", None).await;
    let ev = hook.settle_after("bob").await;
    let mut want = vec![
        k("alice", "Login", "Register", "iPad"),
        k("alice", "Disconnect", "TimeOut", "iPad"),
        k("bob", "Login", "Register", "Web"),
    ];
    want.sort();
    assert_eq!(keys(&ev), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_retried_until_the_receiver_takes_it() {
    let hook = hook::start(Mode::FailFirst(2)).await;
    let gw = Gateway::start_with(&config("", &webhook_lines(&hook.url, "attempts = 4\n")));
    let _c = gw.logged_in("alice", "web", None).await;
    hook.wait("the event after two 500s", |ev| ev.len() == 1)
        .await;
    let hits = hook.hits();
    assert_eq!(
        hits.iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 500, 200],
        "two refusals, then delivered; no attempt after success"
    );
    assert!(
        hits.iter()
            .all(|h| h.body == hits[0].body && h.query == hits[0].query),
        "every attempt carries the same event"
    );
    // backoff: the attempts are spaced, the second gap no shorter than the first
    let (g1, g2) = (hits[1].at_ms - hits[0].at_ms, hits[2].at_ms - hits[1].at_ms);
    assert!(g1 >= 50 && g2 + 5 >= g1, "backoff gaps {g1} ms, {g2} ms");
    wait_metrics(&gw, "one delivered webhook", |t| {
        series(
            t,
            "imgate_webhook_events_total",
            &[app_label(), ("result", "delivered")],
        ) == Some(1.0)
    })
    .await;
}

/// Logs in and out `n` times on one socket; every answer must come quickly.
async fn logins_are_prompt(gw: &Gateway, n: usize) {
    let mut c = gw.client().await;
    for i in 0..n {
        let t = Instant::now();
        let r = c.login("alice", "web", None).await;
        assert_eq!(r["code"], 0, "{r}");
        let r = c.request(json!({"type":"logout"})).await;
        assert_eq!(r["code"], 0, "{r}");
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "login {i} took {took:?} with a dead webhook receiver"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_dead_or_hanging_receiver_never_delays_logins() {
    // nothing listens
    let url = format!("http://127.0.0.1:{}/im/callback", dead_port());
    let gw = Gateway::start_with(&config(
        "",
        &webhook_lines(&url, "attempts = 2\ntimeout_ms = 500\n"),
    ));
    logins_are_prompt(&gw, 20).await;
    // every event eventually fails, and is counted
    wait_metrics(&gw, "failed webhooks", |t| {
        series(
            t,
            "imgate_webhook_events_total",
            &[app_label(), ("result", "failed")],
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    drop(gw);

    // a receiver that accepts and never answers
    let hook = hook::start(Mode::Hang).await;
    let gw = Gateway::start_with(&config(
        "",
        &webhook_lines(&hook.url, "timeout_ms = 30000\n"),
    ));
    logins_are_prompt(&gw, 20).await;
    assert!(!hook.hits().is_empty(), "the receiver was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_drops_are_counted_when_the_queue_is_full() {
    let hook = hook::start(Mode::Hang).await;
    let gw = Gateway::start_with(&config(
        "",
        &webhook_lines(&hook.url, "queue = 1\ntimeout_ms = 30000\n"),
    ));
    // 40 events; a hanging receiver holds a bounded number in flight, the queue 1 more
    logins_are_prompt(&gw, 20).await;
    let text = wait_metrics(&gw, "dropped webhooks", |t| {
        series(
            t,
            "imgate_webhook_events_total",
            &[app_label(), ("result", "dropped")],
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;
    let dropped = series(
        &text,
        "imgate_webhook_events_total",
        &[app_label(), ("result", "dropped")],
    )
    .unwrap();
    let taken = hook.hits().len() as f64;
    assert!(
        dropped + taken <= 40.0 && dropped + taken >= 39.0,
        "40 events: {dropped} dropped, {taken} at the receiver, at most 1 queued"
    );
}

// ---------------------------------------------------------------------------------------------
// graceful shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_1001_flushes_webhooks_and_exits_0() {
    // A slow receiver keeps the drain busy long enough to watch readyz turn 503.
    let hook = hook::start(Mode::Slow(Duration::from_millis(400))).await;
    let mut gw = Gateway::start_with(&config(
        "shutdown_grace_secs = 8",
        &webhook_lines(&hook.url, "timeout_ms = 5000\n"),
    ));
    let mut a = gw.logged_in("alice", "web", None).await;
    let mut b = gw.client().await;
    let r = b.login("bob", "android", Some("phone")).await;
    assert_eq!(r["code"], 0, "{r}");
    let mut anon = gw.client().await;
    hook.wait("both logins", |ev| ev.len() == 2).await;
    let (s, _) = http(&gw.admin_url, "GET", "/readyz", None, None).await;
    assert_eq!(s, 200);

    gw.send_sigterm();
    // While the sockets close (nobody reads their close frames yet) readyz answers 503.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (s, v) = http(&gw.admin_url, "GET", "/readyz", None, None).await;
        if s == 503 {
            break;
        }
        assert_eq!(s, 200, "{v}");
        assert!(
            Instant::now() < deadline,
            "readyz never answered 503 while draining"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for c in [&mut a, &mut b, &mut anon] {
        match c.closed().await {
            Closed::Code(code, _) => assert_eq!(code, 1001),
            Closed::NoFrame => panic!("closed without a close frame"),
        }
    }
    drop((a, b, anon));
    let status = tokio::task::spawn_blocking(move || {
        let s = gw.wait_exit(Duration::from_secs(20));
        (s, gw)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(0), "{status:?}");
    let ev = hook.events();
    let mut want = vec![
        k("alice", "Login", "Register", "Web"),
        k("bob", "Login", "Register", "Android"),
        k("alice", "Disconnect", "LinkClose", "Web"),
        k("bob", "Disconnect", "LinkClose", "Android"),
    ];
    want.sort();
    assert_eq!(
        keys(&ev),
        want,
        "the queued events were flushed before exit"
    );
    assert!(
        ev.iter().all(|h| h.answered),
        "every delivery completed before the gateway exited"
    );
}
