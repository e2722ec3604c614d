//! The handle shared state holds for one socket: a small bounded mailbox plus the socket task's waker.
//!
//! The presence registry, the expiry wheel and other sockets never touch a socket; they push an
//! [`Event`] into its [`Outbox`] and the socket's own task acts on it. Events carry the session id they
//! are meant for, so an event that raced with a logout or an account switch is recognised as stale and
//! ignored by the socket task.
//!
//! Bounds: control events (kick, expiry, shutdown) always get in; `message` deliveries count against
//! the queue limit, and one that does not fit is dropped for this socket (not counted as delivered).
//! An idle outbox allocates nothing.

use imgate_proto::{KickReason, Platform};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// A message delivered to a user's sockets (from `send` or the admin push API), shared by recipients.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub from: String,
    pub from_platform: Option<Platform>,
    pub payload: String,
}

/// Something the socket task must act on.
#[derive(Debug, Clone)]
pub enum Event {
    /// The session was evicted; the registry entry is already gone.
    Kick {
        session: u64,
        reason: KickReason,
        by_platform: Option<Platform>,
    },
    /// The session's UserSig may have expired (the task re-checks `expire_at`).
    Expired { session: u64 },
    /// A message for the session.
    Message {
        session: u64,
        delivery: Arc<Delivery>,
    },
    /// The gateway is shutting down.
    Shutdown,
    /// A reload removed this app: a session of it is closed as an admin kick.
    AppRemoved { app: u64 },
    /// All the gateway's outbound queues together are over `max_outbound_total_bytes` and this
    /// socket's is among the largest: closed with 4003.
    Overloaded,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Event>,
    messages: u32,
    /// Bytes of the queued messages.
    bytes: usize,
    overflowed: bool,
    closed: bool,
    waker: Option<Waker>,
}

/// A connection's id, unique among the process's open sockets (see [`crate::conns`]).
pub type ConnId = u32;

/// One socket's mailbox, with what shared state may know of the socket: its id and client address.
pub struct Outbox {
    id: ConnId,
    ip: IpAddr,
    limit: u32,
    /// Message bytes the socket may have waiting to be written (half its `outbound_bytes`).
    room: u32,
    /// Bytes the socket has waiting to be written now (kept by the socket's task).
    backlog: AtomicU32,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outbox({})", self.id)
    }
}

impl Outbox {
    /// `limit`: message deliveries queued at most.
    pub fn new(id: ConnId, ip: IpAddr, limit: usize) -> Outbox {
        Outbox::with_room(id, ip, limit, usize::MAX)
    }

