//! Contract §8 end to end: the multi-device policy with real sockets against the real binary.
//!
//! Every test runs twice (`on_both_stores!`): `name::embedded` against the in-process registry and
//! `name::redis` against a one-node cluster with its own redis-server, so both presence stores keep
//! the same rules.
//!
//! Every scenario logs devices in one after the other and states, for each login, exactly which
//! earlier sockets it kicks and why. After each step every victim must get exactly one
//! `kicked_offline` (reason, `by_platform` = the newcomer's platform) and then close 4501 without
//! doing anything; every other socket must still answer as logged in; and `GET /v1/online` must list
//! exactly the sockets that should be online.
//!
//! The race test logs many sockets of two users in at once, several rounds. Once every login has
//! been answered, presence must satisfy the policy, exactly `sockets - presence entries` sockets
//! must get `kicked_offline` + 4501 (in odd rounds without sending anything; in even rounds a
//! request sent then must never be answered as logged in), and the others are alive and are exactly
//! the presence entries.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

/// A socket of the scenario and what the test expects of it.
struct Dev {
    c: Client,
    user: String,
    platform: &'static str,
    iid: Option<&'static str>,
    online: bool,
}

/// What a socket turned out to be after the logins completed.
#[derive(Debug, PartialEq)]
enum Fate {
    Alive,
    Kicked { reason: String, by_platform: Value },
}

/// What became of a socket whose login was answered: two sequential `get_login_status` round
/// trips. Once the evicting login has been answered, the kick is in the victim's mailbox, and the
/// gateway applies its mailbox before acting on a request: a kicked socket answers with exactly one
/// `kicked_offline`, then close 4501, never with a status. A live one answers status 1.
async fn probe(c: &mut Client) -> Fate {
    for _ in 0..2 {
        let seq = 1_000_000 + c.next_seq();
        // The socket may already be closed by a kick: a failed send is read as such below.
        let _ =
            c.ws.send(Message::text(
                json!({"type":"get_login_status","seq":seq}).to_string(),
            ))
            .await;
        let v: Value = match c.recv_frame().await {
            Some(Message::Text(t)) => {
                serde_json::from_str(t.as_str()).expect("JSON from the server")
            }
            other => panic!("a logged-in socket closed or sent {other:?} without kicked_offline"),
        };
        if v["type"] == "kicked_offline" {
            return kicked(c, &v).await;
        }
        assert_eq!(
            v["type"], "response",
            "unexpected frame on a logged-in socket: {v}"
        );
        assert_eq!(v["seq"], seq, "responses in order: {v}");
        assert_eq!(v["code"], 0, "{v}");
        assert_eq!(v["data"]["status"], 1, "a live socket is logged in: {v}");
    }
    Fate::Alive
}

/// After the `kicked_offline` push `v`: close 4501 must follow at once.
async fn kicked(c: &mut Client, v: &Value) -> Fate {
    match c.recv_frame().await {
        Some(Message::Close(Some(f))) => assert_eq!(
            u16::from(f.code),
            4501,
            "kicked_offline is followed by close 4501, got {f:?}"
        ),
        other => panic!("kicked_offline must be followed by close 4501, got {other:?}"),
    }
    Fate::Kicked {
        reason: v["reason"].as_str().unwrap_or("").to_owned(),
        by_platform: v["by_platform"].clone(),
    }
}

/// Reads a logged-in socket without sending anything until it is kicked (`Some`) or `stop` fires
/// (`None`). A kick is exactly one `kicked_offline`, then close 4501; nothing else may arrive.
async fn watch_kick(c: &mut Client, mut stop: tokio::sync::watch::Receiver<bool>) -> Option<Fate> {
    loop {
        let frame = tokio::select! {
            f = c.ws.next() => f,
            _ = stop.changed() => return None,
        };
        match frame {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON from the server");
                assert_eq!(
                    v["type"], "kicked_offline",
                    "an idle logged-in socket gets nothing but a kick: {v}"
                );
                return Some(kicked(c, &v).await);
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("a logged-in socket closed or sent {other:?} without kicked_offline"),
        }
    }
}

/// The next frames are `kicked_offline` with this reason and platform, then close 4501.
async fn expect_kicked(c: &mut Client, reason: &str, by_platform: &str) {
    let push = c.recv().await;
    assert_eq!(push["type"], "kicked_offline", "{push}");
    assert_eq!(push["reason"], reason, "{push}");
    assert_eq!(push["by_platform"], by_platform, "{push}");
    c.expect_close(4501).await;
}

