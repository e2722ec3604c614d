//! The admin listener's connections (contract §16): at most `admin_max_connections` open (more are
//! closed at accept, so admin connections can never use up the file descriptors the WebSocket
//! listener needs), a request head must arrive within `admin_header_timeout_secs` of its first
//! byte, and a keep-alive connection idle for `admin_idle_timeout_secs` is closed. HTTP/1.1 by
//! hyper; the router is axum's.
//!
//! Both timeouts live in [`Timed`], a wrapper of the connection's I/O that knows, from the service
//! wrapper beside it, whether the connection is idle, reading a head, or busy with a request.
//!
//! [`Timed`] also makes hyper's own answers JSON like every other admin error: when hyper cannot
//! parse a head (400 malformed, 414 URI too long, 431 a head past hyper's read buffer of 64 KiB plus
//! one read) it writes that status with
//! an empty body and closes; [`Timed`] writes, in its place, the same status with an
//! `{"error": ...}` body. Such an answer is told apart by its bytes: every error the router makes
//! has a JSON body (`json_errors`), so a 400/414/431 head with `content-length: 0` is hyper's.

use crate::gateway::Gateway;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// Where a connection is: idle (waiting for a request), reading a head, or busy with a request.
#[derive(Debug)]
struct Phase {
    state: AtomicU8,
    since: parking_lot::Mutex<Instant>,
}

impl Phase {
    fn set(&self, s: u8) {
        self.state.store(s, Ordering::SeqCst);
        *self.since.lock() = Instant::now();
    }
}

/// A connection's I/O that ends (EOF) when the head timeout or the idle timeout passes.
struct Timed {
    io: TcpStream,
    phase: Arc<Phase>,
    sleep: Pin<Box<Sleep>>,
    head: Duration,
    idle: Duration,
    /// hyper's parse-error answer being replaced: our JSON answer and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
}

/// Whether hyper is writing its own answer to a head it could not parse: a 400, 414 or 431 head
/// without a body (the router's error answers always have one).
fn is_parse_error_answer(b: &[u8]) -> bool {
    let status_ok = [&b"HTTP/1.1 400 "[..], b"HTTP/1.1 414 ", b"HTTP/1.1 431 "]
        .iter()
        .any(|p| b.starts_with(p));
    status_ok
        && b.windows(19)
            .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0"))
        && !b
            .windows(14)
            .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-type"))
}

/// The JSON answer that replaces hyper's own answer to an unparsable head (`written` starts with
/// hyper's status line, e.g. `HTTP/1.1 431 Request Header Fields Too Large`).
fn json_parse_error(written: &[u8]) -> Vec<u8> {
    let status = written
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(400);
    let (status, reason, why) = match status {
        414 => (414, "URI Too Long", "request URI too long"),
        431 => (
            431,
            "Request Header Fields Too Large",
            "request head too large",
        ),
        _ => (400, "Bad Request", "malformed HTTP request"),
    };
    let body = serde_json::json!({ "error": why }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let state = self.phase.state.load(Ordering::SeqCst);
        if state != BUSY {
            let limit = if state == IDLE { self.idle } else { self.head };
            let deadline = *self.phase.since.lock() + limit;
            if Instant::now() >= deadline {
                return Poll::Ready(Ok(())); // EOF: hyper closes the connection
            }
            self.sleep.as_mut().reset(deadline);
            if self.sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before && state == IDLE {
            self.phase.set(HEAD);
        }
        r
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.answer.is_none() && is_parse_error_answer(b) {
            self.answer = Some((json_parse_error(b), 0));
        }
        let this = &mut *self;
        let Some((answer, at)) = this.answer.as_mut() else {
            return Pin::new(&mut this.io).poll_write(cx, b);
        };
        while *at < answer.len() {
            match Pin::new(&mut this.io).poll_write(cx, &answer[*at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *at += n,
                other => return other,
            }
        }
        Poll::Ready(Ok(b.len())) // hyper's own bytes are dropped
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves the admin listener until `stop` changes, then lets open requests finish (bounded).
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = gw.config();
    let permits = Arc::new(Semaphore::new(cfg.admin_max_connections.max(1)));
    let head = Duration::from_secs(cfg.admin_header_timeout_secs.max(1));
    let idle = Duration::from_secs(cfg.admin_idle_timeout_secs.max(1));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let (tcp, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!("admin connection cap reached: closed at accept");
            drop(tcp);
            continue;
        };
        let phase = Arc::new(Phase {
            state: AtomicU8::new(IDLE),
            since: parking_lot::Mutex::new(Instant::now()),
        });
        let io = Timed {
            io: tcp,
            phase: Arc::clone(&phase),
            sleep: Box::pin(tokio::time::sleep(idle)),
            head,
            idle,
            answer: None,
        };
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (router, phase) = (router.clone(), Arc::clone(&phase));
                phase.set(BUSY);
                async move {
                    let resp =
                        tower::ServiceExt::oneshot(router, req.map(axum::body::Body::new)).await;
                    phase.set(IDLE);
                    resp
                }
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
