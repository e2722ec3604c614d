//! The per-socket memory the gateway pays before any buffer: the size of one socket's task future
//! (`conn::serve`), which tokio allocates once per connection together with the task header, for
//! the socket's whole life. The figures are printed for BENCHMARKS.md
//! (`cargo test --release --test footprint -- --nocapture`).

use imgate::config::Config;
use imgate::server::Server;

#[tokio::test]
async fn per_socket_future_stays_small() {
    let config = Config::parse(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [[app]]\nsdk_app_id = 1400000000\nkey = \"k\"\n",
        "footprint.toml",
    )
    .expect("config");
    let server = Server::bind(config).await.expect("bind");
    let addr = server.ws_addr().expect("addr");
    let gw = std::sync::Arc::clone(&server.gateway);
    let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let peer = client.local_addr().expect("addr");
    // Never polled: only its size matters.
    let fut = imgate::conn::serve(gw, client, peer);
    let size = std::mem::size_of_val(&fut);
    println!("conn::serve future: {size} bytes");
    println!(
        "Session: {} bytes, Outbox: {} bytes, WebSocketStream<Io>: {} bytes, Slot: {} bytes",
        std::mem::size_of::<imgate::session::Session>(),
        std::mem::size_of::<imgate::outbox::Outbox>(),
        std::mem::size_of::<tokio_tungstenite::WebSocketStream<imgate::edge::stream::Io>>(),
        std::mem::size_of::<imgate::edge::limits::Slot>(),
    );
    drop(fut);
    // A regression guard: 2,624 bytes before the handshake and the closing linger were boxed,
    // 1,296 after, 1,528 with cluster mode. Every byte here is paid by every idle socket.
    assert!(size <= 2048, "conn::serve future grew to {size} bytes");
}