/// `GET /v1/online` for one user: its instances as (platform, instance_id), sorted.
async fn presence(gw: &Gateway, user: &str) -> Vec<(String, Option<String>)> {
    let (status, v) = gw
        .admin_get(&format!("/v1/online?sdk_app_id={APP}&user_id={user}"))
        .await;
    assert_eq!(status, 200, "{v}");
    let u = &v["users"][0];
    assert_eq!(u["user_id"], user, "{v}");
    let list = u["instances"].as_array().expect("instances array");
    assert_eq!(
        u["status"],
        if list.is_empty() { "Offline" } else { "Online" },
        "{v}"
    );
    let mut out: Vec<_> = list
        .iter()
        .map(|i| {
            (
                i["platform"].as_str().expect("platform").to_owned(),
                i["instance_id"].as_str().map(str::to_owned),
            )
        })
        .collect();
    out.sort();
    out
}

/// One login of a scenario: `user` logs a new socket in on `platform` with `iid`; `kicks` lists the
/// indices of the earlier sockets it must kick, with the reason. Then checks every socket's fate and
/// presence.
async fn step(
    gw: &Gateway,
    devs: &mut Vec<Dev>,
    user: &str,
    platform: &'static str,
    iid: Option<&'static str>,
    kicks: &[(usize, &str)],
) {
    let c = gw.logged_in(user, platform, iid).await;
    devs.push(Dev {
        c,
        user: user.to_owned(),
        platform,
        iid,
        online: true,
    });
    let at = devs.len() - 1;
    for &(i, reason) in kicks {
        assert!(
            devs[i].online,
            "step {at}: the scenario kicks socket {i} twice"
        );
        expect_kicked(&mut devs[i].c, reason, platform).await;
        devs[i].online = false;
    }
    for (i, d) in devs.iter_mut().enumerate() {
        if d.online {
            let fate = probe(&mut d.c).await;
            assert_eq!(
                fate,
                Fate::Alive,
                "step {at} ({platform} {iid:?}): socket {i} ({} {:?}) must stay online",
                d.platform,
                d.iid
            );
        }
    }
    let mut want: Vec<_> = devs
        .iter()
        .filter(|d| d.online && d.user == user)
        .map(|d| (d.platform.to_owned(), d.iid.map(str::to_owned)))
        .collect();
    want.sort();
    assert_eq!(
        presence(gw, user).await,
        want,
        "step {at}: presence = the live sockets"
    );
}

