//! Contract §15: the Tencent REST facade, end to end against the real binary.
//!
//! Requests are built as Tencent's documentation shows them: `POST /v4/{service}/{command}` with
//! `sdkappid`, `identifier`, `usersig`, `random` (a random 32-bit number) and `contenttype=json` in
//! the query string and a JSON body. The admin UserSigs are minted by the official generators
//! (PyPI and npm `tls-sig-api-v2`, installed into `.interop/` by `scripts/interop-setup.sh`, which
//! these tests run once; a missing generator FAILS them, it never skips them). Every answer must be
//! HTTP 200 with `{"ActionStatus","ErrorInfo","ErrorCode"}`, whatever the input.
//!
//! Effects are checked on real WebSocket sockets (kicked_offline, close 4502, 70052 for the old
//! UserSigs) and through both presence stores (the embedded registry and a one-node cluster).

mod common;
use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The default `admin_identifier`.
const ADMIN: &str = "administrator";
/// A second app, with its own key and admin identifier.
const APP2: u64 = 1_400_000_001;
const KEY2: &str = "second-app-key-0c1d2e3f";
const ADMIN2: &str = "ops_admin";
/// A key being rotated out of the first app (`previous_keys`).
const OLD_KEY: &str = "rotated-out-key-77aa88bb";

const KICK: &str = "im_open_login_svc/kick";
const QUERY: &str = "openim/query_online_status";
const IMPORT: &str = "im_open_login_svc/account_import";
const MULTI_IMPORT: &str = "im_open_login_svc/multiaccount_import";

// ---------------------------------------------------------------------------------------------
// the official generators

#[derive(Clone, Copy, Debug)]
enum Gen {
    Python,
    Node,
}

