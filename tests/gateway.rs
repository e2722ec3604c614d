//! End-to-end tests of the gateway through real sockets, rule by rule: contract §2 (UserSig checks,
//! their order, the throttle and revocation, on login and on `refresh_sig`), §3 (transport and
//! encodings), §4–§6 (requests, response shapes, codes) and §7 (the session state machine, deadlines,
//! heartbeats, kicks, expiry, slow consumers, shutdown).
//!
//! Every test boots its own gateway on 127.0.0.1:0. Waits are for events, with a timeout; the only
//! sleeps are where the contract itself is about time (deadlines, expiry, the throttle window), and
//! those are configured to one or two seconds.
//!
//! Every test runs twice (`on_both_stores!`): `name::embedded` against the in-process registry and
//! `name::redis` against a one-node cluster with its own redis-server, so both presence stores keep
//! the same rules.

mod common;

use base64::Engine as _;
use common::*;
use futures_util::{SinkExt, StreamExt};
use imgate_proto::{
    decode_server, encode_client, ClientMsg, Encoding, KickReason, Platform, ResponseData,
    ServerMsg,
};
use serde_json::{json, Value};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// A second configured app, with its own key.
const APP2: u64 = 1_400_000_001;
const KEY2: &str = "second-app-key-0123456789";
/// An sdk_app_id no test configures.
const UNKNOWN_APP: u64 = 999;
const IP1: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const IP2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

// ---------------------------------------------------------------------------------------------
// helpers

fn now_ms() -> u64 {
    imgate::clock::now_ms()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The `[[app]]` lines that add APP2 after the test app.
fn second_app() -> String {
    format!("\n[[app]]\nsdk_app_id = {APP2}\nkey = \"{KEY2}\"\n")
}

/// A UserSig minted with an arbitrary key and sdkappid.
fn sig_with(key: &str, app: u64, user: &str, time: u64, expire: u64) -> String {
    imgate::usersig::generate(
        &imgate::usersig::SigKey::new(key),
        app,
        user,
        expire,
        time,
        None,
    )
}

/// A UserSig for the test app signed with the wrong key.
fn wrong_key_sig(user: &str) -> String {
    sig_with("not-the-app-key", APP, user, now_secs(), 86_400)
}

/// An expired UserSig for the test app (valid signature).
fn expired_sig(user: &str) -> String {
    sig_at(user, now_secs() - 100, 10)
}

/// Packs arbitrary bytes as a UserSig would be: zlib, standard base64, then the URL alphabet.
fn pack(doc: &[u8]) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(doc).unwrap();
    base64::engine::general_purpose::STANDARD
        .encode(z.finish().unwrap())
        .replace('+', "*")
        .replace('/', "-")
        .replace('=', "_")
}

fn login_msg(app: u64, user: &str, user_sig: &str, platform: &str) -> Value {
    json!({"type":"login","sdk_app_id":app,"user_id":user,"user_sig":user_sig,"platform":platform})
}

fn code(r: &Value) -> u64 {
    r["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no code in {r}"))
}

/// `/v1/online` for one user of the test app: the user's entry.
async fn online(gw: &Gateway, user: &str) -> Value {
    let (status, v) = gw
        .admin_get(&format!("/v1/online?sdk_app_id={APP}&user_id={user}"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["users"][0]["user_id"], user, "{v}");
    v["users"][0].clone()
}

/// Polls `/v1/online` until the user is Offline (bounded); returns how long it took.
async fn wait_offline(gw: &Gateway, user: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let u = online(gw, user).await;
        if u["status"] == "Offline" {
            assert_eq!(u["instances"], json!([]), "{u}");
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "{user} still online after {within:?}: {u}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After a logout or close: the user is Offline at once with the embedded store; with Redis the
/// unregister is written in the background (a logout never waits for Redis), so it lands within a
/// round trip.
async fn offline_after_logout(store: Store, gw: &Gateway, user: &str) {
    match store {
        Store::Embedded => assert_eq!(online(gw, user).await["status"], "Offline"),
        Store::Redis => {
            wait_offline(gw, user, Duration::from_secs(2)).await;
        }
    }
}

/// The user's instances as (platform, instance_id) pairs.
async fn instances(gw: &Gateway, user: &str) -> Vec<(String, Value)> {
    let u = online(gw, user).await;
    u["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["platform"].as_str().unwrap().to_owned(),
                i["instance_id"].clone(),
            )
        })
        .collect()
}

/// What arrived within a time limit (the frame is kept for failure messages).
#[derive(Debug)]
#[allow(dead_code)]
enum Next {
    /// A data or close frame (pings and pongs skipped).
    Frame(Message),
    /// The stream ended without a close frame.
    Ended,
    /// Nothing arrived in time.
    Quiet,
}

async fn next_within(c: &mut Client, d: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(deadline, c.ws.next()).await {
            Err(_) => return Next::Quiet,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => return Next::Frame(m),
            Ok(Some(Err(_)) | None) => return Next::Ended,
        }
    }
}

/// Asserts nothing but pings arrives on the socket for `d`.
async fn assert_quiet(c: &mut Client, d: Duration, what: &str) {
    match next_within(c, d).await {
        Next::Quiet => {}
        other => panic!("{what}: expected nothing, got {other:?}"),
    }
}

/// A frame as (encoding, JSON).
fn frame_json(m: &Message) -> (Encoding, Value) {
    match m {
        Message::Text(t) => (
            Encoding::Json,
            serde_json::from_str(t.as_str()).expect("server sends JSON"),
        ),
        Message::Binary(b) => {
            let msg = decode_server(Encoding::Bincode, b, 1 << 20).expect("server sends bincode");
            (Encoding::Bincode, serde_json::to_value(msg).unwrap())
        }
        other => panic!("expected a data frame, got {other:?}"),
    }
}

/// Sends a bincode request (its seq set here) and returns the bincode response.
async fn request_bincode(c: &mut Client, build: impl FnOnce(u64) -> ClientMsg) -> ServerMsg {
    let seq = c.next_seq();
    c.send_bincode(&build(seq)).await;
    let r = c.recv_bincode().await;
    match &r {
        ServerMsg::Response { seq: s, .. } => assert_eq!(*s, seq, "responses come in order"),
        other => panic!("expected the response, got {other:?}"),
    }
    r
}

fn bincode_login(seq: u64, user: &str, platform: &str, iid: Option<&str>) -> ClientMsg {
    ClientMsg::Login {
        seq,
        sdk_app_id: APP,
        user_id: user.into(),
        user_sig: sig(user),
        platform: platform.into(),
        instance_id: iid.map(Into::into),
    }
}