/// Runs a scenario of (platform, kicks) steps without instance ids for one user.
async fn scenario(gw: &Gateway, user: &str, steps: &[(&'static str, &[usize])]) -> Vec<Dev> {
    let mut devs = Vec::new();
    for &(platform, kicks) in steps {
        let kicks: Vec<_> = kicks.iter().map(|&i| (i, "multi_device")).collect();
        step(gw, &mut devs, user, platform, None, &kicks).await;
    }
    devs
}

fn gateway(store: Store, app_lines: &str) -> Gateway {
    store.start_with(&config("", app_lines))
}

on_both_stores!(single_one_platform_at_a_time);
async fn single_one_platform_at_a_time(store: Store) {
    let gw = gateway(store, "policy = \"single\"");
    scenario(
        &gw,
        "u-single",
        &[
            ("android", &[]),
            ("web", &[0]),
            ("mac", &[1]),
            ("mac", &[2]), // the cap of 1 on its own platform
            ("iphone", &[3]),
            ("linux", &[4]),
            ("windows", &[5]),
            ("ipad", &[6]),
            ("web", &[7]),
        ],
    )
    .await;
}

on_both_stores!(dual_is_the_default_web_beside_one_native);
async fn dual_is_the_default_web_beside_one_native(store: Store) {
    // No policy line: dual is the default.
    let gw = gateway(store, "");
    let devs = scenario(
        &gw,
        "u-dual",
        &[
            ("android", &[]),
            ("web", &[]),
            ("iphone", &[0]),
            ("ipad", &[2]),
            ("windows", &[3]),
            ("mac", &[4]),
            ("linux", &[5]),
            ("android", &[6]),
            ("web", &[1]),
        ],
    )
    .await;
    let online: Vec<_> = devs
        .iter()
        .filter(|d| d.online)
        .map(|d| d.platform)
        .collect();
    assert_eq!(online, ["android", "web"]);
}

on_both_stores!(triple_mobile_desktop_web);
async fn triple_mobile_desktop_web(store: Store) {
    let gw = gateway(store, "policy = \"triple\"");
    scenario(
        &gw,
        "u-triple",
        &[
            ("android", &[]),
            ("windows", &[]),
            ("web", &[]),
            ("iphone", &[0]),
            ("ipad", &[3]),
            ("mac", &[1]),
            ("linux", &[5]),
            ("web", &[2]),
            ("android", &[4]),
        ],
    )
    .await;
}

on_both_stores!(multi_every_platform_alone);
async fn multi_every_platform_alone(store: Store) {
    let gw = gateway(store, "policy = \"multi\"");
    scenario(
        &gw,
        "u-multi",
        &[
            ("android", &[]),
            ("iphone", &[]),
            ("ipad", &[]),
            ("windows", &[]),
            ("mac", &[]),
            ("linux", &[]),
            ("web", &[]),
            // each platform still holds one instance
            ("android", &[0]),
            ("web", &[6]),
            ("ipad", &[2]),
        ],
    )
    .await;
}

on_both_stores!(custom_groups_and_unlisted_platforms_alone);
async fn custom_groups_and_unlisted_platforms_alone(store: Store) {
    // ipad and linux are unlisted: each alone; web shares a group with the desktops.
    let gw = gateway(
        store,
        "groups = [[\"android\",\"iphone\"],[\"windows\",\"mac\",\"web\"]]",
    );
    scenario(
        &gw,
        "u-custom",
        &[
            ("android", &[]),
            ("ipad", &[]),
            ("linux", &[]),
            ("web", &[]),
            ("iphone", &[0]),
            ("mac", &[3]),
            ("windows", &[5]),
            ("ipad", &[1]),
            ("linux", &[2]),
            ("web", &[6]),
            ("android", &[4]),
        ],
    )
    .await;
}

on_both_stores!(custom_groups_android_iphone_pair);
async fn custom_groups_android_iphone_pair(store: Store) {
    // The example of the brief: only android and iphone exclude each other; all else is alone.
    let gw = gateway(store, "groups = [[\"android\",\"iphone\"]]");
    scenario(
        &gw,
        "u-pair",
        &[
            ("web", &[]),
            ("android", &[]),
            ("ipad", &[]),
            ("windows", &[]),
            ("mac", &[]),
            ("linux", &[]),
            ("iphone", &[1]),
            ("android", &[6]),
            ("mac", &[4]),
        ],
    )
    .await;
}

on_both_stores!(max_instances_kicks_the_earliest);
async fn max_instances_kicks_the_earliest(store: Store) {
    let gw = gateway(store, "[app.max_instances]\nweb = 3\n");
    let mut devs = Vec::new();
    let u = "u-cap";
    step(&gw, &mut devs, u, "web", Some("t1"), &[]).await;
    step(&gw, &mut devs, u, "web", Some("t2"), &[]).await;
    step(&gw, &mut devs, u, "android", None, &[]).await;
    step(&gw, &mut devs, u, "web", Some("t3"), &[]).await;
    step(&gw, &mut devs, u, "web", Some("t4"), &[(0, "multi_device")]).await;
    step(&gw, &mut devs, u, "web", None, &[(1, "multi_device")]).await;
    step(&gw, &mut devs, u, "web", None, &[(3, "multi_device")]).await;
    // unlisted platforms keep the cap of 1
    step(&gw, &mut devs, u, "android", None, &[(2, "multi_device")]).await;
    let (_, v) = gw
        .admin_get(&format!("/v1/online?sdk_app_id={APP}&user_id={u}"))
        .await;
    let at: Vec<u64> = v["users"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["login_at_ms"].as_u64().expect("login_at_ms"))
        .collect();
    assert_eq!(at.len(), 4, "{v}");
}

on_both_stores!(earliest_means_earliest_login_not_earliest_connection);
async fn earliest_means_earliest_login_not_earliest_connection(store: Store) {
    let gw = gateway(store, "[app.max_instances]\nweb = 2\n");
    let u = "u-order";
    let mut a = gw.client().await;
    let mut b = gw.client().await;
    let mut c = gw.client().await;
    // connected a, b, c; logged in b, a: b is the earliest login
    assert_eq!(b.login(u, "web", None).await["code"], 0);
    assert_eq!(a.login(u, "web", None).await["code"], 0);
    assert_eq!(c.login(u, "web", None).await["code"], 0);
    expect_kicked(&mut b, "multi_device", "web").await;
    assert_eq!(probe(&mut a).await, Fate::Alive);
    assert_eq!(probe(&mut c).await, Fate::Alive);
    // a logs in again on its own socket: updated in place, never kicked, and now later than c
    assert_eq!(a.login(u, "web", None).await["code"], 0);
    assert_eq!(probe(&mut a).await, Fate::Alive);
    assert_eq!(probe(&mut c).await, Fate::Alive);
    let mut d = gw.logged_in(u, "web", None).await;
    expect_kicked(&mut c, "multi_device", "web").await;
    assert_eq!(probe(&mut a).await, Fate::Alive);
    assert_eq!(probe(&mut d).await, Fate::Alive);
}

on_both_stores!(same_instance_id_is_replaced_and_nothing_else);
async fn same_instance_id_is_replaced_and_nothing_else(store: Store) {
    let gw = gateway(store, "[app.max_instances]\nweb = 3\n");
    let mut devs = Vec::new();
    let u = "u-replace";
    step(&gw, &mut devs, u, "web", Some("t1"), &[]).await;
    step(&gw, &mut devs, u, "web", Some("t2"), &[]).await;
    step(&gw, &mut devs, u, "web", Some("t3"), &[]).await;
    // the cap is full, yet the replacement frees t1's slot: nobody else goes
    step(&gw, &mut devs, u, "web", Some("t1"), &[(0, "replaced")]).await;
    step(&gw, &mut devs, u, "web", Some("t3"), &[(2, "replaced")]).await;
    // a new instance id: the cap applies, the earliest (t2) goes
    step(&gw, &mut devs, u, "web", Some("t4"), &[(1, "multi_device")]).await;
    // no instance id never replaces anything
    step(&gw, &mut devs, u, "web", None, &[(3, "multi_device")]).await;
}

on_both_stores!(same_instance_id_on_another_platform_is_not_a_replacement);
async fn same_instance_id_on_another_platform_is_not_a_replacement(store: Store) {
    let gw = gateway(store, "");
    let mut devs = Vec::new();
    let u = "u-iid";
    step(&gw, &mut devs, u, "web", Some("dev-1"), &[]).await;
    // another group: both stay
    step(&gw, &mut devs, u, "mac", Some("dev-1"), &[]).await;
    // same group: kicked by the group rule, with multi_device, not replaced
    step(
        &gw,
        &mut devs,
        u,
        "android",
        Some("dev-1"),
        &[(1, "multi_device")],
    )
    .await;
    // the web instance dev-1 still stands, and is replaced by web dev-1 only
    step(&gw, &mut devs, u, "web", Some("dev-1"), &[(0, "replaced")]).await;
}

on_both_stores!(steps_apply_in_order_replaced_then_group_then_cap);
async fn steps_apply_in_order_replaced_then_group_then_cap(store: Store) {
    let gw = gateway(store, "[app.max_instances]\nweb = 2\nandroid = 2\n");
    let mut devs = Vec::new();
    let u = "u-steps";
    step(&gw, &mut devs, u, "web", Some("t1"), &[]).await; // 0
    step(&gw, &mut devs, u, "web", Some("t2"), &[]).await; // 1
                                                           // Step 1 before step 3: the newcomer t2 replaces t2 (the latest). Had the cap been applied
                                                           // first, t1 (the earliest) would have gone with multi_device.
    step(&gw, &mut devs, u, "web", Some("t2"), &[(1, "replaced")]).await; // 2
    step(&gw, &mut devs, u, "android", Some("p"), &[]).await; // 3
    step(&gw, &mut devs, u, "android", Some("q"), &[]).await; // 4
                                                              // Step 2: iphone shares android's group: both android instances go, whatever their ids; the
                                                              // same instance id on another platform is no replacement.
    step(
        &gw,
        &mut devs,
        u,
        "iphone",
        Some("p"),
        &[(3, "multi_device"), (4, "multi_device")],
    )
    .await; // 5
            // Step 1 then step 3 at the cap of 1: the same id is replaced, and the other iphone instance
            // would go by the cap; there is none, so only the replacement happens.
    step(&gw, &mut devs, u, "iphone", Some("p"), &[(5, "replaced")]).await; // 6
    step(
        &gw,
        &mut devs,
        u,
        "iphone",
        Some("r"),
        &[(6, "multi_device")],
    )
    .await; // 7
            // web was never touched by the native logins
    assert!(devs[0].online && devs[2].online);
}

on_both_stores!(relogin_on_the_same_socket_is_never_kicked);
async fn relogin_on_the_same_socket_is_never_kicked(store: Store) {
    let gw = gateway(store, "");
    let u = "u-relogin";
    let mut s = gw.logged_in(u, "android", None).await;
    let mut w = gw.logged_in(u, "web", None).await;
    // s moves to web in place: the other web socket goes, s itself stays
    let r = s.login(u, "web", Some("tab")).await;
    assert_eq!(r["code"], 0, "{r}");
    expect_kicked(&mut w, "multi_device", "web").await;
    assert_eq!(probe(&mut s).await, Fate::Alive);
    assert_eq!(presence(&gw, u).await, [("web".into(), Some("tab".into()))]);
    // and back, with the same instance id as before: still never kicked by itself
    let r = s.login(u, "web", Some("tab")).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(probe(&mut s).await, Fate::Alive);
    assert_eq!(presence(&gw, u).await, [("web".into(), Some("tab".into()))]);
}

on_both_stores!(different_users_never_interfere);
async fn different_users_never_interfere(store: Store) {
    let gw = gateway(store, "policy = \"single\"");
    let mut devs = Vec::new();
    let mut bob = Vec::new();
    step(&gw, &mut devs, "alice", "web", Some("tab-1"), &[]).await;
    step(&gw, &mut bob, "bob", "web", Some("tab-1"), &[]).await;
    step(
        &gw,
        &mut devs,
        "alice",
        "android",
        None,
        &[(0, "multi_device")],
    )
    .await;
    step(
        &gw,
        &mut bob,
        "bob",
        "android",
        None,
        &[(0, "multi_device")],
    )
    .await;
    step(&gw, &mut bob, "bob-2", "android", None, &[]).await;
    // user ids are case sensitive: Alice is another user
    step(&gw, &mut bob, "Alice", "android", None, &[]).await;
    for d in devs.iter_mut().chain(bob.iter_mut()).filter(|d| d.online) {
        assert_eq!(probe(&mut d.c).await, Fate::Alive);
    }
    assert_eq!(presence(&gw, "alice").await, [("android".into(), None)]);
    assert_eq!(presence(&gw, "bob").await, [("android".into(), None)]);
}

/// What the test config of the race allows: dual, web up to 3, android up to 2.
fn cap(platform: &str) -> usize {
    match platform {
        "web" => 3,
        "android" => 2,
        _ => 1,
    }
}

/// The policy of the race config holds for these instances.
fn assert_policy(user: &str, round: usize, inst: &[(String, Option<String>)]) {
    let mut per_platform: HashMap<&str, usize> = HashMap::new();
    for (p, _) in inst {
        *per_platform.entry(p).or_default() += 1;
    }
    for (p, n) in &per_platform {
        assert!(
            *n <= cap(p),
            "round {round} {user}: {n} instances on {p}: {inst:?}"
        );
    }
    let natives = per_platform.keys().filter(|p| **p != "web").count();
    assert!(
        natives <= 1,
        "round {round} {user}: several native platforms online together: {inst:?}"
    );
    let mut ids: Vec<_> = inst.iter().filter(|(_, i)| i.is_some()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        n,
        "round {round} {user}: an instance id twice on one platform: {inst:?}"
    );
}

/// Probes every socket at once; their fates in order, and the sockets.
async fn probe_all(clients: Vec<Client>) -> (Vec<Fate>, Vec<Client>) {
    let probes: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { (probe(&mut c).await, c) }))
        .collect();
    let mut out = (Vec::new(), Vec::new());
    for p in probes {
        let (fate, c) = p.await.expect("probe task");
        out.0.push(fate);
        out.1.push(c);
    }
    out
}

