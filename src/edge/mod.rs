//! Running at the edge (contract §14): what happens to a TCP connection before it is a WebSocket.
//!
//! In order, all within the login deadline: the PROXY header when `proxy_protocol` is on
//! ([`proxy`]), the TLS handshake when `[tls]` is configured ([`tls`], over the [`stream::Io`] the
//! socket then keeps), the HTTP upgrade request ([`upgrade`]), the `Origin` check ([`origin`]), the
//! client's address (the PROXY source, or `X-Forwarded-For` from a trusted proxy), and the per-address
//! cap ([`limits`]). Whatever is refused is answered with an HTTP status (404, 400, 426, 431, 403,
//! 429) or, before HTTP (a bad PROXY header, a failed handshake), closed without an answer.

pub mod limits;
pub mod proxy;
pub mod stream;
pub mod tls;
pub mod upgrade;

use crate::config::Config;
use limits::{PerIp, Slot};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use stream::Io;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use upgrade::Refusal;

/// What the edge keeps between connections: the TLS acceptor and the per-address counts.
#[derive(Debug)]
pub struct Edge {
    pub tls: Option<tls::Tls>,
    /// Open sockets per address (`max_connections_per_ip`).
    pub per_ip: Arc<PerIp>,
    /// Sockets not logged in (`max_pending`, `max_pending_per_ip`).
    pub pending: limits::Pending,
}

/// An upgraded connection, ready for its WebSocket.
#[derive(Debug)]
pub struct Accepted {
    pub io: Io,
    /// Bytes read past the request head (the client's first frames).
    pub leftover: Vec<u8>,
    /// The client's address (contract §14).
    pub client: IpAddr,
    /// The socket's place in the per-address count, held for its life.
    pub slot: Slot,
    /// Its place in the pending counts, until it logs in.
    pub pending: limits::Waiting,
}

/// Why a connection did not become a WebSocket (for the debug log).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("PROXY header: {0}")]
    Proxy(#[from] proxy::ProxyError),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("closed before the upgrade request was complete")]
    Gone,
    #[error("answered {} ({})", .0.status, .0.why)]
    Http(Refusal),
}

impl Edge {
    /// Whether the client's address is known at accept: no PROXY header to read, and the TCP peer
    /// is no trusted proxy (whose `X-Forwarded-For` would name someone else).
    pub fn address_known(&self, cfg: &Config, peer: IpAddr) -> bool {
        !cfg.proxy_protocol && !proxy::is_trusted(&cfg.trusted_proxies, peer)
    }

    /// Takes a connection from accept to an answered upgrade. The caller bounds the time.
    pub async fn handshake(
        &self,
        cfg: &Config,
        mut tcp: TcpStream,
        peer: SocketAddr,
        mut pending: limits::Waiting,
    ) -> Result<Accepted, Refused> {
        let mut client = peer.ip();
        if cfg.proxy_protocol {
            let header = proxy::read_header(&mut tcp).await?;
            if let Some(src) = proxy::source(&header)? {
                client = proxy::canonical(src.ip());
            }
        }
        let mut io = match &self.tls {
            Some(t) => Io::Tls(Box::new(
                t.acceptor().accept(tcp).await.map_err(Refused::Tls)?,
            )),
            None => Io::Plain(tcp),
        };
        let (head, leftover) = match upgrade::read_head(&mut io).await {
            Ok(h) => h,
            Err(upgrade::ReadError::Gone) => return Err(Refused::Gone),
            Err(upgrade::ReadError::TooLarge(r)) => return Err(refuse(&mut io, r).await),
        };
        let up = match upgrade::parse(&head) {
            Ok(u) => u,
            Err(r) => return Err(refuse(&mut io, r).await),
        };
        if !crate::origin::allowed(&cfg.allowed_origins, up.origin.as_deref()) {
            let r = Refusal::new(403, "this Origin is not allowed");
            return Err(refuse(&mut io, r).await);
        }
        if !cfg.proxy_protocol {
            let hops = up.forwarded_for.iter().map(String::as_str);
            client = proxy::client_address(&cfg.trusted_proxies, peer.ip(), hops);
        }
        if !self.pending.place(&mut pending, cfg, client) {
            let r = Refusal::new(429, "too many sockets waiting to log in from this address");
            return Err(refuse(&mut io, r).await);
        }
        let Some(slot) = self.per_ip.acquire(client, cfg.max_connections_per_ip) else {
            let r = Refusal::new(429, "too many connections from this address");
            return Err(refuse(&mut io, r).await);
        };
        io.write_all(&upgrade::accept(&up.key))
            .await
            .map_err(|_| Refused::Gone)?;
        Ok(Accepted {
            io,
            leftover,
            client,
            slot,
            pending,
        })
    }
}

async fn refuse(io: &mut Io, r: Refusal) -> Refused {
    let _ = io.write_all(&r.response()).await;
    let _ = io.shutdown().await;
    Refused::Http(r)
}
