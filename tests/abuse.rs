//! Contract §16 (limits under abuse) end to end, through real sockets: the upgrade deadline, the
//! pending caps (per address and in total), the per-socket frame (1008) and request (7008)
//! budgets, a recipient that reads keeps its socket under a flood of others' messages, the
//! throttle that cannot be flushed and its per-address limit, a UserSig with bytes after its zlib
//! stream, HTTP/1.0 upgrades, JSON error answers on the admin listener, and drops counted as 1006.
//! Every flood is bounded in count and time; loopback only.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn tcp_from(local: &str, to: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(local.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    s.connect(to).await.unwrap()
}

/// Waits until the server closes the connection; how long it took (panics after the wait).
async fn closed_within(mut s: TcpStream) -> (Duration, Vec<u8>) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (t0.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("not closed within {WAIT:?}"),
        }
    }
}

async fn metrics(gw: &Gateway) -> String {
    http(&gw.admin_url, "GET", "/metrics", None, None)
        .await
        .1
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_upgrade_not_complete_in_time_is_closed_unanswered() {
    let gw = Gateway::start_with(&config(
        "upgrade_timeout_secs = 1\nlogin_timeout_secs = 10",
        "",
    ));
    let mut s = TcpStream::connect(addr_of(&gw.ws_url)).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (took, got) = closed_within(s).await;
    assert!(got.is_empty(), "no answer: {got:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn pending_sockets_are_capped_per_address_and_a_login_frees_the_place() {
    let gw = Gateway::start_with(&config("max_pending_per_ip = 3", ""));
    let to = addr_of(&gw.ws_url);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_from("127.0.0.6", to).await);
    }
    // the gateway counts accepted sockets: let it see them
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, got) = closed_within(tcp_from("127.0.0.6", to).await).await;
    assert!(got.is_empty(), "closed at accept, unanswered");
    // another address is not affected
    let mut other = Client::connect_with(&gw.ws_url, "127.0.0.7".parse().unwrap(), None).await;
    assert_eq!(other.login("o", "web", None).await["code"], 0);
    // a socket that logs in gives its place back
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Client::connect_with(&gw.ws_url, "127.0.0.6".parse().unwrap(), None).await;
    assert_eq!(c.login("alice", "web", None).await["code"], 0);
    let mut c2 = Client::connect_with(&gw.ws_url, "127.0.0.6".parse().unwrap(), None).await;
    assert_eq!(
        c2.login("bob", "web", None).await["code"],
        0,
        "alice's place was given back"
    );
    let m = metrics(&gw).await;
    assert!(m.contains("imgate_pending_sockets 2"), "{m}");
}

#[tokio::test]
async fn pending_sockets_are_capped_in_total() {
    let gw = Gateway::start_with(&config("max_pending = 4\nmax_pending_per_ip = 0", ""));
    let to = addr_of(&gw.ws_url);
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(tcp_from(&format!("127.0.1.{}", i + 1), to).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, got) = closed_within(tcp_from("127.0.1.9", to).await).await;
    assert!(got.is_empty());
    held.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = gw.client().await;
    assert_eq!(c.login("alice", "web", None).await["code"], 0);
}

#[test]
fn max_pending_must_stay_below_max_connections() {
    let e = imgate::config::Config::parse(
        "max_connections = 100\nmax_pending = 100\n[[app]]\nsdk_app_id = 1\nkey = \"k\"\n",
        "x.toml",
    )
    .unwrap_err();
    assert_eq!(e.key, "max_pending");
}