fn response_code(m: &ServerMsg) -> u32 {
    match m {
        ServerMsg::Response { code, .. } => *code,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// Sends a raw WebSocket frame.
async fn send_frame(c: &mut Client, data: Vec<u8>, op: OpData, fin: bool) {
    c.ws.send(Message::Frame(Frame::message(data, OpCode::Data(op), fin)))
        .await
        .unwrap();
}

/// Asserts the next event is a close with `code` and a non-empty reason.
async fn expect_close_with_reason(c: &mut Client, code: u16, what: &str) {
    match c.recv_frame().await {
        Some(Message::Close(Some(f))) => {
            assert_eq!(u16::from(f.code), code, "{what}: close {f:?}");
            assert!(
                !f.reason.is_empty() && f.reason.len() <= 123,
                "{what}: a short reason: {f:?}"
            );
        }
        other => panic!("{what}: expected close {code}, got {other:?}"),
    }
}

/// A small deterministic generator for garbage.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// §2 UserSig: codes and their order

on_both_stores!(sig_failures_answer_their_codes_in_table_order_on_login);
async fn sig_failures_answer_their_codes_in_table_order_on_login(store: Store) {
    let gw = store.start_with(&config("[throttle]\nmax_failures = 1000", &second_app()));
    let mut c = gw.client().await;
    let now = now_secs();
    let bomb = {
        // a valid ticket preceded by 200 KB of whitespace: inflates far past "a few KiB"
        let mut d = vec![b' '; 200_000];
        d.extend_from_slice(
            br#"{"TLS.ver":"2.0","TLS.identifier":"alice","TLS.sdkappid":1400000000,"TLS.expire":86400,"TLS.time":1700000000,"TLS.sig":"x"}"#,
        );
        pack(&d)
    };
    let doc_missing_sig = pack(
        format!(r#"{{"TLS.ver":"2.0","TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.expire":86400,"TLS.time":{now}}}"#)
            .as_bytes(),
    );
    let doc_mistyped_time = pack(
        format!(r#"{{"TLS.ver":"2.0","TLS.identifier":"alice","TLS.sdkappid":{APP},"TLS.expire":86400,"TLS.time":"{now}","TLS.sig":"AAAA"}}"#)
            .as_bytes(),
    );
    let not_zlib = base64::engine::general_purpose::STANDARD
        .encode(b"definitely not zlib data")
        .replace('=', "_");
    let cases: Vec<(&str, u64, String, u64)> = vec![
        ("empty", APP, String::new(), 70002),
        (
            "empty beats an unknown app",
            UNKNOWN_APP,
            String::new(),
            70002,
        ),
        ("alphabet", APP, "@@@@".into(), 70003),
        (
            "alphabet beats an unknown app",
            UNKNOWN_APP,
            "@@@@".into(),
            70003,
        ),
        (
            "standard base64 padding is outside the alphabet",
            APP,
            "eJw=".into(),
            70003,
        ),
        ("base64 of non-zlib", APP, not_zlib, 70003),
        ("zlib of non-JSON", APP, pack(b"hello, world"), 70003),
        ("missing TLS.sig", APP, doc_missing_sig, 70003),
        ("mistyped TLS.time", APP, doc_mistyped_time, 70003),
        ("zlib bomb", APP, bomb, 70003),
        (
            "unknown app with a wrong identifier",
            UNKNOWN_APP,
            sig("bob"),
            70020,
        ),
        (
            "unknown app whose sdkappid matches the sig",
            UNKNOWN_APP,
            sig_with(KEY, UNKNOWN_APP, "alice", now, 86_400),
            70020,
        ),
        (
            "sdkappid mismatch beats identifier mismatch and wrong key",
            APP2,
            sig_with("wrong", APP, "bob", now, 86_400),
            70014,
        ),
        (
            "sdkappid mismatch",
            APP,
            sig_with(KEY, APP2, "alice", now, 86_400),
            70014,
        ),
        (
            "identifier mismatch beats wrong key and expiry",
            APP,
            sig_with("wrong", APP, "bob", now - 100, 10),
            70013,
        ),
        ("identifier mismatch", APP, sig("bob"), 70013),
        (
            "wrong key beats expiry",
            APP,
            sig_with("wrong", APP, "alice", now - 100, 10),
            70009,
        ),
        (
            "another app's key",
            APP,
            sig_with(KEY2, APP, "alice", now, 86_400),
            70009,
        ),
        ("expired", APP, expired_sig("alice"), 70001),
    ];
    for (what, app, user_sig, want) in &cases {
        let r = c.request(login_msg(*app, "alice", user_sig, "web")).await;
        assert_eq!(code(&r), *want, "{what}: {r}");
        assert!(r.get("data").is_none(), "{what}: no data on failure: {r}");
        assert!(r["desc"].as_str().is_some_and(|d| !d.is_empty()), "{r}");
    }
    // the socket is still open and logged out after all of them
    let r = c.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"]["status"], 3);

    // revocation is the last check: an expired and revoked ticket is 70001, a valid revoked one 70052
    let old = sig("alice");
    let (st, v) = gw
        .admin_post("/v1/kick", &json!({"sdk_app_id":APP,"user_id":"alice"}))
        .await;
    assert_eq!((st, v), (200, json!({"kicked":0})));
    let r = c
        .request(login_msg(APP, "alice", &expired_sig("alice"), "web"))
        .await;
    assert_eq!(code(&r), 70001, "{r}");
    let r = c.request(login_msg(APP, "alice", &old, "web")).await;
    assert_eq!(code(&r), 70052, "{r}");
    // a valid login for the second app (its own key) works on the same socket
    let r = c
        .request(login_msg(
            APP2,
            "alice",
            &sig_with(KEY2, APP2, "alice", now, 60),
            "web",
        ))
        .await;
    assert_eq!(code(&r), 0, "{r}");
}

on_both_stores!(sig_failures_answer_their_codes_on_refresh_and_leave_the_session);
async fn sig_failures_answer_their_codes_on_refresh_and_leave_the_session(store: Store) {
    let gw = store.start_with(&config("[throttle]\nmax_failures = 1000", &second_app()));
    let now = now_secs();
    let mut c = gw.client().await;
    let first = sig_at("alice", now, 1000);
    let r = c.login_with_sig("alice", "web", None, &first).await;
    assert_eq!(code(&r), 0, "{r}");
    let before = online(&gw, "alice").await;
    let cases: Vec<(&str, String, u64)> = vec![
        ("empty", String::new(), 70002),
        ("undecodable", "@@@@".into(), 70003),
        ("zlib of non-JSON", pack(b"{"), 70003),
        (
            "sdkappid mismatch",
            sig_with(KEY, APP2, "alice", now, 5000),
            70014,
        ),
        ("another user's sig", sig("bob"), 70013),
        ("wrong key", wrong_key_sig("alice"), 70009),
        ("expired", expired_sig("alice"), 70001),
    ];
    for (what, user_sig, want) in &cases {
        let r = c
            .request(json!({"type":"refresh_sig","user_sig":user_sig}))
            .await;
        assert_eq!(code(&r), *want, "{what}: {r}");
        assert!(r.get("data").is_none(), "{r}");
        let s = c.request(json!({"type":"get_login_status"})).await;
        assert_eq!(s["data"]["status"], 1, "{what}: the session stays");
        let u = c.request(json!({"type":"get_login_user"})).await;
        assert_eq!(u["data"]["user_id"], "alice");
    }
    assert_eq!(
        online(&gw, "alice").await,
        before,
        "failed refreshes change nothing (expire_at included)"
    );
    // a good one extends
    let r = c
        .request(json!({"type":"refresh_sig","user_sig":sig_at("alice", now, 5000)}))
        .await;
    assert_eq!(r["data"], json!({"expire_at": now + 5000}), "{r}");
    assert_eq!(
        online(&gw, "alice").await["instances"][0]["expire_at"],
        now + 5000
    );

    // revoked: kick alice (this socket goes with 4502), log in again with a ticket from after the
    // revocation second, then refresh with a ticket from before it
    let (st, _) = gw
        .admin_post("/v1/kick", &json!({"sdk_app_id":APP,"user_id":"alice"}))
        .await;
    assert_eq!(st, 200);
    let push = c.recv().await;
    assert_eq!(push["type"], "kicked_offline");
    c.expect_close(4502).await;
    let mut c2 = gw.client().await;
    let after = now_secs() + 1;
    let r = c2
        .login_with_sig("alice", "web", None, &sig_at("alice", after, 1000))
        .await;
    assert_eq!(code(&r), 0, "{r}");
    let r = c2
        .request(json!({"type":"refresh_sig","user_sig":first}))
        .await;
    assert_eq!(code(&r), 70052, "{r}");
    let s = c2.request(json!({"type":"get_login_status"})).await;
    assert_eq!(s["data"]["status"], 1);
    assert_eq!(
        online(&gw, "alice").await["instances"][0]["expire_at"],
        after + 1000
    );
}

on_both_stores!(expired_sig_is_70001_and_valid_until_its_second);
async fn expired_sig_is_70001_and_valid_until_its_second(store: Store) {
    let gw = store.start();
    // a ticket ending on a second boundary at least 300 ms away
    let end = (now_ms() + 1300) / 1000;
    let ticket = sig_at("alice", end - 100, 100);
    let mut c = gw.client().await;
    let r = c.login_with_sig("alice", "web", None, &ticket).await;
    assert_eq!(code(&r), 0, "valid before time + expire: {r}");
    assert_eq!(r["data"]["expire_at"], end);
    let r = c.request(json!({"type":"logout"})).await;
    assert_eq!(code(&r), 0);
    while now_ms() <= end * 1000 + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = c.login_with_sig("alice", "web", None, &ticket).await;
    assert_eq!(code(&r), 70001, "expired just after time + expire: {r}");
}

// ---------------------------------------------------------------------------------------------
// §2 throttle (70050)

on_both_stores!(throttle_blocks_the_key_and_counts_login_and_refresh_failures);
async fn throttle_blocks_the_key_and_counts_login_and_refresh_failures(store: Store) {
    let gw = store.start_with(&config(
        "[throttle]\nmax_failures = 3\nwindow_secs = 60",
        &second_app(),
    ));
    // s: alice logged in; t: another socket from the same IP
    let mut s = gw.logged_in("alice", "web", None).await;
    let mut t = gw.client().await;
    let r = s.request(json!({"type":"refresh_sig","user_sig":""})).await;
    assert_eq!(code(&r), 70002, "failure 1 (refresh): {r}");
    let r = t
        .login_with_sig("alice", "web", None, &wrong_key_sig("alice"))
        .await;
    assert_eq!(code(&r), 70009, "failure 2 (login): {r}");
    let r = s
        .login_with_sig("alice", "web", None, &expired_sig("alice"))
        .await;
    assert_eq!(
        code(&r),
        70001,
        "failure 3 (login on a logged-in socket): {r}"
    );

    // blocked now, whatever the ticket, on login and refresh alike
    let r = t.login("alice", "web", None).await;
    assert_eq!(code(&r), 70050, "a good sig on a throttled key: {r}");
    let r = t.login_with_sig("alice", "web", None, "").await;
    assert_eq!(
        code(&r),
        70050,
        "the throttle is checked before emptiness: {r}"
    );
    let r = s
        .request(json!({"type":"refresh_sig","user_sig":sig("alice")}))
        .await;
    assert_eq!(code(&r), 70050, "{r}");
    let r = s.login("alice", "android", None).await;
    assert_eq!(code(&r), 70050, "{r}");
    // s is still logged in as before
    let r = s.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"]["status"], 1);
    assert_eq!(
        instances(&gw, "alice").await,
        vec![("web".to_owned(), Value::Null)]
    );

    // other users, other IPs and other apps are not affected
    let r = t.login("bob", "web", None).await;
    assert_eq!(code(&r), 0, "another user from the same IP: {r}");
    let mut from_ip2 = Client::connect_with(&gw.ws_url, IP2, None).await;
    let r = from_ip2.login("alice", "android", None).await;
    assert_eq!(code(&r), 0, "the same user from another IP: {r}");
    let mut other_app = gw.client().await;
    let r = other_app
        .request(login_msg(
            APP2,
            "alice",
            &sig_with(KEY2, APP2, "alice", now_secs(), 60),
            "web",
        ))
        .await;
    assert_eq!(code(&r), 0, "the same user and IP in another app: {r}");

    // only the failures of the §2 table count: 6017 and 7003 answers do not
    let mut u = gw.client().await;
    for _ in 0..4 {
        let r = u.login("carol", "ios", None).await;
        assert_eq!(code(&r), 6017, "{r}");
        let r = u.login("carol", "web", Some("")).await;
        assert_eq!(code(&r), 6017, "{r}");
    }
    let r = u.login("carol", "web", None).await;
    assert_eq!(code(&r), 0, "6017 answers are not UserSig failures: {r}");

    // a success does not reset the count: 2 failures, a success, 1 failure → blocked
    let mut d = gw.client().await;
    for _ in 0..2 {
        let r = d
            .login_with_sig("dave", "web", None, &wrong_key_sig("dave"))
            .await;
        assert_eq!(code(&r), 70009);
    }
    let r = d.login("dave", "web", None).await;
    assert_eq!(code(&r), 0);
    let r = d
        .request(json!({"type":"refresh_sig","user_sig":"@"}))
        .await;
    assert_eq!(code(&r), 70003);
    let r = d
        .request(json!({"type":"refresh_sig","user_sig":sig("dave")}))
        .await;
    assert_eq!(code(&r), 70050, "the success did not reset the count: {r}");
}

on_both_stores!(throttle_window_slides_and_70050_answers_do_not_count);
async fn throttle_window_slides_and_70050_answers_do_not_count(store: Store) {
    let gw = store.start_with(&config("[throttle]\nmax_failures = 3\nwindow_secs = 2", ""));
    let mut c = gw.client().await;
    let t0 = Instant::now();
    for _ in 0..3 {
        let r = c
            .login_with_sig("alice", "web", None, &wrong_key_sig("alice"))
            .await;
        assert_eq!(code(&r), 70009, "{r}");
    }
    // keep failing while blocked, through the first 1.2 s: all 70050, none counted
    let mut blocked = 0;
    while t0.elapsed() < secs(1.2) {
        let r = c
            .login_with_sig("alice", "web", None, &wrong_key_sig("alice"))
            .await;
        assert_eq!(code(&r), 70050, "{r}");
        blocked += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(blocked >= 3);
    let r = c.login("alice", "web", None).await;
    assert_eq!(code(&r), 70050, "still within the window: {r}");
    // the three counted failures leave the window 2 s after they happened
    tokio::time::sleep_until((t0 + secs(2.2)).into()).await;
    let r = c.login("alice", "web", None).await;
    assert_eq!(
        code(&r),
        0,
        "the window slid past the counted failures; the 70050 answers did not count: {r}"
    );
}

// ---------------------------------------------------------------------------------------------
// §2 revocation (70052) through the admin kick

on_both_stores!(admin_kick_without_platform_revokes_old_sigs_and_fresh_ones_work);
async fn admin_kick_without_platform_revokes_old_sigs_and_fresh_ones_work(store: Store) {
    let gw = store.start();
    let old = sig("alice");
    let mut a = gw.client().await;
    let r = a.login_with_sig("alice", "android", None, &old).await;
    assert_eq!(code(&r), 0);
    let mut w = gw.logged_in("alice", "web", None).await;

    // a kick of one platform does not revoke
    let (st, v) = gw
        .admin_post(
            "/v1/kick",
            &json!({"sdk_app_id":APP,"user_id":"alice","platform":"android"}),
        )
        .await;
    assert_eq!((st, v), (200, json!({"kicked":1})));
    assert_eq!(
        a.recv().await,
        json!({"type":"kicked_offline","reason":"admin","by_platform":null})
    );
    a.expect_close(4502).await;
    let mut a = gw.client().await;
    let r = a.login_with_sig("alice", "android", None, &old).await;
    assert_eq!(code(&r), 0, "a platform kick revokes nothing: {r}");

    // a kick of the whole user revokes every ticket with TLS.time <= now
    let (st, v) = gw
        .admin_post("/v1/kick", &json!({"sdk_app_id":APP,"user_id":"alice"}))
        .await;
    assert_eq!((st, v), (200, json!({"kicked":2})));
    for c in [&mut a, &mut w] {
        assert_eq!(c.recv().await["reason"], "admin");
        c.expect_close(4502).await;
    }
    let revoked_by = now_secs();
    let mut c = gw.client().await;
    let r = c.login_with_sig("alice", "web", None, &old).await;
    assert_eq!(code(&r), 70052, "{r}");
    let r = c
        .login_with_sig("alice", "web", None, &sig_at("alice", revoked_by + 1, 600))
        .await;
    assert_eq!(code(&r), 0, "a ticket from the next second works: {r}");
    // and once the clock is past that second, a freshly minted one works too
    while now_secs() <= revoked_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut d = gw.client().await;
    let r = d.login("alice", "android", None).await;
    assert_eq!(code(&r), 0, "{r}");
    // the revocation is per user
    let r = d.login("bob", "android", None).await;
    assert_eq!(code(&r), 0);
}

// ---------------------------------------------------------------------------------------------
// §3 transport and encoding

on_both_stores!(other_paths_answer_404);
async fn other_paths_answer_404(store: Store) {
    let gw = store.start();
    let base = gw.ws_url.replace("ws://", "http://").replace("/ws", "");
    for path in ["/", "/other", "/ws/x", "/wss", "/v1/online"] {
        let (status, _) = http(&base, "GET", path, None, None).await;
        assert_eq!(status, 404, "plain GET {path}");
    }
    for path in ["/", "/other", "/ws/x", "/wsx"] {
        let url = format!("{base}{path}").replace("http://", "ws://");
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 404, "upgrade on {path}")
            }
            other => panic!("upgrade on {path}: expected 404, got {other:?}"),
        }
    }
    // the endpoint itself works
    let mut c = gw.client().await;
    assert_eq!(code(&c.request(json!({"type":"ping"})).await), 0);
}

on_both_stores!(message_over_max_frame_bytes_closes_1009);
async fn message_over_max_frame_bytes_closes_1009(store: Store) {
    let gw = store.start_with(&config(
        "max_frame_bytes = 1024\nmax_payload_bytes = 200",
        "",
    ));
    let mut bystander = gw.logged_in("bob", "web", None).await;

    // exactly max_frame_bytes is fine
    let mut c = gw.client().await;
    let mut text = r#"{"type":"ping","seq":1}"#.to_owned();
    text.push_str(&" ".repeat(1024 - text.len()));
    assert_eq!(text.len(), 1024);
    c.send_text(&text).await;
    let r = c.recv().await;
    assert_eq!((r["seq"].as_u64(), code(&r)), (Some(1), 0), "{r}");
    // fragments are reassembled: 2 × 300 bytes is a 600-byte message
    let mut text = r#"{"type":"ping","seq":2}"#.to_owned();
    text.push_str(&" ".repeat(600 - text.len()));
    let (a, b) = text.as_bytes().split_at(300);
    send_frame(&mut c, a.to_vec(), OpData::Text, false).await;
    send_frame(&mut c, b.to_vec(), OpData::Continue, true).await;
    let r = c.recv().await;
    assert_eq!((r["seq"].as_u64(), code(&r)), (Some(2), 0), "{r}");
    // one byte more: 1009
    let mut text = r#"{"type":"ping","seq":3}"#.to_owned();
    text.push_str(&" ".repeat(1025 - text.len()));
    c.send_text(&text).await;
    expect_close_with_reason(&mut c, 1009, "1025-byte text").await;

    // a binary message over the limit
    let mut c = gw.client().await;
    c.ws.send(Message::binary(vec![6u8; 4000])).await.unwrap();
    expect_close_with_reason(&mut c, 1009, "4000-byte binary").await;

    // fragments of 700 bytes each, 1400 after reassembly
    let mut c = gw.logged_in("carol", "web", None).await;
    let mut text = r#"{"type":"ping","seq":9}"#.to_owned();
    text.push_str(&" ".repeat(1400 - text.len()));
    let (a, b) = text.as_bytes().split_at(700);
    send_frame(&mut c, a.to_vec(), OpData::Text, false).await;
    send_frame(&mut c, b.to_vec(), OpData::Continue, true).await;
    expect_close_with_reason(&mut c, 1009, "fragmented 1400 bytes").await;
    wait_offline(&gw, "carol", WAIT).await;

    // nobody else noticed
    let r = bystander.request(json!({"type":"ping"})).await;
    assert_eq!(code(&r), 0);
    assert_eq!(online(&gw, "bob").await["status"], "Online");
}

on_both_stores!(undecodable_frames_close_1007_and_leave_others_alone);
async fn undecodable_frames_close_1007_and_leave_others_alone(store: Store) {
    let gw = store.start();
    let mut bystander = gw.logged_in("bob", "web", None).await;
    let good = sig("alice");
    let cases: Vec<(&str, Message)> = vec![
        ("invalid JSON", Message::text("{\"type\":")),
        ("not JSON at all", Message::text("hello")),
        ("empty text", Message::text("")),
        ("JSON but not an object", Message::text("[1,2,3]")),
        ("unknown type", Message::text(r#"{"type":"hello","seq":1}"#)),
        ("type missing", Message::text(r#"{"seq":1}"#)),
        ("type mistyped", Message::text(r#"{"type":7,"seq":1}"#)),
        ("seq missing", Message::text(r#"{"type":"ping"}"#)),
        ("seq a string", Message::text(r#"{"type":"ping","seq":"1"}"#)),
        ("seq negative", Message::text(r#"{"type":"ping","seq":-1}"#)),
        ("seq fractional", Message::text(r#"{"type":"ping","seq":1.5}"#)),
        (
            "seq over u64",
            Message::text(r#"{"type":"ping","seq":18446744073709551616}"#),
        ),
        (
            "login without user_sig",
            Message::text(
                json!({"type":"login","seq":1,"sdk_app_id":APP,"user_id":"alice","platform":"web"})
                    .to_string(),
            ),
        ),
        (
            "sdk_app_id a string",
            Message::text(
                json!({"type":"login","seq":1,"sdk_app_id":APP.to_string(),"user_id":"alice","user_sig":good,"platform":"web"})
                    .to_string(),
            ),
        ),
        (
            "user_id a number",
            Message::text(
                json!({"type":"login","seq":1,"sdk_app_id":APP,"user_id":5,"user_sig":good,"platform":"web"})
                    .to_string(),
            ),
        ),
        (
            "instance_id a number",
            Message::text(
                json!({"type":"login","seq":1,"sdk_app_id":APP,"user_id":"alice","user_sig":good,"platform":"web","instance_id":5})
                    .to_string(),
            ),
        ),
        (
            "send without payload",
            Message::text(r#"{"type":"send","seq":1,"to":"bob"}"#),
        ),
        (
            "payload an object",
            Message::text(r#"{"type":"send","seq":1,"to":"bob","payload":{}}"#),
        ),
        (
            "refresh_sig with a null sig",
            Message::text(r#"{"type":"refresh_sig","seq":1,"user_sig":null}"#),
        ),
        (
            "trailing characters",
            Message::text(r#"{"type":"ping","seq":1}}"#),
        ),
        (
            "duplicate key",
            Message::text(r#"{"type":"ping","seq":1,"seq":2}"#),
        ),
        ("bincode: empty", Message::binary(Vec::<u8>::new())),
        ("bincode: unknown variant", Message::binary(vec![7u8, 1])),
        ("bincode: truncated", Message::binary(vec![0u8, 1])),
        (
            "bincode: trailing bytes",
            Message::binary(vec![6u8, 1, 0]),
        ),
        (
            "bincode: huge string length",
            Message::binary(vec![0u8, 1, 1, 252, 0xff, 0xff, 0xff, 0xff]),
        ),
        (
            "bincode: invalid UTF-8 string",
            Message::binary(vec![4u8, 1, 2, 0xff, 0xfe]),
        ),
        (
            "JSON in a binary frame",
            Message::binary(br#"{"type":"ping","seq":1}"#.to_vec()),
        ),
    ];
    for (what, frame) in cases {
        // each on a logged-in socket: the session must leave presence too
        let mut c = gw.logged_in("alice", "web", None).await;
        c.ws.send(frame).await.unwrap();
        expect_close_with_reason(&mut c, 1007, what).await;
        wait_offline(&gw, "alice", WAIT).await;
        let r = bystander.request(json!({"type":"ping"})).await;
        assert_eq!(code(&r), 0, "after {what}");
    }
    // a text frame that is not UTF-8
    let mut c = gw.client().await;
    send_frame(&mut c, vec![b'"', 0xff, 0xfe, b'"'], OpData::Text, true).await;
    expect_close_with_reason(&mut c, 1007, "text frame not UTF-8").await;

    assert_eq!(online(&gw, "bob").await["status"], "Online");
    let mut fresh = gw.logged_in("alice", "web", None).await;
    let r = fresh
        .request(json!({"type":"send","to":"bob","payload":"still here"}))
        .await;
    assert_eq!(r["data"]["delivered"], 1);
    assert_eq!(bystander.recv().await["payload"], "still here");
}

on_both_stores!(bad_values_answer_7003_or_6017_not_1007);
async fn bad_values_answer_7003_or_6017_not_1007(store: Store) {
    let gw = store.start_with(&config("max_payload_bytes = 100", ""));
    let mut c = gw.client().await;
    let long_user = "u".repeat(33);
    let cases: Vec<(&str, Value, u64)> = vec![
        (
            "user_id with a space",
            json!({"type":"login","sdk_app_id":APP,"user_id":"a b","user_sig":sig("a"),"platform":"web"}),
            7003,
        ),
        (
            "user_id of 33 bytes",
            json!({"type":"login","sdk_app_id":APP,"user_id":long_user,"user_sig":sig("a"),"platform":"web"}),
            7003,
        ),
        (
            "empty user_id",
            json!({"type":"login","sdk_app_id":APP,"user_id":"","user_sig":sig("a"),"platform":"web"}),
            7003,
        ),
        (
            "non-ASCII user_id",
            json!({"type":"login","sdk_app_id":APP,"user_id":"é","user_sig":sig("a"),"platform":"web"}),
            7003,
        ),
        (
            "platform ios",
            json!({"type":"login","sdk_app_id":APP,"user_id":"alice","user_sig":sig("alice"),"platform":"ios"}),
            6017,
        ),
        (
            "platform in upper case",
            json!({"type":"login","sdk_app_id":APP,"user_id":"alice","user_sig":sig("alice"),"platform":"Web"}),
            6017,
        ),
        (
            "empty instance_id",
            json!({"type":"login","sdk_app_id":APP,"user_id":"alice","user_sig":sig("alice"),"platform":"web","instance_id":""}),
            6017,
        ),
        (
            "instance_id with a space",
            json!({"type":"login","sdk_app_id":APP,"user_id":"alice","user_sig":sig("alice"),"platform":"web","instance_id":"a b"}),
            6017,
        ),
        (
            "instance_id of 65 bytes",
            json!({"type":"login","sdk_app_id":APP,"user_id":"alice","user_sig":sig("alice"),"platform":"web","instance_id":"i".repeat(65)}),
            6017,
        ),
    ];
    for (what, v, want) in &cases {
        let r = c.request(v.clone()).await;
        assert_eq!(code(&r), *want, "{what}: {r}");
    }
    // explicit null is no instance id; 64 printable bytes is fine
    let r = c
        .request(json!({"type":"login","sdk_app_id":APP,"user_id":"alice","user_sig":sig("alice"),"platform":"web","instance_id":null}))
        .await;
    assert_eq!(r["data"]["instance_id"], Value::Null, "{r}");
    let iid = "!~".repeat(32);
    let r = c.login("alice", "web", Some(&iid)).await;
    assert_eq!(r["data"]["instance_id"], iid.as_str(), "{r}");

    let mut bob = gw.logged_in("bob", "web", None).await;
    let sends: Vec<(&str, Value, u64)> = vec![
        (
            "to with a space",
            json!({"type":"send","to":"b b","payload":"x"}),
            7003,
        ),
        (
            "empty to",
            json!({"type":"send","to":"","payload":"x"}),
            7003,
        ),
        (
            "to of 33 bytes",
            json!({"type":"send","to":long_user,"payload":"x"}),
            7003,
        ),
        (
            "payload of 101 bytes",
            json!({"type":"send","to":"bob","payload":"p".repeat(101)}),
            6017,
        ),
        (
            "payload of 51 two-byte characters (102 bytes)",
            json!({"type":"send","to":"bob","payload":"é".repeat(51)}),
            6017,
        ),
        (
            "payload of exactly 100 bytes",
            json!({"type":"send","to":"bob","payload":"é".repeat(50)}),
            0,
        ),
        (
            "empty payload",
            json!({"type":"send","to":"bob","payload":""}),
            0,
        ),
    ];
    for (what, v, want) in &sends {
        let r = c.request(v.clone()).await;
        assert_eq!(code(&r), *want, "{what}: {r}");
    }
    // bob got exactly the two valid ones
    assert_eq!(bob.recv().await["payload"], "é".repeat(50));
    assert_eq!(bob.recv().await["payload"], "");
    assert_quiet(&mut bob, Duration::from_millis(200), "bob").await;

    // the same values in bincode answer the same codes, in bincode
    let r = request_bincode(&mut c, |seq| ClientMsg::Login {
        seq,
        sdk_app_id: APP,
        user_id: "a b".into(),
        user_sig: sig("a"),
        platform: "web".into(),
        instance_id: None,
    })
    .await;
    assert_eq!(response_code(&r), 7003);
    let r = request_bincode(&mut c, |seq| ClientMsg::Login {
        seq,
        sdk_app_id: APP,
        user_id: "alice".into(),
        user_sig: sig("alice"),
        platform: "ios".into(),
        instance_id: None,
    })
    .await;
    assert_eq!(response_code(&r), 6017);
    let r = request_bincode(&mut c, |seq| ClientMsg::Send {
        seq,
        to: "b b".into(),
        payload: "x".into(),
    })
    .await;
    assert_eq!(response_code(&r), 7003);
    let r = request_bincode(&mut c, |seq| ClientMsg::Send {
        seq,
        to: "bob".into(),
        payload: "x".repeat(101),
    })
    .await;
    assert_eq!(response_code(&r), 6017);
    // still open, still alice
    let r = c.request(json!({"type":"get_login_user"})).await;
    assert_eq!(r["data"]["user_id"], "alice");
}

on_both_stores!(bincode_requests_get_bincode_responses_and_pushes_follow_the_login_frame);
async fn bincode_requests_get_bincode_responses_and_pushes_follow_the_login_frame(store: Store) {
    let gw = store.start();
    let mut b = gw.client().await;
    let r = request_bincode(&mut b, |seq| {
        bincode_login(seq, "bob", "web", Some("tab-1"))
    })
    .await;
    match &r {
        ServerMsg::Response {
            code: 0,
            data:
                Some(ResponseData::Login {
                    user_id,
                    platform: Platform::Web,
                    instance_id: Some(iid),
                    ..
                }),
            ..
        } => assert_eq!((user_id.as_str(), iid.as_str()), ("bob", "tab-1")),
        other => panic!("bincode login: {other:?}"),
    }
    // a JSON request on the same socket is answered in JSON
    let r = b.request(json!({"type":"get_login_user"})).await;
    assert_eq!(r["data"]["user_id"], "bob");
    // and bincode again in bincode
    let r = request_bincode(&mut b, |seq| ClientMsg::GetLoginStatus { seq }).await;
    assert!(matches!(
        r,
        ServerMsg::Response {
            code: 0,
            data: Some(ResponseData::LoginStatus { status: 1 }),
            ..
        }
    ));

    // pushes to the bincode-logged-in session are bincode, whatever the sender used
    let mut a = gw.logged_in("alice", "web", None).await;
    let r = a
        .request(json!({"type":"send","to":"bob","payload":"hi bob"}))
        .await;
    assert_eq!(r["data"]["delivered"], 1);
    assert_eq!(
        b.recv_bincode().await,
        ServerMsg::Message {
            from: "alice".into(),
            from_platform: Some(Platform::Web),
            payload: "hi bob".into()
        }
    );
    // a JSON-logged-in session gets JSON pushes even from a bincode sender
    let r = request_bincode(&mut b, |seq| ClientMsg::Send {
        seq,
        to: "alice".into(),
        payload: "hi alice".into(),
    })
    .await;
    assert!(matches!(
        r,
        ServerMsg::Response {
            code: 0,
            data: Some(ResponseData::Send { delivered: 1 }),
            ..
        }
    ));
    match a.recv_frame().await {
        Some(Message::Text(t)) => assert_eq!(
            serde_json::from_str::<Value>(t.as_str()).unwrap(),
            json!({"type":"message","from":"bob","from_platform":"web","payload":"hi alice"})
        ),
        other => panic!("expected a JSON push, got {other:?}"),
    }

    // a JSON re-login of the same user moves the pushes to JSON
    let r = b.login("bob", "web", Some("tab-1")).await;
    assert_eq!(code(&r), 0);
    a.request(json!({"type":"send","to":"bob","payload":"now JSON"}))
        .await;
    match b.recv_frame().await {
        Some(Message::Text(t)) => assert!(t.as_str().contains("now JSON")),
        other => panic!("expected a JSON push after the JSON login, got {other:?}"),
    }
    // and a bincode re-login moves them back; a kick push is bincode too
    let r = request_bincode(&mut b, |seq| {
        bincode_login(seq, "bob", "web", Some("tab-1"))
    })
    .await;
    assert_eq!(response_code(&r), 0);
    let _newer = gw.logged_in("bob", "web", Some("tab-1")).await;
    assert_eq!(
        b.recv_bincode().await,
        ServerMsg::KickedOffline {
            reason: KickReason::Replaced,
            by_platform: Some(Platform::Web)
        }
    );
    b.expect_close(4501).await;
}

on_both_stores!(pipelined_requests_are_answered_in_order_in_their_encoding);
async fn pipelined_requests_are_answered_in_order_in_their_encoding(store: Store) {
    // The §16 rate limits are off here: this is about order (tests/abuse.rs has the limits).
    let gw = store.start_with(&config(
        "max_requests_per_sec = 0\nmax_frames_per_sec = 0\n[throttle]\nmax_failures = 1000",
        "",
    ));
    let mut peer = gw.logged_in("peer", "web", None).await;
    let mut c = gw.client().await;
    // (request, encoding, expected code, expected data or Null for "do not check")
    let mut plan: Vec<(ClientMsg, Encoding, u32, Value)> = Vec::new();
    let mut seq = 0u64;
    let mut next = || {
        seq += 1;
        seq
    };
    for round in 0..25 {
        let enc = if round % 2 == 0 {
            Encoding::Json
        } else {
            Encoding::Bincode
        };
        let other = if round % 2 == 0 {
            Encoding::Bincode
        } else {
            Encoding::Json
        };
        plan.push((ClientMsg::Ping { seq: next() }, enc, 0, Value::Null));
        plan.push((
            ClientMsg::Send {
                seq: next(),
                to: "peer".into(),
                payload: "x".into(),
            },
            other,
            6014,
            Value::Null,
        ));
        plan.push((
            ClientMsg::Login {
                seq: next(),
                sdk_app_id: APP,
                user_id: "alice".into(),
                user_sig: wrong_key_sig("alice"),
                platform: "web".into(),
                instance_id: None,
            },
            enc,
            70009,
            Value::Null,
        ));
        plan.push((
            ClientMsg::GetLoginStatus { seq: next() },
            other,
            0,
            json!({"status":3}),
        ));
        plan.push((
            bincode_login(next(), "alice", "web", None),
            enc,
            0,
            Value::Null,
        ));
        plan.push((
            ClientMsg::GetLoginUser { seq: next() },
            other,
            0,
            json!({"user_id":"alice"}),
        ));
        plan.push((
            ClientMsg::Send {
                seq: next(),
                to: "peer".into(),
                payload: format!("m{round}"),
            },
            enc,
            0,
            json!({"delivered":1}),
        ));
        plan.push((
            ClientMsg::Login {
                seq: next(),
                sdk_app_id: APP,
                user_id: "a b".into(),
                user_sig: String::new(),
                platform: "web".into(),
                instance_id: None,
            },
            other,
            7003,
            Value::Null,
        ));
        plan.push((
            ClientMsg::GetLoginStatus { seq: next() },
            enc,
            0,
            json!({"status":1}),
        ));
        plan.push((ClientMsg::Logout { seq: next() }, other, 0, Value::Null));
        plan.push((ClientMsg::Logout { seq: next() }, enc, 6014, Value::Null));
    }
    for (msg, enc, _, _) in &plan {
        let bytes = encode_client(*enc, msg);
        let frame = match enc {
            Encoding::Json => Message::text(String::from_utf8(bytes).unwrap()),
            Encoding::Bincode => Message::binary(bytes),
        };
        c.ws.feed(frame).await.unwrap();
    }
    c.ws.flush().await.unwrap();
    for (msg, enc, want, data) in &plan {
        let frame = c.recv_frame().await.expect("a response");
        let (got_enc, r) = frame_json(&frame);
        assert_eq!(r["type"], "response", "{r}");
        assert_eq!(r["seq"], msg.seq(), "responses come in request order: {r}");
        assert_eq!(got_enc, *enc, "a response uses its request's encoding: {r}");
        assert_eq!(code(&r), u64::from(*want), "{msg:?}: {r}");
        if !data.is_null() {
            assert_eq!(r["data"], *data, "{msg:?}: {r}");
        }
    }
    // the peer got the 25 messages in order, in JSON (its login frame)
    for round in 0..25 {
        let m = peer.recv().await;
        assert_eq!(m["payload"], format!("m{round}"), "{m}");
    }
}

// ---------------------------------------------------------------------------------------------
// §4–§6 requests, response shapes, codes

on_both_stores!(every_response_has_its_documented_shape);
async fn every_response_has_its_documented_shape(store: Store) {
    let gw = store.start();
    let mut c = gw.client().await;
    let r = c.request(json!({"type":"get_login_user"})).await;
    assert_eq!(
        r,
        json!({"type":"response","seq":1,"code":0,"desc":"ok","data":{"user_id":""}})
    );
    let r = c.request(json!({"type":"get_login_status"})).await;
    assert_eq!(
        r,
        json!({"type":"response","seq":2,"code":0,"desc":"ok","data":{"status":3}})
    );
    let before = now_ms();
    let r = c.request(json!({"type":"ping"})).await;
    let after = now_ms();
    let t = r["data"]["server_time_ms"]
        .as_u64()
        .expect("server_time_ms");
    assert!(
        before <= t && t <= after,
        "server_time_ms {t} in [{before}, {after}]"
    );
    assert_eq!(r["data"].as_object().unwrap().len(), 1, "{r}");
    assert_eq!((code(&r), &r["desc"]), (0, &json!("ok")));

    // login: instance_id null when absent, expire_at = time + expire
    let t0 = now_secs() - 10;
    let r = c
        .login_with_sig("alice", "web", None, &sig_at("alice", t0, 1000))
        .await;
    assert_eq!(
        r,
        json!({"type":"response","seq":4,"code":0,"desc":"ok",
               "data":{"user_id":"alice","platform":"web","instance_id":null,"expire_at":t0 + 1000}})
    );
    let r = c
        .login_with_sig("alice", "mac", Some("tab-1"), &sig_at("alice", t0, 2000))
        .await;
    assert_eq!(
        r["data"],
        json!({"user_id":"alice","platform":"mac","instance_id":"tab-1","expire_at":t0 + 2000})
    );
    let u = online(&gw, "alice").await;
    assert_eq!(u["status"], "Online");
    assert_eq!(u["instances"].as_array().unwrap().len(), 1, "{u}");
    assert_eq!(u["instances"][0]["expire_at"], t0 + 2000);
    assert_eq!(u["instances"][0]["instance_id"], "tab-1");

    let r = c.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"], json!({"status":1}));
    let r = c.request(json!({"type":"get_login_user"})).await;
    assert_eq!(r["data"], json!({"user_id":"alice"}));
    let r = c
        .request(json!({"type":"refresh_sig","user_sig":sig_at("alice", t0, 3000)}))
        .await;
    assert_eq!(
        r,
        json!({"type":"response","seq":8,"code":0,"desc":"ok","data":{"expire_at":t0 + 3000}})
    );
    let r = c
        .request(json!({"type":"send","to":"nobody","payload":"x"}))
        .await;
    assert_eq!(
        r,
        json!({"type":"response","seq":9,"code":0,"desc":"ok","data":{"delivered":0}})
    );
    // logout: "data":null, present
    let r = c.request(json!({"type":"logout"})).await;
    assert_eq!(
        r,
        json!({"type":"response","seq":10,"code":0,"desc":"ok","data":null})
    );
    assert!(r.as_object().unwrap().contains_key("data"));
    // a failure: no data key at all
    let r = c.request(json!({"type":"logout"})).await;
    assert_eq!(code(&r), 6014);
    assert!(!r.as_object().unwrap().contains_key("data"), "{r}");
    assert_eq!(
        r.as_object().unwrap().len(),
        4,
        "type, seq, code, desc: {r}"
    );
    // seq is echoed as given, up to u64::MAX
    c.send_text(&format!(r#"{{"type":"ping","seq":{}}}"#, u64::MAX))
        .await;
    let r = c.recv().await;
    assert_eq!(r["seq"], u64::MAX);
}

on_both_stores!(send_counts_the_recipients_sockets_but_never_the_sender);
async fn send_counts_the_recipients_sockets_but_never_the_sender(store: Store) {
    let gw = store.start();
    let mut a1 = gw.logged_in("alice", "web", None).await;
    let mut a2 = gw.logged_in("alice", "android", None).await;
    let mut b = gw.logged_in("bob", "mac", None).await;

    // to oneself: the sending socket never counts, the user's other socket does
    let r = a1
        .request(json!({"type":"send","to":"alice","payload":"note to self"}))
        .await;
    assert_eq!(r["data"], json!({"delivered":1}));
    assert_eq!(
        a2.recv().await,
        json!({"type":"message","from":"alice","from_platform":"web","payload":"note to self"})
    );
    // a1 got nothing: its next frame is the response to its next request
    let r = a1.request(json!({"type":"ping"})).await;
    assert_eq!(code(&r), 0);

    let r = b
        .request(json!({"type":"send","to":"alice","payload":"hello"}))
        .await;
    assert_eq!(r["data"], json!({"delivered":2}));
    for c in [&mut a1, &mut a2] {
        assert_eq!(
            c.recv().await,
            json!({"type":"message","from":"bob","from_platform":"mac","payload":"hello"})
        );
    }
    let r = a2
        .request(json!({"type":"send","to":"bob","payload":"back"}))
        .await;
    assert_eq!(r["data"], json!({"delivered":1}));
    assert_eq!(b.recv().await["from_platform"], "android");

    // a logged-out recipient socket does not count; an unknown user is 0
    let r = a2.request(json!({"type":"logout"})).await;
    assert_eq!(code(&r), 0);
    let r = b
        .request(json!({"type":"send","to":"alice","payload":"only one"}))
        .await;
    assert_eq!(r["data"], json!({"delivered":1}));
    assert_eq!(a1.recv().await["payload"], "only one");
    assert_quiet(&mut a2, Duration::from_millis(200), "logged-out a2").await;
    let r = b
        .request(json!({"type":"send","to":"nobody","payload":"x"}))
        .await;
    assert_eq!(r["data"], json!({"delivered":0}));
}

// ---------------------------------------------------------------------------------------------
// §7 the session state machine

on_both_stores!(requests_needing_a_session_answer_6014_when_logged_out);
async fn requests_needing_a_session_answer_6014_when_logged_out(store: Store) {
    let gw = store.start();
    let mut c = gw.client().await;
    for round in 0..2 {
        for v in [
            json!({"type":"logout"}),
            json!({"type":"refresh_sig","user_sig":sig("alice")}),
            json!({"type":"send","to":"alice","payload":"x"}),
        ] {
            let r = c.request(v.clone()).await;
            assert_eq!(code(&r), 6014, "round {round}: {v} → {r}");
        }
        for v in [
            json!({"type":"get_login_user"}),
            json!({"type":"get_login_status"}),
            json!({"type":"ping"}),
        ] {
            let r = c.request(v.clone()).await;
            assert_eq!(code(&r), 0, "round {round}: {v} → {r}");
        }
        // log in and out, then the same again
        assert_eq!(code(&c.login("alice", "web", None).await), 0);
        assert_eq!(code(&c.request(json!({"type":"logout"})).await), 0);
        let r = c.request(json!({"type":"get_login_status"})).await;
        assert_eq!(r["data"]["status"], 3);
        offline_after_logout(store, &gw, "alice").await;
    }
}

on_both_stores!(login_deadline_closes_4000_is_not_extended_by_failures_and_restarts_on_logout);
async fn login_deadline_closes_4000_is_not_extended_by_failures_and_restarts_on_logout(
    store: Store,
) {
    let gw = store.start_with(&config("login_timeout_secs = 2", ""));
    let silent = async {
        let t0 = Instant::now();
        let mut c = gw.client().await;
        c.expect_close(4000).await;
        t0.elapsed()
    };
    let failing = async {
        let t0 = Instant::now();
        let mut c = gw.client().await;
        tokio::time::sleep(secs(1.3)).await;
        let r = c
            .login_with_sig("alice", "web", None, &wrong_key_sig("alice"))
            .await;
        assert_eq!(code(&r), 70009);
        let r = c.login("alice", "ios", None).await;
        assert_eq!(code(&r), 6017);
        let r = c.request(json!({"type":"ping"})).await;
        assert_eq!(code(&r), 0);
        c.expect_close(4000).await;
        t0.elapsed()
    };
    let relogging = async {
        let t0 = Instant::now();
        let mut c = gw.logged_in("bob", "web", None).await;
        tokio::time::sleep(secs(2.6)).await;
        let r = c.request(json!({"type":"ping"})).await;
        assert_eq!(
            code(&r),
            0,
            "a logged-in socket outlives the login deadline"
        );
        let r = c.request(json!({"type":"logout"})).await;
        assert_eq!(code(&r), 0);
        let t1 = Instant::now();
        c.expect_close(4000).await;
        (t0.elapsed(), t1.elapsed())
    };
    let (silent, failing, (total, after_logout)) = tokio::join!(silent, failing, relogging);
    assert!(
        silent >= secs(1.8) && silent < secs(3.5),
        "silent socket closed after {silent:?}"
    );
    assert!(
        failing >= secs(1.8) && failing < secs(3.0),
        "failed logins at 1.3 s must not move the 2 s deadline: closed after {failing:?}"
    );
    assert!(
        after_logout >= secs(1.8) && after_logout < secs(3.5),
        "the deadline restarts at logout: closed {after_logout:?} after it"
    );
    assert!(total >= secs(4.4), "{total:?}");
}

on_both_stores!(idle_socket_closes_4001_and_the_app_ping_keeps_it_alive);
async fn idle_socket_closes_4001_and_the_app_ping_keeps_it_alive(store: Store) {
    // no WebSocket pings from the server here: only the client's own frames count
    let gw = store.start_with(&config(
        "idle_timeout_secs = 2\nping_interval_secs = 60",
        "",
    ));
    let pinging = async {
        let mut c = gw.logged_in("alice", "web", None).await;
        let t0 = Instant::now();
        while t0.elapsed() < secs(3.5) {
            tokio::time::sleep(secs(0.5)).await;
            let r = c.request(json!({"type":"ping"})).await;
            assert_eq!(code(&r), 0, "alive at {:?}", t0.elapsed());
        }
        let last = Instant::now();
        c.expect_close(4001).await;
        last.elapsed()
    };
    let silent = async {
        let mut c = gw.logged_in("bob", "web", None).await;
        let t0 = Instant::now();
        c.expect_close(4001).await;
        t0.elapsed()
    };
    let (after_last_ping, silent) = tokio::join!(pinging, silent);
    assert!(
        after_last_ping >= secs(1.8) && after_last_ping < secs(3.2),
        "closed {after_last_ping:?} after the last app ping"
    );
    assert!(
        silent >= secs(1.8) && silent < secs(3.2),
        "silent socket closed after {silent:?}"
    );
    // both sessions left presence
    offline_after_logout(store, &gw, "alice").await;
    offline_after_logout(store, &gw, "bob").await;
}

on_both_stores!(server_pings_every_interval_and_pongs_keep_the_socket_alive);
async fn server_pings_every_interval_and_pongs_keep_the_socket_alive(store: Store) {
    let gw = store.start_with(&config("idle_timeout_secs = 2\nping_interval_secs = 1", ""));
    let mut reader = gw.logged_in("alice", "web", None).await;
    // never polled: it cannot answer the pings
    let deaf = gw.logged_in("bob", "web", None).await;
    let t0 = Instant::now();
    let reading = async {
        let mut pings = Vec::new();
        while t0.elapsed() < secs(4.0) {
            match tokio::time::timeout(secs(0.2), reader.ws.next()).await {
                Err(_) => {}
                Ok(Some(Ok(Message::Ping(_)))) => pings.push(t0.elapsed()),
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
        pings
    };
    let watch_deaf = wait_offline(&gw, "bob", secs(4.0));
    let (pings, deaf_gone) = tokio::join!(reading, watch_deaf);
    assert!(
        (3..=5).contains(&pings.len()),
        "pings every second for 4 s: {pings:?}"
    );
    assert!(
        pings[0] >= secs(0.7) && pings[0] < secs(1.6),
        "first ping: {pings:?}"
    );
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= secs(0.7) && gap < secs(1.5), "ping gaps: {pings:?}");
    }
    // answered pings count as inbound frames: alive after 2 × the idle timeout
    let r = reader.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"]["status"], 1);
    assert!(
        deaf_gone >= secs(1.8) && deaf_gone < secs(3.2),
        "the socket that never answered left after {deaf_gone:?}"
    );
    assert_eq!(deaf.close_code_unanswered().await, Some(4001));
}

on_both_stores!(a_failed_login_leaves_a_logged_in_session_as_it_was);
async fn a_failed_login_leaves_a_logged_in_session_as_it_was(store: Store) {
    let gw = store.start();
    let mut c = gw.logged_in("alice", "web", Some("tab-1")).await;
    let before = online(&gw, "alice").await;
    let attempts: Vec<(&str, Value, u64)> = vec![
        (
            "same user, wrong key",
            login_msg(APP, "alice", &wrong_key_sig("alice"), "android"),
            70009,
        ),
        (
            "another user, empty sig",
            login_msg(APP, "bob", "", "web"),
            70002,
        ),
        (
            "another user, that user's expired sig",
            login_msg(APP, "bob", &expired_sig("bob"), "web"),
            70001,
        ),
        (
            "unknown app",
            login_msg(UNKNOWN_APP, "alice", &sig("alice"), "web"),
            70020,
        ),
        (
            "bad platform",
            login_msg(APP, "alice", &sig("alice"), "ios"),
            6017,
        ),
        (
            "bad user_id",
            login_msg(APP, "a b", &sig("alice"), "web"),
            7003,
        ),
    ];
    for (what, v, want) in attempts {
        let r = c.request(v).await;
        assert_eq!(code(&r), want, "{what}: {r}");
        let u = c.request(json!({"type":"get_login_user"})).await;
        assert_eq!(u["data"]["user_id"], "alice", "{what}");
        let s = c.request(json!({"type":"get_login_status"})).await;
        assert_eq!(s["data"]["status"], 1, "{what}");
        assert_eq!(online(&gw, "alice").await, before, "{what}");
        assert_eq!(online(&gw, "bob").await["status"], "Offline", "{what}");
    }
    // still reachable
    let mut b = gw.logged_in("bob", "web", None).await;
    let r = b
        .request(json!({"type":"send","to":"alice","payload":"there?"}))
        .await;
    assert_eq!(r["data"]["delivered"], 1);
    assert_eq!(c.recv().await["payload"], "there?");
}

on_both_stores!(same_user_relogin_on_a_socket_updates_it_in_place);
async fn same_user_relogin_on_a_socket_updates_it_in_place(store: Store) {
    let gw = store.start();
    let mut a = gw.logged_in("alice", "web", None).await;
    let mut phone = gw.logged_in("alice", "iphone", None).await;
    assert_eq!(instances(&gw, "alice").await.len(), 2);

    // web → android with an instance id: the policy applies to the user's other sockets (android and
    // iphone share a group), never to this one
    let r = a.login("alice", "android", Some("x")).await;
    assert_eq!(code(&r), 0, "{r}");
    assert_eq!(
        phone.recv().await,
        json!({"type":"kicked_offline","reason":"multi_device","by_platform":"android"})
    );
    phone.expect_close(4501).await;
    assert_eq!(
        instances(&gw, "alice").await,
        vec![("android".to_owned(), json!("x"))]
    );
    // the same platform and instance id again: not a `replaced` kick of itself
    let r = a.login("alice", "android", Some("x")).await;
    assert_eq!(code(&r), 0, "{r}");
    // back to web, without an instance id
    let r = a.login("alice", "web", None).await;
    assert_eq!(code(&r), 0, "{r}");
    assert_eq!(
        instances(&gw, "alice").await,
        vec![("web".to_owned(), Value::Null)]
    );
    // no push reached this socket: the next frame is the next response
    let r = a.request(json!({"type":"get_login_user"})).await;
    assert_eq!(r["data"]["user_id"], "alice");
    let r = a.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"]["status"], 1);
    // and it still gets its messages
    let mut b = gw.logged_in("bob", "web", None).await;
    let r = b
        .request(json!({"type":"send","to":"alice","payload":"x"}))
        .await;
    assert_eq!(r["data"]["delivered"], 1);
    assert_eq!(a.recv().await["payload"], "x");
}

on_both_stores!(switching_account_logs_the_old_user_out_without_a_kick);
async fn switching_account_logs_the_old_user_out_without_a_kick(store: Store) {
    let gw = store.start();
    let mut a = gw.logged_in("alice", "web", None).await;
    let mut other = gw.logged_in("alice", "android", None).await;
    let r = a.login("bob", "web", None).await;
    assert_eq!(r["data"]["user_id"], "bob", "{r}");
    // alice's session on this socket ended; her other socket is untouched
    assert_eq!(
        instances(&gw, "alice").await,
        vec![("android".to_owned(), Value::Null)]
    );
    assert_eq!(
        instances(&gw, "bob").await,
        vec![("web".to_owned(), Value::Null)]
    );
    // no kicked_offline on either socket
    let r = a.request(json!({"type":"get_login_user"})).await;
    assert_eq!(r["data"]["user_id"], "bob");
    let r = other.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"]["status"], 1);
    // messages to alice no longer reach this socket; messages to bob do
    let r = other
        .request(json!({"type":"send","to":"alice","payload":"self"}))
        .await;
    assert_eq!(r["data"]["delivered"], 0);
    let r = other
        .request(json!({"type":"send","to":"bob","payload":"to bob"}))
        .await;
    assert_eq!(r["data"]["delivered"], 1);
    assert_eq!(a.recv().await["payload"], "to bob");
    // switch away and alice leaves presence entirely once her last socket logs out
    let r = other.request(json!({"type":"logout"})).await;
    assert_eq!(code(&r), 0);
    offline_after_logout(store, &gw, "alice").await;
}

on_both_stores!(kicks_push_kicked_offline_then_close);
async fn kicks_push_kicked_offline_then_close(store: Store) {
    let gw = store.start();
    // multi_device: android and iphone share a group under the default (dual) policy
    let mut a = gw.logged_in("alice", "android", None).await;
    let _b = gw.logged_in("alice", "iphone", None).await;
    assert_eq!(
        a.recv().await,
        json!({"type":"kicked_offline","reason":"multi_device","by_platform":"iphone"})
    );
    a.expect_close(4501).await;

    // replaced: the same instance id on the same platform
    let mut c = gw.logged_in("alice", "web", Some("tab-1")).await;
    let mut d = gw.logged_in("alice", "web", Some("tab-1")).await;
    assert_eq!(
        c.recv().await,
        json!({"type":"kicked_offline","reason":"replaced","by_platform":"web"})
    );
    c.expect_close(4501).await;
    assert_eq!(
        instances(&gw, "alice").await,
        vec![
            ("iphone".to_owned(), Value::Null),
            ("web".to_owned(), json!("tab-1"))
        ]
    );

    // admin: one device
    let (st, v) = gw
        .admin_post(
            "/v1/kick",
            &json!({"sdk_app_id":APP,"user_id":"alice","platform":"web","instance_id":"tab-1"}),
        )
        .await;
    assert_eq!((st, v), (200, json!({"kicked":1})));
    assert_eq!(
        d.recv().await,
        json!({"type":"kicked_offline","reason":"admin","by_platform":null})
    );
    d.expect_close(4502).await;
    assert_eq!(
        instances(&gw, "alice").await,
        vec![("iphone".to_owned(), Value::Null)]
    );
}

on_both_stores!(user_sig_expiry_pushes_within_1_5_s_logs_out_and_restarts_the_login_deadline);
async fn user_sig_expiry_pushes_within_1_5_s_logs_out_and_restarts_the_login_deadline(
    store: Store,
) {
    let gw = store.start_with(&config("login_timeout_secs = 2", ""));
    let t = now_secs();
    let expiry_ms = (t + 2) * 1000;
    let mut a = gw.client().await;
    let r = a
        .login_with_sig("alice", "web", None, &sig_at("alice", t, 2))
        .await;
    assert_eq!(r["data"]["expire_at"], t + 2, "{r}");
    // a bincode session expiring at the same second gets its push in bincode
    let mut b = gw.client().await;
    let r = request_bincode(&mut b, |seq| ClientMsg::Login {
        seq,
        sdk_app_id: APP,
        user_id: "bob".into(),
        user_sig: sig_at("bob", t, 2),
        platform: "web".into(),
        instance_id: None,
    })
    .await;
    assert_eq!(response_code(&r), 0);

    let push = a.recv().await;
    let at = now_ms();
    let pushed = Instant::now();
    assert_eq!(push, json!({"type":"user_sig_expired"}));
    assert!(
        at > expiry_ms && at <= expiry_ms + 1500,
        "pushed {} ms after time + expire",
        at as i64 - expiry_ms as i64
    );
    assert_eq!(b.recv_bincode().await, ServerMsg::UserSigExpired);
    let at_b = now_ms();
    assert!(at_b > expiry_ms && at_b <= expiry_ms + 1500);

    // logged out, socket open
    let r = a.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"]["status"], 3);
    let r = a.request(json!({"type":"get_login_user"})).await;
    assert_eq!(r["data"]["user_id"], "");
    let r = a
        .request(json!({"type":"send","to":"bob","payload":"x"}))
        .await;
    assert_eq!(code(&r), 6014);
    offline_after_logout(store, &gw, "alice").await;
    // the bincode socket logs in again (within its restarted deadline) and stays
    let r = request_bincode(&mut b, |seq| ClientMsg::GetLoginStatus { seq }).await;
    assert!(matches!(
        r,
        ServerMsg::Response {
            data: Some(ResponseData::LoginStatus { status: 3 }),
            ..
        }
    ));
    let r = request_bincode(&mut b, |seq| bincode_login(seq, "bob", "web", None)).await;
    assert_eq!(response_code(&r), 0);
    // the other one does not: the login deadline restarted at the expiry
    a.expect_close(4000).await;
    let waited = pushed.elapsed();
    assert!(
        waited >= secs(1.7) && waited < secs(3.2),
        "closed 4000 {waited:?} after the expiry push"
    );
    let r = request_bincode(&mut b, |seq| ClientMsg::GetLoginStatus { seq }).await;
    assert_eq!(
        response_code(&r),
        0,
        "the re-logged-in socket outlives the deadline"
    );
}

on_both_stores!(refresh_sig_and_relogin_move_the_expiry);
async fn refresh_sig_and_relogin_move_the_expiry(store: Store) {
    let gw = store.start();
    let t = now_secs();
    let old_expiry_ms = (t + 2) * 1000;
    let new_expiry_ms = (t + 4) * 1000;
    let mut a = gw.client().await;
    let r = a
        .login_with_sig("alice", "web", None, &sig_at("alice", t, 2))
        .await;
    assert_eq!(code(&r), 0);
    let r = a
        .request(json!({"type":"refresh_sig","user_sig":sig_at("alice", t, 4)}))
        .await;
    assert_eq!(r["data"], json!({"expire_at": t + 4}));
    assert_eq!(
        online(&gw, "alice").await["instances"][0]["expire_at"],
        t + 4
    );
    // a re-login of the same user with a longer ticket cancels the old expiry as well
    let mut b = gw.client().await;
    let r = b
        .login_with_sig("bob", "web", None, &sig_at("bob", t, 2))
        .await;
    assert_eq!(code(&r), 0);
    let r = b.login("bob", "web", None).await;
    assert_eq!(code(&r), 0);

    // nothing at the old expiry (+ the 1.5 s allowance)
    let quiet_until = old_expiry_ms + 1600;
    let left = quiet_until.saturating_sub(now_ms());
    let (qa, qb) = tokio::join!(
        next_within(&mut a, Duration::from_millis(left)),
        next_within(&mut b, Duration::from_millis(left))
    );
    assert!(matches!(qa, Next::Quiet), "alice at the old expiry: {qa:?}");
    assert!(matches!(qb, Next::Quiet), "bob at the old expiry: {qb:?}");
    let r = a.request(json!({"type":"get_login_status"})).await;
    assert_eq!(r["data"]["status"], 1);
    // the push comes at the new one
    let push = a.recv().await;
    let at = now_ms();
    assert_eq!(push["type"], "user_sig_expired");
    assert!(
        at > new_expiry_ms && at <= new_expiry_ms + 1500,
        "pushed {} ms after the new expiry",
        at as i64 - new_expiry_ms as i64
    );
    let r = b.request(json!({"type":"get_login_status"})).await;
    assert_eq!(
        r["data"]["status"], 1,
        "bob's day-long ticket is still good"
    );
}

on_both_stores!(slow_consumer_is_closed_4003);
/// A socket that takes nothing while messages keep coming: what does not fit is dropped for it
/// (`delivered` 0, §16), and once it has taken nothing for 10 s it is a slow consumer: 4003.
async fn slow_consumer_is_closed_4003(store: Store) {
    let gw = store.start_with(&config(
        "max_payload_bytes = 60000\noutbound_queue = 8\noutbound_bytes = 262144\nmax_requests_per_sec = 0\nmax_frames_per_sec = 0",
        "",
    ));
    // a small receive buffer, and it never reads while the flood goes on
    let mut victim = Client::connect_with(&gw.ws_url, IP1, Some(4096)).await;
    let r = victim.login("victim", "web", None).await;
    assert_eq!(code(&r), 0);
    let mut flooder = gw.logged_in("flooder", "web", None).await;
    let payload = "x".repeat(60_000);
    let mut delivered = 0u32;
    let mut dropped = 0u32;
    let t0 = Instant::now();
    // bounded: 30 s or 3000 sends
    for _ in 0..3000 {
        let r = flooder
            .request(json!({"type":"send","to":"victim","payload":payload}))
            .await;
        match r["data"]["delivered"].as_u64() {
            Some(1) => delivered += 1,
            Some(0) => dropped += 1,
            _ => panic!("{r}"),
        }
        if dropped > 0 && online(&gw, "victim").await["status"] == "Offline" {
            break;
        }
        if dropped > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "never closed");
    }
    assert!(dropped > 0, "what did not fit was dropped");
    let stalled_for = t0.elapsed();
    assert!(
        stalled_for >= Duration::from_secs(9),
        "closed only after the stall: {stalled_for:?}"
    );
    // the flooder is unaffected
    let r = flooder.request(json!({"type":"ping"})).await;
    assert_eq!(code(&r), 0);
    // now read: what was already in flight, then the close
    let mut received = 0u32;
    let end = loop {
        match victim.recv_frame().await {
            Some(Message::Text(t)) => {
                assert!(t.as_str().contains("\"type\":\"message\""));
                received += 1;
            }
            Some(Message::Close(f)) => break Some(f),
            None => break None,
            Some(other) => panic!("unexpected {other:?}"),
        }
    };
    eprintln!(
        "slow consumer: read {received} of {delivered} delivered, {dropped} dropped, then {end:?}"
    );
    match end {
        Some(Some(f)) => assert_eq!(u16::from(f.code), 4003, "{f:?}"),
        other => panic!("expected close 4003 after {received} messages, got {other:?}"),
    }
}

on_both_stores!(sigterm_closes_every_socket_1001_and_exits_0);
async fn sigterm_closes_every_socket_1001_and_exits_0(store: Store) {
    let gw = store.start();
    let ws_url = gw.ws_url.clone();
    let mut a = gw.logged_in("alice", "web", None).await;
    let mut idle = gw.client().await;
    let mut b = gw.client().await;
    let r = request_bincode(&mut b, |seq| bincode_login(seq, "bob", "web", None)).await;
    assert_eq!(response_code(&r), 0);
    let exit = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        gw.terminate()
    });
    for (what, c) in [
        ("logged in", &mut a),
        ("logged out", &mut idle),
        ("bincode", &mut b),
    ] {
        match c.recv_frame().await {
            Some(Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1001, "{what}: {f:?}"),
            other => panic!("{what}: expected close 1001, got {other:?}"),
        }
    }
    drop((a, idle, b));
    let status = exit.await.unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        tokio_tungstenite::connect_async(&ws_url).await.is_err(),
        "nothing listens any more"
    );
}

on_both_stores!(sigterm_right_after_start_exits_0);
async fn sigterm_right_after_start_exits_0(store: Store) {
    for _ in 0..5 {
        let mut gw = store.start();
        let status = tokio::task::spawn_blocking(move || gw.terminate())
            .await
            .unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
    }
}

on_both_stores!(a_closed_socket_leaves_presence_at_once);
async fn a_closed_socket_leaves_presence_at_once(store: Store) {
    let gw = store.start();
    let mut a = gw.logged_in("alice", "web", None).await;
    let b = gw.logged_in("bob", "web", None).await;
    let mut c = Client::connect_with(&gw.ws_url, IP2, None).await;
    assert_eq!(code(&c.login("carol", "web", None).await), 0);
    assert_eq!(online(&gw, "alice").await["status"], "Online");

    // a clean close
    a.close().await;
    let took = wait_offline(&gw, "alice", secs(2.0)).await;
    assert!(took < secs(1.0), "{took:?}");
    // the TCP connection just dropped
    drop(b);
    let took = wait_offline(&gw, "bob", secs(2.0)).await;
    assert!(took < secs(1.0), "{took:?}");
    // and a close from another address
    c.close().await;
    wait_offline(&gw, "carol", secs(2.0)).await;
}

// ---------------------------------------------------------------------------------------------
// robustness

on_both_stores!(a_thousand_logins_on_one_socket);
async fn a_thousand_logins_on_one_socket(store: Store) {
    // The §16 rate limits are off here: this is about re-logins (tests/abuse.rs has the limits).
    let gw = store.start_with(&config(
        "max_requests_per_sec = 0\nmax_frames_per_sec = 0",
        "",
    ));
    let mut bystander = gw.logged_in("zed", "web", None).await;
    let mut c = gw.client().await;
    let platforms = [
        "android", "iphone", "ipad", "windows", "mac", "linux", "web",
    ];
    let mut last = ("", "");
    let users = ["u0", "u1", "u2", "u3", "u4"];
    for i in 0..1000usize {
        // runs of the same user (in-place updates) and switches between users
        let user = users[(i / 3) % users.len()];
        let platform = platforms[i % platforms.len()];
        let iid = format!("i{}", i % 4);
        let r = c.login(user, platform, Some(&iid)).await;
        assert_eq!(code(&r), 0, "login {i}: {r}");
        assert_eq!(r["data"]["platform"], platform);
        last = (user, platform);
    }
    // the socket was never kicked and holds exactly one session
    let r = c.request(json!({"type":"get_login_user"})).await;
    assert_eq!(r["data"]["user_id"], last.0);
    for user in users {
        let u = online(&gw, user).await;
        if user == last.0 {
            assert_eq!(u["instances"].as_array().unwrap().len(), 1, "{u}");
            assert_eq!(u["instances"][0]["platform"], last.1, "{u}");
        } else {
            assert_eq!(u["status"], "Offline", "{u}");
        }
    }
    let r = bystander.request(json!({"type":"ping"})).await;
    assert_eq!(code(&r), 0);
    let r = bystander
        .request(json!({"type":"send","to":last.0,"payload":"p"}))
        .await;
    assert_eq!(r["data"]["delivered"], 1);
    assert_eq!(c.recv().await["payload"], "p");
}

on_both_stores!(garbage_frames_leave_the_gateway_up);
async fn garbage_frames_leave_the_gateway_up(store: Store) {
    let gw = store.start();
    let mut a = gw.logged_in("alice", "web", None).await;
    let mut b = gw.logged_in("bob", "web", None).await;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..40 {
        let mut c = if i % 2 == 0 {
            gw.client().await
        } else {
            gw.logged_in("mallory", "android", None).await
        };
        let len = 1 + (rng.next() % 3000) as usize;
        let frame = match i % 4 {
            // random bytes in a binary frame, with a variant index no message has
            0 => {
                let mut bytes = rng.bytes(len);
                bytes[0] = 7 + (bytes[0] % 240);
                Message::binary(bytes)
            }
            // random printable text
            1 => Message::text(
                rng.bytes(len)
                    .into_iter()
                    .map(|b| char::from(0x20 + b % 0x5f))
                    .collect::<String>(),
            ),
            // random UTF-8 that looks a bit like JSON
            2 => {
                let mut s = String::from("{\"type\":\"");
                for b in rng.bytes(len) {
                    s.push(['{', '}', '"', ':', ',', '[', ']', 'é', '1', 'x'][b as usize % 10]);
                }
                Message::text(s)
            }
            // deep nesting
            _ => Message::text("[".repeat(len) + &"]".repeat(len)),
        };
        c.ws.send(frame).await.unwrap();
        expect_close_with_reason(&mut c, 1007, &format!("garbage #{i}")).await;
        if i % 10 == 9 {
            let r = a
                .request(json!({"type":"send","to":"bob","payload":format!("after {i}")}))
                .await;
            assert_eq!(r["data"]["delivered"], 1);
            assert_eq!(b.recv().await["payload"], format!("after {i}"));
        }
    }
    offline_after_logout(store, &gw, "mallory").await;
    let mut fresh = gw.logged_in("carol", "web", None).await;
    let r = fresh.request(json!({"type":"ping"})).await;
    assert_eq!(code(&r), 0);
    let (st, _) = http(&gw.admin_url, "GET", "/healthz", None, None).await;
    assert_eq!(st, 200);
}

on_both_stores!(a_client_close_is_answered_with_a_close_frame);
/// A close frame from the client is answered with a close frame (the closing handshake of
/// RFC 6455), and the session leaves presence.
async fn a_client_close_is_answered_with_a_close_frame(store: Store) {
    let gw = store.start();
    let mut c = gw.logged_in("echo", "web", None).await;
    c.close().await;
    match c.recv_frame().await {
        Some(tokio_tungstenite::tungstenite::Message::Close(_)) => {}
        other => panic!("expected the server's close reply, got {other:?}"),
    }
}