    /// `room`: message bytes the socket may have waiting to be written at most; a delivery that
    /// would exceed it is dropped for this socket.
    pub fn with_room(id: ConnId, ip: IpAddr, limit: usize, room: usize) -> Outbox {
        Outbox {
            id,
            ip,
            room: u32::try_from(room).unwrap_or(u32::MAX),
            backlog: AtomicU32::new(0),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The socket's task reports what it has waiting to be written.
    pub fn set_backlog(&self, bytes: usize) -> usize {
        let was = self
            .backlog
            .swap(u32::try_from(bytes).unwrap_or(u32::MAX), Ordering::Relaxed);
        was as usize
    }

    /// What the socket has waiting to be written, as it last said.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed) as usize
    }

    /// The connection id (unique among open sockets).
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The client's address (contract §14: after the PROXY header or X-Forwarded-For).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Queues an event. Returns false when the socket is gone, or when a message did not fit (the
    /// socket is then marked overflowed and will close with 4003).
    pub fn push(&self, event: Event) -> bool {
        let waker = {
            let mut g = self.inner.lock();
            if g.closed || g.overflowed {
                return false;
            }
            if let Event::Message { delivery, .. } = &event {
                let size = delivery.payload.len() + delivery.from.len() + 64;
                let backlog = self.backlog.load(Ordering::Relaxed) as usize;
                if g.messages >= self.limit || backlog + g.bytes + size > self.room as usize {
                    // Dropped for this socket (not counted as delivered); never a reason to close
                    // it: others' traffic must not get a socket closed (contract §16).
                    return false;
                }
                g.messages += 1;
                g.bytes += size;
            }
            g.queue.push_back(event);
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Marks the overflow (the socket's own write buffer is full): the socket closes with 4003.
    pub fn set_overflowed(&self) {
        self.inner.lock().overflowed = true;
    }

    /// Moves queued events into `out`. Ready when there was at least one event or the outbox
    /// overflowed (the bool); otherwise stores the waker and is pending.
    pub fn poll_take(&self, cx: &mut Context<'_>, out: &mut Vec<Event>) -> Poll<bool> {
        let mut g = self.inner.lock();
        if g.overflowed {
            return Poll::Ready(true);
        }
        if g.queue.is_empty() {
            match &g.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => g.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        out.extend(g.queue.drain(..));
        g.messages = 0;
        g.bytes = 0;
        if g.queue.capacity() > 16 {
            g.queue = VecDeque::new();
        }
        Poll::Ready(false)
    }

    /// Moves queued events into `out` without registering for a wake-up: the socket task calls it
    /// before acting on a request, so that what was queued first takes effect first. Returns whether
    /// the outbox overflowed.
    pub fn take(&self, out: &mut Vec<Event>) -> bool {
        let mut g = self.inner.lock();
        if g.overflowed {
            return true;
        }
        if !g.queue.is_empty() {
            out.extend(g.queue.drain(..));
            g.messages = 0;
            g.bytes = 0;
            if g.queue.capacity() > 16 {
                g.queue = VecDeque::new();
            }
        }
        false
    }

    /// The socket is gone: later pushes fail and nothing is kept.
    pub fn close(&self) {
        let mut g = self.inner.lock();
        g.closed = true;
        g.queue = VecDeque::new();
        g.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn msg(session: u64) -> Event {
        Event::Message {
            session,
            delivery: Arc::new(Delivery {
                from: "a".into(),
                from_platform: None,
                payload: "p".into(),
            }),
        }
    }

    #[test]
    fn messages_are_bounded_controls_are_not() {
        let o = Outbox::new(1, IP, 2);
        assert!(o.push(msg(1)) && o.push(msg(1)));
        assert!(o.push(Event::Shutdown));
        assert!(!o.push(msg(1)), "a third message is dropped");
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = vec![];
        assert_eq!(
            o.poll_take(&mut cx, &mut out),
            Poll::Ready(false),
            "a dropped message never closes the socket"
        );
        assert_eq!(out.len(), 3);
        // a message counts 64 bytes beyond its payload and sender: 66 here
        let room = Outbox::with_room(2, IP, 100, 100);
        assert!(room.push(msg(1)), "fits the byte room");
        assert!(!room.push(msg(1)), "the queued ones take the room");
        assert!(room.push(Event::Shutdown), "controls always get in");
        let busy = Outbox::with_room(3, IP, 100, 100);
        busy.set_backlog(50);
        assert!(
            !busy.push(msg(1)),
            "the socket's own backlog takes the room"
        );
    }

    #[test]
    fn take_without_a_waker_drains_too() {
        let o = Outbox::new(1, IP, 1);
        let mut out = vec![];
        assert!(!o.take(&mut out));
        assert!(out.is_empty());
        assert!(o.push(msg(1)) && o.push(Event::Shutdown));
        assert!(!o.take(&mut out));
        assert_eq!(out.len(), 2);
        assert!(o.push(msg(1)), "room again after the drain");
        assert!(!o.push(msg(1)));
        assert!(!o.take(&mut out), "dropped, not overflowed");
    }

    #[test]
    fn take_drains_and_resets_the_count() {
        let o = Outbox::new(1, IP, 1);
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = vec![];
        assert!(o.poll_take(&mut cx, &mut out).is_pending());
        assert!(o.push(msg(1)));
        assert_eq!(o.poll_take(&mut cx, &mut out), Poll::Ready(false));
        assert_eq!(out.len(), 1);
        assert!(o.push(msg(1)), "room again after the drain");
        o.close();
        assert!(!o.push(msg(1)));
    }
}
