//! The account-switch race, made to happen deterministically (issue 9; contract §7 "a login that
//! fails changes nothing", §8, §12).
//!
//! Socket S is logged in as alice; bob has another device B on the same platform S switches to, so
//! an admitted switch would kick B. S's switch to bob is held inside the presence store (a wrapper
//! that pauses account-switch logins) while device D logs alice in and evicts S. Then the switch is
//! let go. It must change nothing: no response, S closed by its own kick (`kicked_offline`, 4501),
//! and B never kicked: a login nobody was answered for kicks nobody. The control case lets the
//! switch through first: then B is kicked by it and D's login leaves S (now bob) alone.
//!
//! Runs against the embedded store, a one-node cluster (the eviction removes S's session from the
//! node's index before the switch reaches Redis) and a two-node cluster (the eviction comes from the
//! other node, so the switch script itself finds alice's tombstone). The gateways run in this
//! process (`Server::bind_with`) to wrap their store; clients are real WebSockets.

mod common;

use common::redis::RedisServer;
use common::*;
use imgate::config::Config;
use imgate::presence::{
    Admitted, BoxFuture, InstanceView, KickFilter, LoginRequest, Presence, Prior, Refused,
    SessionRef, Unavailable,
};
use imgate::server::{store_for, Server};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;

/// A store that holds every account-switch login until the test lets it go.
#[derive(Debug)]
struct Paused {
    inner: Arc<dyn Presence>,
    reached: Notify,
    release: Semaphore,
}

impl Presence for Paused {
    fn login<'a>(&'a self, req: LoginRequest<'a>) -> BoxFuture<'a, Result<Admitted, Refused>> {
        Box::pin(async move {
            if matches!(req.prior, Prior::Switch(_)) {
                self.reached.notify_one();
                self.release.acquire().await.expect("open").forget();
            }
            self.inner.login(req).await
        })
    }
    fn logout(&self, s: SessionRef<'_>) -> bool {
        self.inner.logout(s)
    }
    fn evicted(&self, s: SessionRef<'_>) {
        self.inner.evicted(s)
    }
    fn refresh<'a>(
        &'a self,
        s: SessionRef<'a>,
        expire_at: u64,
        tls_time: u64,
    ) -> BoxFuture<'a, Result<(), Refused>> {
        self.inner.refresh(s, expire_at, tls_time)
    }
    fn deliver<'a>(
        &'a self,
        app: u64,
        to: &'a str,
        skip: Option<u32>,
        d: Arc<imgate::outbox::Delivery>,
    ) -> BoxFuture<'a, Result<u32, Unavailable>> {
        self.inner.deliver(app, to, skip, d)
    }
    fn deliver_here(
        &self,
        app: u64,
        to: &str,
        skip: Option<u32>,
        d: &Arc<imgate::outbox::Delivery>,
    ) -> u32 {
        self.inner.deliver_here(app, to, skip, d)
    }
    fn kick<'a>(
        &'a self,
        app: u64,
        user: &'a str,
        which: KickFilter<'a>,
    ) -> BoxFuture<'a, Result<usize, Unavailable>> {
        self.inner.kick(app, user, which)
    }
    fn instances<'a>(
        &'a self,
        app: u64,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<InstanceView>, Unavailable>> {
        self.inner.instances(app, user)
    }
    fn spawn(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        Arc::clone(&self.inner).spawn()
    }
    fn leave(&self, within: Duration) -> BoxFuture<'_, ()> {
        self.inner.leave(within)
    }
}

/// An in-process gateway.
struct Node {
    ws_url: String,
    admin_url: String,
    paused: Option<Arc<Paused>>,
}

async fn node(redis: Option<&RedisServer>, node_id: &str, pause: bool) -> Node {
    let mut text = config("", "");
    if let Some(r) = redis {
        text.push_str(&format!(
            "\n[cluster]\nredis_url = \"{}\"\nnode_id = \"{node_id}\"\nlease_ms = 2000\nheartbeat_ms = 500\nreconcile_secs = 1\n",
            r.url()
        ));
    }
    let cfg = Config::parse(&text, "race.toml").expect("config");
    let slot: Arc<parking_lot::Mutex<Option<Arc<Paused>>>> = Arc::default();
    let keep = Arc::clone(&slot);
    let server = Server::bind_with(cfg, move |cfg, deps| async move {
        let inner = store_for(cfg, deps).await?;
        if !pause {
            return Ok(inner);
        }
        let p = Arc::new(Paused {
            inner,
            reached: Notify::new(),
            release: Semaphore::new(0),
        });
        *keep.lock() = Some(Arc::clone(&p));
        Ok(p as Arc<dyn Presence>)
    })
    .await
    .expect("bind");
    let n = Node {
        ws_url: format!("ws://{}/ws", server.ws_addr().unwrap()),
        admin_url: format!("http://{}", server.admin_addr().unwrap()),
        paused: slot.lock().take(),
    };
    tokio::spawn(server.run(std::future::pending()));
    n
}