struct Tools {
    root: PathBuf,
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let setup = || {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("bash")
            .arg(root.join("scripts/interop-setup.sh"))
            .current_dir(&root)
            .output()
            .map_err(|e| format!("cannot run scripts/interop-setup.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/interop-setup.sh failed ({}): these tests mint the admin UserSig with the \
                 official generators and are not skipped without them\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Tools { root })
    };
    match TOOLS.get_or_init(setup) {
        Ok(t) => t,
        Err(e) if !REPORTED.swap(true, Ordering::SeqCst) => panic!("{e}"),
        Err(_) => panic!("interop setup failed: see the first failing test's message"),
    }
}

/// A UserSig minted by an official generator; `time` fixes the generator's clock.
fn mint_at(gen: Gen, app: u64, key: &str, user: &str, expire: u64, time: Option<u64>) -> String {
    let t = tools();
    let (bin, script) = match gen {
        Gen::Python => (".interop/bin/python", "scripts/interop/mint.py"),
        Gen::Node => (".interop/bin/node", "scripts/interop/mint.js"),
    };
    let mut cmd = Command::new(t.root.join(bin));
    cmd.arg(t.root.join(script)).args([
        app.to_string(),
        key.into(),
        user.into(),
        expire.to_string(),
    ]);
    if let Some(time) = time {
        cmd.args(["--time".to_string(), time.to_string()]);
    }
    let out = cmd.output().expect("the generator runs");
    assert!(
        out.status.success(),
        "{gen:?} generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sig = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!sig.is_empty() && !sig.contains(char::is_whitespace));
    sig
}

fn mint(gen: Gen, app: u64, key: &str, user: &str) -> String {
    mint_at(gen, app, key, user, 86_400, None)
}

/// The first app's admin UserSig, signed with its current key.
fn admin_sig(gen: Gen) -> String {
    mint(gen, APP, KEY, ADMIN)
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Tencent's query string for the first app.
fn query(identifier: &str, usersig: &str) -> String {
    query_for(APP, identifier, usersig)
}

fn query_for(app: u64, identifier: &str, usersig: &str) -> String {
    format!(
        "sdkappid={app}&identifier={identifier}&usersig={usersig}&random={}&contenttype=json",
        rand::random::<u32>()
    )
}

/// An HTTP answer as received.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a JSON body is expected ({e}): {self:?}"))
    }
}

/// Sends one request on its own connection (`Connection: close`). The body is written while the
/// answer is read, so an answer given before the whole body was taken is still seen.
async fn send(gw: &Gateway, method: &str, target: &str, headers: &str, body: Vec<u8>) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = gw.admin_url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head =
        format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
    let writer = tokio::spawn(async move {
        // the gateway may answer and close before it read everything: a failed write is fine
        if wr.write_all(head.as_bytes()).await.is_ok() {
            let _ = wr.write_all(&body).await;
        }
        wr
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "an HTTP answer in time for {method} {target}");
    drop(writer.await);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer for {method} {target}: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// An answer of the facade: HTTP 200, JSON, Tencent's envelope. Returns the body.
fn envelope(a: &Answer) -> Value {
    assert_eq!(a.status, 200, "the facade always answers HTTP 200: {a:?}");
    assert!(
        a.head
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "a JSON answer: {a:?}"
    );
    let v = a.json();
    assert!(
        v["ActionStatus"] == "OK" || v["ActionStatus"] == "FAIL",
        "ActionStatus: {v}"
    );
    assert!(v["ErrorCode"].is_u64(), "ErrorCode: {v}");
    assert!(v["ErrorInfo"].is_string(), "ErrorInfo: {v}");
    v
}

/// `POST /v4/{command}?{query}` with a JSON body, as Tencent's documentation shows it.
async fn call(gw: &Gateway, command: &str, query: &str, body: &str) -> Value {
    let a = send(
        gw,
        "POST",
        &format!("/v4/{command}?{query}"),
        &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ),
        body.as_bytes().to_vec(),
    )
    .await;
    envelope(&a)
}

#[track_caller]
fn assert_fail(v: &Value, code: u64, what: &str) {
    assert_eq!(v["ActionStatus"], "FAIL", "{what}: {v}");
    assert_eq!(v["ErrorCode"], code, "{what}: {v}");
    assert!(
        v["ErrorInfo"].as_str().is_some_and(|s| !s.is_empty()),
        "{what}: a FAIL says why: {v}"
    );
}

/// The plain OK answer.
fn ok() -> Value {
    json!({"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0})
}

// ---------------------------------------------------------------------------------------------
// WebSocket helpers

/// The next frames are `kicked_offline` by the admin API (`by_platform` null), then close 4502.
async fn expect_admin_kicked(c: &mut Client) {
    let push = c.recv().await;
    assert_eq!(push["type"], "kicked_offline", "{push}");
    assert_eq!(push["reason"], "admin", "{push}");
    assert_eq!(push.get("by_platform"), Some(&Value::Null), "{push}");
    c.expect_close(4502).await;
}

/// Two request round trips answered as logged in: a kick already decided would have reached the
/// socket by the second.
async fn assert_alive(c: &mut Client, user: &str) {
    for _ in 0..2 {
        let r = c.request(json!({"type": "get_login_user"})).await;
        assert_eq!(r["data"]["user_id"], user, "{r}");
    }
}

async fn login_with(
    gw: &Gateway,
    user: &str,
    platform: &str,
    iid: Option<&str>,
    sig: &str,
) -> Client {
    let mut c = gw.client().await;
    let r = c.login_with_sig(user, platform, iid, sig).await;
    assert_eq!(r["code"], 0, "login of {user} on {platform}: {r}");
    c
}

/// Waits (bounded) until the clock is past the unix second `s`.
async fn after_second(s: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while now_secs() <= s {
        assert!(Instant::now() < deadline, "the clock moves");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// im_open_login_svc/kick

async fn kick_closes_every_device_4502_and_revokes_older_sigs(store: Store) {
    let gw = store.start_with(&config("", "[app.max_instances]\nweb = 2\n"));
    let admin = admin_sig(Gen::Python);
    let u = "alice";
    let old = mint(Gen::Node, APP, KEY, u);
    let mut web1 = login_with(&gw, u, "web", Some("tab-1"), &old).await;
    let mut web2 = login_with(&gw, u, "web", Some("tab-2"), &old).await;
    let mut android = login_with(&gw, u, "android", None, &old).await;
    let mut bob = gw.logged_in("bob", "web", None).await;
    let mut idle = gw.client().await; // not logged in: untouched

    let v = call(&gw, KICK, &query(ADMIN, &admin), r#"{"UserID":"alice"}"#).await;
    let after = now_secs();
    assert_eq!(v, ok());
    for c in [&mut web1, &mut web2, &mut android] {
        expect_admin_kicked(c).await;
    }
    let v = call(
        &gw,
        QUERY,
        &query(ADMIN, &admin),
        r#"{"To_Account":["alice"]}"#,
    )
    .await;
    assert_eq!(
        v["QueryResult"],
        json!([{"To_Account": "alice", "Status": "Offline"}])
    );
    // the UserSigs minted up to now are invalidated, on any platform and socket...
    let r = idle.login_with_sig(u, "web", None, &old).await;
    assert_eq!(r["code"], 70052, "{r}");
    let mut c = gw.client().await;
    let r = c.login_with_sig(u, "mac", None, &old).await;
    assert_eq!(r["code"], 70052, "{r}");
    // ...and one minted from the next second on logs in
    after_second(after).await;
    let fresh = mint(Gen::Python, APP, KEY, u);
    let r = c.login_with_sig(u, "mac", None, &fresh).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_alive(&mut c, u).await;
    // nobody else was touched, and the idle socket can still log in
    assert_alive(&mut bob, "bob").await;
    let r = idle.login_with_sig(u, "web", None, &fresh).await;
    assert_eq!(r["code"], 0, "{r}");

    // kicking a user who is offline answers OK and still revokes
    let carol_old = mint(Gen::Node, APP, KEY, "carol");
    let v = call(&gw, KICK, &query(ADMIN, &admin), r#"{"UserID":"carol"}"#).await;
    let after = now_secs();
    assert_eq!(v, ok());
    let mut cc = gw.client().await;
    let r = cc.login_with_sig("carol", "web", None, &carol_old).await;
    assert_eq!(r["code"], 70052, "{r}");
    let r = cc
        .login_with_sig("carol", "web", None, &sig_at("carol", after + 1, 600))
        .await;
    assert_eq!(r["code"], 0, "{r}");

    // a UserID that breaks §1 is 7003, and kicks nothing
    for body in [
        json!({"UserID": "al ice"}),
        json!({"UserID": ""}),
        json!({"UserID": "x".repeat(33)}),
        json!({"UserID": "alice/.."}),
        json!({"UserID": "ålice"}),
    ] {
        let v = call(&gw, KICK, &query(ADMIN, &admin), &body.to_string()).await;
        assert_fail(&v, 7003, &body.to_string());
    }
    // a body without a string UserID is 70402
    for body in [
        "",
        "{}",
        r#"{"UserID":5}"#,
        r#"{"UserID":null}"#,
        r#"{"user_id":"alice"}"#,
        "[]",
    ] {
        let v = call(&gw, KICK, &query(ADMIN, &admin), body).await;
        assert_fail(&v, 70402, body);
    }
    assert_alive(&mut c, u).await;
    assert_alive(&mut bob, "bob").await;
}
on_both_stores!(kick_closes_every_device_4502_and_revokes_older_sigs);

// ---------------------------------------------------------------------------------------------
// openim/query_online_status

/// `QueryResult` with each `Detail` sorted by platform (its order is the login order).
fn sorted_details(v: &Value) -> Value {
    let mut r = v["QueryResult"].clone();
    for e in r.as_array_mut().expect("QueryResult is an array") {
        if let Some(d) = e.get_mut("Detail") {
            d.as_array_mut()
                .expect("Detail is an array")
                .sort_by_key(|x| x["Platform"].to_string());
        }
    }
    r
}

async fn query_online_status_in_tencent_shape(store: Store) {
    let gw = store.start_with(&config(
        "",
        "policy = \"multi\"\n[app.max_instances]\nweb = 2\n",
    ));
    let admin = admin_sig(Gen::Node);
    let _a1 = gw.logged_in("alice", "web", Some("tab-1")).await;
    let _a2 = gw.logged_in("alice", "web", Some("tab-2")).await;
    let _a3 = gw.logged_in("alice", "iphone", None).await;
    let mut pat = Vec::new();
    for p in [
        "android", "iphone", "ipad", "windows", "mac", "linux", "web",
    ] {
        pat.push(gw.logged_in("pat", p, None).await);
    }
    let q = || query(ADMIN, &admin);

    let v = call(
        &gw,
        QUERY,
        &q(),
        r#"{"To_Account":["alice","bob","pat","al ice",""],"IsNeedDetail":1}"#,
    )
    .await;
    assert_eq!(
        (&v["ActionStatus"], &v["ErrorCode"], &v["ErrorInfo"]),
        (&json!("OK"), &json!(0), &json!("")),
        "{v}"
    );
    let online = |p: &str| json!({"Platform": p, "Status": "Online"});
    assert_eq!(
        sorted_details(&v),
        json!([
            {"To_Account": "alice", "Status": "Online",
             "Detail": [online("Web"), online("Web"), online("iOS")]},
            {"To_Account": "bob", "Status": "Offline"},
            {"To_Account": "pat", "Status": "Online",
             "Detail": [online("Android"), online("Linux"), online("Mac"), online("Web"),
                        online("Windows"), online("iOS"), online("iPad")]},
        ]),
        "{v}"
    );
    // ids that break §1 are listed in ErrorList with 7003
    assert_eq!(
        v["ErrorList"],
        json!([{"To_Account": "al ice", "ErrorCode": 7003}, {"To_Account": "", "ErrorCode": 7003}])
    );

    // without IsNeedDetail, or with 0: no Detail; ErrorList is there, empty
    for body in [
        r#"{"To_Account":["alice","bob"]}"#,
        r#"{"To_Account":["alice","bob"],"IsNeedDetail":0}"#,
        "{\n    \"IsNeedDetail\": 0,\n    \"To_Account\": [\"alice\", \"bob\"]\n}",
    ] {
        let v = call(&gw, QUERY, &q(), body).await;
        assert_eq!(
            v,
            json!({"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0,
                   "QueryResult": [{"To_Account": "alice", "Status": "Online"},
                                   {"To_Account": "bob", "Status": "Offline"}],
                   "ErrorList": []}),
            "{body}"
        );
    }

    // 500 accounts is the most: all answered, in order
    let mut many: Vec<String> = (1..500).map(|i| format!("user_{i}")).collect();
    many.insert(0, "pat".into());
    let body = json!({"To_Account": many, "IsNeedDetail": 1}).to_string();
    let v = call(&gw, QUERY, &q(), &body).await;
    let r = v["QueryResult"].as_array().expect("QueryResult");
    assert_eq!(r.len(), 500, "{}", v["ErrorInfo"]);
    assert_eq!(r[0]["Status"], "Online");
    assert_eq!(r[0]["Detail"].as_array().map(Vec::len), Some(7));
    assert!(r[1..]
        .iter()
        .all(|e| e["Status"] == "Offline" && e.get("Detail").is_none()));
    assert_eq!(r[499]["To_Account"], "user_499");
    // 501 and 10,000 are 70402
    many.push("user_500".into());
    let v = call(&gw, QUERY, &q(), &json!({"To_Account": many}).to_string()).await;
    assert_fail(&v, 70402, "501 To_Account");
    assert!(v["ErrorInfo"].as_str().unwrap().contains("500"), "{v}");
    let ten_k: Vec<String> = (0..10_000).map(|i| format!("u{i}")).collect();
    let t = Instant::now();
    let v = call(&gw, QUERY, &q(), &json!({"To_Account": ten_k}).to_string()).await;
    assert_fail(&v, 70402, "10,000 To_Account");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "answered cheaply: {:?}",
        t.elapsed()
    );
    // malformed bodies are 70402
    for body in [
        r#"{"To_Account":[]}"#,
        r#"{"To_Account":"alice"}"#,
        r#"{"To_Account":[1]}"#,
        r#"{"To_Account":["alice",null]}"#,
        r#"{"To_Account":null}"#,
        r#"{"IsNeedDetail":1}"#,
        r#"{"To_Account":["alice"],"IsNeedDetail":2}"#,
        r#"{"To_Account":["alice"],"IsNeedDetail":-1}"#,
        r#"{"To_Account":["alice"],"IsNeedDetail":"1"}"#,
        r#"{"To_Account":["alice","bob"],}"#,
        "",
    ] {
        let v = call(&gw, QUERY, &q(), body).await;
        assert_fail(&v, 70402, body);
    }
    // a logout shows at once (embedded) or within a round trip (Redis)
    let mut last = pat.pop().unwrap();
    let r = last.request(json!({"type": "logout"})).await;
    assert_eq!(r["code"], 0, "{r}");
    let deadline = Instant::now() + WAIT;
    loop {
        let v = call(
            &gw,
            QUERY,
            &q(),
            r#"{"To_Account":["pat"],"IsNeedDetail":1}"#,
        )
        .await;
        let n = v["QueryResult"][0]["Detail"].as_array().map(Vec::len);
        if n == Some(6) {
            break;
        }
        assert!(Instant::now() < deadline, "the logout shows: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
on_both_stores!(query_online_status_in_tencent_shape);

// ---------------------------------------------------------------------------------------------
// im_open_login_svc/account_import, multiaccount_import

#[tokio::test]
async fn imports_only_validate_ids_and_need_no_admin_token() {
    // no admin_token: /v1 answers 403, the facade authenticates by UserSig alone
    let gw = Gateway::start_with(&format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[app]]\nsdk_app_id = {APP}\nkey = \"{KEY}\"\n"
    ));
    let (s, _) = gw
        .admin_get(&format!("/v1/online?sdk_app_id={APP}&user_id=a"))
        .await;
    assert_eq!(s, 403);
    let admin = admin_sig(Gen::Python);
    let q = || query(ADMIN, &admin);

    for body in [
        r#"{"UserID":"alice","Nick":"Alice","FaceUrl":"http://www.qq.com/a.png"}"#,
        r#"{"UserID":"alice"}"#,
        r#"{"UserID":"A-b_9","Nick":"","FaceUrl":""}"#,
        r#"{"UserID":"abcdefghijklmnopqrstuvwxyz_-0123","Gender":"Gender_Type_Male"}"#,
    ] {
        let v = call(&gw, IMPORT, &q(), body).await;
        assert_eq!(v, ok(), "{body}");
    }
    for id in ["al ice", "", &"x".repeat(33), "ali/ce", "ålice", "alice\n"] {
        let body = json!({"UserID": id, "Nick": "n"}).to_string();
        let v = call(&gw, IMPORT, &q(), &body).await;
        assert_fail(&v, 7003, &body);
    }
    for body in [
        "",
        "{}",
        r#"{"Nick":"x"}"#,
        r#"{"UserID":5}"#,
        r#"{"UserID":"alice","Nick":5}"#,
        "not json",
        "[]",
    ] {
        let v = call(&gw, IMPORT, &q(), body).await;
        assert_fail(&v, 70402, body);
    }
    // an imported account simply logs in (accounts register at their first login)
    let _alice = gw.logged_in("alice", "web", None).await;

    let long = "x".repeat(33);
    let body = json!({"Accounts": ["a", "b c", "d", long, "e", ""]}).to_string();
    let v = call(&gw, MULTI_IMPORT, &q(), &body).await;
    assert_eq!(
        v,
        json!({"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0,
               "FailAccounts": ["b c", long, ""]})
    );
    let v = call(
        &gw,
        MULTI_IMPORT,
        &q(),
        r#"{"Accounts":["test1","test2","test3"]}"#,
    )
    .await;
    assert_eq!(
        v,
        json!({"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0, "FailAccounts": []})
    );
    let hundred: Vec<String> = (0..100).map(|i| format!("id{i}")).collect();
    let v = call(
        &gw,
        MULTI_IMPORT,
        &q(),
        &json!({"Accounts": hundred}).to_string(),
    )
    .await;
    assert_eq!(v["FailAccounts"], json!([]), "{v}");
    let too_many: Vec<String> = (0..101).map(|i| format!("id{i}")).collect();
    for body in [
        json!({"Accounts": too_many}).to_string(),
        r#"{"Accounts":[]}"#.into(),
        r#"{"Accounts":["a",1]}"#.into(),
        r#"{"Accounts":"a"}"#.into(),
        r#"{"UserID":"a"}"#.into(),
        "{".into(),
    ] {
        let v = call(&gw, MULTI_IMPORT, &q(), &body).await;
        assert_fail(&v, 70402, &body);
    }
}

// ---------------------------------------------------------------------------------------------
// authentication

/// A valid body per command (the kick's targets alice, who must survive every refused call).
const COMMANDS: [(&str, &str); 4] = [
    (KICK, r#"{"UserID":"alice"}"#),
    (QUERY, r#"{"To_Account":["alice"],"IsNeedDetail":1}"#),
    (IMPORT, r#"{"UserID":"alice","Nick":"Alice","FaceUrl":""}"#),
    (MULTI_IMPORT, r#"{"Accounts":["alice","bob"]}"#),
];

#[tokio::test]
async fn the_admin_identifier_and_its_usersig_authenticate_every_command() {
    let extra = format!(
        "previous_keys = [\"{OLD_KEY}\"]\n\n[[app]]\nsdk_app_id = {APP2}\nkey = \"{KEY2}\"\nadmin_identifier = \"{ADMIN2}\"\n"
    );
    let gw = Gateway::start_with(&config("", &extra));
    let mut alice = gw.logged_in("alice", "web", None).await;
    let now = now_secs();
    let good_py = admin_sig(Gen::Python);
    let good_js = admin_sig(Gen::Node);
    let rand = || rand::random::<u32>().to_string();
    let good_query = |sig: &str| query(ADMIN, sig);

    // (what, query string, code)
    let mut cases: Vec<(String, String, u64)> = Vec::new();
    let base = [
        ("sdkappid", APP.to_string()),
        ("identifier", ADMIN.to_string()),
        ("usersig", good_py.clone()),
        ("random", rand()),
        ("contenttype", "json".to_string()),
    ];
    let join = |kv: &[(&str, String)]| {
        kv.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    for skip in 0..base.len() {
        let kv: Vec<_> = base
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, x)| x.clone())
            .collect();
        cases.push((format!("without {}", base[skip].0), join(&kv), 70402));
    }
    cases.push(("no query string at all".into(), String::new(), 70402));
    for (k, bad) in [
        ("sdkappid", "abc"),
        ("sdkappid", "-1"),
        ("sdkappid", ""),
        ("sdkappid", "1400000000.0"),
        ("sdkappid", "99999999999999999999999"),
        ("random", "4294967296"),
        ("random", "-1"),
        ("random", "abc"),
        ("random", ""),
        ("contenttype", "xml"),
        ("contenttype", ""),
    ] {
        let kv: Vec<_> = base
            .iter()
            .map(|(n, v)| (*n, if *n == k { bad.to_string() } else { v.clone() }))
            .collect();
        cases.push((format!("{k}={bad:?}"), join(&kv), 70402));
    }
    cases.push((
        "sdkappid twice".into(),
        format!("{}&sdkappid={APP}", join(&base)),
        70402,
    ));
    // an app that is not configured (a UserSig that would be right for it)
    cases.push((
        "unknown sdkappid".into(),
        query_for(42, ADMIN, &mint(Gen::Python, 42, KEY, ADMIN)),
        70020,
    ));
    // an identifier that is not the app's admin, with its own valid UserSig
    cases.push((
        "identifier alice".into(),
        query("alice", &mint(Gen::Node, APP, KEY, "alice")),
        70403,
    ));
    cases.push((
        "the other app's admin".into(),
        query(ADMIN2, &mint(Gen::Python, APP, KEY, ADMIN2)),
        70403,
    ));
    cases.push(("empty identifier".into(), query("", &good_py), 70403));
    cases.push((
        "the first app's admin on the second app".into(),
        query_for(APP2, ADMIN, &mint(Gen::Node, APP2, KEY2, ADMIN)),
        70403,
    ));
    // admin UserSigs that are not valid: the §2 codes
    cases.push((
        "expired".into(),
        query(
            ADMIN,
            &mint_at(Gen::Python, APP, KEY, ADMIN, 60, Some(now - 3_600)),
        ),
        70001,
    ));
    cases.push((
        "expired (npm)".into(),
        query(
            ADMIN,
            &mint_at(Gen::Node, APP, KEY, ADMIN, 1, Some(now - 10)),
        ),
        70001,
    ));
    cases.push((
        "wrong key".into(),
        query(ADMIN, &mint(Gen::Node, APP, "not-the-key", ADMIN)),
        70009,
    ));
    cases.push((
        "the other app's key".into(),
        query(ADMIN, &mint(Gen::Python, APP, KEY2, ADMIN)),
        70009,
    ));
    cases.push((
        "minted for another identifier".into(),
        query(ADMIN, &mint(Gen::Python, APP, KEY, "alice")),
        70013,
    ));
    cases.push((
        "minted for another app".into(),
        query(ADMIN, &mint(Gen::Node, APP2, KEY2, ADMIN)),
        70014,
    ));
    cases.push((
        "minted for another app with this key".into(),
        query(ADMIN, &mint(Gen::Python, APP2, KEY, ADMIN)),
        70014,
    ));
    cases.push(("undecodable".into(), query(ADMIN, "abc"), 70003));
    cases.push((
        "undecodable (not zlib)".into(),
        query(ADMIN, "eJyrVgrxCdYr*"),
        70003,
    ));
    cases.push((
        "a truncated UserSig".into(),
        query(ADMIN, &good_py[..good_py.len() / 2]),
        70003,
    ));
    cases.push(("empty usersig".into(), query(ADMIN, ""), 70002));

    for (command, body) in COMMANDS {
        for (what, q, code) in &cases {
            let v = call(&gw, command, q, body).await;
            assert_fail(&v, *code, &format!("{command}: {what}"));
        }
    }
    // nothing of that kicked alice; the throttle of logins did not count any of it
    assert_alive(&mut alice, "alice").await;

    // both generators' admin UserSigs work, as does one signed with a previous key (rotation)
    let rotated = mint(Gen::Python, APP, OLD_KEY, ADMIN);
    for sig in [&good_js, &rotated, &good_py] {
        for (command, body) in [COMMANDS[1], COMMANDS[2], COMMANDS[3]] {
            let v = call(&gw, command, &good_query(sig), body).await;
            assert_eq!(v["ActionStatus"], "OK", "{command}: {v}");
        }
    }
    let v = call(&gw, QUERY, &good_query(&rotated), COMMANDS[1].1).await;
    assert_eq!(
        v["QueryResult"],
        json!([{"To_Account": "alice", "Status": "Online",
                "Detail": [{"Platform": "Web", "Status": "Online"}]}])
    );
    // the second app answers its own admin, and only for its own users
    let app2_admin = mint(Gen::Node, APP2, KEY2, ADMIN2);
    let v = call(
        &gw,
        QUERY,
        &query_for(APP2, ADMIN2, &app2_admin),
        COMMANDS[1].1,
    )
    .await;
    assert_eq!(
        v["QueryResult"],
        json!([{"To_Account": "alice", "Status": "Offline"}]),
        "{v}"
    );
    let v = call(
        &gw,
        KICK,
        &query_for(APP2, ADMIN2, &app2_admin),
        COMMANDS[0].1,
    )
    .await;
    assert_eq!(v, ok());
    assert_alive(&mut alice, "alice").await;
    // the usersig may be percent-encoded in the query string
    let encoded = good_py
        .replace('*', "%2A")
        .replace('-', "%2D")
        .replace('_', "%5F");
    let v = call(&gw, KICK, &good_query(&encoded), COMMANDS[0].1).await;
    assert_eq!(v, ok());
    expect_admin_kicked(&mut alice).await;
}

// ---------------------------------------------------------------------------------------------
// bad input

#[tokio::test]
async fn bad_input_always_answers_200_with_a_tencent_code() {
    let gw = Gateway::start();
    let admin = admin_sig(Gen::Python);
    let q = || query(ADMIN, &admin);
    let mut alice = gw.logged_in("alice", "web", None).await;

    // bodies that are not JSON, or not an object
    for body in [
        "",
        "{",
        "not json",
        "[]",
        "null",
        "\"alice\"",
        "{\"UserID\":\"alice\"",
        "\u{0}",
    ] {
        let v = call(&gw, KICK, &q(), body).await;
        assert_fail(&v, 70402, body);
    }
    // the Content-Type header is not looked at: contenttype=json says it
    for ct in [
        "text/plain\r\n",
        "application/x-www-form-urlencoded\r\n",
        "",
    ] {
        let body = r#"{"To_Account":["alice"]}"#;
        let header = if ct.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ct}")
        };
        let a = send(
            &gw,
            "POST",
            &format!("/v4/{QUERY}?{}", q()),
            &format!("{header}Content-Length: {}\r\n", body.len()),
            body.as_bytes().to_vec(),
        )
        .await;
        let v = envelope(&a);
        assert_eq!(
            v["QueryResult"][0]["Status"], "Online",
            "Content-Type {ct:?}: {v}"
        );
    }
    // other methods: 70402 (HEAD: the same answer without a body)
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let a = send(&gw, method, &format!("/v4/{KICK}?{}", q()), "", Vec::new()).await;
        assert_fail(&envelope(&a), 70402, method);
    }
    let a = send(&gw, "HEAD", &format!("/v4/{KICK}?{}", q()), "", Vec::new()).await;
    assert_eq!(a.status, 200, "{a:?}");
    // unknown commands: 60009, once authenticated
    for command in [
        "openim/sendmsg",
        "im_open_login_svc/account_delete",
        "foo/bar",
        "im_open_login_svc/kick/extra",
        "im_open_login_svc/KICK",
        "openim",
        "v4/openim/query_online_status",
    ] {
        let v = call(&gw, command, &q(), r#"{"UserID":"alice"}"#).await;
        assert_fail(&v, 60009, command);
    }
    let v = call(&gw, "openim/sendmsg", &query(ADMIN, "abc"), "{}").await;
    assert_fail(&v, 70003, "unknown command, bad UserSig");

    // a 1 MB body: 70402 at once, declared or chunked; unauthenticated, the UserSig's code
    let big = format!(
        "{{\"UserID\":\"alice\",\"Nick\":\"{}\"}}",
        "x".repeat(1 << 20)
    );
    for (what, query, code) in [
        ("authenticated", q(), 70402),
        (
            "wrong key",
            query(ADMIN, &mint(Gen::Node, APP, "nope", ADMIN)),
            70009,
        ),
    ] {
        for chunked in [false, true] {
            let (headers, body) = if chunked {
                let mut b = Vec::new();
                for part in big.as_bytes().chunks(64 * 1024) {
                    b.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    b.extend_from_slice(part);
                    b.extend_from_slice(b"\r\n");
                }
                b.extend_from_slice(b"0\r\n\r\n");
                ("Transfer-Encoding: chunked\r\n".to_string(), b)
            } else {
                (
                    format!("Content-Length: {}\r\n", big.len()),
                    big.clone().into_bytes(),
                )
            };
            let t = Instant::now();
            let a = send(
                &gw,
                "POST",
                &format!("/v4/{IMPORT}?{query}"),
                &format!("Content-Type: application/json\r\n{headers}"),
                body,
            )
            .await;
            let v = envelope(&a);
            assert_fail(&v, code, &format!("1 MB body, {what}, chunked {chunked}"));
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "1 MB body answered in {:?}",
                t.elapsed()
            );
        }
    }
    // a body just under the limit is read and parsed
    let nick = "x".repeat(60 * 1024);
    let v = call(
        &gw,
        IMPORT,
        &q(),
        &json!({"UserID": "alice", "Nick": nick}).to_string(),
    )
    .await;
    assert_eq!(v, ok());

    // none of that disturbed anything, and the facade still works
    assert_alive(&mut alice, "alice").await;
    let v = call(&gw, KICK, &q(), r#"{"UserID":"alice"}"#).await;
    assert_eq!(v, ok());
    expect_admin_kicked(&mut alice).await;
}

// ---------------------------------------------------------------------------------------------
// cluster mode, Redis down

#[tokio::test]
async fn presence_store_unavailable_answers_fail_70169() {
    let mut redis = RedisServer::start();
    let gw = Gateway::start_with(&format!(
        "{}\n[cluster]\nredis_url = \"{}\"\nnode_id = \"solo\"\nlease_ms = 2000\nheartbeat_ms = 500\nreconcile_secs = 1\nredis_timeout_ms = 500\n",
        config("", ""),
        redis.url()
    ));
    let admin = admin_sig(Gen::Python);
    let q = || query(ADMIN, &admin);
    let mut alice = gw.logged_in("alice", "web", None).await;
    let v = call(&gw, QUERY, &q(), r#"{"To_Account":["alice"]}"#).await;
    assert_eq!(v["QueryResult"][0]["Status"], "Online", "{v}");

    redis.stop();
    let v = call(&gw, KICK, &q(), r#"{"UserID":"alice"}"#).await;
    assert_fail(&v, 70169, "kick, Redis down");
    let v = call(
        &gw,
        QUERY,
        &q(),
        r#"{"To_Account":["alice","bob"],"IsNeedDetail":1}"#,
    )
    .await;
    assert_fail(&v, 70169, "query_online_status, Redis down");
    // what needs no presence still answers
    let v = call(&gw, IMPORT, &q(), r#"{"UserID":"alice"}"#).await;
    assert_eq!(v, ok());
    let v = call(&gw, MULTI_IMPORT, &q(), r#"{"Accounts":["a","b c"]}"#).await;
    assert_eq!(v["FailAccounts"], json!(["b c"]));
    let r = alice.request(json!({"type": "ping"})).await;
    assert_eq!(r["code"], 0, "{r}");
}
