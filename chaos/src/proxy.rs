//! A TCP fault proxy: listens on 127.0.0.1:0 and forwards every connection to one upstream (a
//! node's Redis), injecting faults when told to.
//!
//! What it owns: the forwarding, and three faults, each switched on by the chaos schedule:
//! - **delay**: for a while, every chunk read (either direction) waits a random time up to a bound
//!   before it is written on (order within a direction is kept);
//! - **stall**: for a while, nothing is forwarded in either direction (bytes wait in the kernel's
//!   buffers: the peer sees a hung Redis, not a closed one);
//! - **drop**: every open connection is cut, both sides closed at once.
//!
//! The random delays come from the proxy's own seeded generator; which chunk draws which delay
//! depends on how the kernel split the bytes, so only the schedule of faults is repeatable, not the
//! exact bytes' timing. [`FaultProxy::calm`] ends every fault and refuses new ones (the calm phase).
//! What it does not own: when faults happen (the schedule) or what goes through (it never parses).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Largest chunk read at once.
const CHUNK: usize = 16 * 1024;

/// What a proxy did, for the summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    pub connections: u64,
    pub chunks: u64,
    pub delayed_chunks: u64,
    pub stalls: u64,
    pub drops: u64,
    pub connections_cut: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    chunks: AtomicU64,
    delayed_chunks: AtomicU64,
    stalls: AtomicU64,
    drops: AtomicU64,
    connections_cut: AtomicU64,
}

#[derive(Debug)]
struct Faults {
    /// Until when nothing is forwarded.
    stall_until: Option<Instant>,
    /// Until when, and up to how long, each chunk waits.
    delay: Option<(Instant, Duration)>,
    rng: ChaCha8Rng,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    calm: AtomicBool,
    faults: Mutex<Faults>,
    /// Bumped by every drop: each connection watches it and ends when it changes.
    cut: watch::Sender<u64>,
    /// Told when a stall ends early (calm).
    unstall: watch::Sender<u64>,
    counters: Counters,
}