#[tokio::test]
async fn too_many_frames_close_1008() {
    let gw = Gateway::start_with(&config("max_frames_per_sec = 10", ""));
    let mut c = gw.logged_in("alice", "web", None).await;
    let mut closed = None;
    for i in 0..200 {
        if c.ws
            .send(Message::Ping(vec![i as u8].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    for _ in 0..400 {
        match c.recv_frame().await {
            Some(Message::Close(Some(f))) => {
                closed = Some((u16::from(f.code), f.reason.to_string()));
                break;
            }
            None => break,
            _ => continue,
        }
    }
    assert_eq!(closed, Some((1008, "rate limit".into())));
    let m = metrics(&gw).await;
    assert!(
        m.contains("imgate_rate_limited_total{limit=\"frames\"} 1"),
        "{m}"
    );
    assert!(m.contains("imgate_closes_total{code=\"1008\"} 1"), "{m}");
}

#[tokio::test]
async fn too_many_requests_answer_7008_and_change_nothing() {
    let gw = Gateway::start_with(&config("max_requests_per_sec = 5", ""));
    let mut peer = gw.logged_in("bob", "web", None).await;
    let mut c = gw.logged_in("alice", "web", None).await; // one login spent
    let mut codes = Vec::new();
    for i in 0..30 {
        let r = c
            .request(json!({"type":"send","to":"bob","payload":format!("m{i}")}))
            .await;
        codes.push(r["code"].as_u64().unwrap());
    }
    let ok = codes.iter().filter(|&&c| c == 0).count();
    let limited = codes.iter().filter(|&&c| c == 7008).count();
    assert_eq!(ok + limited, 30, "{codes:?}");
    assert!(
        (9..=11).contains(&ok),
        "a burst of 10 (one went to the login): {codes:?}"
    );
    // only the answered ones reached bob
    let mut got = 0;
    while let Ok(v) = tokio::time::timeout(Duration::from_millis(300), peer.recv()).await {
        assert_eq!(v["type"], "message");
        got += 1;
    }
    assert_eq!(got, ok);
    // ping and status are not budgeted
    for _ in 0..20 {
        assert_eq!(c.request(json!({"type":"ping"})).await["code"], 0);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c
        .request(json!({"type":"send","to":"bob","payload":"later"}))
        .await;
    assert_eq!(r["code"], 0, "the budget refills");
    let m = metrics(&gw).await;
    assert!(
        m.contains("imgate_rate_limited_total{limit=\"requests\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_that_reads_is_never_closed_by_others_traffic() {
    let gw = Gateway::start_with(&config(
        "max_requests_per_sec = 0\nmax_frames_per_sec = 0\noutbound_queue = 32\noutbound_bytes = 131072",
        "",
    ));
    let mut reader = gw.logged_in("victim", "web", None).await;
    let reading = tokio::spawn(async move {
        let mut n = 0u64;
        let t0 = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(3), reader.ws.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => n += 1,
                Ok(Some(Ok(Message::Close(f)))) => return (n, f.map(|f| u16::from(f.code))),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return (n, Some(0)),
                Err(_) => return (n, None),
            }
            assert!(t0.elapsed() < Duration::from_secs(60));
        }
    });
    // several flooders, 16 KiB messages, as fast as the gateway answers
    let payload = "y".repeat(16_000);
    let mut floods = Vec::new();
    for f in 0..3 {
        let mut c = gw.logged_in(&format!("flood{f}"), "web", None).await;
        let payload = payload.clone();
        floods.push(tokio::spawn(async move {
            let (mut d, mut dropped) = (0u32, 0u32);
            for _ in 0..600 {
                let r = c
                    .request(json!({"type":"send","to":"victim","payload":payload}))
                    .await;
                match r["data"]["delivered"].as_u64() {
                    Some(1) => d += 1,
                    Some(0) => dropped += 1,
                    _ => panic!("{r}"),
                }
            }
            (d, dropped)
        }));
    }
    let mut delivered = 0;
    for f in floods {
        delivered += f.await.unwrap().0;
    }
    let (read, closed) = reading.await.unwrap();
    assert_eq!(closed, None, "the reader's socket stays open (read {read})");
    assert!(
        read >= u64::from(delivered) * 9 / 10,
        "read {read} of {delivered} delivered"
    );
    eprintln!("reader: {read} read, {delivered} delivered of 1800 sent (~28 MB)");
}

#[tokio::test]
async fn a_throttled_key_is_not_flushed_and_an_address_with_many_failures_is_throttled() {
    let gw = Gateway::start_with(&config(
        "[throttle]\nmax_failures = 5\nmax_keys = 50\nmax_failures_per_ip = 30",
        "",
    ));
    let wrong = |user: &str| {
        imgate::usersig::generate(
            &imgate::usersig::SigKey::new("nope"),
            APP,
            user,
            3600,
            now_secs(),
            None,
        )
    };
    let mut a = Client::connect_with(&gw.ws_url, "127.0.2.1".parse().unwrap(), None).await;
    for _ in 0..5 {
        assert_eq!(
            a.login_with_sig("victim", "web", None, &wrong("victim"))
                .await["code"],
            70009
        );
    }
    assert_eq!(a.login("victim", "web", None).await["code"], 70050);
    // 200 failures for made-up users from other addresses: the victim's key stays throttled
    for i in 0..200u32 {
        let ip = format!("127.0.3.{}", 1 + i % 100);
        let mut c = Client::connect_with(&gw.ws_url, ip.parse().unwrap(), None).await;
        let u = format!("m{i}");
        let r = c.login_with_sig(&u, "web", None, &wrong(&u)).await;
        assert!(matches!(r["code"].as_u64(), Some(70009)), "{r}");
    }
    assert_eq!(
        a.login("victim", "web", None).await["code"],
        70050,
        "not flushed"
    );
    // 30 failures from one address: every user from it is throttled, a valid UserSig too
    let mut b = Client::connect_with(&gw.ws_url, "127.0.4.1".parse().unwrap(), None).await;
    for i in 0..30 {
        let u = format!("p{i}");
        b.login_with_sig(&u, "web", None, &wrong(&u)).await;
    }
    assert_eq!(b.login("fresh", "web", None).await["code"], 70050);
    let mut c = Client::connect_with(&gw.ws_url, "127.0.4.2".parse().unwrap(), None).await;
    assert_eq!(
        c.login("fresh", "web", None).await["code"],
        0,
        "another address"
    );
}

#[tokio::test]
async fn a_usersig_with_bytes_after_its_zlib_stream_is_70003() {
    use base64::Engine as _;
    let gw = Gateway::start();
    let good = sig("alice");
    let std = good.replace('*', "+").replace('-', "/").replace('_', "=");
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(std)
        .unwrap();
    raw.extend_from_slice(b"trailing");
    let bad = base64::engine::general_purpose::STANDARD
        .encode(raw)
        .replace('+', "*")
        .replace('/', "-")
        .replace('=', "_");
    let mut c = gw.client().await;
    assert_eq!(
        c.login_with_sig("alice", "web", None, &bad).await["code"],
        70003
    );
    assert_eq!(
        c.login_with_sig("alice", "web", None, &good).await["code"],
        0
    );
}

#[tokio::test]
async fn http_1_0_upgrades_and_bad_keys_are_400() {
    let gw = Gateway::start();
    let to = addr_of(&gw.ws_url);
    for (line, key) in [
        ("GET /ws HTTP/1.0", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("GET /ws HTTP/1.1", "c2hvcnQ="),
        ("GET /ws HTTP/1.1", "!!!"),
    ] {
        let mut s = TcpStream::connect(to).await.unwrap();
        let req = format!(
            "{line}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let (_, got) = closed_within(s).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 400 "), "{line} {key}: {text}");
    }
}

#[tokio::test]
async fn admin_error_answers_are_json() {
    let gw = Gateway::start();
    // 405: a known path with another method
    let (st, v) = http(&gw.admin_url, "GET", "/v1/kick", Some(TOKEN), None).await;
    assert_eq!(st, 405);
    assert!(v["error"].is_string(), "{v}");
    // 413: a body over the limit (announced, not sent)
    let host = gw.admin_url.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&host).await.unwrap();
    let req = format!(
        "POST /v1/kick HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..46 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let s = &mut rd;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.contains("{\"error\":"), "{text}");
    let (st, v) = http(&gw.admin_url, "GET", "/nowhere", None, None).await;
    assert_eq!(st, 404);
    assert!(v["error"].is_string(), "{v}");
    // hyper's own answers to heads it cannot parse: 400 malformed, 431 far too large
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(300 * 1024)
    );
    for (req, status) in [
        ("GARBAGE\r\n\r\n".to_owned(), 400),
        (
            "GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_owned(),
            400,
        ),
        (big, 431),
    ] {
        let mut s = TcpStream::connect(&host).await.unwrap();
        let _ = s.write_all(req.as_bytes()).await;
        let (_, got) = closed_within(s).await;
        let text = String::from_utf8_lossy(&got).to_string();
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert!(v["error"].is_string(), "{v}");
    }
    // and a keep-alive connection's normal answers are untouched (a 400 of the router included)
    let mut s = TcpStream::connect(&host).await.unwrap();
    let two = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/online?sdk_app_id=x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(two.as_bytes()).await.unwrap();
    let (_, got) = closed_within(s).await;
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("HTTP/1.1 400 "), "{text}");
    assert!(
        text.contains("sdk_app_id must be an unsigned integer"),
        "{text}"
    );
}

#[tokio::test]
async fn a_dropped_connection_counts_as_1006() {
    let gw = Gateway::start();
    let c = gw.logged_in("alice", "web", None).await;
    drop(c); // no close frame
    let mut seen = String::new();
    for _ in 0..100 {
        seen = metrics(&gw).await;
        if seen.contains("imgate_closes_total{code=\"1006\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.contains("imgate_closes_total{code=\"1006\"} 1"),
        "{seen}"
    );
    assert!(!seen.contains("code=\"1002\""), "{seen}");
}

async fn eof_within(mut s: TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn the_admin_listener_caps_connections_and_times_out_heads_and_idle_keep_alives() {
    let gw = Gateway::start_with(&config(
        "admin_max_connections = 3\nadmin_header_timeout_secs = 1\nadmin_idle_timeout_secs = 2",
        "",
    ));
    let host = gw.admin_url.trim_start_matches("http://").to_owned();
    // a head that never completes: closed after about a second
    let mut slow = TcpStream::connect(&host).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = eof_within(slow, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // a keep-alive connection: answered, then closed after 2 s idle, not before
    let mut ka = TcpStream::connect(&host).await.unwrap();
    ka.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(WAIT, ka.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let took = eof_within(ka, Duration::from_secs(6))
        .await
        .expect("closed when idle");
    assert!(
        took >= Duration::from_millis(1500),
        "not before the idle timeout: {took:?}"
    );
    // three open connections take every place: a fourth is closed at accept
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&host).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fourth = TcpStream::connect(&host).await.unwrap();
    assert!(
        eof_within(fourth, Duration::from_millis(800))
            .await
            .is_some(),
        "closed at accept"
    );
    // the WebSocket listener is not affected
    let mut c = gw.client().await;
    assert_eq!(c.login("alice", "web", None).await["code"], 0);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_outbound_total_bytes_the_largest_queue_closes_first() {
    let gw = Gateway::start_with(&config(
        "max_outbound_total_bytes = 100000\nmax_requests_per_sec = 0\nmax_frames_per_sec = 0\nmax_payload_bytes = 60000",
        "",
    ));
    let mut victim =
        Client::connect_with(&gw.ws_url, "127.0.5.1".parse().unwrap(), Some(4096)).await;
    assert_eq!(victim.login("victim", "web", None).await["code"], 0);
    let mut flooder = gw.logged_in("flooder", "web", None).await;
    let payload = "z".repeat(50_000);
    let t0 = Instant::now();
    let mut gone = false;
    for _ in 0..2000 {
        let r = flooder
            .request(json!({"type":"send","to":"victim","payload":payload}))
            .await;
        assert_eq!(r["code"], 0, "{r}");
        let u = http(
            &gw.admin_url,
            "GET",
            &format!("/v1/online?sdk_app_id={APP}&user_id=victim"),
            Some(TOKEN),
            None,
        )
        .await
        .1;
        if u["users"][0]["status"] == "Offline" {
            gone = true;
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20));
    }
    assert!(gone, "closed once every queue together passed the cap");
    assert!(
        t0.elapsed() < Duration::from_secs(9),
        "by the total cap, not by the 10 s stall: {:?}",
        t0.elapsed()
    );
    let end = loop {
        match victim.recv_frame().await {
            Some(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            None => break None,
            Some(_) => continue,
        }
    };
    assert_eq!(end, Some(4003));
    assert_eq!(
        flooder.request(json!({"type":"ping"})).await["code"],
        0,
        "the small queue stays"
    );
}
