//! The socket I/O loop: the HTTP upgrade, then one task per socket that reads frames, writes
//! responses and pushes, and keeps the deadlines (login, heartbeat, idle).
//!
//! One task drives both directions of its WebSocket through a single hand-written poll (no split, no
//! extra tasks or channels), so an idle socket costs its buffers, its [`Session`] and one timer. What
//! the socket writes goes through a bounded local queue: while the kernel's send buffer is full
//! nothing more is handed to the WebSocket, and a queue that grows past `outbound_queue` messages or
//! `outbound_bytes` bytes closes the socket with 4003 (slow consumer) after dropping what never left.
//!
//! Every close goes through [`close_socket`]: the session leaves presence first, then the close frame
//! is written and the TCP connection is shut down and drained for a short, bounded time so the peer
//! reads the close frame rather than a reset.

use crate::clock::{self, Budget};
use crate::config::Config;
use crate::edge::limits::Waiting;
use crate::edge::stream::Io;
use crate::gateway::Gateway;
use crate::outbox::{Event, Outbox};
use crate::session::{Action, Ctx, Ended, Session, Step};
use futures_util::{SinkExt, StreamExt};
use imgate_proto::{close, decode_client, encode_server, Encoding, ServerMsg};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// A socket with messages waiting that has taken nothing for this long is a slow consumer (4003).
const STALL: Duration = Duration::from_secs(10);
/// How long a closing socket waits for its close frame to leave and for the peer to hang up.
const LINGER: Duration = Duration::from_secs(2);

type Ws = WebSocketStream<Io>;

/// Serves one accepted TCP connection until it closes.
pub async fn serve(gw: Arc<Gateway>, stream: TcpStream, peer: SocketAddr) {
    // The socket lives with the configuration it opened under (a reload changes later sockets).
    let cfg = gw.config();
    let accepted_at = Instant::now();
    let login_deadline = accepted_at + Duration::from_secs(cfg.login_timeout_secs);
    // §16: not logged in yet, so it counts against the pending caps from accept on.
    let Some(pending) =
        gw.edge
            .pending
            .enter(&cfg, peer.ip(), gw.edge.address_known(&cfg, peer.ip()))
    else {
        tracing::debug!(%peer, "too many sockets waiting to log in: closed at accept");
        return;
    };
    // The upgrade request (after the PROXY header and TLS) must be complete within
    // upgrade_timeout_secs; the login deadline still runs from accept.
    let upgrade_deadline = match cfg.upgrade_timeout_secs {
        0 => login_deadline,
        s => login_deadline.min(accepted_at + Duration::from_secs(s)),
    };
    // Boxed, like `close_socket` below: their state (the PROXY header, the TLS handshake, a 1 KiB
    // read chunk, the parsed headers, the linger buffer) would otherwise be part of this future for
    // the socket's whole life (see BENCHMARKS.md); on the heap it exists only while they run.
    let accepted = timeout_at(
        upgrade_deadline,
        Box::pin(gw.edge.handshake(&cfg, stream, peer, pending)),
    )
    .await;
    let crate::edge::Accepted {
        io,
        leftover,
        client,
        slot,
        pending,
    } = match accepted {
        Ok(Ok(a)) => a,
        Ok(Err(why)) => {
            tracing::debug!(%peer, "not upgraded: {why}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "upgrade timed out");
            return;
        }
    };
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.read_buffer_bytes)
        .write_buffer_size(0)
        // Our own queue bounds what waits; this only has to hold one frame plus control frames.
        .max_write_buffer_size(cfg.max_frame_bytes.max(cfg.max_payload_bytes) * 2 + 64 * 1024)
        .max_message_size(Some(cfg.max_frame_bytes))
        .max_frame_size(Some(cfg.max_frame_bytes));
    let ws =
        WebSocketStream::from_partially_read(io, leftover, Role::Server, Some(ws_config)).await;
    let outbox = gw.open_conn(client, &cfg);
    let mut conn = Conn {
        gw: &gw,
        cfg: &cfg,
        outbox: &outbox,
        session: Session::new(cfg.max_requests_per_sec),
        pending: VecDeque::new(),
        pending_bytes: 0,
        login_deadline: Some(login_deadline),
        frames: Budget::full(cfg.max_frames_per_sec),
        last_write: Instant::now(),
        waiting: Some(pending),
        client,
    };
    conn.run(ws).await;
    gw.close_conn(&outbox);
    drop(slot);
}

/// What woke the socket task.
enum Wake {
    Frame(Option<Result<Message, WsError>>),
    Events { overflowed: bool },
    Timer,
    WriteFailed,
}