async fn logged_in(n: &Node, user: &str, platform: &str) -> Client {
    let mut c = Client::connect(&n.ws_url).await;
    let r = c.login(user, platform, None).await;
    assert_eq!(r["code"], 0, "{r}");
    c
}

/// The (platform) list of a user's instances, as `n` sees them.
async fn online(n: &Node, user: &str) -> Vec<String> {
    let (status, v) = http(
        &n.admin_url,
        "GET",
        &format!("/v1/online?sdk_app_id={APP}&user_id={user}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["users"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["platform"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls until `n` shows `want` for `user` (bounded).
async fn online_becomes(n: &Node, user: &str, want: &[&str]) {
    for _ in 0..100 {
        if online(n, user).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{user}: {:?}, want {want:?}", online(n, user).await);
}

/// The next frame as JSON, or the close code.
async fn next(c: &mut Client) -> Result<Value, Option<u16>> {
    match c.recv_frame().await {
        Some(Message::Text(t)) => Ok(serde_json::from_str(t.as_str()).unwrap()),
        Some(Message::Close(f)) => Err(f.map(|f| u16::from(f.code))),
        None => Err(None),
        Some(other) => panic!("unexpected {other:?}"),
    }
}

/// Nothing arrives on `c` for a while, and it still answers as logged in.
async fn untouched(c: &mut Client, what: &str) {
    let quiet = tokio::time::timeout(Duration::from_millis(400), c.recv_frame()).await;
    assert!(quiet.is_err(), "{what}: got {quiet:?}");
    let r = c.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"]["status"], 1, "{what}: {r}");
}

fn switch_to_bob() -> Value {
    json!({"type":"login","seq":99,"sdk_app_id":APP,"user_id":"bob","user_sig":sig("bob"),"platform":"android"})
}

/// The eviction comes first: the held switch changes nothing and kicks nobody.
async fn evicted_while_switching(s_node: &Node, others: &Node) {
    let paused = s_node.paused.as_ref().expect("a paused store");
    let mut s = logged_in(s_node, "alice", "web").await;
    let mut b = logged_in(others, "bob", "android").await;
    s.send_json(&switch_to_bob()).await;
    paused.reached.notified().await;
    // D logs alice in on web: S's alice session is evicted while its switch is held.
    let _d = logged_in(others, "alice", "web").await;
    online_becomes(others, "alice", &["web"]).await;
    paused.release.add_permits(1);
    // S: no response to its switch; its own kick closes it.
    let pushed = next(&mut s).await.expect("kicked_offline");
    assert_eq!(pushed["type"], "kicked_offline", "{pushed}");
    assert_eq!(pushed["reason"], "multi_device");
    assert_eq!(pushed["by_platform"], "web");
    assert_eq!(next(&mut s).await, Err(Some(4501)));
    // B was never kicked, and bob is exactly B.
    untouched(&mut b, "bob's other device").await;
    assert_eq!(online(s_node, "bob").await, ["android"]);
    assert_eq!(online(others, "alice").await, ["web"]);
}

/// The switch comes first: it kicks bob's other device, and the later login of alice leaves S alone.
async fn switched_before_eviction(s_node: &Node, others: &Node) {
    let paused = s_node.paused.as_ref().expect("a paused store");
    let mut s = logged_in(s_node, "carol", "web").await;
    let mut b = logged_in(others, "dave", "android").await;
    let mut v = switch_to_bob();
    v["user_id"] = "dave".into();
    v["user_sig"] = sig("dave").into();
    s.send_json(&v).await;
    paused.reached.notified().await;
    paused.release.add_permits(1);
    let r = next(&mut s).await.expect("the switch is answered");
    assert_eq!(
        (r["seq"].as_u64(), r["code"].as_u64()),
        (Some(99), Some(0)),
        "{r}"
    );
    let kicked = next(&mut b).await.expect("kicked_offline");
    assert_eq!(kicked["type"], "kicked_offline", "{kicked}");
    assert_eq!(next(&mut b).await, Err(Some(4501)));
    let _d = logged_in(others, "carol", "web").await;
    untouched(&mut s, "the switched socket").await;
    online_becomes(others, "dave", &["android"]).await;
    online_becomes(s_node, "carol", &["web"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store() {
    let n = node(None, "", true).await;
    evicted_while_switching(&n, &n).await;
    switched_before_eviction(&n, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_cluster() {
    let redis = RedisServer::start();
    let n = node(Some(&redis), "solo", true).await;
    evicted_while_switching(&n, &n).await;
    switched_before_eviction(&n, &n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_cluster() {
    let redis = RedisServer::start();
    let a = node(Some(&redis), "race-a", true).await;
    let b = node(Some(&redis), "race-b", false).await;
    evicted_while_switching(&a, &b).await;
    switched_before_eviction(&a, &b).await;
}