/// Waits, sending nothing, until `expect_kicked` sockets were kicked (a kick must reach its socket
/// without the client doing anything), then probes the others. Their fates in order, and the
/// sockets.
async fn watch_all(
    clients: Vec<Client>,
    expect_kicked: usize,
    round: usize,
) -> (Vec<Fate>, Vec<Client>) {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let kicked = Arc::new(AtomicUsize::new(0));
    let one_more = Arc::new(tokio::sync::Notify::new());
    let watchers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let (stop_rx, kicked, one_more) =
                (stop_rx.clone(), Arc::clone(&kicked), Arc::clone(&one_more));
            tokio::spawn(async move {
                let fate = watch_kick(&mut c, stop_rx).await;
                if fate.is_some() {
                    kicked.fetch_add(1, Ordering::SeqCst);
                    one_more.notify_one();
                }
                (fate, c)
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while kicked.load(Ordering::SeqCst) < expect_kicked {
        if tokio::time::timeout_at(deadline, one_more.notified())
            .await
            .is_err()
        {
            panic!(
                "round {round}: {} of {expect_kicked} evicted sockets got kicked_offline in time",
                kicked.load(Ordering::SeqCst)
            );
        }
    }
    stop.send(true).expect("watchers listen");
    let mut out = (Vec::new(), Vec::new());
    for w in watchers {
        let (fate, mut c) = w.await.expect("watcher task");
        let fate = match fate {
            Some(f) => f,
            None => probe(&mut c).await,
        };
        out.0.push(fate);
        out.1.push(c);
    }
    out
}

on_both_stores!(
    concurrent_logins_leave_the_policy_satisfied,
    flavor = "multi_thread",
    worker_threads = 2
);
async fn concurrent_logins_leave_the_policy_satisfied(store: Store) {
    const N: usize = 40;
    const ROUNDS: usize = 5;
    let gw = gateway(store, "[app.max_instances]\nweb = 3\nandroid = 2\n");
    let platforms = [
        "web", "android", "iphone", "web", "mac", "android", "web", "ipad", "web", "windows",
        "linux",
    ];
    let iids = [None, Some("a"), Some("b"), None, Some("c")];
    for round in 0..ROUNDS {
        // Two users per round, their sockets interleaved: "main" with N, "side" with N / 4.
        let users = [format!("race-{round}"), format!("side-{round}")];
        let mut plan = Vec::new();
        for i in 0..N + N / 4 {
            let user = if i % 5 == 4 { &users[1] } else { &users[0] };
            let platform = platforms[(i * 7 + round) % platforms.len()];
            let iid = iids[(i + round) % iids.len()];
            plan.push((user.clone(), platform, iid));
        }
        let mut clients = Vec::new();
        for _ in &plan {
            clients.push(gw.client().await);
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(plan.len()));
        let tasks: Vec<_> = clients
            .into_iter()
            .zip(plan.iter().cloned())
            .map(|(mut c, (user, platform, iid))| {
                let barrier = Arc::clone(&barrier);
                let sig = sig(&user);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let r = c.login_with_sig(&user, platform, iid, &sig).await;
                    assert_eq!(r["code"], 0, "{r}");
                    c
                })
            })
            .collect();
        let mut clients = Vec::new();
        for t in tasks {
            clients.push(t.await.expect("login task"));
        }
        // Every login has completed: presence is final, every kick decided.
        let mut final_presence = Vec::new();
        for user in &users {
            let inst = presence(&gw, user).await;
            assert_policy(user, round, &inst);
            assert!(!inst.is_empty(), "the newest login always stays");
            final_presence.push(inst);
        }
        let expect_kicked = plan.len() - final_presence.iter().map(Vec::len).sum::<usize>();
        // Even rounds ask every socket at once (an evicted socket must never answer as logged in
        // once the evicting login was answered); odd rounds wait for the kicks passively.
        // (The sockets stay open, held in `_open`, until presence was compared.)
        let (fates, _open) = if round % 2 == 0 {
            probe_all(clients).await
        } else {
            watch_all(clients, expect_kicked, round).await
        };
        for (user, inst) in users.iter().zip(&final_presence) {
            let mut alive: Vec<(String, Option<String>)> = plan
                .iter()
                .zip(&fates)
                .filter(|((u, _, _), f)| u == user && **f == Fate::Alive)
                .map(|((_, p, i), _)| (p.to_string(), i.map(str::to_owned)))
                .collect();
            alive.sort();
            assert_eq!(
                &alive, inst,
                "round {round} {user}: the live sockets are exactly the presence entries"
            );
        }
        for ((user, platform, iid), fate) in plan.iter().zip(&fates) {
            if let Fate::Kicked {
                reason,
                by_platform,
            } = fate
            {
                let by = by_platform.as_str().expect("by_platform is a platform");
                assert!(
                    plan.iter().any(|(u, p, _)| u == user && *p == by),
                    "round {round}: {user} {platform} {iid:?} kicked by {by}, which never logged in"
                );
                match reason.as_str() {
                    "replaced" => {
                        assert!(iid.is_some(), "replaced without an instance id");
                        assert_eq!(by, *platform, "replaced by another platform");
                    }
                    "multi_device" => {}
                    other => panic!("unexpected kick reason {other}"),
                }
            }
        }
    }
}