/// Why the loop ended.
enum End {
    /// Close with this code and reason.
    Close(u16, String),
    /// The connection broke: nothing more to write.
    Gone,
    /// The peer sent a close frame: our close reply (queued by tungstenite) is flushed, briefly.
    PeerClosed,
}

struct Conn<'a> {
    gw: &'a Arc<Gateway>,
    cfg: &'a Config,
    outbox: &'a Arc<Outbox>,
    session: Session,
    /// Frames waiting for the socket to accept them (bounded: overflow closes 4003).
    pending: VecDeque<Message>,
    pending_bytes: usize,
    /// While logged out: when the socket is closed with 4000.
    login_deadline: Option<Instant>,
    /// Inbound frames per second (§16: 1008 beyond).
    frames: Budget,
    /// When the socket last took a frame from its queue (or had nothing waiting).
    last_write: Instant,
    /// While not logged in: the socket's place in the pending counts (§16).
    waiting: Option<Waiting>,
    client: std::net::IpAddr,
}

impl<'a> Conn<'a> {
    fn ctx(&self) -> Ctx<'a> {
        Ctx {
            gw: self.gw,
            cfg: self.cfg,
            outbox: self.outbox,
        }
    }

    /// Whether a message delivery still fits the socket's queue. The outbox already holds
    /// deliveries to half the bounds (and drops the rest, uncounted); this only catches what
    /// raced past it.
    fn room_for_message(&self) -> bool {
        self.pending.len() < self.cfg.outbound_queue && self.pending_bytes < self.cfg.outbound_bytes
    }

    /// Queues a message for the socket; false when the queue overflowed.
    fn queue(&mut self, msg: &ServerMsg, enc: Encoding) -> bool {
        let bytes = encode_server(enc, msg);
        self.pending_bytes += bytes.len();
        let frame = match enc {
            Encoding::Json => match String::from_utf8(bytes) {
                Ok(s) => Message::Text(Utf8Bytes::from(s)),
                Err(_) => return true, // JSON is UTF-8; unreachable
            },
            Encoding::Bincode => Message::Binary(bytes.into()),
        };
        self.pending.push_back(frame);
        self.pending.len() <= self.cfg.outbound_queue
            && self.pending_bytes <= self.cfg.outbound_bytes
    }

    fn next_deadline(&self, idle_at: Instant, ping_at: Instant, writing: bool) -> Instant {
        let mut t = idle_at.min(ping_at);
        if writing {
            t = t.min(self.last_write + STALL);
        }
        self.login_deadline.map_or(t, |d| d.min(t))
    }

    /// Keeps the socket's place in the pending counts while it is not logged in (§16): given
    /// back at login, taken again (whatever the counts) when it logs out or its UserSig expires.
    fn count_waiting(&mut self) {
        if self.session.is_logged_in() {
            self.waiting = None;
        } else if self.waiting.is_none() {
            self.waiting = Some(self.gw.edge.pending.reenter(self.client));
        }
    }

    /// Acts on outbox events in order; `Some` when the socket must close.
    fn apply(&mut self, events: &mut Vec<Event>, login_timeout: Duration) -> Option<End> {
        let mut end = None;
        for ev in events.drain(..) {
            let action = {
                let ctx = self.ctx();
                self.session.on_event(ctx, ev)
            };
            match action {
                Action::None => {}
                Action::Push {
                    msg,
                    encoding,
                    logged_out,
                } => {
                    if logged_out {
                        self.login_deadline = Some(Instant::now() + login_timeout);
                        self.count_waiting();
                    }
                    if matches!(msg, ServerMsg::Message { .. }) && !self.room_for_message() {
                        // Others' traffic is dropped for a socket that cannot take it in time
                        // (§16); only a socket that has taken nothing for STALL is a slow consumer.
                        if self.last_write.elapsed() >= STALL {
                            end = Some(End::Close(close::SLOW_CONSUMER, "slow consumer".into()));
                            break;
                        }
                        continue;
                    }
                    if !self.queue(&msg, encoding) {
                        end = Some(End::Close(close::SLOW_CONSUMER, "slow consumer".into()));
                        break;
                    }
                }
                Action::Close(push, code) => {
                    if let Some((msg, enc)) = push {
                        // The push goes out right before the close frame.
                        self.queue(&msg, enc);
                    }
                    end = Some(End::Close(code, close_reason(code).into()));
                    break;
                }
            }
        }
        events.clear();
        if events.capacity() > 16 {
            *events = Vec::new();
        }
        end
    }

    async fn run(&mut self, mut ws: Ws) {
        let cfg = self.cfg;
        let idle = Duration::from_secs(cfg.idle_timeout_secs);
        let ping_every = Duration::from_secs(cfg.ping_interval_secs);
        let login_timeout = Duration::from_secs(cfg.login_timeout_secs);
        let max_frame = cfg.max_frame_bytes;
        let mut last_inbound = Instant::now();
        let mut ping_at = last_inbound + ping_every;
        let mut armed = self.next_deadline(last_inbound + idle, ping_at, false);
        let timer = sleep_until(armed);
        tokio::pin!(timer);
        let mut events: Vec<Event> = Vec::new();
        let mut dirty = false;

        let end = loop {
            let outbox = self.outbox;
            let pending = &mut self.pending;
            let pending_bytes = &mut self.pending_bytes;
            let mut flushed = false;
            let wake = poll_fn(|cx| {
                while !pending.is_empty() {
                    match ws.poll_ready_unpin(cx) {
                        Poll::Ready(Ok(())) => {
                            let m = pending.pop_front().expect("not empty");
                            *pending_bytes -= m.len();
                            if ws.start_send_unpin(m).is_err() {
                                return Poll::Ready(Wake::WriteFailed);
                            }
                            dirty = true;
                        }
                        Poll::Ready(Err(_)) => return Poll::Ready(Wake::WriteFailed),
                        Poll::Pending => break,
                    }
                }
                if dirty {
                    match ws.poll_flush_unpin(cx) {
                        Poll::Ready(Ok(())) => {
                            dirty = false;
                            flushed = true;
                        }
                        Poll::Ready(Err(_)) => return Poll::Ready(Wake::WriteFailed),
                        Poll::Pending => {}
                    }
                }
                if let Poll::Ready(f) = ws.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Frame(f));
                }
                if let Poll::Ready(overflowed) = outbox.poll_take(cx, &mut events) {
                    return Poll::Ready(Wake::Events { overflowed });
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
                Poll::Pending
            })
            .await;
            // Write progress: everything handed over reached the kernel, or nothing waits.
            if flushed || (!dirty && self.pending.is_empty()) {
                self.last_write = Instant::now();
            }
            self.gw.conns.set_backlog(
                self.outbox,
                self.pending_bytes,
                self.cfg.max_outbound_total_bytes,
            );
            if self.pending.is_empty() && self.pending.capacity() > 8 {
                self.pending = VecDeque::new();
            }

            match wake {
                Wake::WriteFailed => break End::Gone,
                Wake::Timer => {
                    let now = Instant::now();
                    if self.login_deadline.is_some_and(|d| now >= d) {
                        break End::Close(close::LOGIN_TIMEOUT, "login timeout".into());
                    }
                    if now >= last_inbound + idle {
                        break End::Close(close::IDLE_TIMEOUT, "idle timeout".into());
                    }
                    if (dirty || !self.pending.is_empty()) && now >= self.last_write + STALL {
                        break End::Close(close::SLOW_CONSUMER, "slow consumer".into());
                    }
                    if now >= ping_at {
                        ping_at = now + ping_every;
                        if ws
                            .start_send_unpin(Message::Ping(Default::default()))
                            .is_err()
                        {
                            break End::Gone;
                        }
                        dirty = true;
                    }
                }
                Wake::Events { overflowed } => {
                    if overflowed {
                        break End::Close(close::SLOW_CONSUMER, "slow consumer".into());
                    }
                    if let Some(end) = self.apply(&mut events, login_timeout) {
                        break end;
                    }
                }
                Wake::Frame(None) => break End::Gone,
                Wake::Frame(Some(Err(e))) => {
                    break match e {
                        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                            End::Close(
                                close::MESSAGE_TOO_BIG,
                                format!("message of {size} bytes exceeds {max_size}"),
                            )
                        }
                        WsError::Capacity(_) => {
                            End::Close(close::MESSAGE_TOO_BIG, "message too big".into())
                        }
                        WsError::Utf8(_) => {
                            End::Close(close::INVALID_PAYLOAD, "text frame is not UTF-8".into())
                        }
                        // The client dropped the connection without a close frame: not a
                        // protocol error of ours to answer (it counts as 1006).
                        WsError::Protocol(
                            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                        ) => End::Gone,
                        WsError::Protocol(p) => {
                            tracing::debug!(client = %self.outbox.ip(), "protocol error: {p}");
                            End::Close(1002, "protocol error".into())
                        }
                        _ => End::Gone,
                    };
                }
                Wake::Frame(Some(Ok(frame))) => {
                    last_inbound = Instant::now();
                    // §16: frames of any kind, control frames included.
                    if !self
                        .frames
                        .take(self.cfg.max_frames_per_sec, clock::mono_ms())
                    {
                        self.gw.metrics.count_rate_limited("frames");
                        break End::Close(close::RATE_LIMIT, "rate limit".into());
                    }
                    // Checked here too: a client streaming frames must not outrun the deadline
                    // (the timer is only looked at when no frame is ready).
                    if self.login_deadline.is_some_and(|d| last_inbound >= d) {
                        break End::Close(close::LOGIN_TIMEOUT, "login timeout".into());
                    }
                    dirty = true; // a ping may have queued a pong
                    let (bytes, enc) = match &frame {
                        Message::Text(t) => (t.as_bytes(), Encoding::Json),
                        Message::Binary(b) => (&b[..], Encoding::Bincode),
                        Message::Close(_) => break End::PeerClosed,
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    };
                    let msg = match decode_client(enc, bytes, max_frame) {
                        Ok(m) => m,
                        Err(e) => {
                            let code = match e {
                                imgate_proto::DecodeError::TooLarge { .. } => {
                                    close::MESSAGE_TOO_BIG
                                }
                                _ => close::INVALID_PAYLOAD,
                            };
                            break End::Close(code, e.close_reason());
                        }
                    };
                    drop(frame);
                    // What was queued before this request was read takes effect first: a socket
                    // whose session was evicted by a login that has been answered must not answer
                    // as logged in (the poll above reads frames before the mailbox).
                    if self.outbox.take(&mut events) {
                        break End::Close(close::SLOW_CONSUMER, "slow consumer".into());
                    }
                    if let Some(end) = self.apply(&mut events, login_timeout) {
                        break end;
                    }
                    let reply = {
                        let ctx = self.ctx();
                        // A request that asks the presence store is one boxed future, so idle
                        // sockets do not carry its state.
                        match self.session.handle(ctx, msg, enc) {
                            Step::Done(reply) => reply,
                            Step::Wait(answer) => answer.await,
                        }
                    };
                    if reply.logged_out {
                        self.login_deadline = Some(Instant::now() + login_timeout);
                    } else if self.session.is_logged_in() {
                        self.login_deadline = None;
                    }
                    self.count_waiting();
                    // No response when the session was evicted meanwhile: its kick is queued.
                    if let Some(msg) = &reply.msg {
                        if !self.queue(msg, enc) {
                            break End::Close(close::SLOW_CONSUMER, "slow consumer".into());
                        }
                    }
                }
            }
            let writing = dirty || !self.pending.is_empty();
            let next = self.next_deadline(last_inbound + idle, ping_at, writing);
            // Re-arm only when the deadline moved earlier or the timer has fired; a later idle
            // deadline is found when the timer fires.
            if next < armed || timer.is_elapsed() {
                armed = next;
                timer.as_mut().reset(armed);
            }
        };

        let ended = match &end {
            End::Close(code, _) if *code == close::IDLE_TIMEOUT => Ended::TimeOut,
            _ => Ended::LinkClose,
        };
        {
            let ctx = self.ctx();
            self.session.on_close(ctx, ended);
        }
        if let End::PeerClosed = end {
            let flush = Box::pin(timeout_at(Instant::now() + LINGER, ws.flush()));
            let _ = flush.await;
            return;
        }
        if let End::Gone = end {
            // Dropped without a close frame (contract §10).
            self.gw.metrics.count_close(1006);
        }
        if let End::Close(code, reason) = end {
            self.gw.metrics.count_close(code);
            let keep_pushes = matches!(code, close::KICKED | close::ADMIN_KICKED);
            Box::pin(close_socket(
                ws,
                &mut self.pending,
                keep_pushes,
                code,
                reason,
            ))
            .await;
        }
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close::KICKED => "kicked offline",
        close::ADMIN_KICKED => "kicked by admin",
        close::GOING_AWAY => "server shutting down",
        close::SLOW_CONSUMER => "slow consumer",
        _ => "closed",
    }
}

/// Writes what must precede the close frame (the `kicked_offline` push), the close frame, shuts the
/// TCP write side and drains the peer for at most [`LINGER`].
async fn close_socket(
    mut ws: Ws,
    pending: &mut VecDeque<Message>,
    keep_pushes: bool,
    code: u16,
    reason: String,
) {
    let deadline = Instant::now() + LINGER;
    if !keep_pushes {
        pending.clear();
    }
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(reason),
    };
    let write = async {
        for m in pending.drain(..) {
            ws.feed(m).await?;
        }
        ws.send(Message::Close(Some(frame))).await
    };
    let _ = timeout_at(deadline, write).await;
    let tcp = ws.get_mut();
    let _ = timeout_at(deadline, tcp.shutdown()).await;
    let drain = async {
        let mut buf = [0u8; 512];
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let _ = timeout_at(deadline, drain).await;
}
