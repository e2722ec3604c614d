//! The open sockets of this process, by connection id.
//!
//! Every socket registers its [`Outbox`] here for its whole life (from the upgrade to the close), so
//! the shutdown drain reaches every socket, and a kick that names only a session id finds its socket:
//! a session id of the shared store carries its connection id in its low 32 bits
//! ([`session_id`]), so no per-session index is needed to route a kick that comes from another node.
//!
//! Connection ids are 32-bit, never 0, and never reused while their socket is open (the counter skips
//! ids still in use when it wraps).

use crate::outbox::{ConnId, Event, Outbox};
use dashmap::DashMap;
use prometheus_client::metrics::gauge::Gauge;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// The connection table.
#[derive(Debug)]
pub struct Conns {
    map: DashMap<ConnId, Arc<Outbox>>,
    /// Bytes waiting to be written on every socket together (kernel buffers not counted).
    outbound: std::sync::atomic::AtomicUsize,
    reaping: AtomicBool,
    next: AtomicU32,
    draining: AtomicBool,
    /// `imgate_connections`.
    gauge: Gauge,
}

/// A session id for a login on connection `conn`: 32 random bits above the connection id, so the
/// id fences stale events like any random id while its low half routes a kick to the socket.
pub fn session_id(conn: ConnId) -> u64 {
    (u64::from(rand::random::<u32>().max(1)) << 32) | u64::from(conn)
}

/// The connection a [`session_id`] was issued on.
pub fn conn_of(session: u64) -> ConnId {
    session as ConnId
}

impl Conns {
    pub fn new(gauge: Gauge) -> Conns {
        Conns {
            map: DashMap::new(),
            outbound: std::sync::atomic::AtomicUsize::new(0),
            reaping: AtomicBool::new(false),
            next: AtomicU32::new(1),
            draining: AtomicBool::new(false),
            gauge,
        }
    }

    /// Registers a new socket; `queue` bounds its queued message deliveries. A socket opened while
    /// draining is told to close at once.
    pub fn open(&self, ip: IpAddr, queue: usize, room: usize) -> Arc<Outbox> {
        let outbox = loop {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            if id == 0 {
                continue;
            }
            if let dashmap::Entry::Vacant(v) = self.map.entry(id) {
                let outbox = Arc::new(Outbox::with_room(id, ip, queue, room));
                v.insert(Arc::clone(&outbox));
                break outbox;
            }
        };
        self.gauge.inc();
        if self.is_draining() {
            outbox.push(Event::Shutdown);
        }
        outbox
    }

    /// A socket's backlog is now `bytes`; when all of them together pass `cap` (0: no cap), the
    /// sockets with the largest backlogs are told to close (4003) until the rest fits (§16).
    pub fn set_backlog(&self, outbox: &Outbox, bytes: usize, cap: usize) {
        let was = outbox.set_backlog(bytes);
        if was == bytes {
            // Every wake of every socket comes here: the shared total is touched only on a change.
            return;
        }
        let total = if bytes >= was {
            self.outbound.fetch_add(bytes - was, Ordering::Relaxed) + (bytes - was)
        } else {
            self.outbound.fetch_sub(was - bytes, Ordering::Relaxed) - (was - bytes)
        };
        if cap > 0 && total > cap && !self.reaping.swap(true, Ordering::SeqCst) {
            let mut all: Vec<(usize, Arc<Outbox>)> = self
                .map
                .iter()
                .map(|c| (c.value().backlog(), Arc::clone(c.value())))
                .filter(|(b, _)| *b > 0)
                .collect();
            all.sort_unstable_by_key(|(b, _)| std::cmp::Reverse(*b));
            let mut over = total - cap;
            for (b, o) in all {
                if over == 0 {
                    break;
                }
                o.push(Event::Overloaded);
                over = over.saturating_sub(b);
            }
            self.reaping.store(false, Ordering::SeqCst);
        }
    }

    /// Bytes waiting on every socket together.
    pub fn outbound_bytes(&self) -> usize {
        self.outbound.load(Ordering::Relaxed)
    }

    /// The socket is gone.
    pub fn close(&self, outbox: &Outbox) {
        let was = outbox.set_backlog(0);
        self.outbound.fetch_sub(was, Ordering::Relaxed);
        outbox.close();
        if self.map.remove(&outbox.id()).is_some() {
            self.gauge.dec();
        }
    }

    /// The outbox of an open socket.
    pub fn get(&self, id: ConnId) -> Option<Arc<Outbox>> {
        self.map.get(&id).map(|o| Arc::clone(o.value()))
    }

    /// Open sockets.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Starts the drain: every socket is told to close with 1001.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.broadcast(Event::Shutdown);
    }

    /// Tells every open socket (each acts on it or ignores it).
    pub fn broadcast(&self, event: Event) {
        let all: Vec<Arc<Outbox>> = self.map.iter().map(|c| Arc::clone(c.value())).collect();
        for c in all {
            c.push(event.clone());
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn session_ids_route_to_their_connection_and_ids_are_not_reused_while_open() {
        let c = Conns::new(Gauge::default());
        let a = c.open(IP, 4, 1024);
        let s = session_id(a.id());
        assert_eq!(conn_of(s), a.id());
        assert_ne!(session_id(a.id()) >> 32, 0);
        c.next.store(u32::MAX, Ordering::Relaxed);
        let b = c.open(IP, 4, 1024); // u32::MAX
        let d = c.open(IP, 4, 1024); // wraps past 0 and skips a's id 1
        assert_eq!(b.id(), u32::MAX);
        assert_ne!(d.id(), a.id());
        assert_ne!(d.id(), 0);
        assert_eq!(c.len(), 3);
        c.close(&a);
        assert!(c.get(a.id()).is_none() && c.get(d.id()).is_some());
    }
}
