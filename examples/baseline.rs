//! The bare baseline server of the side-by-side benchmarks: what a WebSocket connection costs with
//! nothing of imgate on it.
//!
//! It accepts WebSocket connections with the same tokio-tungstenite settings as the gateway's sockets
//! (read buffer = the gateway's `read_buffer_bytes` default, no write buffer, the same write-buffer,
//! message and frame limits; see `src/conn.rs`), answers the first frame with one fixed frame, then
//! holds the connection, reading until the peer leaves. The listener has a deep backlog (8192), like
//! the gateway's.
//!
//! With `--tls-cert FILE --tls-key FILE` it is the bare TLS stack: tokio-rustls (the same rustls
//! server config as the gateway's: ring, TLS 1.2/1.3, the same PEM loading) under the same
//! tokio-tungstenite settings.
//!
//! ```text
//! cargo run --release --example baseline -- [--listen 127.0.0.1:0] [--read-buffer BYTES] \
//!     [--tls-cert cert.pem --tls-key key.pem]
//! ```
//! It prints `listening on ws://ADDR/ws` (or `wss://`); `imgate load --baseline --url ws://ADDR/ws`
//! drives it.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The one answer: the size of a gateway login response.
const ANSWER: &str = r#"{"type":"response","seq":1,"code":0,"desc":"ok","data":{"user_id":"load0","platform":"web","instance_id":null,"expire_at":1700086400}}"#;

fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    // The gateway's defaults, taken from its own config so the two cannot drift apart.
    let defaults = imgate::config::Config::development(1, "k".into(), "t".into());
    let mut read_buffer = defaults.read_buffer_bytes;
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_default().parse()?,
            "--read-buffer" => read_buffer = args.next().unwrap_or_default().parse()?,
            "--tls-cert" => cert = args.next().map(std::path::PathBuf::from),
            "--tls-key" => key = args.next().map(std::path::PathBuf::from),
            _ => anyhow::bail!(
                "usage: baseline [--listen ADDR] [--read-buffer BYTES] [--tls-cert FILE --tls-key FILE]"
            ),
        }
    }
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some(tokio_rustls::TlsAcceptor::from(
            imgate::edge::tls::server_config(&c, &k)
                .map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.msg))?,
        )),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let max_frame = defaults.max_frame_bytes;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(max_frame.max(defaults.max_payload_bytes) * 2 + 64 * 1024)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame));

    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = imgate::server::bind(listen)?;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        println!("listening on {scheme}://{}/ws", listener.local_addr()?);
        println!("read buffer {read_buffer} bytes");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match &tls {
                None => {
                    tokio::spawn(serve(stream, ws_config));
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            serve(tls, ws_config).await;
                        }
                    });
                }
            }
        }
    })
}

async fn serve<S>(stream: S, config: WebSocketConfig)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let mut answered = false;
    while let Some(Ok(m)) = ws.next().await {
        if !answered && (m.is_text() || m.is_binary()) {
            answered = true;
            if ws.send(Message::text(ANSWER)).await.is_err() {
                return;
            }
        }
    }
}