/// A running proxy; it stops accepting when dropped (connections end with their peers).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.cut.send_modify(|g| *g += 1);
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`; `seed` drives the chunk delays.
    pub async fn start(upstream: SocketAddr, seed: u64) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            calm: AtomicBool::new(false),
            faults: Mutex::new(Faults {
                stall_until: None,
                delay: None,
                rng: ChaCha8Rng::seed_from_u64(seed),
            }),
            cut: watch::channel(0).0,
            unstall: watch::channel(0).0,
            counters: Counters::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every chunk waits up to `max` before it goes on, for `dur`.
    pub fn delay(&self, max: Duration, dur: Duration) {
        if self.shared.calm.load(Ordering::SeqCst) {
            return;
        }
        self.faults().delay = Some((Instant::now() + dur, max));
    }

    /// Nothing is forwarded, either way, for `dur`.
    pub fn stall(&self, dur: Duration) {
        if self.shared.calm.load(Ordering::SeqCst) {
            return;
        }
        self.faults().stall_until = Some(Instant::now() + dur);
        self.shared.counters.stalls.fetch_add(1, Ordering::Relaxed);
    }

    /// Cuts every open connection (both sides closed).
    pub fn drop_connections(&self) {
        if self.shared.calm.load(Ordering::SeqCst) {
            return;
        }
        self.shared.counters.drops.fetch_add(1, Ordering::Relaxed);
        self.shared.cut.send_modify(|g| *g += 1);
    }

    /// Ends every fault now and ignores later ones: plain forwarding from here on.
    pub fn calm(&self) {
        self.shared.calm.store(true, Ordering::SeqCst);
        {
            let mut f = self.faults();
            f.stall_until = None;
            f.delay = None;
        }
        self.shared.unstall.send_modify(|g| *g += 1);
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            connections: c.connections.load(Ordering::Relaxed),
            chunks: c.chunks.load(Ordering::Relaxed),
            delayed_chunks: c.delayed_chunks.load(Ordering::Relaxed),
            stalls: c.stalls.load(Ordering::Relaxed),
            drops: c.drops.load(Ordering::Relaxed),
            connections_cut: c.connections_cut.load(Ordering::Relaxed),
        }
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(shared.upstream).await else {
                return; // upstream down: the client sees its connection closed
            };
            shared.counters.connections.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let mut cut = shared.cut.subscribe();
            cut.mark_unchanged();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = pump(cr, sw, Arc::clone(&shared));
            let down = pump(sr, cw, Arc::clone(&shared));
            tokio::select! {
                _ = async { tokio::join!(up, down) } => {}
                _ = cut.changed() => {
                    shared.counters.connections_cut.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Both halves of both sockets are dropped here: the connection is closed on both sides.
        });
    }
}

/// Forwards one direction until EOF or an error, applying the faults to each chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; CHUNK];
    let mut unstall = shared.unstall.subscribe();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        shared.counters.chunks.fetch_add(1, Ordering::Relaxed);
        let wait = {
            let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            match f.delay {
                Some((until, max)) if until > now && !max.is_zero() => {
                    let ms = f.rng.random_range(0..=max.as_millis() as u64);
                    Some(Duration::from_millis(ms))
                }
                _ => None,
            }
        };
        if let Some(w) = wait {
            shared
                .counters
                .delayed_chunks
                .fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(w).await;
        }
        // A stall holds the chunk (and so, by TCP's flow control, everything behind it).
        loop {
            let until = shared
                .faults
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stall_until;
            match until {
                Some(u) if u > Instant::now() => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(u) => {}
                        _ = unstall.changed() => {}
                    }
                }
                _ => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// An echo server on 127.0.0.1:0.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, s.read_exact(&mut got))
            .await
            .expect("echo in time")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn forwards_both_ways() {
        let p = FaultProxy::start(echo().await, 1).await.unwrap();
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"PING\r\n").await, b"PING\r\n");
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        assert_eq!(roundtrip(&mut s, &big).await, big);
        assert_eq!(p.stats().connections, 1);
    }

    #[tokio::test]
    async fn delays_still_deliver_in_order() {
        let p = FaultProxy::start(echo().await, 2).await.unwrap();
        p.delay(Duration::from_millis(5), Duration::from_secs(60));
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        for i in 0..20u8 {
            assert_eq!(roundtrip(&mut s, &[i; 100]).await, vec![i; 100]);
        }
        assert!(p.stats().delayed_chunks > 0);
    }

    #[tokio::test]
    async fn drop_closes_the_client_side() {
        let p = FaultProxy::start(echo().await, 3).await.unwrap();
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"a").await, b"a");
        p.drop_connections();
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the cut is seen in time");
        assert!(matches!(r, Ok(0) | Err(_)), "read after a drop: {r:?}");
        assert_eq!(p.stats().connections_cut, 1);
        // New connections work again.
        let mut s2 = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s2, b"b").await, b"b");
    }

    #[tokio::test]
    async fn a_stall_holds_bytes_until_it_ends() {
        let p = FaultProxy::start(echo().await, 4).await.unwrap();
        let mut s = TcpStream::connect(p.addr()).await.unwrap();
        assert_eq!(roundtrip(&mut s, b"before").await, b"before");
        // Far longer than this test runs: only calm() can end it.
        p.stall(Duration::from_secs(3600));
        s.write_all(b"held").await.unwrap();
        let mut buf = [0u8; 4];
        let early = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(
            early.is_err(),
            "nothing may come through a stall: {early:?}"
        );
        p.calm();
        tokio::time::timeout(WAIT, s.read_exact(&mut buf))
            .await
            .expect("the held bytes arrive after the stall")
            .unwrap();
        assert_eq!(&buf, b"held");
        // Calm: later faults are ignored.
        p.drop_connections();
        p.stall(Duration::from_secs(3600));
        assert_eq!(roundtrip(&mut s, b"after").await, b"after");
        assert_eq!(p.stats().stalls, 1);
        assert_eq!(p.stats().drops, 0);
    }
}
