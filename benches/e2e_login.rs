//! End-to-end login over loopback: the real gateway (`Server::bind` + `run`) in this process on
//! 127.0.0.1:0, and a tokio-tungstenite client in the same runtime.
//!
//! `e2e/connect_upgrade_login`: TCP connect + WebSocket upgrade + `login` + its response, one at a
//! time (the close that follows is not timed). Client sockets are spread over 127.0.0.2–127.0.0.9 so
//! the thousands of sockets a run leaves in TIME_WAIT do not exhaust one source address's ports.
//! `e2e/relogin_open_socket`: `login` + response on an already logged-in socket (same user: updated
//! in place), i.e. the gateway's login path without the connection setup.
//!
//! Both sides share the machine's two cores: these are latencies of one login at a time, not
//! throughput (that is `imgate load`, see BENCHMARKS.md).
//!
//! Run with `cargo bench --bench e2e_login`.

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::{SinkExt, StreamExt};
use imgate::config::Config;
use imgate::server::Server;
use imgate::usersig::{self, SigKey};
use imgate_proto::{decode_server, encode_client, ClientMsg, Encoding, ServerMsg};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const APP: u64 = 1_400_000_000;
const KEY: &str = "bench-key-5bd2850fff3ecb11d7c805251c51ee46";

type Ws = WebSocketStream<TcpStream>;

fn login_frame(user: &str) -> String {
    let sig = usersig::generate(
        &SigKey::new(KEY),
        APP,
        user,
        86_400,
        imgate::clock::now_secs(),
        None,
    );
    let msg = ClientMsg::Login {
        seq: 1,
        sdk_app_id: APP,
        user_id: user.to_owned(),
        user_sig: sig,
        platform: "web".to_owned(),
        instance_id: None,
    };
    String::from_utf8(encode_client(Encoding::Json, &msg)).expect("JSON")
}

async fn connect(addr: SocketAddr, url: &str, n: usize) -> Ws {
    let socket = TcpSocket::new_v4().expect("socket");
    let src = Ipv4Addr::new(127, 0, 0, 2 + (n % 8) as u8);
    socket.bind((src, 0).into()).expect("bind");
    let stream = socket.connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    tokio_tungstenite::client_async(url, stream)
        .await
        .expect("upgrade")
        .0
}

async fn login(ws: &mut Ws, frame: &str) {
    ws.send(Message::text(frame)).await.expect("send");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                match decode_server(Encoding::Json, t.as_bytes(), 1 << 16).expect("decodes") {
                    ServerMsg::Response { code: 0, .. } => return,
                    ServerMsg::Response { code, desc, .. } => panic!("login failed: {code} {desc}"),
                    _ => continue,
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("no response: {other:?}"),
        }
    }
}

/// Sends a close frame and waits for the gateway to close, so TIME_WAIT lands on its side.
async fn close(mut ws: Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

fn e2e(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let config = Config::parse(
        &format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [[app]]\nsdk_app_id = {APP}\nkey = \"{KEY}\"\n"
        ),
        "bench.toml",
    )
    .expect("config");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let addr = rt.block_on(async {
        let server = Server::bind(config).await.expect("bind");
        let addr = server.ws_addr().expect("addr");
        tokio::spawn(server.run(async {
            let _ = stop_rx.await;
        }));
        addr
    });
    let url = format!("ws://{addr}/ws");
    // One frame per user, minted up front; users are distinct so no login kicks another.
    let frames: Vec<String> = (0..4096).map(|i| login_frame(&format!("e2e{i}"))).collect();

    let mut g = c.benchmark_group("e2e");
    g.bench_function("connect_upgrade_login", |b| {
        let mut n = 0usize;
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let mut ws = connect(addr, &url, n).await;
                    login(&mut ws, &frames[n % frames.len()]).await;
                    total += t.elapsed();
                    n += 1;
                    close(ws).await;
                }
                total
            })
        })
    });

    let mut ws = rt.block_on(connect(addr, &url, 0));
    g.bench_function("relogin_open_socket", |b| {
        b.iter(|| rt.block_on(login(&mut ws, &frames[0])))
    });
    g.finish();
    rt.block_on(close(ws));
    let _ = stop_tx.send(());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = e2e
}
criterion_main!(benches);
